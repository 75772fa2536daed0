//! A harness for other people's tests: a server stack and a client stack on an in-memory wire, on a
//! virtual clock, with faults if asked. No root, no TAP, no threads, no sleeping: time jumps to the next
//! deadline, so a test of a one-minute retransmission backoff runs in milliseconds, and the same seed
//! replays the same packets.
//!
//! ```
//! use tapstack::harness::Harness;
//! use tapstack::service::ServiceKind;
//! use smoltcp::time::Duration;
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
//! // The recorded packets, decoded: the handshake came first.
//! let flags = h.tcp_flags(7);
//! assert_eq!(&flags[..3], ["SYN", "SYN,ACK", "ACK"]);
//! ```

use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint};
use std::net::{IpAddr, SocketAddr};

use crate::addr::{parse_cidr, parse_mac};
use crate::clock::Clock;
use crate::device::wire::wire;
use crate::device::{Direction, FaultConfig, FaultInjector, FrameIo, Nic};
use crate::service::{ServiceKind, Settings};
use crate::stack::{ConnectError, Stack, StackConfig, TcpHandle, TCP_BUFFER};
use crate::status::{Counters, Status};
use crate::topology::{self, SERVER_ADDRS as DEFAULT_ADDRS};
pub use crate::topology::{CLIENT, SERVER};
use crate::trace::{PacketRecord, TraceConfig, Tracer};

/// Frames each stack takes in per turn.
const BUDGET: usize = 64;

/// How to build a [`Harness`].
pub struct HarnessBuilder {
    services: Vec<(ServiceKind, u16)>,
    faults: FaultConfig,
    settings: Settings,
    trace: TraceConfig,
    max_connections: usize,
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

    pub fn drop_chance(mut self, p: f64) -> Self {
        self.faults.drop = p;
        self
    }

    pub fn dup_chance(mut self, p: f64) -> Self {
        self.faults.duplicate = p;
        self
    }

    pub fn reorder_chance(mut self, p: f64) -> Self {
        self.faults.reorder = p;
        self
    }

    pub fn corrupt_chance(mut self, p: f64) -> Self {
        self.faults.corrupt = p;
        self
    }

    /// One-way latency on the wire.
    pub fn latency(mut self, d: Duration) -> Self {
        self.faults.latency = d;
        self
    }

    /// Packet lines, pcap and events of the server stack, as on the command line (default: silent).
    pub fn trace(mut self, trace: TraceConfig) -> Self {
        self.trace = trace;
        self
    }

    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Builds both stacks. Panics only if a trace output file cannot be created.
    pub fn build(self) -> Harness {
        let clock = Clock::virtual_at_zero();
        let now = clock.now();
        let epoch = clock.wall_at(Instant::ZERO);
        let (a, b) = wire();
        let tracer = Tracer::new(self.trace, epoch).expect("trace outputs of the harness");
        let faults = self
            .faults
            .is_active()
            .then(|| FaultInjector::new(self.faults));
        let server_port = Nic::new(Box::new(a) as Box<dyn FrameIo>, tracer).with_faults(faults);
        let seed = self.faults.seed;
        let server_cfg = StackConfig {
            mac: parse_mac("02:00:00:00:00:01").expect("constant MAC"),
            addrs: DEFAULT_ADDRS
                .iter()
                .map(|c| parse_cidr(c).expect("constant CIDR"))
                .collect(),
            gateway_v4: None,
            gateway_v6: None,
            random_seed: seed,
            max_connections: self.max_connections,
            tcp_buffer: TCP_BUFFER,
        };
        let mut server = Stack::new(&server_cfg, server_port, now);
        for &(kind, port) in &self.services {
            server.serve_tcp(kind, port);
            server.serve_udp(kind, port);
        }
        let client_port = Nic::new(
            Box::new(b) as Box<dyn FrameIo>,
            Tracer::new(TraceConfig::silent(), epoch).expect("a silent tracer opens nothing"),
        );
        let client_cfg = topology::client_stack_config(seed);
        let client = Stack::new(&client_cfg, client_port, now);
        Harness {
            clock,
            server,
            client,
            status: Status::default(),
            settings: self.settings,
        }
    }
}

/// Two stacks on a virtual wire; see the module documentation.
pub struct Harness {
    clock: Clock,
    pub server: Stack<Tracer>,
    pub client: Stack<Tracer>,
    status: Status,
    settings: Settings,
}

impl Harness {
    pub fn builder() -> HarnessBuilder {
        HarnessBuilder {
            services: Vec::new(),
            faults: FaultConfig::default(),
            settings: Settings::default(),
            trace: TraceConfig::silent(),
            max_connections: 1024,
        }
    }

