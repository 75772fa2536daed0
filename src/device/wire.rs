//! An in-memory, two-ended Ethernet cable: what one end sends, the other end receives.
//!
//! Both ends live in the same process and the same loop, so two smoltcp interfaces can talk with no
//! root, no TAP and no system calls. Frame buffers are recycled, so a warm wire does not allocate.
//!
//! A [`WireControl`] is the test author's hand on the cable: cut it ([`WireControl::partition`]),
//! mend it, hold frames back and let them go in order, or put a frame on it from outside. A cut cable
//! does not tell the sender (a NIC cannot see a break beyond the switch): the wire keeps what it lost
//! in a log that whoever watches the link (the harness) reports as drops.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

use super::{FrameIo, TxOutcome};

/// Standard Ethernet: 1500 bytes of payload plus the 14-byte header.
pub(crate) const WIRE_MAX_FRAME: usize = 1514;

/// Frames in flight one way before the wire drops, like a NIC ring: bounds memory against a sender
/// that never stops.
pub(crate) const WIRE_QUEUE_FRAMES: usize = 4096;

/// Frames lost on a cut cable that the log keeps for the watcher; older ones are only counted.
pub(crate) const WIRE_LOST_LOG: usize = 4096;

/// The drop reason of a frame lost while the wire is partitioned.
pub const PARTITIONED: &str = "link: partitioned";

/// One end of the cable. [`wire`] returns end `A` first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    A,
    B,
}

impl End {
    fn index(self) -> usize {
        match self {
            End::A => 0,
            End::B => 1,
        }
    }

    fn other(self) -> End {
        match self {
            End::A => End::B,
            End::B => End::A,
        }
    }
}

#[derive(Default)]
struct Shared {
    /// `queues[i]` holds frames travelling towards end `i`.
    queues: [VecDeque<Vec<u8>>; 2],
    free: Vec<Vec<u8>>,
    partitioned: bool,
    held: bool,
    /// Frames lost to a partition, with the end they were heading for, oldest first.
    lost: VecDeque<(End, Vec<u8>)>,
    /// Every frame lost to a partition, by the end it was heading for (the log may have forgotten some).
    lost_total: [u64; 2],
}

impl Shared {
    /// Queues `frame` towards `to`, or loses it if the cable is cut.
    fn put(&mut self, to: End, frame: &[u8]) -> TxOutcome {
        if self.partitioned {
            let buf = self.buf_from(frame);
            self.lose(to, buf);
            return TxOutcome::Sent;
        }
        if self.queues[to.index()].len() >= WIRE_QUEUE_FRAMES {
            return TxOutcome::Dropped("tx: wire queue full");
        }
        let buf = self.buf_from(frame);
        self.queues[to.index()].push_back(buf);
        TxOutcome::Sent
    }

    fn buf_from(&mut self, frame: &[u8]) -> Vec<u8> {
        let mut buf = self.free.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        buf
    }

    fn lose(&mut self, to: End, buf: Vec<u8>) {
        self.lost_total[to.index()] += 1;
        if self.lost.len() >= WIRE_LOST_LOG {
            if let Some((_, old)) = self.lost.pop_front() {
                self.free.push(old);
            }
        }
        self.lost.push_back((to, buf));
    }
}

/// One end of a [`wire`].
pub struct WireEnd {
    shared: Rc<RefCell<Shared>>,
    side: End,
    max_frame: usize,
}

/// A hand on a [`wire`] from outside either end: partition, hold, inject. Cheap to clone; all clones
/// and both ends share one cable.
#[derive(Clone)]
pub struct WireControl {
    shared: Rc<RefCell<Shared>>,
}

/// A fresh cable with its two ends.
pub fn wire() -> (WireEnd, WireEnd) {
    wire_with_max_frame(WIRE_MAX_FRAME)
}

pub(crate) fn wire_with_max_frame(max_frame: usize) -> (WireEnd, WireEnd) {
    let shared = Rc::new(RefCell::new(Shared::default()));
    (
        WireEnd {
            shared: shared.clone(),
            side: End::A,
            max_frame,
        },
        WireEnd {
            shared,
            side: End::B,
            max_frame,
        },
    )
}

impl WireEnd {
    /// Frames waiting for this end (held ones included).
    pub fn pending(&self) -> usize {
        self.shared.borrow().queues[self.side.index()].len()
    }

    /// Which end this is.
    pub fn end(&self) -> End {
        self.side
    }

    /// A control for the cable this end belongs to.
    pub fn control(&self) -> WireControl {
        WireControl {
            shared: self.shared.clone(),
        }
    }
}

impl WireControl {
    /// Cuts the cable: from now on every frame, either way, is lost (and logged), and so are the frames
    /// already on their way (held ones included).
    pub fn partition(&self) {
        let mut sh = self.shared.borrow_mut();
        sh.partitioned = true;
        for to in [End::A, End::B] {
            while let Some(buf) = sh.queues[to.index()].pop_front() {
                sh.lose(to, buf);
            }
        }
    }

    /// Mends a cut cable: frames cross again (those lost stay lost).
    pub fn repair(&self) {
        self.shared.borrow_mut().partitioned = false;
    }

    pub fn is_partitioned(&self) -> bool {
        self.shared.borrow().partitioned
    }

    /// Holds frames on the cable: they queue up (to [`WIRE_QUEUE_FRAMES`] each way) and neither end
    /// receives them until [`WireControl::release`].
    pub fn hold(&self) {
        self.shared.borrow_mut().held = true;
    }

    /// Lets held frames go: each end receives them in the order they were sent.
    pub fn release(&self) {
        self.shared.borrow_mut().held = false;
    }

    pub fn is_held(&self) -> bool {
        self.shared.borrow().held
    }

