//! Character Generator (RFC 864): the classic rotating pattern of printable ASCII.
//!
//! Line `i` (from 0) holds the 72 characters starting at index `i mod 95` of the 95 printable
//! characters `' '..='~'`, wrapping, then CRLF: 74 bytes a line. The stream repeats every 95 lines
//! ([`CHARGEN_PERIOD`] bytes), so a position within one period is all the state a session keeps.

use super::{Context, DatagramService, StreamSession};
use std::net::SocketAddr;

pub(crate) const LINE_CHARS: usize = 72;
pub(crate) const LINE_LEN: usize = LINE_CHARS + 2;
const PRINTABLE: usize = 95;
/// The stream's period in bytes: 95 lines of 74.
pub(crate) const CHARGEN_PERIOD: u64 = (PRINTABLE * LINE_LEN) as u64;
/// The largest datagram reply (RFC 864 suggests 0 to 512 characters).
pub(crate) const CHARGEN_DATAGRAM_MAX: usize = 512;

/// The printable characters twice over, so every line is one contiguous slice.
const RING: [u8; 2 * PRINTABLE] = {
    let mut r = [0u8; 2 * PRINTABLE];
    let mut i = 0;
    while i < r.len() {
        r[i] = b' ' + (i % PRINTABLE) as u8;
        i += 1;
    }
    r
};

/// Writes the chargen stream from byte `offset` on into `buf`.
pub(crate) fn fill_chargen(offset: u64, buf: &mut [u8]) {
    let mut pos = (offset % CHARGEN_PERIOD) as usize;
    let mut done = 0;
    while done < buf.len() {
        let (line, col) = (pos / LINE_LEN, pos % LINE_LEN);
        let mut full = [0u8; LINE_LEN];
        full[..LINE_CHARS].copy_from_slice(&RING[line..line + LINE_CHARS]);
        full[LINE_CHARS..].copy_from_slice(b"\r\n");
        let n = (LINE_LEN - col).min(buf.len() - done);
        buf[done..done + n].copy_from_slice(&full[col..col + n]);
        done += n;
        pos = (pos + n) % CHARGEN_PERIOD as usize;
    }
}

/// Generates the pattern on demand into whatever room the transport offers, until the peer closes.
/// Input is discarded. The state is one position: a reader that stops reading costs no memory.
pub(crate) struct ChargenSession {
    /// Offset within the period of the next byte to send.
    pos: u64,
    eof: bool,
}

impl ChargenSession {
    pub(crate) fn new(_cx: &Context) -> Self {
        ChargenSession { pos: 0, eof: false }
    }
}

impl StreamSession for ChargenSession {
    fn handle_eof(&mut self, _cx: &Context) {
        self.eof = true;
    }

    fn poll_output(&mut self, _cx: &Context, out: &mut [u8]) -> usize {
        if self.eof {
            return 0;
        }
        fill_chargen(self.pos, out);
        self.pos = (self.pos + out.len() as u64) % CHARGEN_PERIOD;
        out.len()
    }

    fn is_finished(&self) -> bool {
        self.eof
    }
}

/// Answers each datagram with the start of the pattern, of a pseudo-random length in
/// `0..=512` (a deterministic LCG, so runs are reproducible), never more than `out` holds.
pub(crate) struct ChargenDatagram {
    lcg: u32,
}

impl ChargenDatagram {
    pub(crate) fn new() -> Self {
        ChargenDatagram { lcg: 0x7a9_5ac4 }
    }

    fn next_len(&mut self) -> usize {
        // Numerical Recipes' LCG; the high bits are the good ones.
        self.lcg = self.lcg.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (self.lcg >> 16) as usize % (CHARGEN_DATAGRAM_MAX + 1)
    }
}

impl Default for ChargenDatagram {
    fn default() -> Self {
        Self::new()
    }
}

