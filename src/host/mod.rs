//! The host side: the same services on ordinary kernel sockets (mio `TcpListener`, `TcpStream`,
//! `UdpSocket`), on the same loop.
//!
//! Every source lives in one slab; its key is its mio token (offset by [`TOKEN_BASE`]), so a token maps
//! back to exactly one entry. Readiness is drained to `WouldBlock`; WRITABLE is registered only while
//! output waits. A session that stops consuming leaves bytes in the kernel's buffer, which closes the
//! peer's window: the same backpressure as on the userspace stack.
//!
//! Accepting is budgeted like the userspace stack's ingress: a listener's readiness only marks it as
//! having a backlog, and each loop turn accepts at most [`ACCEPT_BUDGET`] connections from it
//! ([`Host::accept_backlog`]); what is left waits in the kernel's accept queue for the next turn, and
//! the reactor polls again at once instead of sleeping. So the readiness of the connections already
//! open (a peer's FIN, the next request, an echo) is served between two batches of new ones.

use mio::net::{TcpListener, UdpSocket};
use mio::{Interest, Registry, Token};
use slab::Slab;
use smoltcp::time::{Duration, Instant};
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr};

use crate::service::driver::StreamState;
use crate::service::{Context, DatagramService, ServiceKind};
use crate::status::{ConnRow, Counters, Endpoint, Proto, StackKind, Status};
use crate::trace::Tracer;

mod conn;

use conn::{HostConn, HostStream};

/// Tokens from here up belong to host sockets; the reactor's fixed tokens sit below.
pub(crate) const TOKEN_BASE: usize = 16;

/// Bytes read or written in one system call.
const IO_CHUNK: usize = 64 * 1024;

/// How long a connection we closed waits for the peer's FIN before it is dropped.
const LINGER: Duration = Duration::from_secs(5);

/// Connections accepted from one listener per loop turn before the rest of the loop gets its say.
///
/// Each accept also serves what the client already sent (its first request: a `/netstat.json` is
/// rendered right there), so the budget is the longest the other connections of both stacks wait for
/// the loop while a burst arrives. The kernel's accept queue (128 on a mio listener) holds the rest,
/// handshakes done, for the next turn: a turn later, not a reset. Measured with `ab -c 64 -n 20000`
/// on `/netstat.json` while echoing on both stacks (tests/reliability_round2_host.rs; 2 shared cores,
/// five runs each): budget 8: 2,400-3,900 requests/s, echo p50 1.2-3.7 ms; 16: 2,200-3,700/s,
/// 2.9-7.9 ms; 32: 2,800-4,900/s, 4.2-12 ms; 64: echo max over 100 ms; unbounded: about 1,000
/// failed requests and echo stalls of 0.4-1 s. Latency grows with the budget while throughput stays
/// within the noise from 8 to 32; 16 keeps a few milliseconds with half the turns (each scans every
/// host connection for timers) of 8.
pub(crate) const ACCEPT_BUDGET: usize = 16;

/// Why binding a host socket failed.
#[derive(Debug)]
pub struct BindError {
    pub addr: SocketAddr,
    pub proto: Proto,
    pub err: io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hint = match self.err.kind() {
            io::ErrorKind::AddrInUse => {
                ": another program uses that port (try --host-port-offset or --no-host)"
            }
            io::ErrorKind::PermissionDenied => {
                ": ports below 1024 need root (try --host-port-offset)"
            }
            io::ErrorKind::AddrNotAvailable => ": that address is not on this machine (see --host)",
            _ => "",
        };
        write!(
            f,
            "cannot bind host {} {}: {}{hint}",
            self.proto.as_str(),
            self.addr,
            self.err
        )
    }
}

impl std::error::Error for BindError {}

/// A listening socket: what [`Host::serve`] needs of it beyond registering.
trait Bound: mio::event::Source {
    /// The address it is bound to (the kernel's choice where the port was 0).
    fn bound_addr(&self) -> io::Result<SocketAddr>;
}

impl Bound for TcpListener {
    fn bound_addr(&self) -> io::Result<SocketAddr> {
        self.local_addr()
    }
}

