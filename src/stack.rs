//! The userspace side: a smoltcp `Interface` on a [`Port`], listener pools that give smoltcp the backlog
//! it lacks, and the smoltcp transport that drives the sans-IO services.
//!
//! How it scales with open connections. smoltcp finds a segment's socket by asking every socket of the
//! set in turn, and its egress asks every socket whether it has something to send: with one big set,
//! each frame costs O(connections). So every TCP socket here lives in a socket set of its own (an
//! *entry*), and [`Stack::ingress`] demultiplexes before smoltcp: it peeks at each frame, finds the entry
//! by 4-tuple in a hash map, and hands smoltcp just that one-socket set. Only entries touched in a turn
//! (a frame arrived, the app used them, a timer fell due) get services, egress and narration; their next
//! deadlines sit in an ordered index. UDP and ICMP sockets share one small set, which also takes ARP,
//! NDP and the TCP segments no entry owns (smoltcp answers those with RST, as a kernel would).
//!
//! smoltcp has no listen queue: one socket serves one connection, and a SYN that finds no listening
//! socket gets RST. So each served port keeps a listening entry at all times: a SYN to a served port
//! first gets a fresh listener (unless `--max-connections` is reached: then it is refused, counted and
//! logged), and a repeated SYN for a connection that already has an entry goes to that entry.
//!
//! Memory. Closed sockets are kept and reused (`listen` and `connect` reset a socket without touching
//! its buffers), and their buffers are carved from large arenas whose pages the kernel supplies zeroed
//! and untouched: an idle connection costs only the pages its data actually touched.

use slab::Slab;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{icmp, tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress, IpAddress, IpCidr,
    IpEndpoint, IpProtocol, Ipv4Address, Ipv4Packet, Ipv6Address, Ipv6Packet, TcpPacket,
};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use crate::device::{FrameIo, Port};
use crate::service::{Context, DatagramService, ServiceKind, Settings, StreamSession, TraceView};
use crate::status::{ConnRow, Counters, Endpoint, Proto, StackKind, Status};
use crate::trace::Tracer;

/// Socket buffer per direction and TCP connection on a path of wire-sized frames. smoltcp answers a
/// retransmission timeout by sending everything from the first unacknowledged byte again, so under
/// loss a larger window costs more than it gains (measured: 256 KiB made a 256 KiB echo at 10% loss
/// take over 20 s where 64 KiB takes 3-11 s).
pub const TCP_BUFFER: usize = 64 * 1024;
/// The same where the device offloads segmentation: 64 KiB segments need a window of several of them,
/// well above the 64 frames of one ingress batch, or a bulk sender waits for our ACK (window scaling).
pub const TCP_BUFFER_OFFLOAD: usize = 256 * 1024;
/// A connection that has not finished its handshake by then is dropped (its peer never answered the
/// SYN-ACK: a spoofed SYN, or a peer that went away), and its socket returns to the pool.
pub const HANDSHAKE_TIMEOUT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(10);
/// How long a served connection waits in FIN-WAIT-2 for the peer's FIN after the service closed
/// (Linux's `tcp_fin_timeout` is also 60 s). Without it a peer that never closes holds a connection
/// slot, and enough of them fill `--max-connections`.
pub const FIN_WAIT2_TIMEOUT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(60);
/// Buffers come from arenas this large: above glibc's largest mmap threshold (32 MiB), so each arena is
/// a fresh anonymous mapping whose pages stay non-resident until data touches them.
const ARENA: usize = 64 << 20;
/// Datagrams a UDP socket holds each way, and their total payload.
pub const UDP_PACKETS: usize = 64;
pub const UDP_BUFFER: usize = 64 * 1024;
pub use crate::service::UDP_REPLY_MAX;

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

/// The listening entries of one served TCP port.
struct Pool {
    port: u16,
    kind: ServiceKind,
    listeners: Vec<usize>,
}

struct UdpService {
    handle: SocketHandle,
    kind: ServiceKind,
    service: Box<dyn DatagramService>,
}

/// A connection served by one of our services.
struct Served {
    id: u64,
    kind: ServiceKind,
    /// When the SYN came: for the handshake timeout.
    since: Instant,
    /// Created when the handshake completes.
    session: Option<Box<dyn StreamSession>>,
    eof: bool,
    closing: bool,
}

enum Role {
    Listener {
        pool: usize,
    },
    Served(Served),
    /// A client socket opened with [`Stack::tcp_connect`].
    Client {
        /// The owner is done with it: remove it once closed (TIME-WAIT runs its course).
        released: bool,
    },
}

