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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::wire::WireEnd;
    use crate::device::FrameIo;
    use crate::stack::event::{CloseCause, StackEvent, TimeWaitCut};
    use crate::stack::tests::{stack_on_wire, test_frames, turn, Recorder};
    use crate::stack::{peek_tcp, Stack};
    use crate::status::Status;

    const DAYTIME: u16 = 13;

    fn entry() -> TwEntry {
        TwEntry {
            local: IpEndpoint::new(IpAddress::v4(192, 168, 69, 1), 13),
            remote: IpEndpoint::new(IpAddress::v4(192, 168, 69, 100), 40000),
            snd_nxt: 5000,
            rcv_nxt: 1002,
            rcv_wnd: 4096,
            window: 4096,
            id: 1,
            service: Some(ServiceKind::Daytime),
            deadline: Instant::ZERO,
        }
    }

    /// A segment to `entry()`'s 4-tuple, as the peek reads it.
    fn seg(t: Tcp) -> TcpPeek {
        peek_tcp(&t.to_server()).expect("a TCP frame")
    }

    fn from_peer(seq: u32) -> Tcp {
        Tcp::new(40000, 13, seq)
    }

    #[test]
    fn test_judge_follows_rfc_9293_and_5961() {
        let e = entry();
        let cases = [
            (
                from_peer(1001).ack(5000).fin(),
                Verdict::Ack(TimeWaitAck::FinAgain),
            ),
            (
                from_peer(991).ack(5000).data(b"0123456789").fin(),
                Verdict::Ack(TimeWaitAck::FinAgain),
            ),
            (from_peer(1002).rst(), Verdict::Reset),
            (
                from_peer(1100).rst(),
                Verdict::Ack(TimeWaitAck::ChallengeRst),
            ),
            (from_peer(1002 + 4096).rst(), Verdict::RstOutside),
            (from_peer(900).rst(), Verdict::RstOutside),
            (from_peer(1_000_000).syn(), Verdict::NewSyn),
            (from_peer(1002).syn(), Verdict::Ack(TimeWaitAck::OldSyn)),
            (from_peer(500).syn(), Verdict::Ack(TimeWaitAck::OldSyn)),
            (
                from_peer(1_000_000).syn().ack(5000),
                Verdict::Ack(TimeWaitAck::OldSyn),
            ),
            (from_peer(1002).ack(5000), Verdict::Nothing),
            (
                from_peer(900).ack(5000),
                Verdict::Ack(TimeWaitAck::Unacceptable),
            ),
            (
                from_peer(1002).ack(5000).data(b"late"),
                Verdict::Ack(TimeWaitAck::Unacceptable),
            ),
        ];
        for (t, want) in cases {
            let p = seg(t.clone());
            assert_eq!(judge(&e, &p), want, "{t:?}");
        }
        // Sequence space wraps.
        let mut w = entry();
        w.rcv_nxt = u32::MAX - 1;
        assert_eq!(judge(&w, &seg(from_peer(5).syn())), Verdict::NewSyn);
        assert_eq!(
            judge(&w, &seg(from_peer(u32::MAX - 1).rst())),
            Verdict::Reset
        );
    }

    #[test]
    fn test_answer_is_the_ack_of_the_fin() {
        let e = entry();
        let fin = from_peer(1001).ack(5000).fin().to_server();
        let ack = answer(&e, &fin).unwrap();
        let p = peek_tcp(&ack).unwrap();
        assert_eq!((p.src, p.dst), (e.local, e.remote));
        assert_eq!(
            (p.seq, p.ack_no, p.ack, p.fin, p.rst, p.syn),
            (5000, 1002, true, false, false, false)
        );
        // Back the way it came: the MAC addresses are swapped.
        assert_eq!(&ack[0..6], &fin[6..12]);
        assert_eq!(&ack[6..12], &fin[0..6]);
        assert!(answer(&e, &fin[..8]).is_none(), "no panic on a short frame");
    }

    #[test]
    fn test_table_bound_and_oldest() {
        // A few dozen bytes an entry (the module doc says about 80), no socket, no buffers.
        assert!(
            std::mem::size_of::<TwEntry>() <= 96,
            "{}",
            std::mem::size_of::<TwEntry>()
        );
        let mut t = TimeWait::new(Duration::from_secs(60), 3);
        let mut keys = Vec::new();
        for i in 0..3u16 {
            let mut e = entry();
            e.remote.port = 40000 + i;
            keys.push(t.insert(e, Instant::from_secs(i as i64)));
        }
        assert!(t.is_full());
        assert_eq!(t.oldest(true), Some(keys[0]));
        // A restart makes the oldest the youngest.
        t.restart(keys[0], Instant::from_secs(10));
        assert_eq!(t.oldest(false), Some(keys[1]));
        assert_eq!(t.first_deadline(), Some(Instant::from_secs(61)));
        assert_eq!(t.due(Instant::from_secs(60)), None);
        assert_eq!(t.due(Instant::from_secs(61)), Some(keys[1]));
        let gone = t.remove(keys[1]).unwrap();
        assert_eq!(gone.remote.port, 40001);
        assert_eq!((t.len(), t.served()), (2, 2));
        assert!(t.lookup(&seg(Tcp::new(40001, 13, 1).ack(1))).is_none());
        assert_eq!(t.lookup(&seg(Tcp::new(40002, 13, 1).ack(1))), Some(keys[2]));
    }

    /// The stack's TCP segments on the wire since the last call.
    fn out(peer: &mut WireEnd) -> Vec<TcpPeek> {
        let mut buf = [0u8; 1600];
        let mut v = Vec::new();
        while let Some(n) = peer.recv(&mut buf).unwrap() {
            v.extend(peek_tcp(&buf[..n]));
        }
        v
    }

    /// A daytime connection from `port` that the stack closes first, up to the peer's FIN:
    /// returns the stack's SND.NXT (after its FIN).
    fn daytime_closed_by_stack(
        stack: &mut Stack<Recorder>,
        peer: &mut WireEnd,
        status: &mut Status,
        port: u16,
        now: Instant,
    ) -> u32 {
        peer.send(&test_frames::arp_reply()).unwrap();
        peer.send(&Tcp::new(port, DAYTIME, 1000).syn().mss(1460).to_server())
            .unwrap();
        turn(stack, status, now);
        let synack = out(peer)
            .into_iter()
            .find(|p| p.syn && p.ack)
            .expect("SYN-ACK");
        let isn1 = synack.seq.wrapping_add(1);
        peer.send(&Tcp::new(port, DAYTIME, 1001).ack(isn1).to_server())
            .unwrap();
        turn(stack, status, now);
        turn(stack, status, now);
        let fin = out(peer)
            .into_iter()
            .find(|p| p.fin)
            .expect("the stack's FIN");
        let snd_nxt = fin.seq.wrapping_add(fin.len).wrapping_add(1);
        peer.send(&Tcp::new(port, DAYTIME, 1001).ack(snd_nxt).fin().to_server())
            .unwrap();
        turn(stack, status, now);
        let last = out(peer);
        assert!(
            last.iter()
                .any(|p| p.ack && !p.fin && p.ack_no == 1002 && p.seq == snd_nxt),
            "the last ACK: {last:?}"
        );
        snd_nxt
    }

    fn daytime_stack(max: usize) -> (Stack<Recorder>, WireEnd) {
        let (mut stack, peer) = stack_on_wire(max);
        stack.serve_tcp(ServiceKind::Daytime, DAYTIME);
        (stack, peer)
    }

    fn closed(stack: &Stack<Recorder>) -> Vec<(u64, CloseCause)> {
        stack
            .observer()
            .0
            .iter()
            .filter_map(|e| match e {
                StackEvent::Closed { conn, cause, .. } => Some((*conn, *cause)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn test_fin_again_gets_its_ack_and_restarts_the_timer_then_expiry_closes() {
        let (mut stack, mut peer) = daytime_stack(8);
        let mut status = Status::default();
        let t0 = Instant::ZERO;
        let snd_nxt = daytime_closed_by_stack(&mut stack, &mut peer, &mut status, 40000, t0);
        assert_eq!(stack.time_wait_count(), 1);
        assert_eq!(stack.connection_count(), 0, "the socket is back");
        assert!(
            closed(&stack).is_empty(),
            "not closed before TIME-WAIT ends"
        );
        assert!(stack.observer().0.iter().any(|e| matches!(
            e,
            StackEvent::TimeWait { hold, .. } if *hold == DEFAULT_TIME_WAIT
        )));
        // 30 s later the peer sends its FIN again (our last ACK was lost).
        let t1 = t0 + Duration::from_secs(30);
        peer.send(
            &Tcp::new(40000, DAYTIME, 1001)
                .ack(snd_nxt)
                .fin()
                .to_server(),
        )
        .unwrap();
        turn(&mut stack, &mut status, t1);
        let again = out(&mut peer);
        assert_eq!(again.len(), 1, "{again:?}");
        let a = again[0];
        assert!(a.ack && !a.fin && !a.rst);
        assert_eq!((a.seq, a.ack_no), (snd_nxt, 1002));
        assert!(stack.observer().0.iter().any(|e| matches!(
            e,
            StackEvent::TimeWaitAck {
                why: TimeWaitAck::FinAgain,
                ..
            }
        )));
        // The first deadline passes: the timer was restarted, the entry stays.
        turn(
            &mut stack,
            &mut status,
            t0 + DEFAULT_TIME_WAIT + Duration::from_secs(1),
        );
        assert_eq!(stack.time_wait_count(), 1);
        assert_eq!(stack.poll_at(t1), Some(t1 + DEFAULT_TIME_WAIT));
        turn(&mut stack, &mut status, t1 + DEFAULT_TIME_WAIT);
        assert_eq!(stack.time_wait_count(), 0);
        assert_eq!(closed(&stack), [(1, CloseCause::Closed)]);
        assert!(stack.observer().0.iter().any(|e| matches!(
            e,
            StackEvent::State {
                from: smoltcp::socket::tcp::State::TimeWait,
                to: smoltcp::socket::tcp::State::Closed,
                ..
            }
        )));
        assert_eq!(stack.counters().conns_closed, 1);
        // Now the 4-tuple is free: a FIN gets smoltcp's RST, as for any unknown connection.
        peer.send(
            &Tcp::new(40000, DAYTIME, 1001)
                .ack(snd_nxt)
                .fin()
                .to_server(),
        )
        .unwrap();
        turn(&mut stack, &mut status, t1 + DEFAULT_TIME_WAIT);
        assert!(out(&mut peer).iter().any(|p| p.rst));
    }

    #[test]
    fn test_exact_rst_ends_time_wait_and_inexact_gets_a_challenge_ack() {
        let (mut stack, mut peer) = daytime_stack(8);
        let mut status = Status::default();
        let snd_nxt =
            daytime_closed_by_stack(&mut stack, &mut peer, &mut status, 40000, Instant::ZERO);
        peer.send(&Tcp::new(40000, DAYTIME, 1500).rst().to_server())
            .unwrap();
        turn(&mut stack, &mut status, Instant::ZERO);
        let ch = out(&mut peer);
        assert!(ch.len() == 1 && ch[0].ack && ch[0].seq == snd_nxt, "{ch:?}");
        assert_eq!(stack.time_wait_count(), 1);
        peer.send(&Tcp::new(40000, DAYTIME, 1002).rst().to_server())
            .unwrap();
        turn(&mut stack, &mut status, Instant::ZERO);
        assert!(out(&mut peer).is_empty(), "nothing answers an RST");
        assert_eq!(stack.time_wait_count(), 0);
        assert_eq!(closed(&stack), [(1, CloseCause::ResetByPeer)]);
    }

    #[test]
    fn test_new_syn_reuses_the_tuple() {
        let (mut stack, mut peer) = daytime_stack(8);
        let mut status = Status::default();
        daytime_closed_by_stack(&mut stack, &mut peer, &mut status, 40000, Instant::ZERO);
        // An old SYN (not beyond RCV.NXT) is no new connection: a challenge ACK.
        peer.send(&Tcp::new(40000, DAYTIME, 10).syn().to_server())
            .unwrap();
        turn(&mut stack, &mut status, Instant::ZERO);
        let ch = out(&mut peer);
        assert!(ch.len() == 1 && ch[0].ack && !ch[0].syn, "{ch:?}");
        // A SYN beyond RCV.NXT opens a new incarnation.
        peer.send(&Tcp::new(40000, DAYTIME, 90_000).syn().mss(1460).to_server())
            .unwrap();
        turn(&mut stack, &mut status, Instant::ZERO);
        let synack = out(&mut peer);
        assert!(
            synack.iter().any(|p| p.syn && p.ack && p.ack_no == 90_001),
            "{synack:?}"
        );
        assert_eq!(stack.time_wait_count(), 0);
        assert_eq!(closed(&stack), [(1, CloseCause::Superseded)]);
        assert_eq!(stack.connection_count(), 1);
    }

    #[test]
    fn test_oldest_time_wait_gives_way_first_at_the_limit() {
        let (mut stack, mut peer) = daytime_stack(3);
        let mut status = Status::default();
        let mut now = Instant::ZERO;
        for port in [40001, 40002] {
            daytime_closed_by_stack(&mut stack, &mut peer, &mut status, port, now);
            now += Duration::from_secs(1);
        }
        // A half-open connection: one slot left, and it takes it.
        peer.send(&Tcp::new(41000, DAYTIME, 1).syn().to_server())
            .unwrap();
        turn(&mut stack, &mut status, now);
        out(&mut peer);
        assert_eq!((stack.connection_count(), stack.time_wait_count()), (1, 2));
        // At the limit (1 live + 2 in TIME-WAIT): the oldest TIME-WAIT gives way, not the
        // half-open one.
        peer.send(&Tcp::new(41001, DAYTIME, 1).syn().to_server())
            .unwrap();
        turn(&mut stack, &mut status, now);
        assert!(out(&mut peer).iter().any(|p| p.syn && p.ack));
        assert_eq!((stack.connection_count(), stack.time_wait_count()), (2, 1));
        assert_eq!(
            closed(&stack),
            [(1, CloseCause::TimeWaitCut(TimeWaitCut::ConnectionLimit))]
        );
        assert_eq!(stack.counters().conns_refused, 0);
        // Shutdown ends what is left in TIME-WAIT, and says so.
        stack.end_time_wait_all();
        assert_eq!(stack.time_wait_count(), 0);
        assert_eq!(
            closed(&stack)[1],
            (2, CloseCause::TimeWaitCut(TimeWaitCut::Shutdown))
        );
    }

    #[test]
    fn test_a_full_table_lets_its_oldest_entry_go() {
        let (mut stack, mut peer) = daytime_stack(8);
        stack.time_wait.cap = 1;
        let mut status = Status::default();
        for port in [40001, 40002] {
            daytime_closed_by_stack(&mut stack, &mut peer, &mut status, port, Instant::ZERO);
        }
        assert_eq!(stack.time_wait_count(), 1, "the bound holds");
        assert_eq!(
            closed(&stack),
            [(1, CloseCause::TimeWaitCut(TimeWaitCut::TableFull))]
        );
    }
}
