//! `tapstack relay`: a userspace netem. It bridges two TAP devices and applies the seeded
//! [`FaultInjector`] (loss, duplication, reordering, corruption, latency) to each direction on its own,
//! on one mio loop.
//!
//! Each TAP device is meant to be a port of a Linux bridge holding the interface it relays (a veth end,
//! the kernel side of another TAP). The devices are opened without offload features, so the kernel cuts
//! any large (GSO/TSO) segment into wire-sized frames in software before the relay reads it: every fault
//! applies to a frame a real Ethernet would carry, and the relay needs no segmentation code of its own.
//! Frames larger than the MTU are dropped and counted as oversize all the same.
//!
//! Held frames live in a fixed pool per direction ([`queue::DelayLine`]); a frame that finds the pool
//! full is dropped and counted as queue overflow, like a router's full buffer. Deadlines are kept with a
//! timerfd, so a frame leaves within microseconds of its due time rather than epoll's milliseconds
//! (about 0.1 ms late on a quiet relay). A write to a TAP device runs the receiving side's kernel
//! network processing inside the system call (bridge, veth, the peer's TCP), tens of microseconds each:
//! the frames of a burst leave one write apart, like frames serialized onto a link. The exit line
//! tells how late frames left, on average and at most.

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;
use smoltcp::time::Instant;
use std::io;
use std::os::fd::AsRawFd;

use crate::device::fault::SplitMix64;
use crate::device::tap::{TapDevice, TimerFd, ETHERNET_HEADER};
use crate::device::{Fate, FaultConfig, FaultInjector, FrameIo, TxOutcome};
use crate::reactor::RunError;

mod queue;

use queue::DelayLine;

/// Frames read from one device per loop turn before the other device and the due frames get a turn.
const READ_BUDGET: usize = 64;
/// Due frames written per direction per loop turn.
const WRITE_BUDGET: usize = 64;
/// Room for an 802.1Q tag beyond the MTU.
const VLAN_TAG: usize = 4;

/// What the relay is told.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RelayConfig {
    /// The first TAP device.
    pub(crate) a: String,
    /// The second TAP device.
    pub(crate) b: String,
    /// Applied to each direction, with the seed replaced by one derived per direction.
    pub(crate) faults: FaultConfig,
    /// Frames held at most per direction.
    pub(crate) queue_frames: usize,
}

impl RelayConfig {
    /// The faults of the a->b and b->a directions: the same chances, each with its own seed drawn from
    /// the configured one, so the two directions do not lose the same frame numbers.
    pub(crate) fn directions(&self) -> [FaultConfig; 2] {
        let mut seeds = SplitMix64::new(self.faults.seed);
        let ab = seeds.next_u64();
        let ba = seeds.next_u64();
        [
            FaultConfig {
                seed: ab,
                ..self.faults
            },
            FaultConfig {
                seed: ba,
                ..self.faults
            },
        ]
    }
}

/// Counters of one direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PathStats {
    /// Frames read from the source device.
    pub(crate) frames_in: u64,
    /// Frames written to the destination device (duplicates included).
    pub(crate) frames_out: u64,
    /// Frames the injector held back at all (latency or reordering).
    pub(crate) delayed: u64,
    /// Frames dropped because every buffer of the direction was taken.
    pub(crate) overflow: u64,
    /// Frames larger than the MTU allows, dropped.
    pub(crate) oversize: u64,
    /// Frames the destination device refused (its queue full, link down).
    pub(crate) write_failed: u64,
    /// The largest frame read, Ethernet header included.
    pub(crate) largest: usize,
    /// How late frames left, summed (microseconds after their due time): the relay's precision.
    pub(crate) late_sum_us: u64,
    /// The latest a frame left after its due time, microseconds.
    pub(crate) late_max_us: u64,
}

/// One direction: where frames come from and go to, what happens to them, where they wait.
struct Path {
    from: usize,
    to: usize,
    faults: FaultInjector,
    line: DelayLine,
    /// Frames longer than this are oversize.
    limit: usize,
    stats: PathStats,
}