/// One TCP socket in a socket set of its own.
struct Entry {
    set: SocketSet<'static>,
    handle: SocketHandle,
    role: Role,
    local: IpEndpoint,
    remote: IpEndpoint,
    /// The state last narrated.
    state: tcp::State,
    /// When it was entered.
    state_since: Instant,
    /// Where this entry sits in the deadline index.
    deadline: Option<Instant>,
    /// Queued in `ready` for this turn.
    ready: bool,
}

impl Entry {
    fn sock(&mut self) -> &mut tcp::Socket<'static> {
        self.set.get_mut::<tcp::Socket>(self.handle)
    }

    fn state_now(&self) -> tcp::State {
        self.set.get::<tcp::Socket>(self.handle).state()
    }
}

/// A TCP client socket of this stack (`connect`, `get`, the demo's tour, the harness).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpHandle(usize);

/// Zeroed buffer space that nothing has touched yet, in slices of one size.
struct Arena {
    slice: usize,
    free: Vec<&'static mut [u8]>,
}

impl Arena {
    fn take(&mut self) -> &'static mut [u8] {
        if let Some(s) = self.free.pop() {
            return s;
        }
        // Leaked on purpose: the slices go into sockets that are recycled, never dropped, so the arenas
        // are bounded by the most sockets ever open at once (about --max-connections).
        let arena: &'static mut [u8] = vec![0u8; ARENA.max(self.slice)].leak();
        self.free.extend(arena.chunks_exact_mut(self.slice));
        self.free.pop().expect("an arena holds at least one slice")
    }
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
    pub seq: u32,
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
        seq: tcp.seq_number().0 as u32,
        syn: tcp.syn(),
        ack: tcp.ack(),
        rst: tcp.rst(),
    })
}

pub fn to_socket_addr(e: IpEndpoint) -> SocketAddr {
    SocketAddr::new(e.addr.into(), e.port)
}

/// A TCP connection's (local, remote) endpoints as the demultiplexing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tuple(IpEndpoint, IpEndpoint);

impl std::hash::Hash for Tuple {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        crate::key::hash_tuple(
            h,
            6,
            (self.0.addr.into(), self.0.port),
            (self.1.addr.into(), self.1.port),
        );
    }
}

