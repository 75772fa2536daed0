//! The services on the userspace stack: TCP sessions driven over their smoltcp sockets, and UDP
//! services answering datagrams from the shared set.

use smoltcp::iface::SocketHandle;
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::IpAddress;

use super::demux::to_socket_addr;
use super::event::StackObserver;
use super::table::{Life, Role, Served};
use super::Stack;
use crate::service::driver::{self, StreamState};
use crate::service::{udp_source_unanswerable, Context, DatagramService, ServiceKind, Settings};
use crate::status::{Counters, Status};

pub(super) struct UdpService {
    pub handle: SocketHandle,
    pub kind: ServiceKind,
    service: Box<dyn DatagramService>,
}

impl<O: StackObserver> Stack<O> {
    /// Binds a UDP port for a service; false if the service has no UDP side or the port is taken.
    pub fn serve_udp(&mut self, kind: ServiceKind, port: u16) -> bool {
        let Some(service) = kind.new_datagram() else {
            return false;
        };
        let Some(handle) = self.bind_udp(port) else {
            return false;
        };
        self.udp.push(UdpService {
            handle,
            kind,
            service,
        });
        true
    }

    /// Runs the services of the touched connections and of every UDP port.
    pub fn run_services(
        &mut self,
        now: Instant,
        wall: std::time::SystemTime,
        status: &Status,
        settings: &Settings,
    ) {
        self.table.wake_due(now);
        let cx = &Context {
            now,
            wall,
            status,
            settings,
            trace: self.nic.observer().view(),
        };
        let ready = self.table.take_ready();
        let initial = self.table.initial_window;
        let max = self.table.buffer_size();
        for &key in &ready {
            let Some(e) = self.table.get_mut(key) else {
                continue;
            };
            let handle = e.handle;
            let Role::Served(s) = &mut e.role else {
                continue;
            };
            let sock = e.set.get_mut::<tcp::Socket>(handle);
            drive_tcp(cx, s, sock, &mut self.counters, initial, max);
        }
        self.table.restore_ready(ready);
        for u in self.udp.iter_mut() {
            let sock = self.shared.get_mut::<udp::Socket>(u.handle);
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
}

fn drive_tcp(
    cx: &Context,
    conn: &mut Served,
    sock: &mut tcp::Socket,
    counters: &mut Counters,
    initial: usize,
    max: usize,
) {
    if let Life::Handshake { since } = conn.life {
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
        conn.window.handshake_rtt = Some(cx.now - since);
        conn.window.since = cx.now;
        conn.life = Life::Open {
            session: conn.kind.new_stream(cx),
            stream: StreamState::default(),
        };
    }
    match &mut conn.life {
        // The socket's life after both FINs (TIME-WAIT, recycling) is the stack's: `Drive` is moot.
        Life::Open { session, stream } => {
            let mut tuned = Tuned::new(sock, initial);
            let Ok(_) = driver::drive(cx, session.as_mut(), stream, &mut tuned);
            let read = tuned.read;
            if let Some(limit) = conn.window.on_read(read, cx.now, sock.smoothed_rtt(), max) {
                sock.set_rx_window_limit(Some(limit));
            }
        }
        // Closed by us before it was served: what still arrives is thrown away.
        Life::Closing => while driver::ByteStream::recv(sock, |b| b.len()).unwrap_or(0) > 0 {},
        Life::Handshake { .. } => {}
    }
}

/// A served socket as its service sees it: counts what the service reads (for the receive window,
/// [`super::table::Window`]) and lets it queue at most max(initial, 2 x min(cwnd, peer's window))
/// bytes to send (Linux's `tcp_sndbuf_expand`): the send buffer fills as far as the path carries,
/// and a peer that stops reading holds only the initial size of it.
struct Tuned<'a, 'b> {
    sock: &'a mut tcp::Socket<'b>,
    read: usize,
    room: usize,
}

impl<'a, 'b> Tuned<'a, 'b> {
    fn new(sock: &'a mut tcp::Socket<'b>, initial: usize) -> Self {
        let flight = sock.congestion_window().min(sock.send_window());
        let cap = initial.max(flight.saturating_mul(2));
        let room = cap.saturating_sub(sock.send_queue());
        Tuned {
            sock,
            read: 0,
            room,
        }
    }
}

impl driver::ByteStream for Tuned<'_, '_> {
    type Error = std::convert::Infallible;

    fn recv(&mut self, f: impl FnOnce(&[u8]) -> usize) -> Result<usize, Self::Error> {
        let n = driver::ByteStream::recv(self.sock, f)?;
        self.read += n;
        Ok(n)
    }

    fn send(&mut self, f: impl FnOnce(&mut [u8]) -> usize) -> Result<usize, Self::Error> {
        if self.room == 0 {
            return Ok(0);
        }
        let room = self.room;
        let n = driver::ByteStream::send(self.sock, |b| {
            let k = b.len().min(room);
            f(&mut b[..k])
        })?;
        self.room -= n;
        Ok(n)
    }

    fn peer_closed(&self) -> bool {
        driver::ByteStream::peer_closed(&*self.sock)
    }

    fn may_close(&self) -> bool {
        driver::ByteStream::may_close(&*self.sock)
    }

    fn close(&mut self) {
        driver::ByteStream::close(self.sock)
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
