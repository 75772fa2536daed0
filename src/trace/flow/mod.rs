//! The flow tracker: connection ids, relative sequence numbers, handshake / close / retransmission /
//! reset labels, per-flow segment records and close summaries.
//!
//! Flows are keyed by protocol and 4-tuple seen from the stack: `local` is the stack's end (source of
//! `out` frames, destination of `in` frames). TCP flows follow the segments; UDP 4-tuples and ICMP echo
//! identifiers get lighter records of the same shape. The table is bounded: when full, a closed (or
//! non-TCP) flow is evicted first, else the oldest live one; evictions are counted. Beside a stack,
//! a TCP flow the stack never opened (an ACK or FIN flood, a refused SYN) is retirable from its first
//! frame, like a UDP flow, so only the stack's own connections are live flows.
//!
//! When a flow ends: one the stack opened ends when the stack says `Closed` ([`FlowTable::end`]), so
//! its record holds its last ACK, TIME-WAIT, RSTs the stack ignored and segments still in flight;
//! one read from a capture lingers once both ends are done (inferred) and ends when a new SYN reuses
//! its tuple, at the end of the capture, or when retired (counting every frame of the connection,
//! as Wireshark's conversation table does); any other ends at its first RST or when both FINs are
//! acknowledged.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

use super::analysis::{Analysis, DupAck};
use super::decode::{Decoded, TcpFlags, TcpInfo};
use super::narrate::NarrationLimit;
use super::records::{FlowRecord, Labels, SegmentRecord, Side, TcpFiguresAt};
use crate::device::Direction;
use crate::stack::ConnIds;

mod tcp;

/// Default bound on the flow table.
pub(crate) const DEFAULT_FLOW_CAP: usize = 65536;
/// Closed flows kept for `closed_flows`.
pub(crate) const CLOSED_KEPT: usize = 64;
/// Closed TCP flows and UDP/ICMP flows kept in the table (to label late segments such as a final ACK
/// or a retransmitted FIN); beyond this the one that became evictable first is retired. Without it
/// every closed connection kept its segment record (about 13 KiB) until the table reached its cap:
/// some 850 MiB at the default cap.
pub const EVICTABLE_KEPT: usize = 1024;
const RST_HINTS_CAP: usize = 1024;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FlowKey {
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP echo; ICMPv6 echo is filed under 1 too).
    pub proto: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl std::hash::Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        crate::key::hash_tuple(
            h,
            self.proto,
            (self.local.ip(), self.local.port()),
            (self.remote.ip(), self.remote.port()),
        );
    }
}

/// Per-direction TCP state (index 0: peer to stack, 1: stack to peer).
#[derive(Debug, Clone, Copy, Default)]
struct DirState {
    /// First sequence number (the ISN, or the first one seen when the SYN was missed).
    base: Option<u32>,
    /// The last acknowledgment number this side sent (absolute).
    last_ack: Option<u32>,
    syn: bool,
    /// Sequence number of this direction's FIN.
    fin: Option<u32>,
    /// 1 if this side closed first, 2 otherwise.
    fin_no: u8,
    fin_acked: bool,
}

#[derive(Debug)]
struct Flow {
    rec: FlowRecord,
    dirs: [DirState; 2],
    /// 0 nothing, 1 SYN seen, 2 SYN-ACK seen, 3 handshake complete.
    stage: u8,
    syn_at: i64,
    closed: bool,
    /// A frame of it was seen (a flow the stack opened exists before its first frame).
    seen: bool,
    /// This flow's key in `evictable` (0: not evictable).
    evict_seq: u64,
    /// The stack opened it ([`FlowTable::open`]): it ends when the stack says so
    /// ([`FlowTable::end`]), not at the look of a frame, so that its last ACK, TIME-WAIT, RSTs the
    /// stack ignored and segments still in flight are all in its record.
    owned: bool,
    /// Read from a capture: both ends are done (by the inferred states), for this reason; the flow
    /// lingers, counting what still comes on its tuple (a re-sent FIN in TIME-WAIT, segments in
    /// flight after an RST), until a new SYN reuses the tuple, the capture ends, or it is retired.
    done: Option<&'static str>,
    /// Wireshark's TCP analysis of the flow's segments.
    ana: Analysis,
}

