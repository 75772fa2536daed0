//! A harness for other people's tests: a server stack and a client stack on an in-memory wire, on a
//! virtual clock, with faults if asked. No root, no TAP, no threads, no sleeping: time jumps to the next
//! deadline, so a test of a one-minute retransmission backoff runs in milliseconds, and the same seed
//! replays the same packets.
//!
//! The test author gets verbs, as in turmoil: connect, send, receive, close ([`Harness::echo`] does
//! all four); [`Harness::inject`] a hand-made frame (see [`crate::frames`]); change the faults mid-run
//! ([`Harness::set_faults`]); [`Harness::partition`] and [`Harness::repair`] the wire;
//! [`Harness::hold`] and [`Harness::release`] the frames on it. The stacks themselves stay private:
//! what a test may ask about the server (counters, connections, the packets its tracer saw) has an
//! accessor of its own, and so do the TCP figures and loss repairs of both stacks
//! ([`Harness::tcp_figures`], [`Harness::loss_repairs`], [`Harness::final_figures`]). Durations
//! are `std::time::Duration`, and [`Harness::now`] is the virtual time since the harness was built.
//!
//! ```
//! use std::time::Duration;
//! use tapstack::harness::Harness;
//! use tapstack::ServiceKind;
//! use tapstack::trace::TcpFlags;
//!
//! let mut h = Harness::builder().serve(ServiceKind::Echo, 7).seed(1).build();
//! let sock = h.connect(7).unwrap();
//! assert!(h.run_until(Duration::from_secs(5), |h| h.is_established(sock)));
//! h.send(sock, b"hello");
//! let mut got = Vec::new();
//! assert!(h.run_until(Duration::from_secs(5), |h| { got.extend(h.recv(sock)); got.len() == 5 }));
//! assert_eq!(got, b"hello");
//! h.close(sock);
//! assert!(h.run_until(Duration::from_secs(5), |h| h.is_closed(sock)));
//! // Or all of that in one verb.
//! assert_eq!(h.echo(7, b"again", Duration::from_secs(5)).unwrap(), b"again");
//! // The recorded packets, decoded: the handshake came first.
//! let flags = h.tcp_flags(7);
//! assert_eq!(flags[..3], [TcpFlags::SYN, TcpFlags::SYN | TcpFlags::ACK, TcpFlags::ACK]);
//! assert_eq!(flags[1].to_string(), "SYN,ACK");
//! // Cut the wire: nothing gets through, and the trace shows what was lost.
//! h.partition();
//! assert!(h.echo(7, b"lost", Duration::from_secs(2)).is_err());
//! assert!(h.dropped(tapstack::Direction::In) > 0, "the SYNs towards the server");
//! ```

use smoltcp::socket::tcp;
use smoltcp::time::{Duration as SmolDuration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::addr::{parse_cidr, parse_mac};
use crate::clock::Clock;
pub use crate::device::wire::PARTITIONED;
use crate::device::wire::{wire, End, WireControl};
use crate::device::{Direction, FaultConfig, FaultInjector, FrameIo, Nic, TxOutcome};
use crate::service::{ServiceKind, Settings};
use crate::stack::{ConnectError, Stack, StackConfig, StackEvent, TcpHandle, TCP_BUFFER};
pub use crate::stack::{LossRepair, TcpFigures};
use crate::status::{Counters, Status};
use crate::topology::{self, SERVER_ADDRS};
use crate::trace::{PacketRecord, TcpFlags, TraceConfig, Tracer};

pub use crate::topology::{CLIENT, SERVER};

/// Frames each stack takes in per turn.
const BUDGET: usize = 64;

/// How long [`Harness::echo`] waits for the close to finish once everything came back.
const ECHO_CLOSE_LIMIT: Duration = Duration::from_secs(120);

fn smol(d: Duration) -> SmolDuration {
    SmolDuration::from_micros(d.as_micros().min(u64::MAX as u128) as u64)
}

/// Which stack a frame is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The server stack.
    Server,
    /// The client stack.
    Client,
}

/// Why [`Harness::echo`] did not get its bytes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EchoError {
    /// The client socket could not be opened.
    Connect(ConnectError),
    /// Within the time limit, only `got` of `want` bytes came back (`sent` were taken by the send
    /// buffer); the client socket was last in `state`.
    Incomplete {
        /// Bytes sent.
        sent: usize,
        /// Bytes that came back.
        got: usize,
        /// Bytes expected back.
        want: usize,
        /// The client socket's state when it gave up.
        state: tcp::State,
    },
}

impl fmt::Display for EchoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EchoError::Connect(e) => write!(f, "connect: {e}"),
            EchoError::Incomplete {
                sent,
                got,
                want,
                state,
            } => write!(
                f,
                "echo incomplete: {got} of {want} bytes back ({sent} sent), socket {state}"
            ),
        }
    }
}

