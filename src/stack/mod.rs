//! The userspace side: a smoltcp `Interface` on a [`Nic`], with the listener pools, connection table
//! and demultiplexing that let smoltcp serve thousands of connections, and the services on top.
//!
//! Where to look:
//! - [`demux`]: which socket a segment goes to (4-tuple map, the peek before smoltcp).
//! - `listen`: listener pools, the connection limit, half-open eviction, refusals.
//! - `table`: entries, their life (`Handshake / Open / Closing`), deadlines, recycled sockets.
//! - `ports`: ephemeral ports. `sockets`: the client-socket API ([`TcpHandle`]).
//! - `serve`: the services driven over their sockets.
//! - `timewait`: TIME-WAIT held for real (2 x MSL) in a compact table, after the socket is back.
//! - [`event`]: what the stack tells its observer ([`StackEvent`]).
//! - here: the turn's phases (ingress, egress), state changes, timeouts and removal.
//!
//! How it scales. Only entries touched in a turn (a frame arrived, the app used them, a timer fell
//! due) get services, egress and state checks; their next deadlines sit in an ordered index. UDP and
//! ICMP sockets share one small set, which also takes ARP, NDP and the TCP segments no entry owns
//! (smoltcp answers those with RST, as a kernel would).

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address, Ipv6Address, TcpSeqNumber,
};
use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::device::{FrameIo, Nic};
use crate::service::Settings;
use crate::status::{Counters, Endpoint, Proto, StackKind, Status};

pub(crate) mod demux;
pub(crate) mod event;
mod listen;
mod neighbours;
mod ports;
mod serve;
mod sockets;
mod table;
#[cfg(test)]
mod tests;
mod timewait;

pub(crate) use demux::{ipv6_undeliverable, peek_tcp, to_socket_addr, TcpPeek};
pub(crate) use event::{
    state_name, CloseCause, ConnIds, RstIgnored, StackEvent, StackObserver, TimeWaitAck,
    TimeWaitCut, Timeout,
};
pub use event::{LossRepair, TcpFigures};
pub(crate) use timewait::DEFAULT_TIME_WAIT;

pub(crate) use sockets::{ConnectError, TcpHandle};

use demux::Demux;
use listen::Listen;
use neighbours::Neighbours;
use ports::Ports;
use serve::UdpService;
use table::{Life, Role, Table};
use timewait::{TimeWait, TwEntry, Verdict};

/// Socket buffer per direction and TCP connection on the in-memory wire (the demo, the harness): no
/// delay there, so 64 KiB keeps a window of a few dozen segments.
pub const TCP_BUFFER: usize = 64 * 1024;
/// The same where the device offloads segmentation: 64 KiB segments need a window of several of them,
/// well above the 64 frames of one ingress batch, or a bulk sender waits for our ACK (window scaling).
/// Both are also where a served connection's windows start (see [`TCP_BUFFER_TAP`]).
pub(crate) const TCP_BUFFER_OFFLOAD: usize = 256 * 1024;
/// The buffer on a TAP device unless `--max-window` says otherwise: a path with delay needs its
/// bandwidth-delay product (1 Gbit/s over a 10 ms round trip is 1.25 MB). Memory follows use, not
/// the size: the arenas are lazily zeroed pages and smoltcp's ring buffer starts again at offset 0
/// whenever it empties, so a buffer's resident size is its high-water mark of queued data. And a
/// served connection uses only what its traffic shows it needs, like Linux's auto-tuning: the
/// receive window starts at [`TCP_BUFFER`] ([`TCP_BUFFER_OFFLOAD`] with offload) and doubles when
/// the service read more than half of it in one RTT; the service queues at most
/// max(that start, 2 x min(cwnd, peer's window)) to send. A peer that stops reading (or whose data
/// nobody reads) so holds the starting size, not 4 MiB.
pub(crate) const TCP_BUFFER_TAP: usize = 4 << 20;
/// A connection that has not finished its handshake by then is dropped (its peer never answered the
/// SYN-ACK: a spoofed SYN, or a peer that went away), and its socket returns to the pool.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a served connection waits in FIN-WAIT-2 for the peer's FIN after the service closed
/// (Linux's `tcp_fin_timeout` is also 60 s). Without it a peer that never closes holds a connection
/// slot, and enough of them fill `--max-connections`.
pub(crate) const FIN_WAIT2_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a peer may hold a connection open after we closed it (FIN-WAIT-1, CLOSING, LAST-ACK),
/// counted from our FIN: a window kept at zero (the peer never reads our last data, so the FIN never
/// goes) or silence (our FIN is never acknowledged; smoltcp retransmits it for ever). Then the
/// connection is reset and its slot is free. Linux aborts such an orphan once its retries run out
/// (`tcp_orphan_retries`, 8 by default; the issue measured the host side freeing the same client in
/// 8-10 s); we bound time rather than retries, because a peer that answers every zero-window probe
/// never lets a retry count grow. 60 s, like [`FIN_WAIT2_TIMEOUT`]: a connection we closed holds its
/// slot at most 60 s in each phase of the close, and a reader as slow as 1.1 KiB/s (4.3 KiB/s with
/// the 256 KiB offload buffers) still gets every byte of a full send buffer within the bound.
pub(crate) const ORPHAN_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a connection that moves data has its TCP figures sampled ([`StackEvent::FiguresSampled`]):
/// often enough for a picture a person reloads, rare enough to cost nothing per segment.
pub(crate) const FIGURES_EVERY: Duration = Duration::from_secs(1);
/// Datagrams a UDP socket holds each way, and their total payload.
pub(crate) const UDP_PACKETS: usize = 64;
pub(crate) const UDP_BUFFER: usize = 64 * 1024;
/// The largest UDP payload the stack takes in or answers: what one of smoltcp's 16 KiB reassembly
/// slots holds (`reassembly-buffer-size-16384`) after the IPv4 and UDP headers.
pub(crate) const UDP_DATAGRAM_MAX: usize = 16 * 1024 - 20 - 8;
/// How long smoltcp keeps the fragments of an unfinished datagram. Fragments of one datagram
/// arrive back to back; waiting longer (smoltcp's default is 60 s) only lets a flood of fragments
/// that never complete hold the few reassembly slots longer.
const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Events kept for the status table between two reports (a turn reports twice; the oldest go first).
const EVENTS_KEPT: usize = 1 << 16;
/// Loss repairs and last figures kept for a harness that asked for them (the oldest go first).
const TCP_EVENTS_KEPT: usize = 1 << 14;