/// What the tracker added to one frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Observed {
    pub conn: Option<u64>,
    /// The frame started a new flow (explain its addresses).
    pub new_flow: bool,
    pub rel_seq: Option<u32>,
    pub rel_ack: Option<u32>,
    pub labels: Labels,
    pub rst_reason: Option<&'static str>,
    /// The frame closed its TCP flow: its record is the newest of `closed()`.
    pub closed: bool,
    /// A duplicate ACK: which one, of which frame.
    pub dup_ack: Option<DupAck>,
    /// The window scale shift in force for this segment (negotiated, not a SYN).
    pub win_shift: Option<u8>,
}

fn idx(dir: Direction) -> usize {
    match dir {
        Direction::In => 0,
        Direction::Out => 1,
    }
}

pub(crate) struct FlowTable {
    /// Boxed: a hash table keeps 1/8 to 9/16 of its slots empty, and slots holding the whole flow
    /// (536 bytes) made the table of 10,000 idle connections 10 MB where boxes take 6.8.
    map: HashMap<FlowKey, Box<Flow>>,
    /// Every flow in the table, by id (oldest first).
    order: BTreeMap<u64, FlowKey>,
    /// Flows that may go first when the table is full: closed TCP, UDP, ICMP; in the order they
    /// became evictable.
    evictable: BTreeMap<u64, FlowKey>,
    next_evict_seq: u64,
    cap: usize,
    evictions: u64,
    closed: VecDeque<FlowRecord>,
    /// How many of the newest `closed` records the tracer has not reported yet.
    unreported: usize,
    rst_hints: HashMap<(SocketAddr, SocketAddr), &'static str>,
    /// Shared with the stack (and through it the host side), so that an id names one connection.
    ids: ConnIds,
    /// A stack tells this table which connections it opens ([`FlowTable::open`]): a TCP flow that
    /// only frames started is then traffic the stack has no connection for.
    stack_driven: bool,
    narration: NarrationLimit,
    /// Frames read from a capture: the server is `local`, the client `remote` (see `trace::infer`).
    from_capture: bool,
}

impl Default for FlowTable {
    fn default() -> Self {
        Self::new(DEFAULT_FLOW_CAP)
    }
}

impl FlowTable {
    pub(crate) fn new(cap: usize) -> Self {
        FlowTable {
            map: HashMap::new(),
            order: BTreeMap::new(),
            evictable: BTreeMap::new(),
            next_evict_seq: 1,
            cap: cap.max(1),
            evictions: 0,
            closed: VecDeque::new(),
            unreported: 0,
            rst_hints: HashMap::new(),
            ids: ConnIds::default(),
            stack_driven: false,
            narration: NarrationLimit::new(0),
            from_capture: false,
        }
    }

    /// The flows are read from a capture: names the ends server and client instead of stack and peer.
    pub(crate) fn set_from_capture(&mut self) {
        self.from_capture = true;
    }

    /// Narrates at most `per_s` new TCP connections a second (0: all). Call before any traffic.
    pub(crate) fn set_narration_limit(&mut self, per_s: u32) {
        self.narration = NarrationLimit::new(per_s);
    }

    /// Which connections are narrated (new TCP flows, and host connections through the tracer).
    pub(crate) fn narration(&self) -> &NarrationLimit {
        &self.narration
    }

    /// A fresh id from the one counter.
    pub(crate) fn alloc_id(&self) -> u64 {
        self.ids.next()
    }

    /// Takes ids from `ids` (the stack's) from now on; the stack will also say which connections it
    /// opens, so that TCP flows it never opened can be retired like UDP and ICMP flows.
    pub(crate) fn share_ids(&mut self, ids: ConnIds) {
        self.ids = ids;
        self.stack_driven = true;
    }

