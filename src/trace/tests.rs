//! Tracer tests: frames in, packet records / flow records / events / pcap bytes out, on a fake clock.

use std::cell::RefCell;
use std::io::{Cursor, Write};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smoltcp::time::Instant;
use smoltcp::wire::ArpOperation;

use super::fixtures::*;
use super::*;
use crate::device::{Direction, Observer};
use crate::status::{Proto, StackKind};

/// A writer the test can read back.
#[derive(Clone, Default)]
struct Shared(Rc<RefCell<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.borrow().clone()).unwrap()
    }
}

fn tracer() -> Tracer {
    Tracer::new(
        TraceConfig {
            device: "tap0".into(),
            ..TraceConfig::default()
        },
        UNIX_EPOCH,
    )
    .unwrap()
}

fn at(ms: i64) -> Instant {
    Instant::from_millis(ms)
}

const PEER_PORT: u16 = 49152;
const ECHO: u16 = 7;

/// Peer ISN 1000, stack ISN 5000: handshake, "hello" each way, peer closes first.
fn echo_exchange(t: &mut Tracer) {
    let p = |s: u32| Seg::new(PEER_PORT, ECHO, s);
    let s = |q: u32| Seg::new(ECHO, PEER_PORT, q);
    t.frame(at(0), Direction::In, &p(1000).syn().opts().inbound());
    t.frame(at(1), Direction::Out, &s(5000).syn().ack(1001).outbound());
    t.frame(at(2), Direction::In, &p(1001).ack(5001).inbound());
    t.frame(
        at(3),
        Direction::In,
        &p(1001).ack(5001).psh().data(b"hello").inbound(),
    );
    t.frame(
        at(4),
        Direction::Out,
        &s(5001).ack(1006).psh().data(b"hello").outbound(),
    );
    t.frame(at(5), Direction::In, &p(1006).ack(5006).inbound());
    t.frame(at(6), Direction::In, &p(1006).ack(5006).fin().inbound());
    t.frame(at(7), Direction::Out, &s(5006).ack(1007).outbound());
    t.frame(at(8), Direction::Out, &s(5006).ack(1007).fin().outbound());
    t.frame(at(9), Direction::In, &p(1007).ack(5007).inbound());
}

fn packets(t: &Tracer) -> Vec<PacketRecord> {
    t.recent_packets(0).copied().collect()
}