/// How the userspace stack is set up.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Its MAC address.
    pub mac: EthernetAddress,
    /// Its addresses (up to 3).
    pub addrs: Vec<IpCidr>,
    /// Default IPv4 route.
    pub gateway_v4: Option<Ipv4Address>,
    /// Default IPv6 route.
    pub gateway_v6: Option<Ipv6Address>,
    /// Seeds smoltcp's initial sequence numbers and ephemeral ports.
    pub random_seed: u64,
    /// Served TCP connections at most.
    pub max_connections: usize,
    /// Socket buffer per direction and TCP connection, bytes.
    pub tcp_buffer: usize,
}

/// A seed from the kernel's entropy pool, so that initial sequence numbers differ every run.
pub(crate) fn entropy_seed() -> u64 {
    let mut b = [0u8; 8];
    match std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
    {
        Ok(()) => u64::from_ne_bytes(b),
        // No /dev/urandom (a strange chroot): the clock still varies per run.
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed),
    }
}

/// The userspace stack, watched by `O` (the tracer, or `()`).
pub struct Stack<O: StackObserver> {
    iface: Interface,
    nic: Nic<Box<dyn FrameIo>, O>,
    /// UDP service sockets and client UDP/ICMP sockets; also the set for frames no entry owns.
    shared: SocketSet<'static>,
    table: Table,
    /// Connections in TIME-WAIT, without their sockets.
    time_wait: TimeWait,
    /// ACK a peer's FIN on its own before the service's FIN (see [`Stack::set_ack_fin_at_once`]).
    ack_fin_at_once: bool,
    demux: Demux,
    listen: Listen,
    ports: Ports,
    udp: Vec<UdpService>,
    ids: ConnIds,
    counters: Counters,
    /// Events not yet applied to the status table (see [`Stack::turn`]).
    events: VecDeque<StackEvent>,
    /// `LossRepair` and `Figures` events kept for the harness, when it asked ([`Stack::keep_tcp_events`]).
    tcp_events: Option<VecDeque<StackEvent>>,
    /// The entry the frame being processed went to, when that frame was an RST.
    rst_for: Option<usize>,
    scratch: Box<[u8]>,
    reply: Box<[u8]>,
    /// The subnet broadcast addresses of the stack's IPv4 networks: UDP sent there is not answered.
    broadcasts: Vec<IpAddress>,
    /// The time of the last ingress or egress, for events outside of them.
    last_now: Instant,
    /// Which MAC each IPv4 neighbour last answered ARP with, to tell when it changes (bounded).
    neighbours: Neighbours,
}

impl<O: StackObserver> Stack<O> {
    /// A stack on `nic`, with no services yet.
    pub fn new(cfg: &StackConfig, mut nic: Nic<Box<dyn FrameIo>, O>, now: Instant) -> Stack<O> {
        let mut config = Config::new(HardwareAddress::Ethernet(cfg.mac));
        config.random_seed = cfg.random_seed;
        let mut iface = Interface::new(config, &mut nic, now);
        iface.set_reassembly_timeout(REASSEMBLY_TIMEOUT);
        iface.update_ip_addrs(|a| {
            for c in &cfg.addrs {
                // The config allows at most as many as smoltcp holds; ignore the impossible overflow.
                let _ = a.push(*c);
            }
        });
        if let Some(gw) = cfg.gateway_v4 {
            let _ = iface.routes_mut().add_default_ipv4_route(gw);
        }
        if let Some(gw) = cfg.gateway_v6 {
            let _ = iface.routes_mut().add_default_ipv6_route(gw);
        }
        let ids = ConnIds::default();
        nic.observer_mut().attach(&ids);
        // Served connections start with today's small windows and grow them up to `tcp_buffer`.
        let initial_window = if nic.offloads() {
            TCP_BUFFER_OFFLOAD
        } else {
            TCP_BUFFER
        };
        // A datagram in and its answer out: a reassembled one is larger than any frame.
        let max = nic.io().max_frame().max(UDP_DATAGRAM_MAX);
        Stack {
            iface,
            nic,
            shared: SocketSet::new(Vec::new()),
            table: Table::new(cfg.tcp_buffer, initial_window),
            time_wait: TimeWait::new(DEFAULT_TIME_WAIT, timewait::TIME_WAIT_MAX),
            ack_fin_at_once: false,
            demux: Demux::default(),
            listen: Listen::new(cfg.max_connections),
            // Seeded, so a deterministic run picks the same ports every time.
            ports: Ports::new(cfg.random_seed),
            udp: Vec::new(),
            ids,
            counters: Counters::default(),
            events: VecDeque::new(),
            tcp_events: None,
            rst_for: None,
            scratch: vec![0u8; max].into_boxed_slice(),
            reply: vec![0u8; max].into_boxed_slice(),
            broadcasts: cfg
                .addrs
                .iter()
                .filter_map(|c| match c {
                    IpCidr::Ipv4(v4) => v4.broadcast().map(IpAddress::Ipv4),
                    _ => None,
                })
                .collect(),
            last_now: now,
            neighbours: Neighbours::default(),
        }
    }

    /// Tells the observer at once, and keeps the event for the status table.
    fn emit(&mut self, ev: StackEvent) {
        self.nic.observer_mut().event(self.last_now, &ev);
        if let Some(kept) = self.tcp_events.as_mut() {
            if matches!(
                ev,
                StackEvent::LossRepair { .. }
                    | StackEvent::Figures { .. }
                    | StackEvent::FiguresSampled { .. }
            ) {
                if kept.len() >= TCP_EVENTS_KEPT {
                    kept.pop_front();
                }
                kept.push_back(ev);
            }
        }
        if self.events.len() >= EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(ev);
    }

