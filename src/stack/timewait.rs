//! TIME-WAIT, held for real (RFC 9293 3.10.7.4), in a compact table instead of a socket.
//!
//! When a connection's smoltcp socket reaches TIME-WAIT and its last ACK has gone out, the socket
//! (and its buffers) goes back to the pool as before, and what TIME-WAIT needs stays here: the
//! 4-tuple, SND.NXT, RCV.NXT, the window we last advertised, the connection id and the deadline
//! (about 80 bytes an entry, plus the two indexes). 2 x MSL is 60 s by default, like Linux
//! (`--time-wait SECS`).
//!
//! Why TIME-WAIT exists: the side that closes first cannot know whether its last ACK arrived. If it
//! was lost, the peer (in LAST-ACK) sends its FIN again, and only a side that still remembers the
//! connection can answer it with an ACK instead of an RST. Holding the 4-tuple also lets stray
//! segments of the old connection die out before a new connection uses it.
//!
//! What a segment for a 4-tuple in the table gets ([`judge`]):
//! - the peer's FIN again: an ACK, and the 2 x MSL timer restarts (RFC 9293 3.10.7.4);
//! - an RST exactly at RCV.NXT: the entry ends (RFC 9293, "enter CLOSED"); inside the window but
//!   not exact: a challenge ACK (RFC 5961 3.2); outside: dropped. This is Linux's default
//!   (`tcp_rfc1337 = 0`), not RFC 1337's "ignore RSTs in TIME-WAIT": RFC 5961's exact-match rule
//!   already keeps a blind attacker from ending the entry, and a peer that really reset the
//!   connection gets the 4-tuple back at once;
//! - a SYN (no ACK) whose sequence number is beyond RCV.NXT: a new incarnation of the connection
//!   (RFC 9293 3.10.7.4 allows reopening from TIME-WAIT then; RFC 6191 adds timestamps, which this
//!   stack does not use): the entry ends (`Superseded`) and the SYN opens a new connection; any
//!   other SYN gets a challenge ACK (RFC 5961 4.2);
//! - an acceptable bare ACK: nothing (RFC 9293: the only thing to acknowledge in TIME-WAIT is a FIN
//!   again), so two ends never trade ACKs;
//! - anything else (outside the window, data after the FIN): an ACK (RFC 9293, "unacceptable").
//!
//! Answers are crafted with [`crate::frames`] and leave through the stack's one egress path, so
//! the tracer, the capture and the fault injector see them like any frame. smoltcp never sees the
//! segments that reach the table; the stack counts each under a reason of its own.
//!
//! Bounds: the table holds at most its `cap` entries (the oldest gives way, `TableFull`); at the
//! connection limit, the stack lets the oldest served one give way before a live connection is
//! evicted (`ConnectionLimit`). Entries leave by their deadline, from an ordered index: nothing is
//! scanned per turn.

use slab::Slab;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint};
use std::collections::{BTreeSet, HashMap};

use super::demux::{TcpPeek, Tuple};
use super::event::TimeWaitAck;
use crate::frames::{Eth, Tcp};
use crate::service::ServiceKind;

/// 2 x MSL by default: 60 s, as Linux holds TIME-WAIT (`TCP_TIMEWAIT_LEN`).
pub(crate) const DEFAULT_TIME_WAIT: Duration = Duration::from_secs(60);
/// Entries the table holds at most (Linux's `tcp_max_tw_buckets` is of this order on a small
/// machine); about 10 MiB when full.
pub(super) const TIME_WAIT_MAX: usize = 65536;

/// What TIME-WAIT needs of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TwEntry {
    pub local: IpEndpoint,
    pub remote: IpEndpoint,
    /// SND.NXT: our FIN and everything before it, acknowledged.
    pub snd_nxt: u32,
    /// RCV.NXT: the peer's FIN and everything before it.
    pub rcv_nxt: u32,
    /// RCV.WND in bytes, for the acceptability test.
    pub rcv_wnd: u32,
    /// The window field of our last ACK (scaled as negotiated), repeated in every answer.
    pub window: u16,
    pub id: u64,
    /// The service it served; `None` for a client socket.
    pub service: Option<ServiceKind>,
    pub deadline: Instant,
}

/// What to do with a segment for a 4-tuple in TIME-WAIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Answer with an ACK (SND.NXT, RCV.NXT); `FinAgain` also restarts the timer.
    Ack(TimeWaitAck),
    /// An RST exactly at RCV.NXT: the entry ends.
    Reset,
    /// An RST outside the window: dropped.
    RstOutside,
    /// A new SYN beyond RCV.NXT: the entry ends and the SYN opens a new connection.
    NewSyn,
    /// An acceptable segment with nothing to acknowledge: dropped without an answer.
    Nothing,
}

