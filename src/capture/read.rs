//! Reading capture files: classic pcap (either byte order, microsecond or nanosecond timestamps) and
//! pcapng (Section Header, Interface Description, Enhanced, Simple and the obsolete Packet Blocks;
//! several sections and interfaces; other blocks skipped).
//!
//! Nothing in a file is trusted: every length is checked against what is left and against a cap
//! before anything is read or allocated, and a file that ends inside a record is reported with the
//! record's number and byte offset. One frame is held at a time, in a buffer reused for the next.

use std::fmt;
use std::io::{self, Read};

use super::pcapng::{BLOCK_EPB, BLOCK_IDB, BLOCK_OPB, BLOCK_SHB, BLOCK_SPB, BYTE_ORDER_MAGIC};

/// No record may claim more than this many bytes (pcap's and pcapng's own readers use similar caps;
/// the largest real frames, offloaded 64 KiB segments, are far below it).
pub(crate) const MAX_RECORD: usize = 16 << 20;
/// Interfaces per pcapng section at most.
const MAX_IFACES: usize = 4096;

/// Why a capture file cannot be read (each one line, said with the file name by the caller).
#[derive(Debug)]
pub enum ReadError {
    /// Not a single byte.
    Empty,
    /// The first four bytes are no pcap or pcapng magic number.
    NotACapture {
        /// The first bytes, as read.
        magic: [u8; 4],
        /// How many of them there were.
        len: usize,
    },
    /// The file ends inside a header or a record.
    Truncated {
        /// The record (frame or block) it ends in, counted from 1; 0: the file header.
        record: u64,
        /// The byte offset where that record starts.
        offset: u64,
        /// Bytes the record needs, and bytes that were left.
        wanted: u64,
        /// Bytes that were there.
        got: u64,
    },
    /// A record whose own lengths contradict each other or exceed every sane bound.
    Malformed {
        /// The record, counted from 1.
        record: u64,
        /// Its byte offset.
        offset: u64,
        /// What is wrong.
        why: String,
    },
    /// A frame of a link type that tapstack cannot decode.
    UnknownLinkType {
        /// The link type number (LINKTYPE_*).
        link: u32,
        /// The record of the first such frame.
        record: u64,
    },
    /// The file could not be read.
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Empty => f.write_str("the file is empty: not a capture"),
            ReadError::NotACapture { magic, len } => {
                write!(f, "not a capture file (pcap or pcapng): it starts with")?;
                for b in &magic[..*len] {
                    write!(f, " {b:02x}")?;
                }
                Ok(())
            }
            ReadError::Truncated {
                record: 0,
                wanted,
                got,
                ..
            } => write!(
                f,
                "truncated: the file header needs {wanted} bytes, the file has {got}"
            ),
            ReadError::Truncated {
                record,
                offset,
                wanted,
                got,
            } => write!(
                f,
                "truncated record {record} at byte offset {offset}: it needs {wanted} bytes, only {got} are left (the capture was cut short)"
            ),
            ReadError::Malformed {
                record,
                offset,
                why,
            } => write!(f, "bad record {record} at byte offset {offset}: {why}"),
            ReadError::UnknownLinkType { link, record } => write!(
                f,
                "unknown link type {link}{} (record {record}): tapstack reads Ethernet (1), raw IP (101, 228, 229), Linux cooked SLL (113) and SLL2 (276)",
                link_name(*link).map(|n| format!(" ({n})")).unwrap_or_default()
            ),
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// A few well-known link types tapstack does not read, named in the error.
fn link_name(link: u32) -> Option<&'static str> {
    Some(match link {
        0 => "BSD loopback",
        105 => "IEEE 802.11",
        108 => "OpenBSD loopback",
        127 => "802.11 radiotap",
        147..=162 => "a user-defined DLT",
        187 => "Bluetooth HCI",
        189 => "USB Linux",
        220 => "USB Linux mmapped",
        _ => return None,
    })
}

/// Which format the file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Classic libpcap.
    Pcap,
    /// pcapng.
    Pcapng,
}

/// One frame from the file.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The record it came in, counted from 1 (pcapng: blocks, all kinds counted).
    pub record: u64,
    /// Nanoseconds since the Unix epoch (a Simple Packet Block takes the previous frame's time).
    pub ts_ns: i128,
    /// Its link type (LINKTYPE_*).
    pub link: u32,
    /// The pcapng interface it was captured on (0 in classic pcap).
    pub iface: u32,
    /// The bytes captured.
    pub data: &'a [u8],
    /// Its length on the wire (may exceed `data.len()` when the capture cut it).
    pub orig_len: u32,
    /// The interface's name, when the file gives one (pcapng `if_name`).
    pub iface_name: Option<&'a str>,
}

