//! Reliability, round 2 (issue 14), the userspace stack's cases, on the harness's virtual wire and
//! clock: `--max-connections` exact across ports (case 6), peers that hold a connection open after
//! we closed it (case 4: FIN-WAIT-1 against a zero window, LAST-ACK and CLOSING against silence),
//! and the tracer's flows for traffic the stack cannot answer (case 1: ACK and FIN floods from
//! random sources, SYNs from an address that never answers ARP).
//!
//! Every figure printed here (`FIGURE ...` lines on stderr, `--nocapture` to see them) is in
//! RELIABILITY.md, "Round 2".

#[path = "reliability/frames.rs"]
mod frames;

use frames::*;
use smoltcp::socket::tcp::State;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use tapstack::frames::Tcp;
use tapstack::harness::{Harness, Side};
use tapstack::trace::EVICTABLE_KEPT;
use tapstack::Direction;
use tapstack::{ServiceKind, Settings};

/// How long the stack lets a peer hold a connection in FIN-WAIT-1, CLOSING or LAST-ACK after our
/// close (`stack::ORPHAN_TIMEOUT`).
const ORPHAN_BOUND: Duration = Duration::from_secs(60);

const FIN_WAIT1_TIMED_OUT: &str =
    "tcp: FIN-WAIT-1 timed out (the peer never took our last data and FIN), reset";
const CLOSING_TIMED_OUT: &str =
    "tcp: CLOSING timed out (the peer never acknowledged our FIN), reset";
const LAST_ACK_TIMED_OUT: &str =
    "tcp: LAST-ACK timed out (the peer never acknowledged our FIN), reset";

fn states(h: &Harness) -> Vec<String> {
    h.tcp_states().iter().map(|s| s.to_string()).collect()
}

fn count_in(h: &Harness, state: State) -> usize {
    h.tcp_states().iter().filter(|s| **s == state).count()
}

fn drops(h: &Harness, reason: &str) -> u64 {
    h.counters().drops.get(reason).copied().unwrap_or(0)
}

/// RSTs the server sent from `port` after `mark`.
fn rsts_out(h: &Harness, port: u16, mark: u64) -> usize {
    h.packets_since(mark)
        .iter()
        .filter(|r| {
            r.dir == Direction::Out
                && r.decoded
                    .tcp
                    .is_some_and(|t| t.flags.rst() && t.src_port == port)
        })
        .count()
}

// ---------------------------------------------------------------------------------------------
// Case 6: `--max-connections` is exact across all ports.

/// Eight connections held on port 7, then one connection to each of six other served ports: every
/// one is refused with RST (each of those ports still has its listener), and the count stays 8.
/// Before the fix each port's listener took its SYN: 14 connections were served.
#[test]
fn h2_max_connections_exact_across_ports() {
    let others = [
        (ServiceKind::Discard, 9),
        (ServiceKind::Daytime, 13),
        (ServiceKind::Qotd, 17),
        (ServiceKind::Chargen, 19),
        (ServiceKind::Time, 37),
        (ServiceKind::Http, 80),
    ];
    let mut b = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .seed(21)
        .max_connections(8);
    for (kind, port) in others {
        b = b.serve(kind, port);
    }
    let mut h = b.build();
    let mut held = Vec::new();
    for _ in 0..8 {
        let c = h.connect(7).unwrap();
        assert!(h.run_until(Duration::from_secs(3), |h| h.is_established(c)));
        held.push(c);
    }
    assert_eq!(h.connection_count(), 8, "{:?}", states(&h));
    let refused_before = h.counters().conns_refused;
    let mut served = Vec::new();
    let mut rsts = 0;
    for (_, port) in others {
        let mark = h.packet_mark();
        let c = h.connect(port).unwrap();
        h.run_until(Duration::from_secs(3), |h| {
            h.is_closed(c) || h.is_established(c)
        });
        if h.is_established(c) {
            served.push(port);
        }
        rsts += rsts_out(&h, port, mark);
    }
    let refused = h.counters().conns_refused - refused_before;
    eprintln!(
        "FIGURE max-conns-ports: --max-connections 8, 8 held on port 7, one more to each of 6 other ports: {} served ({served:?}), {refused} refused, {rsts} RSTs; {} connections, {} listeners",
        served.len(),
        h.connection_count(),
        h.listener_count()
    );
    assert!(served.is_empty(), "served beyond the limit: {served:?}");
    assert_eq!(h.connection_count(), 8, "{:?}", states(&h));
    assert_eq!(refused, 6);
    assert_eq!(rsts, 6);
    // The held ones still work, and a freed slot serves any port.
    for &c in &held {
        h.send(c, b"ping");
    }
    let mut back = vec![0; held.len()];
    assert!(h.run_until(Duration::from_secs(3), |h| {
        for (i, &c) in held.iter().enumerate() {
            back[i] += h.recv(c).len();
        }
        back.iter().all(|&n| n == 4)
    }));
    h.close(held[0]);
    assert!(h.run_until(Duration::from_secs(5), |h| h.connection_count() == 7));
    let c = h.connect(13).unwrap();
    assert!(
        h.run_until(Duration::from_secs(3), |h| !h.recv(c).is_empty()),
        "daytime served once a slot is free"
    );
}

