//! The stack on an in-memory wire, frames in by hand, on a fake clock.

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};
use std::net::SocketAddr;

use super::event::Refusal;
use super::sockets::StaleHandle;
use super::*;
use crate::device::wire::{wire, WireEnd};
use crate::device::{FrameIo, Nic};
use crate::service::{ServiceKind, Settings};
use crate::status::Status;

/// The stack's test frames, from the shared builders: the harness's client (192.168.69.100,
/// 02:..:02) talking to the stack (192.168.69.1, 02:..:01).
pub(crate) mod test_frames {
    use crate::frames::{Arp, Eth, Tcp, CLIENT_MAC, CLIENT_V4, SERVER_MAC, SERVER_V4};

    /// An ARP reply telling the stack where the client is.
    pub(crate) fn arp_reply() -> Vec<u8> {
        Eth::to_server().arp(&Arp::reply(CLIENT_MAC, CLIENT_V4, SERVER_MAC, SERVER_V4))
    }

    /// A SYN from the client's `src_port` to the stack's `dst_port`.
    pub(crate) fn syn(src_port: u16, dst_port: u16) -> Vec<u8> {
        Tcp::new(src_port, dst_port, 1000)
            .syn()
            .mss(1460)
            .to_server()
    }

    /// A segment without options; `ack`, if any, sets ACK.
    pub(crate) fn segment(src_port: u16, dst_port: u16, seq: u32, ack: Option<u32>) -> Tcp {
        let t = Tcp::new(src_port, dst_port, seq);
        match ack {
            Some(n) => t.ack(n),
            None => t,
        }
    }
}

/// Records every event it is told.
#[derive(Default)]
pub(super) struct Recorder(pub(super) Vec<StackEvent>);

