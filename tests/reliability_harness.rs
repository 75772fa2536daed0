//! Reliability and security on the harness's virtual wire and virtual clock: bad input, floods,
//! faults and injected segments, in process. Exact and deterministic, no root: frames are injected
//! towards the server as if the client (or a spoofed peer) had sent them.
//!
//! Every figure printed here (`FIGURE ...` lines on stderr, `--nocapture` to see them) is in
//! RELIABILITY.md. The same attacks on a real TAP device are in `reliability_tap.rs`.

#[path = "reliability/frames.rs"]
mod frames;

use frames::*;
use smoltcp::socket::tcp;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use tapstack::frames::{Tcp, CLIENT_V4, SERVER_V4};
use tapstack::harness::{Harness, Side};
use tapstack::Direction;
use tapstack::ServiceKind;

// ---------------------------------------------------------------------------------------------
// Helpers

fn tcp_states(h: &Harness) -> Vec<String> {
    h.tcp_states().iter().map(|s| s.to_string()).collect()
}

/// A byte pattern that is different for every seed.
fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Echoes `data` over a harness connection; Ok(virtual seconds) or a clear error. Never hangs: the
/// run is bounded by `limit` of virtual time.
fn harness_echo(h: &mut Harness, data: &[u8], limit: Duration) -> Result<u64, String> {
    let got = h
        .echo(7, data, limit)
        .map_err(|e| format!("{e}, after {} s", h.now().as_secs()))?;
    if got != data {
        let at = got.iter().zip(data).position(|(a, b)| a != b).unwrap_or(0);
        return Err(format!("echo differs at byte {at}"));
    }
    Ok(h.now().as_secs())
}

// ---------------------------------------------------------------------------------------------
// 6. Loss, duplication, reordering, corruption on the virtual wire: 100 seeds.

/// A seed and what its run gave: two figures, or what went wrong.
type SeedResult = (u64, Result<(u64, u64), String>);

fn faults_seed(seed: u64, size: usize) -> Result<(u64, u64), String> {
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .seed(seed)
        .drop_chance(0.1)
        .dup_chance(0.05)
        .reorder_chance(0.05)
        .corrupt_chance(0.02)
        .build();
    let data = pattern(size, seed);
    let secs = harness_echo(&mut h, &data, Duration::from_secs(3600))?;
    let c = h.counters();
    let corrupt: u64 = c
        .drops
        .iter()
        .filter(|(k, _)| k.starts_with("malformed: bad"))
        .map(|(_, v)| v)
        .sum();
    Ok((secs, corrupt))
}

