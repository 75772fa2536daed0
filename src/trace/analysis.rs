//! TCP analysis as Wireshark does it (its `tcp.analysis.*` fields, `packet-tcp.c`): each segment of a
//! connection, seen in capture order, is judged against what was seen before it in both directions:
//! retransmission (plain, fast, spurious), out-of-order, duplicate ACK (#n of frame N), zero window,
//! zero-window probe (and its ACK), window full, window update, keep-alive (and its ACK), previous
//! segment lost, ACKed unseen segment.
//!
//! The same rules as Wireshark's, so that a learner reading our packet lines and one reading
//! Wireshark's on the same capture see the same words (the oracle test, `tests/oracle.rs`, holds
//! them against tshark frame by frame). Wireshark keeps a list of unacknowledged segments per
//! direction only to name the frame a retransmission repeats; none of its labels depend on it, so
//! this keeps a few numbers per direction instead (`Copy`, no heap): the state lives inside the
//! bounded flow table.
//!
//! Input: a time, a direction, the frame's number in the capture, and the decoded TCP header; the
//! analysis neither knows nor cares whether frames come from a live device or a file.

use super::decode::TcpInfo;
use super::records::Labels;

/// Which label kinds a segment got (bits).
pub(crate) mod kind {
    pub(crate) const RETRANSMISSION: u16 = 1 << 0;
    pub(crate) const FAST_RETRANSMISSION: u16 = 1 << 1;
    pub(crate) const SPURIOUS_RETRANSMISSION: u16 = 1 << 2;
    pub(crate) const OUT_OF_ORDER: u16 = 1 << 3;
    pub(crate) const DUPLICATE_ACK: u16 = 1 << 4;
    pub(crate) const ZERO_WINDOW: u16 = 1 << 5;
    pub(crate) const ZERO_WINDOW_PROBE: u16 = 1 << 6;
    pub(crate) const ZERO_WINDOW_PROBE_ACK: u16 = 1 << 7;
    pub(crate) const WINDOW_FULL: u16 = 1 << 8;
    pub(crate) const WINDOW_UPDATE: u16 = 1 << 9;
    pub(crate) const KEEP_ALIVE: u16 = 1 << 10;
    pub(crate) const KEEP_ALIVE_ACK: u16 = 1 << 11;
    pub(crate) const LOST_SEGMENT: u16 = 1 << 12;
    pub(crate) const ACK_LOST_SEGMENT: u16 = 1 << 13;
}

/// Every label the analysis gives, in the order they are written, with its bit, the `--events` label
/// and the one plain sentence that explains it the first time it appears.
pub(crate) const LABELS: [(u16, &str, &str); 14] = [
    (
        kind::RETRANSMISSION,
        "retransmission",
        "sequence numbers this side had already sent, sent again: the first copy (or its ACK) was lost, \
         and the sender's retransmission timer ran out",
    ),
    (
        kind::FAST_RETRANSMISSION,
        "fast retransmission",
        "resent right after the receiver's duplicate ACKs said this segment was missing, without \
         waiting for the retransmission timer (RFC 5681 3.2)",
    ),
    (
        kind::SPURIOUS_RETRANSMISSION,
        "spurious retransmission",
        "data the receiver had already acknowledged, sent again: this resend was not needed",
    ),
    (
        kind::OUT_OF_ORDER,
        "out-of-order",
        "an earlier part of the stream arriving after a later part, too soon after it to be a resend",
    ),
    (
        kind::DUPLICATE_ACK,
        "duplicate ACK",
        "the same acknowledgment number, window and sequence number as this side's previous ACK: \
         the receiver got a segment but not the next bytes it expects; three in a row make the \
         sender resend at once (fast retransmission)",
    ),
    (
        kind::ZERO_WINDOW,
        "zero window",
        "the receiver's buffer is full: the sender must stop until the window opens again",
    ),
    (
        kind::ZERO_WINDOW_PROBE,
        "zero-window probe",
        "one byte sent into a zero window, to learn when the receiver has room again \
         (RFC 9293 3.8.6.1)",
    ),
    (
        kind::ZERO_WINDOW_PROBE_ACK,
        "zero-window probe ACK",
        "the receiver's answer to a zero-window probe (its window is still shut)",
    ),
    (
        kind::WINDOW_FULL,
        "window full",
        "this segment fills the window the receiver offered: the sender must wait for an ACK \
         before it sends more",
    ),
    (
        kind::WINDOW_UPDATE,
        "window update",
        "no new data and no new acknowledgment, only a new window size: the receiver made room",
    ),
    (
        kind::KEEP_ALIVE,
        "keep-alive",
        "a segment one byte behind the next sequence number, sent on an idle connection to check \
         that the other end is still there",
    ),
    (
        kind::KEEP_ALIVE_ACK,
        "keep-alive ACK",
        "the answer to a keep-alive: the other end is still there",
    ),
    (
        kind::LOST_SEGMENT,
        "previous segment lost",
        "this segment starts beyond every sequence number seen so far this way: the segment(s) \
         before it never crossed this point (lost, or sent before the capture began)",
    ),
    (
        kind::ACK_LOST_SEGMENT,
        "ACKed unseen segment",
        "this acknowledges data that was never seen crossing this point",
    ),
];