    /// The stack opened connection `id` on this 4-tuple: its flow starts now, under the stack's id
    /// (an older flow on the same tuple is over).
    pub(crate) fn open(&mut self, now_us: i64, local: SocketAddr, remote: SocketAddr, id: u64) {
        let key = FlowKey {
            proto: TCP,
            local,
            remote,
        };
        if self.map.get(&key).is_some_and(|f| f.rec.id == id) {
            return;
        }
        // The peer's SYNs seen so far (an earlier one lost on the way in, say) are this connection's
        // first frames: the flow keeps them, and its analysis, under the stack's id.
        if let Some(f) = self.map.get_mut(&key) {
            if !f.closed && f.stage <= 1 && !f.dirs[1].syn && f.dirs[0].syn {
                f.owned = true;
                let old = std::mem::replace(&mut f.rec.id, id);
                if f.evict_seq != 0 {
                    self.evictable.remove(&f.evict_seq);
                    f.evict_seq = 0;
                }
                self.order.remove(&old);
                self.order.insert(id, key);
                return;
            }
        }
        if self.map.get(&key).is_some_and(|f| !f.closed) {
            self.close(&key, now_us, "superseded");
        }
        // An earlier attempt that ended at the peer's SYN (the stack dropped it before its
        // listener): the peer's next SYN is most likely that SYN again, and the wire analysis
        // goes on across the two connections, as Wireshark's does (a retransmission). A SYN with
        // another number starts it afresh (see `observe_tcp`).
        let carried = self
            .map
            .get(&key)
            .filter(|f| f.stage <= 1 && f.dirs[0].syn && !f.dirs[1].syn)
            .map(|f| (f.dirs, f.ana));
        self.remove(&key);
        self.create_with(key, now_us, id);
        if let Some(f) = self.map.get_mut(&key) {
            f.owned = true;
            if let Some((dirs, ana)) = carried {
                f.dirs = dirs;
                f.ana = ana;
                f.stage = 1;
            }
        }
    }

    /// The stack ended connection `local`/`remote` for `reason`; returns whether its flow was still
    /// open (it is closed now).
    pub(crate) fn end(
        &mut self,
        now_us: i64,
        local: SocketAddr,
        remote: SocketAddr,
        reason: &'static str,
    ) -> bool {
        let key = FlowKey {
            proto: TCP,
            local,
            remote,
        };
        // The summary names the close as a reader knows it: by FIN when both FINs were
        // acknowledged, by RST from the peer when the stack took a reset.
        let reason = match (reason, self.map.get_mut(&key)) {
            ("CLOSED", Some(f)) if f.dirs[0].fin_acked && f.dirs[1].fin_acked => "FIN",
            ("reset by the peer", Some(f)) => {
                f.rec.rst_by = Some(Side::Peer);
                "RST"
            }
            (r, _) => r,
        };
        self.close(&key, now_us, reason)
    }