impl crate::device::Observer for Recorder {
    fn frame(&mut self, _: Instant, _: crate::device::Direction, _: &[u8]) {}
    fn dropped(&mut self, _: Instant, _: crate::device::Direction, _: &[u8], _: &'static str) {}
}

impl StackObserver for Recorder {
    fn event(&mut self, _: Instant, ev: &StackEvent) {
        self.0.push(*ev);
    }
}

pub(super) fn stack_on_wire(max_connections: usize) -> (Stack<Recorder>, WireEnd) {
    let (a, b) = wire();
    let nic = Nic::new(Box::new(a) as Box<dyn FrameIo>, Recorder::default());
    let cfg = StackConfig {
        mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
        addrs: vec![IpCidr::new(IpAddress::v4(192, 168, 69, 1), 24)],
        gateway_v4: None,
        gateway_v6: None,
        random_seed: 7,
        max_connections,
        tcp_buffer: 4096,
    };
    let mut stack = Stack::new(&cfg, nic, Instant::ZERO);
    stack.serve_tcp(ServiceKind::Echo, 7);
    (stack, b)
}

pub(super) fn turn<O: StackObserver>(stack: &mut Stack<O>, status: &mut Status, now: Instant) {
    stack.serve_turn(now, std::time::UNIX_EPOCH, 64, status, &Settings::default());
}

#[test]
fn test_half_open_connections_time_out_and_give_way_at_the_limit() {
    let (mut stack, mut peer) = stack_on_wire(2);
    let mut status = Status::default();
    let mut now = Instant::ZERO;
    // Three spoofed SYNs that nobody will ever complete; the limit is two.
    for port in [40001, 40002, 40003] {
        peer.send(&test_frames::syn(port, 7)).unwrap();
        turn(&mut stack, &mut status, now);
    }
    assert_eq!(stack.connection_count(), 2, "the limit holds");
    let evicted = "tcp: half-open connection evicted at the connection limit";
    assert_eq!(stack.counters().drops.get(evicted), Some(&1));
    assert_eq!(
        stack.counters().conns_refused,
        0,
        "a half-open one gave way instead"
    );
    assert_eq!(status.conns.len(), 2, "the evicted one's row is gone");
    // Without answers, the handshakes time out and the sockets return.
    let mut buf = [0u8; 1600];
    while now < Instant::ZERO + HANDSHAKE_TIMEOUT + Duration::from_secs(1) {
        now += Duration::from_millis(250);
        turn(&mut stack, &mut status, now);
        while peer.recv(&mut buf).unwrap().is_some() {}
    }
    assert_eq!(stack.connection_count(), 0);
    assert_eq!(
        stack
            .counters()
            .drops
            .get("tcp: handshake timed out (no answer to SYN-ACK)"),
        Some(&2)
    );
    assert_eq!(stack.listener_count(), 1, "the port listens again");
    assert!(status.conns.is_empty(), "no row is left behind");
    // Every connection that was opened was closed, once, with its cause.
    let ev = &stack.observer().0;
    let opened: Vec<u64> = ev
        .iter()
        .filter_map(|e| match e {
            StackEvent::Opened { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect();
    let mut closed: Vec<(u64, CloseCause)> = ev
        .iter()
        .filter_map(|e| match e {
            StackEvent::Closed { conn, cause, .. } => Some((*conn, *cause)),
            _ => None,
        })
        .collect();
    closed.sort_by_key(|c| c.0);
    assert_eq!(opened, [1, 2, 3]);
    assert_eq!(
        closed,
        [
            (1, CloseCause::Evicted),
            (2, CloseCause::TimedOut(Timeout::Handshake)),
            (3, CloseCause::TimedOut(Timeout::Handshake)),
        ]
    );
}

#[test]
fn test_refused_syn_is_told_with_its_reason() {
    let (mut stack, mut peer) = stack_on_wire(8);
    let mut status = Status::default();
    peer.send(&test_frames::syn(40000, 9)).unwrap();
    turn(&mut stack, &mut status, Instant::ZERO);
    assert!(stack.observer().0.iter().any(|e| matches!(
        e,
        StackEvent::Refused {
            why: Refusal::NoListener,
            ..
        }
    )));
}

/// Completes a handshake with a SYN from port 40000; returns the stack's ISN + 1.
fn establish(stack: &mut Stack<Recorder>, peer: &mut WireEnd, status: &mut Status) -> i32 {
    peer.send(&test_frames::arp_reply()).unwrap();
    peer.send(&test_frames::syn(40000, 7)).unwrap();
    turn(stack, status, Instant::ZERO);
    let mut buf = [0u8; 1600];
    let mut isn = None;
    while let Some(n) = peer.recv(&mut buf).unwrap() {
        if let Some(p) = peek_tcp(&buf[..n]) {
            if p.syn && p.ack {
                isn = Some(p.seq as i32);
            }
        }
    }
    let isn = isn.expect("a SYN-ACK");
    let ack = test_frames::segment(40000, 7, 1001, Some(isn.wrapping_add(1) as u32));
    peer.send(&ack.to_server()).unwrap();
    turn(stack, status, Instant::ZERO);
    isn.wrapping_add(1)
}

#[test]
fn test_rst_is_judged_by_the_socket_own_window() {
    let (mut stack, mut peer) = stack_on_wire(8);
    let mut status = Status::default();
    let ours = establish(&mut stack, &mut peer, &mut status);
    let mut states = stack.tcp_states();
    states.sort_by_key(|s| state_name(*s));
    assert_eq!(states, [tcp::State::Established, tcp::State::Listen]);
    // In the window but not RCV.NXT (1001): ignored, and told why.
    let blind = test_frames::segment(40000, 7, 1100, Some(ours as u32)).rst();
    peer.send(&blind.to_server()).unwrap();
    turn(&mut stack, &mut status, Instant::ZERO);
    // Far outside the window: ignored too.
    let far = test_frames::segment(40000, 7, 1001 + 1_000_000, Some(ours as u32)).rst();
    peer.send(&far.to_server()).unwrap();
    turn(&mut stack, &mut status, Instant::ZERO);
    assert_eq!(stack.connection_count(), 1, "still connected");
    let ignored: Vec<RstIgnored> = stack
        .observer()
        .0
        .iter()
        .filter_map(|e| match e {
            StackEvent::RstIgnored { why, .. } => Some(*why),
            _ => None,
        })
        .collect();
    assert_eq!(ignored, [RstIgnored::NotExact, RstIgnored::OutsideWindow]);
    // Exactly RCV.NXT: the connection is reset.
    let exact = test_frames::segment(40000, 7, 1001, Some(ours as u32)).rst();
    peer.send(&exact.to_server()).unwrap();
    turn(&mut stack, &mut status, Instant::ZERO);
    assert_eq!(stack.connection_count(), 0);
    assert!(stack.observer().0.iter().any(|e| matches!(
        e,
        StackEvent::Closed {
            cause: CloseCause::ResetByPeer,
            ..
        }
    )));
    assert!(status.conns.is_empty());
}

#[test]
fn test_client_ports_are_unique_and_return_when_the_socket_goes() {
    let (mut stack, _peer) = stack_on_wire(8);
    let mut status = Status::default();
    let remote: SocketAddr = "192.168.69.100:7".parse().unwrap();
    let handles: Vec<TcpHandle> = (0..500)
        .map(|_| stack.tcp_connect(remote).unwrap())
        .collect();
    let ports: std::collections::HashSet<u16> = handles
        .iter()
        .map(|&h| stack.tcp(h).unwrap().local_endpoint().unwrap().port)
        .collect();
    assert_eq!(ports.len(), 500);
    assert_eq!(stack.ports.in_use(), &ports);
    let gone = handles[0];
    let port = stack.tcp(gone).unwrap().local_endpoint().unwrap().port;
    stack.tcp_abort(gone);
    turn(&mut stack, &mut status, Instant::ZERO);
    assert!(
        !stack.ports.in_use().contains(&port),
        "released with its socket"
    );
    assert_eq!(stack.ports.in_use().len(), 499);
}

#[test]
fn test_a_released_handle_is_stale_even_when_its_slot_is_reused() {
    let (mut stack, _peer) = stack_on_wire(8);
    let mut status = Status::default();
    let remote: SocketAddr = "192.168.69.100:7".parse().unwrap();
    let old = stack.tcp_connect(remote).unwrap();
    stack.tcp_abort(old);
    turn(&mut stack, &mut status, Instant::ZERO);
    assert_eq!(stack.tcp(old).err(), Some(StaleHandle));
    let new = stack.tcp_connect(remote).unwrap();
    assert_ne!(old, new);
    assert_eq!(
        stack.tcp(old).err(),
        Some(StaleHandle),
        "never the new socket"
    );
    assert!(stack.tcp(new).is_ok());
    stack.tcp_release(new);
    assert_eq!(stack.tcp(new).err(), Some(StaleHandle), "released is stale");
}

/// The peer sends its FIN, echo closes (LAST-ACK), and the peer never acknowledges ours: smoltcp
/// would retransmit it for ever. The entry's own deadline wakes it exactly [`ORPHAN_TIMEOUT`] after
/// our FIN; it is told as `Closed` with `TimedOut(Orphan(LAST-ACK))` (no state change before it, so
/// the tracer closes the flow for that reason), then reset, and its status row and slot are free.
#[test]
fn test_last_ack_held_by_a_silent_peer_is_reset_at_its_deadline() {
    let (mut stack, mut peer) = stack_on_wire(8);
    let mut status = Status::default();
    let our_next = establish(&mut stack, &mut peer, &mut status);
    let fin = test_frames::segment(40000, 7, 1001, Some(our_next as u32)).fin();
    peer.send(&fin.to_server()).unwrap();
    let mut now = Instant::ZERO;
    turn(&mut stack, &mut status, now);
    assert_eq!(
        stack.tcp_states(),
        [tcp::State::LastAck, tcp::State::Listen]
    );
    let closed_at = now;
    let mut buf = [0u8; 1600];
    let mut rst_after_closed = None;
    // Jump from deadline to deadline, as the reactor sleeps.
    while stack.connection_count() > 0 {
        now = stack.poll_at(now).expect("a deadline while LAST-ACK lasts");
        assert!(now <= closed_at + ORPHAN_TIMEOUT, "{now}");
        if now >= closed_at + ORPHAN_TIMEOUT - Duration::from_secs(1) {
            // The peer's host still answers ARP (smoltcp forgets a neighbour after 60 s).
            peer.send(&test_frames::arp_reply()).unwrap();
        }
        let seen = stack.observer().0.len();
        turn(&mut stack, &mut status, now);
        while let Some(n) = peer.recv(&mut buf).unwrap() {
            if peek_tcp(&buf[..n]).is_some_and(|p| p.rst) {
                rst_after_closed = Some(stack.observer().0[seen..].to_vec());
            }
        }
    }
    assert_eq!(now, closed_at + ORPHAN_TIMEOUT, "woken by its own deadline");
    let mut told = rst_after_closed.expect("an RST to the peer");
    // Timeouts of our FIN may be told that turn too (the peer is silent).
    told.retain(|ev| !matches!(ev, StackEvent::LossRepair { .. }));
    assert!(
        matches!(
            told[..],
            [
                StackEvent::Figures { .. },
                StackEvent::Closed {
                    cause: CloseCause::TimedOut(Timeout::Orphan(tcp::State::LastAck)),
                    ..
                }
            ]
        ),
        "{told:?}"
    );
    assert_eq!(
        stack
            .counters()
            .drops
            .get("tcp: LAST-ACK timed out (the peer never acknowledged our FIN), reset"),
        Some(&1)
    );
    assert!(status.conns.is_empty(), "no row is left behind");
    assert_eq!(stack.listener_count(), 1);
}

/// At the limit a SYN to another served port is refused even though that port has its listener.
#[test]
fn test_the_limit_holds_across_ports_with_listeners() {
    let (mut stack, mut peer) = stack_on_wire(1);
    stack.serve_tcp(ServiceKind::Discard, 9);
    let mut status = Status::default();
    establish(&mut stack, &mut peer, &mut status);
    assert_eq!(stack.connection_count(), 1);
    assert_eq!(stack.listener_count(), 1, "port 9 still listens");
    peer.send(&test_frames::syn(40001, 9)).unwrap();
    turn(&mut stack, &mut status, Instant::ZERO);
    assert_eq!(stack.connection_count(), 1);
    assert_eq!(stack.counters().conns_refused, 1);
    assert!(stack.observer().0.iter().any(|e| matches!(
        e,
        StackEvent::Refused {
            why: Refusal::ConnectionLimit,
            ..
        }
    )));
}