/// The sentence that explains an analysis label, if `label` is one.
pub(crate) fn explanation(label: &str) -> Option<&'static str> {
    LABELS.iter().find(|l| l.1 == label).map(|l| l.2)
}

/// Whether a label names a retransmission of any kind (what the close summaries count).
pub(crate) fn is_retransmission(label: &str) -> bool {
    matches!(
        label,
        "retransmission" | "fast retransmission" | "spurious retransmission"
    )
}

/// A duplicate ACK: its number in the run, and the frame whose ACK it repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DupAck {
    /// 1 for the first duplicate.
    pub num: u32,
    /// The capture's frame number (1-based) of the ACK it repeats.
    pub frame: u64,
}

/// What the analysis found for one segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Findings {
    /// [`kind`] bits.
    pub kinds: u16,
    pub dup_ack: Option<DupAck>,
    /// The window scale shift in force for this segment's window (none on SYNs, or when not both
    /// SYNs offered window scaling, or when they were not seen).
    pub win_shift: Option<u8>,
}

impl Findings {
    /// Adds the labels, in [`LABELS`] order.
    pub(crate) fn label(&self, labels: &mut Labels) {
        for (bit, name, _) in LABELS {
            if self.kinds & bit != 0 {
                labels.push(name);
            }
        }
    }
}

/// Window scaling known for a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Scale {
    /// No SYN seen yet.
    #[default]
    Unknown,
    /// Not in use (one SYN lacked the option).
    Off,
    /// This shift count (offered in this side's SYN; in force once both offered it).
    Shift(u8),
}

/// One direction's state: what this side has sent and acknowledged. Sequence numbers are absolute;
/// 0 stands for "not seen yet", as in Wireshark (which it agrees with even in that corner).
#[derive(Debug, Clone, Copy, Default)]
struct Half {
    /// The highest sequence number + length (SYN and FIN count one) seen.
    nextseq: u32,
    nextseq_us: i64,
    /// The end of the contiguous data seen (for "ACKed unseen segment").
    maxseqtobeacked: u32,
    /// The acknowledgment number of this side's last segment.
    lastack: u32,
    lastack_us: i64,
    /// The raw window of this side's last segment.
    window: u32,
    /// The last segment was a SYN (its window is never scaled).
    window_from_syn: bool,
    /// Duplicate ACKs in the current run (-1: the run was cut by an ACK of unseen data).
    dupacknum: i32,
    /// The frame of the last ACK that was not a duplicate.
    lastnondupack: u64,
    /// The [`kind`] bits of this side's last segment.
    lastflags: u16,
    scale: Scale,
}