impl DatagramService for ChargenDatagram {
    fn handle_datagram(
        &mut self,
        _cx: &Context,
        _from: SocketAddr,
        _request: &[u8],
        out: &mut [u8],
    ) -> Option<usize> {
        let n = self.next_len().min(out.len());
        fill_chargen(0, &mut out[..n]);
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::{cx, drain, settings};
    use crate::status::Status;

    const LINE0: &[u8; 74] =
        b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n";
    const LINE1: &[u8; 74] =
        b"!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n";
    const LINE94: &[u8; 74] =
        b"~ !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdef\r\n";

    /// The pattern by its definition, byte by byte.
    fn reference(offset: u64) -> u8 {
        let (line, col) = (offset / 74, (offset % 74) as usize);
        match col {
            72 => b'\r',
            73 => b'\n',
            _ => 0x20 + ((line as usize + col) % 95) as u8,
        }
    }

    #[test]
    fn test_first_lines_byte_exact() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = ChargenSession::new(&c);
        let mut out = [0u8; 74 * 2];
        assert_eq!(s.poll_output(&c, &mut out), out.len());
        assert_eq!(&out[..74], LINE0);
        assert_eq!(&out[74..], LINE1);
    }

    #[test]
    fn test_line_94_wraps_and_line_95_repeats_line_0() {
        let mut buf = vec![0u8; 96 * 74];
        fill_chargen(0, &mut buf);
        assert_eq!(&buf[94 * 74..95 * 74], LINE94);
        assert_eq!(&buf[95 * 74..], LINE0);
        for (i, b) in buf.iter().enumerate() {
            assert_eq!(*b, reference(i as u64), "byte {i}");
        }
    }

    #[test]
    fn test_fill_from_any_offset_matches_definition() {
        for offset in [0u64, 1, 71, 72, 73, 74, 7029, 7030, 123_456_789] {
            let mut buf = [0u8; 300];
            fill_chargen(offset, &mut buf);
            for (i, b) in buf.iter().enumerate() {
                assert_eq!(*b, reference(offset + i as u64), "offset {offset} + {i}");
            }
        }
    }

    #[test]
    fn test_tiny_buffers_continue_the_stream_without_accumulating() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = ChargenSession::new(&c);
        // A reader taking 3 bytes at a time sees the same stream; the session never holds more than
        // its position (the struct is two words, whatever was or was not read).
        assert!(std::mem::size_of::<ChargenSession>() <= 16);
        let got = drain(&mut s, &c, 3, 10_000);
        for (i, b) in got.iter().enumerate() {
            assert_eq!(*b, reference(i as u64));
        }
        assert!(s.pos < CHARGEN_PERIOD);
        // Not polling at all costs nothing either: input is consumed and discarded meanwhile.
        assert_eq!(s.handle_input(&c, &[0u8; 100_000]), 100_000);
    }

    #[test]
    fn test_runs_until_peer_eof() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = ChargenSession::new(&c);
        assert_eq!(drain(&mut s, &c, 1000, 50_000).len(), 50_000);
        assert!(!s.is_finished());
        s.handle_eof(&c);
        assert!(s.is_finished());
        assert_eq!(s.poll_output(&c, &mut [0u8; 10]), 0);
    }

    #[test]
    fn test_datagram_lengths_bounded_and_varied() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let from = "192.168.69.100:5000".parse().unwrap();
        let mut d = ChargenDatagram::new();
        let mut out = [0u8; 1500];
        let mut lens = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let n = d.handle_datagram(&c, from, b"", &mut out).unwrap();
            assert!(n <= CHARGEN_DATAGRAM_MAX);
            for (i, b) in out[..n].iter().enumerate() {
                assert_eq!(*b, reference(i as u64));
            }
            lens.insert(n);
        }
        assert!(lens.len() > 100, "lengths should vary: {lens:?}");
        let mut small = [0u8; 8];
        for _ in 0..20 {
            assert!(d.handle_datagram(&c, from, b"", &mut small).unwrap() <= 8);
        }
    }
}