impl std::error::Error for EchoError {}

/// Lets a test compare flags with the bit constants: `flags == TcpFlags::SYN | TcpFlags::ACK`.
impl PartialEq<u16> for TcpFlags {
    fn eq(&self, bits: &u16) -> bool {
        self.0 == *bits
    }
}

/// Lets a test compare flags with what they print as: `flags == "SYN,ACK"` (tests written when
/// [`Harness::tcp_flags`] returned strings keep working).
impl PartialEq<&str> for TcpFlags {
    fn eq(&self, shown: &&str) -> bool {
        let printed = self.to_string();
        printed == *shown
    }
}

/// How to build a [`Harness`].
pub struct HarnessBuilder {
    services: Vec<(ServiceKind, u16)>,
    faults: FaultConfig,
    settings: Settings,
    trace: TraceConfig,
    max_connections: usize,
    /// The server's and the client's TCP socket buffers.
    buffers: (usize, usize),
}

impl HarnessBuilder {
    /// Serves `kind` on `port` (TCP, and UDP where the service has a UDP side).
    pub fn serve(mut self, kind: ServiceKind, port: u16) -> Self {
        self.services.push((kind, port));
        self
    }

    /// Seeds the fault injector and both stacks' sequence numbers and ports.
    pub fn seed(mut self, seed: u64) -> Self {
        self.faults.seed = seed;
        self
    }

    /// Chance (0-1) that a frame is dropped.
    pub fn drop_chance(mut self, p: f64) -> Self {
        self.faults.drop = p;
        self
    }

    /// Chance (0-1) that a frame is duplicated.
    pub fn dup_chance(mut self, p: f64) -> Self {
        self.faults.duplicate = p;
        self
    }

    /// Chance (0-1) that a frame is held back behind later ones.
    pub fn reorder_chance(mut self, p: f64) -> Self {
        self.faults.reorder = p;
        self
    }

    /// Chance (0-1) that a frame has a bit flipped.
    pub fn corrupt_chance(mut self, p: f64) -> Self {
        self.faults.corrupt = p;
        self
    }

    /// One-way latency on the wire.
    pub fn latency(mut self, d: Duration) -> Self {
        self.faults = self.faults.with_latency(d);
        self
    }

    /// Packet lines, pcap and events of the server stack, as on the command line (default: silent).
    pub fn trace(mut self, trace: TraceConfig) -> Self {
        self.trace = trace;
        self
    }

    /// The services' settings (idle timeout, qotd message).
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// The server's `--max-connections` (default 1024).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// The TCP socket buffers of the server (its `--max-window`) and of the client; default
    /// [`TCP_BUFFER`] each.
    pub fn buffers(mut self, server: usize, client: usize) -> Self {
        self.buffers = (server, client);
        self
    }

    /// Builds both stacks. Panics only if a trace output file cannot be created.
    pub fn build(self) -> Harness {
        let clock = Clock::virtual_at_zero();
        let now = clock.now();
        let epoch = clock.wall_at(Instant::ZERO);
        let (a, b) = wire();
        let wire = a.control();
        let tracer = Tracer::new(self.trace, epoch).expect("trace outputs of the harness");
        let faults = self
            .faults
            .is_active()
            .then(|| FaultInjector::new(self.faults));
        let server_port = Nic::new(Box::new(a) as Box<dyn FrameIo>, tracer).with_faults(faults);
        let seed = self.faults.seed;
        let server_cfg = StackConfig {
            mac: parse_mac(topology::SERVER_MAC).expect("constant MAC"),
            addrs: SERVER_ADDRS
                .iter()
                .map(|c| parse_cidr(c).expect("constant CIDR"))
                .collect(),
            gateway_v4: None,
            gateway_v6: None,
            random_seed: seed,
            max_connections: self.max_connections,
            tcp_buffer: self.buffers.0,
        };
        let mut server = Stack::new(&server_cfg, server_port, now);
        server.keep_tcp_events();
        for &(kind, port) in &self.services {
            server.serve_tcp(kind, port);
            server.serve_udp(kind, port);
        }
        let client_port = Nic::new(
            Box::new(b) as Box<dyn FrameIo>,
            Tracer::new(TraceConfig::silent(), epoch).expect("a silent tracer opens nothing"),
        );
        let mut client_cfg = topology::client_stack_config(seed);
        client_cfg.tcp_buffer = self.buffers.1;
        let mut client = Stack::new(&client_cfg, client_port, now);
        client.keep_tcp_events();
        Harness {
            clock,
            server,
            client,
            wire,
            status: Status::default(),
            settings: self.settings,
        }
    }
}

