//! JSON-lines events (`--events FILE`, `-` for standard output): one object per line, each with
//! `"event"` (its kind) and `"t_us"` (microseconds since start). The schema is documented in
//! `docs/EVENTS.md`; fields are only ever added, never renamed or removed.

use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::SocketAddr;

use super::records::{DirStats, FlowRecord, PacketRecord, Side};
use crate::device::Direction;
use crate::status::{Counters, Endpoint};

/// One event line.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event<'a> {
    /// The program serves these endpoints.
    Ready {
        t_us: i64,
        device: &'a str,
        endpoints: &'a [Endpoint],
    },
    /// A frame crossed the device (see [`PacketRecord`]'s serialized shape).
    Packet(&'a PacketRecord),
    /// A socket of the userspace stack changed TCP state.
    TcpState {
        t_us: i64,
        conn: Option<u64>,
        local: SocketAddr,
        remote: Option<SocketAddr>,
        from: &'a str,
        to: &'a str,
    },
    /// An RST reached a connection of the userspace stack and was not allowed to reset it.
    RstIgnored {
        t_us: i64,
        conn: u64,
        local: SocketAddr,
        remote: SocketAddr,
        seq: u32,
        why: &'a str,
    },
    /// A TCP connection ended: its summary.
    ConnClosed(ConnClosed<'a>),
    /// A frame was lost on the way (fault injector, full link).
    Drop {
        t_us: i64,
        dir: Direction,
        reason: &'a str,
        len: usize,
        conn: Option<u64>,
        summary: String,
    },
    /// Something went wrong.
    Error { t_us: i64, message: &'a str },
    /// The program stops: final counters.
    Shutdown {
        t_us: i64,
        stack: &'a Counters,
        host: &'a Counters,
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
    pub t_us: i64,
    pub conn: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub opened_by: Option<Side>,
    pub duration_us: i64,
    pub handshake_us: Option<i64>,
    pub reason: Option<&'static str>,
    pub rst_by: Option<Side>,
    pub rst_reason: Option<&'static str>,
    /// Peer to stack.
    pub inbound: &'a DirStats,
    /// Stack to peer.
    pub outbound: &'a DirStats,
    pub retransmissions: u64,
    pub summary: String,
}

impl<'a> ConnClosed<'a> {
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
