//! The userspace side: a smoltcp `Interface` and `SocketSet` on a [`Port`], listener pools that give
//! smoltcp the backlog it lacks, and the smoltcp transport that drives the sans-IO services.
//!
//! smoltcp has no listen queue: one socket serves one connection, and a SYN that finds no listening
//! socket is answered with RST. So every served port keeps a listening socket at all times. Before the
//! stack sees each received frame, [`Stack::ingress`] peeks at it: a SYN to a served port first gets a
//! fresh listener (unless `--max-connections` is reached: then it is refused, counted and logged), and a
//! repeated SYN for a connection that already has a socket is kept away from the listener, which would
//! otherwise open a second connection for the same 4-tuple (smoltcp gives a segment to the first socket
//! that accepts it).

use slab::Slab;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{icmp, tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress, IpAddress, IpCidr,
    IpEndpoint, IpProtocol, Ipv4Address, Ipv4Packet, Ipv6Address, Ipv6Packet, TcpPacket,
};
use std::collections::HashMap;
use std::net::SocketAddr;

use crate::device::{FrameIo, Port};
use crate::service::{Context, DatagramService, ServiceKind, Settings, StreamSession, TraceView};
use crate::status::{ConnRow, Counters, Endpoint, Proto, StackKind, Status};
use crate::trace::Tracer;

/// Socket buffer per direction and TCP connection. Above 64 KiB smoltcp turns on window scaling.
pub const TCP_BUFFER: usize = 64 * 1024;
/// Datagrams a UDP socket holds each way, and their total payload.
pub const UDP_PACKETS: usize = 64;
pub const UDP_BUFFER: usize = 64 * 1024;
/// A UDP reply is never larger than this (RFC 864 and friends; no amplification).
pub const UDP_REPLY_MAX: usize = 512;

pub type StackPort = Port<Box<dyn FrameIo>, Tracer>;

/// How the userspace stack is set up.
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub mac: EthernetAddress,
    pub addrs: Vec<IpCidr>,
    pub gateway_v4: Option<Ipv4Address>,
    pub gateway_v6: Option<Ipv6Address>,
    /// Seeds smoltcp's initial sequence numbers and ephemeral ports.
    pub random_seed: u64,
    pub max_connections: usize,
    pub tcp_buffer: usize,
}

/// A seed from the kernel's entropy pool, so that initial sequence numbers differ every run.
pub fn entropy_seed() -> u64 {
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

pub fn state_name(s: tcp::State) -> &'static str {
    match s {
        tcp::State::Closed => "CLOSED",
        tcp::State::Listen => "LISTEN",
        tcp::State::SynSent => "SYN-SENT",
        tcp::State::SynReceived => "SYN-RECEIVED",
        tcp::State::Established => "ESTABLISHED",
        tcp::State::FinWait1 => "FIN-WAIT-1",
        tcp::State::FinWait2 => "FIN-WAIT-2",
        tcp::State::CloseWait => "CLOSE-WAIT",
        tcp::State::Closing => "CLOSING",
        tcp::State::LastAck => "LAST-ACK",
        tcp::State::TimeWait => "TIME-WAIT",
    }
}

/// The listening sockets of one served TCP port.
struct Pool {
    port: u16,
    kind: ServiceKind,
    listeners: Vec<SocketHandle>,
}

struct UdpService {
    handle: SocketHandle,
    kind: ServiceKind,
    service: Box<dyn DatagramService>,
}

struct Conn {
    id: u64,
    handle: SocketHandle,
    kind: ServiceKind,
    local: IpEndpoint,
    remote: IpEndpoint,
    /// Created when the handshake completes.
    session: Option<Box<dyn StreamSession>>,
    state: tcp::State,
    eof: bool,
    closing: bool,
}

