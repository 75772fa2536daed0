//! Links under the userspace stack: our own TAP device, an in-memory wire, fault injection, and the one
//! `smoltcp::phy::Device` implementation ([`Nic`]) that puts any of them under smoltcp.
//!
//! Middleware in the smoltcp style: a [`Nic`] owns a [`FrameIo`] (where frames come from and go to), an
//! optional [`FaultInjector`] (what happens to them on the way) and an [`Observer`] (who watches them:
//! packet lines, pcap, events). The rx side holds one frame in a slot that the reactor can peek at before
//! smoltcp sees it, which is how listener pools are refilled ahead of a SYN.

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use std::collections::VecDeque;
use std::io;

use crate::status::Counters;

pub(crate) mod csum;
pub(crate) mod fault;
pub(crate) mod tap;
pub(crate) mod wire;

pub use fault::FaultConfig;
pub(crate) use fault::{Fate, FaultInjector};

/// Which way a frame crosses the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the link into the userspace stack.
    In,
    /// From the userspace stack onto the link.
    Out,
}

impl Direction {
    /// `in` or `out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// Watches every frame that crosses a port.
pub trait Observer {
    /// A frame crossed the port (for `In`: before the stack processes it).
    fn frame(&mut self, now: Instant, dir: Direction, frame: &[u8]);
    /// A frame was lost on the way (fault injector, link down, full queue).
    fn dropped(&mut self, now: Instant, dir: Direction, frame: &[u8], reason: &'static str);
    /// The fault injector tells what it does to the next frame shown going `dir` (called just
    /// before [`Observer::frame`] for it), so that a capture can say so. Ignored by default.
    fn fault(&mut self, _now: Instant, _dir: Direction, _mark: FaultMark) {}
}

/// What the fault injector does to one frame, besides losing it on the way in (which
/// [`Observer::dropped`] reports). Frames going out are shown before the faults hit them, frames
/// coming in after.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultMark {
    /// Out: lost after it was shown; it never reaches the link.
    pub dropped: bool,
    /// A bit flipped: out, after it was shown; in, before.
    pub corrupted: bool,
    /// Out: the link carries it twice. In: a copy of it follows.
    pub duplicated: bool,
    /// In: this frame is the copy.
    pub copy: bool,
}

impl FaultMark {
    fn of(fate: &Fate) -> FaultMark {
        match *fate {
            Fate::Drop => FaultMark {
                dropped: true,
                ..FaultMark::default()
            },
            Fate::Deliver {
                corrupt, duplicate, ..
            } => FaultMark {
                corrupted: corrupt.is_some(),
                duplicated: duplicate,
                ..FaultMark::default()
            },
        }
    }
}

/// Watches nothing.
impl Observer for () {
    fn frame(&mut self, _: Instant, _: Direction, _: &[u8]) {}
    fn dropped(&mut self, _: Instant, _: Direction, _: &[u8], _: &'static str) {}
}

/// Where frames come from and go to.
pub trait FrameIo {
    /// Reads one frame into `buf`. `Ok(None)`: nothing waiting now. `Err`: the link is gone for good.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Sends one frame. A frame the link cannot take now is dropped and the reason returned.
    /// `Err`: the link is gone for good.
    fn send(&mut self, frame: &[u8]) -> io::Result<TxOutcome>;
    /// The largest frame, Ethernet header included.
    fn max_frame(&self) -> usize;
    /// The file descriptor the reactor registers for readiness, if the link has one.
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    /// Whether frames wait to be received. Only links without a file descriptor need to say; the
    /// others wake the loop through readiness.
    fn has_pending(&self) -> bool {
        false
    }
    /// Whether the link cuts large TCP segments into MSS-sized ones itself (TSO).
    fn segments_tcp(&self) -> bool {
        false
    }
    /// Sends a TCP segment larger than the path allows, to be cut into `mss`-sized ones by the link.
    /// Only called when [`FrameIo::segments_tcp`] says so. The frame may be changed on the way.
    fn send_segmented(&mut self, frame: &mut [u8], _mss: u16) -> io::Result<TxOutcome> {
        self.send(frame)
    }
    /// The IP MTU of the wire this link stands for (1500 on an Ethernet-like TAP), whatever size of
    /// segment offload lets through it.
    fn wire_mtu(&self) -> usize {
        self.max_frame() - 14
    }
}

impl FrameIo for Box<dyn FrameIo> {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        (**self).recv(buf)
    }
    fn send(&mut self, frame: &[u8]) -> io::Result<TxOutcome> {
        (**self).send(frame)
    }
    fn max_frame(&self) -> usize {
        (**self).max_frame()
    }
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        (**self).raw_fd()
    }
    fn has_pending(&self) -> bool {
        (**self).has_pending()
    }
    fn wire_mtu(&self) -> usize {
        (**self).wire_mtu()
    }
    fn segments_tcp(&self) -> bool {
        (**self).segments_tcp()
    }
    fn send_segmented(&mut self, frame: &mut [u8], mss: u16) -> io::Result<TxOutcome> {
        (**self).send_segmented(frame, mss)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxOutcome {
    Sent,
    Dropped(&'static str),
}

/// A frame held back by the fault injector (delay, reordering, duplication, latency).
struct Held {
    at: Instant,
    dir: Direction,
    frame: Vec<u8>,
    /// What the fault injector did to it (told to the observer when it comes in).
    mark: FaultMark,
}

/// The received frame the stack has not consumed yet.
struct RxSlot {
    buf: Box<[u8]>,
    len: Option<usize>,
    /// The observer has seen it.
    observed: bool,
}

/// Everything but the rx slot, so that smoltcp's rx and tx tokens can borrow disjoint parts of a port.
struct Link<F: FrameIo, O: Observer> {
    io: F,
    observer: O,
    faults: Option<FaultInjector>,
    held: VecDeque<Held>,
    /// Spare buffers for held frames: fault injection stops allocating once warm.
    spare: Vec<Vec<u8>>,
    tx_buf: Box<[u8]>,
    /// The MSS smoltcp asked the link to cut the frame being sent into (TSO).
    tx_segment: Option<u16>,
    counters: Counters,
    fatal: Option<io::Error>,
}

/// `smoltcp::phy::Device` over any [`FrameIo`], with fault injection and an observer.
pub struct Nic<F: FrameIo, O: Observer> {
    rx: RxSlot,
    link: Link<F, O>,
    max_frame: usize,
}

impl<F: FrameIo, O: Observer> Nic<F, O> {
    /// A device over `io`, watched by `observer`.
    pub fn new(io: F, observer: O) -> Self {
        let max = io.max_frame();
        Nic {
            rx: RxSlot {
                buf: vec![0u8; max].into_boxed_slice(),
                len: None,
                observed: false,
            },
            link: Link {
                io,
                observer,
                faults: None,
                held: VecDeque::new(),
                spare: Vec::new(),
                tx_buf: vec![0u8; max].into_boxed_slice(),
                tx_segment: None,
                counters: Counters::default(),
                fatal: None,
            },
            max_frame: max,
        }
    }

    /// Injects these faults into the frames both ways.
    pub fn with_faults(mut self, faults: Option<FaultInjector>) -> Self {
        self.link.faults = faults;
        self
    }

    /// Changes the faults mid-run. Frames already held back (latency, reordering) still arrive when
    /// they were due.
    pub fn set_faults(&mut self, faults: Option<FaultInjector>) {
        self.link.faults = faults;
    }

    /// The link.
    pub fn io(&self) -> &F {
        &self.link.io
    }

    /// The link, to change.
    pub fn io_mut(&mut self) -> &mut F {
        &mut self.link.io
    }

    /// Whoever watches the frames.
    pub fn observer(&self) -> &O {
        &self.link.observer
    }

    /// The same, to change.
    pub fn observer_mut(&mut self) -> &mut O {
        &mut self.link.observer
    }

    /// Frames and bytes through the device, and its drops.
    pub fn counters(&self) -> &Counters {
        &self.link.counters
    }

    /// The same, to count into.
    pub fn counters_mut(&mut self) -> &mut Counters {
        &mut self.link.counters
    }

    /// Whether smoltcp may hand this port 64 KiB TCP segments (the link segments them, no faults).
    pub fn offloads(&self) -> bool {
        self.link.offloads()
    }

    /// A frame was lost between this device and the other end without the link noticing (a cut
    /// cable): counted, and shown to the observer like any other loss.
    pub fn lost(&mut self, now: Instant, dir: Direction, frame: &[u8], reason: &'static str) {
        self.link.counters.drop(reason);
        self.link.observer.dropped(now, dir, frame, reason);
    }

    /// The error that ended the link (device deleted), once.
    pub fn take_fatal(&mut self) -> Option<io::Error> {
        self.link.fatal.take()
    }

    /// Whether the link is gone for good.
    pub fn is_dead(&self) -> bool {
        self.link.fatal.is_some()
    }

    /// When a held frame is due (the loop must wake then).
    pub fn poll_at(&self) -> Option<Instant> {
        self.link.held.iter().map(|h| h.at).min()
    }

    /// Sends the held outgoing frames that are due.
    pub fn flush_held(&mut self, now: Instant) {
        self.link.flush_held(now)
    }

    /// Makes sure a received frame waits in the rx slot; returns whether one does. The observer sees
    /// the frame at [`Nic::observe_rx`], or at the latest when the stack takes it or it is discarded:
    /// the stack may first number the connection a SYN opens, so that the frame's line names it.
    pub fn fill_rx(&mut self, now: Instant) -> bool {
        if self.rx.len.is_some() {
            return true;
        }
        match self.link.fill(now, &mut self.rx.buf) {
            Some(n) => {
                self.rx.len = Some(n);
                self.rx.observed = false;
                true
            }
            None => false,
        }
    }

    /// Shows the frame in the rx slot to the observer (once).
    pub fn observe_rx(&mut self, now: Instant) {
        if let Some(n) = self.rx.len {
            if !self.rx.observed {
                self.rx.observed = true;
                self.link
                    .observer
                    .frame(now, Direction::In, &self.rx.buf[..n]);
            }
        }
    }

    /// The frame waiting in the rx slot, if any.
    pub fn peek_rx(&self) -> Option<&[u8]> {
        self.rx.len.map(|n| &self.rx.buf[..n])
    }

    /// Throws away the frame in the rx slot (the stack decided smoltcp must not see it).
    pub fn discard_rx(&mut self, now: Instant, reason: &'static str) {
        self.observe_rx(now);
        if self.rx.len.take().is_some() {
            self.link.counters.drop(reason);
        }
    }
}

impl<F: FrameIo, O: Observer> Link<F, O> {
    /// Large TCP segments only where the link cuts them, and never under fault injection, whose
    /// faults must hit the frames a real wire would carry.
    fn offloads(&self) -> bool {
        self.io.segments_tcp() && self.faults.is_none()
    }

    fn fill(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if self.fatal.is_some() {
            return None;
        }
        // Held frames that are due come first: they arrived earlier.
        if let Some(i) = self
            .held
            .iter()
            .position(|h| h.dir == Direction::In && h.at <= now)
        {
            let h = self.held.remove(i).expect("index checked");
            let n = h.frame.len().min(buf.len());
            buf[..n].copy_from_slice(&h.frame[..n]);
            self.recycle(h.frame);
            if h.mark != FaultMark::default() {
                self.observer.fault(now, Direction::In, h.mark);
            }
            return Some(self.accepted(now, &buf[..n]));
        }
        loop {
            let n = match self.io.recv(buf) {
                Ok(Some(n)) => n,
                Ok(None) => return None,
                Err(e) => {
                    self.fatal = Some(e);
                    return None;
                }
            };
            let fate = match self.faults.as_mut() {
                Some(f) => f.fate(now, n),
                None => Fate::pass(now),
            };
            match fate {
                Fate::Drop => {
                    self.counters.drop("fault: dropped on the way in");
                    self.observer
                        .dropped(now, Direction::In, &buf[..n], "fault injector");
                }
                Fate::Deliver {
                    at,
                    corrupt,
                    duplicate,
                } => {
                    if let Some((idx, mask)) = corrupt {
                        buf[idx % n.max(1)] ^= mask;
                    }
                    let mark = FaultMark::of(&fate);
                    if duplicate {
                        let copy = FaultMark {
                            duplicated: false,
                            copy: true,
                            ..mark
                        };
                        self.hold(at, Direction::In, &buf[..n], copy);
                    }
                    if at > now {
                        self.hold(at, Direction::In, &buf[..n], mark);
                        continue;
                    }
                    if mark != FaultMark::default() {
                        self.observer.fault(now, Direction::In, mark);
                    }
                    return Some(self.accepted(now, &buf[..n]));
                }
            }
        }
    }

    fn accepted(&mut self, _now: Instant, frame: &[u8]) -> usize {
        self.counters.packets_in += 1;
        self.counters.bytes_in += frame.len() as u64;
        frame.len()
    }

    fn hold(&mut self, at: Instant, dir: Direction, frame: &[u8], mark: FaultMark) {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        self.held.push_back(Held {
            at,
            dir,
            frame: buf,
            mark,
        });
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < 256 {
            self.spare.push(buf);
        }
    }

    fn flush_held(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].at <= now && self.held[i].dir == Direction::Out {
                let h = self.held.remove(i).expect("index checked");
                self.send_now(now, &h.frame);
                self.recycle(h.frame);
            } else {
                i += 1;
            }
        }
    }

    fn send_now(&mut self, now: Instant, frame: &[u8]) {
        let outcome = self.io.send(frame);
        self.sent(now, frame, outcome);
    }

    /// Counts and reports what became of a frame handed to the link.
    fn sent(&mut self, now: Instant, frame: &[u8], outcome: io::Result<TxOutcome>) {
        match outcome {
            Ok(TxOutcome::Sent) => {}
            Ok(TxOutcome::Dropped(reason)) => {
                self.counters.drop(reason);
                self.observer.dropped(now, Direction::Out, frame, reason);
            }
            Err(e) => {
                if self.fatal.is_none() {
                    self.fatal = Some(e);
                }
            }
        }
    }

    fn send_segmented(&mut self, now: Instant, frame: &mut [u8], mss: u16) {
        let outcome = self.io.send_segmented(frame, mss);
        self.sent(now, frame, outcome);
    }

    /// smoltcp has written `len` bytes into `tx_buf`: observe, inject faults, send.
    fn transmit(&mut self, now: Instant, len: usize, offloaded: bool) {
        self.counters.packets_out += 1;
        self.counters.bytes_out += len as u64;
        // Taking the buffer out (an empty box costs nothing) lets it be read while `self` is borrowed.
        let mut buf = std::mem::take(&mut self.tx_buf);
        if offloaded {
            // smoltcp leaves TCP checksums to a segmenting device; the trace and the capture must
            // still show valid frames, so compute them here (the pass smoltcp would have made).
            csum::fill_tcp(&mut buf[..len]);
        }
        let fate = match self.faults.as_mut() {
            Some(f) => f.fate(now, len),
            None => Fate::pass(now),
        };
        let mark = FaultMark::of(&fate);
        if mark != FaultMark::default() && self.fatal.is_none() {
            self.observer.fault(now, Direction::Out, mark);
        }
        self.observer.frame(now, Direction::Out, &buf[..len]);
        if self.fatal.is_some() {
            self.counters.drop("tx: link gone");
        } else {
            match fate {
                Fate::Drop => {
                    self.counters.drop("fault: dropped on the way out");
                    self.observer
                        .dropped(now, Direction::Out, &buf[..len], "fault injector");
                }
                Fate::Deliver {
                    at,
                    corrupt,
                    duplicate,
                } => {
                    if let Some((idx, mask)) = corrupt {
                        buf[idx % len.max(1)] ^= mask;
                    }
                    if duplicate {
                        self.hold(at, Direction::Out, &buf[..len], FaultMark::default());
                    }
                    if at > now {
                        self.hold(at, Direction::Out, &buf[..len], FaultMark::default());
                    } else if let Some(mss) = self.tx_segment.take() {
                        self.send_segmented(now, &mut buf[..len], mss);
                    } else {
                        self.send_now(now, &buf[..len]);
                    }
                }
            }
        }
        self.tx_buf = buf;
    }
}

pub struct NicRxToken<'a> {
    slot: &'a mut RxSlot,
}

