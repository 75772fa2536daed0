//! The sender's SACK scoreboard (RFC 6675 section 3): which octets above SND.UNA the receiver
//! reported holding, as a few disjoint ranges in a fixed array (no allocation).
//!
//! Forgetting a range when the array is full is safe: it only makes the sender retransmit
//! octets the receiver already has, as a sender without SACK would.

use crate::wire::TcpSeqNumber;

/// Ranges kept. A receiver reports at most 3-4 per ACK and, in smoltcp, holds at most
/// `ASSEMBLER_MAX_SEGMENT_COUNT` (4 by default); 8 leaves room for other receivers.
const SCOREBOARD_RANGES: usize = 8;

/// RFC 6675 DupThresh: the threshold before any reordering was seen.
pub(super) const DUP_THRESH: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub(super) struct Scoreboard {
    /// `[left, right)` ranges, ascending, disjoint and not adjacent; `len` of them in use.
    ranges: [(TcpSeqNumber, TcpSeqNumber); SCOREBOARD_RANGES],
    len: usize,
}

impl Scoreboard {
    pub(super) const fn new() -> Self {
        Scoreboard {
            ranges: [(TcpSeqNumber(0), TcpSeqNumber(0)); SCOREBOARD_RANGES],
            len: 0,
        }
    }

    pub(super) fn clear(&mut self) {
        self.len = 0;
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn iter(&self) -> impl Iterator<Item = (TcpSeqNumber, TcpSeqNumber)> + '_ {
        self.ranges[..self.len].iter().copied()
    }

    /// Records that `[left, right)` was SACKed; returns how many of its octets were not
    /// SACKed before (RFC 6675's "previously un-SACKed data", what makes a duplicate ACK).
    pub(super) fn add(&mut self, left: TcpSeqNumber, right: TcpSeqNumber) -> usize {
        if left >= right {
            return 0;
        }
        let mut new_octets = right - left;
        let (mut l, mut r) = (left, right);
        let mut merged = [(TcpSeqNumber(0), TcpSeqNumber(0)); SCOREBOARD_RANGES + 1];
        let mut n = 0;
        let mut placed = false;
        for (a, b) in self.iter() {
            if b < l {
                merged[n] = (a, b);
                n += 1;
            } else if a > r {
                if !placed {
                    merged[n] = (l, r);
                    n += 1;
                    placed = true;
                }
                merged[n] = (a, b);
                n += 1;
            } else {
                // Overlapping or adjacent: the overlap was SACKed before.
                let (ol, or) = (a.max(left), if b < right { b } else { right });
                if or > ol {
                    new_octets -= or - ol;
                }
                l = if a < l { a } else { l };
                r = r.max(b);
            }
        }
        if !placed {
            merged[n] = (l, r);
            n += 1;
        }
        // Full: forget the highest range (the one the sender needs last).
        self.len = n.min(SCOREBOARD_RANGES);
        self.ranges[..self.len].copy_from_slice(&merged[..self.len]);
        new_octets
    }

    /// Forgets what lies below `una` (the cumulative ACK moved).
    pub(super) fn advance(&mut self, una: TcpSeqNumber) {
        let mut n = 0;
        for i in 0..self.len {
            let (a, b) = self.ranges[i];
            if b > una {
                self.ranges[n] = (a.max(una), b);
                n += 1;
            }
        }
        self.len = n;
    }

    /// Octets SACKed in all.
    pub(super) fn sacked(&self) -> usize {
        self.iter().map(|(a, b)| b - a).sum()
    }

    /// Octets SACKed below `limit`.
    pub(super) fn sacked_below(&self, limit: TcpSeqNumber) -> usize {
        self.iter()
            .filter(|&(a, _)| a < limit)
            .map(|(a, b)| if b > limit { limit - a } else { b - a })
            .sum()
    }

    /// The end of the SACKed range that holds `seq`, if one does.
    pub(super) fn covering(&self, seq: TcpSeqNumber) -> Option<TcpSeqNumber> {
        self.iter()
            .find(|&(a, b)| a <= seq && seq < b)
            .map(|(_, b)| b)
    }

    /// The end of the highest SACKed range (one past RFC 6675's HighSACK).
    pub(super) fn high(&self) -> Option<TcpSeqNumber> {
        self.len.checked_sub(1).map(|i| self.ranges[i].1)
    }

    /// RFC 6675 IsLost(seq): `dup_thresh` (DupThresh) discontiguous ranges, or more than
    /// (DupThresh - 1) * MSS octets, were SACKed above `seq`.
    pub(super) fn is_lost(&self, seq: TcpSeqNumber, mss: usize, dup_thresh: usize) -> bool {
        let (mut ranges, mut octets) = (0, 0);
        for (a, b) in self.iter() {
            if b > seq {
                ranges += 1;
                octets += b - a.max(seq + 1);
            }
        }
        ranges >= dup_thresh || octets > dup_thresh.saturating_sub(1) * mss
    }