#[test]
fn h_faults_100_seeds_echo_byte_exact() {
    let size: usize = std::env::var("TAPSTACK_FAULT_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024 * 1024);
    let start = Instant::now();
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            std::thread::spawn(move || {
                (0..50u64)
                    .map(|i| {
                        let seed = 1000 + 2 * i + t;
                        (seed, faults_seed(seed, size))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<SeedResult> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(s, r)| r.as_ref().err().map(|e| format!("seed {s}: {e}")))
        .collect();
    let max_v = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().map(|x| x.0))
        .max()
        .unwrap_or(0);
    let corrupt: u64 = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().map(|x| x.1))
        .sum();
    eprintln!(
        "FIGURE faults-wire: 100 seeds x {size} B echo, drop 0.1 dup 0.05 reorder 0.05 corrupt 0.02: \
         {} byte-exact, {} failed, slowest {max_v} s virtual, {corrupt} corrupted frames caught by checksums, {:.1} s wall",
        100 - failed.len(),
        failed.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(corrupt > 0, "corruption must show as bad checksums");
}

/// One 256 KiB echo under the same faults, then both FINs: (virtual ms for the data, for the close)
/// or what got stuck. Each phase is bounded by far more than smoltcp's 60 s ceiling on a backed-off
/// timer, so only a connection that stopped trying runs out of time.
fn echo_and_close(seed: u64) -> Result<(u64, u64), String> {
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .seed(seed)
        .drop_chance(0.1)
        .dup_chance(0.05)
        .reorder_chance(0.05)
        .corrupt_chance(0.02)
        .build();
    let data = pattern(256 * 1024, seed);
    let s = h.connect(7).map_err(|e| format!("connect: {e:?}"))?;
    let (mut sent, mut got) = (0, Vec::with_capacity(data.len()));
    let done = h.run_until(Duration::from_secs(600), |h| {
        if sent < data.len() {
            sent += h.send(s, &data[sent..]);
        }
        got.extend(h.recv(s));
        got.len() >= data.len() || h.is_closed(s)
    });
    let t_data = h.now();
    if !done || got != data {
        return Err(format!(
            "data stuck at {} of {} octets after {} s, client {:?}, server {:?}",
            got.len(),
            data.len(),
            t_data.as_secs(),
            h.state(s),
            h.tcp_states()
        ));
    }
    h.close(s);
    let closed = h.run_until(Duration::from_secs(180), |h| {
        h.recv(s);
        matches!(h.state(s), tcp::State::Closed | tcp::State::TimeWait)
    });
    if !closed {
        return Err(format!(
            "close stuck: client {:?}, server {:?}",
            h.state(s),
            h.tcp_states()
        ));
    }
    Ok((
        t_data.as_millis() as u64,
        (h.now() - t_data).as_millis() as u64,
    ))
}

/// Echo and close over many seeds: a window that closed over data in flight (a late copy of an old
/// zero-window ACK) once left both ends waiting forever (seeds 2470 and 4993 here; smoltcp patch 15).
#[test]
fn h_faults_echo_and_close_2600_seeds() {
    let start = Instant::now();
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            std::thread::spawn(move || {
                (0..1300u64)
                    .map(|i| {
                        let seed = 2400 + 2 * i + t;
                        (seed, echo_and_close(seed))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<SeedResult> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(s, r)| r.as_ref().err().map(|e| format!("seed {s}: {e}")))
        .collect();
    let ok: Vec<(u64, u64)> = results.iter().filter_map(|(_, r)| r.clone().ok()).collect();
    let quantiles = |mut v: Vec<u64>| {
        v.sort_unstable();
        let at = |q: usize| v.get(v.len() * q / 100).or(v.last()).copied().unwrap_or(0);
        format!(
            "median {} ms, p99 {} ms, max {} ms",
            at(50),
            at(99),
            at(100)
        )
    };
    eprintln!(
        "FIGURE faults-close: 2,600 seeds x 256 KiB echo then close, drop 0.1 dup 0.05 reorder 0.05 \
         corrupt 0.02: {} done, {} stuck; data {}; close {}; {:.1} s wall",
        ok.len(),
        failed.len(),
        quantiles(ok.iter().map(|x| x.0).collect()),
        quantiles(ok.iter().map(|x| x.1).collect()),
        start.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "{failed:#?}");
}

// ---------------------------------------------------------------------------------------------
// 2. SYN flood, in process: exact counts on the virtual clock.

/// The drop reason for a half-open connection that gave way to a newer SYN at the limit.
const EVICTED: &str = "tcp: half-open connection evicted at the connection limit";

fn syn_flood(h: &mut Harness, n: u32, limit: usize) -> usize {
    let mut max_conns = 0;
    for i in 0..n {
        // On-link sources nobody answers ARP for: the worst case, the SYN-ACK can never leave.
        let src = Ipv4Addr::new(192, 168, 69, (2 + i % 90) as u8);
        h.inject(
            Side::Server,
            &tcp_frame(src, &syn(1024 + (i % 60000) as u16, 7, i * 7919)),
        );
        if i % 16 == 15 {
            h.run_for(Duration::from_millis(1));
            max_conns = max_conns.max(h.connection_count());
            assert!(h.connection_count() <= limit);
        }
    }
    h.run_for(Duration::from_millis(10));
    max_conns.max(h.connection_count())
}

#[test]
fn h_syn_flood_half_open_never_exceed_the_limit() {
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .seed(7)
        .max_connections(64)
        .build();
    let max = syn_flood(&mut h, 5000, 64);
    let c = h.counters();
    let evicted = c.drops.get(EVICTED).copied().unwrap_or(0);
    eprintln!(
        "FIGURE syn-flood-wire: 5000 spoofed SYNs, --max-connections 64: at most {max} half-open, {evicted} older half-open ones evicted for newer SYNs, {} refused (RST), {} sockets in the set",
        c.conns_refused,
        h.socket_count()
    );
    assert_eq!(max, 64);
    // Every SYN beyond the limit either pushed out the oldest half-open connection or was refused.
    assert_eq!(c.conns_refused + evicted, 5000 - 64);
    // Bounded: connections + one UDP socket, no listener left while full.
    assert!(h.socket_count() <= 64 + 2);
}

#[test]
fn h_syn_flood_half_open_sockets_return_and_a_real_client_connects() {
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .seed(7)
        .max_connections(64)
        .build();
    syn_flood(&mut h, 2000, 64);
    // A real client right after the flood: within 3 s.
    let c = h.connect(7).unwrap();
    let ok = h.run_until(Duration::from_secs(3), |h| h.is_established(c));
    let half_open = h.connection_count();
    // And the half-open ones go away within 75 s (Linux gives up on a SYN-ACK after ~63 s).
    h.run_for(Duration::from_secs(75));
    eprintln!(
        "FIGURE syn-flood-return: real client established within 3 s: {ok}; half-open right after: {half_open}, 75 s later: {}",
        h.connection_count()
    );
    assert!(
        ok,
        "a real client could not connect within 3 s after the flood"
    );
    assert!(h.connection_count() <= 1, "{:?}", tcp_states(&h));
}

#[test]
fn h_rst_in_syn_received_releases_the_slot() {
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .seed(3)
        .max_connections(8)
        .build();
    let src = Ipv4Addr::new(192, 168, 69, 50);
    for i in 0..8u16 {
        h.inject(Side::Server, &tcp_frame(src, &syn(3000 + i, 7, 7000)));
    }
    h.run_for(Duration::from_millis(5));
    for i in 0..8u16 {
        let r = Tcp::new(3000 + i, 7, 7001).rst();
        h.inject(Side::Server, &tcp_frame(src, &r));
    }
    h.run_for(Duration::from_secs(5));
    eprintln!(
        "FIGURE syn-rst: 8 SYN + in-window RST pairs, --max-connections 8: {} connections left, {} pool listeners, socket states {:?}",
        h.connection_count(),
        h.listener_count(),
        tcp_states(&h)
    );
    assert_eq!(h.connection_count(), 0, "{:?}", tcp_states(&h));
    assert_eq!(h.listener_count(), 1);
}

/// Peers that read the daytime and never close: the server's side waits in FIN-WAIT-2, holding a slot.
/// After 60 s (as Linux) those connections go, the slots are free and a new client is served.
#[test]
fn h_fin_wait2_peers_that_never_close_time_out() {
    let mut h = Harness::builder()
        .serve(ServiceKind::Daytime, 13)
        .seed(5)
        .max_connections(4)
        .build();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let c = h.connect(13).unwrap();
        let ok = h.run_until(Duration::from_secs(3), |h| {
            h.state(c) == smoltcp::socket::tcp::State::CloseWait
        });
        assert!(ok, "daytime answered and closed: {:?}", tcp_states(&h));
        assert!(!h.recv(c).is_empty());
        clients.push(c);
    }
    assert_eq!(h.connection_count(), 4, "{:?}", tcp_states(&h));
    // Full: one more is refused while the silent peers hold their slots.
    let extra = h.connect(13).unwrap();
    h.run_until(Duration::from_secs(1), |h| h.is_closed(extra));
    assert!(h.is_closed(extra), "refused at the limit");
    h.run_for(Duration::from_secs(55));
    assert_eq!(h.connection_count(), 4, "not before 60 s");
    h.run_for(Duration::from_secs(7));
    let timed_out = h
        .counters()
        .drops
        .get("tcp: FIN-WAIT-2 timed out (the peer never sent its FIN)")
        .copied();
    eprintln!(
        "FIGURE fin-wait-2: 4 peers that never close, --max-connections 4: {} left after 63 s, {timed_out:?} timed out",
        h.connection_count()
    );
    assert_eq!(h.connection_count(), 0, "{:?}", tcp_states(&h));
    assert_eq!(timed_out, Some(4));
    let c = h.connect(13).unwrap();
    let ok = h.run_until(Duration::from_secs(3), |h| {
        h.state(c) == smoltcp::socket::tcp::State::CloseWait
    });
    assert!(ok && h.recv(c).ends_with(b"\r\n"), "served again");
}

// ---------------------------------------------------------------------------------------------
// 3. RST and injection, in process: the live connection's numbers read off the wire.

/// The last segment the server sent on `port` to the client: (seq, ack, payload len).
fn last_server_seg(h: &Harness, cport: u16) -> (u32, u32, u32) {
    h.packets()
        .into_iter()
        .rev()
        .find_map(|r| {
            let t = r.decoded.tcp?;
            (r.dir == Direction::Out && t.dst_port == cport && t.flags.ack())
                .then_some((t.seq, t.ack, t.len))
        })
        .expect("a segment from the server")
}

fn server_out_count(h: &Harness, cport: u16, since: u64) -> usize {
    h.packets_since(since)
        .iter()
        .filter(|r| r.dir == Direction::Out)
        .filter(|r| r.decoded.tcp.is_some_and(|t| t.dst_port == cport))
        .count()
}

#[test]
fn h_rst_injection_out_of_window_ignored_exact_closes() {
    rst_scenario(false);
}

#[test]
fn h_rst_injection_inexact_in_window_draws_challenge_ack_only() {
    rst_scenario(true);
}

fn rst_scenario(inexact: bool) {
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .seed(11)
        .build();
    let s = h.connect(7).unwrap();
    assert!(h.run_until(Duration::from_secs(5), |h| h.is_established(s)));
    let data = pattern(200_000, 11);
    let mut sent = 0;
    let mut got = Vec::new();
    // Stream until half is back, then attack, then finish the stream.
    h.run_until(Duration::from_secs(60), |h| {
        if sent < data.len() / 2 {
            sent += h.send(s, &data[sent..data.len() / 2]);
        }
        got.extend(h.recv(s));
        got.len() >= data.len() / 2
    });
    let cport = h
        .packets()
        .iter()
        .rev()
        .find_map(|r| {
            r.decoded
                .tcp
                .filter(|t| t.dst_port == 7)
                .map(|t| t.src_port)
        })
        .unwrap();
    // The server's RCV.NXT is the ack it last sent.
    let (_, rcv_nxt, _) = last_server_seg(&h, cport);
    let rst = |seq: u32| tcp_frame(CLIENT_V4, &Tcp::new(cport, 7, seq).rst());
    let mark = h.packet_mark();
    // Out of window: far ahead and far behind. Silently ignored.
    for k in 0..50u32 {
        h.inject(
            Side::Server,
            &rst(rcv_nxt.wrapping_add(1_000_000 + k * 4096)),
        );
        h.inject(
            Side::Server,
            &rst(rcv_nxt.wrapping_sub(1_000_000 + k * 4096)),
        );
    }
    h.run_for(Duration::from_millis(10));
    let replies_oow = server_out_count(&h, cport, mark);
    assert!(
        h.is_established(s),
        "an out-of-window RST closed the connection"
    );
    assert_eq!(
        h.connection_count(),
        1,
        "an out-of-window RST closed the server's side"
    );
    // In window but not exact: at most one challenge ACK per second.
    let mark = h.packet_mark();
    for k in 1..=50u32 {
        if inexact {
            h.inject(Side::Server, &rst(rcv_nxt.wrapping_add(k * 100)));
        }
    }
    h.run_for(Duration::from_millis(10));
    let challenges = server_out_count(&h, cport, mark);
    assert!(h.is_established(s), "an inexact RST closed the connection");
    assert_eq!(
        h.connection_count(),
        1,
        "an in-window RST that is not exactly RCV.NXT closed the server's side (RFC 5961 3.2 says: challenge ACK only)"
    );
    // The stream goes on, byte-exact.
    h.run_until(Duration::from_secs(120), |h| {
        if sent < data.len() {
            sent += h.send(s, &data[sent..]);
        }
        got.extend(h.recv(s));
        got.len() >= data.len()
    });
    assert_eq!(
        got.len(),
        data.len(),
        "stream stalled after the RSTs: client {}, server sockets {:?}, replies {replies_oow}/{challenges}",
        h.state(s),
        tcp_states(&h)
    );
    assert!(got == data, "echo stream corrupted by injected RSTs");
    // The exact RST closes.
    let (_, rcv_nxt, _) = last_server_seg(&h, cport);
    h.inject(Side::Server, &rst(rcv_nxt));
    h.run_for(Duration::from_millis(10));
    let closed = h.connection_count() == 0;
    eprintln!(
        "FIGURE rst: 100 out-of-window RSTs -> {replies_oow} replies; {} in-window inexact -> {challenges} challenge ACKs (1/s limit); 200000-byte echo byte-exact; exact RST closes: {closed}",
        if inexact { 50 } else { 0 }
    );
    // Data segments may flow meanwhile; replies to the RSTs themselves carry no data and would be
    // pure ACKs: the stream was idle while injecting, so every reply counted is one.
    assert_eq!(replies_oow, 0, "out-of-window RSTs must draw no reply");
    assert!(challenges <= 1, "{challenges} challenge ACKs for 50 RSTs");
    assert!(closed, "the exact RST did not close the connection");
}

// ---------------------------------------------------------------------------------------------
// 5. Option abuse in SYNs, in process: every SYN answered or dropped and counted; echo after.

fn abusive_options() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("mss 0", vec![2, 4, 0, 0]),
        ("mss 1", vec![2, 4, 0, 1]),
        ("mss 64", vec![2, 4, 0, 64]),
        ("wscale 255", vec![3, 3, 255, 1]),
        ("wscale 15", vec![3, 3, 15, 1]),
        ("40 bytes of NOPs", vec![1; 40]),
        ("unknown kind 99", vec![99, 4, 1, 2]),
        (
            "unknown kind 254 long",
            vec![
                254, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        ),
        ("length 0", vec![2, 0, 5, 180]),
        ("length 1", vec![8, 1, 0, 0]),
        ("mss length overruns", vec![2, 40, 5, 180]),
        ("timestamp short", vec![8, 6, 0, 0, 0, 0]),
        ("sack permitted len 3", vec![4, 3, 0, 0]),
        ("sack blocks odd", vec![5, 7, 0, 0, 0, 1, 0, 0]),
        ("mss twice", vec![2, 4, 0, 1, 2, 4, 255, 255]),
        ("end then garbage", vec![0, 99, 99, 99]),
    ]
}

#[test]
fn h_syn_option_abuse_answered_or_counted_then_echo_works() {
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .seed(5)
        .build();
    let mut report = Vec::new();
    h.inject(Side::Server, &spoof_arp());
    h.run_for(Duration::from_millis(5));
    for (i, (name, opts)) in abusive_options().into_iter().enumerate() {
        let port = 5000 + i as u16;
        let before = h.counters().drops_total();
        let mark = h.packet_mark();
        let seg = Tcp::new(port, 7, 1000).syn().option_bytes(&opts);
        h.inject(Side::Server, &tcp_frame(SPOOF_IP, &seg));
        h.run_for(Duration::from_millis(50));
        let synack = h.packets_since(mark).iter().any(|r| {
            r.dir == Direction::Out
                && r.decoded
                    .tcp
                    .is_some_and(|t| t.dst_port == port && t.flags.syn() && t.flags.ack())
        });
        let counted = h.counters().drops_total() > before;
        report.push(format!(
            "{name}: {}",
            match (synack, counted) {
                (true, _) => "SYN-ACK",
                (false, true) => "dropped, counted",
                (false, false) => "dropped SILENTLY",
            }
        ));
        // Complete tiny-MSS handshakes with data, to see the server segment its echo.
        if synack && name.starts_with("mss ") {
            let (sseq, _, _) = last_server_seg(&h, port);
            let ack = Tcp::new(port, 7, 1001)
                .psh()
                .ack(sseq.wrapping_add(1))
                .data(b"tiny segments");
            let mark = h.packet_mark();
            h.inject(Side::Server, &tcp_frame(SPOOF_IP, &ack));
            h.run_for(Duration::from_millis(20));
            let lens: Vec<u32> = h
                .packets_since(mark)
                .iter()
                .filter_map(|r| {
                    r.decoded
                        .tcp
                        .filter(|t| t.dst_port == port && r.dir == Direction::Out)
                })
                .map(|t| t.len)
                .filter(|&l| l > 0)
                .collect();
            let total: u32 = lens.iter().sum();
            report.push(format!(
                "{name}: 13-byte echo came back as {total} bytes in {} segments of at most {} bytes",
                lens.len(),
                lens.iter().max().unwrap_or(&0)
            ));
            assert_eq!(total, 13, "{name}: echo after the handshake");
        }
        assert!(synack || counted, "{name}: neither answered nor counted");
    }
    let data = pattern(100_000, 5);
    harness_echo(&mut h, &data, Duration::from_secs(60)).unwrap();
    eprintln!("FIGURE syn-options: {}", report.join("; "));
}

// ---------------------------------------------------------------------------------------------
// 10 (part). UDP: no answer to broadcast or multicast sources, replies never amplify. In process.

#[test]
fn h_udp_no_reflection_no_amplification() {
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .serve(ServiceKind::Chargen, 19)
        .serve(ServiceKind::Qotd, 17)
        .serve(ServiceKind::Daytime, 13)
        .serve(ServiceKind::Time, 37)
        .seed(9)
        .build();
    let big = vec![b'x'; 1400];
    let chargen = h.udp_request(19, &big, Duration::from_secs(2)).unwrap();
    assert!(
        chargen.len() <= 512,
        "chargen replied {} bytes",
        chargen.len()
    );
    for n in [0usize, 1, 100, 1400] {
        let echo = h.udp_request(7, &big[..n], Duration::from_secs(2));
        assert!(echo.as_ref().is_none_or(|e| e.len() <= n), "echo {n}");
    }
    for port in [13u16, 17, 37] {
        let r = h.udp_request(port, b"", Duration::from_secs(2)).unwrap();
        assert!(r.len() <= 512);
    }
    // Broadcast and multicast sources, and a datagram to the broadcast address: never answered.
    let before = h.counters().packets_out;
    for (src, dst) in [
        (Ipv4Addr::BROADCAST, SERVER_V4),
        (Ipv4Addr::new(224, 0, 0, 1), SERVER_V4),
        (Ipv4Addr::new(239, 1, 2, 3), SERVER_V4),
        (Ipv4Addr::UNSPECIFIED, SERVER_V4),
        (CLIENT_V4, Ipv4Addr::BROADCAST),
    ] {
        for port in [7u16, 19, 17] {
            h.inject(
                Side::Server,
                &udp_frame(src, 4000, dst, port, b"reflect me"),
            );
        }
    }
    h.run_for(Duration::from_millis(100));
    let out = h.counters().packets_out - before;
    let c = h.counters();
    eprintln!(
        "FIGURE udp: chargen reply to 1400 B: {} B; 15 reflection attempts -> {out} frames out; drops {:?}",
        chargen.len(),
        c.drops
    );
    assert_eq!(out, 0, "a reflection attempt was answered");
}

#[test]
fn h_udp_directed_broadcast_not_answered() {
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .serve(ServiceKind::Chargen, 19)
        .seed(9)
        .build();
    // Warm the ARP cache so that a reply, if any, leaves at once.
    h.udp_request(7, b"warm", Duration::from_secs(2)).unwrap();
    let before = h.counters().packets_out;
    for port in [7u16, 19] {
        let f = udp_frame(
            CLIENT_V4,
            4000,
            Ipv4Addr::new(192, 168, 69, 255),
            port,
            b"x",
        );
        h.inject(Side::Server, &f);
    }
    h.run_for(Duration::from_millis(100));
    let out = h.counters().packets_out - before;
    eprintln!("FIGURE udp-directed-broadcast: 2 datagrams to 192.168.69.255 -> {out} replies");
    assert_eq!(out, 0);
}