#[test]
fn test_handshake_data_fin_labels_and_relative_numbers() {
    let mut t = tracer();
    echo_exchange(&mut t);
    let p = packets(&t);
    assert_eq!(p.len(), 10);
    let labels: Vec<&[&str]> = p.iter().map(|r| r.labels.as_slice()).collect();
    assert_eq!(labels[0], ["handshake 1/3"]);
    assert_eq!(labels[1], ["handshake 2/3"]);
    assert_eq!(labels[2], ["handshake 3/3"]);
    assert!(labels[3].is_empty() && labels[4].is_empty() && labels[5].is_empty());
    assert_eq!(labels[6], ["close: FIN 1"]);
    assert_eq!(labels[7], ["close: ACK of FIN 1"]);
    assert_eq!(labels[8], ["close: FIN 2"]);
    assert_eq!(labels[9], ["close: ACK of FIN 2"]);
    let rel: Vec<(Option<u32>, Option<u32>)> = p.iter().map(|r| (r.rel_seq, r.rel_ack)).collect();
    assert_eq!(rel[0], (Some(0), None));
    assert_eq!(rel[1], (Some(0), Some(1)));
    assert_eq!(rel[2], (Some(1), Some(1)));
    assert_eq!(rel[4], (Some(1), Some(6)));
    assert_eq!(rel[9], (Some(7), Some(7)));
    assert!(p.iter().all(|r| r.conn == Some(1)));
    assert_eq!(
        p.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
}

#[test]
fn test_close_summary_bytes_and_segments() {
    let mut t = tracer();
    echo_exchange(&mut t);
    let closed: Vec<&FlowRecord> = t.closed_flows().collect();
    assert_eq!(closed.len(), 1);
    let f = closed[0];
    assert_eq!(f.id, 1);
    assert_eq!(f.close_reason, Some("FIN"));
    assert_eq!(f.opened_by, Some(Side::Peer));
    assert_eq!(f.handshake_us, Some(2000));
    assert_eq!(f.duration_us(), 9000);
    assert_eq!((f.inbound.bytes, f.inbound.segments), (5, 6));
    assert_eq!((f.outbound.bytes, f.outbound.segments), (5, 4));
    assert_eq!(f.inbound.retransmissions + f.outbound.retransmissions, 0);
    assert_eq!(f.segments().count(), 10);
    let line = f.summary_line();
    assert!(line.starts_with("c1 192.168.69.1:7 <- 192.168.69.100:49152 closed by FIN after 0.009000s, handshake 0.002000s"), "{line}");
    assert!(line.contains("peer->stack 5 bytes in 6 segments, stack->peer 5 bytes in 4 segments, 0 retransmissions"), "{line}");
}

#[test]
fn test_packet_lines() {
    let mut t = tracer();
    t.frame(
        at(0),
        Direction::In,
        &arp(ArpOperation::Request, PEER_MAC, PEER4, [0; 6], STACK4),
    );
    t.frame(
        at(0),
        Direction::Out,
        &arp(ArpOperation::Reply, STACK_MAC, STACK4, PEER_MAC, PEER4),
    );
    t.frame(
        Instant::from_micros(1_234_567),
        Direction::In,
        &icmp4_echo(true, 0x1234, 1, false),
    );
    echo_exchange(&mut t);
    let mut bad = Seg::new(PEER_PORT, ECHO, 1).inbound();
    bad[14 + 20 + 12] = 0xf0;
    t.frame(at(10), Direction::In, &bad);
    let lines: Vec<String> = t.recent_packets(0).map(|r| t.packet_line(r)).collect();
    for l in &lines {
        println!("{l}");
    }
    assert_eq!(
        lines[0],
        "in  tap0 +0.000000s ARP who-has 192.168.69.1? tell 192.168.69.100 (02:00:00:00:00:02)"
    );
    assert_eq!(
        lines[1],
        "out tap0 +0.000000s ARP 192.168.69.1 is-at 02:00:00:00:00:01 (to 192.168.69.100 02:00:00:00:00:02)"
    );
    assert_eq!(
        lines[2],
        "in  tap0 +1.234567s c1 ICMP 192.168.69.100 > 192.168.69.1 echo request id 4660 seq 1 len 56"
    );
    assert_eq!(
        lines[3],
        "in  tap0 +0.000000s c2 TCP 192.168.69.100:49152 > 192.168.69.1:7 [SYN] seq 0 win 64240 len 0 <mss 1460,sackOK,ts 1000 0,wscale 7> (handshake 1/3)"
    );
    assert_eq!(
        lines[4],
        "out tap0 +0.001000s c2 TCP 192.168.69.1:7 > 192.168.69.100:49152 [SYN,ACK] seq 0 ack 1 win 64240 len 0 (handshake 2/3)"
    );
    assert_eq!(
        lines[5],
        "in  tap0 +0.002000s c2 TCP 192.168.69.100:49152 > 192.168.69.1:7 [ACK] seq 1 ack 1 win 64240 len 0 (handshake 3/3)"
    );
    assert_eq!(
        lines[9],
        "in  tap0 +0.006000s c2 TCP 192.168.69.100:49152 > 192.168.69.1:7 [FIN,ACK] seq 6 ack 6 win 64240 len 0 (close: FIN 1)"
    );
    assert_eq!(
        lines[13],
        "in  tap0 +0.010000s IPv4 192.168.69.100 > 192.168.69.1 TCP MALFORMED: TCP data offset beyond packet (54 bytes)"
    );
    assert_eq!(t.malformed().get("TCP data offset beyond packet"), Some(&1));
}

#[test]
fn test_absolute_seq_option() {
    let mut t = Tracer::new(
        TraceConfig {
            device: "wire".into(),
            absolute_seq: true,
            ..TraceConfig::default()
        },
        UNIX_EPOCH,
    )
    .unwrap();
    t.frame(
        at(0),
        Direction::In,
        &Seg::new(PEER_PORT, ECHO, 1000).syn().inbound(),
    );
    t.frame(
        at(1),
        Direction::Out,
        &Seg::new(ECHO, PEER_PORT, 5000).syn().ack(1001).outbound(),
    );
    let lines: Vec<String> = t.recent_packets(0).map(|r| t.packet_line(r)).collect();
    assert!(
        lines[1].contains("[SYN,ACK] seq 5000 ack 1001 "),
        "{}",
        lines[1]
    );
}

#[test]
fn test_retransmission_flagged() {
    let mut t = tracer();
    let p = |s: u32| Seg::new(PEER_PORT, ECHO, s);
    t.frame(at(0), Direction::In, &p(1000).syn().inbound());
    t.frame(at(1000), Direction::In, &p(1000).syn().inbound());
    t.frame(
        at(1001),
        Direction::Out,
        &Seg::new(ECHO, PEER_PORT, 5000).syn().ack(1001).outbound(),
    );
    t.frame(at(1002), Direction::In, &p(1001).ack(5001).inbound());
    t.frame(
        at(1003),
        Direction::In,
        &p(1001).ack(5001).data(b"hello").inbound(),
    );
    t.frame(
        at(1400),
        Direction::In,
        &p(1001).ack(5001).data(b"hello").inbound(),
    );
    t.frame(
        at(1401),
        Direction::In,
        &p(1006).ack(5001).data(b"more").inbound(),
    );
    let p = packets(&t);
    assert_eq!(p[1].labels.as_slice(), ["handshake 1/3", "retransmission"]);
    assert!(!p[4].labels.contains("retransmission"));
    assert_eq!(p[5].labels.as_slice(), ["retransmission"]);
    assert!(p[6].labels.is_empty());
    let f = t.flow_records().next().unwrap();
    assert_eq!(f.inbound.retransmissions, 2);
    assert_eq!(f.handshake_us, Some(1_002_000));
    assert!(t.packet_line(&p[5]).ends_with("(retransmission)"));
}

#[test]
fn test_rst_to_closed_port_is_no_listener() {
    let mut t = tracer();
    t.frame(
        at(0),
        Direction::In,
        &Seg::new(PEER_PORT, 81, 1000).syn().inbound(),
    );
    t.frame(
        at(1),
        Direction::Out,
        &Seg::new(81, PEER_PORT, 0).rst().ack(1001).outbound(),
    );
    let p = packets(&t);
    assert_eq!(p[1].labels.as_slice(), ["reset by the stack"]);
    assert_eq!(p[1].rst_reason, Some("no listener"));
    assert!(t
        .packet_line(&p[1])
        .ends_with("(reset by the stack: no listener)"));
    let f = t.closed_flows().next().unwrap();
    assert_eq!(
        (f.close_reason, f.rst_by, f.rst_reason),
        (Some("RST"), Some(Side::Stack), Some("no listener"))
    );
    assert!(f
        .summary_line()
        .contains("closed by RST from the stack (no listener)"));
}

#[test]
fn test_rst_reason_hint_from_reactor() {
    let mut t = tracer();
    let local = sa(STACK4, ECHO);
    let remote = sa(PEER4, PEER_PORT);
    t.frame(
        at(0),
        Direction::In,
        &Seg::new(PEER_PORT, ECHO, 1000).syn().inbound(),
    );
    t.rst_reason(local, remote, "pool full");
    t.frame(
        at(1),
        Direction::Out,
        &Seg::new(ECHO, PEER_PORT, 0).rst().ack(1001).outbound(),
    );
    assert_eq!(packets(&t)[1].rst_reason, Some("pool full"));
    // The hint is used once.
    t.frame(
        at(2),
        Direction::In,
        &Seg::new(PEER_PORT, ECHO, 7000).syn().inbound(),
    );
    t.frame(
        at(3),
        Direction::Out,
        &Seg::new(ECHO, PEER_PORT, 0).rst().ack(7001).outbound(),
    );
    let p = packets(&t);
    assert_eq!(p[3].rst_reason, Some("no listener"));
    assert_ne!(
        p[0].conn, p[2].conn,
        "a new SYN on a closed 4-tuple is a new connection"
    );
}

#[test]
fn test_rst_from_peer_mid_connection() {
    let mut t = tracer();
    t.frame(
        at(0),
        Direction::Out,
        &Seg::new(40000, 80, 1).syn().outbound(),
    );
    t.frame(
        at(1),
        Direction::In,
        &Seg::new(80, 40000, 9).syn().ack(2).inbound(),
    );
    t.frame(
        at(2),
        Direction::Out,
        &Seg::new(40000, 80, 2).ack(10).outbound(),
    );
    t.frame(
        at(3),
        Direction::In,
        &Seg::new(80, 40000, 10).rst().inbound(),
    );
    let p = packets(&t);
    assert_eq!(p[2].labels.as_slice(), ["handshake 3/3"]);
    assert_eq!(p[3].labels.as_slice(), ["reset by the peer"]);
    assert_eq!(p[3].rst_reason, None);
    let f = t.closed_flows().next().unwrap();
    assert_eq!(f.opened_by, Some(Side::Stack));
    assert!(f
        .summary_line()
        .starts_with("c1 192.168.69.1:40000 -> 192.168.69.100:80 closed by RST from the peer"));
}

#[test]
fn test_tcp_state_ids_and_close() {
    let mut t = tracer();
    let local = sa(STACK4, ECHO);
    let remote = sa(PEER4, PEER_PORT);
    let events = Shared::default();
    t.set_events_writer(Box::new(events.clone()));
    t.tcp_state(at(0), local, None, "CLOSED", "LISTEN");
    t.frame(
        at(1),
        Direction::In,
        &Seg::new(PEER_PORT, ECHO, 1000).syn().inbound(),
    );
    t.tcp_state(at(1), local, Some(remote), "LISTEN", "SYN-RECEIVED");
    assert_eq!(t.flow_records().next().map(|f| f.id), Some(1));
    assert_eq!(t.alloc_id(), 2);
    t.tcp_state(at(5), local, Some(remote), "SYN-RECEIVED", "CLOSED");
    let f = t.closed_flows().next().unwrap();
    assert_eq!(f.close_reason, Some("CLOSED"));
    // Closing twice reports once.
    t.tcp_state(at(6), local, Some(remote), "CLOSED", "CLOSED");
    let text = events.text();
    assert_eq!(text.matches("\"conn_closed\"").count(), 1, "{text}");
    assert!(text.contains(r#""event":"tcp_state","t_us":1000,"conn":1,"local":"192.168.69.1:7","remote":"192.168.69.100:49152","from":"LISTEN","to":"SYN-RECEIVED""#), "{text}");
}

#[test]
fn test_events_are_json_lines_with_event_and_t_us() {
    let mut t = tracer();
    let events = Shared::default();
    t.set_events_writer(Box::new(events.clone()));
    t.ready(
        at(0),
        &[Endpoint {
            stack: StackKind::Stack,
            proto: Proto::Tcp,
            addr: sa(STACK4, ECHO),
            service: "echo",
        }],
    );
    echo_exchange(&mut t);
    t.dropped(
        at(20),
        Direction::In,
        &icmp4_echo(true, 1, 1, false),
        "fault injector",
    );
    t.error(at(21), "oops");
    let mut status = Status::default();
    status.stack.packets_in = 7;
    t.shutdown(at(22), &status);
    let text = events.text();
    let mut kinds = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["t_us"].is_i64(), "{line}");
        kinds.push(v["event"].as_str().unwrap().to_string());
    }
    for k in [
        "ready",
        "packet",
        "conn_closed",
        "drop",
        "error",
        "shutdown",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing: {kinds:?}");
    }
    let first_packet: serde_json::Value =
        serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    assert_eq!(first_packet["dir"], "in");
    assert_eq!(first_packet["tcp"]["flags"], "SYN");
    assert_eq!(first_packet["tcp"]["rel_seq"], 0);
    assert_eq!(first_packet["tcp"]["opts"]["mss"], 1460);
    assert_eq!(first_packet["labels"][0], "handshake 1/3");
    assert_eq!(first_packet["conn"], 1);
    assert_eq!(first_packet["ip"]["src"], "192.168.69.100");
    assert_eq!(first_packet["eth"]["src"], "02:00:00:00:00:02");
    assert!(first_packet["summary"].as_str().unwrap().contains("[SYN]"));
    let closed: serde_json::Value =
        serde_json::from_str(text.lines().find(|l| l.contains("conn_closed")).unwrap()).unwrap();
    assert_eq!(closed["inbound"]["bytes"], 5);
    assert_eq!(closed["outbound"]["segments"], 4);
    assert_eq!(closed["reason"], "FIN");
    let shutdown: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(shutdown["stack"]["packets_in"], 7);
    assert_eq!(shutdown["trace"]["packets"], 11);
}

#[test]
fn test_step_mode_enter_then_q() {
    let mut t = tracer();
    t.set_step_io(Box::new(Cursor::new("\nq\n")), Box::new(io::sink()));
    t.frame(at(0), Direction::In, &icmp4_echo(true, 1, 1, false));
    assert!(!t.quit_requested());
    t.frame(at(1), Direction::Out, &icmp4_echo(false, 1, 1, true));
    assert!(t.quit_requested());
}

#[test]
fn test_step_mode_c_and_eof_continue() {
    let mut t = tracer();
    t.set_step_io(Box::new(Cursor::new("c\nq\n")), Box::new(io::sink()));
    for i in 0..3 {
        t.frame(at(i), Direction::In, &icmp4_echo(true, 1, 1, false));
    }
    assert!(!t.quit_requested());
    let mut t = tracer();
    let prompts = Shared::default();
    t.set_step_io(Box::new(Cursor::new("")), Box::new(prompts.clone()));
    for i in 0..3 {
        t.frame(at(i), Direction::In, &icmp4_echo(true, 1, 1, false));
    }
    assert!(!t.quit_requested());
    assert_eq!(
        prompts.text().matches("Enter").count(),
        1,
        "EOF stops asking"
    );
}

#[test]
fn test_pcap_timestamps_are_wall_clock() {
    let epoch = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut t = Tracer::new(TraceConfig::default(), epoch).unwrap();
    let cap = Shared::default();
    t.set_pcap_writer(Box::new(cap.clone())).unwrap();
    let f1 = icmp4_echo(true, 1, 1, false);
    let f2 = icmp4_echo(false, 1, 1, true);
    t.frame(Instant::from_micros(1_500_000), Direction::In, &f1);
    t.frame(Instant::from_micros(2_000_001), Direction::Out, &f2);
    // Dropped on the way in: still captured. Dropped on the way out: captured once, by `frame`.
    t.dropped(
        Instant::from_micros(3_000_000),
        Direction::In,
        &f1,
        "fault injector",
    );
    t.dropped(
        Instant::from_micros(3_000_000),
        Direction::Out,
        &f2,
        "fault injector",
    );
    let b = cap.0.borrow();
    assert_eq!(&b[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
    let rec = |at: usize| -> (u32, u32, u32) {
        let w = |i: usize| u32::from_le_bytes(b[at + i..at + i + 4].try_into().unwrap());
        (w(0), w(4), w(8))
    };
    let mut at = 24;
    for (secs, us, len) in [
        (1_700_000_001, 500_000, f1.len()),
        (1_700_000_002, 1, f2.len()),
        (1_700_000_003, 0, f1.len()),
    ] {
        assert_eq!(rec(at), (secs, us, len as u32));
        at += 16 + len;
    }
    assert_eq!(at, b.len());
}

#[test]
fn test_dropped_frames_marked_in_records() {
    let mut t = tracer();
    let syn = Seg::new(PEER_PORT, ECHO, 1000).syn().inbound();
    let synack = Seg::new(ECHO, PEER_PORT, 5000).syn().ack(1001).outbound();
    t.frame(at(0), Direction::In, &syn);
    t.frame(at(1), Direction::Out, &synack);
    t.dropped(at(1), Direction::Out, &synack, "fault injector");
    t.dropped(
        at(2),
        Direction::In,
        &Seg::new(PEER_PORT, ECHO, 1001).ack(5001).inbound(),
        "fault injector",
    );
    let p = packets(&t);
    assert_eq!(p.len(), 3);
    assert_eq!(p[1].dropped, Some("fault injector"));
    assert_eq!(p[2].dropped, Some("fault injector"));
    assert!(t.packet_line(&p[2]).ends_with("DROPPED: fault injector"));
    let f = t.flow_records().next().unwrap();
    let segs: Vec<bool> = f.segments().map(|s| s.dropped).collect();
    assert_eq!(segs, [false, true, true]);
}

#[test]
fn test_udp_and_icmp_flows_recorded() {
    let mut t = tracer();
    t.frame(at(0), Direction::In, &icmp4_echo(true, 77, 1, false));
    t.frame(at(1), Direction::Out, &icmp4_echo(false, 77, 1, true));
    t.frame(
        at(2),
        Direction::In,
        &udp4(sa(PEER4, 5000), sa(STACK4, ECHO), b"hi", false),
    );
    t.frame(
        at(3),
        Direction::Out,
        &udp4(sa(STACK4, ECHO), sa(PEER4, 5000), b"hi", true),
    );
    let flows: Vec<&FlowRecord> = t.flow_records().collect();
    assert_eq!(flows.len(), 2);
    assert_eq!(flows[0].proto, "icmp");
    assert_eq!(flows[0].remote.port(), 77);
    let kinds: Vec<&str> = flows[0].segments().map(|s| s.kind).collect();
    assert_eq!(kinds, ["echo request", "echo reply"]);
    assert_eq!(flows[1].proto, "udp");
    assert_eq!((flows[1].inbound.bytes, flows[1].outbound.bytes), (2, 2));
    assert_eq!(t.closed_flows().count(), 0, "only TCP flows close");
}

#[test]
fn test_flow_table_is_bounded() {
    let mut t = tracer();
    t.set_flow_cap(2);
    for port in 1..=5u16 {
        t.frame(
            at(port as i64),
            Direction::In,
            &udp4(sa(PEER4, port), sa(STACK4, 9), b"x", false),
        );
    }
    assert_eq!(t.flow_records().count(), 2);
    assert_eq!(t.flow_evictions(), 3);
    // Live TCP flows go last, and when they must go they are closed as "evicted".
    let mut t = tracer();
    t.set_flow_cap(1);
    t.frame(at(0), Direction::In, &Seg::new(1, 2, 3).syn().inbound());
    t.frame(at(1), Direction::In, &Seg::new(4, 5, 6).syn().inbound());
    assert_eq!(
        t.closed_flows().next().unwrap().close_reason,
        Some("evicted")
    );
}

#[test]
fn test_closed_and_udp_flows_are_retired_past_the_evictable_limit() {
    // Every closed connection used to stay in the table (with its segment record) until the table
    // was full: tens of MiB after a few thousand connections. Now at most EVICTABLE_KEPT stay.
    let mut t = tracer();
    let n = flow::EVICTABLE_KEPT as u16 + 500;
    for port in 1..=n {
        t.frame(
            at(port as i64),
            Direction::In,
            &udp4(sa(PEER4, port), sa(STACK4, 9), b"x", false),
        );
    }
    assert_eq!(t.flow_count(), flow::EVICTABLE_KEPT);
    assert_eq!(
        t.flow_evictions(),
        0,
        "retiring is not evicting a live flow"
    );
    // A live TCP flow is never retired, however many flows close after it.
    t.frame(
        at(100_000),
        Direction::In,
        &Seg::new(1, 2, 3).syn().inbound(),
    );
    for port in 1..=n {
        t.frame(
            at(200_000 + port as i64),
            Direction::In,
            &udp4(sa(PEER4, port), sa(STACK4, 19), b"x", false),
        );
    }
    assert_eq!(t.flow_count(), flow::EVICTABLE_KEPT + 1);
    assert!(t.flow_records().any(|f| f.proto == "tcp"));
}

#[test]
fn test_segment_record_keeps_first_and_last_64() {
    let mut t = tracer();
    t.frame(
        at(0),
        Direction::In,
        &Seg::new(PEER_PORT, ECHO, 0).syn().inbound(),
    );
    for i in 0..200u32 {
        t.frame(
            at(1 + i as i64),
            Direction::In,
            &Seg::new(PEER_PORT, ECHO, 1 + i).ack(1).data(b"x").inbound(),
        );
    }
    let f = t.flow_records().next().unwrap();
    assert_eq!(f.first.len(), 64);
    assert_eq!(f.last.len(), 64);
    assert_eq!(f.folded, 201 - 128);
    assert_eq!(f.last.back().unwrap().seq, 200);
    assert_eq!(f.inbound.segments, 201);
}

#[test]
fn test_recent_packets_since() {
    let mut t = tracer();
    for i in 0..5 {
        t.frame(at(i), Direction::In, &icmp4_echo(true, 1, i as u16, false));
    }
    let seqs: Vec<u64> = t.recent_packets(3).map(|r| r.seq).collect();
    assert_eq!(seqs, [4, 5]);
    assert_eq!(t.recent_packets(5).count(), 0);
    assert_eq!(t.recent_packets(99).count(), 0);
    assert_eq!(t.last_packet_seq(), 5);
    let mut ring = records::PacketRing::new(3);
    for _ in 0..10 {
        ring.push(packets(&t)[0]);
    }
    assert_eq!(ring.since(0).map(|r| r.seq).collect::<Vec<_>>(), [8, 9, 10]);
    assert_eq!(ring.since(8).map(|r| r.seq).collect::<Vec<_>>(), [9, 10]);
}

#[test]
fn test_malformed_counted_and_merged() {
    let mut t = tracer();
    t.frame(at(0), Direction::In, &[0u8; 5]);
    t.frame(at(1), Direction::In, &[0u8; 5]);
    let mut bad = icmp4_echo(true, 1, 1, false);
    bad[14 + 10] ^= 1;
    t.frame(at(2), Direction::In, &bad);
    assert_eq!(t.malformed().get("truncated Ethernet header"), Some(&2));
    assert_eq!(t.malformed().get("bad IPv4 checksum"), Some(&1));
    let mut c = Counters::default();
    t.merge_into(&mut c);
    t.merge_into(&mut c);
    assert_eq!(
        c.drops.get("malformed: truncated Ethernet header"),
        Some(&2)
    );
    assert_eq!(c.drops.get("malformed: bad IPv4 checksum"), Some(&1));
    let line = t.packet_line(&packets(&t)[0]);
    assert_eq!(
        line,
        "in  tap0 +0.000000s MALFORMED: truncated Ethernet header (5 bytes)"
    );
    // A frame with a bad checksum is not followed as part of a flow.
    assert_eq!(t.flow_records().count(), 0);
}

#[test]
fn test_ipv6_ndp_and_echo_lines() {
    let mut t = tracer();
    t.frame(at(0), Direction::In, &neighbor_solicit(STACK6));
    t.frame(at(1), Direction::In, &icmp6_echo_request(5, 1));
    let lines: Vec<String> = t.recent_packets(0).map(|r| t.packet_line(r)).collect();
    assert_eq!(
        lines[0],
        "in  tap0 +0.000000s ICMPv6 fe80::2 > ff02::1:ff00:1 neighbor solicitation: who has fe80::1? len 0"
    );
    assert_eq!(
        lines[1],
        "in  tap0 +0.001000s c1 ICMPv6 fe80::2 > fe80::1 echo request id 5 seq 1 len 4"
    );
}

#[test]
fn test_wall_epoch_before_zero_is_clamped() {
    let mut t = Tracer::new(TraceConfig::default(), SystemTime::UNIX_EPOCH).unwrap();
    let cap = Shared::default();
    t.set_pcap_writer(Box::new(cap.clone())).unwrap();
    t.frame(Instant::from_micros(-5), Direction::In, &[0u8; 3]);
    assert_eq!(cap.0.borrow().len(), 24 + 16 + 3);
}

#[test]
fn test_logging_paths_with_every_target_enabled() {
    let _ = env_logger::builder()
        .is_test(true)
        .filter_level(log::LevelFilter::Trace)
        .try_init();
    let mut t = tracer();
    assert!(t.lines && t.hex && t.explain_on && t.tcp_log);
    t.tcp_state(at(0), sa(STACK4, ECHO), None, "CLOSED", "LISTEN");
    echo_exchange(&mut t);
    t.frame(at(10), Direction::In, &[0u8; 3]);
    t.frame(at(11), Direction::In, &icmp6_echo_request(1, 1));
    let synack = Seg::new(ECHO, PEER_PORT, 1).syn().ack(1).outbound();
    t.frame(at(12), Direction::Out, &synack);
    t.dropped(at(12), Direction::Out, &synack, "fault injector");
    assert_eq!(t.explained_addrs.len(), 4);
    assert!(t.explained_dynamic);
}

#[test]
fn test_offloaded_segments_say_how_many_wire_frames_they_stand_for() {
    let mut t = tracer();
    t.set_wire_mtu(Some(1500));
    // 20 bytes of IPv4 and 20 of TCP: 1460 bytes of payload per 1500-byte frame.
    let big = Seg::new(ECHO, PEER_PORT, 1)
        .ack(1)
        .data(&[7u8; 14_600])
        .outbound();
    let exact = Seg::new(ECHO, PEER_PORT, 1)
        .ack(1)
        .data(&[7u8; 1460])
        .outbound();
    let odd = Seg::new(PEER_PORT, ECHO, 1)
        .ack(1)
        .data(&[7u8; 1461])
        .inbound();
    t.frame(at(0), Direction::Out, &big);
    t.frame(at(1), Direction::Out, &exact);
    t.frame(at(2), Direction::In, &odd);
    let p: Vec<&PacketRecord> = t.recent_packets(0).collect();
    assert_eq!(p[0].wire_frames, Some(10));
    assert_eq!(p[1].wire_frames, None, "fits one frame");
    assert_eq!(p[2].wire_frames, Some(2));
    assert!(
        t.packet_line(p[0])
            .ends_with("len 14600 (offload: 10 wire-sized frames)"),
        "{}",
        t.packet_line(p[0])
    );
    let json = serde_json::to_value(p[0]).unwrap();
    assert_eq!(json["wire_frames"], 10);
    // Without offload nothing is said.
    let mut t = tracer();
    t.frame(at(0), Direction::Out, &big);
    assert_eq!(t.recent_packets(0).next().unwrap().wire_frames, None);
}

#[test]
fn test_unnamed_client_ports_are_explained_once_per_range() {
    let mut t = tracer();
    t.explain_on = true;
    for (i, port) in [40000u16, 40001, 50000, 50001, 8080]
        .into_iter()
        .enumerate()
    {
        t.frame(
            at(i as i64),
            Direction::In,
            &Seg::new(port, ECHO, 1).syn().inbound(),
        );
    }
    assert!(t.explained_registered && t.explained_dynamic);
    // Only named ports are remembered one by one.
    let mut ports: Vec<u16> = t.explained_ports.iter().copied().collect();
    ports.sort();
    assert_eq!(ports, [ECHO, 8080]);
}

/// A handshake with window scaling both ways (peer shift 7, stack shift 10), frames 1-3.
fn scaled_handshake(t: &mut Tracer) {
    let p = |s: u32| Seg::new(PEER_PORT, ECHO, s);
    let s = |q: u32| Seg::new(ECHO, PEER_PORT, q);
    t.frame(at(0), Direction::In, &p(1000).syn().opts().inbound());
    t.frame(
        at(1),
        Direction::Out,
        &s(5000).syn().ack(1001).mss(1460).wscale(10).outbound(),
    );
    t.frame(
        at(2),
        Direction::In,
        &p(1001).ack(5001).window(502).inbound(),
    );
}

#[test]
fn test_duplicate_acks_name_their_number_and_frame_and_windows_show_scaled() {
    let mut t = tracer();
    scaled_handshake(&mut t);
    let s = |q: u32| Seg::new(ECHO, PEER_PORT, q);
    let p = |q: u32| Seg::new(PEER_PORT, ECHO, q);
    // The stack sends 3 segments; the first is lost before the capture point of the peer, which
    // SACKs the other two and repeats its ACK.
    t.frame(
        at(3),
        Direction::Out,
        &s(5001).ack(1001).window(63).data(&[0; 1460]).outbound(),
    );
    t.frame(
        at(4),
        Direction::Out,
        &s(6461).ack(1001).window(63).data(&[0; 1460]).outbound(),
    );
    let sack = |q: u32, r: u32| {
        let mut o = vec![1, 1, 5, 10];
        o.extend_from_slice(&q.to_be_bytes());
        o.extend_from_slice(&r.to_be_bytes());
        o
    };
    t.frame(
        at(5),
        Direction::In,
        &p(1001)
            .ack(5001)
            .window(502)
            .option_bytes(&sack(6461, 7921))
            .inbound(),
    );
    t.frame(
        at(6),
        Direction::In,
        &p(1001)
            .ack(5001)
            .window(502)
            .option_bytes(&sack(6461, 7921))
            .inbound(),
    );
    let recs = packets(&t);
    let lines: Vec<String> = recs.iter().map(|r| t.packet_line(r)).collect();
    assert!(
        lines[3].contains("win 63 (x1024 = 64,512) len 1460"),
        "{}",
        lines[3]
    );
    assert!(
        !lines[1].contains("(x"),
        "a SYN's window is never scaled: {}",
        lines[1]
    );
    assert!(lines[5].contains("<sack 1461-2921>"), "{}", lines[5]);
    assert!(
        lines[5].contains("(duplicate ACK #1 of frame 3)"),
        "{}",
        lines[5]
    );
    assert!(
        lines[6].contains("(duplicate ACK #2 of frame 3)"),
        "{}",
        lines[6]
    );
    let ev = serde_json::to_value(recs[6]).unwrap();
    assert_eq!(ev["tcp"]["dup_ack"]["num"], 2);
    assert_eq!(ev["tcp"]["dup_ack"]["frame"], 3);
    assert_eq!(ev["tcp"]["window_size"], 502 << 7);
    assert_eq!(ev["tcp"]["sack"][0][0], 1461);
    // A fast retransmission right after the second duplicate.
    t.frame(
        at(7),
        Direction::Out,
        &s(5001).ack(1001).window(63).data(&[0; 1460]).outbound(),
    );
    let last = *t.recent_packets(0).last().unwrap();
    assert!(
        last.labels.contains("fast retransmission"),
        "{:?}",
        last.labels
    );
    assert!(!last.labels.contains("retransmission"));
}

#[test]
fn test_analysis_labels_are_explained_once_each() {
    let mut t = tracer();
    t.explain_on = true;
    scaled_handshake(&mut t);
    assert_eq!(t.explained_labels, 0);
    let p = |q: u32| Seg::new(PEER_PORT, ECHO, q);
    for ms in 3..6 {
        t.frame(
            at(ms),
            Direction::In,
            &p(1001).ack(5001).window(502).inbound(),
        );
    }
    assert_eq!(t.explained_labels, analysis::kind::DUPLICATE_ACK);
    // Our SYN's MSS sized by segmentation offload past the wire's MTU is explained once too.
    let mut t = tracer();
    t.explain_on = true;
    t.set_wire_mtu(Some(1500));
    t.frame(at(0), Direction::In, &p(1000).syn().opts().inbound());
    assert!(!t.explained_offload_mss, "the peer's MSS fits its MTU");
    let syn_ack = Seg::new(ECHO, PEER_PORT, 5000).syn().ack(1001).mss(65495);
    t.frame(at(1), Direction::Out, &syn_ack.outbound());
    assert!(t.explained_offload_mss);
}

#[test]
fn test_a_dropped_third_ack_does_not_complete_the_handshake_the_next_one_does() {
    let mut t = tracer();
    let p = |q: u32| Seg::new(PEER_PORT, ECHO, q);
    let s = |q: u32| Seg::new(ECHO, PEER_PORT, q);
    t.frame(at(0), Direction::In, &p(1000).syn().opts().inbound());
    t.frame(
        at(1),
        Direction::Out,
        &s(5000).syn().ack(1001).opts().outbound(),
    );
    // Lost on the way in: seen at the device, never reached the stack.
    t.dropped(
        at(2),
        Direction::In,
        &p(1001).ack(5001).inbound(),
        "fault injector",
    );
    t.frame(
        at(3),
        Direction::In,
        &p(1001).ack(5001).psh().data(b"hi").inbound(),
    );
    let recs = packets(&t);
    assert!(
        !recs[2].labels.contains("handshake 3/3"),
        "{:?}",
        recs[2].labels
    );
    assert!(
        recs[3].labels.contains("handshake 3/3"),
        "{:?}",
        recs[3].labels
    );

    // Our own third ACK, lost on the way out after it was seen.
    let mut t = tracer();
    t.frame(at(0), Direction::Out, &s(5000).syn().opts().outbound());
    t.frame(
        at(1),
        Direction::In,
        &p(1000).syn().ack(5001).opts().inbound(),
    );
    let ack = s(5001).ack(1001).outbound();
    t.frame(at(2), Direction::Out, &ack);
    t.dropped(at(2), Direction::Out, &ack, "fault injector");
    let recs = packets(&t);
    assert!(
        !recs[2].labels.contains("handshake 3/3"),
        "{:?}",
        recs[2].labels
    );
    let f = t.flow_records().last().unwrap();
    assert!(f.segments().all(|s| !s.labels.contains("handshake 3/3")));
    assert_eq!(f.handshake_us, None);
    t.frame(
        at(3),
        Direction::Out,
        &s(5001).ack(1001).psh().data(b"x").outbound(),
    );
    let last = *t.recent_packets(0).last().unwrap();
    assert!(last.labels.contains("handshake 3/3"), "{:?}", last.labels);
}

#[test]
fn test_idle_connection_reserves_room_for_its_handshake_only() {
    let mut t = tracer();
    let p = |s: u32| Seg::new(PEER_PORT, ECHO, s);
    t.frame(at(0), Direction::In, &p(1000).syn().opts().inbound());
    t.frame(
        at(1),
        Direction::Out,
        &Seg::new(ECHO, PEER_PORT, 5000).syn().ack(1001).outbound(),
    );
    t.frame(at(2), Direction::In, &p(1001).ack(5001).inbound());
    let f = t.flow_records().next().unwrap();
    assert_eq!(f.first.len(), 3);
    // Room for four records (0.9 KiB), not sixteen: 10,000 idle connections hold 9 MiB, not 35.
    assert_eq!(f.first.capacity(), 4);
}