/// A TCP client socket this stack opened (`connect`, `get`, the demo's tour, the harness).
struct ClientConn {
    handle: SocketHandle,
    local: IpEndpoint,
    remote: IpEndpoint,
    state: tcp::State,
    /// The owner is done with it: remove the socket once it is closed (TIME-WAIT runs its course).
    released: bool,
}

/// Why a client socket could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// No address of the stack can reach that destination (wrong IP version, no route).
    Unaddressable(SocketAddr),
    /// Every ephemeral port is in use.
    NoPorts,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Unaddressable(a) => {
                write!(f, "cannot reach {a} from this stack's addresses")
            }
            ConnectError::NoPorts => write!(f, "no free ephemeral port"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// The dynamic (ephemeral) port range, RFC 6335.
pub const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;

/// A TCP segment's addressing, read from a frame before the stack sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPeek {
    pub src: IpEndpoint,
    pub dst: IpEndpoint,
    pub syn: bool,
    pub ack: bool,
    pub rst: bool,
}

/// Reads the TCP addressing of an Ethernet frame with checked views; `None` for anything else or
/// anything malformed (the stack and the tracer deal with those).
pub fn peek_tcp(frame: &[u8]) -> Option<TcpPeek> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (src, dst, payload) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp || ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            let (s, d) = (
                IpAddress::Ipv4(ip.src_addr()),
                IpAddress::Ipv4(ip.dst_addr()),
            );
            let hl = ip.header_len() as usize;
            let tl = (ip.total_len() as usize).min(eth.payload().len());
            (s, d, eth.payload().get(hl..tl)?)
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            (
                IpAddress::Ipv6(ip.src_addr()),
                IpAddress::Ipv6(ip.dst_addr()),
                ip.payload(),
            )
        }
        _ => return None,
    };
    let tcp = TcpPacket::new_checked(payload).ok()?;
    Some(TcpPeek {
        src: IpEndpoint::new(src, tcp.src_port()),
        dst: IpEndpoint::new(dst, tcp.dst_port()),
        syn: tcp.syn(),
        ack: tcp.ack(),
        rst: tcp.rst(),
    })
}

pub fn to_socket_addr(e: IpEndpoint) -> SocketAddr {
    SocketAddr::new(e.addr.into(), e.port)
}

pub struct Stack {
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    pub port: StackPort,
    pools: Vec<Pool>,
    udp: Vec<UdpService>,
    conns: Slab<Conn>,
    by_tuple: HashMap<(IpEndpoint, IpEndpoint), usize>,
    max_connections: usize,
    tcp_buffer: usize,
    counters: Counters,
    /// The last time a refusal was logged, to keep a SYN flood from flooding the log too.
    last_refusal_log: Option<Instant>,
    scratch: Box<[u8]>,
    reply: Box<[u8]>,
    clients: Slab<ClientConn>,
    next_ephemeral: u16,
    /// The time of the last ingress or egress, for narration outside of them.
    last_now: Instant,
}

impl Stack {
    pub fn new(cfg: &StackConfig, mut port: StackPort, now: Instant) -> Stack {
        let mut config = Config::new(HardwareAddress::Ethernet(cfg.mac));
        config.random_seed = cfg.random_seed;
        let mut iface = Interface::new(config, &mut port, now);
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
        let max = port.io().max_frame();
        Stack {
            iface,
            sockets: SocketSet::new(Vec::new()),
            port,
            pools: Vec::new(),
            udp: Vec::new(),
            conns: Slab::new(),
            by_tuple: HashMap::new(),
            max_connections: cfg.max_connections,
            tcp_buffer: cfg.tcp_buffer,
            counters: Counters::default(),
            last_refusal_log: None,
            scratch: vec![0u8; max].into_boxed_slice(),
            reply: vec![0u8; max].into_boxed_slice(),
            clients: Slab::new(),
            // Seeded, so a deterministic run picks the same ports every time.
            next_ephemeral: EPHEMERAL.start() + (cfg.random_seed % 16384) as u16,
            last_now: now,
        }
    }

