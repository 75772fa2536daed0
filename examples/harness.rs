//! Embedding tapstack in a test: two userspace stacks on an in-memory wire with 20% loss, a 64 KiB
//! echo, and assertions on the recorded packets. Runs in milliseconds on the virtual clock.
//!
//! `cargo run --release --example harness`

use smoltcp::time::Duration;
use tapstack::harness::Harness;
use tapstack::service::ServiceKind;

fn main() {
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .seed(42)
        .drop_chance(0.2)
        .build();
    let sock = h.connect(7).expect("a client socket");
    let data: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    let (mut sent, mut got) = (0, Vec::new());
    let done = h.run_until(Duration::from_secs(3600), |h| {
        if sent < data.len() {
            sent += h.send(sock, &data[sent..]);
        }
        got.extend(h.recv(sock));
        got.len() == data.len()
    });
    assert!(done && got == data, "the echo must come back whole");
    h.close(sock);
    h.run_until(Duration::from_secs(60), |h| h.is_closed(sock));
    let flags = h.tcp_flags(7);
    assert_eq!(&flags[..3], ["SYN", "SYN,ACK", "ACK"]);
    println!(
        "64 KiB echoed through 20% loss in {:.1} s of virtual time: {} segments, {} retransmissions, {} frames dropped",
        h.now().total_millis() as f64 / 1000.0,
        flags.len(),
        h.retransmissions(),
        h.dropped(tapstack::device::Direction::In) + h.dropped(tapstack::device::Direction::Out),
    );
    for line in h.packet_lines().iter().take(6) {
        println!("{line}");
    }
}
