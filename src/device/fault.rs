//! Seeded fault injection: drop, duplicate, reorder, delay and corrupt frames.
//!
//! Deterministic by construction: the only randomness is a SplitMix64 stream from the seed, and every
//! decision draws the same number of values whatever is decided, so one seed replays one run.

use smoltcp::time::{Duration, Instant};

/// What can go wrong on the link, as chances from 0 to 1, plus a fixed one-way latency.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultConfig {
    /// Chance (0-1) that a frame is dropped.
    pub drop: f64,
    /// Chance (0-1) that a frame is duplicated.
    pub duplicate: f64,
    /// Chance (0-1) that a frame is held back behind later ones.
    pub reorder: f64,
    /// Chance (0-1) that a frame has a bit flipped.
    pub corrupt: f64,
    /// One-way latency added to every frame.
    pub latency: Duration,
    /// Seed of the fault stream: the same seed, the same faults.
    pub seed: u64,
}

impl FaultConfig {
    /// This config with a one-way latency given as a `std` duration (what test code has at hand).
    pub fn with_latency(mut self, d: std::time::Duration) -> Self {
        self.latency = Duration::from_micros(d.as_micros().min(u64::MAX as u128) as u64);
        self
    }

    /// Whether any fault (or latency) is configured at all.
    pub fn is_active(&self) -> bool {
        self.drop > 0.0
            || self.duplicate > 0.0
            || self.reorder > 0.0
            || self.corrupt > 0.0
            || self.latency > Duration::ZERO
    }
}

/// What happens to one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Drop,
    Deliver {
        /// When it reaches the other side (later than now for latency or reordering).
        at: Instant,
        /// Flip the bits of `mask` in the byte at this index (taken modulo the frame length).
        corrupt: Option<(usize, u8)>,
        /// Deliver a second copy too.
        duplicate: bool,
    },
}

impl Fate {
    pub fn pass(now: Instant) -> Fate {
        Fate::Deliver {
            at: now,
            corrupt: None,
            duplicate: false,
        }
    }
}

/// SplitMix64: tiny, fast, and good enough to decide the fate of frames; not for anything secret.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Reordering holds a frame back by up to this long, so that later frames overtake it.
pub(crate) const REORDER_MAX_DELAY: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct FaultInjector {
    cfg: FaultConfig,
    rng: SplitMix64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub corrupted: u64,
}

impl FaultInjector {
    pub fn new(cfg: FaultConfig) -> Self {
        FaultInjector {
            cfg,
            rng: SplitMix64::new(cfg.seed),
            dropped: 0,
            duplicated: 0,
            reordered: 0,
            corrupted: 0,
        }
    }

    pub fn config(&self) -> &FaultConfig {
        &self.cfg
    }

    pub fn fate(&mut self, now: Instant, frame_len: usize) -> Fate {
        // Draw all values up front: the stream advances the same way whatever is decided.
        let d = self.rng.next_f64();
        let dup = self.rng.next_f64();
        let re = self.rng.next_f64();
        let co = self.rng.next_f64();
        let r = self.rng.next_u64();
        if d < self.cfg.drop {
            self.dropped += 1;
            return Fate::Drop;
        }
        let mut at = now + self.cfg.latency;
        if re < self.cfg.reorder {
            self.reordered += 1;
            let extra = 1 + r % (REORDER_MAX_DELAY.total_micros());
            at += Duration::from_micros(extra);
        }
        let corrupt = if co < self.cfg.corrupt && frame_len > 0 {
            self.corrupted += 1;
            // Never a zero mask: a corruption must change the frame.
            Some(((r >> 16) as usize % frame_len, 1u8 << ((r >> 8) % 8)))
        } else {
            None
        };
        let duplicate = dup < self.cfg.duplicate;
        if duplicate {
            self.duplicated += 1;
        }
        Fate::Deliver {
            at,
            corrupt,
            duplicate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(drop: f64, seed: u64) -> FaultConfig {
        FaultConfig {
            drop,
            seed,
            ..Default::default()
        }
    }

    #[test]
    fn test_same_seed_same_fates() {
        let run = |seed| {
            let mut f = FaultInjector::new(FaultConfig {
                drop: 0.2,
                duplicate: 0.1,
                reorder: 0.1,
                corrupt: 0.1,
                latency: Duration::from_millis(1),
                seed,
            });
            (0..1000)
                .map(|i| f.fate(Instant::from_millis(i), 100))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn test_drop_rate_matches_chance() {
        let mut f = FaultInjector::new(cfg(0.2, 9));
        let drops = (0..100_000)
            .filter(|_| f.fate(Instant::ZERO, 60) == Fate::Drop)
            .count();
        assert!((18_000..22_000).contains(&drops), "{drops}");
    }

    #[test]
    fn test_no_faults_passes_everything_now() {
        let mut f = FaultInjector::new(cfg(0.0, 1));
        for _ in 0..1000 {
            assert_eq!(
                f.fate(Instant::from_millis(5), 60),
                Fate::pass(Instant::from_millis(5))
            );
        }
    }

    #[test]
    fn test_reorder_delays_within_bound() {
        let mut f = FaultInjector::new(FaultConfig {
            reorder: 1.0,
            seed: 5,
            ..Default::default()
        });
        for _ in 0..1000 {
            match f.fate(Instant::ZERO, 60) {
                Fate::Deliver { at, .. } => {
                    assert!(at > Instant::ZERO && at <= Instant::ZERO + REORDER_MAX_DELAY)
                }
                Fate::Drop => panic!("reorder never drops"),
            }
        }
    }

    #[test]
    fn test_corruption_mask_is_never_zero() {
        let mut f = FaultInjector::new(FaultConfig {
            corrupt: 1.0,
            seed: 11,
            ..Default::default()
        });
        for _ in 0..1000 {
            match f.fate(Instant::ZERO, 60) {
                Fate::Deliver {
                    corrupt: Some((idx, mask)),
                    ..
                } => {
                    assert!(idx < 60);
                    assert_ne!(mask, 0);
                }
                other => panic!("expected corruption, got {other:?}"),
            }
        }
    }
}
