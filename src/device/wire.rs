//! An in-memory, two-ended Ethernet cable: what one end sends, the other end receives.
//!
//! Both ends live in the same process and the same loop, so two smoltcp interfaces can talk with no
//! root, no TAP and no system calls. Frame buffers are recycled, so a warm wire does not allocate.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

use super::{FrameIo, TxOutcome};

/// Standard Ethernet: 1500 bytes of payload plus the 14-byte header.
pub const WIRE_MAX_FRAME: usize = 1514;

/// Frames in flight one way before the wire drops, like a NIC ring: bounds memory against a sender
/// that never stops.
pub const WIRE_QUEUE_FRAMES: usize = 4096;

#[derive(Default)]
struct Shared {
    /// `queues[i]` holds frames travelling towards end `i`.
    queues: [VecDeque<Vec<u8>>; 2],
    free: Vec<Vec<u8>>,
}

/// One end of a [`wire`].
pub struct WireEnd {
    shared: Rc<RefCell<Shared>>,
    side: usize,
    max_frame: usize,
}

/// A fresh cable with its two ends.
pub fn wire() -> (WireEnd, WireEnd) {
    wire_with_max_frame(WIRE_MAX_FRAME)
}

pub fn wire_with_max_frame(max_frame: usize) -> (WireEnd, WireEnd) {
    let shared = Rc::new(RefCell::new(Shared::default()));
    (
        WireEnd {
            shared: shared.clone(),
            side: 0,
            max_frame,
        },
        WireEnd {
            shared,
            side: 1,
            max_frame,
        },
    )
}

impl WireEnd {
    /// Frames waiting for this end.
    pub fn pending(&self) -> usize {
        self.shared.borrow().queues[self.side].len()
    }
}

impl FrameIo for WireEnd {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut sh = self.shared.borrow_mut();
        let Some(frame) = sh.queues[self.side].pop_front() else {
            return Ok(None);
        };
        let n = frame.len().min(buf.len());
        buf[..n].copy_from_slice(&frame[..n]);
        sh.free.push(frame);
        Ok(Some(n))
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<TxOutcome> {
        let mut sh = self.shared.borrow_mut();
        let peer = 1 - self.side;
        if sh.queues[peer].len() >= WIRE_QUEUE_FRAMES {
            return Ok(TxOutcome::Dropped("tx: wire queue full"));
        }
        let mut buf = sh.free.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        sh.queues[peer].push_back(buf);
        Ok(TxOutcome::Sent)
    }

    fn max_frame(&self) -> usize {
        self.max_frame
    }

    fn has_pending(&self) -> bool {
        self.pending() > 0
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
}