/// Per-connection analysis state (index 0: peer to stack, 1: stack to peer, as the flow table's).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Analysis {
    halves: [Half; 2],
    /// When the most recent SYN was seen, and the handshake's round trip from it to the first
    /// segment with ACK and without SYN (Wireshark's `ts_mru_syn` and `ts_first_rtt`).
    syn_us: Option<i64>,
    first_rtt_us: Option<i64>,
}

fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
fn seq_gt(a: u32, b: u32) -> bool {
    seq_lt(b, a)
}
fn seq_le(a: u32, b: u32) -> bool {
    !seq_gt(a, b)
}

/// Out-of-order versus retransmission: a segment behind the highest one seen this way, arriving
/// within this long of it (the handshake's round trip when known, else 3 ms) is taken as reordered.
const OOO_DEFAULT_US: i64 = 3_000;
/// A resend this soon after the second duplicate ACK is a fast retransmission.
const FAST_RT_US: i64 = 20_000;

impl Analysis {
    /// Judges one segment going way `d` (0 or 1), frame number `frame`, at `t_us`.
    pub(crate) fn segment(&mut self, t_us: i64, d: usize, frame: u64, t: &TcpInfo) -> Findings {
        let o = 1 - (d & 1);
        let d = d & 1;
        let fl = t.flags;
        let (syn, fin, rst, ack_flag) = (fl.syn(), fl.fin(), fl.rst(), fl.ack());
        let (seq, ack, seglen, window) = (t.seq, t.ack, t.len, u32::from(t.win));
        let mut kinds = 0u16;
        let mut dup_ack = None;

        // Window scaling, from the SYNs (both must offer it).
        if syn {
            if let Some(ws) = t.opts.wscale {
                self.halves[d].scale = Scale::Shift(ws.min(14));
            }
            if self.halves[d].scale == Scale::Unknown {
                self.halves[d].scale = Scale::Off;
                self.halves[o].scale = Scale::Off;
            } else if ack_flag && self.halves[o].scale == Scale::Off {
                self.halves[d].scale = Scale::Off;
            }
        }
        // The handshake's round trip (the out-of-order threshold), as Wireshark takes it: from
        // the most recent SYN (a SYN sent again restarts it) to the first segment with ACK and
        // without SYN, either way; a zero one is taken again at the next.
        if syn && !ack_flag {
            self.syn_us = Some(t_us);
        } else if ack_flag && !syn && self.first_rtt_us.is_none() {
            if let Some(s) = self.syn_us {
                self.first_rtt_us = Some(t_us - s).filter(|&v| v > 0);
            }
        }

        let (f, r) = (self.halves[d], self.halves[o]);
        let no_sfr = !(syn || fin || rst);
        'fwd: {
            if seglen == 1 && seq == f.nextseq && r.window == 0 {
                kinds |= kind::ZERO_WINDOW_PROBE;
                break 'fwd;
            }
            if window == 0 && no_sfr {
                kinds |= kind::ZERO_WINDOW;
            }
            if f.nextseq != 0 && seq_gt(seq, f.nextseq) && !rst {
                kinds |= kind::LOST_SEGMENT;
            }
            if seglen <= 1 && seq == f.nextseq.wrapping_sub(1) && no_sfr {
                kinds |= kind::KEEP_ALIVE;
            }
            let same = seglen == 0 && seq == f.nextseq && ack == f.lastack && no_sfr;
            if same && window != 0 && window != f.window {
                kinds |= kind::WINDOW_UPDATE;
            }
            if seglen > 0 && r.scale != Scale::Unknown && no_sfr {
                let shift = match (r.window_from_syn, r.scale) {
                    (false, Scale::Shift(s)) => s,
                    _ => 0,
                };
                let edge = r
                    .lastack
                    .wrapping_add(((u64::from(r.window)) << shift).min(u64::from(u32::MAX)) as u32);
                if seq.wrapping_add(seglen) == edge {
                    kinds |= kind::WINDOW_FULL;
                }
            }
            if same && window != 0 && window == f.window && r.lastflags & kind::KEEP_ALIVE != 0 {
                kinds |= kind::KEEP_ALIVE_ACK;
                break 'fwd;
            }
            if same
                && window == 0
                && window == f.window
                && r.lastflags & kind::ZERO_WINDOW_PROBE != 0
            {
                kinds |= kind::ZERO_WINDOW_PROBE_ACK;
                break 'fwd;
            }
            if same && window != 0 && window == f.window {
                let h = &mut self.halves[d];
                h.dupacknum = if h.dupacknum < 0 { 1 } else { h.dupacknum + 1 };
                kinds |= kind::DUPLICATE_ACK;
                dup_ack = Some(DupAck {
                    num: h.dupacknum as u32,
                    frame: h.lastnondupack,
                });
            }
        }
        if ack != self.halves[d].lastack {
            self.halves[d].lastnondupack = frame;
            self.halves[d].dupacknum = 0;
        }

