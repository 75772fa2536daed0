//! Quote of the Day (RFC 865): the configured message, then close.

use super::fixed::{copy_prefix, FixedReply};
use super::{Context, DatagramService};
use std::net::SocketAddr;

/// RFC 865 recommends messages of at most 512 characters. The config rejects longer ones; the
/// services cut at this length anyway, so a reply never exceeds it whatever `Settings` holds.
pub(crate) const QOTD_MAX: usize = 512;

fn message<'a>(cx: &Context<'a>) -> &'a [u8] {
    let m = cx.settings.message.as_bytes();
    &m[..m.len().min(QOTD_MAX)]
}

/// Sends the message as configured when the connection came up, ignores input, then closes.
pub(crate) fn session(cx: &Context) -> FixedReply {
    FixedReply::new(message(cx))
}

/// Answers any datagram with the message (cut to `out` if the transport offers less room).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct QotdDatagram;

impl QotdDatagram {
    pub(crate) fn new() -> Self {
        QotdDatagram
    }
}

impl DatagramService for QotdDatagram {
    fn handle_datagram(
        &mut self,
        cx: &Context,
        _from: SocketAddr,
        _request: &[u8],
        out: &mut [u8],
    ) -> Option<usize> {
        Some(copy_prefix(message(cx), out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::{cx, drain, settings};
    use crate::service::StreamSession;
    use crate::service::DEFAULT_QOTD;
    use crate::status::Status;

    #[test]
    fn test_sends_default_message_then_finishes() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = session(&c);
        assert!(DEFAULT_QOTD.len() <= QOTD_MAX);
        assert!(!s.is_finished());
        assert_eq!(s.handle_input(&c, b"ignored"), 7);
        assert_eq!(drain(&mut s, &c, 7, usize::MAX), DEFAULT_QOTD.as_bytes());
        assert!(s.is_finished());
    }

    #[test]
    fn test_never_exceeds_512_bytes() {
        let st = Status::default();
        let mut se = settings();
        se.message = "q".repeat(2000);
        let c = cx(0, &st, &se);
        let mut s = session(&c);
        assert_eq!(drain(&mut s, &c, 100, usize::MAX).len(), QOTD_MAX);
        assert!(s.is_finished());
        let from = "192.168.69.100:5000".parse().unwrap();
        let mut out = [0u8; 1500];
        assert_eq!(
            QotdDatagram::new().handle_datagram(&c, from, b"", &mut out),
            Some(QOTD_MAX)
        );
    }

    #[test]
    fn test_empty_message_finishes_at_once() {
        let st = Status::default();
        let mut se = settings();
        se.message = String::new();
        let c = cx(0, &st, &se);
        assert!(session(&c).is_finished());
    }

    #[test]
    fn test_datagram_replies_with_message() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let from = "192.168.69.100:5000".parse().unwrap();
        let mut out = [0u8; 512];
        let n = QotdDatagram::new()
            .handle_datagram(&c, from, b"x", &mut out)
            .unwrap();
        assert_eq!(&out[..n], DEFAULT_QOTD.as_bytes());
        let mut small = [0u8; 10];
        assert_eq!(
            QotdDatagram::new().handle_datagram(&c, from, b"x", &mut small),
            Some(10)
        );
    }
}