    fn ephemeral_port(&mut self) -> Option<u16> {
        let span = (EPHEMERAL.end() - EPHEMERAL.start()) as u32 + 1;
        for _ in 0..span {
            let p = self.next_ephemeral;
            self.next_ephemeral = if p == *EPHEMERAL.end() {
                *EPHEMERAL.start()
            } else {
                p + 1
            };
            let used = self.clients.iter().any(|(_, c)| c.local.port == p)
                || self.pools.iter().any(|pl| pl.port == p);
            if !used {
                return Some(p);
            }
        }
        None
    }

    /// Opens a TCP connection from an ephemeral port (SYN goes out at the next egress).
    pub fn tcp_connect(&mut self, remote: SocketAddr) -> Result<SocketHandle, ConnectError> {
        let remote_ep = IpEndpoint::new(IpAddress::from(remote.ip()), remote.port());
        let local_addr = self
            .iface
            .get_source_address(&remote_ep.addr)
            .ok_or(ConnectError::Unaddressable(remote))?;
        let port = self.ephemeral_port().ok_or(ConnectError::NoPorts)?;
        let local = IpEndpoint::new(local_addr, port);
        let mut sock = self.new_tcp_socket();
        sock.connect(self.iface.context(), remote_ep, local)
            .map_err(|_| ConnectError::Unaddressable(remote))?;
        let handle = self.sockets.add(sock);
        self.clients.insert(ClientConn {
            handle,
            local,
            remote: remote_ep,
            state: tcp::State::Closed,
            released: false,
        });
        Ok(handle)
    }

    /// A client TCP socket opened with [`Stack::tcp_connect`].
    pub fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    /// The owner is done with a client TCP socket: it is removed once closed, so the last ACK and
    /// TIME-WAIT still happen. Never use the handle afterwards.
    pub fn tcp_release(&mut self, h: SocketHandle) {
        if let Some(key) = self
            .clients
            .iter()
            .find(|(_, c)| c.handle == h)
            .map(|(k, _)| k)
        {
            self.clients[key].released = true;
            if self.sockets.get::<tcp::Socket>(h).state() == tcp::State::Closed {
                self.clients.remove(key);
                self.sockets.remove(h);
            }
        }
    }

    /// Aborts a client TCP socket (RST) and releases it.
    pub fn tcp_abort(&mut self, h: SocketHandle) {
        self.sockets.get_mut::<tcp::Socket>(h).abort();
        self.tcp_release(h);
    }

