//! Reliability, round 2, case 5: slow request bodies (`slowhttptest -B`), on the harness's virtual
//! wire and clock (no root, deterministic). A body may take one idle timeout plus 1 s per
//! `Settings::body_min_rate` bytes after its head; a client that trickles it slower is answered 408
//! and closed, whatever it keeps sending, and its connection slot comes back.
//!
//! `FIGURE ...` lines on stderr (`--nocapture`) are the figures in RELIABILITY.md.

use std::time::Duration;
use tapstack::harness::Harness;
use tapstack::{ServiceKind, Settings};

/// Slots, and the slow clients that take every one of them.
const SLOTS: usize = 8;
/// The idle timeout: the grace a body gets before its rate counts.
const IDLE_S: u64 = 5;

#[test]
fn h_slow_bodies_are_cut_off_with_408_and_their_slots_come_back() {
    let settings = Settings {
        idle_timeout: smoltcp::time::Duration::from_secs(IDLE_S),
        ..Settings::default()
    };
    let mut h = Harness::builder()
        .serve(ServiceKind::Http, 80)
        .max_connections(SLOTS)
        .settings(settings)
        .seed(14)
        .build();
    let slow: Vec<_> = (0..SLOTS).map(|_| h.connect(80).unwrap()).collect();
    assert!(h.run_until(Duration::from_secs(5), |h| slow
        .iter()
        .all(|&s| h.is_established(s))));
    // slowhttptest -B: a POST that announces a 4,096-byte body, which then comes a byte a second.
    let start = h.now();
    for &s in &slow {
        h.send(
            s,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n",
        );
    }
    h.run_for(Duration::from_millis(500));
    assert_eq!(h.connection_count(), SLOTS, "every slot is held");
    // Meanwhile nobody else gets in.
    let other = h.connect(80).unwrap();
    h.run_for(Duration::from_millis(500));
    assert!(
        !h.is_established(other),
        "a client past the limit was served"
    );
    h.close(other);

    let mut got = vec![Vec::new(); SLOTS];
    let mut answered = None;
    for _ in 0..120 {
        for &s in &slow {
            h.send(s, b"a");
        }
        let all = h.run_until(Duration::from_secs(1), |h| {
            for (i, &s) in slow.iter().enumerate() {
                got[i].extend(h.recv(s));
            }
            got.iter().all(|g| g.ends_with(b"\n"))
        });
        if all {
            answered = Some(h.now() - start);
            break;
        }
    }
    let answered = answered.expect("the trickling bodies were never cut off");
    for g in &got {
        let text = String::from_utf8_lossy(g);
        assert!(
            text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        assert!(
            !text.contains(" 405 "),
            "the held answer is never sent: {text}"
        );
    }
    // The grace is 5 s; 5 bytes at 500 B/s add 10 ms.
    assert!(
        answered >= Duration::from_secs(IDLE_S) && answered < Duration::from_secs(IDLE_S + 1),
        "answered after {answered:?}"
    );

    // The server closes whatever the clients keep sending: they see its FIN, close too, and the
    // slots are free.
    let closed = h.run_until(Duration::from_secs(5), |h| {
        for &s in &slow {
            h.send(s, b"a");
            h.recv(s);
        }
        slow.iter()
            .all(|&s| h.state(s) == smoltcp::socket::tcp::State::CloseWait)
    });
    assert!(closed, "no FIN from the server");
    for &s in &slow {
        h.close(s);
    }
    assert!(
        h.run_until(Duration::from_secs(10), |h| h.connection_count() == 0),
        "slots still held: {:?}",
        h.tcp_states()
    );
    let freed = h.now() - start;
    eprintln!(
        "FIGURE slow bodies: {SLOTS} of {SLOTS} slots held by 1 B/s bodies, 408 after {:.2} s \
         (idle timeout {IDLE_S} s), every slot free after {:.2} s",
        answered.as_secs_f64(),
        freed.as_secs_f64()
    );

    // A new client is served.
    let fresh = h.connect(80).unwrap();
    assert!(h.run_until(Duration::from_secs(5), |h| h.is_established(fresh)));
    h.send(fresh, b"GET /bytes/3 HTTP/1.1\r\nConnection: close\r\n\r\n");
    let mut reply = Vec::new();
    assert!(h.run_until(Duration::from_secs(5), |h| {
        reply.extend(h.recv(fresh));
        reply.ends_with(&[0, 1, 2])
    }));
    assert!(reply.starts_with(b"HTTP/1.1 200 OK\r\n"));
}
