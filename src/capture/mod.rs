//! Capture files, both ways.
//!
//! Writing (`--pcap FILE`): classic pcap, or pcapng when the name ends in `.pcapng`, whose every
//! frame carries its packet line as a comment (and what the fault injector did to it), so that a
//! person opening the file in Wireshark reads tapstack's words beside Wireshark's. Both use
//! LINKTYPE_ETHERNET and a snaplen of 262,144 bytes, as tcpdump does.
//!
//! Reading (`tapstack read FILE`): [`read::CaptureReader`] takes classic pcap and pcapng apart into
//! frames, [`link`] makes frames of other link types (raw IP, Linux cooked) into Ethernet frames, and
//! [`read_capture`] feeds them to the same tracer the live tool uses, with directions and narration
//! inferred from the frames.

use std::fmt;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smoltcp::time::Instant;

use crate::trace::{TraceConfig, Tracer};

pub(crate) mod link;
pub(crate) mod pcap;
pub(crate) mod pcapng;
pub(crate) mod read;

pub(crate) use pcap::PcapWriter;
pub(crate) use pcapng::PcapngWriter;
pub use read::{CaptureReader, Format, Frame, ReadError};

/// The file format a capture path asks for: pcapng for `.pcapng`, classic pcap otherwise.
pub(crate) fn format_for(path: &Path) -> Format {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("pcapng") => Format::Pcapng,
        _ => Format::Pcap,
    }
}

/// Where the tracer's frames are captured: a classic pcap file, or pcapng with a comment per frame.
pub(crate) enum CaptureWriter {
    Pcap(PcapWriter<Box<dyn Write>>),
    Pcapng {
        w: PcapngWriter<Box<dyn Write>>,
        /// The comment being built (reused: no allocation per frame once warm).
        comment: String,
    },
}

impl CaptureWriter {
    /// A writer of `format` over `out`; pcapng names its interface `device`.
    pub(crate) fn new(format: Format, out: Box<dyn Write>, device: &str) -> io::Result<Self> {
        Ok(match format {
            Format::Pcap => CaptureWriter::Pcap(PcapWriter::new(out)?),
            Format::Pcapng => CaptureWriter::Pcapng {
                w: PcapngWriter::new(out, device)?,
                comment: String::new(),
            },
        })
    }

    /// Creates `path` and writes the format its name asks for.
    pub(crate) fn create(path: &Path, device: &str) -> io::Result<Self> {
        let f = File::create(path)
            .map_err(|e| io::Error::new(e.kind(), format!("pcap file {}: {e}", path.display())))?;
        Self::new(format_for(path), Box::new(BufWriter::new(f)), device)
    }

    /// Writes one frame captured at `ts`; `comment` writes its comment (called only for pcapng).
    pub(crate) fn write(
        &mut self,
        ts: SystemTime,
        frame: &[u8],
        comment: impl FnOnce(&mut String),
    ) -> io::Result<()> {
        let since = ts.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        match self {
            CaptureWriter::Pcap(w) => w.write_frame(ts, frame),
            CaptureWriter::Pcapng { w, comment: buf } => {
                buf.clear();
                comment(buf);
                w.write_frame(since.as_micros() as u64, frame, buf)
            }
        }
    }
}

/// `tapstack read FILE` could not finish.
#[derive(Debug)]
pub struct CaptureError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong with it.
    pub error: ReadError,
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.error)
    }
}

impl std::error::Error for CaptureError {}

/// Reads a capture file and shows every frame through the tracer, as the live tool shows its own:
/// packet lines, explanations, labels, inferred narration, ladders, events, step mode, and a new
/// capture when `cfg.pcap` asks for one. Returns the number of frames read.
pub fn read_capture(path: &Path, cfg: TraceConfig) -> Result<u64, CaptureError> {
    let err = |error: ReadError| CaptureError {
        path: path.to_path_buf(),
        error,
    };
    let f = File::open(path).map_err(|e| err(ReadError::Io(e)))?;
    let same = |out: &PathBuf| out.canonicalize().ok() == path.canonicalize().ok();
    if cfg.pcap.as_ref().is_some_and(same) {
        return Err(err(ReadError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--pcap names the file being read: it would be overwritten",
        ))));
    }
    let (frames, format) = read_stream(BufReader::new(f), cfg).map_err(err)?;
    let mut line = String::new();
    let _ = write!(
        line,
        "read {frames} frames from {} ({})",
        path.display(),
        match format {
            Format::Pcap => "pcap",
            Format::Pcapng => "pcapng",
        }
    );
    log::info!(target: "tapstack", "{line}");
    Ok(frames)
}