    /// The frame in the rx slot as an ARP packet smoltcp learns a neighbour from: its sender.
    fn arp_sender(&self) -> Option<neighbours::ArpSender> {
        // Ethernet is the only medium built in.
        let HardwareAddress::Ethernet(mac) = self.iface.hardware_addr();
        neighbours::arp_sender(self.nic.peek_rx()?, mac, self.iface.ip_addrs())
    }

    /// Records what an ARP packet said: a neighbour whose MAC changed is counted and told
    /// ([`StackEvent::NeighbourMoved`]). Only watches: smoltcp's cache follows the packet itself.
    fn watch_neighbour(&mut self, s: neighbours::ArpSender) {
        if let Some(from) = self.neighbours.learn(s.ip, s.mac) {
            self.counters.neighbours_moved += 1;
            self.emit(StackEvent::NeighbourMoved {
                ip: std::net::IpAddr::V4(s.ip),
                from,
                to: s.mac,
            });
        }
    }

    /// One turn: up to `budget` frames in, then `work` (the services, an app on this stack), then
    /// out; what the stack did goes into `status`. Returns the frames taken in (`budget`: more may
    /// be waiting). The reactor, the harness, the benchmark and the tests all turn a stack this way.
    pub fn turn(
        &mut self,
        now: Instant,
        budget: usize,
        status: &mut Status,
        work: impl FnOnce(&mut Self, &mut Status),
    ) -> usize {
        let n = self.ingress(now, budget);
        self.report(status);
        work(self, status);
        self.egress(now);
        self.report(status);
        n
    }

    /// A turn whose work is this stack's services.
    pub fn serve_turn(
        &mut self,
        now: Instant,
        wall: std::time::SystemTime,
        budget: usize,
        status: &mut Status,
        settings: &Settings,
    ) -> usize {
        self.turn(now, budget, status, |stack, status| {
            stack.run_services(now, wall, status, settings)
        })
    }

    /// Applies the events not taken yet to `status`.
    fn report(&mut self, status: &mut Status) {
        while let Some(ev) = self.events.pop_front() {
            status.apply(&ev);
        }
    }

    /// Feeds up to `budget` received frames to the stack. Returns how many were processed; `budget`
    /// processed means more may be waiting.
    pub fn ingress(&mut self, now: Instant, budget: usize) -> usize {
        self.last_now = now;
        self.nic.flush_held(now);
        self.iface.poll_maintenance(now);
        self.table.wake_due(now);
        self.expire_time_wait(now);
        let mut n = 0;
        while n < budget && self.nic.fill_rx(now) {
            n += 1;
            // IPv6 behind an extension header smoltcp does not read: it would miss its socket and
            // be answered with an ICMPv6 error, or RST from the shared set; dropped and counted.
            if let Some(why) = self.nic.peek_rx().and_then(ipv6_undeliverable) {
                self.nic.discard_rx(now, why);
                continue;
            }
            let peek = self.nic.peek_rx().and_then(peek_tcp);
            if peek
                .as_ref()
                .is_some_and(|p| self.time_wait_segment(now, p))
            {
                continue;
            }
            // A SYN that opens a connection is numbered before its packet line, which then names it.
            let opens = peek.as_ref().is_some_and(|p| self.may_open(p));
            if !opens {
                self.nic.observe_rx(now);
            }
            let target = match &peek {
                Some(p) => self.route(now, p),
                None => None,
            };
            if opens {
                self.nic.observe_rx(now);
            }
            match (target, &peek) {
                (Some(key), Some(p)) => {
                    if let Some(why) = self.rst_ignored(key, p) {
                        self.nic.discard_rx(
                            now,
                            "tcp: RST with an inexact sequence number ignored (RFC 5961)",
                        );
                        if let Some(e) = self.table.get(key) {
                            let ev = StackEvent::RstIgnored {
                                conn: e.id,
                                local: to_socket_addr(e.local),
                                remote: to_socket_addr(e.remote),
                                seq: p.seq,
                                why,
                            };
                            self.emit(ev);
                        }
                        continue;
                    }
                    self.rst_for = p.rst.then_some(key);
                    let Some(e) = self.table.get_mut(key) else {
                        continue;
                    };
                    let sent = self.nic.counters().packets_out;
                    self.iface
                        .poll_ingress_single(now, &mut self.nic, &mut e.set);
                    if p.ack {
                        e.peer_ack = p.ack_no;
                    }
                    if p.syn {
                        e.peer_wscale = p.wscale;
                    }
                    let state = e.state_now();
                    if state == tcp::State::TimeWait && self.nic.counters().packets_out > sent {
                        e.last_ack_out = true;
                    }
                    let peer_closed = p.fin
                        && state == tcp::State::CloseWait
                        && matches!(e.role, Role::Served(_));
                    if let Role::Listener { pool } = e.role {
                        self.replenish(pool);
                    }
                    // With `ack_fin_at_once`, the peer's FIN to a connection we serve is ACKed now,
                    // on its own, before the service answers with its own FIN (the textbook's
                    // FIN / ACK / FIN / ACK). smoltcp ACKs a bare FIN at once; one behind data
                    // waits for its delayed ACK and may still share the service's FIN.
                    if peer_closed && self.ack_fin_at_once {
                        self.report_state(now, key);
                        if let Some(e) = self.table.get_mut(key) {
                            while self.iface.poll_egress(now, &mut self.nic, &mut e.set)
                                != smoltcp::iface::PollResult::None
                            {}
                        }
                    }
                    if opens {
                        self.syn_not_taken(key, p);
                    }
                    self.table.mark_ready(key);
                    // Right after the frame that caused it, so that no state is skipped.
                    self.settle(now, key);
                    self.rst_for = None;
                }
                _ => {
                    // smoltcp drops a fragment silently when every reassembly slot holds another
                    // datagram (a fragment flood): its count tells.
                    let no_slot = self.iface.fragments_dropped_no_assembler();
                    // Read before smoltcp takes the frame: ARP that says who a neighbour is.
                    let arp = match peek {
                        None => self.arp_sender(),
                        Some(_) => None,
                    };
                    self.iface
                        .poll_ingress_single(now, &mut self.nic, &mut self.shared);
                    if self.iface.fragments_dropped_no_assembler() > no_slot {
                        self.counters
                            .drop("ipv4: fragment dropped, every reassembly slot busy");
                    }
                    if let Some(sender) = arp {
                        self.watch_neighbour(sender);
                    }
                    if peek.is_none() {
                        // A neighbour may have just been learned: entries waiting for one retry now
                        // rather than at the end of smoltcp's one-second silence.
                        self.table.wake_before(now + Duration::from_millis(1000));
                    }
                }
            }
        }
        n
    }

