//! Read-only records for later consumers (ladder diagrams, the `/live` page): per-flow segment
//! records, closed-flow records and a ring of recent packet summaries.
//!
//! All plain structs with pub fields and `serde::Serialize`. A [`PacketRecord`] is `Copy` and holds no
//! heap data, so keeping the ring costs no allocation per frame; its one-line summary is rendered on
//! demand ([`PacketRecord::summary`]).

use serde::Serialize;
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;

use super::analysis::DupAck;
use super::decode::{Decoded, TcpFlags};
use crate::device::Direction;

mod packets;
pub use packets::PacketRecord;
pub(crate) use packets::{PacketRing, Summary, RECENT_PACKETS};

/// Up to eight static labels (`"handshake 1/3"`, `"retransmission"`, ...), serialized as a list.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Labels {
    items: [&'static str; 8],
    n: u8,
}

impl Labels {
    /// Adds a label.
    pub fn push(&mut self, label: &'static str) {
        if let Some(slot) = self.items.get_mut(self.n as usize) {
            *slot = label;
            self.n += 1;
        }
    }

    /// The labels, in order.
    pub fn as_slice(&self) -> &[&'static str] {
        &self.items[..self.n as usize]
    }

    /// Whether this label is among them.
    pub fn contains(&self, label: &str) -> bool {
        self.as_slice().contains(&label)
    }

    /// No label.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Takes a label away; returns whether it was there.
    pub fn remove(&mut self, label: &str) -> bool {
        let n = self.n as usize;
        let Some(i) = self.items[..n].iter().position(|l| *l == label) else {
            return false;
        };
        self.items.copy_within(i + 1..n, i);
        self.n -= 1;
        true
    }

    /// Whether one of them names a retransmission (plain, fast or spurious).
    pub fn has_retransmission(&self) -> bool {
        self.as_slice()
            .iter()
            .any(|l| super::analysis::is_retransmission(l))
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(s)
    }
}

/// Which end of a flow did something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The userspace stack (our end).
    Stack,
    /// The other end, across the link.
    Peer,
}

impl Side {
    /// The side that sent a frame going this way.
    pub fn of(dir: Direction) -> Side {
        match dir {
            Direction::Out => Side::Stack,
            Direction::In => Side::Peer,
        }
    }
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Stack => "the stack",
            Side::Peer => "the peer",
        }
    }
}

/// One segment (or datagram, or echo message) of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SegmentRecord {
    /// Microseconds since start.
    pub t_us: i64,
    /// Which way it crossed the device.
    pub dir: Direction,
    /// `"tcp"`, `"udp"`, `"echo request"`, `"echo reply"`.
    pub kind: &'static str,
    /// TCP flags (empty for UDP and ICMP).
    pub flags: TcpFlags,
    /// TCP: relative sequence number. ICMP echo: the echo sequence number. UDP: 0.
    pub seq: u32,
    /// TCP: relative acknowledgment number, when ACK is set.
    pub ack: Option<u32>,
    /// Payload bytes.
    pub len: u32,
    /// TCP window field (unscaled).
    pub win: u16,
    /// TCP MSS option, when the segment carries one (SYNs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mss: Option<u16>,
    /// What the flow tracker named it (handshake 1/3, retransmission...).
    pub labels: Labels,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Why the RST was sent, when the stack said.
    pub rst_reason: Option<&'static str>,
    /// The fault injector (or a full link) lost this one.
    pub dropped: bool,
    /// Absolute sequence number (to match a later drop notice); not serialized.
    #[serde(skip)]
    pub abs_seq: u32,
    /// A duplicate ACK: its number in the run and the frame whose ACK it repeats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dup_ack: Option<DupAck>,
    /// The window scale shift in force (negotiated by both SYNs; never on a SYN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub win_shift: Option<u8>,
}

/// Segments, bytes and retransmissions one way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DirStats {
    /// Segments recorded.
    pub segments: u64,
    /// Payload bytes, retransmitted ones included (what crossed the wire).
    pub bytes: u64,
    /// Segments labelled as retransmissions (plain, fast or spurious), by direction.
    pub retransmissions: u64,
}