    /// A UDP socket on an ephemeral port.
    pub fn udp_open(&mut self) -> Result<SocketHandle, ConnectError> {
        let port = self.ephemeral_port().ok_or(ConnectError::NoPorts)?;
        let rx = udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
            vec![0u8; UDP_BUFFER],
        );
        let tx = udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
            vec![0u8; UDP_BUFFER],
        );
        let mut sock = udp::Socket::new(rx, tx);
        sock.bind(port).map_err(|_| ConnectError::NoPorts)?;
        Ok(self.sockets.add(sock))
    }

    pub fn udp(&mut self, h: SocketHandle) -> &mut udp::Socket<'static> {
        self.sockets.get_mut::<udp::Socket>(h)
    }

    /// An ICMP socket for echo requests with this identifier.
    pub fn icmp_open(&mut self, ident: u16) -> SocketHandle {
        let rx = icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 8], vec![0u8; 4096]);
        let tx = icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 8], vec![0u8; 4096]);
        let mut sock = icmp::Socket::new(rx, tx);
        // Binding an identifier cannot fail for a fresh socket.
        let _ = sock.bind(icmp::Endpoint::Ident(ident));
        self.sockets.add(sock)
    }

    pub fn icmp(&mut self, h: SocketHandle) -> &mut icmp::Socket<'static> {
        self.sockets.get_mut::<icmp::Socket>(h)
    }

    /// Removes a UDP or ICMP socket.
    pub fn release(&mut self, h: SocketHandle) {
        self.sockets.remove(h);
    }

    /// Narrates the state changes of client sockets; removes released ones that closed.
    fn sync_clients(&mut self, now: Instant) {
        let tracer = self.port.observer_mut();
        let mut gone = Vec::new();
        for (key, c) in self.clients.iter_mut() {
            let state = self.sockets.get::<tcp::Socket>(c.handle).state();
            if state != c.state {
                let from = if c.state == tcp::State::Closed && state != tcp::State::Closed {
                    // A fresh socket reads CLOSED until its first poll; narrate it as opening.
                    "CLOSED"
                } else {
                    state_name(c.state)
                };
                tracer.tcp_state(
                    now,
                    to_socket_addr(c.local),
                    Some(to_socket_addr(c.remote)),
                    from,
                    state_name(state),
                );
                c.state = state;
            }
            if c.released && state == tcp::State::Closed {
                gone.push(key);
            }
        }
        for key in gone {
            let c = self.clients.remove(key);
            self.sockets.remove(c.handle);
        }
    }

    fn new_tcp_socket(&self) -> tcp::Socket<'static> {
        let rx = tcp::SocketBuffer::new(vec![0u8; self.tcp_buffer]);
        let tx = tcp::SocketBuffer::new(vec![0u8; self.tcp_buffer]);
        tcp::Socket::new(rx, tx)
    }

    /// Listens on a TCP port for a service.
    pub fn serve_tcp(&mut self, kind: ServiceKind, port: u16) {
        self.pools.push(Pool {
            port,
            kind,
            listeners: Vec::new(),
        });
        let i = self.pools.len() - 1;
        self.refill(i);
    }

    /// Binds a UDP port for a service.
    pub fn serve_udp(&mut self, kind: ServiceKind, port: u16) -> bool {
        let Some(service) = kind.new_datagram() else {
            return false;
        };
        let rx = udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
            vec![0u8; UDP_BUFFER],
        );
        let tx = udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
            vec![0u8; UDP_BUFFER],
        );
        let mut sock = udp::Socket::new(rx, tx);
        if sock.bind(port).is_err() {
            return false;
        }
        let handle = self.sockets.add(sock);
        self.udp.push(UdpService {
            handle,
            kind,
            service,
        });
        true
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
            for p in &self.pools {
                v.push(Endpoint {
                    stack: StackKind::Stack,
                    proto: Proto::Tcp,
                    addr: SocketAddr::new((*a).into(), p.port),
                    service: p.kind.name(),
                });
            }
            for u in &self.udp {
                let port = self.sockets.get::<udp::Socket>(u.handle).endpoint().port;
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

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// TCP connections (not counting listeners).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    pub fn listener_count(&self) -> usize {
        self.pools.iter().map(|p| p.listeners.len()).sum()
    }

    pub fn socket_count(&self) -> usize {
        self.sockets.iter().count()
    }

    pub fn tracer(&mut self) -> &mut Tracer {
        self.port.observer_mut()
    }

    /// Moves listeners that took a SYN into the connection table, then makes sure one listens again
    /// (unless the connection limit is reached).
    fn refill(&mut self, pool: usize) {
        let mut i = 0;
        while i < self.pools[pool].listeners.len() {
            let h = self.pools[pool].listeners[i];
            let sock = self.sockets.get::<tcp::Socket>(h);
            if sock.state() == tcp::State::Listen {
                i += 1;
                continue;
            }
            self.pools[pool].listeners.swap_remove(i);
            let state = sock.state();
            match (sock.local_endpoint(), sock.remote_endpoint()) {
                (Some(local), Some(remote)) => {
                    let kind = self.pools[pool].kind;
                    let tracer = self.port.observer_mut();
                    let id = tracer.conn_id(to_socket_addr(local), to_socket_addr(remote));
                    let key = self.conns.insert(Conn {
                        id,
                        handle: h,
                        kind,
                        local,
                        remote,
                        session: None,
                        state: tcp::State::Listen,
                        eof: false,
                        closing: false,
                    });
                    self.by_tuple.insert((local, remote), key);
                    let _ = state;
                }
                // Left LISTEN without a peer (cannot happen with smoltcp, but never leak a socket).
                _ => {
                    self.sockets.remove(h);
                }
            }
        }
        let listening = self.pools[pool].listeners.len();
        if listening == 0 && self.conns.len() < self.max_connections {
            let mut sock = self.new_tcp_socket();
            if sock.listen(self.pools[pool].port).is_ok() {
                let h = self.sockets.add(sock);
                self.pools[pool].listeners.push(h);
            }
        }
    }

    /// Looks at the frame waiting in the rx slot before the stack gets it. Returns false when the frame
    /// was kept from the stack.
    fn inspect_rx(&mut self, now: Instant) -> bool {
        let Some(p) = self.port.peek_rx().and_then(peek_tcp) else {
            return true;
        };
        if !p.syn || p.ack || p.rst || !self.iface.has_ip_addr(p.dst.addr) {
            return true;
        }
        if let Some(&key) = self.by_tuple.get(&(p.dst, p.src)) {
            let state = self
                .sockets
                .get::<tcp::Socket>(self.conns[key].handle)
                .state();
            if state != tcp::State::TimeWait && state != tcp::State::Closed {
                // The connection's own socket answers a repeated SYN by retransmitting its SYN-ACK on
                // its timer; a listener must not see it and open a twin.
                self.port.discard_rx(
                    "repeated SYN for an existing connection (its socket answers on its timer)",
                );
                return false;
            }
        }
        let Some(pool) = self.pools.iter().position(|pl| pl.port == p.dst.port) else {
            self.port.observer_mut().rst_reason(
                to_socket_addr(p.dst),
                to_socket_addr(p.src),
                "no listener on this port",
            );
            return true;
        };
        self.refill(pool);
        if self.pools[pool].listeners.is_empty() {
            self.counters.conns_refused += 1;
            let tracer = self.port.observer_mut();
            tracer.rst_reason(
                to_socket_addr(p.dst),
                to_socket_addr(p.src),
                "connection limit reached",
            );
            let quiet = self
                .last_refusal_log
                .is_some_and(|t| now < t + smoltcp::time::Duration::from_secs(1));
            if !quiet {
                log::warn!(
                    target: "tapstack::tcp",
                    "refusing SYN from {} to port {}: {} connections open, the --max-connections limit ({} refused so far)",
                    p.src, p.dst.port, self.conns.len(), self.counters.conns_refused
                );
                self.last_refusal_log = Some(now);
            }
        }
        true
    }

    /// Feeds up to `budget` received frames to the stack. Returns how many were processed; `budget`
    /// processed means more may be waiting.
    pub fn ingress(&mut self, now: Instant, budget: usize, status: &mut Status) -> usize {
        self.last_now = now;
        self.port.flush_held(now);
        self.iface.poll_maintenance(now);
        let mut n = 0;
        while n < budget && self.port.fill_rx(now) {
            n += 1;
            let peek = self.port.peek_rx().and_then(peek_tcp);
            if !self.inspect_rx(now) {
                continue;
            }
            self.iface
                .poll_ingress_single(now, &mut self.port, &mut self.sockets);
            // Narrate right after the frame that caused it, so no state is skipped in the log.
            if let Some(p) = peek {
                if p.syn && !p.ack {
                    if let Some(pool) = self.pools.iter().position(|pl| pl.port == p.dst.port) {
                        self.refill(pool);
                    }
                }
                if let Some(&key) = self.by_tuple.get(&(p.dst, p.src)) {
                    self.sync_conn(now, key, status, false);
                } else if !self.clients.is_empty() {
                    self.sync_clients(now);
                }
            }
        }
        n
    }

    /// Sends what the sockets have queued, then narrates any state change it caused.
    pub fn egress(&mut self, now: Instant, status: &mut Status) {
        self.last_now = now;
        self.port.flush_held(now);
        loop {
            match self
                .iface
                .poll_egress(now, &mut self.port, &mut self.sockets)
            {
                smoltcp::iface::PollResult::None => break,
                smoltcp::iface::PollResult::SocketStateChanged => {}
            }
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.sync_conn(now, key, status, true);
        }
        if !self.clients.is_empty() {
            self.sync_clients(now);
        }
    }

    /// Logs a state change of one connection; removes it once closed. TIME-WAIT is cut short: the
    /// socket goes once the final ACK has left (`after_egress`), so sockets do not pile up for 10 s
    /// each under a high connection rate. A peer whose final ACK was lost and who repeats its FIN then
    /// gets an RST, which ends its LAST-ACK just as well.
    fn sync_conn(&mut self, now: Instant, key: usize, status: &mut Status, after_egress: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let state = self.sockets.get::<tcp::Socket>(conn.handle).state();
        if state == conn.state {
            if state == tcp::State::TimeWait && after_egress {
                self.remove_conn(now, key, status);
            }
            return;
        }
        let tracer = self.port.observer_mut();
        let (local, remote) = (to_socket_addr(conn.local), to_socket_addr(conn.remote));
        tracer.tcp_state(
            now,
            local,
            Some(remote),
            state_name(conn.state),
            state_name(state),
        );
        conn.state = state;
        if state == tcp::State::Closed || (state == tcp::State::TimeWait && after_egress) {
            self.remove_conn(now, key, status);
        } else {
            status.conns.insert(
                conn.id,
                ConnRow {
                    id: conn.id,
                    stack: StackKind::Stack,
                    proto: Proto::Tcp,
                    local,
                    remote: Some(remote),
                    state: state_name(state),
                    service: conn.kind.name(),
                },
            );
        }
    }

    fn remove_conn(&mut self, now: Instant, key: usize, status: &mut Status) {
        {
            let conn = &self.conns[key];
            if conn.state == tcp::State::TimeWait {
                let tracer = self.port.observer_mut();
                tracer.tcp_state(
                    now,
                    to_socket_addr(conn.local),
                    Some(to_socket_addr(conn.remote)),
                    "TIME-WAIT",
                    "CLOSED",
                );
            }
            let conn = self.conns.remove(key);
            self.by_tuple.remove(&(conn.local, conn.remote));
            self.sockets.remove(conn.handle);
            status.conns.remove(&conn.id);
            if conn.session.is_some() {
                self.counters.conns_closed += 1;
            }
            // A slot freed below the limit: make sure every port listens again.
            for i in 0..self.pools.len() {
                if self.pools[i].listeners.is_empty() {
                    self.refill(i);
                }
            }
        }
    }

    /// Runs the services of every connection and UDP port. The sessions see the tracer's records
    /// through `cx.trace`.
    pub fn run_services(
        &mut self,
        now: Instant,
        wall: std::time::SystemTime,
        status: &Status,
        settings: &Settings,
    ) {
        for i in 0..self.pools.len() {
            self.refill(i);
        }
        let cx = &Context {
            now,
            wall,
            status,
            settings,
            trace: Some(self.port.observer() as &dyn TraceView),
        };
        for (_, conn) in self.conns.iter_mut() {
            let sock = self.sockets.get_mut::<tcp::Socket>(conn.handle);
            drive_tcp(cx, conn, sock, &mut self.counters);
        }
        for u in self.udp.iter_mut() {
            let sock = self.sockets.get_mut::<udp::Socket>(u.handle);
            drive_udp(
                cx,
                u,
                sock,
                &mut self.scratch,
                &mut self.reply,
                &mut self.counters,
            );
        }
    }

    /// The earliest time anything in the stack wants to run again.
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let mut t = self.iface.poll_at(now, &self.sockets);
        if let Some(p) = self.port.poll_at() {
            t = Some(t.map_or(p, |t| t.min(p)));
        }
        for (_, conn) in self.conns.iter() {
            if let Some(s) = conn.session.as_ref().and_then(|s| s.poll_timeout()) {
                t = Some(t.map_or(s, |t| t.min(s)));
            }
        }
        t
    }

    /// Starts closing every connection (FIN); true when none is left.
    pub fn close_all(&mut self) -> bool {
        for (_, conn) in self.conns.iter_mut() {
            let sock = self.sockets.get_mut::<tcp::Socket>(conn.handle);
            match sock.state() {
                // Nothing was exchanged yet: no FIN to wait for.
                tcp::State::SynReceived => sock.abort(),
                _ => sock.close(),
            }
            conn.closing = true;
        }
        for pool in &mut self.pools {
            for h in pool.listeners.drain(..) {
                self.sockets.remove(h);
            }
        }
        self.conns.is_empty()
    }

    pub fn has_connections(&self) -> bool {
        !self.conns.is_empty()
    }

    /// Aborts whatever is still open (RST): the last step of a shutdown whose grace time ran out.
    pub fn abort_all(&mut self) {
        for (_, conn) in self.conns.iter_mut() {
            self.sockets.get_mut::<tcp::Socket>(conn.handle).abort();
        }
    }
}

