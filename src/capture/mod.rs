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
    let mut r = CaptureReader::new(BufReader::new(f)).map_err(err)?;
    let format = r.format();
    let mut tracer: Option<Tracer> = None;
    let mut epoch_ns = 0i128;
    let mut frames = 0u64;
    let mut eth = Vec::new();
    let mut last_us = 0i64;
    while let Some(fr) = r.next_frame().map_err(err)? {
        if !link::known(fr.link) {
            return Err(err(ReadError::UnknownLinkType {
                link: fr.link,
                record: fr.record,
            }));
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
                let t = Tracer::new(cfg, wall).map_err(|e| err(ReadError::Io(e)))?;
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
