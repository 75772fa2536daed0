//! The tracer's side of `--pcap`: each frame is written with its packet line as the pcapng comment,
//! and with what the fault injector did to it, which only the device knows (it tells the observer
//! just before it shows the frame, see [`crate::device::FaultMark`]).
//!
//! The capture point is the stack's device: frames going out are captured as the stack sent them,
//! before the fault injector loses, corrupts or duplicates them; frames coming in are captured after
//! it, as the stack receives them (a frame it lost on the way in is captured all the same, and
//! marked).

use std::fmt::Write as _;
use std::time::Duration;

use super::records::{PacketRecord, Summary};
use super::Tracer;
use crate::capture::{CaptureWriter, Format};
use crate::device::{Direction, FaultMark};

fn idx(dir: Direction) -> usize {
    match dir {
        Direction::In => 0,
        Direction::Out => 1,
    }
}

impl Tracer {
    /// The fault injector will have done `mark` to the next frame shown going `dir`.
    pub(super) fn fault_ahead(&mut self, dir: Direction, mark: FaultMark) {
        self.fault_marks[idx(dir)] = mark;
    }

    /// Writes one frame to the capture file, if there is one; a pcapng comment gets its packet line.
    pub(super) fn capture(&mut self, t_us: i64, frame: &[u8], rec: &PacketRecord) {
        let mark = std::mem::take(&mut self.fault_marks[idx(rec.dir)]);
        let word = self.dir_word(rec);
        let absolute_seq = self.absolute_seq;
        let ts = if t_us >= 0 {
            self.wall_epoch + Duration::from_micros(t_us as u64)
        } else {
            self.wall_epoch
                .checked_sub(Duration::from_micros(t_us.unsigned_abs()))
                .unwrap_or(self.wall_epoch)
        };
        let Some(w) = self.pcap.as_mut() else {
            return;
        };
        let r = w.write(ts, frame, |c| {
            let _ = write!(c, "{word} {}", Summary { rec, absolute_seq });
            fault_note(c, rec, mark);
        });
        if let Err(e) = r {
            log::warn!(target: "tapstack::trace", "pcap: write failed, capture stopped: {e}");
            self.pcap = None;
        }
    }

    /// Captures to `out` in classic pcap (writes the global header now).
    pub fn set_pcap_writer(&mut self, out: Box<dyn std::io::Write>) -> std::io::Result<()> {
        self.pcap = Some(CaptureWriter::new(Format::Pcap, out, &self.device)?);
        Ok(())
    }

    /// Captures to `out` in pcapng, a packet line as each frame's comment (writes the headers now).
    pub fn set_pcapng_writer(&mut self, out: Box<dyn std::io::Write>) -> std::io::Result<()> {
        self.pcap = Some(CaptureWriter::new(Format::Pcapng, out, &self.device)?);
        Ok(())
    }
}

/// What happened to the frame beyond the capture point, in words.
fn fault_note(c: &mut String, rec: &PacketRecord, mark: FaultMark) {
    const BY: &str = " | fault injector:";
    match rec.dir {
        Direction::Out => {
            if mark.dropped {
                let _ = write!(
                    c,
                    "{BY} DROPPED after capture, this frame never reached the link"
                );
            }
            if mark.corrupted {
                let _ = write!(
                    c,
                    "{BY} CORRUPTED after capture, the link carried it with one bit flipped"
                );
            }
            if mark.duplicated {
                let _ = write!(
                    c,
                    "{BY} DUPLICATED after capture, the link carried it twice"
                );
            }
        }
        Direction::In => {
            if rec.dropped.is_some() {
                // The packet line already says DROPPED.
                c.push_str(" (after capture: the stack never received this frame)");
            }
            if mark.corrupted {
                let _ = write!(
                    c,
                    "{BY} CORRUPTED before capture, one bit flipped on the way in"
                );
            }
            if mark.duplicated {
                let _ = write!(c, "{BY} DUPLICATED, a copy of this frame follows");
            }
            if mark.copy {
                let _ = write!(c, "{BY} a DUPLICATE, the second copy of an earlier frame");
            }
        }
    }
}
