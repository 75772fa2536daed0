//! JSON-lines events (`--events FILE`, `-` for standard output): one object per line, each with
//! `"event"` (its kind) and `"t_us"` (microseconds since start). The schema is documented in
//! `docs/EVENTS.md`; fields are only ever added, never renamed or removed.

use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};

use super::decode::Mac;
use super::records::{DirStats, FlowRecord, PacketRecord, Side};
use crate::device::Direction;
use crate::status::{Counters, Endpoint};

/// A connection's TCP figures in an event line (see [`crate::stack::TcpFigures`]).
#[derive(Serialize, Debug, Clone, Copy)]
pub struct TcpFiguresJson {
    /// Congestion window, bytes.
    pub cwnd: usize,
    /// Slow start threshold, bytes (`null` before the first loss).
    pub ssthresh: Option<usize>,
    /// Smoothed round-trip time, milliseconds (`null` before the first sample).
    pub srtt_ms: Option<u64>,
    /// Retransmission timeout, milliseconds.
    pub rto_ms: u64,
    /// Fast recoveries with SACK (RFC 6675).
    pub sack_recoveries: u32,
    /// Fast recoveries without SACK (NewReno, RFC 6582).
    pub newreno_recoveries: u32,
    /// Retransmission timeouts.
    pub timeouts: u32,
    /// Fast recoveries undone as spurious (D-SACK showed the originals had arrived).
    pub undone_recoveries: u32,
}

impl From<crate::stack::TcpFigures> for TcpFiguresJson {
    fn from(f: crate::stack::TcpFigures) -> Self {
        TcpFiguresJson {
            cwnd: f.cwnd,
            ssthresh: f.ssthresh,
            srtt_ms: f.srtt.map(|d| d.total_millis()),
            rto_ms: f.rto.total_millis(),
            sack_recoveries: f.sack_recoveries,
            newreno_recoveries: f.newreno_recoveries(),
            timeouts: f.timeouts,
            undone_recoveries: f.undone,
        }
    }
}

/// One event line.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event<'a> {
    /// The program serves these endpoints.
    Ready {
        /// Microseconds since the start.
        t_us: i64,
        /// The device name (`tap0`, `wire`).
        device: &'a str,
        /// Every endpoint served.
        endpoints: &'a [Endpoint],
    },
    /// A frame crossed the device (see [`PacketRecord`]'s serialized shape).
    Packet(&'a PacketRecord),
    /// A socket of the userspace stack changed TCP state.
    TcpState {
        /// Microseconds since the start.
        t_us: i64,
        /// Connection id (`c12`), if the frame belongs to a flow.
        conn: Option<u64>,
        /// The stack's end.
        local: SocketAddr,
        /// The peer's end.
        remote: Option<SocketAddr>,
        /// The state left.
        from: &'a str,
        /// The state entered.
        to: &'a str,
    },
    /// An RST reached a connection of the userspace stack and was not allowed to reset it.
    RstIgnored {
        /// Microseconds since the start.
        t_us: i64,
        /// Connection id (`c12`), if the frame belongs to a flow.
        conn: u64,
        /// The stack's end.
        local: SocketAddr,
        /// The peer's end.
        remote: SocketAddr,
        /// The RST's sequence number (absolute).
        seq: u32,
        /// Why, in plain words.
        why: &'a str,
    },
    /// A connection of the userspace stack entered TIME-WAIT and its last ACK is out: the stack
    /// holds it for `hold_s` seconds (2 x MSL); its `conn_closed` comes when that ends.
    TimeWait {
        /// Microseconds since the start.
        t_us: i64,
        /// Connection id (`c12`).
        conn: u64,
        /// The stack's end.
        local: SocketAddr,
        /// The peer's end.
        remote: SocketAddr,
        /// How long TIME-WAIT is held, seconds.
        hold_s: f64,
    },
    /// A segment reached a connection in TIME-WAIT and the stack answered with an ACK.
    TimeWaitAck {
        /// Microseconds since the start.
        t_us: i64,
        /// Connection id (`c12`).
        conn: u64,
        /// The stack's end.
        local: SocketAddr,
        /// The peer's end.
        remote: SocketAddr,
        /// Why, in plain words.
        why: &'a str,
        /// The peer's FIN came again: the 2 x MSL timer restarted.
        restarted: bool,
    },
    /// A TCP connection ended: its summary.
    ConnClosed(ConnClosed<'a>),
    /// A connection of the userspace stack began repairing a loss (fast recovery or a
    /// retransmission timeout).
    LossRepair {
        /// Microseconds since the start.
        t_us: i64,
        /// Connection id (`c12`).
        conn: u64,
        /// The stack's end.
        local: SocketAddr,
        /// The peer's end.
        remote: SocketAddr,
        /// `sack` (fast recovery resending the holes SACK showed), `newreno` (fast recovery
        /// without SACK) or `timeout` (the retransmission timer ran out).
        kind: &'a str,
        /// Congestion window before, bytes.
        cwnd_before: usize,
        /// Retransmission timeout before (the one that ran out, for `timeout`), milliseconds.
        rto_before_ms: u64,
        /// The connection's figures now.
        tcp: TcpFiguresJson,
    },
    /// A connection's socket was let go (right before its close, or on entering TIME-WAIT): its
    /// last TCP figures.
    TcpFigures {
        /// Microseconds since the start.
        t_us: i64,
        /// Connection id (`c12`).
        conn: u64,
        /// The stack's end.
        local: SocketAddr,
        /// The peer's end.
        remote: SocketAddr,
        /// The figures.
        tcp: TcpFiguresJson,
    },
    /// ARP said another MAC address for a neighbour than before: a second host answering for
    /// this address, or ARP spoofing.
    NeighbourMoved {
        /// Microseconds since the start.
        t_us: i64,
        /// The neighbour's address.
        ip: IpAddr,
        /// The MAC it was at.
        from: Mac,
        /// The MAC it is at now (what smoltcp's neighbour cache holds from now on).
        to: Mac,
    },
    /// A frame was lost on the way (fault injector, full link).
    Drop {
        /// Microseconds since the start.
        t_us: i64,
        /// Which way the frame crossed the device.
        dir: Direction,
        /// Why.
        reason: &'a str,
        /// Frame length in bytes.
        len: usize,
        /// Connection id (`c12`), if the frame belongs to a flow.
        conn: Option<u64>,
        /// The packet line's summary of the frame.
        summary: String,
    },
    /// Something went wrong.
    Error {
        /// Microseconds since the start.
        t_us: i64,
        /// What, in one line.
        message: &'a str,
    },
    /// The program stops: final counters.
    Shutdown {
        /// Microseconds since the start.
        t_us: i64,
        /// Counters of the userspace stack.
        stack: &'a Counters,
        /// Counters of the host-socket side.
        host: &'a Counters,
        /// The tracer's own counters.
        trace: TraceCounters<'a>,
    },
}

/// The tracer's own counters, in the `shutdown` event.
#[derive(Serialize)]
pub struct TraceCounters<'a> {
    /// Malformed frames and bad checksums, by reason.
    pub malformed: &'a BTreeMap<&'static str, u64>,
    /// Flows pushed out of the bounded flow table.
    pub flow_evictions: u64,
    /// Packet records numbered so far.
    pub packets: u64,
}