impl Bound for UdpSocket {
    fn bound_addr(&self) -> io::Result<SocketAddr> {
        self.local_addr()
    }
}

enum Source {
    Listener {
        sock: TcpListener,
        kind: ServiceKind,
    },
    Udp {
        sock: UdpSocket,
        kind: ServiceKind,
        service: Box<dyn DatagramService>,
    },
    Conn(Box<HostConn>),
}

pub(crate) struct Host {
    sources: Slab<Source>,
    conns: usize,
    max_connections: usize,
    counters: Counters,
    endpoints: Vec<Endpoint>,
    scratch: Box<[u8]>,
    reply: Box<[u8]>,
    /// Connection-table changes since the reactor last applied them (`None` = row removed).
    rows: Vec<(u64, Option<ConnRow>)>,
    /// Refusals are logged at most once a second (a flood would otherwise write a line each).
    last_refusal_log: Option<smoltcp::time::Instant>,
    /// Keys of listeners that were readable and may still have connections waiting to be accepted
    /// (edge-triggered readiness will not say so again), in the order they became ready.
    backlog: Vec<usize>,
}

impl Host {
    pub(crate) fn new(max_connections: usize) -> Host {
        Host {
            sources: Slab::new(),
            conns: 0,
            max_connections,
            counters: Counters::default(),
            endpoints: Vec::new(),
            scratch: vec![0u8; IO_CHUNK].into_boxed_slice(),
            reply: vec![0u8; IO_CHUNK].into_boxed_slice(),
            rows: Vec::new(),
            last_refusal_log: None,
            backlog: Vec::new(),
        }
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(crate) fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Open connections.
    pub(crate) fn connection_count(&self) -> usize {
        self.conns
    }

    /// All registered sources (listeners, UDP sockets, connections): for leak accounting.
    pub(crate) fn source_count(&self) -> usize {
        self.sources.len()
    }

    pub(crate) fn serve_tcp(
        &mut self,
        registry: &Registry,
        kind: ServiceKind,
        addr: SocketAddr,
    ) -> Result<(), BindError> {
        let sock = TcpListener::bind(addr).map_err(|err| BindError {
            addr,
            proto: Proto::Tcp,
            err,
        })?;
        self.serve(registry, kind, (Proto::Tcp, addr), sock, |sock| {
            Source::Listener { sock, kind }
        })
    }

    pub(crate) fn serve_udp(
        &mut self,
        registry: &Registry,
        kind: ServiceKind,
        addr: SocketAddr,
    ) -> Result<(), BindError> {
        let Some(service) = kind.new_datagram() else {
            return Ok(());
        };
        let sock = UdpSocket::bind(addr).map_err(|err| BindError {
            addr,
            proto: Proto::Udp,
            err,
        })?;
        self.serve(registry, kind, (Proto::Udp, addr), sock, |sock| {
            Source::Udp {
                sock,
                kind,
                service,
            }
        })
    }

    /// Registers a socket bound to `addr` under the token of its slab entry and lists it as an endpoint.
    fn serve<S: Bound>(
        &mut self,
        registry: &Registry,
        kind: ServiceKind,
        (proto, addr): (Proto, SocketAddr),
        mut sock: S,
        source: impl FnOnce(S) -> Source,
    ) -> Result<(), BindError> {
        let err = |err| BindError { addr, proto, err };
        let local = sock.bound_addr().map_err(err)?;
        let entry = self.sources.vacant_entry();
        registry
            .register(
                &mut sock,
                Token(TOKEN_BASE + entry.key()),
                Interest::READABLE,
            )
            .map_err(err)?;
        entry.insert(source(sock));
        self.endpoints.push(Endpoint {
            stack: StackKind::Host,
            proto,
            addr: local,
            service: kind.name(),
        });
        Ok(())
    }

    /// Handles readiness of one host token. Returns false for tokens that are not ours. A listener is
    /// only marked: its connections are accepted in the turn ([`Host::accept_backlog`]).
    pub(crate) fn ready(&mut self, registry: &Registry, token: Token, cx: &Context) -> bool {
        let Some(key) = token.0.checked_sub(TOKEN_BASE) else {
            return false;
        };
        match self.sources.get_mut(key) {
            None => {} // spurious: the source is already gone
            Some(Source::Listener { .. }) => self.mark_backlog(key),
            Some(Source::Udp {
                sock,
                kind,
                service,
            }) => drive_udp(
                cx,
                sock,
                *kind,
                service.as_mut(),
                &mut self.scratch,
                &mut self.reply,
                &mut self.counters,
            ),
            Some(Source::Conn(_)) => self.drive_conn(registry, key, cx),
        }
        true
    }

    /// Accepts up to [`ACCEPT_BUDGET`] connections from each listener with a backlog, serving each
    /// at once. Returns whether a listener still has one: the loop must then turn again without
    /// sleeping, since edge-triggered readiness will not report those connections again.
    pub(crate) fn accept_backlog(
        &mut self,
        registry: &Registry,
        cx: &Context,
        tracer: &Tracer,
    ) -> bool {
        let ready = std::mem::take(&mut self.backlog);
        for key in ready {
            if self.accept(registry, key, cx, tracer) == Accepted::BudgetSpent {
                self.backlog.push(key);
            }
        }
        self.has_backlog()
    }

    /// Listener `key` was readable: accept from it in the next turns until its queue is empty.
    fn mark_backlog(&mut self, key: usize) {
        // A handful of listeners at most: a scan is cheaper than a set.
        if !self.backlog.contains(&key) {
            self.backlog.push(key);
        }
    }

    /// Some listener may have connections left to accept (see [`Host::accept_backlog`]).
    pub(crate) fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Accepts from one listener until its queue is empty or [`ACCEPT_BUDGET`] accepts were made.
    fn accept(
        &mut self,
        registry: &Registry,
        key: usize,
        cx: &Context,
        tracer: &Tracer,
    ) -> Accepted {
        for _ in 0..ACCEPT_BUDGET {
            let Some(Source::Listener { sock, kind }) = self.sources.get(key) else {
                // Closed (shutdown) since it became ready.
                return Accepted::Drained;
            };
            let kind = *kind;
            let (mut stream, remote) = match sock.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Accepted::Drained,
                // Counts against the budget: a signal storm cannot hold the loop here either.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: the listener stays; the peer sees a reset from the kernel.
                    // Retrying every turn would spin the loop (and this log line) for as long as the
                    // condition lasts: the listener's next readiness tries again, as before budgets.
                    self.counters.drop("host: accept failed");
                    log::warn!(target: "tapstack::host", "accept on {kind} failed: {e}");
                    return Accepted::Drained;
                }
            };
            if self.conns >= self.max_connections {
                self.counters.conns_refused += 1;
                let recent = self
                    .last_refusal_log
                    .is_some_and(|t| cx.now < t + smoltcp::time::Duration::from_secs(1));
                if !recent {
                    log::warn!(
                        target: "tapstack::host",
                        "refusing {remote}: {} host connections open, the --max-connections limit ({} refused so far)",
                        self.conns,
                        self.counters.conns_refused
                    );
                    self.last_refusal_log = Some(cx.now);
                }
                drop(stream);
                continue;
            }
            let local = stream
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0));
            let _ = stream.set_nodelay(true);
            let entry = self.sources.vacant_entry();
            let ckey = entry.key();
            if let Err(e) =
                registry.register(&mut stream, Token(TOKEN_BASE + ckey), Interest::READABLE)
            {
                log::warn!(target: "tapstack::host", "cannot register connection from {remote}: {e}");
                continue;
            }
            let id = tracer.alloc_id();
            let narrated = tracer.narrate_host_conn(cx.now);
            if narrated {
                log::info!(target: "tapstack::tcp", "c{id} host {local} <- {remote} ESTABLISHED ({kind})");
            }
            entry.insert(Source::Conn(Box::new(HostConn {
                id,
                kind,
                local,
                remote,
                stream: HostStream {
                    sock: stream,
                    inbuf: Vec::new(),
                    outbuf: Vec::new(),
                    fin: false,
                    flushed: 0,
                },
                session: kind.new_stream(cx),
                state: StreamState::default(),
                narrated,
                shut: None,
                writable_registered: false,
                row_state: "ESTABLISHED",
            })));
            self.conns += 1;
            self.counters.conns_accepted += 1;
            self.rows.push((
                id,
                Some(ConnRow {
                    id,
                    stack: StackKind::Host,
                    proto: Proto::Tcp,
                    local,
                    remote: Some(remote),
                    state: "ESTABLISHED",
                    service: kind.name(),
                }),
            ));
            // The client may have written already: edge-triggered readiness will not tell us again.
            self.drive_conn(registry, ckey, cx);
        }
        Accepted::BudgetSpent
    }

    fn drive_conn(&mut self, registry: &Registry, key: usize, cx: &Context) {
        let Some(Source::Conn(c)) = self.sources.get_mut(key) else {
            return;
        };
        let done = match c.drive(cx, &mut self.scratch, &mut self.counters) {
            Ok(done) => done,
            Err(e) => {
                log::debug!(target: "tapstack::host", "c{} {}: {e}", c.id, c.remote);
                true
            }
        };
        if done {
            self.close_conn(registry, key);
            return;
        }
        let Some(Source::Conn(c)) = self.sources.get_mut(key) else {
            return;
        };
        let want_write = !c.stream.outbuf.is_empty();
        if want_write != c.writable_registered {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if registry
                .reregister(&mut c.stream.sock, Token(TOKEN_BASE + key), interest)
                .is_ok()
            {
                c.writable_registered = want_write;
            }
        }
        let state = match (c.shut.is_some(), c.state.eof) {
            (true, true) => "CLOSING",
            (true, false) => "FIN-WAIT-1",
            (false, true) => "CLOSE-WAIT",
            (false, false) => "ESTABLISHED",
        };
        if state != c.row_state {
            c.row_state = state;
            self.rows.push((
                c.id,
                Some(ConnRow {
                    id: c.id,
                    stack: StackKind::Host,
                    proto: Proto::Tcp,
                    local: c.local,
                    remote: Some(c.remote),
                    state,
                    service: c.kind.name(),
                }),
            ));
        }
    }

    fn close_conn(&mut self, registry: &Registry, key: usize) {
        if let Source::Conn(mut c) = self.sources.remove(key) {
            // Deregister before drop, so no event can name a reused slot for a dead socket.
            let _ = registry.deregister(&mut c.stream.sock);
            self.conns -= 1;
            self.counters.conns_closed += 1;
            self.rows.push((c.id, None));
            if c.narrated {
                log::info!(target: "tapstack::tcp", "c{} host {} <- {} CLOSED ({})", c.id, c.local, c.remote, c.kind);
            }
        }
    }

    /// Applies the connection-table changes to the status model.
    pub(crate) fn apply_rows(&mut self, status: &mut Status) {
        for (id, row) in self.rows.drain(..) {
            match row {
                Some(r) => {
                    status.conns.insert(id, r);
                }
                None => {
                    status.conns.remove(&id);
                }
            }
        }
    }

    /// Runs the timers of host sessions and connections that wait for something other than readiness.
    pub(crate) fn run_timers(&mut self, registry: &Registry, cx: &Context) {
        let due: Vec<usize> = self
            .sources
            .iter()
            .filter_map(|(k, s)| match s {
                Source::Conn(c) if c.deadline().is_some_and(|t| t <= cx.now) => Some(k),
                _ => None,
            })
            .collect();
        for key in due {
            self.drive_conn(registry, key, cx);
        }
    }

    pub(crate) fn poll_at(&self) -> Option<Instant> {
        self.sources
            .iter()
            .filter_map(|(_, s)| match s {
                Source::Conn(c) => c.deadline(),
                _ => None,
            })
            .min()
    }

    /// Starts closing every connection (FIN) and stops listening.
    pub(crate) fn close_all(&mut self, registry: &Registry) {
        // The listeners go: nothing is left to accept, and their slab keys may be reused.
        self.backlog.clear();
        let keys: Vec<usize> = self.sources.iter().map(|(k, _)| k).collect();
        for key in keys {
            match self.sources.get_mut(key) {
                Some(Source::Conn(c)) => {
                    let flushed = c.stream.flush().unwrap_or(true);
                    if flushed {
                        let _ = c.stream.sock.shutdown(Shutdown::Write);
                    }
                    self.close_conn(registry, key);
                }
                Some(Source::Listener { sock, .. }) => {
                    let _ = registry.deregister(sock);
                    self.sources.remove(key);
                }
                Some(Source::Udp { sock, .. }) => {
                    let _ = registry.deregister(sock);
                    self.sources.remove(key);
                }
                None => {}
            }
        }
    }
}