impl phy::RxToken for NicRxToken<'_> {
    fn consume<R, G>(self, f: G) -> R
    where
        G: FnOnce(&[u8]) -> R,
    {
        let n = self.slot.len.take().unwrap_or(0);
        f(&self.slot.buf[..n])
    }
}

pub struct NicTxToken<'a, F: FrameIo, O: Observer> {
    link: &'a mut Link<F, O>,
    now: Instant,
    /// smoltcp left TCP checksums to the device.
    offloaded: bool,
}

impl<F: FrameIo, O: Observer> phy::TxToken for NicTxToken<'_, F, O> {
    fn consume<R, G>(self, len: usize, f: G) -> R
    where
        G: FnOnce(&mut [u8]) -> R,
    {
        // smoltcp never asks for more than the MTU we advertise; clamp anyway rather than panic.
        let len = len.min(self.link.tx_buf.len());
        let r = f(&mut self.link.tx_buf[..len]);
        self.link.transmit(self.now, len, self.offloaded);
        self.link.tx_segment = None;
        r
    }

    fn set_meta(&mut self, meta: phy::PacketMeta) {
        self.link.tx_segment = meta.segmentation_offload_size.map(|n| n.get());
    }
}

impl<F: FrameIo, O: Observer> phy::Device for Nic<F, O> {
    type RxToken<'a>
        = NicRxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = NicTxToken<'a, F, O>
    where
        Self: 'a;

    /// Hands smoltcp the frame in the rx slot. It does not read the link: the stack fills the slot
    /// with [`Nic::fill_rx`], one frame at a time, so that it can budget ingress and peek at SYNs.
    fn receive(&mut self, now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.rx.len?;
        self.observe_rx(now);
        Some((
            NicRxToken { slot: &mut self.rx },
            NicTxToken {
                offloaded: self.link.offloads(),
                link: &mut self.link,
                now,
            },
        ))
    }

    fn transmit(&mut self, now: Instant) -> Option<Self::TxToken<'_>> {
        Some(NicTxToken {
            offloaded: self.link.offloads(),
            link: &mut self.link,
            now,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.max_frame;
        // Large segments only where the link cuts them, and never under fault injection, whose faults
        // must hit the frames a real wire would carry.
        if self.link.offloads() {
            let frame = std::num::NonZeroUsize::new(self.max_frame);
            caps.segmentation.tcpv4 = frame;
            caps.segmentation.tcpv6 = frame;
            // smoltcp insists: a segmenting device also computes TCP checksums (here: the Nic).
            caps.checksum.tcp = phy::Checksum::Rx;
        }
        caps
    }
}