    /// Whether a frame is a SYN that may open a new connection (no live entry has its 4-tuple).
    fn may_open(&self, p: &TcpPeek) -> bool {
        p.is_pure_syn()
            && self.iface.has_ip_addr(p.dst.addr)
            && self.demux.lookup(p).is_none_or(|key| {
                self.table.get(key).is_none_or(|e| {
                    matches!(e.state_now(), tcp::State::TimeWait | tcp::State::Closed)
                })
            })
    }

    /// Decides which socket set gets the frame in the rx slot: an entry's key, or `None` for the
    /// shared set.
    fn route(&mut self, now: Instant, p: &TcpPeek) -> Option<usize> {
        if !self.iface.has_ip_addr(p.dst.addr) {
            return None;
        }
        if let Some(key) = self.demux.lookup(p) {
            let state = self.table.get(key).map(|e| e.state_now());
            if !(p.is_pure_syn()
                && matches!(state, Some(tcp::State::TimeWait | tcp::State::Closed)))
            {
                return Some(key);
            }
            // A new connection reusing the 4-tuple of one in TIME-WAIT: that one is over.
            if self
                .table
                .get(key)
                .is_some_and(|e| matches!(e.role, Role::Served(_)))
            {
                self.remove_served(key, CloseCause::Superseded);
            }
        }
        if !p.is_pure_syn() {
            return None;
        }
        self.accept_syn(now, p)
    }

    /// Ends the connection a SYN was numbered for ([`Stack::accept_syn`] told `Opened`) when the
    /// SYN never reached listener `key`: smoltcp dropped it first (a non-unicast source address,
    /// port 0, a bad checksum) and the listener still listens. Without its `Closed` event the
    /// tracer kept the flow live for good: about 9% of a random-source SYN flood.
    fn syn_not_taken(&mut self, key: usize, p: &TcpPeek) {
        let Some(e) = self.table.get(key) else {
            return;
        };
        let Role::Listener { pool } = e.role else {
            return;
        };
        if e.state_now() != tcp::State::Listen {
            return;
        }
        let conn = e.id;
        let service = self.listen.pools.get(pool).map(|pl| pl.kind);
        self.counters.drop(
            "tcp: SYN dropped before its listener (non-unicast source, port 0 or bad checksum)",
        );
        self.emit(StackEvent::Closed {
            conn,
            local: to_socket_addr(p.dst),
            remote: to_socket_addr(p.src),
            cause: CloseCause::SynDropped,
            service,
        });
    }

    /// Whether an RST for entry `key` must not reset it: RFC 5961 3.2 lets only an RST at exactly
    /// the next expected sequence number reset a synchronized connection, decided from the socket's
    /// own receive window.
    fn rst_ignored(&self, key: usize, p: &TcpPeek) -> Option<RstIgnored> {
        if !p.rst {
            return None;
        }
        let sock = self.table.get(key)?.sock_ref();
        if !matches!(
            sock.state(),
            tcp::State::Established
                | tcp::State::FinWait1
                | tcp::State::FinWait2
                | tcp::State::CloseWait
                | tcp::State::Closing
                | tcp::State::LastAck
        ) {
            return None;
        }
        let (next, end) = sock.recv_window()?;
        let seq = TcpSeqNumber(p.seq as i32);
        if seq == next {
            None
        } else if next < seq && seq < end {
            Some(RstIgnored::NotExact)
        } else {
            Some(RstIgnored::OutsideWindow)
        }
    }

    /// Sends what the touched sockets have queued, reports what changed, files their next deadlines.
    pub fn egress(&mut self, now: Instant) {
        self.last_now = now;
        self.nic.flush_held(now);
        self.table.wake_due(now);
        self.expire_time_wait(now);
        while self.iface.poll_egress(now, &mut self.nic, &mut self.shared)
            != smoltcp::iface::PollResult::None
        {}
        let ready = self.table.take_ready();
        for &key in &ready {
            self.table.done(key);
            let Some(e) = self.table.get_mut(key) else {
                continue;
            };
            let sent = self.nic.counters().packets_out;
            while self.iface.poll_egress(now, &mut self.nic, &mut e.set)
                != smoltcp::iface::PollResult::None
            {}
            // In TIME-WAIT smoltcp sends nothing but the ACK of the peer's FIN.
            if e.state_now() == tcp::State::TimeWait && self.nic.counters().packets_out > sent {
                e.last_ack_out = true;
            }
            // After the socket's egress: smoltcp counts a fast recovery when the ACK that shows
            // the loss arrives, and lowers the window when it resends, here.
            self.report_repairs(key);
            self.sample_figures(now, key);
            self.settle(now, key);
            self.schedule(now, key);
        }
        self.table.return_queue(ready);
    }

    /// Files an entry's next deadline: smoltcp's timers, the session's own, and ours.
    fn schedule(&mut self, now: Instant, key: usize) {
        let Some(e) = self.table.get(key) else {
            return;
        };
        let mut t = self.iface.poll_at(now, &e.set);
        let mut own = e.orphan_deadline();
        if let Role::Served(s) = &e.role {
            let session = match &s.life {
                Life::Open { session, .. } => session.poll_timeout(),
                _ => None,
            };
            let limit = match (&s.life, e.state) {
                (Life::Handshake { since }, tcp::State::SynReceived) => {
                    Some(*since + HANDSHAKE_TIMEOUT)
                }
                (_, tcp::State::FinWait2) => Some(e.state_since + FIN_WAIT2_TIMEOUT),
                _ => None,
            };
            for x in [session, limit].into_iter().flatten() {
                own = Some(own.map_or(x, |o| o.min(x)));
            }
        }
        if let Some(st) = own {
            t = Some(t.map_or(st, |t| t.min(st)));
        }
        self.table.schedule(key, t);
    }

