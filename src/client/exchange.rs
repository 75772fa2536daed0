//! One TCP conversation driven from the client side: the building block of every client app.

use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use std::net::SocketAddr;

use crate::reactor::TracedStack;
use crate::stack::TcpHandle;

/// How long a handshake may take before the connection counts as timed out.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    Connecting,
    Open,
    Done,
    Failed(String),
}

/// One TCP conversation from the client side: connect, send, receive, close.
pub(crate) struct TcpExchange {
    pub remote: SocketAddr,
    handle: Option<TcpHandle>,
    outgoing: Vec<u8>,
    sent: usize,
    /// No more data will be queued: close (FIN) once everything is sent.
    pub input_done: bool,
    /// Bytes received and not yet taken.
    received: Vec<u8>,
    pub total_received: usize,
    /// Close after receiving this many bytes (chargen).
    pub read_limit: Option<usize>,
    /// Close (FIN) once this many bytes came back and everything is sent (the demo's echo: the
    /// data, its echo, then the close).
    pub close_after: Option<usize>,
    pub phase: Phase,
    started: Option<Instant>,
    pub established_at: Option<Instant>,
    closing: bool,
}

impl TcpExchange {
    pub(crate) fn new(remote: SocketAddr) -> Self {
        TcpExchange {
            remote,
            handle: None,
            outgoing: Vec::new(),
            sent: 0,
            input_done: false,
            received: Vec::new(),
            total_received: 0,
            read_limit: None,
            close_after: None,
            phase: Phase::Connecting,
            started: None,
            established_at: None,
            closing: false,
        }
    }

    /// Queues bytes to send.
    pub(crate) fn send(&mut self, data: &[u8]) {
        self.outgoing.extend_from_slice(data);
    }

    /// Takes what has been received so far.
    pub(crate) fn take_received(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.received)
    }

    pub(crate) fn received(&self) -> &[u8] {
        &self.received
    }

    pub(crate) fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Done | Phase::Failed(_))
    }

    pub(crate) fn poll_at(&self) -> Option<Instant> {
        match (&self.phase, self.started) {
            (Phase::Connecting, Some(t)) => Some(t + CONNECT_TIMEOUT),
            _ => None,
        }
    }

    /// Its socket; a stale handle (never expected: the exchange holds it until it releases it) ends
    /// the exchange rather than the program.
    fn sock<'s>(
        &mut self,
        stack: &'s mut TracedStack,
        h: TcpHandle,
    ) -> Option<&'s mut tcp::Socket<'static>> {
        match stack.tcp(h) {
            Ok(s) => Some(s),
            Err(e) => {
                self.handle = None;
                self.phase = Phase::Failed(e.to_string());
                None
            }
        }
    }

    fn fail(&mut self, stack: &mut TracedStack, why: String) {
        if let Some(h) = self.handle.take() {
            stack.tcp_abort(h);
        }
        self.phase = Phase::Failed(why);
    }

    /// Moves the conversation forward; returns whether anything happened.
    pub(crate) fn poll(&mut self, now: Instant, stack: &mut TracedStack) -> bool {
        if self.is_over() {
            return false;
        }
        let h = match self.handle {
            Some(h) => h,
            None => match stack.tcp_connect(self.remote) {
                Ok(h) => {
                    self.handle = Some(h);
                    self.started = Some(now);
                    return true;
                }
                Err(e) => {
                    self.phase = Phase::Failed(format!("cannot connect to {}: {e}", self.remote));
                    return true;
                }
            },
        };
        let mut progress = false;
        let Some(sock) = self.sock(stack, h) else {
            return true;
        };
        let state = sock.state();
        if self.phase == Phase::Connecting {
            if sock.may_send() || state == tcp::State::CloseWait {
                self.phase = Phase::Open;
                self.established_at = Some(now);
                // Nothing is sent this turn: the ACK that completes the handshake leaves on its
                // own, as in the textbook, and the data follows it.
                return true;
            } else if state == tcp::State::Closed {
                self.fail(
                    stack,
                    format!(
                        "connection to {} refused (the peer answered with RST)",
                        self.remote
                    ),
                );
                return true;
            } else if self.started.is_some_and(|t| now >= t + CONNECT_TIMEOUT) {
                self.fail(
                    stack,
                    format!(
                        "connection to {} timed out after {} s",
                        self.remote,
                        CONNECT_TIMEOUT.secs()
                    ),
                );
                return true;
            } else {
                return false;
            }
        }
        let Some(sock) = self.sock(stack, h) else {
            return true;
        };
        while sock.can_send() && self.sent < self.outgoing.len() {
            match sock.send_slice(&self.outgoing[self.sent..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.sent += n;
                    progress = true;
                }
            }
        }
        if self.sent == self.outgoing.len() && self.sent > 0 {
            self.outgoing.clear();
            self.sent = 0;
        }
        let mut buf = [0u8; 4096];
        while sock.can_recv() {
            match sock.recv_slice(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.received.extend_from_slice(&buf[..n]);
                    self.total_received += n;
                    progress = true;
                }
            }
        }
        let read_enough = self.read_limit.is_some_and(|l| self.total_received >= l);
        if read_enough && !self.closing {
            // Like a kernel closing a socket with data still unread: hang up with RST, rather than
            // wait for everything the server queued to arrive first.
            sock.abort();
            self.handle = None;
            stack.tcp_release(h);
            self.phase = Phase::Done;
            return true;
        }
        let all_sent = self.outgoing.is_empty();
        let peer_done = !sock.may_recv() && sock.state() != tcp::State::SynSent;
        let answered = self.close_after.is_some_and(|n| self.total_received >= n);
        if !self.closing && all_sent && (self.input_done || answered || peer_done) {
            sock.close();
            self.closing = true;
            progress = true;
        }
        if matches!(sock.state(), tcp::State::Closed | tcp::State::TimeWait) {
            // Over once our last ACK is out (a peer in LAST-ACK waits for it); TIME-WAIT itself
            // is the stack's to hold, without the socket.
            if stack.tcp_close_done(h).unwrap_or(true) {
                self.handle = None;
                stack.tcp_release(h);
                self.phase = Phase::Done;
                progress = true;
            }
        }
        progress
    }
}
