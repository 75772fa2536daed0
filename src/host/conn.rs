//! One host TCP connection: a kernel socket with the buffers that make it look like smoltcp's to the
//! stream driver, its session, and how it ends (our FIN, then the peer's or the linger deadline).

use mio::net::TcpStream;
use smoltcp::time::Instant;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use super::LINGER;
use crate::service::driver::{self, ByteStream, Drive, StreamState};
use crate::service::{Context, ServiceKind, StreamSession};
use crate::status::Counters;

pub(super) struct HostConn {
    pub(super) id: u64,
    pub(super) kind: ServiceKind,
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
    pub(super) stream: HostStream,
    pub(super) session: Box<dyn StreamSession>,
    pub(super) state: StreamState,
    /// When we sent FIN (shutdown write); from then on we wait for the peer's FIN or the linger deadline.
    pub(super) shut: Option<Instant>,
    pub(super) writable_registered: bool,
    /// The state last shown in the connection table.
    pub(super) row_state: &'static str,
    /// Its ESTABLISHED line was logged (within `--narrate-limit`), so its CLOSED line is too.
    pub(super) narrated: bool,
}

/// A kernel TCP socket with the buffers that make it look like smoltcp's to the driver: the kernel
/// hands over bytes only by copying them out, so what the session did not take waits in `inbuf`, and
/// what the kernel did not take waits in `outbuf`.
pub(super) struct HostStream {
    pub(super) sock: TcpStream,
    /// Received bytes the session has not consumed yet.
    pub(super) inbuf: Vec<u8>,
    /// Output the kernel has not taken yet.
    pub(super) outbuf: Vec<u8>,
    /// A read returned 0: the peer's FIN is behind whatever `inbuf` holds.
    pub(super) fin: bool,
    /// Bytes written from `outbuf` since the counters last heard of it.
    pub(super) flushed: u64,
}

impl HostConn {
    pub(super) fn deadline(&self) -> Option<Instant> {
        let s = self.session.poll_timeout();
        match self.shut {
            Some(t) => Some(s.map_or(t + LINGER, |s| s.min(t + LINGER))),
            None => s,
        }
    }

    /// Runs the session over the socket. Returns true when the connection is over.
    pub(super) fn drive(
        &mut self,
        cx: &Context,
        scratch: &mut [u8],
        counters: &mut Counters,
    ) -> io::Result<bool> {
        if self.shut.is_some_and(|t| cx.now >= t + LINGER) {
            return Ok(true);
        }
        let mut io = HostIo {
            stream: &mut self.stream,
            scratch,
            counters,
        };
        let drive = driver::drive(cx, self.session.as_mut(), &mut self.state, &mut io)?;
        if self.state.closing && self.shut.is_none() {
            self.shut = Some(cx.now);
        }
        Ok(drive == Drive::Done)
    }
}

impl HostStream {
    /// Writes `outbuf`; true when it is empty.
    pub(super) fn flush(&mut self) -> io::Result<bool> {
        while !self.outbuf.is_empty() {
            match self.sock.write(&self.outbuf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.outbuf.drain(..n);
                    self.flushed += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// A [`HostStream`] for the length of one drive, with the loop's scratch buffer and the counters.
struct HostIo<'a> {
    stream: &'a mut HostStream,
    scratch: &'a mut [u8],
    counters: &'a mut Counters,
}

/// Any socket error ends the connection (the caller drops it, and the kernel resets if it must).
impl ByteStream for HostIo<'_> {
    type Error = io::Error;

    fn recv(&mut self, f: impl FnOnce(&[u8]) -> usize) -> io::Result<usize> {
        let s = &mut *self.stream;
        if !s.inbuf.is_empty() {
            let n = f(&s.inbuf);
            s.inbuf.drain(..n);
            return Ok(n);
        }
        // Only an empty inbuf lets more in: a session that stops consuming leaves the rest in the kernel.
        while !s.fin {
            match s.sock.read(self.scratch) {
                Ok(0) => s.fin = true,
                Ok(n) => {
                    self.counters.bytes_in += n as u64;
                    let used = f(&self.scratch[..n]);
                    s.inbuf.extend_from_slice(&self.scratch[used..n]);
                    return Ok(used);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(0)
    }

    /// New output is asked for only once the kernel took the last batch.
    fn send(&mut self, f: impl FnOnce(&mut [u8]) -> usize) -> io::Result<usize> {
        let s = &mut *self.stream;
        let flushed = s.flush();
        self.counters.bytes_out += std::mem::take(&mut s.flushed);
        if !flushed? {
            return Ok(0);
        }
        let n = f(self.scratch);
        let mut off = 0;
        while off < n {
            match s.sock.write(&self.scratch[off..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => {
                    off += w;
                    self.counters.bytes_out += w as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        s.outbuf.extend_from_slice(&self.scratch[off..n]);
        Ok(n)
    }

    fn peer_closed(&self) -> bool {
        self.stream.fin && self.stream.inbuf.is_empty()
    }

    /// shutdown(Write) would strand what `outbuf` holds, so the FIN waits until the kernel has it all.
    fn may_close(&self) -> bool {
        self.stream.outbuf.is_empty()
    }

    fn close(&mut self) {
        let _ = self.stream.sock.shutdown(Shutdown::Write);
    }
}