    /// After a frame or an egress touched entry `key`: reports its state change, enforces our
    /// timeouts, and removes it once it is over.
    fn settle(&mut self, now: Instant, key: usize) {
        self.report_state(now, key);
        if !self.enforce_timeouts(now, key) {
            self.remove_if_over(now, key);
        }
    }

    /// Tells the observer when a touched connection began repairing a loss: one
    /// [`StackEvent::LossRepair`] for each count of its socket that grew since the last look (its
    /// previous egress). Only entries touched this turn come here (and each connection once more
    /// as its socket is let go), so idle connections cost nothing.
    fn report_repairs(&mut self, key: usize) {
        let Some(e) = self.table.get_mut(key) else {
            return;
        };
        if matches!(e.role, Role::Listener { .. }) {
            return;
        }
        let figures = TcpFigures::of(e.sock_ref());
        let now_seen = table::Seen {
            stats: e.sock_ref().loss_recovery_stats(),
            cwnd: figures.cwnd,
            rto: figures.rto,
            sampled: e.seen.sampled,
        };
        let seen = std::mem::replace(&mut e.seen, now_seen);
        let sack = figures
            .sack_recoveries
            .saturating_sub(seen.stats.sack_recoveries);
        let fast = figures
            .fast_retransmits
            .saturating_sub(seen.stats.fast_retransmits);
        let timeouts = figures.timeouts.saturating_sub(seen.stats.timeouts);
        if sack == 0 && fast == 0 && timeouts == 0 {
            return;
        }
        let (conn, local, remote) = (e.id, to_socket_addr(e.local), to_socket_addr(e.remote));
        let kinds = std::iter::repeat_n(LossRepair::FastRetransmit { sack: true }, sack as usize)
            .chain(std::iter::repeat_n(
                LossRepair::FastRetransmit { sack: false },
                fast.saturating_sub(sack) as usize,
            ))
            .chain(std::iter::repeat_n(LossRepair::Timeout, timeouts as usize));
        for kind in kinds {
            self.emit(StackEvent::LossRepair {
                conn,
                local,
                remote,
                kind,
                cwnd_before: seen.cwnd,
                rto_before: seen.rto,
                figures,
            });
        }
    }

    /// Tells a connection's figures while it runs: [`FIGURES_EVERY`] after its first egress, and at
    /// most that often since, once it has measured a round trip (before that there is nothing to
    /// show but the initial window).
    fn sample_figures(&mut self, now: Instant, key: usize) {
        let Some(e) = self.table.get_mut(key) else {
            return;
        };
        if matches!(e.role, Role::Listener { .. }) {
            return;
        }
        // The first egress starts the clock: a connection over within a second (most of them)
        // is never sampled, and its last figures come as its socket goes.
        let Some(last) = e.seen.sampled else {
            e.seen.sampled = Some(now);
            return;
        };
        if now < last + FIGURES_EVERY {
            return;
        }
        let figures = TcpFigures::of(e.sock_ref());
        if figures.srtt.is_none() {
            return;
        }
        e.seen.sampled = Some(now);
        let (conn, local, remote) = (e.id, to_socket_addr(e.local), to_socket_addr(e.remote));
        self.emit(StackEvent::FiguresSampled {
            conn,
            local,
            remote,
            figures,
        });
    }

    /// Tells a connection's last TCP figures, as its socket is let go.
    fn report_figures(&mut self, e: &table::Entry) {
        if matches!(e.role, Role::Listener { .. }) {
            return;
        }
        self.emit(StackEvent::Figures {
            conn: e.id,
            local: to_socket_addr(e.local),
            remote: to_socket_addr(e.remote),
            figures: TcpFigures::of(e.sock_ref()),
        });
    }

    /// Tells the observer (and the status table) when an entry's TCP state changed.
    fn report_state(&mut self, now: Instant, key: usize) {
        let Some(e) = self.table.get_mut(key) else {
            return;
        };
        let state = e.state_now();
        if state == e.state || matches!(e.role, Role::Listener { .. }) {
            return;
        }
        let ev = StackEvent::State {
            conn: e.id,
            local: to_socket_addr(e.local),
            remote: to_socket_addr(e.remote),
            from: e.state,
            to: state,
            service: e.service(),
        };
        e.state = state;
        e.state_since = now;
        // CLOSING follows FIN-WAIT-1 and keeps its start: the bound is on the whole close.
        if matches!(
            state,
            tcp::State::FinWait1 | tcp::State::Closing | tcp::State::LastAck
        ) && e.closed_since.is_none()
        {
            e.closed_since = Some(now);
        }
        self.emit(ev);
    }

    /// Our own timers (smoltcp has none for these): a handshake the peer never completes, a
    /// FIN-WAIT-2 the peer never ends, and a close the peer holds open (FIN-WAIT-1, CLOSING,
    /// LAST-ACK) past [`ORPHAN_TIMEOUT`]. Returns whether the entry was removed.
    fn enforce_timeouts(&mut self, now: Instant, key: usize) -> bool {
        let Some(e) = self.table.get(key) else {
            return true;
        };
        if e.orphan_deadline().is_some_and(|t| now >= t) {
            self.abort_orphan(now, key);
            return true;
        }
        let Role::Served(s) = &e.role else {
            return false;
        };
        let handshake_over = match s.life {
            Life::Handshake { since } => now >= since + HANDSHAKE_TIMEOUT,
            _ => false,
        };
        if e.state == tcp::State::SynReceived && handshake_over {
            self.counters
                .drop("tcp: handshake timed out (no answer to SYN-ACK)");
            self.remove_served(key, CloseCause::TimedOut(Timeout::Handshake));
            return true;
        }
        if e.state == tcp::State::FinWait2 && now >= e.state_since + FIN_WAIT2_TIMEOUT {
            // Like Linux, without an RST: the peer's later segments meet no socket and get one then.
            self.counters
                .drop("tcp: FIN-WAIT-2 timed out (the peer never sent its FIN)");
            let ev = StackEvent::State {
                conn: e.id,
                local: to_socket_addr(e.local),
                remote: to_socket_addr(e.remote),
                from: tcp::State::FinWait2,
                to: tcp::State::Closed,
                service: e.service(),
            };
            self.emit(ev);
            self.remove_served(key, CloseCause::TimedOut(Timeout::FinWait2));
            return true;
        }
        false
    }

