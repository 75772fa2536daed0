//! A pcapng capture writer (`--pcap FILE.pcapng`): one Section Header Block, one Interface Description
//! Block (LINKTYPE_ETHERNET, snaplen 262,144, `if_name` the device, `if_tsresol` microseconds), then
//! one Enhanced Packet Block per frame carrying the frame's packet line as its comment
//! (`opt_comment`), which Wireshark shows under "Packet comments" and tshark as `frame.comment`.
//!
//! Little-endian, as the machine writes it; every block is written and flushed at once, so a reader
//! can follow the file while it grows. No allocation per frame: headers are built on the stack.

use std::io::{self, Write};

use super::pcap::{LINKTYPE_ETHERNET, SNAPLEN};

pub(crate) const BLOCK_SHB: u32 = 0x0A0D_0D0A;
pub(crate) const BLOCK_IDB: u32 = 0x0000_0001;
pub(crate) const BLOCK_SPB: u32 = 0x0000_0003;
pub(crate) const BLOCK_EPB: u32 = 0x0000_0006;
/// The obsolete Packet Block (type 2), still found in old files.
pub(crate) const BLOCK_OPB: u32 = 0x0000_0002;
pub(crate) const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;
/// An option's value is at most this long (its length field is 16 bits).
const OPT_MAX: usize = 65_532;

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// The length of an option's value as written: cut to [`OPT_MAX`] on a UTF-8 boundary.
fn opt_text(s: &str) -> &str {
    if s.len() <= OPT_MAX {
        return s;
    }
    let mut end = OPT_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// An option's bytes on the wire: code, length, value padded to 32 bits.
fn opt_len(value: &[u8]) -> usize {
    4 + pad4(value.len())
}

fn write_opt(out: &mut impl Write, code: u16, value: &[u8]) -> io::Result<()> {
    out.write_all(&code.to_le_bytes())?;
    out.write_all(&(value.len() as u16).to_le_bytes())?;
    out.write_all(value)?;
    out.write_all(&[0u8; 3][..pad4(value.len()) - value.len()])
}

pub(crate) struct PcapngWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the section header and the one interface (`device`, Ethernet, microseconds).
    pub(crate) fn new(mut out: W, device: &str) -> io::Result<Self> {
        let appl = concat!("tapstack ", env!("CARGO_PKG_VERSION")).as_bytes();
        // SHB: type, length, byte-order magic, version 1.0, section length unknown, options, length.
        let len = 28 + opt_len(appl) + 4;
        out.write_all(&BLOCK_SHB.to_le_bytes())?;
        out.write_all(&(len as u32).to_le_bytes())?;
        out.write_all(&BYTE_ORDER_MAGIC.to_le_bytes())?;
        out.write_all(&1u16.to_le_bytes())?;
        out.write_all(&0u16.to_le_bytes())?;
        out.write_all(&(-1i64).to_le_bytes())?;
        write_opt(&mut out, SHB_USERAPPL, appl)?;
        write_opt(&mut out, OPT_END, &[])?;
        out.write_all(&(len as u32).to_le_bytes())?;
        // IDB: link type, reserved, snaplen, if_name, if_tsresol (10^-6), end.
        let name = opt_text(device).as_bytes();
        let len = 20 + opt_len(name) + opt_len(&[6]) + 4;
        out.write_all(&BLOCK_IDB.to_le_bytes())?;
        out.write_all(&(len as u32).to_le_bytes())?;
        out.write_all(&(LINKTYPE_ETHERNET as u16).to_le_bytes())?;
        out.write_all(&0u16.to_le_bytes())?;
        out.write_all(&SNAPLEN.to_le_bytes())?;
        write_opt(&mut out, IF_NAME, name)?;
        write_opt(&mut out, IF_TSRESOL, &[6])?;
        write_opt(&mut out, OPT_END, &[])?;
        out.write_all(&(len as u32).to_le_bytes())?;
        out.flush()?;
        Ok(PcapngWriter { out })
    }

    /// Writes one frame, `micros` after the Unix epoch, with `comment` (none when empty); then
    /// flushes.
    pub(crate) fn write_frame(
        &mut self,
        micros: u64,
        frame: &[u8],
        comment: &str,
    ) -> io::Result<()> {
        let incl = frame.len().min(SNAPLEN as usize);
        let comment = opt_text(comment).as_bytes();
        let opts = if comment.is_empty() {
            0
        } else {
            opt_len(comment) + 4
        };
        let len = 28 + pad4(incl) + opts + 4;
        let mut h = [0u8; 28];
        h[0..4].copy_from_slice(&BLOCK_EPB.to_le_bytes());
        h[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        // Interface 0 (8..12).
        h[12..16].copy_from_slice(&((micros >> 32) as u32).to_le_bytes());
        h[16..20].copy_from_slice(&(micros as u32).to_le_bytes());
        h[20..24].copy_from_slice(&(incl as u32).to_le_bytes());
        h[24..28].copy_from_slice(&(frame.len().min(u32::MAX as usize) as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&frame[..incl])?;
        self.out.write_all(&[0u8; 3][..pad4(incl) - incl])?;
        if !comment.is_empty() {
            write_opt(&mut self.out, OPT_COMMENT, comment)?;
            write_opt(&mut self.out, OPT_END, &[])?;
        }
        self.out.write_all(&(len as u32).to_le_bytes())?;
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

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn test_blocks_are_well_formed_and_carry_the_comment() {
        let mut w = PcapngWriter::new(Vec::new(), "wire").unwrap();
        w.write_frame(1_700_000_000_123_456, &[1, 2, 3, 4, 5], "in c1 TCP hello")
            .unwrap();
        w.write_frame(1_700_000_000_123_457, &[9; 8], "").unwrap();
        let b = w.into_inner();
        // Walk the blocks: each length is a multiple of 4 and repeated at the block's end.
        let mut at = 0;
        let mut kinds = Vec::new();
        while at < b.len() {
            let (kind, len) = (u32_at(&b, at), u32_at(&b, at + 4) as usize);
            assert_eq!(len % 4, 0);
            assert_eq!(u32_at(&b, at + len - 4) as usize, len, "trailing length");
            kinds.push((kind, at, len));
            at += len;
        }
        assert_eq!(at, b.len());
        let k: Vec<u32> = kinds.iter().map(|k| k.0).collect();
        assert_eq!(k, [BLOCK_SHB, BLOCK_IDB, BLOCK_EPB, BLOCK_EPB]);
        assert_eq!(u32_at(&b, 8), BYTE_ORDER_MAGIC);
        let idb = kinds[1].1;
        assert_eq!(u32_at(&b, idb + 8) & 0xffff, 1, "Ethernet");
        assert_eq!(u32_at(&b, idb + 12), 262_144, "snaplen");
        let epb = kinds[2].1;
        let ts = (u32_at(&b, epb + 12) as u64) << 32 | u32_at(&b, epb + 16) as u64;
        assert_eq!(ts, 1_700_000_000_123_456);
        assert_eq!(u32_at(&b, epb + 20), 5);
        assert_eq!(&b[epb + 28..epb + 33], &[1, 2, 3, 4, 5]);
        // The comment option follows the padded data.
        let opt = epb + 28 + 8;
        assert_eq!(u32_at(&b, opt), 1 | (15 << 16));
        assert_eq!(&b[opt + 4..opt + 19], b"in c1 TCP hello");
        // No comment: no options at all.
        assert_eq!(kinds[3].2, 28 + 8 + 4);
    }

    #[test]
    fn test_a_huge_comment_is_cut_on_a_character_boundary() {
        let mut w = PcapngWriter::new(Vec::new(), "wire").unwrap();
        let long = "é".repeat(40_000);
        w.write_frame(0, &[0; 4], &long).unwrap();
        let b = w.into_inner();
        assert_eq!(b.len() % 4, 0);
        assert!(opt_text(&long).len() <= OPT_MAX);
        assert!(std::str::from_utf8(opt_text(&long).as_bytes()).is_ok());
    }
}