#[derive(Debug, Clone)]
struct Iface {
    link: u32,
    /// Ticks per second, as a power of 10 (`Dec`) or of 2 (`Bin`).
    tsresol: TsResol,
    /// Seconds added to every timestamp (`if_tsoffset`).
    tsoffset: i64,
    name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TsResol {
    Dec(u8),
    Bin(u8),
}

impl TsResol {
    fn to_ns(self, ticks: u64) -> i128 {
        let t = ticks as i128;
        match self {
            TsResol::Dec(n) if n <= 9 => t * 10i128.pow(9 - n as u32),
            TsResol::Dec(n) => t / 10i128.pow((n as u32 - 9).min(38)),
            TsResol::Bin(n) => (t * 1_000_000_000) >> (n as u32).min(100),
        }
    }
}

#[derive(Debug)]
enum Kind {
    Pcap {
        swapped: bool,
        nanos: bool,
        link: u32,
    },
    Pcapng {
        swapped: bool,
        ifaces: Vec<Iface>,
    },
}

/// Reads frames one at a time from a pcap or pcapng stream.
pub struct CaptureReader<R: Read> {
    r: R,
    kind: Kind,
    /// Bytes consumed so far.
    offset: u64,
    /// Records read so far.
    records: u64,
    buf: Vec<u8>,
    last_ts: i128,
}

/// How many bytes `read_full` got before the end of the input.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn u16_at(b: &[u8], at: usize, swapped: bool) -> u16 {
    let v = u16::from_le_bytes([b[at], b[at + 1]]);
    if swapped {
        v.swap_bytes()
    } else {
        v
    }
}

fn u32_at(b: &[u8], at: usize, swapped: bool) -> u32 {
    let v = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    if swapped {
        v.swap_bytes()
    } else {
        v
    }
}

const PCAP_US: u32 = 0xa1b2_c3d4;
const PCAP_NS: u32 = 0xa1b2_3c4d;

