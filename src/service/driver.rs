//! The one driver that runs a [`StreamSession`] over a byte stream, whichever transport carries it.
//!
//! A transport only has to say how bytes come in and go out ([`ByteStream`]); the order of the calls
//! into the session, when EOF is reported, when we close, and what happens to input after our close
//! live here, once. The smoltcp socket implements the trait below; the host connection does in
//! [`crate::host`]; tests use an in-memory stream on a fake clock.

use smoltcp::socket::tcp;
use std::convert::Infallible;

use super::{Context, StreamSession};

/// A reliable, ordered byte stream as the driver sees it: smoltcp's closure-style buffers, so a session
/// reads from and writes into the transport's own memory where it has any.
pub(crate) trait ByteStream {
    /// A failure that ends the connection at once (the host's socket errors; smoltcp has none).
    type Error;

    /// Offers received bytes to `f`, which returns how many it consumed; the rest stays queued for the
    /// next call. Returns that count: 0 when nothing is queued or `f` took nothing.
    fn recv(&mut self, f: impl FnOnce(&[u8]) -> usize) -> Result<usize, Self::Error>;

    /// Offers free send space to `f`, which fills a prefix and returns its length. Returns that length:
    /// 0 when there is no room or `f` had nothing to say.
    fn send(&mut self, f: impl FnOnce(&mut [u8]) -> usize) -> Result<usize, Self::Error>;

    /// The peer sent FIN and every byte before it has been taken by [`ByteStream::recv`].
    fn peer_closed(&self) -> bool;

    /// Whether [`ByteStream::close`] now would still deliver everything sent so far.
    fn may_close(&self) -> bool {
        true
    }

    /// Sends FIN after the bytes already sent.
    fn close(&mut self);
}

/// What the driver remembers of a stream between calls.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamState {
    /// The session was told of the peer's FIN (or, after our close, the FIN was seen).
    pub eof: bool,
    /// We closed: the session is done with, and input is read only to be thrown away.
    pub closing: bool,
}

/// Where a connection stands after [`drive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drive {
    /// Still in use: call again when the stream or the session's timer has news.
    Open,
    /// Both sides have closed; nothing more will move.
    Done,
}

/// Moves bytes between `session` and `stream` until nothing moves, closes once the session is finished,
/// and after that reads and discards whatever still arrives, so the peer is never stalled on a full
/// window and the host kernel has no unread bytes to answer with RST.
pub(crate) fn drive<S: ByteStream>(
    cx: &Context,
    session: &mut dyn StreamSession,
    state: &mut StreamState,
    stream: &mut S,
) -> Result<Drive, S::Error> {
    if !state.closing {
        if session.poll_timeout().is_some_and(|t| t <= cx.now) {
            session.handle_timeout(cx);
        }
        loop {
            let mut progress = false;
            while stream.recv(|b| session.handle_input(cx, b))? > 0 {
                progress = true;
            }
            if !state.eof && stream.peer_closed() {
                state.eof = true;
                session.handle_eof(cx);
                progress = true;
            }
            while stream.send(|b| session.poll_output(cx, b))? > 0 {
                progress = true;
            }
            if !progress {
                break;
            }
        }
        if !session.is_finished() || !stream.may_close() {
            return Ok(Drive::Open);
        }
        stream.close();
        state.closing = true;
    }
    while stream.recv(|b| b.len())? > 0 {}
    if stream.peer_closed() {
        state.eof = true;
        return Ok(Drive::Done);
    }
    Ok(Drive::Open)
}