    pub(crate) fn evictions(&self) -> u64 {
        self.evictions
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Live and recently closed flows still in the table, oldest first.
    pub(crate) fn records(&self) -> impl Iterator<Item = &FlowRecord> {
        self.order
            .values()
            .filter_map(|k| self.map.get(k))
            .map(|f| &f.rec)
    }

    /// The last [`CLOSED_KEPT`] closed TCP flows, oldest first.
    pub(crate) fn closed(&self) -> &VecDeque<FlowRecord> {
        &self.closed
    }

    pub(crate) fn get(
        &self,
        proto: u8,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<&FlowRecord> {
        self.map
            .get(&FlowKey {
                proto,
                local,
                remote,
            })
            .map(|f| &f.rec)
    }

    /// The id of the TCP flow `local`/`remote`, creating the flow on first sight.
    pub(crate) fn tcp_id(
        &mut self,
        now_us: i64,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> (u64, bool) {
        let key = FlowKey {
            proto: TCP,
            local,
            remote,
        };
        if let Some(f) = self.map.get(&key) {
            return (f.rec.id, false);
        }
        (self.create(key, now_us), true)
    }

    /// The stack moved a socket from `from` to `to`. Returns the flow id and whether the flow closed now.
    pub(crate) fn tcp_state(
        &mut self,
        now_us: i64,
        local: SocketAddr,
        remote: SocketAddr,
        _from: &str,
        to: &str,
    ) -> (u64, bool) {
        let key = FlowKey {
            proto: TCP,
            local,
            remote,
        };
        // An old, closed flow on the same 4-tuple and a socket starting over: a new connection.
        let restart = to == "SYN-SENT" || to == "SYN-RECEIVED";
        if restart && self.map.get(&key).is_some_and(|f| f.closed) {
            self.remove(&key);
        }
        let (id, _) = self.tcp_id(now_us, local, remote);
        let mut closed_now = false;
        // A connection the stack opened ends when the stack says `Closed` (its cause is the reason);
        // a state change alone closes only a flow the stack never announced.
        let owned = self.map.get(&key).is_some_and(|f| f.owned);
        let reason = match to {
            "CLOSED" if !owned => Some("CLOSED"),
            "TIME-WAIT" if !owned => Some("TIME-WAIT"),
            _ => None,
        };
        if let Some(reason) = reason {
            closed_now = self.close(&key, now_us, reason);
        }
        if let Some(f) = self.map.get_mut(&key) {
            if to == "SYN-SENT" && f.rec.opened_by.is_none() {
                f.rec.opened_by = Some(Side::Stack);
            }
            if to == "SYN-RECEIVED" && f.rec.opened_by.is_none() {
                f.rec.opened_by = Some(Side::Peer);
            }
        }
        (id, closed_now)
    }

    /// The next RST from `local` to `remote` is sent for `reason`.
    pub(crate) fn rst_hint(&mut self, local: SocketAddr, remote: SocketAddr, reason: &'static str) {
        if self.rst_hints.len() >= RST_HINTS_CAP {
            self.rst_hints.clear();
        }
        self.rst_hints.insert((local, remote), reason);
    }

    /// Follows one frame, number `frame` of the capture (1-based; every frame counted); `dropped`: it
    /// was lost right after this point (it still crossed it, so the analysis counts it, but it
    /// cannot complete a handshake). Malformed frames and frames with a bad checksum are not
    /// followed (the stack drops them); they only get the id of an existing flow.
    pub(crate) fn observe(
        &mut self,
        now_us: i64,
        dir: Direction,
        d: &Decoded,
        frame: u64,
        dropped: bool,
    ) -> Observed {
        let Some(ip) = d.ip else {
            return Observed::default();
        };
        let (local_ip, remote_ip) = match dir {
            Direction::Out => (ip.src, ip.dst),
            Direction::In => (ip.dst, ip.src),
        };
        let ends = |src_port: u16, dst_port: u16| -> (SocketAddr, SocketAddr) {
            let (lp, rp) = match dir {
                Direction::Out => (src_port, dst_port),
                Direction::In => (dst_port, src_port),
            };
            (
                SocketAddr::new(local_ip, lp),
                SocketAddr::new(remote_ip, rp),
            )
        };
        let (key, kind, seq, len) = if let Some(t) = d.tcp {
            let (local, remote) = ends(t.src_port, t.dst_port);
            let key = FlowKey {
                proto: TCP,
                local,
                remote,
            };
            if d.problem().is_some() {
                return self.existing(&key);
            }
            return self.observe_tcp(now_us, dir, key, &t, frame, dropped);
        } else if let Some(u) = d.udp {
            let (local, remote) = ends(u.src_port, u.dst_port);
            (
                FlowKey {
                    proto: UDP,
                    local,
                    remote,
                },
                "udp",
                0,
                u.len as u32,
            )
        } else if let Some(i) = d.icmp {
            if !(i.is_echo_request() || i.is_echo_reply()) {
                return Observed::default();
            }
            let id = i.ident.unwrap_or(0);
            let (local, remote) = ends(id, id);
            (
                FlowKey {
                    proto: ICMP,
                    local,
                    remote,
                },
                i.name,
                i.seq.unwrap_or(0) as u32,
                i.len as u32,
            )
        } else {
            return Observed::default();
        };
        if d.problem().is_some() {
            return self.existing(&key);
        }
        let new_flow = !self.map.contains_key(&key);
        let id = match self.map.get(&key) {
            Some(f) => f.rec.id,
            None => self.create(key, now_us),
        };
        if let Some(f) = self.map.get_mut(&key) {
            f.rec.push(SegmentRecord {
                t_us: now_us,
                dir,
                kind,
                flags: TcpFlags::default(),
                seq,
                ack: None,
                len,
                win: 0,
                mss: None,
                labels: Labels::default(),
                rst_reason: None,
                dropped: false,
                abs_seq: seq,
                dup_ack: None,
                win_shift: None,
            });
        }
        Observed {
            conn: Some(id),
            new_flow,
            ..Observed::default()
        }
    }

    fn existing(&self, key: &FlowKey) -> Observed {
        Observed {
            conn: self.map.get(key).map(|f| f.rec.id),
            ..Observed::default()
        }
    }

    /// A frame lost on the way: mark its segment record.
    pub(crate) fn mark_dropped(&mut self, dir: Direction, d: &Decoded) -> bool {
        let (Some(ip), Some(t)) = (d.ip, d.tcp) else {
            return false;
        };
        let (local, remote) = match dir {
            Direction::Out => (
                SocketAddr::new(ip.src, t.src_port),
                SocketAddr::new(ip.dst, t.dst_port),
            ),
            Direction::In => (
                SocketAddr::new(ip.dst, t.dst_port),
                SocketAddr::new(ip.src, t.src_port),
            ),
        };
        let key = FlowKey {
            proto: TCP,
            local,
            remote,
        };
        match self.map.get_mut(&key) {
            Some(f) => {
                let found = f.rec.mark_dropped(dir, t.seq, t.flags, t.len);
                if found && f.stage == 3 && f.rec.handshake_us.is_none() {
                    // The ACK that completed the handshake was lost after it was seen.
                    f.stage = 2;
                }
                found
            }
            None => false,
        }
    }

    /// Reading a capture: both ends of `server`/`client` are done (inferred: CLOSED or TIME-WAIT) for
    /// `reason`. The flow stays to count what still comes on its tuple; it becomes evictable, and
    /// closes (for `reason`) when a new SYN reuses the tuple, at [`FlowTable::finish`], or when it is
    /// retired to keep the table bounded.
    pub(crate) fn done(
        &mut self,
        now_us: i64,
        server: SocketAddr,
        client: SocketAddr,
        reason: &'static str,
    ) {
        let key = FlowKey {
            proto: TCP,
            local: server,
            remote: client,
        };
        let Some(f) = self.map.get_mut(&key) else {
            return;
        };
        if f.closed || f.done.is_some() {
            return;
        }
        f.done = Some(reason);
        self.make_evictable(&key, now_us);
    }

    /// The capture ended: the connections whose ends were both done close now, oldest first.
    pub(crate) fn finish(&mut self, now_us: i64) {
        let done: Vec<FlowKey> = self
            .order
            .values()
            .filter(|k| {
                self.map
                    .get(k)
                    .is_some_and(|f| !f.closed && f.done.is_some())
            })
            .copied()
            .collect();
        for k in done {
            let reason = self.map.get(&k).and_then(|f| f.done).unwrap_or("FIN");
            self.close(&k, now_us, reason);
        }
    }

    /// How many closed flows the tracer has not reported yet (the newest of `closed()`); resets it.
    pub(crate) fn take_unreported(&mut self) -> usize {
        std::mem::take(&mut self.unreported)
    }

    /// Closes a TCP flow once: records it in the closed ring. Returns whether it closed now.
    fn close(&mut self, key: &FlowKey, now_us: i64, reason: &'static str) -> bool {
        let Some(f) = self.map.get_mut(key) else {
            return false;
        };
        if f.closed {
            return false;
        }
        f.closed = true;
        f.rec.closed_us = Some(now_us);
        f.rec.close_reason = Some(reason);
        if key.proto == TCP {
            if self.closed.len() >= CLOSED_KEPT {
                self.closed.pop_front();
            }
            self.closed.push_back(f.rec.clone());
            self.unreported = (self.unreported + 1).min(CLOSED_KEPT);
        }
        self.make_evictable(key, now_us);
        true
    }

    /// Marks a flow evictable (once), retiring the oldest evictable ones past [`EVICTABLE_KEPT`] (a
    /// capture's connection that was done and lingering closes then, for its reason).
    fn make_evictable(&mut self, key: &FlowKey, now_us: i64) {
        let Some(f) = self.map.get_mut(key) else {
            return;
        };
        if f.evict_seq == 0 {
            f.evict_seq = self.next_evict_seq;
            self.next_evict_seq += 1;
            self.evictable.insert(f.evict_seq, *key);
        }
        while self.evictable.len() > EVICTABLE_KEPT {
            let Some((_, old)) = self.evictable.first_key_value() else {
                break;
            };
            let old = *old;
            if let Some(reason) = self
                .map
                .get(&old)
                .filter(|f| !f.closed)
                .and_then(|f| f.done)
            {
                self.close(&old, now_us, reason);
            }
            self.remove(&old);
        }
    }

    fn remove(&mut self, key: &FlowKey) {
        if let Some(f) = self.map.remove(key) {
            self.order.remove(&f.rec.id);
            self.evictable.remove(&f.evict_seq);
        }
    }

    fn create(&mut self, key: FlowKey, now_us: i64) -> u64 {
        let id = self.alloc_id();
        self.create_with(key, now_us, id)
    }

    fn create_with(&mut self, key: FlowKey, now_us: i64, id: u64) -> u64 {
        while self.map.len() >= self.cap {
            let victim = match self.evictable.first_key_value() {
                Some((_, k)) => *k,
                None => match self.order.first_key_value() {
                    Some((_, k)) => *k,
                    None => break,
                },
            };
            if victim.proto == TCP {
                let reason = self.map.get(&victim).and_then(|f| f.done);
                self.close(&victim, now_us, reason.unwrap_or("evicted"));
            }
            self.remove(&victim);
            self.evictions += 1;
        }
        let proto = match key.proto {
            TCP => "tcp",
            UDP => "udp",
            _ => "icmp",
        };
        let mut rec = FlowRecord::new(id, proto, key.local, key.remote, now_us);
        rec.from_capture = self.from_capture;
        if key.proto == TCP {
            rec.narrated = self.narration.admit(now_us);
        }
        self.map.insert(
            key,
            Box::new(Flow {
                rec,
                dirs: [DirState::default(); 2],
                stage: 0,
                syn_at: now_us,
                closed: false,
                seen: false,
                evict_seq: 0,
                owned: false,
                done: None,
                ana: Analysis::default(),
            }),
        );
        self.order.insert(id, key);
        if key.proto != TCP {
            self.make_evictable(&key, now_us);
        }
        id
    }

    /// Files the stack's TCP figures with connection `id` as of `t_us` (`last`: its socket was let
    /// go): in the table (live, or lingering after its close) and in the closed ring, wherever it
    /// still is.
    pub(crate) fn set_tcp_figures(
        &mut self,
        id: u64,
        local: SocketAddr,
        remote: SocketAddr,
        t_us: i64,
        figures: crate::stack::TcpFigures,
        last: bool,
    ) {
        let at = TcpFiguresAt {
            t_us,
            figures,
            last,
        };
        let key = FlowKey {
            proto: TCP,
            local,
            remote,
        };
        let file = |slot: &mut Option<Box<TcpFiguresAt>>| match slot {
            Some(b) => **b = at,
            None => *slot = Some(Box::new(at)),
        };
        if let Some(f) = self.map.get_mut(&key).filter(|f| f.rec.id == id) {
            file(&mut f.rec.tcp);
        }
        if let Some(r) = self.closed.iter_mut().rev().find(|r| r.id == id) {
            file(&mut r.tcp);
        }
    }

    /// The record of the flow with this id, if it is still in the table.
    pub(crate) fn record(&self, id: u64) -> Option<&FlowRecord> {
        self.map.get(self.order.get(&id)?).map(|f| &f.rec)
    }

    /// Addresses involved in a flow (for explanations).
    pub(crate) fn ends(&self, id: u64) -> Option<(SocketAddr, SocketAddr, &'static str)> {
        let key = self.order.get(&id)?;
        let f = self.map.get(key)?;
        Some((f.rec.local, f.rec.remote, f.rec.proto))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{Eth, Tcp, SERVER_V4};
    use crate::trace::decode::decode;
    use std::net::Ipv4Addr;

    fn seen(t: &mut FlowTable, now_us: i64, dir: Direction, frame: &[u8]) -> Observed {
        t.observe(now_us, dir, &decode(frame), 0, false)
    }

    /// A table beside a stack (which shares its ids with it).
    fn stack_driven() -> FlowTable {
        let mut t = FlowTable::default();
        t.share_ids(ConnIds::default());
        t
    }

    #[test]
    fn test_empty_slots_of_the_table_cost_a_key_and_a_pointer() {
        // hashbrown keeps 1/8 to 9/16 of its slots empty (10,000 flows: 16,384 slots), each the size
        // of an entry: the flow itself goes behind a pointer, allocated only for a flow that exists.
        fn slot<K, V>(_: &HashMap<K, V>) -> usize {
            std::mem::size_of::<(K, V)>()
        }
        let t = FlowTable::default();
        assert!(slot(&t.map) <= 80, "{} bytes a slot", slot(&t.map));
    }

    #[test]
    fn test_flows_the_stack_never_opened_are_retired_past_the_evictable_limit() {
        let mut t = stack_driven();
        // A connection the stack opened: live, whatever comes after it.
        let (local, remote) = (
            "192.168.69.1:7".parse().unwrap(),
            "192.168.69.100:40000".parse().unwrap(),
        );
        t.open(0, local, remote, 1);
        let n = EVICTABLE_KEPT as u32 + 3000;
        for i in 0..n {
            let src = Ipv4Addr::from(0xc612_0000 + i);
            let seg = if i % 2 == 0 {
                Tcp::new(1000 + i as u16, 7, i).ack(7)
            } else {
                Tcp::new(1000 + i as u16, 7, i).fin().ack(7)
            };
            let o = seen(
                &mut t,
                i as i64,
                Direction::In,
                &Eth::to_server().ipv4(src, SERVER_V4).tcp(&seg),
            );
            assert!(o.conn.is_some() && !o.closed);
        }
        assert_eq!(t.len(), EVICTABLE_KEPT + 1);
        assert_eq!(t.evictions(), 0, "retired, not evicted");
        assert!(
            t.get(TCP, local, remote).is_some(),
            "the stack's own flow stays"
        );
        assert!(t.closed().is_empty(), "retiring tells nothing");
    }

    #[test]
    fn test_a_syn_syn_ack_exchange_keeps_a_frame_started_flow_live() {
        let mut t = stack_driven();
        let peer = Ipv4Addr::new(192, 168, 69, 100);
        let syn = Eth::to_server()
            .ipv4(peer, SERVER_V4)
            .tcp(&Tcp::new(40000, 7, 10).syn());
        let syn_ack = Eth::to_client()
            .ipv4(SERVER_V4, peer)
            .tcp(&Tcp::new(7, 40000, 99).syn().ack(11));
        seen(&mut t, 0, Direction::In, &syn);
        seen(&mut t, 1, Direction::Out, &syn_ack);
        // A SYN-ACK from outside does not count: only the stack sends ours.
        let spoofed = Eth::to_server()
            .ipv4(Ipv4Addr::new(192, 168, 69, 66), SERVER_V4)
            .tcp(&Tcp::new(40001, 7, 10).syn().ack(1));
        seen(&mut t, 2, Direction::In, &spoofed);
        for i in 0..EVICTABLE_KEPT as u32 + 10 {
            let src = Ipv4Addr::from(0xc612_0000 + i);
            let ack = Eth::to_server()
                .ipv4(src, SERVER_V4)
                .tcp(&Tcp::new(1, 7, i).ack(1));
            seen(&mut t, 10 + i as i64, Direction::In, &ack);
        }
        let local = SocketAddr::new(SERVER_V4.into(), 7);
        assert!(t
            .get(TCP, local, SocketAddr::new(peer.into(), 40000))
            .is_some());
        assert!(t
            .get(TCP, local, "192.168.69.66:40001".parse().unwrap())
            .is_none());
    }

    /// A textbook close with the peer's FIN sent again into TIME-WAIT (its first ACK lost):
    /// peer closes first here, as seen from the stack's device.
    fn close_with_fin_again() -> Vec<(Direction, Vec<u8>)> {
        let peer = Ipv4Addr::new(192, 168, 69, 100);
        let i = |t: Tcp| {
            (
                Direction::In,
                Eth::to_server().ipv4(peer, SERVER_V4).tcp(&t),
            )
        };
        let o = |t: Tcp| {
            (
                Direction::Out,
                Eth::to_client().ipv4(SERVER_V4, peer).tcp(&t),
            )
        };
        vec![
            o(Tcp::new(7, 40000, 100).syn()),
            i(Tcp::new(40000, 7, 500).syn().ack(101)),
            o(Tcp::new(7, 40000, 101).ack(501)),
            o(Tcp::new(7, 40000, 101).fin().ack(501)),
            i(Tcp::new(40000, 7, 501).fin().ack(102)),
            o(Tcp::new(7, 40000, 102).ack(502)),
            // The peer did not get that ACK: its FIN again, and the stack's ACK from TIME-WAIT.
            i(Tcp::new(40000, 7, 501).fin().ack(102)),
            o(Tcp::new(7, 40000, 102).ack(502)),
        ]
    }

    #[test]
    fn test_a_flow_the_stack_owns_ends_only_when_the_stack_says_so() {
        let mut t = stack_driven();
        let (local, remote) = (
            "192.168.69.1:7".parse().unwrap(),
            "192.168.69.100:40000".parse().unwrap(),
        );
        t.open(0, local, remote, 1);
        for (n, (dir, f)) in close_with_fin_again().iter().enumerate() {
            let o = seen(&mut t, n as i64, *dir, f);
            assert!(!o.closed, "frame {n} closed the flow");
        }
        // TIME-WAIT is not the end, nor is CLOSED on its own: the stack's `Closed` is.
        t.tcp_state(9, local, remote, "FIN-WAIT-2", "TIME-WAIT");
        assert!(t.closed().is_empty());
        assert!(t.end(10, local, remote, "CLOSED"));
        assert_eq!(t.take_unreported(), 1);
        let f = t.closed().back().unwrap();
        assert_eq!(f.close_reason, Some("FIN"), "both FINs acknowledged");
        assert_eq!((f.inbound.segments, f.outbound.segments), (3, 5));
        assert!(!t.end(11, local, remote, "CLOSED"), "once");
    }

    #[test]
    fn test_a_capture_connection_ends_at_a_new_syn_or_the_end_of_the_capture() {
        let mut t = FlowTable::default();
        t.set_from_capture();
        let (server, client) = (
            "192.168.69.1:7".parse().unwrap(),
            "192.168.69.100:40000".parse().unwrap(),
        );
        let frames = close_with_fin_again();
        for (n, (dir, f)) in frames.iter().enumerate() {
            if n == 6 {
                // Both ends done (inferred): the frames that follow still count.
                t.done(n as i64, server, client, "FIN");
            }
            assert!(!seen(&mut t, n as i64, *dir, f).closed);
        }
        assert!(t.closed().is_empty());
        t.finish(20);
        assert_eq!(t.take_unreported(), 1);
        let f = t.closed().back().unwrap();
        assert_eq!(f.close_reason, Some("FIN"));
        assert_eq!((f.inbound.segments, f.outbound.segments), (3, 5));

        // Done, then a new SYN on the tuple: the old connection ends before it.
        let mut t = FlowTable::default();
        t.set_from_capture();
        for (n, (dir, f)) in frames.iter().enumerate() {
            seen(&mut t, n as i64, *dir, f);
        }
        t.done(8, server, client, "FIN");
        let syn = Eth::to_client()
            .ipv4(SERVER_V4, Ipv4Addr::new(192, 168, 69, 100))
            .tcp(&Tcp::new(7, 40000, 9000).syn());
        let o = seen(&mut t, 9, Direction::Out, &syn);
        assert_eq!(t.take_unreported(), 1);
        assert_eq!(t.closed().back().unwrap().outbound.segments, 5);
        assert_ne!(
            o.conn,
            Some(t.closed().back().unwrap().id),
            "a new connection"
        );
    }

    #[test]
    fn test_lingering_capture_connections_are_bounded_and_still_told() {
        let mut t = FlowTable::default();
        t.set_from_capture();
        let server: SocketAddr = "192.168.69.1:7".parse().unwrap();
        let n = EVICTABLE_KEPT + 10;
        for i in 0..n {
            let port = 10000 + i as u16;
            let syn = Eth::to_server()
                .ipv4(Ipv4Addr::new(192, 168, 69, 100), SERVER_V4)
                .tcp(&Tcp::new(port, 7, 1).syn());
            seen(&mut t, i as i64, Direction::In, &syn);
            t.done(
                i as i64,
                server,
                SocketAddr::new(Ipv4Addr::new(192, 168, 69, 100).into(), port),
                "RST",
            );
        }
        assert_eq!(t.len(), EVICTABLE_KEPT);
        assert_eq!(t.take_unreported(), 10, "the retired ones were told");
        assert_eq!(t.closed().back().unwrap().close_reason, Some("RST"));
    }

    #[test]
    fn test_a_syn_the_stack_dropped_and_its_retransmission_keep_one_analysis() {
        let mut t = stack_driven();
        let (local, remote) = (
            "192.168.69.1:9".parse().unwrap(),
            "192.168.69.100:49155".parse().unwrap(),
        );
        let syn = |seq| {
            Eth::to_server()
                .ipv4(Ipv4Addr::new(192, 168, 69, 100), SERVER_V4)
                .tcp(&Tcp::new(49155, 9, seq).syn())
        };
        seen(&mut t, 0, Direction::In, &syn(1000));
        assert!(t.end(1, local, remote, "SYN dropped before its listener"));
        t.open(2, local, remote, 7);
        let o = seen(&mut t, 3, Direction::In, &syn(1000));
        assert_eq!(o.conn, Some(7));
        assert!(
            o.labels.as_slice().contains(&"retransmission"),
            "{:?}",
            o.labels.as_slice()
        );
        // Another number: a new attempt, analysed afresh, still the stack's connection.
        let mut t = stack_driven();
        seen(&mut t, 0, Direction::In, &syn(1000));
        t.end(1, local, remote, "SYN dropped before its listener");
        t.open(2, local, remote, 7);
        let o = seen(&mut t, 3, Direction::In, &syn(5000));
        assert_eq!(o.conn, Some(7));
        assert!(!o.labels.as_slice().contains(&"retransmission"));
        assert_eq!(o.rel_seq, Some(0));
    }
}