/// A loss repair a stack began on one of its connections ([`Harness::loss_repairs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairSeen {
    /// The connection id, as that stack's trace names it (`c12`).
    pub conn: u64,
    /// Fast recovery (with or without SACK) or a retransmission timeout.
    pub kind: LossRepair,
    /// The congestion window before, bytes.
    pub cwnd_before: usize,
    /// The connection's figures once the repair began.
    pub figures: TcpFigures,
}

/// Two stacks on a virtual wire; see the module documentation.
pub struct Harness {
    clock: Clock,
    server: Stack<Tracer>,
    client: Stack<Tracer>,
    /// The server sits on end A of the wire, the client on end B.
    wire: WireControl,
    status: Status,
    settings: Settings,
}

impl Harness {
    /// Starts building a harness (no services, no faults, silent trace).
    pub fn builder() -> HarnessBuilder {
        HarnessBuilder {
            services: Vec::new(),
            faults: FaultConfig::default(),
            settings: Settings::default(),
            trace: TraceConfig::silent(),
            max_connections: 1024,
            buffers: (TCP_BUFFER, TCP_BUFFER),
        }
    }

    /// Virtual time since the harness was built.
    pub fn now(&self) -> Duration {
        Duration::from_micros(self.clock.now().total_micros().max(0) as u64)
    }

    /// One turn of both stacks at the current time; returns whether any frame moved.
    pub fn poll(&mut self) -> bool {
        let now = self.clock.now();
        let before = self.frames();
        let wall = self.clock.wall();
        self.server
            .serve_turn(now, wall, BUDGET, &mut self.status, &self.settings);
        let mut scratch = Status::default();
        self.client.turn(now, BUDGET, &mut scratch, |_, _| {});
        self.report_lost();
        self.frames() != before
    }

    fn frames(&self) -> u64 {
        let (s, c) = (self.server.nic().counters(), self.client.nic().counters());
        s.packets_in + s.packets_out + c.packets_in + c.packets_out
    }

    /// The next moment anything is due, if anything is.
    fn deadline(&mut self) -> Option<Instant> {
        let now = self.clock.now();
        match (self.server.poll_at(now), self.client.poll_at(now)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Turns until nothing moves (bounded: time must move eventually).
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let moved = self.poll();
            let pending =
                self.server.nic().io().has_pending() || self.client.nic().io().has_pending();
            if !moved && !pending {
                break;
            }
        }
    }

    /// Turns until nothing moves, then jumps the clock to the next deadline.
    fn settle_and_advance(&mut self, limit: Instant) {
        self.settle();
        let deadline = self.deadline();
        self.clock.advance_idle(deadline, Some(limit));
    }

