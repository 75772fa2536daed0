//! How much narration a person can read. Each TCP connection gets several lines (state changes, a close
//! summary); at thousands of connections a second those lines are unreadable, and writing them costs
//! more than serving the connections. So at most `limit` new connections a second are narrated; the
//! others are counted, and one line a second says how many were left out. Packet lines, pcap, events,
//! counters and the status pages are not limited: they are asked for, or they are not text.
//!
//! The limit applies to whole connections (decided when a connection is first seen), so every
//! narrated connection is told from its SYN to its close, never in fragments.

use std::cell::Cell;

/// The length of one counting window, in microseconds of stack time.
const WINDOW_US: i64 = 1_000_000;

/// Connections left out of the narration in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Suppressed {
    pub count: u64,
    /// When the window began (stack time, microseconds).
    pub from_us: i64,
    /// When it was summed up.
    pub to_us: i64,
    pub limit: u32,
}

impl std::fmt::Display for Suppressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = (self.to_us - self.from_us).max(0) as f64 / 1e6;
        write!(
            f,
            "{} more connections in the last {secs:.3}s were not narrated: more than {} new \
             connections a second (--narrate-limit; 0 narrates all). Counters, /netstat.json, \
             --events and --pcap have every one",
            self.count, self.limit
        )
    }
}

/// A fixed one-second window counter. Cells, so that the host side can ask through a shared reference
/// to the tracer.
#[derive(Debug)]
pub(crate) struct NarrationLimit {
    /// New connections narrated per window; 0: no limit.
    limit: u32,
    window_start: Cell<Option<i64>>,
    admitted: Cell<u32>,
    suppressed: Cell<u64>,
    /// A finished window with connections left out, not reported yet.
    pending: Cell<Option<Suppressed>>,
}

impl NarrationLimit {
    pub(crate) fn new(limit: u32) -> NarrationLimit {
        NarrationLimit {
            limit,
            window_start: Cell::new(None),
            admitted: Cell::new(0),
            suppressed: Cell::new(0),
            pending: Cell::new(None),
        }
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }

    /// Whether a connection first seen at `now_us` is narrated.
    pub(crate) fn admit(&self, now_us: i64) -> bool {
        if self.limit == 0 {
            return true;
        }
        self.roll(now_us);
        if self.window_start.get().is_none() {
            self.window_start.set(Some(now_us));
        }
        if self.admitted.get() < self.limit {
            self.admitted.set(self.admitted.get() + 1);
            true
        } else {
            self.suppressed.set(self.suppressed.get() + 1);
            false
        }
    }

    /// The summary of a finished window with connections left out (`force`: the current window too,
    /// at shutdown). Each left-out connection is reported once.
    pub(crate) fn take_summary(&self, now_us: i64, force: bool) -> Option<Suppressed> {
        self.roll(now_us);
        if force {
            self.close_window(now_us);
        }
        self.pending.take()
    }

    /// When a summary becomes due (stack time, microseconds), if connections are being left out.
    pub(crate) fn due_us(&self) -> Option<i64> {
        if self.pending.get().is_some() {
            return Some(i64::MIN);
        }
        match self.window_start.get() {
            Some(start) if self.suppressed.get() > 0 => Some(start + WINDOW_US),
            _ => None,
        }
    }

    /// Ends the window if it is over (or the clock went back).
    fn roll(&self, now_us: i64) {
        if let Some(start) = self.window_start.get() {
            if now_us >= start + WINDOW_US || now_us < start {
                self.close_window(now_us);
            }
        }
    }

    fn close_window(&self, now_us: i64) {
        let Some(start) = self.window_start.take() else {
            return;
        };
        let n = self.suppressed.replace(0);
        self.admitted.set(0);
        if n > 0 {
            // Two windows can end before anyone asks (no traffic in between): add them up.
            let p = match self.pending.get() {
                Some(p) => Suppressed {
                    count: p.count + n,
                    to_us: now_us,
                    ..p
                },
                None => Suppressed {
                    count: n,
                    from_us: start,
                    to_us: now_us,
                    limit: self.limit,
                },
            };
            self.pending.set(Some(p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limit_admits_everything_and_reports_nothing() {
        let n = NarrationLimit::new(0);
        assert!((0..10_000).all(|i| n.admit(i)));
        assert_eq!(n.take_summary(5_000_000, true), None);
        assert_eq!(n.due_us(), None);
    }

    #[test]
    fn the_first_n_of_each_second_are_narrated_and_the_rest_summed_up_once() {
        let n = NarrationLimit::new(3);
        let got: Vec<bool> = (0..5).map(|i| n.admit(1_000 + i)).collect();
        assert_eq!(got, [true, true, true, false, false]);
        assert_eq!(n.due_us(), Some(1_001_000));
        assert_eq!(
            n.take_summary(500_000, false),
            None,
            "the window is not over"
        );
        let s = n.take_summary(1_001_000, false).unwrap();
        assert_eq!(
            (s.count, s.from_us, s.to_us, s.limit),
            (2, 1_000, 1_001_000, 3)
        );
        assert_eq!(n.take_summary(1_002_000, false), None, "reported once");
        // A new second: three more are narrated.
        assert!(n.admit(1_100_000) && n.admit(1_100_001) && n.admit(1_100_002));
        assert!(!n.admit(1_100_003));
        let s = n.take_summary(1_200_000, true).unwrap();
        assert_eq!(s.count, 1);
        assert!(s
            .to_string()
            .starts_with("1 more connections in the last 0.100s"));
    }

    #[test]
    fn a_quiet_window_reports_nothing() {
        let n = NarrationLimit::new(2);
        assert!(n.admit(0) && n.admit(1));
        assert_eq!(n.due_us(), None);
        assert_eq!(n.take_summary(3_000_000, true), None);
    }

    #[test]
    fn a_window_that_ends_at_the_next_connection_is_reported_before_it() {
        let n = NarrationLimit::new(1);
        assert!(n.admit(0));
        assert!(!n.admit(10));
        // The next connection comes 5 s later: it opens a new window and is narrated; the old
        // window's count waits to be reported.
        assert!(n.admit(5_000_000));
        assert_eq!(n.due_us(), Some(i64::MIN));
        assert_eq!(n.take_summary(5_000_000, false).unwrap().count, 1);
    }
}