fn drive_tcp(cx: &Context, conn: &mut Conn, sock: &mut tcp::Socket, counters: &mut Counters) {
    let state = sock.state();
    if conn.session.is_none() {
        if !matches!(
            state,
            tcp::State::Established
                | tcp::State::CloseWait
                | tcp::State::FinWait1
                | tcp::State::FinWait2
        ) {
            return;
        }
        counters.conns_accepted += 1;
        conn.session = Some(conn.kind.new_stream(cx));
    }
    let Some(session) = conn.session.as_mut() else {
        return;
    };
    if conn.closing {
        // Closed by us: whatever still arrives is read and thrown away, so the window stays open.
        while sock.can_recv() {
            if sock.recv(|b| (b.len(), b.len())).unwrap_or(0) == 0 {
                break;
            }
        }
        return;
    }
    if let Some(t) = session.poll_timeout() {
        if t <= cx.now {
            session.handle_timeout(cx);
        }
    }
    loop {
        let mut progress = false;
        while sock.can_recv() {
            let n = sock
                .recv(|b| {
                    let n = session.handle_input(cx, b);
                    (n, n)
                })
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            progress = true;
        }
        if !conn.eof && !sock.may_recv() && peer_has_closed(sock.state()) {
            conn.eof = true;
            session.handle_eof(cx);
            progress = true;
        }
        while sock.can_send() {
            let n = sock
                .send(|b| {
                    let n = session.poll_output(cx, b);
                    (n, n)
                })
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            progress = true;
        }
        if !progress {
            break;
        }
    }
    if session.is_finished() {
        // close() sends FIN after what is queued: nothing is cut off.
        sock.close();
        conn.closing = true;
    }
}