/// The userspace stack's socket. Its errors only mean "not in a state for that now", which the driver
/// reads as "nothing moved".
impl ByteStream for tcp::Socket<'_> {
    type Error = Infallible;

    fn recv(&mut self, f: impl FnOnce(&[u8]) -> usize) -> Result<usize, Infallible> {
        if !self.can_recv() {
            return Ok(0);
        }
        Ok(tcp::Socket::recv(self, |b| {
            let n = f(b);
            (n, n)
        })
        .unwrap_or(0))
    }

    fn send(&mut self, f: impl FnOnce(&mut [u8]) -> usize) -> Result<usize, Infallible> {
        if !self.can_send() {
            return Ok(0);
        }
        Ok(tcp::Socket::send(self, |b| {
            let n = f(b);
            (n, n)
        })
        .unwrap_or(0))
    }

    fn peer_closed(&self) -> bool {
        // may_recv stays true while received bytes wait, so EOF never overtakes data.
        !self.may_recv()
            && matches!(
                self.state(),
                tcp::State::CloseWait
                    | tcp::State::LastAck
                    | tcp::State::Closing
                    | tcp::State::TimeWait
                    | tcp::State::Closed
            )
    }

    /// smoltcp queues the FIN behind what is in its send buffer: nothing is cut off.
    fn close(&mut self) {
        tcp::Socket::close(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::{cx, settings};
    use crate::status::Status;
    use smoltcp::time::Instant;

    /// An in-memory stream: `input` is what the peer sent, `output` what we sent, with a send window.
    #[derive(Default)]
    struct FakeStream {
        input: Vec<u8>,
        fin: bool,
        output: Vec<u8>,
        /// Bytes `send` may still take; refilled by the test as the "peer" acknowledges.
        window: usize,
        closed: bool,
        /// Bytes handed out per `recv`, to make the driver loop as over a wrapped ring buffer.
        chunk: usize,
        fail: bool,
    }

    impl FakeStream {
        fn new(input: &[u8], window: usize) -> Self {
            FakeStream {
                input: input.to_vec(),
                window,
                chunk: usize::MAX,
                ..Default::default()
            }
        }
    }

    impl ByteStream for FakeStream {
        type Error = &'static str;

        fn recv(&mut self, f: impl FnOnce(&[u8]) -> usize) -> Result<usize, &'static str> {
            if self.fail {
                return Err("reset");
            }
            if self.input.is_empty() {
                return Ok(0);
            }
            let n = f(&self.input[..self.input.len().min(self.chunk)]);
            self.input.drain(..n);
            Ok(n)
        }

        fn send(&mut self, f: impl FnOnce(&mut [u8]) -> usize) -> Result<usize, &'static str> {
            assert!(!self.closed, "sent after close");
            let mut buf = vec![0u8; self.window];
            let n = f(&mut buf);
            self.output.extend_from_slice(&buf[..n]);
            self.window -= n;
            Ok(n)
        }

        fn peer_closed(&self) -> bool {
            self.fin && self.input.is_empty()
        }

        fn close(&mut self) {
            self.closed = true;
        }
    }

    /// Echoes at most `room` bytes at a time and finishes after EOF; wants a timer at `deadline`.
    struct Probe {
        held: Vec<u8>,
        room: usize,
        eofs: usize,
        deadline: Option<Instant>,
        timeouts: usize,
        finished_on_timeout: bool,
    }

    impl Probe {
        fn new(room: usize) -> Self {
            Probe {
                held: Vec::new(),
                room,
                eofs: 0,
                deadline: None,
                timeouts: 0,
                finished_on_timeout: false,
            }
        }
    }

    impl StreamSession for Probe {
        fn handle_input(&mut self, _cx: &Context, input: &[u8]) -> usize {
            let n = input.len().min(self.room - self.held.len());
            self.held.extend_from_slice(&input[..n]);
            n
        }

        fn handle_eof(&mut self, _cx: &Context) {
            self.eofs += 1;
        }

        fn poll_output(&mut self, _cx: &Context, out: &mut [u8]) -> usize {
            let n = self.held.len().min(out.len());
            out[..n].copy_from_slice(&self.held[..n]);
            self.held.drain(..n);
            n
        }

        fn poll_timeout(&self) -> Option<Instant> {
            self.deadline
        }

        fn handle_timeout(&mut self, _cx: &Context) {
            self.timeouts += 1;
            self.deadline = None;
            self.finished_on_timeout = true;
        }

        fn is_finished(&self) -> bool {
            self.finished_on_timeout || (self.eofs > 0 && self.held.is_empty())
        }
    }

    #[test]
    fn test_bytes_in_bytes_out_through_a_small_session() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = Probe::new(3);
        let mut io = FakeStream::new(b"hello world", 100);
        io.chunk = 4;
        let mut state = StreamState::default();
        assert_eq!(drive(&c, &mut s, &mut state, &mut io), Ok(Drive::Open));
        assert_eq!(io.output, b"hello world");
        assert!(!io.closed);
        assert_eq!(state, StreamState::default());
    }

    #[test]
    fn test_full_window_keeps_input_queued() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = Probe::new(4);
        let mut io = FakeStream::new(b"abcdefgh", 2);
        let mut state = StreamState::default();
        drive(&c, &mut s, &mut state, &mut io).unwrap();
        assert_eq!(io.output, b"ab");
        // Two bytes went out, so the session took two more; what it has no room for stays queued.
        assert_eq!(io.input, b"gh");
        io.window = 100;
        drive(&c, &mut s, &mut state, &mut io).unwrap();
        assert_eq!(io.output, b"abcdefgh");
        assert!(io.input.is_empty());
    }

    #[test]
    fn test_eof_comes_after_the_data_then_finish_closes() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = Probe::new(2);
        let mut io = FakeStream::new(b"tail", 1);
        io.fin = true;
        let mut state = StreamState::default();
        assert_eq!(drive(&c, &mut s, &mut state, &mut io), Ok(Drive::Open));
        assert_eq!(s.eofs, 0, "EOF waits until the data before it is consumed");
        assert!(!io.closed);
        io.window = 100;
        assert_eq!(drive(&c, &mut s, &mut state, &mut io), Ok(Drive::Done));
        assert_eq!((s.eofs, io.output.as_slice()), (1, &b"tail"[..]));
        assert!(io.closed);
        assert_eq!(
            state,
            StreamState {
                eof: true,
                closing: true
            }
        );
    }

    #[test]
    fn test_after_close_input_is_discarded_until_fin() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = Probe::new(8);
        s.deadline = Some(Instant::from_millis(0));
        let mut io = FakeStream::new(b"", 100);
        let mut state = StreamState::default();
        assert_eq!(drive(&c, &mut s, &mut state, &mut io), Ok(Drive::Open));
        assert!(io.closed && state.closing);
        io.input = b"late bytes".to_vec();
        assert_eq!(drive(&c, &mut s, &mut state, &mut io), Ok(Drive::Open));
        assert!(io.input.is_empty(), "read and thrown away");
        assert!(s.held.is_empty(), "the session never sees them");
        io.fin = true;
        assert_eq!(drive(&c, &mut s, &mut state, &mut io), Ok(Drive::Done));
        assert_eq!(s.eofs, 0, "a finished session is not told of EOF");
        assert!(state.eof);
    }

    #[test]
    fn test_timeout_fires_only_when_due() {
        let (st, se) = (Status::default(), settings());
        let mut s = Probe::new(8);
        s.deadline = Some(Instant::from_millis(30_000));
        let mut io = FakeStream::new(b"", 100);
        let mut state = StreamState::default();
        drive(&cx(29_999, &st, &se), &mut s, &mut state, &mut io).unwrap();
        assert_eq!(s.timeouts, 0);
        assert!(!io.closed);
        drive(&cx(30_000, &st, &se), &mut s, &mut state, &mut io).unwrap();
        assert_eq!(s.timeouts, 1);
        assert!(
            io.closed,
            "the timeout finished the session, so it closed at once"
        );
    }

    #[test]
    fn test_close_waits_for_may_close() {
        struct Backlogged(FakeStream, usize);
        impl ByteStream for Backlogged {
            type Error = &'static str;
            fn recv(&mut self, f: impl FnOnce(&[u8]) -> usize) -> Result<usize, &'static str> {
                self.0.recv(f)
            }
            fn send(&mut self, f: impl FnOnce(&mut [u8]) -> usize) -> Result<usize, &'static str> {
                self.0.send(f)
            }
            fn peer_closed(&self) -> bool {
                self.0.peer_closed()
            }
            fn may_close(&self) -> bool {
                self.1 == 0
            }
            fn close(&mut self) {
                self.0.close()
            }
        }
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = Probe::new(8);
        let mut io = Backlogged(FakeStream::new(b"", 100), 3);
        io.0.fin = true;
        let mut state = StreamState::default();
        assert_eq!(drive(&c, &mut s, &mut state, &mut io), Ok(Drive::Open));
        assert!(s.is_finished() && !io.0.closed);
        io.1 = 0;
        assert_eq!(drive(&c, &mut s, &mut state, &mut io), Ok(Drive::Done));
        assert!(io.0.closed);
    }

    #[test]
    fn test_stream_error_ends_the_drive() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut io = FakeStream::new(b"x", 100);
        io.fail = true;
        let r = drive(&c, &mut Probe::new(8), &mut StreamState::default(), &mut io);
        assert_eq!(r, Err("reset"));
    }
}
