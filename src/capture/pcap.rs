//! A libpcap capture writer: LINKTYPE_ETHERNET, microsecond timestamps, little-endian headers,
//! snaplen 262144 as tcpdump's (an offloaded 64 KiB TCP segment is 65,549 bytes with its headers, and
//! Wireshark cannot check a cut one). Each frame is written and flushed at once, so `tcpdump -r FILE` reads the capture while
//! the program runs. No allocation per frame: a 16-byte record header on the stack, then the frame.

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Classic pcap, microsecond timestamps (written little-endian: `d4 c3 b2 a1`).
pub(crate) const PCAP_MAGIC: u32 = 0xa1b2_c3d4;
/// LINKTYPE_ETHERNET.
pub(crate) const LINKTYPE_ETHERNET: u32 = 1;
/// The largest frame captured whole (tcpdump's default).
pub(crate) const SNAPLEN: u32 = 262_144;

pub(crate) struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header.
    pub(crate) fn new(mut out: W) -> io::Result<Self> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&PCAP_MAGIC.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes()); // version 2.4
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone (8..12) and sigfigs (12..16) stay 0.
        h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        out.flush()?;
        Ok(PcapWriter { out })
    }

    /// Writes one frame captured at wall-clock time `ts`, then flushes.
    pub(crate) fn write_frame(&mut self, ts: SystemTime, frame: &[u8]) -> io::Result<()> {
        let since = ts.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        self.write_frame_at(since.as_secs(), since.subsec_micros(), frame)
    }

    /// Writes one frame with an explicit timestamp (seconds and microseconds since the Unix epoch).
    pub(crate) fn write_frame_at(
        &mut self,
        secs: u64,
        micros: u32,
        frame: &[u8],
    ) -> io::Result<()> {
        let incl = frame.len().min(SNAPLEN as usize);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(secs as u32).to_le_bytes());
        h[4..8].copy_from_slice(&micros.to_le_bytes());
        h[8..12].copy_from_slice(&(incl as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(frame.len().min(u32::MAX as usize) as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&frame[..incl])?;
        self.out.flush()
    }

    #[cfg(test)]
    pub(crate) fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_global_and_record_headers_byte_exact() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let frames: [&[u8]; 3] = [&[1, 2, 3], &[0xaa; 60], &[]];
        let epoch = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        for (i, f) in frames.iter().enumerate() {
            w.write_frame(epoch + Duration::from_micros(i as u64 * 1_000_001), f)
                .unwrap();
        }
        let b = w.into_inner();
        assert_eq!(
            &b[..24],
            &[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0]
        );
        let mut at = 24;
        let expect_ts = [
            (1_700_000_000u32, 123_456u32),
            (1_700_000_001, 123_457),
            (1_700_000_002, 123_458),
        ];
        for (i, f) in frames.iter().enumerate() {
            let h = &b[at..at + 16];
            let (s, us) = expect_ts[i];
            let mut want = Vec::new();
            want.extend_from_slice(&s.to_le_bytes());
            want.extend_from_slice(&us.to_le_bytes());
            want.extend_from_slice(&(f.len() as u32).to_le_bytes());
            want.extend_from_slice(&(f.len() as u32).to_le_bytes());
            assert_eq!(h, &want[..], "record {i}");
            assert_eq!(&b[at + 16..at + 16 + f.len()], *f);
            at += 16 + f.len();
        }
        assert_eq!(at, b.len());
    }

    #[test]
    fn test_offloaded_segments_are_captured_whole() {
        // A 64 KiB segment with its Ethernet, IP and TCP headers: over the old 65,535 snaplen.
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let seg = vec![7u8; 65_549];
        w.write_frame_at(5, 6, &seg).unwrap();
        let b = w.into_inner();
        assert_eq!(&b[16..20], &262_144u32.to_le_bytes(), "global snaplen");
        assert_eq!(&b[24 + 8..24 + 12], &65_549u32.to_le_bytes());
        assert_eq!(b.len(), 24 + 16 + 65_549);
    }

    #[test]
    fn test_snaplen_truncates_but_keeps_orig_len() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let big = vec![7u8; 300_000];
        w.write_frame_at(5, 6, &big).unwrap();
        let b = w.into_inner();
        assert_eq!(&b[24 + 8..24 + 12], &262_144u32.to_le_bytes());
        assert_eq!(&b[24 + 12..24 + 16], &300_000u32.to_le_bytes());
        assert_eq!(b.len(), 24 + 16 + 262_144);
    }
}