/// The `conn_closed` event: a [`FlowRecord`] without its segments.
#[derive(Serialize)]
pub struct ConnClosed<'a> {
    /// Microseconds since the start.
    pub t_us: i64,
    /// Connection id (`c12`), if the frame belongs to a flow.
    pub conn: u64,
    /// The stack's end.
    pub local: SocketAddr,
    /// The peer's end.
    pub remote: SocketAddr,
    /// Which side sent the first SYN.
    pub opened_by: Option<Side>,
    /// Microseconds from the first segment to the close.
    pub duration_us: i64,
    /// Microseconds the handshake took, if it completed.
    pub handshake_us: Option<i64>,
    /// Why.
    pub reason: Option<&'static str>,
    /// Which side reset the connection, if one did.
    pub rst_by: Option<Side>,
    /// Why the RST was sent, when the stack said.
    pub rst_reason: Option<&'static str>,
    /// Peer to stack.
    pub inbound: &'a DirStats,
    /// Stack to peer.
    pub outbound: &'a DirStats,
    /// Segments flagged as retransmissions, by direction.
    pub retransmissions: u64,
    /// The packet line's summary of the frame.
    pub summary: String,
}

impl<'a> ConnClosed<'a> {
    /// The summary of a closed flow, at `t_us`.
    pub fn new(t_us: i64, f: &'a FlowRecord) -> Self {
        ConnClosed {
            t_us,
            conn: f.id,
            local: f.local,
            remote: f.remote,
            opened_by: f.opened_by,
            duration_us: f.duration_us(),
            handshake_us: f.handshake_us,
            reason: f.close_reason,
            rst_by: f.rst_by,
            rst_reason: f.rst_reason,
            inbound: &f.inbound,
            outbound: &f.outbound,
            retransmissions: f.inbound.retransmissions + f.outbound.retransmissions,
            summary: f.summary_line(),
        }
    }
}

/// Writes events, one JSON object per line, flushed per line. A write error is reported once (log
/// warning) and ends the event stream; the program goes on.
pub(crate) struct EventSink {
    out: Box<dyn Write>,
    failed: bool,
}

impl EventSink {
    pub(crate) fn new(out: Box<dyn Write>) -> Self {
        EventSink { out, failed: false }
    }

    pub(crate) fn emit(&mut self, ev: &Event<'_>) {
        if self.failed {
            return;
        }
        let r = serde_json::to_writer(&mut self.out, ev)
            .map_err(io::Error::from)
            .and_then(|_| self.out.write_all(b"\n"))
            .and_then(|_| self.out.flush());
        if let Err(e) = r {
            log::warn!(target: "tapstack::trace", "events: write failed, no more events: {e}");
            self.failed = true;
        }
    }

    pub(crate) fn flush(&mut self) {
        if !self.failed {
            let _ = self.out.flush();
        }
    }
}
