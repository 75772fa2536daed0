//! Time (RFC 868): four bytes, big-endian seconds since 1900-01-01T00:00:00Z, then close.

use super::fixed::FixedReply;
use super::{Context, DatagramService};
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds from 1900-01-01 to 1970-01-01 (70 years, 17 of them leap years).
pub(crate) const RFC868_UNIX_OFFSET: i64 = 2_208_988_800;

/// Whole seconds since the Unix epoch (negative before it; sub-second parts round toward minus infinity).
pub(crate) fn unix_seconds(wall: SystemTime) -> i64 {
    match wall.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => {
            let d = e.duration();
            -(d.as_secs() as i64) - i64::from(d.subsec_nanos() > 0)
        }
    }
}

/// The RFC 868 reply for `wall`: seconds since 1900 as a big-endian u32, wrapping (the 2036 rollover).
pub(crate) fn rfc868_time(wall: SystemTime) -> [u8; 4] {
    let secs = unix_seconds(wall).wrapping_add(RFC868_UNIX_OFFSET);
    (secs as u32).to_be_bytes()
}

/// Sends the four bytes as of the moment of connection, ignores input, then closes.
pub(crate) fn session(cx: &Context) -> FixedReply {
    FixedReply::new(rfc868_time(cx.wall))
}

/// Answers any datagram (RFC 868 asks for an empty one, but any will do) with the four bytes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TimeDatagram;

impl TimeDatagram {
    pub(crate) fn new() -> Self {
        TimeDatagram
    }
}

impl DatagramService for TimeDatagram {
    fn handle_datagram(
        &mut self,
        cx: &Context,
        _from: SocketAddr,
        _request: &[u8],
        out: &mut [u8],
    ) -> Option<usize> {
        let reply = rfc868_time(cx.wall);
        if out.len() < reply.len() {
            return None;
        }
        out[..4].copy_from_slice(&reply);
        Some(4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::{cx, drain, settings};
    use crate::service::StreamSession;
    use crate::status::Status;
    use std::time::Duration;

    #[test]
    fn test_known_instants() {
        // 2024-01-01T00:00:00Z is Unix 1_704_067_200, so 3_913_056_000 since 1900.
        let wall = UNIX_EPOCH + Duration::from_secs(1_704_067_200);
        assert_eq!(rfc868_time(wall), 3_913_056_000u32.to_be_bytes());
        assert_eq!(rfc868_time(UNIX_EPOCH), [0x83, 0xaa, 0x7e, 0x80]);
        assert_eq!(
            rfc868_time(UNIX_EPOCH - Duration::from_secs(2_208_988_800)),
            [0; 4]
        );
    }

    #[test]
    fn test_wraps_in_2036() {
        // 2036-02-07T06:28:16Z is 2^32 seconds after 1900: the counter wraps to 0.
        let wall = UNIX_EPOCH + Duration::from_secs(2_085_978_496);
        assert_eq!(rfc868_time(wall), [0, 0, 0, 0]);
        assert_eq!(rfc868_time(wall + Duration::from_secs(1)), [0, 0, 0, 1]);
    }

    #[test]
    fn test_sends_four_bytes_then_finishes() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = session(&c);
        assert!(!s.is_finished());
        assert_eq!(s.handle_input(&c, b"ignored"), 7);
        assert_eq!(
            drain(&mut s, &c, 3, usize::MAX),
            3_913_056_000u32.to_be_bytes()
        );
        assert!(s.is_finished());
    }

    #[test]
    fn test_datagram_replies_to_any_request() {
        let (st, se) = (Status::default(), settings());
        let c = cx(1_500, &st, &se);
        let from = "192.168.69.100:5000".parse().unwrap();
        let mut out = [0u8; 512];
        let mut d = TimeDatagram::new();
        assert_eq!(d.handle_datagram(&c, from, b"", &mut out), Some(4));
        assert_eq!(out[..4], 3_913_056_001u32.to_be_bytes());
        assert_eq!(d.handle_datagram(&c, from, b"xyz", &mut out), Some(4));
    }
}
