//! Where time comes from.
//!
//! Normal runs use the monotonic clock; deterministic runs use a virtual clock that only moves when the
//! loop jumps it to the next deadline, so the same seed replays the same packets at the same times.

use smoltcp::time::{Duration, Instant};
use std::time::{SystemTime, UNIX_EPOCH};

/// The wall-clock moment a virtual clock starts at: 2024-01-01T00:00:00Z. Fixed so that deterministic
/// runs write identical pcap timestamps and identical daytime/time answers.
pub(crate) const VIRTUAL_EPOCH_UNIX_SECS: u64 = 1_704_067_200;

#[derive(Debug, Clone)]
pub(crate) enum Clock {
    Real {
        start: std::time::Instant,
        wall_start: SystemTime,
    },
    Virtual {
        now: Instant,
    },
}

impl Clock {
    pub(crate) fn real() -> Clock {
        Clock::Real {
            start: std::time::Instant::now(),
            wall_start: SystemTime::now(),
        }
    }

    pub(crate) fn virtual_at_zero() -> Clock {
        Clock::Virtual { now: Instant::ZERO }
    }

    pub(crate) fn is_virtual(&self) -> bool {
        matches!(self, Clock::Virtual { .. })
    }

    /// Monotonic time since the clock started.
    pub(crate) fn now(&self) -> Instant {
        match self {
            Clock::Real { start, .. } => {
                Instant::from_micros(start.elapsed().as_micros().min(i64::MAX as u128) as i64)
            }
            Clock::Virtual { now } => *now,
        }
    }

    /// Wall-clock time matching `now()`.
    pub(crate) fn wall(&self) -> SystemTime {
        match self {
            Clock::Real { wall_start, start } => *wall_start + start.elapsed(),
            Clock::Virtual { now } => {
                UNIX_EPOCH
                    + std::time::Duration::from_secs(VIRTUAL_EPOCH_UNIX_SECS)
                    + std::time::Duration::from_micros(now.total_micros().max(0) as u64)
            }
        }
    }

    /// Wall-clock time of a given monotonic instant of this clock.
    pub(crate) fn wall_at(&self, t: Instant) -> SystemTime {
        let base = match self {
            Clock::Real { wall_start, .. } => *wall_start,
            Clock::Virtual { .. } => {
                UNIX_EPOCH + std::time::Duration::from_secs(VIRTUAL_EPOCH_UNIX_SECS)
            }
        };
        base + std::time::Duration::from_micros(t.total_micros().max(0) as u64)
    }

    /// Moves a virtual clock forward to `t` (never backwards). A real clock ignores it.
    /// The one rule for moving virtual time when a turn did nothing: jump to the next deadline; a
    /// deadline already due that moved nothing steps a millisecond, so that time cannot stall. With
    /// no deadline, a run bounded by `limit` (the harness, whose test may act at any moment) steps a
    /// millisecond too, and an unbounded one stays: only outside events can bring work. Never past
    /// `limit`. Returns whether time moved.
    pub(crate) fn advance_idle(
        &mut self,
        deadline: Option<Instant>,
        limit: Option<Instant>,
    ) -> bool {
        let now = self.now();
        let step = match deadline {
            Some(t) if t > now => Some(t),
            Some(_) => Some(now + Duration::from_millis(1)),
            None => limit.map(|_| now + Duration::from_millis(1)),
        };
        let Some(mut t) = step else {
            return false;
        };
        if let Some(l) = limit {
            t = t.min(l);
        }
        if t <= now {
            return false;
        }
        self.advance_to(t);
        true
    }

    pub(crate) fn advance_to(&mut self, t: Instant) {
        if let Clock::Virtual { now } = self {
            if t > *now {
                *now = t;
            }
        }
    }

    /// Leaves virtual time for real time, going on from the current instant (the demo does this after
    /// a deterministic tour, to keep serving the host sockets in real time).
    pub(crate) fn make_real(&mut self) {
        if let Clock::Virtual { now } = *self {
            let elapsed = std::time::Duration::from_micros(now.total_micros().max(0) as u64);
            let start = std::time::Instant::now()
                .checked_sub(elapsed)
                .unwrap_or_else(std::time::Instant::now);
            *self = Clock::Real {
                start,
                wall_start: SystemTime::now() - elapsed,
            };
        }
    }

    #[cfg(test)]
    fn advance_by(&mut self, d: Duration) {
        if let Clock::Virtual { now } = self {
            *now += d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_idle_advance_jumps_to_the_deadline_steps_when_due_and_respects_the_limit() {
        let mut c = Clock::virtual_at_zero();
        let ms = Instant::from_millis;
        assert!(c.advance_idle(Some(ms(40)), None));
        assert_eq!(c.now(), ms(40));
        assert!(
            c.advance_idle(Some(ms(40)), None),
            "due but idle: a millisecond"
        );
        assert_eq!(c.now(), ms(41));
        assert!(c.advance_idle(Some(ms(500)), Some(ms(100))));
        assert_eq!(c.now(), ms(100), "never past the limit");
        assert!(!c.advance_idle(None, None), "nothing scheduled: wait");
        assert!(c.advance_idle(None, Some(ms(300))));
        assert_eq!(c.now(), ms(101), "a bounded run steps");
        assert!(c.advance_idle(Some(ms(400)), Some(ms(300))));
        assert_eq!(c.now(), ms(300));
        assert!(
            !c.advance_idle(Some(ms(400)), Some(ms(300))),
            "at the limit"
        );
    }

    #[test]
    fn virtual_clock_only_moves_forward_when_told() {
        let mut c = Clock::virtual_at_zero();
        assert_eq!(c.now(), Instant::ZERO);
        c.advance_to(Instant::from_millis(250));
        c.advance_to(Instant::from_millis(100));
        assert_eq!(c.now(), Instant::from_millis(250));
        c.advance_by(Duration::from_millis(50));
        assert_eq!(c.now(), Instant::from_millis(300));
        let wall = c.wall().duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(
            wall.as_micros(),
            VIRTUAL_EPOCH_UNIX_SECS as u128 * 1_000_000 + 300_000
        );
    }

    #[test]
    fn test_make_real_goes_on_from_virtual_now() {
        let mut c = Clock::virtual_at_zero();
        c.advance_to(Instant::from_secs(5));
        c.make_real();
        assert!(!c.is_virtual());
        let t = c.now();
        assert!(
            t >= Instant::from_secs(5) && t < Instant::from_secs(6),
            "{t}"
        );
    }

    #[test]
    fn real_clock_is_monotonic_and_ignores_advance() {
        let mut c = Clock::real();
        let a = c.now();
        c.advance_to(Instant::from_secs(1_000_000));
        assert!(c.now() >= a);
        assert!(c.now() < Instant::from_secs(1_000));
    }
}