    /// Ends a connection the peer held open past [`ORPHAN_TIMEOUT`] after our close: counted, told
    /// (`Closed` with `TimedOut(Orphan(state))`), and reset, so that a peer still listening learns
    /// the connection is gone rather than probing a socket that no longer exists.
    fn abort_orphan(&mut self, now: Instant, key: usize) {
        let Some(e) = self.table.get(key) else {
            return;
        };
        let (state, served) = (e.state, matches!(e.role, Role::Served(_)));
        self.counters.drop(match state {
            tcp::State::FinWait1 => {
                "tcp: FIN-WAIT-1 timed out (the peer never took our last data and FIN), reset"
            }
            tcp::State::Closing => {
                "tcp: CLOSING timed out (the peer never acknowledged our FIN), reset"
            }
            _ => "tcp: LAST-ACK timed out (the peer never acknowledged our FIN), reset",
        });
        // The `Closed` event goes before the RST (and with no state change before it): the tracer
        // then closes the flow for the stack's reason, and shows the RST as what followed, not as
        // a reset without a why.
        let mut e = self.take_out(key, CloseCause::TimedOut(Timeout::Orphan(state)));
        e.sock().abort();
        while self.iface.poll_egress(now, &mut self.nic, &mut e.set)
            != smoltcp::iface::PollResult::None
        {}
        self.park(e);
        if served {
            self.slot_freed();
        }
    }

    /// Removes an entry whose connection is over. In TIME-WAIT the socket goes once the ACK of
    /// the peer's FIN has left, and the connection moves to the TIME-WAIT table (`timewait`), so
    /// that sockets and their buffers do not pile up for 2 x MSL under a high connection rate.
    fn remove_if_over(&mut self, now: Instant, key: usize) {
        let Some(e) = self.table.get(key) else {
            return;
        };
        let state = e.state;
        let time_wait_done = state == tcp::State::TimeWait && e.last_ack_out;
        if time_wait_done && matches!(e.role, Role::Served(_) | Role::Client { released: true }) {
            self.move_to_time_wait(now, key);
            return;
        }
        let cause = if self.rst_for == Some(key) {
            CloseCause::ResetByPeer
        } else if e.aborted {
            CloseCause::Aborted
        } else {
            CloseCause::Closed
        };
        match &e.role {
            // An RST in SYN-RECEIVED puts a smoltcp socket back in LISTEN: for a served connection
            // that is the end too (the port's own listeners are in the pool).
            Role::Served(_)
                if matches!(state, tcp::State::Closed | tcp::State::Listen) || time_wait_done =>
            {
                self.remove_served(key, cause)
            }
            Role::Client { released: true } if state == tcp::State::Closed || time_wait_done => {
                self.recycle(key, cause)
            }
            _ => {}
        }
    }

    /// Removes a served connection and makes sure every port listens again (a slot is free).
    fn remove_served(&mut self, key: usize, cause: CloseCause) {
        self.recycle(key, cause);
        self.slot_freed();
    }

    /// Takes an entry out; its socket is aborted silently (nothing more is sent) and kept for reuse.
    /// Every connection leaves through here (or through its two halves, [`Stack::take_out`] and
    /// [`Stack::park`], when an RST must go between them), with one `Closed` event.
    fn recycle(&mut self, key: usize, cause: CloseCause) {
        let e = self.take_out(key, cause);
        self.park(e);
    }

    /// The first half of [`Stack::recycle`]: the entry leaves the table, the demultiplexer and the
    /// counts, with its `Closed` event; its socket is still as it was.
    fn take_out(&mut self, key: usize, cause: CloseCause) -> table::Entry {
        self.report_repairs(key);
        let e = self.table.remove(key);
        self.trim_half_open(key);
        self.demux.remove(e.local, e.remote, key);
        let (local, remote) = (to_socket_addr(e.local), to_socket_addr(e.remote));
        let service = e.service();
        match &e.role {
            Role::Served(s) => {
                self.listen.served -= 1;
                if s.life.was_open() {
                    self.counters.conns_closed += 1;
                }
                if e.state == tcp::State::TimeWait {
                    self.emit(StackEvent::State {
                        conn: e.id,
                        local,
                        remote,
                        from: tcp::State::TimeWait,
                        to: tcp::State::Closed,
                        service,
                    });
                }
            }
            Role::Client { .. } => self.ports.give_back(e.local.port),
            Role::Listener { .. } => {}
        }
        self.report_figures(&e);
        if !matches!(e.role, Role::Listener { .. }) {
            self.emit(StackEvent::Closed {
                conn: e.id,
                local,
                remote,
                cause,
                service,
            });
        }
        e
    }

    /// The second half of [`Stack::recycle`]: the socket is kept for reuse.
    fn park(&mut self, mut e: table::Entry) {
        // abort() only queues an RST for the next egress of this set, which never comes: `listen` and
        // `connect` reset the socket first.
        e.sock().abort();
        let cap = self.listen.max_connections.max(64);
        self.table.keep_spare((e.set, e.handle), cap);
    }

    /// Moves a connection whose last ACK is out from its socket into the TIME-WAIT table: the
    /// socket goes back to the pool, and the connection ends (`Closed`) 2 x MSL later.
    fn move_to_time_wait(&mut self, now: Instant, key: usize) {
        self.report_repairs(key);
        let e = self.table.remove(key);
        self.report_figures(&e);
        self.trim_half_open(key);
        self.demux.remove(e.local, e.remote, key);
        let sock = e.sock_ref();
        let (rcv_nxt, end) = sock
            .recv_window()
            .map_or((0, 0), |(a, b)| (a.0 as u32, b.0 as u32));
        let rcv_wnd = end.wrapping_sub(rcv_nxt).min(1 << 30);
        // The shift smoltcp chose (from its receive buffer), used only if the peer's SYN offered
        // scaling; `recv_window` ends at our last ACK plus its window field times 2^shift.
        let cap = sock.recv_capacity();
        let log2 = usize::BITS - cap.leading_zeros();
        let shift = if e.peer_wscale {
            log2.saturating_sub(16)
        } else {
            0
        };
        let entry = TwEntry {
            local: e.local,
            remote: e.remote,
            snd_nxt: e.peer_ack,
            rcv_nxt,
            rcv_wnd,
            window: (rcv_wnd >> shift).min(u16::MAX as u32) as u16,
            id: e.id,
            service: e.service(),
            deadline: now,
        };
        if matches!(e.role, Role::Served(_)) {
            self.listen.served -= 1;
        }
        self.park(e);
        if self.time_wait.is_full() {
            if let Some(old) = self.time_wait.oldest(false) {
                self.end_time_wait(old, CloseCause::TimeWaitCut(TimeWaitCut::TableFull));
            }
        }
        self.time_wait.insert(entry, now);
        self.emit(StackEvent::TimeWait {
            conn: entry.id,
            local: to_socket_addr(entry.local),
            remote: to_socket_addr(entry.remote),
            hold: self.time_wait.hold,
        });
        if entry.service.is_some() {
            self.slot_freed();
        }
    }

