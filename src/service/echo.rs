//! Echo (RFC 862): everything received is sent back.

use super::fixed::copy_prefix;
use super::{Context, DatagramService, StreamSession};
use std::net::SocketAddr;

/// How much an echo session holds before it stops consuming input. A peer that sends but never reads
/// fills this, then the transport's buffers, then its own window: memory stays bounded.
pub(crate) const ECHO_BUFFER: usize = 64 * 1024;

pub(crate) struct EchoSession {
    /// Pending bytes are `buf[start..]`. Grows with what arrives (an idle session holds nothing),
    /// up to [`ECHO_BUFFER`].
    buf: Vec<u8>,
    start: usize,
    eof: bool,
}

impl EchoSession {
    pub(crate) fn new() -> Self {
        EchoSession {
            buf: Vec::new(),
            start: 0,
            eof: false,
        }
    }

    pub(crate) fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

impl Default for EchoSession {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamSession for EchoSession {
    fn handle_input(&mut self, _cx: &Context, input: &[u8]) -> usize {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 0 && self.buf.len() + input.len() > ECHO_BUFFER {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let n = input.len().min(ECHO_BUFFER - self.buf.len());
        self.buf.extend_from_slice(&input[..n]);
        n
    }

    fn handle_eof(&mut self, _cx: &Context) {
        self.eof = true;
    }

    fn poll_output(&mut self, _cx: &Context, out: &mut [u8]) -> usize {
        let n = out.len().min(self.pending());
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        n
    }

    /// Echo closes after the peer closed and everything was sent back (a half-close echoes to the end).
    fn is_finished(&self) -> bool {
        self.eof && self.pending() == 0
    }
}

pub(crate) struct EchoDatagram;

impl DatagramService for EchoDatagram {
    fn handle_datagram(
        &mut self,
        _cx: &Context,
        _from: SocketAddr,
        request: &[u8],
        out: &mut [u8],
    ) -> Option<usize> {
        // A reply never exceeds the request, so echo amplifies nothing.
        Some(copy_prefix(request, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::{cx, drain, settings};
    use crate::status::Status;

    #[test]
    fn test_echoes_bytes_in_order() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = EchoSession::new();
        assert_eq!(s.handle_input(&c, b"hello "), 6);
        assert_eq!(s.handle_input(&c, b"world"), 5);
        assert_eq!(drain(&mut s, &c, 4, usize::MAX), b"hello world");
        assert!(!s.is_finished());
        s.handle_eof(&c);
        assert!(s.is_finished());
    }

    #[test]
    fn test_backpressure_bounds_memory() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = EchoSession::new();
        let big = vec![7u8; ECHO_BUFFER * 3];
        assert_eq!(s.handle_input(&c, &big), ECHO_BUFFER);
        assert_eq!(
            s.handle_input(&c, &big),
            0,
            "a full session consumes nothing"
        );
        let mut out = [0u8; 1000];
        assert_eq!(s.poll_output(&c, &mut out), 1000);
        // Room at the end opens up once the drained prefix is compacted away.
        assert_eq!(s.handle_input(&c, &big), 1000);
        assert_eq!(s.pending(), ECHO_BUFFER);
    }

    #[test]
    fn test_half_close_flushes_before_finishing() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = EchoSession::new();
        s.handle_input(&c, b"last words");
        s.handle_eof(&c);
        assert!(!s.is_finished(), "pending output must be sent before close");
        assert_eq!(drain(&mut s, &c, 64, usize::MAX), b"last words");
        assert!(s.is_finished());
    }

    #[test]
    fn test_datagram_reply_never_exceeds_request() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let from = "192.168.69.100:5000".parse().unwrap();
        let mut out = [0u8; 512];
        assert_eq!(
            EchoDatagram.handle_datagram(&c, from, b"ping", &mut out),
            Some(4)
        );
        assert_eq!(&out[..4], b"ping");
        let big = [1u8; 2000];
        assert_eq!(
            EchoDatagram.handle_datagram(&c, from, &big, &mut out),
            Some(512)
        );
    }
}
