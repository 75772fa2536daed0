//! The frames one direction of the relay holds back: a fixed pool of frame buffers, allocated once, and
//! a queue of the held ones sorted by due time (then by arrival, so equal delays keep their order).
//!
//! Nothing here allocates after [`DelayLine::new`]: a frame lives in a pool slot from the read that
//! fills it until the write that sends it, and the heap's capacity is the pool's size.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// One held frame. Field order is the sort order: due time, then arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    due_us: u64,
    seq: u64,
    slot: u32,
    len: u32,
}

/// A bounded pool of frame buffers and the queue of those waiting to be sent.
pub(crate) struct DelayLine {
    buf: Box<[u8]>,
    slot_len: usize,
    free: Vec<u32>,
    queue: BinaryHeap<Reverse<Held>>,
    seq: u64,
}

impl DelayLine {
    /// Room for `frames` frames of up to `slot_len` bytes each.
    pub(crate) fn new(frames: usize, slot_len: usize) -> DelayLine {
        let frames = frames.clamp(1, u32::MAX as usize);
        DelayLine {
            // Zeroed memory comes from the kernel untouched: a large pool costs only what is used.
            buf: vec![0u8; frames * slot_len].into_boxed_slice(),
            slot_len,
            free: (0..frames as u32).rev().collect(),
            queue: BinaryHeap::with_capacity(frames),
            seq: 0,
        }
    }

    /// A free buffer to read a frame into; `None` when every buffer holds a frame.
    pub(crate) fn take(&mut self) -> Option<u32> {
        self.free.pop()
    }

    /// Gives back a buffer from [`DelayLine::take`] or [`DelayLine::pop_due`].
    pub(crate) fn release(&mut self, slot: u32) {
        debug_assert!(!self.free.contains(&slot));
        self.free.push(slot);
    }

    pub(crate) fn slot_mut(&mut self, slot: u32) -> &mut [u8] {
        let at = slot as usize * self.slot_len;
        &mut self.buf[at..at + self.slot_len]
    }

    pub(crate) fn frame(&self, slot: u32, len: usize) -> &[u8] {
        let at = slot as usize * self.slot_len;
        &self.buf[at..at + len.min(self.slot_len)]
    }

    /// A second copy of the first `len` bytes of `slot` in a free buffer, if one is left.
    pub(crate) fn copy(&mut self, slot: u32, len: usize) -> Option<u32> {
        let to = self.take()?;
        let (from, dst) = (slot as usize * self.slot_len, to as usize * self.slot_len);
        self.buf
            .copy_within(from..from + len.min(self.slot_len), dst);
        Some(to)
    }

    /// Queues the frame in `slot` to be sent at `due_us`.
    pub(crate) fn hold(&mut self, slot: u32, len: usize, due_us: u64) {
        self.seq += 1;
        self.queue.push(Reverse(Held {
            due_us,
            seq: self.seq,
            slot,
            len: len as u32,
        }));
    }

    /// When the earliest held frame is due.
    pub(crate) fn next_due(&self) -> Option<u64> {
        self.queue.peek().map(|h| h.0.due_us)
    }

    /// The earliest frame due at or before `now_us`, as (slot, length, due time); the caller sends it
    /// and then releases the slot.
    pub(crate) fn pop_due(&mut self, now_us: u64) -> Option<(u32, usize, u64)> {
        if self.next_due()? > now_us {
            return None;
        }
        let h = self.queue.pop()?.0;
        Some((h.slot, h.len as usize, h.due_us))
    }

    /// Frames waiting.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(line: &mut DelayLine, byte: u8, due: u64) {
        let s = line.take().expect("room");
        line.slot_mut(s)[0] = byte;
        line.hold(s, 1, due);
    }

    fn drain(line: &mut DelayLine, now: u64) -> Vec<u8> {
        let mut out = vec![];
        while let Some((s, len, due)) = line.pop_due(now) {
            assert!(due <= now);
            out.push(line.frame(s, len)[0]);
            line.release(s);
        }
        out
    }

    #[test]
    fn test_frames_leave_by_due_time_then_arrival() {
        let mut l = DelayLine::new(8, 64);
        put(&mut l, 1, 500);
        put(&mut l, 2, 100);
        put(&mut l, 3, 500);
        put(&mut l, 4, 300);
        assert_eq!(l.next_due(), Some(100));
        assert_eq!(drain(&mut l, 99), Vec::<u8>::new());
        assert_eq!(drain(&mut l, 300), vec![2, 4]);
        assert_eq!(drain(&mut l, 1000), vec![1, 3]);
        assert_eq!(l.held(), 0);
    }

    #[test]
    fn test_pool_is_bounded_and_reused() {
        let mut l = DelayLine::new(2, 64);
        put(&mut l, 1, 0);
        put(&mut l, 2, 0);
        assert!(l.take().is_none(), "a full pool lends nothing");
        assert_eq!(drain(&mut l, 0), vec![1, 2]);
        for i in 0..100u8 {
            put(&mut l, i, u64::from(i));
            assert_eq!(drain(&mut l, u64::from(i)), vec![i]);
        }
    }

    #[test]
    fn test_copy_duplicates_bytes_into_another_slot() {
        let mut l = DelayLine::new(2, 4);
        let s = l.take().unwrap();
        l.slot_mut(s).copy_from_slice(&[1, 2, 3, 4]);
        let c = l.copy(s, 3).unwrap();
        assert_ne!(s, c);
        assert_eq!(l.frame(c, 3), &[1, 2, 3]);
        assert!(l.copy(s, 3).is_none());
    }
}