    /// Ends a connection in the TIME-WAIT table: `Closed` with `cause` (after TIME-WAIT -> CLOSED
    /// when 2 x MSL ran out).
    pub(super) fn end_time_wait(&mut self, key: usize, cause: CloseCause) {
        let Some(e) = self.time_wait.remove(key) else {
            return;
        };
        match e.service {
            Some(_) => self.counters.conns_closed += 1,
            // The port was kept while the 4-tuple was held.
            None => self.ports.give_back(e.local.port),
        }
        let (local, remote) = (to_socket_addr(e.local), to_socket_addr(e.remote));
        // TIME-WAIT -> CLOSED when it ran its course; any other end is told by `Closed` alone, so
        // that the tracer closes the flow for the stack's reason (as `abort_orphan` does).
        if cause == CloseCause::Closed {
            self.emit(StackEvent::State {
                conn: e.id,
                local,
                remote,
                from: tcp::State::TimeWait,
                to: tcp::State::Closed,
                service: e.service,
            });
        }
        self.emit(StackEvent::Closed {
            conn: e.id,
            local,
            remote,
            cause,
            service: e.service,
        });
    }

    /// Ends the connections whose 2 x MSL are over (at most a bounded number a call; the rest are
    /// due at once and come next turn).
    fn expire_time_wait(&mut self, now: Instant) {
        for _ in 0..4096 {
            let Some(key) = self.time_wait.due(now) else {
                return;
            };
            self.end_time_wait(key, CloseCause::Closed);
        }
    }

    /// A segment for a 4-tuple in TIME-WAIT, handled there (see `timewait`); returns whether it
    /// was taken (false: not for the table, or a new SYN that goes on to open a connection).
    fn time_wait_segment(&mut self, now: Instant, p: &TcpPeek) -> bool {
        let Some(key) = self.time_wait.lookup(p) else {
            return false;
        };
        if !self.iface.has_ip_addr(p.dst.addr) {
            return false;
        }
        let Some(e) = self.time_wait.get(key).copied() else {
            return false;
        };
        let verdict = timewait::judge(&e, p);
        if verdict == Verdict::NewSyn {
            self.end_time_wait(key, CloseCause::Superseded);
            return false;
        }
        self.nic.observe_rx(now);
        let (local, remote) = (to_socket_addr(e.local), to_socket_addr(e.remote));
        match verdict {
            Verdict::Ack(why) => {
                if why == TimeWaitAck::FinAgain {
                    self.time_wait.restart(key, now);
                }
                self.emit(StackEvent::TimeWaitAck {
                    conn: e.id,
                    local,
                    remote,
                    why,
                    hold: self.time_wait.hold,
                });
                let reply = self.nic.peek_rx().and_then(|f| timewait::answer(&e, f));
                self.nic.discard_rx(
                    now,
                    match why {
                        TimeWaitAck::FinAgain => "tcp: TIME-WAIT: the peer's FIN again, ACKed",
                        TimeWaitAck::ChallengeRst => {
                            "tcp: TIME-WAIT: RST in the window, not exact: challenge ACK"
                        }
                        TimeWaitAck::OldSyn => "tcp: TIME-WAIT: old SYN, challenge ACK",
                        TimeWaitAck::Unacceptable => "tcp: TIME-WAIT: segment answered with ACK",
                    },
                );
                if let Some(frame) = reply {
                    self.send_frame(now, &frame);
                }
            }
            Verdict::Reset => {
                self.nic.discard_rx(
                    now,
                    "tcp: TIME-WAIT: RST at the next expected sequence number",
                );
                self.end_time_wait(key, CloseCause::ResetByPeer);
            }
            Verdict::RstOutside => {
                self.emit(StackEvent::RstIgnored {
                    conn: e.id,
                    local,
                    remote,
                    seq: p.seq,
                    why: RstIgnored::OutsideWindow,
                });
                self.nic.discard_rx(
                    now,
                    "tcp: TIME-WAIT: RST outside the window ignored (RFC 5961)",
                );
            }
            Verdict::Nothing | Verdict::NewSyn => {
                self.nic
                    .discard_rx(now, "tcp: TIME-WAIT: bare ACK, nothing to answer");
            }
        }
        true
    }

    /// Sends a frame the stack made itself through the device's one transmit path (traced,
    /// captured, subject to faults like every frame smoltcp sends).
    fn send_frame(&mut self, now: Instant, frame: &[u8]) {
        use smoltcp::phy::{Device, TxToken};
        if let Some(tx) = self.nic.transmit(now) {
            tx.consume(frame.len(), |buf| {
                let n = buf.len().min(frame.len());
                buf[..n].copy_from_slice(&frame[..n]);
            });
        }
    }

    /// Ends every connection still in TIME-WAIT (`TimeWaitCut(Shutdown)`): the program stops, and
    /// nobody is left to answer for them.
    pub fn end_time_wait_all(&mut self) {
        for key in self.time_wait.keys() {
            self.end_time_wait(key, CloseCause::TimeWaitCut(TimeWaitCut::Shutdown));
        }
    }

    /// Sets 2 x MSL, how long a connection is held in TIME-WAIT (default [`DEFAULT_TIME_WAIT`]).
    pub fn set_time_wait(&mut self, hold: Duration) {
        self.time_wait.hold = hold;
    }