/// [`read_capture`] over any byte stream: the frames shown, and the format.
fn read_stream(input: impl io::Read, cfg: TraceConfig) -> Result<(u64, Format), ReadError> {
    let mut r = CaptureReader::new(input)?;
    let format = r.format();
    let mut tracer: Option<Tracer> = None;
    let mut epoch_ns = 0i128;
    let mut frames = 0u64;
    let mut eth = Vec::new();
    let mut last_us = 0i64;
    while let Some(fr) = r.next_frame()? {
        if !link::known(fr.link) {
            return Err(ReadError::UnknownLinkType {
                link: fr.link,
                record: fr.record,
            });
        }
        let t = match tracer.as_mut() {
            Some(t) => t,
            None => {
                epoch_ns = fr.ts_ns;
                let mut cfg = cfg.clone();
                cfg.device = fr.iface_name.unwrap_or("pcap").to_string();
                cfg.narrate_limit = 0;
                let wall =
                    UNIX_EPOCH + Duration::from_nanos(epoch_ns.clamp(0, u64::MAX as i128) as u64);
                let t = Tracer::new(cfg, wall).map_err(ReadError::Io)?;
                tracer.insert(t)
            }
        };
        let t_us = ((fr.ts_ns - epoch_ns) / 1000).clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        let Some(frame) = link::to_ethernet(fr.link, fr.data, &mut eth) else {
            continue;
        };
        t.read_frame(Instant::from_micros(t_us), frame);
        frames += 1;
        last_us = t_us;
        if t.quit_requested() {
            break;
        }
    }
    if let Some(t) = tracer.as_mut() {
        t.read_done(Instant::from_micros(last_us));
    }
    Ok((frames, format))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{Eth, Tcp, SERVER_V4};
    use std::net::Ipv4Addr;

    /// A pcapng file with one interface per link type tapstack reads, and frames on each.
    fn sample() -> Vec<u8> {
        let peer = Ipv4Addr::new(192, 168, 69, 100);
        let eth = [
            Eth::to_server()
                .ipv4(peer, SERVER_V4)
                .tcp(&Tcp::new(40000, 7, 1).syn()),
            Eth::to_client()
                .ipv4(SERVER_V4, peer)
                .tcp(&Tcp::new(7, 40000, 9).syn().ack(2)),
            Eth::to_server()
                .ipv4(peer, SERVER_V4)
                .tcp(&Tcp::new(40000, 7, 2).ack(10).fin().data(b"bye")),
        ];
        let mut b = Vec::new();
        let mut w = PcapngWriter::new(&mut b, "eth").unwrap();
        for (i, f) in eth.iter().enumerate() {
            w.write_frame(i as u64, f, "x").unwrap();
        }
        // More interfaces: raw IP, SLL, SLL2; each frame the same IP packet.
        for (n, link) in [(1u32, link::RAW), (2, link::SLL), (3, link::SLL2)] {
            let mut idb = Vec::new();
            idb.extend_from_slice(&1u32.to_le_bytes());
            idb.extend_from_slice(&20u32.to_le_bytes());
            idb.extend_from_slice(&(link as u16).to_le_bytes());
            idb.extend_from_slice(&[0, 0]);
            idb.extend_from_slice(&65535u32.to_le_bytes());
            idb.extend_from_slice(&20u32.to_le_bytes());
            b.extend_from_slice(&idb);
            for f in &eth {
                let ip = &f[14..];
                let mut data = match link {
                    link::SLL => vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 2, 0, 0, 8, 0],
                    link::SLL2 => vec![8, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 2, 0, 0],
                    _ => vec![],
                };
                data.extend_from_slice(ip);
                let pad = data.len().div_ceil(4) * 4 - data.len();
                let len = 32 + data.len() + pad;
                b.extend_from_slice(&6u32.to_le_bytes());
                b.extend_from_slice(&(len as u32).to_le_bytes());
                b.extend_from_slice(&n.to_le_bytes());
                b.extend_from_slice(&[0; 8]);
                b.extend_from_slice(&(data.len() as u32).to_le_bytes());
                b.extend_from_slice(&(data.len() as u32).to_le_bytes());
                b.extend_from_slice(&data);
                b.resize(b.len() + pad, 0);
                b.extend_from_slice(&(len as u32).to_le_bytes());
            }
        }
        b
    }

    fn quiet() -> TraceConfig {
        TraceConfig {
            quiet: true,
            ..TraceConfig::default()
        }
    }

    #[test]
    fn test_every_link_type_reads_into_the_tracer() {
        let (frames, format) = read_stream(&sample()[..], quiet()).unwrap();
        assert_eq!((frames, format), (12, Format::Pcapng));
    }

    /// The whole path (reader, link types, decoder, tracer, inference) on cut and mutated files:
    /// frames or an error, never a panic.
    #[test]
    fn test_mutated_captures_never_panic_through_the_tracer() {
        let base = sample();
        for cut in (0..base.len()).step_by(7) {
            let _ = read_stream(&base[..cut], quiet());
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..1500 {
            let mut m = base.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed as usize) % m.len();
                m[at] ^= (seed >> 40) as u8 | 1;
            }
            let _ = read_stream(&m[..], quiet());
        }
    }
}