    /// Virtual time since the harness was built.
    pub fn now(&self) -> Instant {
        self.clock.now()
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

    /// Turns until nothing moves, then jumps the clock to the next deadline.
    fn settle_and_advance(&mut self, limit: Instant) {
        for _ in 0..10_000 {
            let moved = self.poll();
            let pending =
                self.server.nic().io().has_pending() || self.client.nic().io().has_pending();
            if !moved && !pending {
                break;
            }
        }
        let deadline = self.deadline();
        self.clock.advance_idle(deadline, Some(limit));
    }

    /// Runs until `cond` holds (checked after every settled turn) or `limit` of virtual time passed;
    /// returns whether `cond` held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut cond: impl FnMut(&mut Harness) -> bool,
    ) -> bool {
        let end = self.clock.now() + limit;
        loop {
            if cond(self) {
                return true;
            }
            if self.clock.now() >= end {
                return false;
            }
            self.settle_and_advance(end);
        }
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.clock.now() + d;
        while self.clock.now() < end {
            self.settle_and_advance(end);
        }
    }

    /// Opens a TCP connection from the client stack to `port` on the server stack.
    pub fn connect(&mut self, port: u16) -> Result<TcpHandle, ConnectError> {
        self.client
            .tcp_connect(SocketAddr::new(IpAddr::V4(SERVER), port))
    }

    /// Opens a TCP connection from the client stack to any address.
    pub fn connect_to(&mut self, addr: SocketAddr) -> Result<TcpHandle, ConnectError> {
        self.client.tcp_connect(addr)
    }

    /// A released handle's socket is gone: it reads as closed.
    pub fn state(&mut self, h: TcpHandle) -> tcp::State {
        self.client.tcp(h).map_or(tcp::State::Closed, |s| s.state())
    }

    pub fn is_established(&mut self, h: TcpHandle) -> bool {
        self.client.tcp(h).is_ok_and(|s| s.may_send())
    }

    /// Closed, or as good as closed (TIME-WAIT).
    pub fn is_closed(&mut self, h: TcpHandle) -> bool {
        matches!(self.state(h), tcp::State::Closed | tcp::State::TimeWait)
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

    /// Sends one UDP datagram to `port` on the server and waits up to `limit` for one reply.
    pub fn udp_request(&mut self, port: u16, payload: &[u8], limit: Duration) -> Option<Vec<u8>> {
        let h = self.client.udp_open().ok()?;
        let ep = IpEndpoint::new(IpAddress::Ipv4(SERVER), port);
        self.client.udp(h).send_slice(payload, ep).ok()?;
        let mut reply = None;
        self.run_until(limit, |hs| {
            let mut buf = [0u8; 2048];
            if let Ok((n, _)) = hs.client.udp(h).recv_slice(&mut buf) {
                reply = Some(buf[..n].to_vec());
            }
            reply.is_some()
        });
        self.client.release(h);
        reply
    }

    /// The frames the server stack saw, decoded (the most recent 4096), oldest first.
    pub fn packets(&self) -> Vec<PacketRecord> {
        self.server.observer().recent_packets(0).cloned().collect()
    }

    /// The packet lines the server stack would log for those frames.
    pub fn packet_lines(&self) -> Vec<String> {
        let t = self.server.observer();
        t.recent_packets(0).map(|r| t.packet_line(r)).collect()
    }

    /// The TCP flags of every segment to or from server port `port`, in order (`"SYN"`, `"SYN,ACK"`...).
    pub fn tcp_flags(&self, port: u16) -> Vec<String> {
        self.packets()
            .iter()
            .filter_map(|r| r.decoded.tcp.as_ref())
            .filter(|t| t.src_port == port || t.dst_port == port)
            .map(|t| t.flags.to_string())
            .collect()
    }

    /// Segments the tracer flagged as retransmissions.
    pub fn retransmissions(&self) -> usize {
        self.packets()
            .iter()
            .filter(|r| r.labels.contains("retransmission"))
            .count()
    }

    /// Frames the fault injector dropped, by direction.
    pub fn dropped(&self, dir: Direction) -> usize {
        self.packets()
            .iter()
            .filter(|r| r.dir == dir && r.dropped.is_some())
            .count()
    }

    /// The server stack's counters (frames, bytes, connections, drops by reason).
    pub fn counters(&mut self) -> Counters {
        let mut c = self.server.all_counters();
        self.server.observer().merge_into(&mut c);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_bulk(h: &mut Harness, n: usize) -> Result<Vec<u8>, String> {
        let data: Vec<u8> = (0..n).map(|i| (i * 7 + i / 251) as u8).collect();
        let s = h.connect(7).map_err(|e| e.to_string())?;
        let mut sent = 0;
        let mut got = Vec::new();
        let ok = h.run_until(Duration::from_secs(6 * 3600), |h| {
            if sent < data.len() {
                sent += h.send(s, &data[sent..]);
            }
            got.extend(h.recv(s));
            got.len() >= n
        });
        if !ok {
            return Err(format!("only {} of {n} bytes echoed", got.len()));
        }
        h.close(s);
        h.run_until(Duration::from_secs(60), |h| h.is_closed(s));
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
            h.now().secs()
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
        assert!(
            flags.iter().filter(|f| f.contains("FIN")).count() == 2,
            "{flags:?}"
        );
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
}