    /// Whether a peer's FIN to a served connection is ACKed on its own, at once, before the
    /// service answers with its FIN (four segments to close, as textbooks draw it), rather than
    /// with the service's FIN (three; the default). Both are RFC 9293; the separate ACK costs a
    /// frame per connection, and measured, it lowered `conn_per_s_64`, so only the demo asks for it.
    pub fn set_ack_fin_at_once(&mut self, on: bool) {
        self.ack_fin_at_once = on;
    }

    /// Connections held in TIME-WAIT.
    pub fn time_wait_count(&self) -> usize {
        self.time_wait.len()
    }

    /// The earliest time anything in the stack wants to run again.
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let mut t = self.iface.poll_at(now, &self.shared);
        let mut min = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t: Instant| t.min(x)));
            }
        };
        min(self.nic.poll_at());
        min(self.table.first_deadline());
        min(self.time_wait.first_deadline());
        if self.table.has_ready() {
            min(Some(now));
        }
        t
    }

    /// Starts closing every served connection (FIN) and stops listening; true when none is left.
    pub fn close_all(&mut self) -> bool {
        for key in self.table.keys() {
            let Some(e) = self.table.get_mut(key) else {
                continue;
            };
            let handle = e.handle;
            match &mut e.role {
                Role::Served(s) => {
                    let sock = e.set.get_mut::<tcp::Socket>(handle);
                    match sock.state() {
                        // Nothing was exchanged yet: no FIN to wait for.
                        tcp::State::SynReceived => {
                            sock.abort();
                            e.aborted = true;
                        }
                        _ => sock.close(),
                    }
                    match &mut s.life {
                        Life::Open { stream, .. } => stream.closing = true,
                        life => *life = Life::Closing,
                    }
                    self.table.mark_ready(key);
                }
                Role::Listener { .. } => self.recycle(key, CloseCause::Closed),
                Role::Client { .. } => {}
            }
        }
        for p in &mut self.listen.pools {
            p.listeners.clear();
        }
        // No listener may come back while shutting down.
        self.listen.max_connections = 0;
        self.listen.served == 0
    }

    /// Whether any connection is being served.
    pub fn has_connections(&self) -> bool {
        self.listen.served > 0
    }

    /// Aborts whatever is still being served (RST): the last step of a shutdown whose grace ran out.
    pub fn abort_all(&mut self) {
        for key in self.table.keys() {
            let Some(e) = self.table.get_mut(key) else {
                continue;
            };
            if matches!(e.role, Role::Served(_)) {
                e.sock().abort();
                e.aborted = true;
                self.table.mark_ready(key);
            }
        }
    }

    /// Keeps the last loss repairs and figures ([`StackEvent::LossRepair`], [`StackEvent::Figures`],
    /// [`StackEvent::FiguresSampled`]; a bounded number) for [`Stack::tcp_events`]. Off by default.
    pub(crate) fn keep_tcp_events(&mut self) {
        self.tcp_events.get_or_insert_with(VecDeque::new);
    }

    /// The loss repairs and figures kept since [`Stack::keep_tcp_events`], oldest first.
    pub(crate) fn tcp_events(&self) -> impl Iterator<Item = &StackEvent> {
        self.tcp_events.iter().flatten()
    }

    /// The endpoints the stack serves, for the ready line: each non-link-local address, each port.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let addrs: Vec<IpAddress> = self
            .iface
            .ip_addrs()
            .iter()
            .map(|c| c.address())
            .filter(|a| match a {
                IpAddress::Ipv4(_) => true,
                IpAddress::Ipv6(v6) => !v6.is_unicast_link_local(),
            })
            .collect();
        let mut v = Vec::new();
        for a in &addrs {
            for p in &self.listen.pools {
                v.push(Endpoint {
                    stack: StackKind::Stack,
                    proto: Proto::Tcp,
                    addr: SocketAddr::new((*a).into(), p.port),
                    service: p.kind.name(),
                });
            }
            for u in &self.udp {
                let port = self
                    .shared
                    .get::<smoltcp::socket::udp::Socket>(u.handle)
                    .endpoint()
                    .port;
                v.push(Endpoint {
                    stack: StackKind::Stack,
                    proto: Proto::Udp,
                    addr: SocketAddr::new((*a).into(), port),
                    service: u.kind.name(),
                });
            }
        }
        v
    }

    /// The stack's own counters (connections, drops), without the device's.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The stack's and its device's counters in one (packets and bytes from the device).
    pub fn all_counters(&self) -> Counters {
        let mut c = self.nic.counters().clone();
        c.conns_accepted = self.counters.conns_accepted;
        c.conns_refused = self.counters.conns_refused;
        c.conns_closed = self.counters.conns_closed;
        c.neighbours_moved = self.counters.neighbours_moved;
        for (k, v) in &self.counters.drops {
            *c.drops.entry(k.clone()).or_insert(0) += v;
        }
        c
    }

    /// TCP connections being served (not counting listeners and client sockets).
    pub fn connection_count(&self) -> usize {
        self.listen.served
    }

    /// The state of every TCP socket in use (listeners, connections, client sockets), for tests and
    /// leak accounting.
    pub fn tcp_states(&self) -> Vec<tcp::State> {
        self.table.iter().map(|e| e.state_now()).collect()
    }

    /// Listening sockets in the pools.
    pub fn listener_count(&self) -> usize {
        self.listen.listener_count()
    }

    /// Sockets in use: every entry (listeners, connections, client sockets) and the UDP/ICMP ones.
    pub fn socket_count(&self) -> usize {
        self.table.len() + self.shared.iter().count()
    }

    /// The device under the stack.
    pub fn nic(&self) -> &Nic<Box<dyn FrameIo>, O> {
        &self.nic
    }

    /// The device under the stack, to change.
    pub fn nic_mut(&mut self) -> &mut Nic<Box<dyn FrameIo>, O> {
        &mut self.nic
    }

    /// Whoever watches the stack.
    pub fn observer(&self) -> &O {
        self.nic.observer()
    }

    /// Whoever watches the stack, to change.
    pub fn observer_mut(&mut self) -> &mut O {
        self.nic.observer_mut()
    }
}