fn peer_has_closed(s: tcp::State) -> bool {
    matches!(
        s,
        tcp::State::CloseWait
            | tcp::State::LastAck
            | tcp::State::Closing
            | tcp::State::TimeWait
            | tcp::State::Closed
    )
}

/// Whether a UDP peer address must never be answered: broadcast, multicast or unspecified sources are
/// how reflection attacks start.
pub fn udp_source_unanswerable(a: IpAddress) -> bool {
    match a {
        IpAddress::Ipv4(v4) => v4.is_broadcast() || v4.is_multicast() || v4.is_unspecified(),
        IpAddress::Ipv6(v6) => v6.is_multicast() || v6.is_unspecified(),
    }
}

fn drive_udp(
    cx: &Context,
    u: &mut UdpService,
    sock: &mut udp::Socket,
    scratch: &mut [u8],
    reply: &mut [u8],
    counters: &mut Counters,
) {
    loop {
        let (len, meta) = match sock.recv_slice(scratch) {
            Ok(x) => x,
            Err(udp::RecvError::Truncated) => {
                counters.drop("udp: datagram larger than the buffer");
                continue;
            }
            Err(_) => break,
        };
        let to_group = meta.local_address.is_some_and(|a| match a {
            IpAddress::Ipv4(v4) => v4.is_broadcast() || v4.is_multicast(),
            IpAddress::Ipv6(v6) => v6.is_multicast(),
        });
        if udp_source_unanswerable(meta.endpoint.addr) || to_group {
            counters.drop("udp: broadcast or multicast, not answered");
            continue;
        }
        // Echo mirrors the request's size; everything else answers at most 512 bytes.
        let cap = if u.kind == ServiceKind::Echo {
            len.min(reply.len())
        } else {
            UDP_REPLY_MAX.min(reply.len())
        };
        let from = to_socket_addr(meta.endpoint);
        if let Some(n) = u
            .service
            .handle_datagram(cx, from, &scratch[..len], &mut reply[..cap])
        {
            let mut out = udp::UdpMetadata::from(meta.endpoint);
            out.local_address = meta.local_address;
            if sock.send_slice(&reply[..n.min(cap)], out).is_err() {
                counters.drop("udp: reply dropped, send buffer full");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{IpProtocol, Ipv4Repr, TcpControl, TcpRepr, TcpSeqNumber};

    fn syn_frame(src_port: u16, dst_port: u16) -> Vec<u8> {
        let src = Ipv4Address::new(192, 168, 69, 100);
        let dst = Ipv4Address::new(192, 168, 69, 1);
        let tcp = TcpRepr {
            src_port,
            dst_port,
            control: TcpControl::Syn,
            seq_number: TcpSeqNumber(1000),
            ack_number: None,
            window_len: 64240,
            window_scale: None,
            max_seg_size: Some(1460),
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; 14 + ip.buffer_len() + tcp.buffer_len()];
        let mut eth = EthernetFrame::new_unchecked(&mut buf);
        eth.set_src_addr(EthernetAddress([2, 0, 0, 0, 0, 2]));
        eth.set_dst_addr(EthernetAddress([2, 0, 0, 0, 0, 1]));
        eth.set_ethertype(EthernetProtocol::Ipv4);
        let caps = smoltcp::phy::ChecksumCapabilities::default();
        let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
        ip.emit(&mut ipp, &caps);
        let mut tcpp = TcpPacket::new_unchecked(ipp.payload_mut());
        tcp.emit(&mut tcpp, &src.into(), &dst.into(), &caps);
        buf
    }

    #[test]
    fn test_peek_reads_syn_addressing() {
        let f = syn_frame(49152, 7);
        let p = peek_tcp(&f).unwrap();
        assert!(p.syn && !p.ack && !p.rst);
        assert_eq!(p.src.port, 49152);
        assert_eq!(p.dst.port, 7);
    }

    #[test]
    fn test_peek_ignores_truncated_and_foreign_frames() {
        let f = syn_frame(1, 2);
        for cut in [0, 10, 14, 20, 33, 40, 50] {
            assert!(peek_tcp(&f[..cut]).is_none(), "cut at {cut}");
        }
        let mut arp = f.clone();
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!(peek_tcp(&arp).is_none());
    }

    #[test]
    fn test_udp_reflection_sources_are_refused() {
        assert!(udp_source_unanswerable(IpAddress::Ipv4(
            Ipv4Address::BROADCAST
        )));
        assert!(udp_source_unanswerable(IpAddress::Ipv4(Ipv4Address::new(
            224, 0, 0, 1
        ))));
        assert!(udp_source_unanswerable(IpAddress::Ipv4(
            Ipv4Address::UNSPECIFIED
        )));
        assert!(!udp_source_unanswerable(IpAddress::Ipv4(Ipv4Address::new(
            192, 168, 69, 100
        ))));
    }
}