/// `a < b` in sequence space.
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// RFC 9293 3.10.7.4's checks for a segment reaching entry `e`.
pub(super) fn judge(e: &TwEntry, p: &TcpPeek) -> Verdict {
    let (seq, nxt, wnd) = (p.seq, e.rcv_nxt, e.rcv_wnd);
    let in_window = |s: u32| s.wrapping_sub(nxt) < wnd;
    if p.rst {
        return if seq == nxt {
            Verdict::Reset
        } else if in_window(seq) {
            Verdict::Ack(TimeWaitAck::ChallengeRst)
        } else {
            Verdict::RstOutside
        };
    }
    if p.syn {
        return if !p.ack && before(nxt, seq) {
            Verdict::NewSyn
        } else {
            Verdict::Ack(TimeWaitAck::OldSyn)
        };
    }
    // The peer's FIN again: it ends exactly at RCV.NXT (the FIN takes the last number).
    if p.fin && seq.wrapping_add(p.len).wrapping_add(1) == nxt {
        return Verdict::Ack(TimeWaitAck::FinAgain);
    }
    let acceptable = match (p.len + p.fin as u32, wnd) {
        (0, 0) => seq == nxt,
        (0, _) => in_window(seq),
        (_, 0) => false,
        (n, _) => in_window(seq) || in_window(seq.wrapping_add(n - 1)),
    };
    if acceptable && p.len == 0 && !p.fin {
        Verdict::Nothing
    } else {
        Verdict::Ack(TimeWaitAck::Unacceptable)
    }
}

/// The ACK that answers a segment for `e`, in reply to `frame` (whose MAC addresses it swaps, so
/// that it goes back the way the segment came).
pub(super) fn answer(e: &TwEntry, frame: &[u8]) -> Option<Vec<u8>> {
    let dst: [u8; 6] = frame.get(6..12)?.try_into().ok()?;
    let src: [u8; 6] = frame.get(0..6)?.try_into().ok()?;
    let seg = Tcp::new(e.local.port, e.remote.port, e.snd_nxt)
        .ack(e.rcv_nxt)
        .window(e.window);
    let eth = Eth::new(src, dst);
    Some(match (e.local.addr, e.remote.addr) {
        (IpAddress::Ipv4(l), IpAddress::Ipv4(r)) => eth.ipv4(l, r).tcp(&seg),
        (IpAddress::Ipv6(l), IpAddress::Ipv6(r)) => eth.ipv6(l, r).tcp(&seg),
        _ => return None,
    })
}

/// The TIME-WAIT table.
pub(super) struct TimeWait {
    entries: Slab<TwEntry>,
    by_tuple: HashMap<Tuple, usize>,
    deadlines: BTreeSet<(Instant, usize)>,
    /// Entries of served connections (they count towards `--max-connections`).
    served: usize,
    cap: usize,
    /// 2 x MSL.
    pub hold: Duration,
}

impl TimeWait {
    pub(super) fn new(hold: Duration, cap: usize) -> TimeWait {
        TimeWait {
            entries: Slab::new(),
            by_tuple: HashMap::new(),
            deadlines: BTreeSet::new(),
            served: 0,
            cap: cap.max(1),
            hold,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Entries of served connections.
    pub(super) fn served(&self) -> usize {
        self.served
    }

    /// Whether the table is full (the next insert first needs [`TimeWait::oldest`] to go).
    pub(super) fn is_full(&self) -> bool {
        self.entries.len() >= self.cap
    }

    /// The entry a segment from `p.src` to `p.dst` belongs to.
    pub(super) fn lookup(&self, p: &TcpPeek) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        self.by_tuple.get(&Tuple(p.dst, p.src)).copied()
    }

    pub(super) fn get(&self, key: usize) -> Option<&TwEntry> {
        self.entries.get(key)
    }

    /// Files an entry; its deadline is `now` + 2 x MSL. The caller makes room first.
    pub(super) fn insert(&mut self, mut e: TwEntry, now: Instant) -> usize {
        e.deadline = now + self.hold;
        let key = self.entries.insert(e);
        if let Some(old) = self.by_tuple.insert(Tuple(e.local, e.remote), key) {
            // Never expected (a live entry owned the 4-tuple until now): forget the stale one.
            if old != key {
                self.unfile(old);
            }
        }
        self.deadlines.insert((e.deadline, key));
        if e.service.is_some() {
            self.served += 1;
        }
        key
    }

    fn unfile(&mut self, key: usize) -> Option<TwEntry> {
        let e = self.entries.try_remove(key)?;
        self.deadlines.remove(&(e.deadline, key));
        if self.by_tuple.get(&Tuple(e.local, e.remote)) == Some(&key) {
            self.by_tuple.remove(&Tuple(e.local, e.remote));
        }
        if e.service.is_some() {
            self.served -= 1;
        }
        Some(e)
    }

    /// Takes an entry out.
    pub(super) fn remove(&mut self, key: usize) -> Option<TwEntry> {
        self.unfile(key)
    }

    /// Starts the 2 x MSL again (the peer's FIN came again).
    pub(super) fn restart(&mut self, key: usize, now: Instant) {
        let hold = self.hold;
        if let Some(e) = self.entries.get_mut(key) {
            self.deadlines.remove(&(e.deadline, key));
            e.deadline = now + hold;
            self.deadlines.insert((e.deadline, key));
        }
    }

    /// The entry whose time runs out first; `served_only`: among served connections.
    pub(super) fn oldest(&self, served_only: bool) -> Option<usize> {
        self.deadlines
            .iter()
            .map(|&(_, k)| k)
            .find(|&k| !served_only || self.entries[k].service.is_some())
    }

    /// An entry whose deadline has come, if any.
    pub(super) fn due(&self, now: Instant) -> Option<usize> {
        self.deadlines
            .first()
            .filter(|&&(t, _)| t <= now)
            .map(|&(_, k)| k)
    }

    pub(super) fn first_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(t, _)| t)
    }

    pub(super) fn keys(&self) -> Vec<usize> {
        self.entries.iter().map(|(k, _)| k).collect()
    }
}