impl Path {
    fn line(&self, names: &[String; 2]) -> String {
        let s = &self.stats;
        let f = &self.faults;
        format!(
            "relay {} -> {}: {} frames in, {} out, {} dropped, {} duplicated, {} reordered, {} corrupted, \
             {} delayed, {} queue overflow, {} oversize, {} refused by {}, largest {} bytes, \
             sent late by {} us on average, {} us at most",
            names[self.from],
            names[self.to],
            s.frames_in,
            s.frames_out,
            f.dropped,
            f.duplicated,
            f.reordered,
            f.corrupted,
            s.delayed,
            s.overflow,
            s.oversize,
            s.write_failed,
            names[self.to],
            s.largest,
            s.late_sum_us / (s.frames_out + s.write_failed).max(1),
            s.late_max_us
        )
    }
}

const TAP_A: Token = Token(0);
const TAP_B: Token = Token(1);
const TIMER: Token = Token(2);
const SIGNALS: Token = Token(3);

/// The relay: two devices, two directions, one timer.
struct Relay {
    names: [String; 2],
    taps: [TapDevice; 2],
    paths: [Path; 2],
    /// Where a frame goes that finds no free buffer: read, counted, forgotten.
    scratch: Box<[u8]>,
    start: std::time::Instant,
}

impl Relay {
    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Reads up to [`READ_BUDGET`] frames from device `i`; true when it may hold more.
    fn ingest(&mut self, i: usize) -> io::Result<bool> {
        let path = &mut self.paths[i];
        let tap = &mut self.taps[i];
        for _ in 0..READ_BUDGET {
            let Some(slot) = path.line.take() else {
                match tap.recv(&mut self.scratch)? {
                    None => return Ok(false),
                    Some(_) => {
                        path.stats.frames_in += 1;
                        path.stats.overflow += 1;
                        continue;
                    }
                }
            };
            let n = match tap.recv(path.line.slot_mut(slot))? {
                Some(n) if n > 0 => n,
                Some(_) => {
                    path.line.release(slot);
                    continue;
                }
                None => {
                    path.line.release(slot);
                    return Ok(false);
                }
            };
            let now = self.start.elapsed().as_micros() as u64;
            path.stats.frames_in += 1;
            path.stats.largest = path.stats.largest.max(n);
            if n > path.limit {
                path.stats.oversize += 1;
                path.line.release(slot);
                continue;
            }
            match path.faults.fate(Instant::from_micros(now as i64), n) {
                Fate::Drop => path.line.release(slot),
                Fate::Deliver {
                    at,
                    corrupt,
                    duplicate,
                } => {
                    if let Some((idx, mask)) = corrupt {
                        path.line.slot_mut(slot)[idx % n] ^= mask;
                    }
                    let due = at.total_micros().max(0) as u64;
                    if due > now {
                        path.stats.delayed += 1;
                    }
                    path.line.hold(slot, n, due);
                    if duplicate {
                        match path.line.copy(slot, n) {
                            Some(copy) => path.line.hold(copy, n, due),
                            None => path.stats.overflow += 1,
                        }
                    }
                }
            }
        }
        Ok(true)
    }

    /// Writes the due frames of direction `i` (at most [`WRITE_BUDGET`]).
    fn flush(&mut self, i: usize) -> io::Result<()> {
        let now = self.now_us();
        let path = &mut self.paths[i];
        let tap = &mut self.taps[path.to];
        for _ in 0..WRITE_BUDGET {
            let Some((slot, len, due)) = path.line.pop_due(now) else {
                break;
            };
            let late = now - due;
            path.stats.late_sum_us += late;
            path.stats.late_max_us = path.stats.late_max_us.max(late);
            let sent = tap.send(path.line.frame(slot, len));
            path.line.release(slot);
            match sent? {
                TxOutcome::Sent => path.stats.frames_out += 1,
                TxOutcome::Dropped(_) => path.stats.write_failed += 1,
            }
        }
        Ok(())
    }

    fn next_due(&self) -> Option<u64> {
        self.paths.iter().filter_map(|p| p.line.next_due()).min()
    }

    fn report(&self) {
        for p in &self.paths {
            log::info!(target: "tapstack", "{}", p.line(&self.names));
        }
        crate::logbuf::flush();
    }
}

