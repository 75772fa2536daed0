//! Client sockets of the stack (`connect`, `get`, the demo's tour, the harness): TCP connections from
//! ephemeral ports behind generational handles, and UDP and ICMP sockets in the shared set.

use smoltcp::iface::SocketHandle;
use smoltcp::socket::{icmp, tcp, udp};
use smoltcp::wire::{IpAddress, IpEndpoint};
use std::net::SocketAddr;

use super::demux::to_socket_addr;
use super::event::{Opener, StackEvent, StackObserver};
use super::table::Role;
use super::{Stack, UDP_BUFFER, UDP_PACKETS};

/// A TCP client socket of a stack. It names one connection only: once released and gone, the handle
/// is stale and every use of it is an error, even after its slot was reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpHandle {
    key: usize,
    generation: u32,
}

/// A handle that names no socket any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleHandle;

impl std::fmt::Display for StaleHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the TCP socket was released")
    }
}

impl std::error::Error for StaleHandle {}

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

fn udp_socket() -> udp::Socket<'static> {
    let buffer = || {
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
            vec![0u8; UDP_BUFFER],
        )
    };
    udp::Socket::new(buffer(), buffer())
}

impl<O: StackObserver> Stack<O> {
    fn client_key(&self, h: TcpHandle) -> Result<usize, StaleHandle> {
        match self.table.get(h.key) {
            Some(e) if e.generation == h.generation => match e.role {
                Role::Client { released: false } => Ok(h.key),
                _ => Err(StaleHandle),
            },
            _ => Err(StaleHandle),
        }
    }

    /// Opens a TCP connection from an ephemeral port (SYN goes out at the next egress).
    pub fn tcp_connect(&mut self, remote: SocketAddr) -> Result<TcpHandle, ConnectError> {
        let remote_ep = IpEndpoint::new(IpAddress::from(remote.ip()), remote.port());
        let local_addr = self
            .iface
            .get_source_address(&remote_ep.addr)
            .ok_or(ConnectError::Unaddressable(remote))?;
        let listen = &self.listen;
        let port = self
            .ports
            .take(|p| listen.serves(p))
            .ok_or(ConnectError::NoPorts)?;
        let local = IpEndpoint::new(local_addr, port);
        let mut spare = self.table.fresh_socket(false);
        let res =
            spare
                .0
                .get_mut::<tcp::Socket>(spare.1)
                .connect(self.iface.context(), remote_ep, local);
        if res.is_err() {
            self.ports.give_back(port);
            self.table.keep_spare(spare, usize::MAX);
            return Err(ConnectError::Unaddressable(remote));
        }
        let id = self.ids.next();
        self.emit(StackEvent::Opened {
            conn: id,
            local: to_socket_addr(local),
            remote,
            by: Opener::Stack,
            service: None,
        });
        // Reported from CLOSED: the socket reads SYN-SENT already.
        let key = self.table.insert(
            spare,
            Role::Client { released: false },
            id,
            local,
            remote_ep,
            tcp::State::Closed,
            self.last_now,
        );
        self.demux.insert(local, remote_ep, key);
        let generation = self.table.get(key).map_or(0, |e| e.generation);
        Ok(TcpHandle { key, generation })
    }

    /// A client TCP socket. Using it marks it for this turn's egress.
    pub fn tcp(&mut self, h: TcpHandle) -> Result<&mut tcp::Socket<'static>, StaleHandle> {
        let key = self.client_key(h)?;
        self.table.mark_ready(key);
        self.table.get_mut(key).map(|e| e.sock()).ok_or(StaleHandle)
    }

    /// The connection id of a client socket (as the trace names it: `c12`).
    pub fn tcp_id(&self, h: TcpHandle) -> Result<u64, StaleHandle> {
        let key = self.client_key(h)?;
        self.table.get(key).map(|e| e.id).ok_or(StaleHandle)
    }

    /// A client socket's TCP figures now (read only: the socket is not touched).
    pub fn tcp_figures(&self, h: TcpHandle) -> Result<super::TcpFigures, StaleHandle> {
        let key = self.client_key(h)?;
        self.table
            .get(key)
            .map(|e| super::TcpFigures::of(e.sock_ref()))
            .ok_or(StaleHandle)
    }

    /// Whether a client socket's close is through on our side: CLOSED, or TIME-WAIT with the ACK
    /// of the peer's FIN gone out (the peer can leave LAST-ACK). An owner that waits for this
    /// before it releases the socket or exits never leaves the peer waiting for that ACK.
    pub fn tcp_close_done(&self, h: TcpHandle) -> Result<bool, StaleHandle> {
        let key = self.client_key(h)?;
        let e = self.table.get(key).ok_or(StaleHandle)?;
        Ok(match e.state_now() {
            tcp::State::Closed => true,
            tcp::State::TimeWait => e.last_ack_out,
            _ => false,
        })
    }

    /// The owner is done with a client TCP socket: it stays until it is closed (in TIME-WAIT,
    /// until its last ACK is out; then the TIME-WAIT table holds the connection), then goes. The
    /// handle is stale from now on.
    pub fn tcp_release(&mut self, h: TcpHandle) {
        let Ok(key) = self.client_key(h) else {
            return;
        };
        if let Some(e) = self.table.get_mut(key) {
            e.role = Role::Client { released: true };
        }
        self.table.mark_ready(key);
    }

    /// Aborts a client TCP socket (RST) and releases it.
    pub fn tcp_abort(&mut self, h: TcpHandle) {
        let Ok(key) = self.client_key(h) else {
            return;
        };
        if let Some(e) = self.table.get_mut(key) {
            e.sock().abort();
            e.aborted = true;
        }
        self.tcp_release(h);
    }

    /// A UDP socket on an ephemeral port.
    pub fn udp_open(&mut self) -> Result<SocketHandle, ConnectError> {
        let listen = &self.listen;
        let port = self
            .ports
            .take(|p| listen.serves(p))
            .ok_or(ConnectError::NoPorts)?;
        let mut sock = udp_socket();
        if sock.bind(port).is_err() {
            self.ports.give_back(port);
            return Err(ConnectError::NoPorts);
        }
        Ok(self.shared.add(sock))
    }

    /// A UDP socket opened with `udp_open`.
    pub fn udp(&mut self, h: SocketHandle) -> &mut udp::Socket<'static> {
        self.shared.get_mut::<udp::Socket>(h)
    }

    /// An ICMP socket for echo requests with this identifier.
    pub fn icmp_open(&mut self, ident: u16) -> SocketHandle {
        let rx = icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 8], vec![0u8; 4096]);
        let tx = icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 8], vec![0u8; 4096]);
        let mut sock = icmp::Socket::new(rx, tx);
        // Binding an identifier cannot fail for a fresh socket.
        let _ = sock.bind(icmp::Endpoint::Ident(ident));
        self.shared.add(sock)
    }

    /// An ICMP socket opened with `icmp_open`.
    pub fn icmp(&mut self, h: SocketHandle) -> &mut icmp::Socket<'static> {
        self.shared.get_mut::<icmp::Socket>(h)
    }

    /// Removes a UDP or ICMP socket (a UDP socket's port is free again).
    pub fn release(&mut self, h: SocketHandle) {
        if let smoltcp::socket::Socket::Udp(u) = self.shared.remove(h) {
            self.ports.give_back(u.endpoint().port);
        }
    }

    /// Binds a UDP port for a service.
    pub(super) fn bind_udp(&mut self, port: u16) -> Option<SocketHandle> {
        let mut sock = udp_socket();
        sock.bind(port).ok()?;
        Some(self.shared.add(sock))
    }
}
