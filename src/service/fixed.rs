//! The shape daytime, qotd and time share: a reply fixed when the connection comes up, sent whole,
//! then close. Input is ignored (consumed, so the peer is never stalled on a closed window).

use super::{Context, StreamSession};

/// Sends `reply`, then finishes.
pub(crate) struct FixedReply {
    reply: Box<[u8]>,
    sent: usize,
}

impl FixedReply {
    pub(crate) fn new(reply: impl Into<Box<[u8]>>) -> Self {
        FixedReply {
            reply: reply.into(),
            sent: 0,
        }
    }
}

impl StreamSession for FixedReply {
    fn poll_output(&mut self, _cx: &Context, out: &mut [u8]) -> usize {
        let n = copy_prefix(&self.reply[self.sent..], out);
        self.sent += n;
        n
    }

    fn is_finished(&self) -> bool {
        self.sent == self.reply.len()
    }
}

/// Copies as much of `bytes` as `out` holds; returns how much that was.
pub(crate) fn copy_prefix(bytes: &[u8], out: &mut [u8]) -> usize {
    let n = bytes.len().min(out.len());
    out[..n].copy_from_slice(&bytes[..n]);
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::{cx, drain, settings};
    use crate::status::Status;

    #[test]
    fn test_sends_reply_in_pieces_then_finishes() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = FixedReply::new(&b"0123456789"[..]);
        assert_eq!(s.handle_input(&c, b"ignored"), 7);
        assert!(!s.is_finished());
        let mut buf = [0u8; 4];
        assert_eq!(s.poll_output(&c, &mut buf), 4);
        assert_eq!(&buf, b"0123");
        assert!(!s.is_finished(), "six bytes still to go");
        assert_eq!(drain(&mut s, &c, 4, usize::MAX), b"456789");
        assert!(s.is_finished());
        assert_eq!(s.poll_output(&c, &mut buf), 0);
    }

    #[test]
    fn test_empty_reply_is_finished_at_once() {
        assert!(FixedReply::new(Vec::new()).is_finished());
    }

    #[test]
    fn test_copy_prefix_cuts_to_out() {
        let mut small = [0u8; 3];
        assert_eq!(copy_prefix(b"abcdef", &mut small), 3);
        assert_eq!(&small, b"abc");
        let mut big = [0u8; 8];
        assert_eq!(copy_prefix(b"ab", &mut big), 2);
        assert_eq!(&big[..2], b"ab");
    }
}
