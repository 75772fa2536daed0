//! Windows that grow (issue 15): a served connection's receive window starts small and grows with
//! what its service reads per RTT, up to the buffer (`--max-window`); its send queue follows cwnd
//! and the peer's window. A peer that stops reading keeps costing the starting size.

use std::time::Duration;
use tapstack::harness::Harness;
use tapstack::ServiceKind;

const MIB: usize = 1 << 20;

/// Virtual time to upload `total` bytes to the server's discard service (5 ms each way) and see
/// the FIN acknowledged, with `server` and `client` socket buffers.
fn upload_time(server: usize, client: usize, total: usize) -> Duration {
    let mut h = Harness::builder()
        .serve(ServiceKind::Discard, 9)
        .latency(Duration::from_millis(5))
        .buffers(server, client)
        .build();
    let c = h.connect(9).unwrap();
    assert!(h.run_until(Duration::from_secs(5), |h| h.is_established(c)));
    let data = vec![0x5au8; 64 * 1024];
    let mut sent = 0;
    let start = h.now();
    assert!(
        h.run_until(Duration::from_secs(60), |h| {
            while sent < total {
                let n = h.send(c, &data[..(total - sent).min(data.len())]);
                if n == 0 {
                    break;
                }
                sent += n;
            }
            sent == total
        }),
        "the upload was not taken within 60 s"
    );
    h.close(c);
    assert!(h.run_until(Duration::from_secs(60), |h| h.is_closed(c)));
    h.now() - start
}

#[test]
fn test_receive_window_grows_with_a_reading_service() {
    let total = 16 * MIB;
    let small = upload_time(64 * 1024, 4 * MIB, total);
    let grown = upload_time(4 * MIB, 4 * MIB, total);
    // 64 KiB a round trip of 10 ms is at most 6.5 MB/s: 16 MiB need 2.6 s. A window grown from
    // the same 64 KiB start must beat that by far (by how much is up to the client's sender: its
    // cwnd grows by one segment per RTT here; a Linux sender gets ~1000 Mbit/s, see the realnet bench).
    assert!(
        small >= Duration::from_millis(2500),
        "64 KiB windows cannot be faster: {small:?}"
    );
    assert!(
        grown * 2 < small,
        "the window did not grow: {grown:?} with a 4 MiB buffer, {small:?} with 64 KiB"
    );
}

#[test]
fn test_a_peer_that_does_not_read_holds_only_the_starting_window() {
    // The client sends to echo but never reads the echoes: its 64 KiB receive window fills, echo
    // cannot write, stops reading, and the server's receive window must stay at its 64 KiB start
    // though its buffer is 4 MiB.
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .latency(Duration::from_millis(5))
        .buffers(4 * MIB, 64 * 1024)
        .build();
    let c = h.connect(7).unwrap();
    assert!(h.run_until(Duration::from_secs(5), |h| h.is_established(c)));
    let data = vec![0x5au8; 64 * 1024];
    let mut sent = 0usize;
    for _ in 0..200 {
        sent += h.send(c, &data);
        h.run_for(Duration::from_millis(20));
    }
    // What the client got rid of: its own receive buffer's worth of echoes, what echo holds, the
    // server's send queue (initial size: the client's window is shut) and its receive window, plus
    // the client's own 64 KiB send buffer. With the whole 4 MiB advertised it would be over 4 MiB.
    assert!(
        sent < 640 * 1024,
        "a non-reading peer made the server queue {sent} bytes"
    );
    assert!(sent > 128 * 1024, "the echo did not run at all: {sent}");
}