        // An ACK beyond everything seen the other way: segments went by unseen.
        let rmax = self.halves[o].maxseqtobeacked;
        if rmax != 0 && seq_gt(ack, rmax) && ack_flag {
            let rh = &mut self.halves[o];
            if seq_gt(rh.maxseqtobeacked, rh.nextseq) {
                rh.maxseqtobeacked = rh.nextseq;
                kinds |= kind::ACK_LOST_SEGMENT;
            } else {
                if rh.dupacknum == 0 {
                    kinds |= kind::ACK_LOST_SEGMENT;
                }
                rh.dupacknum = -1;
            }
        }

        // Retransmission, fast or spurious, or out-of-order: a segment that takes sequence space
        // and does not advance.
        if (seglen > 0 || syn || fin) && kinds & kind::KEEP_ALIVE == 0 {
            let mut behind = f.nextseq != 0 && seq_lt(seq, f.nextseq);
            if seglen > 1 && f.nextseq.wrapping_sub(1) == seq {
                behind = false;
            }
            let r = self.halves[o];
            let ooo_us = self
                .first_rtt_us
                .filter(|&v| v > 0)
                .unwrap_or(OOO_DEFAULT_US);
            let seg_end = seq.wrapping_add(seglen).wrapping_add((syn || fin) as u32);
            if seglen > 0 && r.lastack != 0 && seq_le(seq.wrapping_add(seglen), r.lastack) {
                kinds |= kind::SPURIOUS_RETRANSMISSION;
            } else if behind
                && r.dupacknum >= 2
                && r.lastack == seq
                && t_us - r.lastack_us < FAST_RT_US
            {
                kinds |= kind::FAST_RETRANSMISSION;
            } else if behind && t_us - f.nextseq_us < ooo_us && f.nextseq != seg_end {
                kinds |= kind::OUT_OF_ORDER;
            } else if behind {
                kinds |= kind::RETRANSMISSION;
            }
        }

        let h = &mut self.halves[d];
        let mut nextseq = seq.wrapping_add(seglen);
        if syn || fin {
            nextseq = nextseq.wrapping_add(1);
        }
        let probe = kinds & kind::ZERO_WINDOW_PROBE != 0;
        if (seq_gt(nextseq, h.nextseq) || h.nextseq == 0) && !probe {
            h.nextseq = nextseq;
            h.nextseq_us = t_us;
        }
        if (seq == h.maxseqtobeacked || h.maxseqtobeacked == 0) && !probe {
            h.maxseqtobeacked = h.nextseq;
        }
        h.window = window;
        h.window_from_syn = syn;
        h.lastack = ack;
        h.lastack_us = t_us;
        h.lastflags = kinds;