    /// Puts `frame` on the cable towards end `to`, as if the other end had sent it. An injected frame
    /// has no sending port to be traced at, so one the cable loses is not logged but returned as
    /// dropped (and counted in [`WireControl::lost_towards`]): the injector reports it.
    pub fn inject(&self, to: End, frame: &[u8]) -> TxOutcome {
        let mut sh = self.shared.borrow_mut();
        if sh.partitioned {
            sh.lost_total[to.index()] += 1;
            return TxOutcome::Dropped(PARTITIONED);
        }
        sh.put(to, frame)
    }

    /// Hands over the frames lost to a partition since the last call, oldest first, with the end each
    /// was heading for.
    pub fn drain_lost(&self, mut f: impl FnMut(End, &[u8])) {
        loop {
            // Not borrowed while `f` runs: it may well touch the wire.
            let Some((to, buf)) = self.shared.borrow_mut().lost.pop_front() else {
                return;
            };
            f(to, &buf);
            self.shared.borrow_mut().free.push(buf);
        }
    }

    /// How many frames heading for end `to` a partition has cost so far.
    pub fn lost_towards(&self, to: End) -> u64 {
        self.shared.borrow().lost_total[to.index()]
    }
}

impl FrameIo for WireEnd {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut sh = self.shared.borrow_mut();
        if sh.held {
            return Ok(None);
        }
        let Some(frame) = sh.queues[self.side.index()].pop_front() else {
            return Ok(None);
        };
        let n = frame.len().min(buf.len());
        buf[..n].copy_from_slice(&frame[..n]);
        sh.free.push(frame);
        Ok(Some(n))
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<TxOutcome> {
        Ok(self.shared.borrow_mut().put(self.side.other(), frame))
    }

    fn max_frame(&self) -> usize {
        self.max_frame
    }

    fn has_pending(&self) -> bool {
        // Held frames are not receivable: saying so would keep the loop spinning on them.
        !self.shared.borrow().held && self.pending() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_frames_cross_in_order_both_ways() {
        let (mut a, mut b) = wire();
        let mut buf = [0u8; WIRE_MAX_FRAME];
        assert_eq!(a.send(b"one").unwrap(), TxOutcome::Sent);
        assert_eq!(a.send(b"two").unwrap(), TxOutcome::Sent);
        assert_eq!(b.send(b"back").unwrap(), TxOutcome::Sent);
        assert_eq!(b.recv(&mut buf).unwrap(), Some(3));
        assert_eq!(&buf[..3], b"one");
        assert_eq!(b.recv(&mut buf).unwrap(), Some(3));
        assert_eq!(&buf[..3], b"two");
        assert_eq!(b.recv(&mut buf).unwrap(), None);
        assert_eq!(a.recv(&mut buf).unwrap(), Some(4));
        assert_eq!(&buf[..4], b"back");
    }

    #[test]
    fn test_full_queue_drops_instead_of_growing() {
        let (mut a, b) = wire();
        for _ in 0..WIRE_QUEUE_FRAMES {
            assert_eq!(a.send(&[0u8; 60]).unwrap(), TxOutcome::Sent);
        }
        assert!(matches!(a.send(&[0u8; 60]).unwrap(), TxOutcome::Dropped(_)));
        assert_eq!(b.pending(), WIRE_QUEUE_FRAMES);
    }

    #[test]
    fn test_partition_loses_both_ways_and_in_flight_then_repair() {
        let (mut a, mut b) = wire();
        let ctl = a.control();
        let mut buf = [0u8; WIRE_MAX_FRAME];
        a.send(b"in flight").unwrap();
        ctl.partition();
        // The sender is not told: a NIC cannot see a break beyond the switch.
        assert_eq!(a.send(b"a to b").unwrap(), TxOutcome::Sent);
        assert_eq!(b.send(b"b to a").unwrap(), TxOutcome::Sent);
        assert_eq!(
            ctl.inject(End::A, b"injected"),
            TxOutcome::Dropped(PARTITIONED)
        );
        assert_eq!(b.recv(&mut buf).unwrap(), None);
        assert_eq!(a.recv(&mut buf).unwrap(), None);
        let mut lost = Vec::new();
        ctl.drain_lost(|to, f| lost.push((to, f.to_vec())));
        assert_eq!(
            lost,
            [
                (End::B, b"in flight".to_vec()),
                (End::B, b"a to b".to_vec()),
                (End::A, b"b to a".to_vec()),
            ]
        );
        assert_eq!((ctl.lost_towards(End::A), ctl.lost_towards(End::B)), (2, 2));
        ctl.drain_lost(|_, _| panic!("drained twice"));
        ctl.repair();
        a.send(b"after").unwrap();
        assert_eq!(b.recv(&mut buf).unwrap(), Some(5));
        assert_eq!(&buf[..5], b"after");
    }

    #[test]
    fn test_hold_queues_then_release_delivers_in_order() {
        let (mut a, mut b) = wire();
        let ctl = b.control();
        let mut buf = [0u8; WIRE_MAX_FRAME];
        ctl.hold();
        for f in [&b"1"[..], b"2", b"3"] {
            a.send(f).unwrap();
        }
        ctl.inject(End::B, b"4");
        assert!(!b.has_pending(), "held frames must not look receivable");
        assert_eq!(b.pending(), 4);
        assert_eq!(b.recv(&mut buf).unwrap(), None);
        ctl.release();
        assert!(b.has_pending());
        let mut got = Vec::new();
        while let Some(n) = b.recv(&mut buf).unwrap() {
            got.push(buf[..n].to_vec());
        }
        assert_eq!(got, [b"1", b"2", b"3", b"4"]);
        assert_eq!(ctl.lost_towards(End::B), 0);
    }
}
