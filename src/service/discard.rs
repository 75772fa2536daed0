//! Discard (RFC 863): everything received is thrown away; nothing is ever sent.

use super::{Context, DatagramService, StreamSession};
use std::net::SocketAddr;

/// Consumes all input at once (so the window never closes) and closes after the peer has closed.
pub(crate) struct DiscardSession {
    eof: bool,
}

impl DiscardSession {
    pub(crate) fn new(_cx: &Context) -> Self {
        DiscardSession { eof: false }
    }
}

impl StreamSession for DiscardSession {
    fn handle_eof(&mut self, _cx: &Context) {
        self.eof = true;
    }

    fn is_finished(&self) -> bool {
        self.eof
    }
}

/// Never replies.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DiscardDatagram;

impl DiscardDatagram {
    pub(crate) fn new() -> Self {
        DiscardDatagram
    }
}

impl DatagramService for DiscardDatagram {
    fn handle_datagram(
        &mut self,
        _cx: &Context,
        _from: SocketAddr,
        _request: &[u8],
        _out: &mut [u8],
    ) -> Option<usize> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::{cx, drain, settings};
    use crate::status::Status;

    #[test]
    fn test_consumes_everything_and_never_replies() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = DiscardSession::new(&c);
        let big = vec![b'x'; 1 << 20];
        assert_eq!(s.handle_input(&c, &big), big.len());
        assert_eq!(s.handle_input(&c, b"more"), 4);
        assert!(drain(&mut s, &c, 512, usize::MAX).is_empty());
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn test_finishes_only_after_peer_eof() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = DiscardSession::new(&c);
        assert!(!s.is_finished());
        s.handle_input(&c, b"bye");
        assert!(!s.is_finished());
        s.handle_eof(&c);
        assert!(s.is_finished());
        assert!(drain(&mut s, &c, 512, usize::MAX).is_empty());
    }

    #[test]
    fn test_datagram_never_replies() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let from = "192.168.69.100:5000".parse().unwrap();
        let mut out = [0u8; 512];
        let mut d = DiscardDatagram::new();
        assert_eq!(d.handle_datagram(&c, from, b"anything", &mut out), None);
        assert_eq!(d.handle_datagram(&c, from, b"", &mut out), None);
    }
}
