//! Embedding tapstack in a test: two userspace stacks on an in-memory wire with 20% loss, a 64 KiB
//! echo, and assertions on the recorded packets; then the loss lifted and the wire cut and mended.
//! Runs in milliseconds on the virtual clock.
//!
//! `cargo run --release --example harness`

use std::time::Duration;
use tapstack::harness::Harness;
use tapstack::harness::PARTITIONED;
use tapstack::trace::TcpFlags;
use tapstack::ServiceKind;
use tapstack::{Direction, FaultConfig};

fn main() {
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .seed(42)
        .drop_chance(0.2)
        .build();
    let data: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    let got = h
        .echo(7, &data, Duration::from_secs(3600))
        .expect("the echo must come back");
    assert!(got == data, "the echo must come back whole");
    let flags = h.tcp_flags(7);
    assert_eq!(
        flags[..3],
        [TcpFlags::SYN, TcpFlags::SYN | TcpFlags::ACK, TcpFlags::ACK]
    );
    println!(
        "64 KiB echoed through 20% loss in {:.1} s of virtual time: {} segments, {} retransmissions, {} frames dropped",
        h.now().as_secs_f64(),
        flags.len(),
        h.retransmissions(),
        h.dropped(Direction::In) + h.dropped(Direction::Out),
    );
    for line in h.packet_lines().iter().take(6) {
        println!("{line}");
    }

    // The loss lifted, then the wire cut: nothing gets through until it is mended.
    h.set_faults(FaultConfig::default());
    h.partition();
    let cut = h
        .echo(7, b"into the void", Duration::from_secs(10))
        .expect_err("nothing crosses a partition");
    h.repair();
    let mended = h
        .echo(7, b"mended", Duration::from_secs(10))
        .expect("the wire is mended");
    assert_eq!(mended, b"mended");
    println!(
        "partitioned: {cut}; {} frames lost to it; after repair the echo came back",
        h.counters().drops.get(PARTITIONED).copied().unwrap_or(0)
    );
}