/// Segments kept per flow: the first [`FIRST_KEPT`] and the last [`LAST_KEPT`]; the ones between are
/// only counted (`folded`).
pub(crate) const FIRST_KEPT: usize = 64;
/// Records reserved when a flow's first segment is kept (doubling up to [`FIRST_KEPT`]): an idle
/// connection holds its three handshake segments, so room for four is all it pays for.
const FIRST_RESERVE: usize = 4;
pub(crate) const LAST_KEPT: usize = 64;

/// Everything recorded about one flow (TCP connection, UDP 4-tuple, ICMP echo identifier).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowRecord {
    /// Connection id (`c12` is 12).
    pub id: u64,
    /// `"tcp"`, `"udp"` or `"icmp"`.
    pub proto: &'static str,
    /// The stack's end. For ICMP echo, the port is the echo identifier.
    pub local: SocketAddr,
    /// The peer's end.
    pub remote: SocketAddr,
    /// Who sent the first SYN (TCP), when seen.
    pub opened_by: Option<Side>,
    /// When the flow was first seen.
    pub first_us: i64,
    /// When the flow was last seen.
    pub last_us: i64,
    /// First SYN to the third handshake segment.
    pub handshake_us: Option<i64>,
    /// When it closed (microseconds since start).
    pub closed_us: Option<i64>,
    /// `"FIN"`, `"RST"`, `"TIME-WAIT"`, `"CLOSED"`, `"evicted"`, `"superseded"`.
    pub close_reason: Option<&'static str>,
    /// Which side reset the connection, if one did.
    pub rst_by: Option<Side>,
    /// Why the RST was sent, when the stack said.
    pub rst_reason: Option<&'static str>,
    /// Peer to stack.
    pub inbound: DirStats,
    /// Stack to peer.
    pub outbound: DirStats,
    /// The first segments recorded (the head of the conversation).
    pub first: Vec<SegmentRecord>,
    /// The last segments recorded (the tail).
    pub last: VecDeque<SegmentRecord>,
    /// Segments between `first` and `last` that were not kept.
    pub folded: u64,
    /// Whether the log narrates this connection (false: left out by `--narrate-limit`).
    pub narrated: bool,
    /// Read from a capture (`tapstack read`): `local` is the server, `remote` the client, and the
    /// summary says so.
    #[serde(skip)]
    pub from_capture: bool,
    /// The stack's latest TCP figures for this connection (sampled while it moves data, at each
    /// loss repair, and last as its socket was let go); `None` until the stack told any. Boxed:
    /// most flows never get them, and an idle one should not pay for them.
    #[serde(skip)]
    pub tcp: Option<Box<TcpFiguresAt>>,
}

/// [`crate::stack::TcpFigures`] as of a moment of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpFiguresAt {
    /// When the stack told them (microseconds since start).
    pub t_us: i64,
    /// The figures.
    pub figures: crate::stack::TcpFigures,
    /// The last ones: the connection's socket was let go.
    pub last: bool,
}

impl FlowRecord {
    /// A new record.
    pub fn new(
        id: u64,
        proto: &'static str,
        local: SocketAddr,
        remote: SocketAddr,
        now_us: i64,
    ) -> Self {
        FlowRecord {
            id,
            proto,
            local,
            remote,
            opened_by: None,
            first_us: now_us,
            last_us: now_us,
            handshake_us: None,
            closed_us: None,
            close_reason: None,
            rst_by: None,
            rst_reason: None,
            inbound: DirStats::default(),
            outbound: DirStats::default(),
            first: Vec::new(),
            last: VecDeque::new(),
            folded: 0,
            narrated: true,
            from_capture: false,
            tcp: None,
        }
    }