impl<R: Read> CaptureReader<R> {
    /// Reads the file header (pcap) or the first Section Header Block (pcapng).
    pub fn new(mut r: R) -> Result<Self, ReadError> {
        let mut m = [0u8; 4];
        let n = read_full(&mut r, &mut m).map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Empty);
        }
        let le = u32::from_le_bytes(m);
        let mut this = CaptureReader {
            r,
            kind: Kind::Pcapng {
                swapped: false,
                ifaces: Vec::new(),
            },
            offset: 0,
            records: 0,
            buf: Vec::new(),
            last_ts: 0,
        };
        if n == 4
            && (le == PCAP_US
                || le == PCAP_NS
                || le.swap_bytes() == PCAP_US
                || le.swap_bytes() == PCAP_NS)
        {
            let swapped = le.swap_bytes() == PCAP_US || le.swap_bytes() == PCAP_NS;
            let nanos = le == PCAP_NS || le.swap_bytes() == PCAP_NS;
            let mut h = [0u8; 24];
            h[..4].copy_from_slice(&m);
            let got = read_full(&mut this.r, &mut h[4..]).map_err(ReadError::Io)?;
            if got < 20 {
                return Err(ReadError::Truncated {
                    record: 0,
                    offset: 0,
                    wanted: 24,
                    got: 4 + got as u64,
                });
            }
            this.offset = 24;
            // The upper bits of the link type field carry FCS information.
            let link = u32_at(&h, 20, swapped) & 0x0fff_ffff;
            this.kind = Kind::Pcap {
                swapped,
                nanos,
                link,
            };
            return Ok(this);
        }
        if n == 4 && le == BLOCK_SHB {
            this.read_shb_after_type()?;
            return Ok(this);
        }
        Err(ReadError::NotACapture { magic: m, len: n })
    }

    /// pcap or pcapng.
    pub fn format(&self) -> Format {
        match self.kind {
            Kind::Pcap { .. } => Format::Pcap,
            Kind::Pcapng { .. } => Format::Pcapng,
        }
    }

    /// Reads exactly `len` bytes of the current record into `self.buf`, or says where it ends.
    fn fill(&mut self, start: u64, len: usize) -> Result<(), ReadError> {
        self.buf.clear();
        self.buf.resize(len, 0);
        let got = read_full(&mut self.r, &mut self.buf).map_err(ReadError::Io)?;
        self.offset += got as u64;
        if got < len {
            return Err(ReadError::Truncated {
                record: self.records,
                offset: start,
                wanted: (self.offset - start) + (len - got) as u64,
                got: self.offset - start,
            });
        }
        Ok(())
    }

    fn malformed(&self, start: u64, why: String) -> ReadError {
        ReadError::Malformed {
            record: self.records,
            offset: start,
            why,
        }
    }

    /// The rest of a Section Header Block, its type already read (4 bytes at `self.offset - 4`
    /// or at 0 for the file's first).
    fn read_shb_after_type(&mut self) -> Result<(), ReadError> {
        let start = self.offset;
        self.records += 1;
        self.offset += 4;
        let mut h = [0u8; 8];
        let got = read_full(&mut self.r, &mut h).map_err(ReadError::Io)?;
        self.offset += got as u64;
        if got < 8 {
            return Err(ReadError::Truncated {
                record: self.records,
                offset: start,
                wanted: 12,
                got: 4 + got as u64,
            });
        }
        let bom = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let swapped = if bom == BYTE_ORDER_MAGIC {
            false
        } else if bom.swap_bytes() == BYTE_ORDER_MAGIC {
            true
        } else {
            return Err(self.malformed(
                start,
                format!("section header with byte-order magic {bom:08x}"),
            ));
        };
        let len = u32_at(&h, 0, swapped) as usize;
        if len < 28 || !len.is_multiple_of(4) || len > MAX_RECORD {
            return Err(self.malformed(start, format!("section header of {len} bytes")));
        }
        self.fill(start, len - 12)?;
        let trailer = u32_at(&self.buf, len - 16, swapped) as usize;
        if trailer != len {
            return Err(self.malformed(
                start,
                format!("block length {len} but {trailer} at its end"),
            ));
        }
        self.kind = Kind::Pcapng {
            swapped,
            ifaces: Vec::new(),
        };
        Ok(())
    }

    /// The next frame, `None` at the end of the file.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, ReadError> {
        match self.kind {
            Kind::Pcap {
                swapped,
                nanos,
                link,
            } => self.next_pcap(swapped, nanos, link),
            Kind::Pcapng { .. } => self.next_pcapng(),
        }
    }

    fn next_pcap(
        &mut self,
        swapped: bool,
        nanos: bool,
        link: u32,
    ) -> Result<Option<Frame<'_>>, ReadError> {
        let start = self.offset;
        let mut h = [0u8; 16];
        let got = read_full(&mut self.r, &mut h).map_err(ReadError::Io)?;
        if got == 0 {
            return Ok(None);
        }
        self.records += 1;
        self.offset += got as u64;
        if got < 16 {
            return Err(ReadError::Truncated {
                record: self.records,
                offset: start,
                wanted: 16,
                got: got as u64,
            });
        }
        let secs = u32_at(&h, 0, swapped) as i128;
        let frac = u32_at(&h, 4, swapped) as i128;
        let incl = u32_at(&h, 8, swapped) as usize;
        let orig = u32_at(&h, 12, swapped);
        if incl > MAX_RECORD {
            return Err(self.malformed(start, format!("a frame of {incl} bytes")));
        }
        self.fill(start, incl)?;
        let ts_ns = secs * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        self.last_ts = ts_ns;
        Ok(Some(Frame {
            record: self.records,
            ts_ns,
            link,
            iface: 0,
            data: &self.buf,
            orig_len: orig,
            iface_name: None,
        }))
    }

    fn next_pcapng(&mut self) -> Result<Option<Frame<'_>>, ReadError> {
        loop {
            let start = self.offset;
            let mut h = [0u8; 8];
            let got = read_full(&mut self.r, &mut h[..4]).map_err(ReadError::Io)?;
            if got == 0 {
                return Ok(None);
            }
            self.offset += got as u64;
            if got < 4 {
                self.records += 1;
                return Err(ReadError::Truncated {
                    record: self.records,
                    offset: start,
                    wanted: 12,
                    got: got as u64,
                });
            }
            let raw_type = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            if raw_type == BLOCK_SHB {
                self.offset = start;
                self.read_shb_after_type()?;
                continue;
            }
            let Kind::Pcapng { swapped, .. } = self.kind else {
                return Ok(None);
            };
            self.records += 1;
            let got = read_full(&mut self.r, &mut h[4..]).map_err(ReadError::Io)?;
            self.offset += got as u64;
            if got < 4 {
                return Err(ReadError::Truncated {
                    record: self.records,
                    offset: start,
                    wanted: 12,
                    got: 4 + got as u64,
                });
            }
            let kind = u32_at(&h, 0, swapped);
            let len = u32_at(&h, 4, swapped) as usize;
            if len < 12 || !len.is_multiple_of(4) || len > MAX_RECORD {
                return Err(
                    self.malformed(start, format!("block of type {kind} claims {len} bytes"))
                );
            }
            self.fill(start, len - 8)?;
            let body_len = len - 12;
            let trailer = u32_at(&self.buf, body_len, swapped) as usize;
            if trailer != len {
                return Err(self.malformed(
                    start,
                    format!("block length {len} but {trailer} at its end"),
                ));
            }
            match kind {
                BLOCK_IDB => self.interface(start, body_len, swapped)?,
                BLOCK_EPB | BLOCK_OPB | BLOCK_SPB => {
                    return self.packet(start, kind, body_len, swapped).map(Some);
                }
                // Name resolution, statistics, custom, decryption secrets...: nothing to show.
                _ => {}
            }
        }
    }

    fn interface(&mut self, start: u64, body_len: usize, swapped: bool) -> Result<(), ReadError> {
        if body_len < 8 {
            return Err(self.malformed(start, "interface description shorter than 8 bytes".into()));
        }
        let b = &self.buf[..body_len];
        let mut iface = Iface {
            link: u16_at(b, 0, swapped) as u32,
            tsresol: TsResol::Dec(6),
            tsoffset: 0,
            name: None,
        };
        for (code, v) in options(&b[8..], swapped) {
            match code {
                2 => iface.name = Some(String::from_utf8_lossy(v).into_owned()),
                9 if !v.is_empty() => {
                    iface.tsresol = if v[0] & 0x80 == 0 {
                        TsResol::Dec(v[0])
                    } else {
                        TsResol::Bin(v[0] & 0x7f)
                    }
                }
                14 if v.len() == 8 => {
                    let o = u64::from_le_bytes(v.try_into().unwrap_or([0; 8]));
                    iface.tsoffset = if swapped { o.swap_bytes() } else { o } as i64;
                }
                _ => {}
            }
        }
        let records = self.records;
        let Kind::Pcapng { ifaces, .. } = &mut self.kind else {
            return Ok(());
        };
        if ifaces.len() >= MAX_IFACES {
            return Err(ReadError::Malformed {
                record: records,
                offset: start,
                why: format!("more than {MAX_IFACES} interfaces"),
            });
        }
        ifaces.push(iface);
        Ok(())
    }

    fn packet(
        &mut self,
        start: u64,
        kind: u32,
        body_len: usize,
        swapped: bool,
    ) -> Result<Frame<'_>, ReadError> {
        let (iface_id, ticks, data_at, caplen, orig) = match kind {
            BLOCK_SPB => {
                if body_len < 4 {
                    return Err(
                        self.malformed(start, "simple packet block shorter than 4 bytes".into())
                    );
                }
                let orig = u32_at(&self.buf, 0, swapped);
                let cap = (orig as usize).min(body_len - 4);
                (0u32, None, 4, cap, orig)
            }
            _ => {
                if body_len < 20 {
                    return Err(self.malformed(start, "packet block shorter than 20 bytes".into()));
                }
                let b = &self.buf;
                let iface = if kind == BLOCK_EPB {
                    u32_at(b, 0, swapped)
                } else {
                    u16_at(b, 0, swapped) as u32
                };
                let ticks = (u32_at(b, 4, swapped) as u64) << 32 | u32_at(b, 8, swapped) as u64;
                let cap = u32_at(b, 12, swapped) as usize;
                let orig = u32_at(b, 16, swapped);
                if cap > body_len - 20 {
                    return Err(self.malformed(
                        start,
                        format!(
                            "a frame of {cap} bytes in a block with room for {}",
                            body_len - 20
                        ),
                    ));
                }
                (iface, Some(ticks), 20, cap, orig)
            }
        };
        let records = self.records;
        let Kind::Pcapng { ifaces, .. } = &self.kind else {
            return Err(self.malformed(start, "packet outside a section".into()));
        };
        let Some(ifc) = ifaces.get(iface_id as usize) else {
            return Err(ReadError::Malformed {
                record: records,
                offset: start,
                why: format!("a frame of interface {iface_id}, which was never described"),
            });
        };
        let ts_ns = match ticks {
            Some(t) => ifc.tsresol.to_ns(t) + ifc.tsoffset as i128 * 1_000_000_000,
            None => self.last_ts,
        };
        self.last_ts = ts_ns;
        Ok(Frame {
            record: records,
            ts_ns,
            link: ifc.link,
            iface: iface_id,
            data: &self.buf[data_at..data_at + caplen],
            orig_len: orig,
            iface_name: ifc.name.as_deref(),
        })
    }
}