    /// Runs until `cond` holds or `limit` of virtual time passed; returns whether `cond` held.
    /// `cond` is checked whenever the network has settled (no frame moves any more), before the
    /// clock jumps to the next deadline: a step that reacts to a state change (send once
    /// established) never waits for a jump it did not need.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut cond: impl FnMut(&mut Harness) -> bool,
    ) -> bool {
        let end = self.clock.now() + smol(limit);
        loop {
            if cond(self) {
                return true;
            }
            if self.clock.now() >= end {
                return false;
            }
            self.settle();
            if cond(self) {
                return true;
            }
            let deadline = self.deadline();
            self.clock.advance_idle(deadline, Some(end));
        }
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.clock.now() + smol(d);
        while self.clock.now() < end {
            self.settle_and_advance(end);
        }
    }

    // ---- The client's verbs.

    /// Opens a TCP connection from the client stack to `port` on the server stack.
    pub fn connect(&mut self, port: u16) -> Result<TcpHandle, ConnectError> {
        self.client
            .tcp_connect(SocketAddr::new(IpAddr::V4(SERVER), port))
    }

    /// Opens a TCP connection from the client stack to any address.
    pub fn connect_to(&mut self, addr: SocketAddr) -> Result<TcpHandle, ConnectError> {
        self.client.tcp_connect(addr)
    }

    /// The state of a client socket.
    /// A released handle's socket is gone: it reads as closed.
    pub fn state(&mut self, h: TcpHandle) -> tcp::State {
        self.client.tcp(h).map_or(tcp::State::Closed, |s| s.state())
    }

    /// Whether the connection can carry data (the handshake completed).
    pub fn is_established(&mut self, h: TcpHandle) -> bool {
        self.client.tcp(h).is_ok_and(|s| s.may_send())
    }

    /// Closed, or in TIME-WAIT with its last ACK gone out (the peer can leave LAST-ACK; TIME-WAIT
    /// itself is the stack's to hold, without the socket). A released handle reads as closed.
    pub fn is_closed(&mut self, h: TcpHandle) -> bool {
        self.client.tcp_close_done(h).unwrap_or(true)
    }

    /// Queues as much of `data` as the send buffer takes; returns how much.
    pub fn send(&mut self, h: TcpHandle, data: &[u8]) -> usize {
        let Ok(s) = self.client.tcp(h) else {
            return 0;
        };
        if !s.can_send() {
            return 0;
        }
        s.send_slice(data).unwrap_or(0)
    }

    /// Everything received so far.
    pub fn recv(&mut self, h: TcpHandle) -> Vec<u8> {
        let mut out = Vec::new();
        let Ok(s) = self.client.tcp(h) else {
            return out;
        };
        while s.can_recv() {
            let n = s.recv(|b| {
                (b.len(), {
                    out.extend_from_slice(b);
                    b.len()
                })
            });
            if n.unwrap_or(0) == 0 {
                break;
            }
        }
        out
    }

    /// Sends FIN after what is queued.
    pub fn close(&mut self, h: TcpHandle) {
        if let Ok(s) = self.client.tcp(h) {
            s.close();
        }
    }

    /// Lets a client socket go: after [`Harness::close`] and [`Harness::is_closed`], the stack keeps
    /// TIME-WAIT without it and tells the connection's last figures ([`Harness::final_figures`]).
    /// The handle is stale from then on.
    pub fn release_socket(&mut self, h: TcpHandle) {
        self.client.tcp_release(h);
    }

    /// Connects to `port`, sends `data` while reading back, and once as many bytes came back (or the
    /// connection ended) closes and waits for the close to finish (two minutes at most). Returns
    /// what came back, for the caller to compare; an error if not all of it came back within `limit`
    /// (the connection is then aborted, so that a failed echo leaves nothing behind).
    pub fn echo(&mut self, port: u16, data: &[u8], limit: Duration) -> Result<Vec<u8>, EchoError> {
        let s = self.connect(port).map_err(EchoError::Connect)?;
        let mut sent = 0;
        let mut got = Vec::with_capacity(data.len());
        let ok = self.run_until(limit, |h| {
            if sent < data.len() {
                sent += h.send(s, &data[sent..]);
            }
            got.extend(h.recv(s));
            got.len() >= data.len() || h.is_closed(s)
        });
        if !ok || got.len() < data.len() {
            let state = self.state(s);
            self.client.tcp_abort(s);
            return Err(EchoError::Incomplete {
                sent,
                got: got.len(),
                want: data.len(),
                state,
            });
        }
        self.close(s);
        self.run_until(ECHO_CLOSE_LIMIT, |h| {
            h.recv(s);
            h.is_closed(s)
        });
        // Our last ACK is out: the socket goes, and the stack holds TIME-WAIT without it.
        self.client.tcp_release(s);
        Ok(got)
    }

    /// Sends one UDP datagram to `port` on the server and waits up to `limit` for one reply.
    pub fn udp_request(&mut self, port: u16, payload: &[u8], limit: Duration) -> Option<Vec<u8>> {
        let h = self.client.udp_open().ok()?;
        let ep = IpEndpoint::new(IpAddress::Ipv4(SERVER), port);
        self.client.udp(h).send_slice(payload, ep).ok()?;
        let mut reply = None;
        self.run_until(limit, |hs| {
            let mut buf = vec![0u8; crate::stack::UDP_DATAGRAM_MAX];
            if let Ok((n, _)) = hs.client.udp(h).recv_slice(&mut buf) {
                reply = Some(buf[..n].to_vec());
            }
            reply.is_some()
        });
        self.client.release(h);
        reply
    }

    // ---- The wire's verbs.

    /// Puts a raw Ethernet frame (see [`crate::frames`]) on the wire towards `to`, as if the other
    /// stack had sent it; it arrives on the next turn, through the faults like any frame. A frame for
    /// the server that the wire cannot take (partitioned, or its queue full) is counted and traced as
    /// a drop on the way in.
    pub fn inject(&mut self, to: Side, frame: &[u8]) {
        let end = match to {
            Side::Server => End::A,
            Side::Client => End::B,
        };
        if let TxOutcome::Dropped(reason) = self.wire.inject(end, frame) {
            if to == Side::Server {
                let now = self.clock.now();
                self.server
                    .nic_mut()
                    .lost(now, Direction::In, frame, reason);
            }
        }
    }

    /// Changes the faults from now on (the seed in `faults` restarts the fault stream, so a run stays
    /// deterministic); frames already delayed still arrive when due. No fault at all turns injection
    /// off. As when built, faults act on the server's side of the wire, both ways.
    pub fn set_faults(&mut self, faults: FaultConfig) {
        let injector = faults.is_active().then(|| FaultInjector::new(faults));
        self.server.nic_mut().set_faults(injector);
    }

    /// Cuts the wire: every frame either way is lost, also those on their way. Lost frames count as
    /// drops (`"link: partitioned"`) in [`Harness::counters`] and show as dropped in the trace.
    pub fn partition(&mut self) {
        self.wire.partition();
        self.report_lost();
    }

    /// Mends the wire after [`Harness::partition`].
    pub fn repair(&mut self) {
        self.wire.repair();
    }

    /// Holds every frame on the wire, both ways: queued, not delivered, until [`Harness::release`].
    pub fn hold(&mut self) {
        self.wire.hold();
    }

    /// Delivers the held frames, in the order they were sent, from the next turn on.
    pub fn release(&mut self) {
        self.wire.release();
    }

    /// Shows the frames a partition cost in the server's counters and trace: towards the server as
    /// lost on the way in, towards the client as lost after the server sent them.
    fn report_lost(&mut self) {
        let now = self.clock.now();
        let nic = self.server.nic_mut();
        self.wire.drain_lost(|to, frame| {
            let dir = match to {
                End::A => Direction::In,
                End::B => Direction::Out,
            };
            nic.lost(now, dir, frame, PARTITIONED);
        });
    }

    // ---- What the server stack saw and holds.

    /// The frames the server stack saw, decoded (the most recent 4096), oldest first.
    pub fn packets(&self) -> Vec<PacketRecord> {
        self.packets_since(0)
    }

    /// A mark in the server's packet records: [`Harness::packets_since`] it returns only newer ones.
    pub fn packet_mark(&self) -> u64 {
        self.server.observer().last_packet_seq()
    }

    /// The server's packet records after `mark`, oldest first.
    pub fn packets_since(&self, mark: u64) -> Vec<PacketRecord> {
        self.server
            .observer()
            .recent_packets(mark)
            .cloned()
            .collect()
    }

    /// The packet lines the server stack would log for those frames.
    pub fn packet_lines(&self) -> Vec<String> {
        let t = self.server.observer();
        t.recent_packets(0).map(|r| t.packet_line(r)).collect()
    }

    /// The TCP flags of every segment to or from server port `port`, in order; they print as
    /// `"SYN"`, `"SYN,ACK"`... and compare with the bits: `flags[1] == TcpFlags::SYN | TcpFlags::ACK`.
    pub fn tcp_flags(&self, port: u16) -> Vec<TcpFlags> {
        self.packets()
            .iter()
            .filter_map(|r| r.decoded.tcp.as_ref())
            .filter(|t| t.src_port == port || t.dst_port == port)
            .map(|t| t.flags)
            .collect()
    }

    /// Segments the tracer flagged as retransmissions.
    pub fn retransmissions(&self) -> usize {
        self.packets()
            .iter()
            .filter(|r| r.labels.contains("retransmission"))
            .count()
    }

    /// Frames lost on the way (fault injector, partition), by direction as the server sees it.
    pub fn dropped(&self, dir: Direction) -> usize {
        self.packets()
            .iter()
            .filter(|r| r.dir == dir && r.dropped.is_some())
            .count()
    }

    /// The server stack's counters (frames, bytes, connections, drops by reason).
    pub fn counters(&self) -> Counters {
        let mut c = self.server.all_counters();
        self.server.observer().merge_into(&mut c);
        c
    }

    /// How many times a neighbour of the server changed MAC address (ARP said another MAC for an
    /// address than before: a second host, or spoofing); each change counts once, the same MAC again
    /// counts nothing. The server's `neighbours_moved` counter.
    pub fn neighbour_moves(&self) -> u64 {
        self.server.counters().neighbours_moved
    }

    /// TCP connections the server is serving (half-open ones included, listeners not).
    pub fn connection_count(&self) -> usize {
        self.server.connection_count()
    }

    /// Listening sockets in the server's pools.
    pub fn listener_count(&self) -> usize {
        self.server.listener_count()
    }

    /// Every socket in the server's socket set (connections, listeners, UDP).
    pub fn socket_count(&self) -> usize {
        self.server.socket_count()
    }

    /// Flows in the server tracer's table (live ones, and closed or connectionless ones not yet
    /// retired): what a flood of frames the stack cannot answer must not grow without bound.
    pub fn trace_flow_count(&self) -> usize {
        self.server.observer().flow_count()
    }

    /// Flows in the server tracer's table whose peer is `ip`.
    pub fn trace_flows_from(&self, ip: IpAddr) -> usize {
        self.server
            .observer()
            .flow_records()
            .filter(|f| f.remote.ip() == ip)
            .count()
    }

    /// Why each of the server tracer's last 64 closed TCP connections closed, oldest first (the
    /// `reason` of their `conn_closed` events: `"FIN"`, `"RST"`, `"handshake timed out"`...).
    pub fn trace_close_reasons(&self) -> Vec<&'static str> {
        self.server
            .observer()
            .closed_flows()
            .map(|f| f.close_reason.unwrap_or("-"))
            .collect()
    }

    /// A client socket's TCP figures now: congestion window and threshold, round-trip estimate and
    /// timer, and how many losses it repaired and how. `None` once the handle was released (its
    /// last figures are then in [`Harness::final_figures`]).
    pub fn tcp_figures(&self, h: TcpHandle) -> Option<TcpFigures> {
        self.client.tcp_figures(h).ok()
    }

    /// The loss repairs `side`'s stack began, oldest first (the last 16,384): one per fast
    /// recovery or retransmission timeout, as its trace narrates them.
    pub fn loss_repairs(&self, side: Side) -> Vec<RepairSeen> {
        self.stack(side)
            .tcp_events()
            .filter_map(|ev| match *ev {
                StackEvent::LossRepair {
                    conn,
                    kind,
                    cwnd_before,
                    figures,
                    ..
                } => Some(RepairSeen {
                    conn,
                    kind,
                    cwnd_before,
                    figures,
                }),
                _ => None,
            })
            .collect()
    }

    /// The last TCP figures of each connection of `side`'s stack whose socket was let go (at its
    /// close, or as it entered TIME-WAIT), oldest first, with its id.
    pub fn final_figures(&self, side: Side) -> Vec<(u64, TcpFigures)> {
        self.stack(side)
            .tcp_events()
            .filter_map(|ev| match *ev {
                StackEvent::Figures { conn, figures, .. } => Some((conn, figures)),
                _ => None,
            })
            .collect()
    }

    /// The TCP figures `side`'s stack sampled while its connections moved data (at most one a
    /// second per connection), oldest first, with the connection's id.
    pub fn sampled_figures(&self, side: Side) -> Vec<(u64, TcpFigures)> {
        self.stack(side)
            .tcp_events()
            .filter_map(|ev| match *ev {
                StackEvent::FiguresSampled { conn, figures, .. } => Some((conn, figures)),
                _ => None,
            })
            .collect()
    }

    /// The SVG ladder diagram of connection `id` as `side`'s tracer draws it (what `/conn/ID`
    /// serves), if the tracer still has the connection.
    pub fn conn_svg(&self, side: Side, id: u64) -> Option<String> {
        use crate::service::TraceView;
        self.stack(side).observer().conn_svg(id)
    }

    fn stack(&self, side: Side) -> &Stack<Tracer> {
        match side {
            Side::Server => &self.server,
            Side::Client => &self.client,
        }
    }

    /// The state of every TCP socket of the server, listeners included (for failure messages).
    pub fn tcp_states(&self) -> Vec<tcp::State> {
        self.server.tcp_states()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_bulk(h: &mut Harness, n: usize) -> Result<Vec<u8>, String> {
        let data: Vec<u8> = (0..n).map(|i| (i * 7 + i / 251) as u8).collect();
        let got = h
            .echo(7, &data, Duration::from_secs(6 * 3600))
            .map_err(|e| e.to_string())?;
        if got != data {
            return Err("echo differs".into());
        }
        Ok(got)
    }

    #[test]
    fn test_one_mebibyte_echo_under_twenty_percent_loss() {
        let mut h = Harness::builder()
            .serve(ServiceKind::Echo, 7)
            .seed(3)
            .drop_chance(0.2)
            .build();
        echo_bulk(&mut h, 1 << 20).unwrap();
        eprintln!(
            "1 MiB echo under 20% loss took {} s of virtual time",
            h.now().as_secs()
        );
        assert!(h.retransmissions() > 0, "loss must show as retransmissions");
        assert!(h.dropped(Direction::In) + h.dropped(Direction::Out) > 0);
    }

    #[test]
    fn test_same_seed_same_packets() {
        let run = || {
            let mut h = Harness::builder()
                .serve(ServiceKind::Echo, 7)
                .seed(9)
                .drop_chance(0.1)
                .build();
            echo_bulk(&mut h, 50_000).unwrap();
            h.packet_lines()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn test_handshake_and_close_are_recorded() {
        let mut h = Harness::builder()
            .serve(ServiceKind::Daytime, 13)
            .seed(1)
            .build();
        let s = h.connect(13).unwrap();
        assert!(h.run_until(Duration::from_secs(5), |h| h.is_closed(s)
            || !h.recv(s).is_empty()));
        h.run_until(Duration::from_secs(5), |h| {
            h.recv(s);
            if h.state(s) == tcp::State::CloseWait {
                h.close(s);
            }
            h.is_closed(s)
        });
        let flags = h.tcp_flags(13);
        assert_eq!(&flags[..3], ["SYN", "SYN,ACK", "ACK"]);
        assert_eq!(
            flags[..3],
            [TcpFlags::SYN, TcpFlags::SYN | TcpFlags::ACK, TcpFlags::ACK]
        );
        assert!(flags.iter().filter(|f| f.fin()).count() == 2, "{flags:?}");
        assert!(h
            .packets()
            .iter()
            .any(|r| r.labels.contains("handshake 3/3")));
    }

    #[test]
    fn test_udp_request_and_counters() {
        let mut h = Harness::builder()
            .serve(ServiceKind::Time, 37)
            .seed(2)
            .build();
        let reply = h.udp_request(37, b"", Duration::from_secs(2)).unwrap();
        assert_eq!(reply.len(), 4);
        // Virtual time starts at 2024-01-01T00:00:00Z.
        let secs = u32::from_be_bytes(reply.try_into().unwrap());
        assert_eq!(
            secs as u64,
            crate::clock::VIRTUAL_EPOCH_UNIX_SECS + 2_208_988_800
        );
        assert!(h.counters().packets_in >= 2);
    }

    fn echo_harness(seed: u64) -> Harness {
        Harness::builder()
            .serve(ServiceKind::Echo, 7)
            .seed(seed)
            .build()
    }

    #[test]
    fn test_partition_loses_both_ways_visibly_and_repair_recovers() {
        let mut h = echo_harness(4);
        let s = h.connect(7).unwrap();
        assert!(h.run_until(Duration::from_secs(5), |h| h.is_established(s)));
        h.partition();
        h.send(s, b"across a cut wire");
        // Long enough for the client to retransmit into the void, too short to give up.
        let got_any = h.run_until(Duration::from_secs(10), |h| !h.recv(s).is_empty());
        assert!(!got_any, "data crossed a partitioned wire");
        let lost = h.counters().drops.get(PARTITIONED).copied().unwrap_or(0);
        assert!(lost >= 2, "client retransmissions lost: {lost}");
        assert!(
            h.dropped(Direction::In) as u64 >= 2,
            "shown as dropped in the trace"
        );
        h.repair();
        let mut got = Vec::new();
        assert!(h.run_until(Duration::from_secs(30), |h| {
            got.extend(h.recv(s));
            got.len() == 17
        }));
        assert_eq!(got, b"across a cut wire");
        assert_eq!(
            h.echo(7, b"after", Duration::from_secs(5)).unwrap(),
            b"after"
        );
    }

    #[test]
    fn test_server_frames_lost_to_partition_are_out_drops() {
        // Chargen talks without being asked: the server has frames to lose.
        let mut h = Harness::builder()
            .serve(ServiceKind::Chargen, 19)
            .seed(4)
            .build();
        let s = h.connect(19).unwrap();
        assert!(h.run_until(Duration::from_secs(5), |h| !h.recv(s).is_empty()));
        h.partition();
        h.run_for(Duration::from_secs(5));
        h.recv(s);
        assert!(h.dropped(Direction::Out) >= 1, "{:?}", h.packet_lines());
        let dropped_out = h
            .packets()
            .iter()
            .filter(|r| r.dir == Direction::Out && r.dropped == Some(PARTITIONED))
            .count();
        assert_eq!(dropped_out, h.dropped(Direction::Out));
        assert!(h.recv(s).is_empty(), "data crossed a partitioned wire");
    }

    #[test]
    fn test_hold_queues_and_release_delivers_in_order() {
        let mut h = echo_harness(6);
        h.hold();
        let s = h.connect(7).unwrap();
        // Under the first SYN retransmission timeout: exactly one SYN waits on the wire.
        h.run_for(Duration::from_millis(500));
        assert!(h.packets().is_empty(), "a held frame was delivered");
        assert!(!h.is_established(s));
        h.release();
        assert!(h.run_until(Duration::from_secs(1), |h| h.is_established(s)));
        let flags = h.tcp_flags(7);
        assert_eq!(
            flags[..3],
            [TcpFlags::SYN, TcpFlags::SYN | TcpFlags::ACK, TcpFlags::ACK]
        );
        assert_eq!(h.counters().drops_total(), 0, "holding loses nothing");
    }

    #[test]
    fn test_injected_syn_is_answered_by_the_server() {
        let mut h = echo_harness(8);
        let syn = crate::frames::Tcp::new(45000, 7, 1000)
            .syn()
            .mss(1460)
            .to_server();
        h.inject(Side::Server, &syn);
        h.run_for(Duration::from_millis(10));
        let seen: Vec<(Direction, TcpFlags, u16)> = h
            .packets()
            .iter()
            .filter_map(|r| r.decoded.tcp.map(|t| (r.dir, t.flags, t.dst_port)))
            .collect();
        assert_eq!(seen[0], (Direction::In, TcpFlags(TcpFlags::SYN), 7));
        assert_eq!(
            seen[1],
            (
                Direction::Out,
                TcpFlags(TcpFlags::SYN | TcpFlags::ACK),
                45000
            )
        );
    }

    #[test]
    fn test_faults_changed_mid_run_are_seeded_and_can_be_lifted() {
        let run = || {
            let mut h = echo_harness(10);
            let data = vec![7u8; 100_000];
            assert_eq!(h.echo(7, &data, Duration::from_secs(60)).unwrap(), data);
            let clean = h.dropped(Direction::In) + h.dropped(Direction::Out);
            h.set_faults(FaultConfig {
                drop: 0.2,
                seed: 5,
                ..FaultConfig::default()
            });
            assert_eq!(h.echo(7, &data, Duration::from_secs(3600)).unwrap(), data);
            let lossy = h.dropped(Direction::In) + h.dropped(Direction::Out);
            h.set_faults(FaultConfig::default());
            assert_eq!(h.echo(7, &data, Duration::from_secs(60)).unwrap(), data);
            let after = h.dropped(Direction::In) + h.dropped(Direction::Out);
            assert_eq!(clean, 0);
            assert!(lossy > 0, "no drop under 20% loss");
            assert_eq!(after, lossy, "drops after the faults were lifted");
            h.packet_lines()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn test_echo_reports_what_is_missing() {
        let mut h = echo_harness(12);
        h.partition();
        match h.echo(7, b"nobody hears", Duration::from_secs(3)) {
            Err(EchoError::Incomplete {
                got: 0, want: 12, ..
            }) => {}
            other => panic!("{other:?}"),
        }
        let mut h = Harness::builder().seed(12).build();
        let e = h.echo(7, b"refused", Duration::from_secs(3)).unwrap_err();
        assert!(e.to_string().contains("0 of 7"), "{e}");
    }

    /// The client closes first and its last ACK reaches the server before `echo` returns: the
    /// server's connection is over (no LAST-ACK left), the client holds TIME-WAIT without a socket.
    #[test]
    fn test_echo_returns_once_the_last_ack_is_out() {
        for seed in 1..=5 {
            let mut h = echo_harness(seed);
            assert_eq!(h.echo(7, b"book", Duration::from_secs(5)).unwrap(), b"book");
            h.run_for(Duration::from_millis(1));
            assert_eq!(h.connection_count(), 0, "seed {seed}: the server is done");
            assert_eq!(h.client.time_wait_count(), 1, "seed {seed}");
            let flags: Vec<String> = h.tcp_flags(7).iter().map(|f| f.to_string()).collect();
            assert!(
                !flags.iter().any(|f| f.contains("RST")),
                "seed {seed}: {flags:?}"
            );
            assert_eq!(flags.last().map(String::as_str), Some("ACK"), "{flags:?}");
        }
    }

    /// A closed connection's TIME-WAIT deadline is the next thing due: an echo that only acted after
    /// each jump of the clock would see its whole limit pass between the handshake and its first send.
    #[test]
    fn test_echo_reacts_within_the_same_instant_after_a_close() {
        let mut h = echo_harness(1);
        assert_eq!(
            h.echo(7, b"first", Duration::from_secs(5)).unwrap(),
            b"first"
        );
        let before = h.now();
        assert_eq!(
            h.echo(7, b"second", Duration::from_secs(5)).unwrap(),
            b"second"
        );
        assert!(h.now() - before < Duration::from_secs(1), "{:?}", h.now());
    }

    #[test]
    fn test_frame_injected_towards_the_client_is_answered_across_the_wire() {
        use crate::frames::{Arp, Eth, BROADCAST_MAC, SERVER_MAC};
        let mut h = echo_harness(14);
        let who_has = Arp::request(SERVER_MAC, SERVER, CLIENT);
        h.inject(
            Side::Client,
            &Eth::new(SERVER_MAC, BROADCAST_MAC).arp(&who_has),
        );
        h.run_for(Duration::from_millis(10));
        let answered = h.packets().iter().any(|r| {
            r.dir == Direction::In
                && r.decoded
                    .arp
                    .is_some_and(|a| a.op == "reply" && a.sender_ip == CLIENT)
        });
        assert!(answered, "{:?}", h.packet_lines());
    }

    #[test]
    fn test_frame_injected_into_a_partition_is_a_drop_on_the_way_in() {
        let mut h = echo_harness(16);
        h.partition();
        let syn = crate::frames::Tcp::new(45000, 7, 1).syn().to_server();
        h.inject(Side::Server, &syn);
        h.run_for(Duration::from_millis(10));
        let p = h.packets();
        assert_eq!(p.len(), 1, "{:?}", h.packet_lines());
        assert_eq!((p[0].dir, p[0].dropped), (Direction::In, Some(PARTITIONED)));
        assert_eq!(h.counters().drops.get(PARTITIONED), Some(&1));
        h.repair();
        let mark = h.packet_mark();
        h.inject(Side::Server, &syn);
        h.run_for(Duration::from_millis(10));
        let answered = h
            .packets_since(mark)
            .iter()
            .any(|r| r.dir == Direction::Out && r.decoded.tcp.is_some_and(|t| t.flags.syn()));
        assert!(answered, "answered once the wire is mended");
    }
}