pub struct Stack {
    pub iface: Interface,
    pub port: StackPort,
    /// UDP service sockets and client UDP/ICMP sockets; also the set for frames no entry owns.
    misc: SocketSet<'static>,
    entries: Slab<Entry>,
    by_tuple: HashMap<Tuple, usize>,
    pools: Vec<Pool>,
    udp: Vec<UdpService>,
    /// Entries touched this turn.
    ready: Vec<usize>,
    /// Entries by their next deadline.
    deadlines: BTreeSet<(Instant, usize)>,
    /// Served entries in the order their SYN came; those still in SYN-RECEIVED are the half-open
    /// ones that a new SYN may push out at the connection limit (stale keys are skipped).
    half_open: std::collections::VecDeque<usize>,
    /// Closed sockets, each alone in its set, ready for reuse.
    spare: Vec<(SocketSet<'static>, SocketHandle)>,
    arena: Arena,
    served: usize,
    max_connections: usize,
    counters: Counters,
    /// The last time a refusal was logged, to keep a SYN flood from flooding the log too.
    last_refusal_log: Option<Instant>,
    scratch: Box<[u8]>,
    reply: Box<[u8]>,
    /// The subnet broadcast addresses of the stack's IPv4 networks: UDP sent there is not answered.
    broadcasts: Vec<IpAddress>,
    next_ephemeral: u16,
    /// Local ports of client connections, so that picking a free one does not scan every entry.
    client_ports: std::collections::HashSet<u16>,
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
            port,
            misc: SocketSet::new(Vec::new()),
            entries: Slab::new(),
            by_tuple: HashMap::new(),
            pools: Vec::new(),
            udp: Vec::new(),
            ready: Vec::new(),
            deadlines: BTreeSet::new(),
            half_open: std::collections::VecDeque::new(),
            spare: Vec::new(),
            arena: Arena {
                slice: cfg.tcp_buffer,
                free: Vec::new(),
            },
            served: 0,
            max_connections: cfg.max_connections,
            counters: Counters::default(),
            last_refusal_log: None,
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
            // Seeded, so a deterministic run picks the same ports every time.
            next_ephemeral: EPHEMERAL.start() + (cfg.random_seed % 16384) as u16,
            client_ports: std::collections::HashSet::new(),
            last_now: now,
        }
    }

    /// A closed TCP socket alone in its set: a recycled one, or a new one on untouched buffers.
    fn fresh_socket(&mut self) -> (SocketSet<'static>, SocketHandle) {
        if let Some(s) = self.spare.pop() {
            return s;
        }
        let rx = tcp::SocketBuffer::new(&mut self.arena.take()[..]);
        let tx = tcp::SocketBuffer::new(&mut self.arena.take()[..]);
        let mut set = SocketSet::new(Vec::with_capacity(1));
        let handle = set.add(tcp::Socket::new(rx, tx));
        (set, handle)
    }

    fn insert_entry(
        &mut self,
        set: SocketSet<'static>,
        handle: SocketHandle,
        role: Role,
        local: IpEndpoint,
        remote: IpEndpoint,
    ) -> usize {
        let state = set.get::<tcp::Socket>(handle).state();
        let key = self.entries.insert(Entry {
            set,
            handle,
            role,
            local,
            remote,
            state,
            state_since: self.last_now,
            deadline: None,
            ready: false,
        });
        self.mark_ready(key);
        key
    }

    fn mark_ready(&mut self, key: usize) {
        if let Some(e) = self.entries.get_mut(key) {
            if !e.ready {
                e.ready = true;
                self.ready.push(key);
            }
        }
    }

    /// Takes an entry out; its socket is aborted silently (nothing more is sent) and kept for reuse.
    fn recycle(&mut self, key: usize) {
        let mut e = self.entries.remove(key);
        if let Some(t) = e.deadline.take() {
            self.deadlines.remove(&(t, key));
        }
        // Keep the half-open queue short: drop keys from its front that are no longer half-open.
        while let Some(&k) = self.half_open.front() {
            let stale = k == key
                || !self
                    .entries
                    .get(k)
                    .is_some_and(|x| x.state == tcp::State::SynReceived);
            if !stale {
                break;
            }
            self.half_open.pop_front();
        }
        if self.by_tuple.get(&Tuple(e.local, e.remote)) == Some(&key) {
            self.by_tuple.remove(&Tuple(e.local, e.remote));
        }
        match e.role {
            Role::Served(_) => self.served -= 1,
            Role::Client { .. } => {
                self.client_ports.remove(&e.local.port);
            }
            Role::Listener { .. } => {}
        }
        // abort() only queues an RST for the next egress of this set, which never comes: `listen` and
        // `connect` reset the socket first.
        e.sock().abort();
        if self.spare.len() < self.max_connections.max(64) {
            self.spare.push((e.set, e.handle));
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
            let used = self.client_ports.contains(&p) || self.pools.iter().any(|pl| pl.port == p);
            if !used {
                return Some(p);
            }
        }
        None
    }

    /// Opens a TCP connection from an ephemeral port (SYN goes out at the next egress).
    pub fn tcp_connect(&mut self, remote: SocketAddr) -> Result<TcpHandle, ConnectError> {
        let remote_ep = IpEndpoint::new(IpAddress::from(remote.ip()), remote.port());
        let local_addr = self
            .iface
            .get_source_address(&remote_ep.addr)
            .ok_or(ConnectError::Unaddressable(remote))?;
        let port = self.ephemeral_port().ok_or(ConnectError::NoPorts)?;
        let local = IpEndpoint::new(local_addr, port);
        let (mut set, handle) = self.fresh_socket();
        let res =
            set.get_mut::<tcp::Socket>(handle)
                .connect(self.iface.context(), remote_ep, local);
        if res.is_err() {
            self.spare.push((set, handle));
            return Err(ConnectError::Unaddressable(remote));
        }
        let key = self.insert_entry(
            set,
            handle,
            Role::Client { released: false },
            local,
            remote_ep,
        );
        // Narrate from CLOSED: the socket reads SYN-SENT already.
        self.entries[key].state = tcp::State::Closed;
        self.by_tuple.insert(Tuple(local, remote_ep), key);
        self.client_ports.insert(port);
        Ok(TcpHandle(key))
    }

    /// A client TCP socket opened with [`Stack::tcp_connect`]. Using it marks it for this turn's egress.
    pub fn tcp(&mut self, h: TcpHandle) -> &mut tcp::Socket<'static> {
        self.mark_ready(h.0);
        self.entries[h.0].sock()
    }

    /// The owner is done with a client TCP socket: it is removed once closed, so the last ACK and
    /// TIME-WAIT still happen. Never use the handle afterwards.
    pub fn tcp_release(&mut self, h: TcpHandle) {
        if let Some(e) = self.entries.get_mut(h.0) {
            if let Role::Client { released } = &mut e.role {
                *released = true;
            }
            self.mark_ready(h.0);
        }
    }

    /// Aborts a client TCP socket (RST) and releases it.
    pub fn tcp_abort(&mut self, h: TcpHandle) {
        if let Some(e) = self.entries.get_mut(h.0) {
            e.sock().abort();
        }
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
        Ok(self.misc.add(sock))
    }

    pub fn udp(&mut self, h: SocketHandle) -> &mut udp::Socket<'static> {
        self.misc.get_mut::<udp::Socket>(h)
    }

    /// An ICMP socket for echo requests with this identifier.
    pub fn icmp_open(&mut self, ident: u16) -> SocketHandle {
        let rx = icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 8], vec![0u8; 4096]);
        let tx = icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 8], vec![0u8; 4096]);
        let mut sock = icmp::Socket::new(rx, tx);
        // Binding an identifier cannot fail for a fresh socket.
        let _ = sock.bind(icmp::Endpoint::Ident(ident));
        self.misc.add(sock)
    }

    pub fn icmp(&mut self, h: SocketHandle) -> &mut icmp::Socket<'static> {
        self.misc.get_mut::<icmp::Socket>(h)
    }

    /// Removes a UDP or ICMP socket.
    pub fn release(&mut self, h: SocketHandle) {
        self.misc.remove(h);
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
        let handle = self.misc.add(sock);
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
                let port = self.misc.get::<udp::Socket>(u.handle).endpoint().port;
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

    /// TCP connections being served (not counting listeners and client sockets).
    pub fn connection_count(&self) -> usize {
        self.served
    }

    /// The state of every TCP socket in use (listeners, connections, client sockets), for tests and
    /// leak accounting.
    pub fn tcp_states(&self) -> Vec<tcp::State> {
        self.entries.iter().map(|(_, e)| e.state_now()).collect()
    }

    pub fn listener_count(&self) -> usize {
        self.pools.iter().map(|p| p.listeners.len()).sum()
    }

    /// Sockets in use: every entry (listeners, connections, client sockets) and the UDP/ICMP ones.
    pub fn socket_count(&self) -> usize {
        self.entries.len() + self.misc.iter().count()
    }

    pub fn tracer(&mut self) -> &mut Tracer {
        self.port.observer_mut()
    }

    /// Moves listeners that took a SYN into service, then makes sure one listens again (unless the
    /// connection limit is reached).
    fn refill(&mut self, pool: usize) {
        let mut i = 0;
        while i < self.pools[pool].listeners.len() {
            let key = self.pools[pool].listeners[i];
            let e = &mut self.entries[key];
            let state = e.state_now();
            if state == tcp::State::Listen {
                i += 1;
                continue;
            }
            self.pools[pool].listeners.swap_remove(i);
            let sock = e.set.get::<tcp::Socket>(e.handle);
            match (sock.local_endpoint(), sock.remote_endpoint()) {
                (Some(local), Some(remote)) => {
                    let kind = self.pools[pool].kind;
                    let id = self
                        .port
                        .observer_mut()
                        .conn_id(to_socket_addr(local), to_socket_addr(remote));
                    let e = &mut self.entries[key];
                    e.local = local;
                    e.remote = remote;
                    e.role = Role::Served(Served {
                        id,
                        kind,
                        since: self.last_now,
                        session: None,
                        eof: false,
                        closing: false,
                    });
                    self.served += 1;
                    self.half_open.push_back(key);
                    if let Some(old) = self.by_tuple.insert(Tuple(local, remote), key) {
                        // A stale entry for the same 4-tuple (TIME-WAIT cut short): the new one wins.
                        if old != key && self.entries.contains(old) {
                            self.recycle(old);
                        }
                    }
                    self.mark_ready(key);
                }
                // Left LISTEN without a peer (an RST reset it): listen again.
                _ => {
                    let port = self.pools[pool].port;
                    let e = &mut self.entries[key];
                    let _ = e.sock().listen(port);
                    i += 1;
                }
            }
        }
        if self.pools[pool].listeners.is_empty() && self.served < self.max_connections {
            let port = self.pools[pool].port;
            let (mut set, handle) = self.fresh_socket();
            if set.get_mut::<tcp::Socket>(handle).listen(port).is_ok() {
                let any = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::UNSPECIFIED), port);
                let key = self.insert_entry(set, handle, Role::Listener { pool }, any, any);
                self.entries[key].state = tcp::State::Listen;
                self.pools[pool].listeners.push(key);
            } else {
                self.spare.push((set, handle));
            }
        }
    }

    /// Decides which socket set gets the frame in the rx slot: an entry's key, or `None` for the
    /// shared set.
    fn route(&mut self, now: Instant, p: &TcpPeek) -> Option<usize> {
        if !self.iface.has_ip_addr(p.dst.addr) {
            return None;
        }
        let is_syn = p.syn && !p.ack && !p.rst;
        if let Some(&key) = self.by_tuple.get(&Tuple(p.dst, p.src)) {
            let state = self.entries[key].state_now();
            if !(is_syn && matches!(state, tcp::State::TimeWait | tcp::State::Closed)) {
                return Some(key);
            }
            // A new connection reusing the 4-tuple of one in TIME-WAIT: that one is over.
            if matches!(self.entries[key].role, Role::Served(_)) {
                self.remove_served(now, key);
            }
        }
        if !is_syn {
            return None;
        }
        let Some(pool) = self.pools.iter().position(|pl| pl.port == p.dst.port) else {
            self.port.observer_mut().rst_reason(
                to_socket_addr(p.dst),
                to_socket_addr(p.src),
                "no listener on this port",
            );
            return None;
        };
        self.refill(pool);
        if let Some(&key) = self.pools[pool].listeners.first() {
            return Some(key);
        }
        // At the limit: a half-open connection gives way (as a kernel's full SYN queue drops its
        // oldest), so a flood of SYNs that are never answered cannot lock real clients out.
        if self.evict_half_open(now) {
            self.refill(pool);
            if let Some(&key) = self.pools[pool].listeners.first() {
                return Some(key);
            }
        }
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
                p.src, p.dst.port, self.served, self.counters.conns_refused
            );
            self.last_refusal_log = Some(now);
        }
        None
    }

    /// An RST for a synchronized connection whose sequence number is in the window but not the
    /// expected one: smoltcp would accept any in-window RST, which lets a blind attacker reset
    /// connections by guessing within the window.
    fn is_blind_reset(&self, p: &TcpPeek) -> bool {
        if !p.rst {
            return false;
        }
        let Some(&key) = self.by_tuple.get(&Tuple(p.dst, p.src)) else {
            return false;
        };
        let synchronized = matches!(
            self.entries[key].state_now(),
            tcp::State::Established
                | tcp::State::FinWait1
                | tcp::State::FinWait2
                | tcp::State::CloseWait
                | tcp::State::Closing
                | tcp::State::LastAck
        );
        synchronized
            && !self.port.observer().rst_is_exact(
                to_socket_addr(p.dst),
                to_socket_addr(p.src),
                p.seq,
            )
    }

    /// Drops the oldest connection still in SYN-RECEIVED; false when there is none.
    fn evict_half_open(&mut self, now: Instant) -> bool {
        while let Some(key) = self.half_open.pop_front() {
            let Some(e) = self.entries.get(key) else {
                continue;
            };
            if !matches!(e.role, Role::Served(_)) || e.state_now() != tcp::State::SynReceived {
                continue;
            }
            self.counters
                .drop("tcp: half-open connection evicted at the connection limit");
            self.remove_served(now, key);
            return true;
        }
        false
    }

    /// Feeds up to `budget` received frames to the stack. Returns how many were processed; `budget`
    /// processed means more may be waiting.
    pub fn ingress(&mut self, now: Instant, budget: usize, status: &mut Status) -> usize {
        self.last_now = now;
        self.port.flush_held(now);
        self.iface.poll_maintenance(now);
        self.wake_due(now);
        let mut n = 0;
        while n < budget && self.port.fill_rx(now) {
            n += 1;
            let peek = self.port.peek_rx().and_then(peek_tcp);
            if peek.as_ref().is_some_and(|p| self.is_blind_reset(p)) {
                // RFC 5961 3.2: only the exact RST resets; others may at most draw a challenge ACK,
                // and here draw nothing (a blind attacker learns nothing either way).
                self.port
                    .discard_rx("tcp: RST with an inexact sequence number ignored (RFC 5961)");
                continue;
            }
            let target = match &peek {
                Some(p) => self.route(now, p),
                None => None,
            };
            match target {
                Some(key) => {
                    let e = &mut self.entries[key];
                    self.iface
                        .poll_ingress_single(now, &mut self.port, &mut e.set);
                    if let Role::Listener { pool } = e.role {
                        self.refill(pool);
                    }
                    self.mark_ready(key);
                    // Narrate right after the frame that caused it, so no state is skipped in the log.
                    self.sync(now, key, status, false);
                }
                None => {
                    let arp_or_nd = peek.is_none();
                    self.iface
                        .poll_ingress_single(now, &mut self.port, &mut self.misc);
                    if arp_or_nd {
                        // A neighbour may have just been learned: entries waiting for one retry now
                        // rather than at the end of smoltcp's one-second silence.
                        let soon = now + smoltcp::time::Duration::from_millis(1000);
                        let waiting: Vec<usize> = self
                            .deadlines
                            .range(..(soon, usize::MAX))
                            .map(|&(_, k)| k)
                            .collect();
                        for k in waiting {
                            self.mark_ready(k);
                        }
                    }
                }
            }
        }
        n
    }

    /// Marks the entries whose deadline has come.
    fn wake_due(&mut self, now: Instant) {
        while let Some(&(t, key)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(e) = self.entries.get_mut(key) {
                e.deadline = None;
            }
            self.mark_ready(key);
        }
    }

    /// Sends what the touched sockets have queued, narrates what changed, files their next deadlines.
    pub fn egress(&mut self, now: Instant, status: &mut Status) {
        self.last_now = now;
        self.port.flush_held(now);
        self.wake_due(now);
        while self.iface.poll_egress(now, &mut self.port, &mut self.misc)
            != smoltcp::iface::PollResult::None
        {}
        let ready = std::mem::take(&mut self.ready);
        for &key in &ready {
            let Some(e) = self.entries.get_mut(key) else {
                continue;
            };
            e.ready = false;
            while self.iface.poll_egress(now, &mut self.port, &mut e.set)
                != smoltcp::iface::PollResult::None
            {}
            self.sync(now, key, status, true);
            self.schedule(now, key);
        }
        // Keep the (now empty) vector's capacity for the next turn.
        let mut ready = ready;
        ready.clear();
        if self.ready.is_empty() {
            self.ready = ready;
        }
    }

    /// Files an entry's next deadline: smoltcp's timers and the session's own.
    fn schedule(&mut self, now: Instant, key: usize) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        let mut t = self.iface.poll_at(now, &e.set);
        if let Role::Served(s) = &e.role {
            let mut own = s.session.as_ref().and_then(|s| s.poll_timeout());
            let limit = match e.state {
                tcp::State::SynReceived => Some(s.since + HANDSHAKE_TIMEOUT),
                tcp::State::FinWait2 => Some(e.state_since + FIN_WAIT2_TIMEOUT),
                _ => None,
            };
            if let Some(h) = limit {
                own = Some(own.map_or(h, |o| o.min(h)));
            }
            if let Some(st) = own {
                t = Some(t.map_or(st, |t| t.min(st)));
            }
        }
        if let Some(old) = e.deadline.take() {
            self.deadlines.remove(&(old, key));
        }
        if let Some(t) = t {
            e.deadline = Some(t);
            self.deadlines.insert((t, key));
        }
    }

    /// Logs a state change of one entry; removes it once closed. TIME-WAIT is cut short: the socket
    /// goes once the final ACK has left (`after_egress`), so sockets do not pile up for 10 s each under
    /// a high connection rate. A peer whose final ACK was lost and who repeats its FIN then gets an RST,
    /// which ends its LAST-ACK just as well.
    fn sync(&mut self, now: Instant, key: usize, status: &mut Status, after_egress: bool) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        let state = e.state_now();
        let (local, remote) = (to_socket_addr(e.local), to_socket_addr(e.remote));
        if state != e.state && !matches!(e.role, Role::Listener { .. }) {
            self.port.observer_mut().tcp_state(
                now,
                local,
                Some(remote),
                state_name(e.state),
                state_name(state),
            );
            e.state = state;
            e.state_since = now;
            if let Role::Served(s) = &e.role {
                if !matches!(state, tcp::State::Closed | tcp::State::TimeWait) {
                    status.conns.insert(
                        s.id,
                        ConnRow {
                            id: s.id,
                            stack: StackKind::Stack,
                            proto: Proto::Tcp,
                            local,
                            remote: Some(remote),
                            state: state_name(state),
                            service: s.kind.name(),
                        },
                    );
                }
            }
        }
        let handshake_expired = state == tcp::State::SynReceived
            && matches!(&e.role, Role::Served(s) if now >= s.since + HANDSHAKE_TIMEOUT);
        if handshake_expired {
            self.counters
                .drop("tcp: handshake timed out (no answer to SYN-ACK)");
            if let Role::Served(s) = &e.role {
                status.conns.remove(&s.id);
            }
            self.remove_served(now, key);
            return;
        }
        let fin_wait2_expired = state == tcp::State::FinWait2
            && matches!(e.role, Role::Served(_))
            && now >= e.state_since + FIN_WAIT2_TIMEOUT;
        if fin_wait2_expired {
            // Like Linux, without an RST: the peer's later segments meet no socket and get one then.
            self.counters
                .drop("tcp: FIN-WAIT-2 timed out (the peer never sent its FIN)");
            self.port
                .observer_mut()
                .tcp_state(now, local, Some(remote), "FIN-WAIT-2", "CLOSED");
            if let Role::Served(s) = &e.role {
                status.conns.remove(&s.id);
            }
            self.remove_served(now, key);
            return;
        }
        // An RST in SYN-RECEIVED puts a smoltcp socket back in LISTEN: for a served connection that is
        // the end too (the port's own listeners are in the pool).
        let over = matches!(state, tcp::State::Closed | tcp::State::Listen)
            || (state == tcp::State::TimeWait && after_egress);
        match &e.role {
            Role::Served(s) if over => {
                status.conns.remove(&s.id);
                self.remove_served(now, key);
            }
            Role::Client { released: true }
                if state == tcp::State::Closed
                    || (after_egress && state == tcp::State::TimeWait) =>
            {
                self.recycle(key);
            }
            _ => {}
        }
    }

    fn remove_served(&mut self, now: Instant, key: usize) {
        let e = &self.entries[key];
        if e.state == tcp::State::TimeWait {
            self.port.observer_mut().tcp_state(
                now,
                to_socket_addr(e.local),
                Some(to_socket_addr(e.remote)),
                "TIME-WAIT",
                "CLOSED",
            );
        }
        if let Role::Served(s) = &e.role {
            if s.session.is_some() {
                self.counters.conns_closed += 1;
            }
        }
        self.recycle(key);
        // A slot freed below the limit: make sure every port listens again.
        for i in 0..self.pools.len() {
            if self.pools[i].listeners.is_empty() {
                self.refill(i);
            }
        }
    }

    /// Runs the services of the touched connections and of every UDP port. The sessions see the
    /// tracer's records through `cx.trace`.
    pub fn run_services(
        &mut self,
        now: Instant,
        wall: std::time::SystemTime,
        status: &Status,
        settings: &Settings,
    ) {
        self.wake_due(now);
        let cx = &Context {
            now,
            wall,
            status,
            settings,
            trace: Some(self.port.observer() as &dyn TraceView),
        };
        for &key in &self.ready {
            let Some(e) = self.entries.get_mut(key) else {
                continue;
            };
            let Role::Served(s) = &mut e.role else {
                continue;
            };
            let sock = e.set.get_mut::<tcp::Socket>(e.handle);
            drive_tcp(cx, s, sock, &mut self.counters);
        }
        for u in self.udp.iter_mut() {
            let sock = self.misc.get_mut::<udp::Socket>(u.handle);
            drive_udp(
                cx,
                u,
                sock,
                &mut self.scratch,
                &mut self.reply,
                &self.broadcasts,
                &mut self.counters,
            );
        }
    }

    /// The earliest time anything in the stack wants to run again.
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let mut t = self.iface.poll_at(now, &self.misc);
        let mut min = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t: Instant| t.min(x)));
            }
        };
        min(self.port.poll_at());
        min(self.deadlines.first().map(|&(t, _)| t));
        if !self.ready.is_empty() {
            min(Some(now));
        }
        t
    }

    /// Starts closing every served connection (FIN) and stops listening; true when none is left.
    pub fn close_all(&mut self) -> bool {
        let keys: Vec<usize> = self.entries.iter().map(|(k, _)| k).collect();
        for key in keys {
            let e = &mut self.entries[key];
            match &mut e.role {
                Role::Served(s) => {
                    let sock = e.set.get_mut::<tcp::Socket>(e.handle);
                    match sock.state() {
                        // Nothing was exchanged yet: no FIN to wait for.
                        tcp::State::SynReceived => sock.abort(),
                        _ => sock.close(),
                    }
                    s.closing = true;
                    self.mark_ready(key);
                }
                Role::Listener { .. } => self.recycle(key),
                Role::Client { .. } => {}
            }
        }
        for p in &mut self.pools {
            p.listeners.clear();
        }
        // No listener may come back while shutting down.
        self.max_connections = 0;
        self.served == 0
    }

    pub fn has_connections(&self) -> bool {
        self.served > 0
    }

    /// Aborts whatever is still being served (RST): the last step of a shutdown whose grace ran out.
    pub fn abort_all(&mut self) {
        let keys: Vec<usize> = self.entries.iter().map(|(k, _)| k).collect();
        for key in keys {
            if matches!(self.entries[key].role, Role::Served(_)) {
                self.entries[key].sock().abort();
                self.mark_ready(key);
            }
        }
    }
}