    /// Adds a label.
    pub fn push(&mut self, seg: SegmentRecord) {
        let stats = match seg.dir {
            Direction::In => &mut self.inbound,
            Direction::Out => &mut self.outbound,
        };
        stats.segments += 1;
        stats.bytes += seg.len as u64;
        if seg.labels.has_retransmission() {
            stats.retransmissions += 1;
        }
        self.last_us = seg.t_us;
        if self.first.len() < FIRST_KEPT {
            if self.first.len() == self.first.capacity() {
                // Grown by doubling: reserving 16 records (3.6 KiB) for every flow made the records
                // of 10,000 idle connections, three segments each, 35 MiB of the 80 MiB resident;
                // four take 0.9 KiB, and a longer exchange pays a few reallocations (4, 8, 16...).
                let want = (self.first.len() * 2).clamp(FIRST_RESERVE, FIRST_KEPT);
                self.first.reserve_exact(want - self.first.len());
            }
            self.first.push(seg);
            return;
        }
        if self.last.len() >= LAST_KEPT {
            self.last.pop_front();
            self.folded += 1;
        }
        self.last.push_back(seg);
    }

    /// The kept segments, in order (`folded` ones are missing between the two halves).
    pub fn segments(&self) -> impl Iterator<Item = &SegmentRecord> {
        self.first.iter().chain(self.last.iter())
    }

    /// Marks the most recent kept segment that matches as dropped; returns whether one did.
    pub fn mark_dropped(
        &mut self,
        dir: Direction,
        abs_seq: u32,
        flags: TcpFlags,
        len: u32,
    ) -> bool {
        let found = self
            .last
            .iter_mut()
            .rev()
            .chain(self.first.iter_mut().rev())
            .take(16)
            .find(|s| s.dir == dir && s.abs_seq == abs_seq && s.flags == flags && s.len == len);
        match found {
            Some(s) => {
                s.dropped = true;
                // A lost ACK did not complete the handshake: the next one through will.
                if s.labels.remove("handshake 3/3") {
                    self.handshake_us = None;
                }
                true
            }
            None => false,
        }
    }

    /// The arrow between local and remote: `<-` when the peer opened, `->` when the stack did.
    pub fn arrow(&self) -> &'static str {
        match self.opened_by {
            Some(Side::Peer) => "<-",
            Some(Side::Stack) => "->",
            None => "<->",
        }
    }

    /// Microseconds from the first segment to the close.
    pub fn duration_us(&self) -> i64 {
        self.closed_us.unwrap_or(self.last_us) - self.first_us
    }

    /// The one-line close summary (`c3 192.168.69.1:7 <- 192.168.69.100:49152 closed by FIN after ...`).
    pub fn summary_line(&self) -> String {
        use fmt::Write;
        let mut s = String::with_capacity(200);
        let _ = write!(
            s,
            "c{} {} {} {} closed by {}",
            self.id,
            self.local,
            self.arrow(),
            self.remote,
            self.close_reason.unwrap_or("?")
        );
        if let Some(by) = self.rst_by {
            let by = match (self.from_capture, by) {
                (true, Side::Stack) => "the server",
                (true, Side::Peer) => "the client",
                (false, by) => by.as_str(),
            };
            let _ = write!(s, " from {by}");
            if let Some(r) = self.rst_reason {
                let _ = write!(s, " ({r})");
            }
        }
        let _ = write!(s, " after {}", Secs(self.duration_us()));
        match self.handshake_us {
            Some(h) => {
                let _ = write!(s, ", handshake {}", Secs(h));
            }
            None => s.push_str(", no complete handshake seen"),
        }
        let (inbound, outbound) = if self.from_capture {
            ("client->server", "server->client")
        } else {
            ("peer->stack", "stack->peer")
        };
        let _ = write!(
            s,
            "; {inbound} {} bytes in {} segments, {outbound} {} bytes in {} segments, {} retransmissions",
            self.inbound.bytes,
            self.inbound.segments,
            self.outbound.bytes,
            self.outbound.segments,
            self.inbound.retransmissions + self.outbound.retransmissions
        );
        if self.folded > 0 {
            let _ = write!(s, " ({} segments not kept in the record)", self.folded);
        }
        s
    }
}

/// A number with thousands separators: `64,512`.
pub(crate) struct Thousands(pub u64);

impl fmt::Display for Thousands {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.to_string();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                f.write_str(",")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Microseconds printed as seconds with six decimals: `1.234567s`.
#[derive(Clone, Copy)]
pub(crate) struct Secs(pub i64);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0;
        let sign = if us < 0 { "-" } else { "" };
        let a = us.unsigned_abs();
        write!(f, "{sign}{}.{:06}s", a / 1_000_000, a % 1_000_000)
    }
}