    /// The holes, `[start, end)`, from `from` up to the highest SACKed octet, ascending.
    pub(super) fn holes(
        &self,
        from: TcpSeqNumber,
    ) -> impl Iterator<Item = (TcpSeqNumber, TcpSeqNumber)> + '_ {
        let mut cursor = from;
        self.iter().filter_map(move |(a, b)| {
            let hole = (cursor < a).then_some((cursor, a));
            cursor = cursor.max(b);
            hole
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn s(n: i32) -> TcpSeqNumber {
        TcpSeqNumber(n)
    }

    fn ranges(b: &Scoreboard) -> Vec<(i32, i32)> {
        b.iter().map(|(a, b)| (a.0, b.0)).collect()
    }

    #[test]
    fn test_add_merges_and_counts_new_octets() {
        let mut b = Scoreboard::new();
        assert_eq!(b.add(s(200), s(300)), 100);
        assert_eq!(b.add(s(500), s(600)), 100);
        // Already known: nothing new (a repeated block is no duplicate ACK's worth).
        assert_eq!(b.add(s(200), s(300)), 0);
        // Grows one range and bridges to the next.
        assert_eq!(b.add(s(250), s(500)), 200);
        assert_eq!(ranges(&b), [(200, 600)]);
        assert_eq!(b.add(s(100), s(150)), 50);
        assert_eq!(ranges(&b), [(100, 150), (200, 600)]);
        assert_eq!(b.sacked(), 450);
        assert_eq!(b.sacked_below(s(300)), 150);
        assert_eq!(b.covering(s(599)), Some(s(600)));
        assert_eq!(b.covering(s(600)), None);
        assert_eq!(b.covering(s(170)), None);
        assert_eq!(b.high(), Some(s(600)));
        // Empty or inverted blocks are ignored.
        assert_eq!(b.add(s(700), s(700)), 0);
        assert_eq!(b.add(s(800), s(700)), 0);
        assert_eq!(ranges(&b), [(100, 150), (200, 600)]);
    }

    #[test]
    fn test_full_forgets_highest() {
        let mut b = Scoreboard::new();
        for i in 0..SCOREBOARD_RANGES as i32 + 2 {
            b.add(s(i * 100), s(i * 100 + 50));
        }
        assert_eq!(b.len, SCOREBOARD_RANGES);
        assert_eq!(b.high(), Some(s((SCOREBOARD_RANGES as i32 - 1) * 100 + 50)));
        // A lower block still gets in, pushing out the highest.
        b.add(s(-100), s(-50));
        assert_eq!(b.iter().next(), Some((s(-100), s(-50))));
        assert_eq!(b.len, SCOREBOARD_RANGES);
    }

    #[test]
    fn test_advance_and_holes() {
        let mut b = Scoreboard::new();
        b.add(s(200), s(300));
        b.add(s(400), s(500));
        assert_eq!(
            b.holes(s(100)).collect::<Vec<_>>(),
            [(s(100), s(200)), (s(300), s(400))]
        );
        assert_eq!(b.holes(s(250)).collect::<Vec<_>>(), [(s(300), s(400))]);
        b.advance(s(250));
        assert_eq!(ranges(&b), [(250, 300), (400, 500)]);
        b.advance(s(450));
        assert_eq!(ranges(&b), [(450, 500)]);
        b.advance(s(500));
        assert!(b.is_empty());
        assert_eq!(b.high(), None);
    }

    #[test]
    fn test_is_lost() {
        let mss = 100;
        let mut b = Scoreboard::new();
        b.add(s(200), s(400));
        // 200 octets above: not more than (3 - 1) * MSS.
        assert!(!b.is_lost(s(100), mss, DUP_THRESH));
        b.add(s(400), s(401));
        assert!(b.is_lost(s(100), mss, DUP_THRESH));
        assert!(!b.is_lost(s(400), mss, DUP_THRESH));
        // Three discontiguous ranges, however small.
        let mut b = Scoreboard::new();
        b.add(s(200), s(201));
        b.add(s(300), s(301));
        b.add(s(400), s(401));
        assert!(b.is_lost(s(100), mss, DUP_THRESH));
        assert!(!b.is_lost(s(250), mss, DUP_THRESH));
        // A threshold raised by reordering (5 segments) needs 5 ranges or over 400 octets.
        assert!(!b.is_lost(s(100), mss, 5));
        b.add(s(500), s(901));
        assert!(b.is_lost(s(100), mss, 5));
    }
}