// ---------------------------------------------------------------------------------------------
// Case 4: peers that hold a connection open after we closed it.

/// Eight HTTP clients ask for a megabyte and never read: their windows close, the server's idle
/// timeout finishes each session and the close waits in FIN-WAIT-1 behind a full send buffer, while
/// the clients answer every zero-window probe. With `--max-connections 8` that locked everyone out
/// for good; now each is reset 60 s after the close, counted, and the slots serve again.
#[test]
fn h2_fin_wait1_against_a_zero_window_is_reset_after_the_bound() {
    let settings = Settings {
        idle_timeout: smoltcp::time::Duration::from_secs(2),
        ..Settings::default()
    };
    let mut h = Harness::builder()
        .serve(ServiceKind::Http, 80)
        .seed(22)
        .max_connections(8)
        .settings(settings)
        .build();
    let mut clients = Vec::new();
    for _ in 0..8 {
        let c = h.connect(80).unwrap();
        assert!(h.run_until(Duration::from_secs(3), |h| h.is_established(c)));
        h.send(c, b"GET /bytes/1000000 HTTP/1.1\r\nHost: t\r\n\r\n");
        clients.push(c);
    }
    // The clients never call recv: their receive windows fill and stay at zero.
    let closed = h.run_until(Duration::from_secs(30), |h| {
        count_in(h, State::FinWait1) == 8
    });
    assert!(closed, "all 8 closed into FIN-WAIT-1: {:?}", states(&h));
    let t_close = h.now();
    // Full meanwhile: a ninth client is refused.
    let extra = h.connect(80).unwrap();
    h.run_until(Duration::from_secs(3), |h| h.is_closed(extra));
    assert!(h.is_closed(extra), "refused while the slots are held");
    let mark = h.packet_mark();
    h.run_for(ORPHAN_BOUND - Duration::from_secs(5) - (h.now() - t_close));
    assert_eq!(
        count_in(&h, State::FinWait1),
        8,
        "held until the bound: {:?}",
        states(&h)
    );
    let gone = h.run_until(Duration::from_secs(30), |h| h.connection_count() == 0);
    let after = h.now() - t_close;
    let timed_out = drops(&h, FIN_WAIT1_TIMED_OUT);
    let rsts = rsts_out(&h, 80, mark);
    eprintln!(
        "FIGURE fin-wait-1-zero-window: 8 HTTP clients that never read, --max-connections 8, --idle-timeout 2: slots back {:.1} s after the close ({timed_out} counted, {rsts} RSTs sent); left {}",
        after.as_secs_f64(),
        h.connection_count()
    );
    assert!(gone, "{:?}", states(&h));
    assert!(after <= ORPHAN_BOUND + Duration::from_secs(1), "{after:?}");
    assert_eq!(timed_out, 8);
    assert_eq!(rsts, 8, "each is reset once");
    // The trace tells why, from the stack's event (not a bare "RST").
    let reasons = h.trace_close_reasons();
    let told = reasons
        .iter()
        .filter(|r| **r == "FIN-WAIT-1 timed out, reset")
        .count();
    assert_eq!(told, 8, "{reasons:?}");
    // The slots serve again.
    let c = h.connect(80).unwrap();
    assert!(h.run_until(Duration::from_secs(3), |h| h.is_established(c)));
    h.send(c, b"GET /bytes/10 HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut got = Vec::new();
    assert!(h.run_until(Duration::from_secs(3), |h| {
        got.extend(h.recv(c));
        got.starts_with(b"HTTP/1.1 200")
    }));
}

/// A spoofed peer's connection to `port`, up to established: returns the server's ISN.
fn spoofed_handshake(h: &mut Harness, sport: u16, port: u16, seq: u32) -> u32 {
    h.inject(Side::Server, &spoof_arp());
    h.inject(Side::Server, &tcp_frame(SPOOF_IP, &syn(sport, port, seq)));
    h.run_for(Duration::from_millis(10));
    let isn = h
        .packets()
        .iter()
        .find_map(|r| {
            let t = r.decoded.tcp?;
            (r.dir == Direction::Out && t.flags.syn() && t.flags.ack() && t.dst_port == sport)
                .then_some(t.seq)
        })
        .expect("a SYN-ACK to the spoofed peer");
    let ack = Tcp::new(sport, port, seq.wrapping_add(1)).ack(isn.wrapping_add(1));
    h.inject(Side::Server, &tcp_frame(SPOOF_IP, &ack));
    h.run_for(Duration::from_millis(10));
    isn
}

/// The peer sends its FIN (echo then closes: LAST-ACK) and goes silent: the server's FIN is never
/// acknowledged, and smoltcp would retransmit it forever. Reset after the bound, counted.
#[test]
fn h2_last_ack_against_a_silent_peer_is_reset_after_the_bound() {
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .seed(23)
        .build();
    let isn = spoofed_handshake(&mut h, 5555, 7, 1000);
    assert_eq!(h.connection_count(), 1, "{:?}", states(&h));
    let fin = Tcp::new(5555, 7, 1001).fin().ack(isn.wrapping_add(1));
    h.inject(Side::Server, &tcp_frame(SPOOF_IP, &fin));
    assert!(h.run_until(Duration::from_secs(1), |h| count_in(h, State::LastAck) == 1));
    let t_close = h.now();
    let mark = h.packet_mark();
    h.run_for(ORPHAN_BOUND - Duration::from_secs(5));
    assert_eq!(count_in(&h, State::LastAck), 1, "{:?}", states(&h));
    // The host is still there, only its TCP is silent: it refreshes the server's neighbour entry
    // (smoltcp forgets one after 60 s, and an RST to a forgotten neighbour waits on ARP and is lost).
    h.inject(Side::Server, &spoof_arp());
    let gone = h.run_until(Duration::from_secs(30), |h| h.connection_count() == 0);
    let after = h.now() - t_close;
    let fins = h
        .packets_since(mark)
        .iter()
        .filter(|r| r.dir == Direction::Out && r.decoded.tcp.is_some_and(|t| t.flags.fin()))
        .count();
    eprintln!(
        "FIGURE last-ack-silent: peer silent after its FIN: connection gone {:.1} s after our FIN ({fins} FIN retransmissions meanwhile), {} counted",
        after.as_secs_f64(),
        drops(&h, LAST_ACK_TIMED_OUT)
    );
    assert!(gone, "{:?}", states(&h));
    assert!(after <= ORPHAN_BOUND + Duration::from_secs(1), "{after:?}");
    assert_eq!(drops(&h, LAST_ACK_TIMED_OUT), 1);
    assert_eq!(rsts_out(&h, 7, mark), 1, "reset once");
    assert_eq!(h.trace_close_reasons(), ["LAST-ACK timed out, reset"]);
}

/// Both sides close at once (daytime's FIN crosses the peer's), then the peer goes silent: the
/// server waits in CLOSING for an ACK of its FIN that never comes. Reset after the bound, counted.
#[test]
fn h2_closing_against_a_silent_peer_is_reset_after_the_bound() {
    let mut h = Harness::builder()
        .serve(ServiceKind::Daytime, 13)
        .seed(24)
        .build();
    let isn = spoofed_handshake(&mut h, 6666, 13, 2000);
    assert!(
        h.run_until(Duration::from_secs(1), |h| count_in(h, State::FinWait1)
            == 1)
    );
    let t_close = h.now();
    // The peer's FIN acknowledges only our SYN: not the daytime line, not our FIN.
    let fin = Tcp::new(6666, 13, 2001).fin().ack(isn.wrapping_add(1));
    h.inject(Side::Server, &tcp_frame(SPOOF_IP, &fin));
    assert!(
        h.run_until(Duration::from_secs(1), |h| count_in(h, State::Closing) == 1),
        "{:?}",
        states(&h)
    );
    h.run_for(ORPHAN_BOUND - Duration::from_secs(5));
    assert_eq!(count_in(&h, State::Closing), 1, "{:?}", states(&h));
    let gone = h.run_until(Duration::from_secs(30), |h| h.connection_count() == 0);
    eprintln!(
        "FIGURE closing-silent: simultaneous close, then silence: gone {:.1} s after our FIN, {} counted",
        (h.now() - t_close).as_secs_f64(),
        drops(&h, CLOSING_TIMED_OUT)
    );
    assert!(gone, "{:?}", states(&h));
    assert_eq!(drops(&h, CLOSING_TIMED_OUT), 1);
    assert_eq!(h.trace_close_reasons(), ["CLOSING timed out, reset"]);
}

// ---------------------------------------------------------------------------------------------
// Case 1: the tracer's flows for traffic the stack cannot answer.

/// A small seeded generator: the same flood every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// 5,000 ACKs and 5,000 FINs from distinct random sources (off-link 198.18.0.0/15, which the stack has
/// no route back to, so its RSTs never leave): each made a live flow in the tracer, up to its 65,536
/// cap (260 MB on the TAP). Now such flows may be retired at once: the table stays within the
/// retired-flow allowance plus the stack's live connections.
#[test]
fn h2_ack_and_fin_floods_from_random_sources_keep_the_flow_table_bounded() {
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .seed(25)
        .build();
    // A live connection of the stack during the flood: its flow must survive it.
    let live = h.connect(7).unwrap();
    assert!(h.run_until(Duration::from_secs(3), |h| h.is_established(live)));
    let mut rng = Rng(0x5eed_1234_5678_9abc);
    let mut max_flows = 0;
    let mut max_bound = 0;
    for i in 0..10_000u32 {
        let r = rng.next();
        let src = Ipv4Addr::new(198, 18 + (r & 1) as u8, (r >> 8) as u8, (r >> 16) as u8 | 1);
        let sport = 1024 + (r >> 24) as u16 % 60000;
        let dport = if i % 2 == 0 { 7 } else { (r >> 40) as u16 | 1 };
        let seq = (r >> 32) as u32;
        let seg = if i < 5000 {
            Tcp::new(sport, dport, seq).ack(seq ^ 0x1234_5678)
        } else {
            Tcp::new(sport, dport, seq).fin().ack(seq ^ 0x1234_5678)
        };
        h.inject(Side::Server, &tcp_frame(src, &seg));
        if i % 32 == 31 {
            h.run_for(Duration::from_millis(1));
            max_flows = max_flows.max(h.trace_flow_count());
            max_bound = max_bound.max(EVICTABLE_KEPT + h.connection_count());
        }
    }
    h.run_for(Duration::from_millis(10));
    eprintln!(
        "FIGURE ack-fin-flood-flows: 5,000 ACKs + 5,000 FINs from random sources: at most {max_flows} flows in the tracer (bound {max_bound}); {} now",
        h.trace_flow_count()
    );
    assert!(max_flows <= max_bound, "{max_flows} > {max_bound}");
    // The live connection still echoes, and its flow was never retired.
    h.send(live, b"still here");
    let mut got = Vec::new();
    assert!(h.run_until(Duration::from_secs(3), |h| {
        got.extend(h.recv(live));
        got.len() == 10
    }));
    assert_eq!(
        h.trace_flows_from(IpAddr::V4(tapstack::frames::CLIENT_V4)),
        1
    );
}

/// Twenty SYNs from an on-link address that never answers ARP (ten to a served port, ten to a port
/// nobody serves): neither the SYN-ACKs nor the RSTs can leave. After the handshake timeout none of
/// their flows is live: a churn of 1,100 connectionless flows afterwards retires all twenty (a live
/// flow is never retired). Before, the ten refused ones stayed for good.
#[test]
fn h2_syns_from_an_address_that_never_answers_arp_leave_no_live_flow() {
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .serve(ServiceKind::Discard, 9)
        .seed(26)
        .build();
    let silent = Ipv4Addr::new(192, 168, 69, 66);
    for i in 0..20u16 {
        let port = if i < 10 { 7 } else { 4444 };
        h.inject(
            Side::Server,
            &tcp_frame(silent, &syn(20000 + i, port, 77 * i as u32)),
        );
    }
    h.run_for(Duration::from_millis(10));
    let at_first = h.trace_flows_from(IpAddr::V4(silent));
    assert_eq!(at_first, 20);
    assert_eq!(h.connection_count(), 10);
    // Past the 10 s handshake timeout.
    h.run_for(Duration::from_secs(11));
    assert_eq!(h.connection_count(), 0, "{:?}", states(&h));
    let other = Ipv4Addr::new(192, 168, 69, 67);
    for i in 0..(EVICTABLE_KEPT as u16 + 76) {
        h.inject(
            Side::Server,
            &udp_frame(other, 30000 + i, tapstack::frames::SERVER_V4, 9, b"x"),
        );
        if i % 32 == 31 {
            h.run_for(Duration::from_millis(1));
        }
    }
    h.run_for(Duration::from_millis(10));
    let left = h.trace_flows_from(IpAddr::V4(silent));
    eprintln!(
        "FIGURE arp-silent-syns: 20 SYNs from an address that never answers ARP: {at_first} flows, {left} left after the handshake timeout and {} newer connectionless flows; {} flows in the tracer",
        EVICTABLE_KEPT + 76,
        h.trace_flow_count()
    );
    assert_eq!(left, 0, "live flows left behind");
}