/// Relays until SIGINT or SIGTERM, then logs one stats line per direction (SIGUSR1: log them now).
pub(crate) fn run(cfg: &RelayConfig) -> Result<(), RunError> {
    let taps = [
        TapDevice::open_with(&cfg.a, false)?,
        TapDevice::open_with(&cfg.b, false)?,
    ];
    let mtu = taps[0].mtu().max(taps[1].mtu());
    // One byte more than any frame we pass, so that a larger one shows as larger, not truncated.
    let slot_len = mtu + ETHERNET_HEADER + VLAN_TAG + 1;
    let [ab, ba] = cfg.directions();
    let path = |from: usize, to: usize, faults: FaultConfig| Path {
        from,
        to,
        faults: FaultInjector::new(faults),
        line: DelayLine::new(cfg.queue_frames, slot_len),
        limit: taps[to].mtu() + ETHERNET_HEADER + VLAN_TAG,
        stats: PathStats::default(),
    };
    let paths = [path(0, 1, ab), path(1, 0, ba)];
    let mut relay = Relay {
        names: [cfg.a.clone(), cfg.b.clone()],
        taps,
        paths,
        scratch: vec![0u8; slot_len].into_boxed_slice(),
        start: std::time::Instant::now(),
    };
    let io_err = |what: &'static str| move |e| RunError::Io(what, e);
    let mut poll = Poll::new().map_err(io_err("cannot create the poll"))?;
    let timer = TimerFd::new().map_err(io_err("cannot create a timerfd"))?;
    for (fd, token) in [
        (relay.taps[0].as_raw_fd(), TAP_A),
        (relay.taps[1].as_raw_fd(), TAP_B),
        (timer.as_raw_fd(), TIMER),
    ] {
        poll.registry()
            .register(&mut SourceFd(&fd), token, Interest::READABLE)
            .map_err(io_err("cannot watch a device"))?;
    }
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGUSR1])
        .map_err(io_err("cannot install signal handlers"))?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)
        .map_err(io_err("cannot watch signals"))?;
    let f = cfg.faults;
    log::info!(
        target: "tapstack",
        "ready: relaying {} <-> {} (MTU {mtu}): latency {} ms, drop {}, duplicate {}, reorder {}, corrupt {}, seed {}, {} frames held at most each way",
        cfg.a,
        cfg.b,
        f.latency.total_micros() as f64 / 1000.0,
        f.drop,
        f.duplicate,
        f.reorder,
        f.corrupt,
        f.seed,
        cfg.queue_frames
    );
    // The loop logs nothing else until it reports: write the line out now.
    crate::logbuf::flush();
    let mut events = Events::with_capacity(16);
    // Frames may already wait: read before the first readiness edge.
    let mut more = [true, true];
    let mut armed: Option<u64> = None;
    loop {
        let timeout = more.iter().any(|&m| m).then_some(std::time::Duration::ZERO);
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(RunError::Io("poll failed", e));
        }
        let mut stop = false;
        for ev in events.iter() {
            match ev.token() {
                TAP_A => more[0] = true,
                TAP_B => more[1] = true,
                TIMER => {
                    timer.clear();
                    armed = None;
                }
                _ => {
                    for sig in signals.pending() {
                        if sig == SIGUSR1 {
                            relay.report();
                        } else {
                            stop = true;
                        }
                    }
                }
            }
        }
        if stop {
            break;
        }
        for (i, m) in more.iter_mut().enumerate() {
            if *m {
                *m = relay.ingest(i).map_err(RunError::LinkGone)?;
            }
        }
        for i in 0..2 {
            relay.flush(i).map_err(RunError::LinkGone)?;
        }
        if let Some(due) = relay.next_due() {
            if armed != Some(due) {
                let wait = due.saturating_sub(relay.now_us());
                timer
                    .arm(std::time::Duration::from_micros(wait))
                    .map_err(io_err("cannot arm the timerfd"))?;
                armed = Some(due);
            }
        }
    }
    relay.report();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_directions_have_own_seeds_from_the_one_given() {
        let cfg = |seed| RelayConfig {
            a: "a".into(),
            b: "b".into(),
            faults: FaultConfig {
                drop: 0.1,
                seed,
                ..Default::default()
            },
            queue_frames: 8,
        };
        let [ab, ba] = cfg(1).directions();
        assert_ne!(ab.seed, ba.seed);
        assert_eq!(ab.drop, 0.1);
        assert_eq!(ba.drop, 0.1);
        assert_eq!(cfg(1).directions(), [ab, ba], "one seed, one pair");
        assert_ne!(cfg(2).directions()[0].seed, ab.seed);
    }
}