        let win_shift = match (syn, h.scale, self.halves[o].scale) {
            (false, Scale::Shift(s), Scale::Shift(_)) => Some(s),
            _ => None,
        };
        Findings {
            kinds,
            dup_ack,
            win_shift,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::decode::{TcpFlags, TcpOpts};

    fn seg(seq: u32, ack: u32, flags: u16, len: u32, win: u16) -> TcpInfo {
        TcpInfo {
            src_port: 1,
            dst_port: 2,
            seq,
            ack,
            flags: TcpFlags(flags),
            win,
            hdr_len: 20,
            len,
            opts: TcpOpts::default(),
        }
    }
    const SYN: u16 = TcpFlags::SYN;
    const ACK: u16 = TcpFlags::ACK;

    /// A handshake: client (way 0) ISN 1000, server (way 1) ISN 5000; both offer wscale 7.
    fn open() -> (Analysis, u64) {
        let mut a = Analysis::default();
        let mut s = seg(1000, 0, SYN, 0, 64240);
        s.opts.wscale = Some(7);
        a.segment(0, 0, 1, &s);
        let mut sa = seg(5000, 1001, SYN | ACK, 0, 65535);
        sa.opts.wscale = Some(7);
        assert_eq!(
            a.segment(100, 1, 2, &sa).win_shift,
            None,
            "SYNs are never scaled"
        );
        let f = a.segment(200, 0, 3, &seg(1001, 5001, ACK, 0, 502));
        assert_eq!(f.win_shift, Some(7));
        assert_eq!(f.kinds, 0);
        (a, 4)
    }

    #[test]
    fn duplicate_acks_count_and_name_the_frame_they_repeat_then_a_fast_retransmission() {
        let (mut a, _) = open();
        // Server sends 3 segments; the first is lost; the client ACKs the 2nd and 3rd with dups.
        a.segment(1000, 1, 4, &seg(5001, 1001, ACK, 100, 502));
        a.segment(1001, 1, 5, &seg(5101, 1001, ACK, 100, 502));
        a.segment(1002, 1, 6, &seg(5201, 1001, ACK, 100, 502));
        let d1 = a.segment(2001, 0, 7, &seg(1001, 5001, ACK, 0, 502));
        assert_eq!(d1.kinds, kind::DUPLICATE_ACK);
        assert_eq!(d1.dup_ack, Some(DupAck { num: 1, frame: 3 }));
        let d2 = a.segment(2002, 0, 8, &seg(1001, 5001, ACK, 0, 502));
        assert_eq!(d2.dup_ack, Some(DupAck { num: 2, frame: 3 }));
        let rt = a.segment(2003, 1, 9, &seg(5001, 1001, ACK, 100, 502));
        assert_eq!(rt.kinds, kind::FAST_RETRANSMISSION);
        // The cumulative ACK ends the run.
        let f = a.segment(3000, 0, 10, &seg(1001, 5301, ACK, 0, 502));
        assert_eq!(f.kinds, 0);
    }

    #[test]
    fn a_resend_long_after_is_a_retransmission_and_after_its_ack_a_spurious_one() {
        let (mut a, _) = open();
        a.segment(1000, 1, 4, &seg(5001, 1001, ACK, 100, 502));
        let rt = a.segment(500_000, 1, 5, &seg(5001, 1001, ACK, 100, 502));
        assert_eq!(rt.kinds, kind::RETRANSMISSION);
        a.segment(500_100, 0, 6, &seg(1001, 5101, ACK, 0, 502));
        let sp = a.segment(900_000, 1, 7, &seg(5001, 1001, ACK, 100, 502));
        assert_eq!(sp.kinds, kind::SPURIOUS_RETRANSMISSION);
    }

    #[test]
    fn a_gap_then_the_missing_segment_soon_after_is_lost_then_out_of_order() {
        let (mut a, _) = open();
        a.segment(1000, 1, 4, &seg(5001, 1001, ACK, 100, 502));
        let gap = a.segment(1001, 1, 5, &seg(5201, 1001, ACK, 100, 502));
        assert_eq!(gap.kinds, kind::LOST_SEGMENT);
        let late = a.segment(1002, 1, 6, &seg(5101, 1001, ACK, 100, 502));
        assert_eq!(late.kinds, kind::OUT_OF_ORDER);
    }

    /// Wireshark's out-of-order threshold is the handshake's round trip from the most recent
    /// SYN: with the first SYN lost and sent again a second later, it is the second one's 10 ms,
    /// not 1.01 s, so a segment 50 ms behind the highest is a retransmission (an oracle run of
    /// kernel TCP under loss disagreed with tshark here, frame by frame).
    #[test]
    fn the_out_of_order_threshold_starts_at_the_last_syn_sent() {
        let mut a = Analysis::default();
        a.segment(0, 0, 1, &seg(1000, 0, SYN, 0, 64240));
        a.segment(1_000_000, 0, 2, &seg(1000, 0, SYN, 0, 64240));
        a.segment(1_005_000, 1, 3, &seg(5000, 1001, SYN | ACK, 0, 65535));
        a.segment(1_010_000, 0, 4, &seg(1001, 5001, ACK, 0, 502));
        a.segment(1_100_000, 1, 5, &seg(5001, 1001, ACK, 100, 502));
        a.segment(1_100_001, 1, 6, &seg(5201, 1001, ACK, 100, 502));
        let behind = a.segment(1_150_001, 1, 7, &seg(5101, 1001, ACK, 100, 502));
        assert_eq!(behind.kinds, kind::RETRANSMISSION);
        let mut a = Analysis::default();
        a.segment(0, 0, 1, &seg(1000, 0, SYN, 0, 64240));
        // No SYN-ACK in the capture: the first ACK still closes the round trip.
        a.segment(60_000, 0, 2, &seg(1001, 5001, ACK, 0, 502));
        a.segment(100_000, 1, 3, &seg(5001, 1001, ACK, 100, 502));
        a.segment(100_001, 1, 4, &seg(5201, 1001, ACK, 100, 502));
        let soon = a.segment(150_001, 1, 5, &seg(5101, 1001, ACK, 100, 502));
        assert_eq!(
            soon.kinds,
            kind::OUT_OF_ORDER,
            "50 ms < the 60 ms round trip"
        );
    }

    #[test]
    fn zero_window_probe_probe_ack_window_update_keep_alive() {
        let (mut a, _) = open();
        a.segment(1000, 1, 4, &seg(5001, 1001, ACK, 100, 502));
        let z = a.segment(1001, 0, 5, &seg(1001, 5101, ACK, 0, 0));
        assert_eq!(z.kinds, kind::ZERO_WINDOW);
        let p = a.segment(2000, 1, 6, &seg(5101, 1001, ACK, 1, 502));
        assert_eq!(p.kinds, kind::ZERO_WINDOW_PROBE);
        let pa = a.segment(2001, 0, 7, &seg(1001, 5101, ACK, 0, 0));
        assert_eq!(pa.kinds, kind::ZERO_WINDOW | kind::ZERO_WINDOW_PROBE_ACK);
        let u = a.segment(3000, 0, 8, &seg(1001, 5101, ACK, 0, 300));
        assert_eq!(u.kinds, kind::WINDOW_UPDATE);
        let k = a.segment(90_000_000, 1, 9, &seg(5100, 1001, ACK, 0, 502));
        assert_eq!(k.kinds, kind::KEEP_ALIVE);
        let ka = a.segment(90_000_100, 0, 10, &seg(1001, 5101, ACK, 0, 300));
        assert_eq!(ka.kinds, kind::KEEP_ALIVE_ACK);
    }

    #[test]
    fn window_full_uses_the_scaled_window() {
        let (mut a, _) = open();
        // The client's last ACK: ack 5001, window 502 << 7 = 64,256 bytes.
        let f = a.segment(1000, 1, 4, &seg(5001, 1001, ACK, 64_256, 502));
        assert_eq!(f.kinds, kind::WINDOW_FULL);
    }

    #[test]
    fn every_label_has_a_sentence() {
        for (bit, name, why) in LABELS {
            assert_eq!(bit.count_ones(), 1);
            assert_eq!(explanation(name), Some(why));
            assert!(why.len() > 20);
        }
    }
}