fn drive_tcp(cx: &Context, conn: &mut Served, sock: &mut tcp::Socket, counters: &mut Counters) {
    if conn.session.is_none() {
        if !matches!(
            sock.state(),
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
    let mut state = crate::service::driver::StreamState {
        eof: conn.eof,
        closing: conn.closing,
    };
    // The socket's lifetime after both FINs (TIME-WAIT, recycling) is the stack's, so `Drive` is moot.
    let Ok(_) = crate::service::driver::drive(cx, session.as_mut(), &mut state, sock);
    conn.eof = state.eof;
    conn.closing = state.closing;
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
    broadcasts: &[IpAddress],
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
        let to_group = meta.local_address.is_some_and(|a| {
            broadcasts.contains(&a)
                || match a {
                    IpAddress::Ipv4(v4) => v4.is_broadcast() || v4.is_multicast(),
                    IpAddress::Ipv6(v6) => v6.is_multicast(),
                }
        });
        if udp_source_unanswerable(meta.endpoint.addr) || to_group {
            counters.drop("udp: broadcast or multicast, not answered");
            continue;
        }
        let cap = u.kind.udp_reply_cap(len, reply.len());
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

    fn stack_on_wire(max_connections: usize) -> (Stack, crate::device::wire::WireEnd) {
        let (a, b) = crate::device::wire::wire();
        let tracer =
            Tracer::new(crate::trace::TraceConfig::silent(), std::time::UNIX_EPOCH).unwrap();
        let port = Port::new(Box::new(a) as Box<dyn FrameIo>, tracer);
        let cfg = StackConfig {
            mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            addrs: vec![IpCidr::new(IpAddress::v4(192, 168, 69, 1), 24)],
            gateway_v4: None,
            gateway_v6: None,
            random_seed: 7,
            max_connections,
            tcp_buffer: 4096,
        };
        let mut stack = Stack::new(&cfg, port, Instant::ZERO);
        stack.serve_tcp(ServiceKind::Echo, 7);
        (stack, b)
    }

    fn turn(stack: &mut Stack, now: Instant) {
        let mut status = Status::default();
        stack.ingress(now, 64, &mut status);
        stack.run_services(now, std::time::UNIX_EPOCH, &status, &Settings::default());
        stack.egress(now, &mut status);
    }

    #[test]
    fn test_half_open_connections_time_out_and_give_way_at_the_limit() {
        use crate::device::FrameIo;
        let (mut stack, mut peer) = stack_on_wire(2);
        let mut now = Instant::ZERO;
        // Three spoofed SYNs that nobody will ever complete; the limit is two.
        for port in [40001, 40002, 40003] {
            peer.send(&syn_frame(port, 7)).unwrap();
            turn(&mut stack, now);
        }
        assert_eq!(stack.connection_count(), 2, "the limit holds");
        let evicted = "tcp: half-open connection evicted at the connection limit";
        assert_eq!(stack.counters().drops.get(evicted), Some(&1));
        assert_eq!(
            stack.counters().conns_refused,
            0,
            "a half-open one gave way instead"
        );
        // Without answers, the handshakes time out and the sockets return.
        let mut buf = [0u8; 1600];
        while now < Instant::ZERO + HANDSHAKE_TIMEOUT + smoltcp::time::Duration::from_secs(1) {
            now += smoltcp::time::Duration::from_millis(250);
            turn(&mut stack, now);
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

    #[test]
    fn test_client_ports_are_unique_and_return_when_the_socket_goes() {
        let (mut stack, _peer) = stack_on_wire(8);
        let remote: SocketAddr = "192.168.69.100:7".parse().unwrap();
        let handles: Vec<TcpHandle> = (0..500)
            .map(|_| stack.tcp_connect(remote).unwrap())
            .collect();
        let ports: std::collections::HashSet<u16> = handles
            .iter()
            .map(|h| stack.entries[h.0].local.port)
            .collect();
        assert_eq!(ports.len(), 500);
        assert_eq!(stack.client_ports, ports);
        let gone = handles[0];
        let port = stack.entries[gone.0].local.port;
        stack.tcp_abort(gone);
        turn(&mut stack, Instant::ZERO);
        assert!(
            !stack.client_ports.contains(&port),
            "released with its socket"
        );
        assert_eq!(stack.client_ports.len(), 499);
    }
}