/// How one listener's turn at accepting ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepted {
    /// The kernel's queue is empty (or the listener is gone): wait for its next readiness.
    Drained,
    /// Stopped before the queue was known to be empty: accept again next turn.
    BudgetSpent,
}

fn drive_udp(
    cx: &Context,
    sock: &UdpSocket,
    kind: ServiceKind,
    service: &mut dyn DatagramService,
    scratch: &mut [u8],
    reply: &mut [u8],
    counters: &mut Counters,
) {
    loop {
        let (len, from) = match sock.recv_from(scratch) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                counters.drop("host udp: receive error");
                return;
            }
        };
        counters.packets_in += 1;
        counters.bytes_in += len as u64;
        if crate::service::udp_source_unanswerable(from.ip().into()) {
            counters.drop("udp: broadcast or multicast, not answered");
            continue;
        }
        let cap = kind.udp_reply_cap(len, reply.len());
        if let Some(n) = service.handle_datagram(cx, from, &scratch[..len], &mut reply[..cap]) {
            match sock.send_to(&reply[..n.min(cap)], from) {
                Ok(_) => {
                    counters.packets_out += 1;
                    counters.bytes_out += n as u64;
                }
                Err(_) => counters.drop("host udp: reply dropped"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Settings;
    use crate::trace::TraceConfig;
    use mio::Poll;
    use std::time::SystemTime;

    /// A burst queued on a listener is taken [`ACCEPT_BUDGET`] per turn, the backlog reported until
    /// the kernel's queue is empty. Loopback only.
    #[test]
    fn test_accepts_are_budgeted_per_turn_and_the_backlog_reported() {
        let poll = Poll::new().unwrap();
        let mut host = Host::new(1024);
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        host.serve_tcp(poll.registry(), ServiceKind::Echo, any)
            .unwrap();
        let addr = host.endpoints()[0].addr;
        // Loopback handshakes complete in connect(): all of them wait in the accept queue (128).
        let n = 2 * ACCEPT_BUDGET + 3;
        let _clients: Vec<std::net::TcpStream> = (0..n)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let tracer = Tracer::new(TraceConfig::silent(), SystemTime::now()).unwrap();
        let (status, settings) = (Status::default(), Settings::default());
        let cx = Context {
            now: Instant::ZERO,
            wall: SystemTime::now(),
            status: &status,
            settings: &settings,
            trace: None,
        };
        let registry = poll.registry();

        // Nothing is accepted before the listener's readiness was seen.
        assert!(!host.accept_backlog(registry, &cx, &tracer));
        assert_eq!(host.connection_count(), 0);
        // Readiness only marks the listener (slab key 0).
        assert!(host.ready(registry, Token(TOKEN_BASE), &cx));
        assert_eq!(host.connection_count(), 0);
        assert!(host.has_backlog());

        assert!(host.accept_backlog(registry, &cx, &tracer));
        assert_eq!(host.connection_count(), ACCEPT_BUDGET);
        assert!(host.accept_backlog(registry, &cx, &tracer));
        assert_eq!(host.connection_count(), 2 * ACCEPT_BUDGET);
        // The last three, then WouldBlock: drained, nothing more to report.
        assert!(!host.accept_backlog(registry, &cx, &tracer));
        assert_eq!(host.connection_count(), n);
        assert_eq!(host.counters().conns_accepted, n as u64);

        // A listener closed while marked is forgotten, not accepted from (its key may be reused).
        assert!(host.ready(registry, Token(TOKEN_BASE), &cx));
        host.close_all(registry);
        assert!(!host.has_backlog());
        assert_eq!(host.source_count(), 0);
    }
}