/// The options of a pcapng block: (code, value) until `opt_endofopt` or the end of the bytes.
fn options(mut b: &[u8], swapped: bool) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let code = u16_at(b, 0, swapped);
        let len = u16_at(b, 2, swapped) as usize;
        if code == 0 || 4 + len > b.len() {
            return None;
        }
        let v = &b[4..4 + len];
        b = &b[(4 + ((len + 3) & !3)).min(b.len())..];
        Some((code, v))
    })
}

#[cfg(test)]
mod tests {
    use super::super::pcap::PcapWriter;
    use super::super::pcapng::PcapngWriter;
    use super::*;

    type Frames = Vec<(u64, i128, u32, Vec<u8>)>;

    fn all(bytes: &[u8]) -> Result<Frames, ReadError> {
        let mut r = CaptureReader::new(bytes)?;
        let mut v = Vec::new();
        while let Some(f) = r.next_frame()? {
            v.push((f.record, f.ts_ns, f.link, f.data.to_vec()));
        }
        Ok(v)
    }

    fn pcap_bytes() -> Vec<u8> {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write_frame_at(10, 5, &[1, 2, 3]).unwrap();
        w.write_frame_at(11, 999_999, &[4; 60]).unwrap();
        w.into_inner()
    }

    #[test]
    fn test_reads_our_own_pcap() {
        let v = all(&pcap_bytes()).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0], (1, 10_000_005_000, 1, vec![1, 2, 3]));
        assert_eq!(v[1].1, 11_999_999_000);
    }

    /// The same file written big-endian with nanosecond timestamps.
    #[test]
    fn test_reads_big_endian_nanosecond_pcap() {
        let mut b = Vec::new();
        b.extend_from_slice(&PCAP_NS.to_be_bytes());
        b.extend_from_slice(&2u16.to_be_bytes());
        b.extend_from_slice(&4u16.to_be_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&65535u32.to_be_bytes());
        b.extend_from_slice(&101u32.to_be_bytes());
        let data = [0x45u8, 0, 0, 20];
        b.extend_from_slice(&7u32.to_be_bytes());
        b.extend_from_slice(&123_456_789u32.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(&data);
        let v = all(&b).unwrap();
        assert_eq!(v, vec![(1, 7_123_456_789, 101, vec![0x45, 0, 0, 20])]);
    }

    #[test]
    fn test_reads_our_own_pcapng() {
        let mut w = PcapngWriter::new(Vec::new(), "tap0").unwrap();
        w.write_frame(1_000_001, &[1, 2, 3], "hello").unwrap();
        w.write_frame(2_000_000, &[5; 61], "").unwrap();
        let b = w.into_inner();
        let mut r = CaptureReader::new(&b[..]).unwrap();
        assert_eq!(r.format(), Format::Pcapng);
        assert_eq!(r.next_frame().unwrap().unwrap().iface_name, Some("tap0"));
        let v = all(&b).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].0, v[0].1, v[0].2), (3, 1_000_001_000, 1));
        assert_eq!(v[1].3, vec![5; 61]);
    }

    /// A big-endian pcapng with two interfaces of different link types and resolutions, an unknown
    /// block in between, a Simple Packet Block and an obsolete Packet Block.
    #[test]
    fn test_reads_big_endian_pcapng_with_several_interfaces_and_block_kinds() {
        fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
            let len = 12 + body.len().div_ceil(4) * 4;
            out.extend_from_slice(&kind.to_be_bytes());
            out.extend_from_slice(&(len as u32).to_be_bytes());
            out.extend_from_slice(body);
            out.resize(out.len() + (len - 12 - body.len()), 0);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
        let mut b = Vec::new();
        let mut shb = Vec::new();
        shb.extend_from_slice(&BYTE_ORDER_MAGIC.to_be_bytes());
        shb.extend_from_slice(&[0, 1, 0, 0]);
        shb.extend_from_slice(&(-1i64).to_be_bytes());
        block(&mut b, BLOCK_SHB, &shb);
        // Interface 0: Ethernet, default microseconds. Interface 1: SLL2, nanoseconds, named.
        block(&mut b, BLOCK_IDB, &[0, 1, 0, 0, 0, 0, 0xff, 0xff]);
        let mut idb = vec![0x01, 0x14, 0, 0, 0, 4, 0, 0];
        idb.extend_from_slice(&[0, 9, 0, 1, 9, 0, 0, 0]);
        idb.extend_from_slice(&[0, 2, 0, 3, b'a', b'n', b'y', 0]);
        idb.extend_from_slice(&[0, 0, 0, 0]);
        block(&mut b, BLOCK_IDB, &idb);
        block(&mut b, 0x0000_0005, &[0; 16]); // interface statistics: skipped
        let epb = |iface: u32, ticks: u64, data: &[u8]| {
            let mut v = Vec::new();
            v.extend_from_slice(&iface.to_be_bytes());
            v.extend_from_slice(&((ticks >> 32) as u32).to_be_bytes());
            v.extend_from_slice(&(ticks as u32).to_be_bytes());
            v.extend_from_slice(&(data.len() as u32).to_be_bytes());
            v.extend_from_slice(&(data.len() as u32).to_be_bytes());
            v.extend_from_slice(data);
            v
        };
        block(&mut b, BLOCK_EPB, &epb(1, 5_000_000_123, &[7; 21]));
        block(&mut b, BLOCK_EPB, &epb(0, 6_000_001, &[8; 14]));
        let mut spb = 3u32.to_be_bytes().to_vec();
        spb.extend_from_slice(&[9, 9, 9]);
        block(&mut b, BLOCK_SPB, &spb);
        let mut opb = epb(0, 7_000_000, &[6; 5]);
        opb[..4].copy_from_slice(&[0, 0, 0, 0]); // u16 interface + u16 drops
        block(&mut b, BLOCK_OPB, &opb);
        let v = all(&b).unwrap();
        let got: Vec<(i128, u32, usize)> = v.iter().map(|f| (f.1, f.2, f.3.len())).collect();
        assert_eq!(
            got,
            [
                (5_000_000_123, 276, 21),
                (6_000_001_000, 1, 14),
                (6_000_001_000, 1, 3),
                (7_000_000_000, 1, 5)
            ]
        );
    }

    #[test]
    fn test_bad_files_get_one_clear_reason() {
        assert!(matches!(all(&[]), Err(ReadError::Empty)));
        let e = all(b"GIF89a....").unwrap_err();
        assert_eq!(
            e.to_string(),
            "not a capture file (pcap or pcapng): it starts with 47 49 46 38"
        );
        let e = all(&pcap_bytes()[..10]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "truncated: the file header needs 24 bytes, the file has 10"
        );
        // Cut inside the second frame's data: record 2, which starts at 24 + 16 + 3.
        let b = pcap_bytes();
        let e = all(&b[..b.len() - 7]).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "truncated record 2 at byte offset 43: it needs 76 bytes, only 69 are left"
            ),
            "{e}"
        );
        // A record that claims 100 MB.
        let mut b = pcap_bytes();
        b[24 + 8..24 + 12].copy_from_slice(&100_000_000u32.to_le_bytes());
        let e = all(&b).unwrap_err();
        assert!(
            e.to_string()
                .contains("record 1 at byte offset 24: a frame of 100000000 bytes"),
            "{e}"
        );
    }

    /// Every cut and every single-byte change of valid files: an error or frames, never a panic, and
    /// never more memory than the cap.
    #[test]
    fn test_truncated_and_mutated_files_never_panic() {
        let mut w = PcapngWriter::new(Vec::new(), "wire").unwrap();
        for i in 0..4u8 {
            w.write_frame(i as u64 * 1000, &[i; 70], "a comment")
                .unwrap();
        }
        let inputs = [pcap_bytes(), w.into_inner()];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for base in &inputs {
            for cut in 0..base.len() {
                let _ = all(&base[..cut]);
            }
            for i in 0..base.len() {
                for x in [0x01u8, 0x80, 0xff] {
                    let mut m = base.clone();
                    m[i] ^= x;
                    let _ = all(&m);
                }
            }
            for _ in 0..2000 {
                let mut m = base.clone();
                for _ in 0..4 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let at = (seed as usize) % m.len();
                    m[at] = (seed >> 32) as u8;
                }
                let _ = all(&m);
            }
        }
    }
}
