//! What the userspace stack tells whoever watches it: a typed event for each thing it did to a TCP
//! connection (opened, state changed, an RST ignored and why, refused, evicted, timed out, closed and
//! why), and a neighbour whose MAC address changed. The stack never asks its watcher anything: the tracer, the status table and `--events` build
//! their view from these, so what they say is what the stack did, not a guess from the look of a frame.

use smoltcp::socket::tcp::State;
use smoltcp::time::{Duration, Instant};
use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use crate::device::Observer;
use crate::service::{ServiceKind, TraceView};

/// Which end opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opener {
    /// The peer's SYN reached a listening port of ours.
    Peer,
    /// We connected (a client socket).
    Stack,
}

/// Why an RST was not allowed to reset a synchronized connection (RFC 5961 3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RstIgnored {
    /// Outside the receive window: dropped, as RFC 9293 and RFC 5961 ask.
    OutsideWindow,
    /// In the window but not exactly the next expected sequence number (RCV.NXT): a blind attacker
    /// guessing within the window must not be able to reset the connection.
    NotExact,
}

impl RstIgnored {
    pub fn as_str(self) -> &'static str {
        match self {
            RstIgnored::OutsideWindow => "sequence number outside the window (RFC 5961)",
            RstIgnored::NotExact => "not exactly the next expected sequence number (RFC 5961)",
        }
    }
}

/// Why a SYN was answered with RST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NoListener,
    ConnectionLimit,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoListener => "no listener on this port",
            Refusal::ConnectionLimit => "connection limit reached",
        }
    }
}

/// Which timer of ours ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// The peer never answered our SYN-ACK.
    Handshake,
    /// The peer never sent its FIN after ours was acknowledged.
    FinWait2,
    /// After our close the peer held the connection open in this state (FIN-WAIT-1, CLOSING or
    /// LAST-ACK) for too long: it never took our last data and FIN (a window kept at zero) or never
    /// acknowledged them (silence). We aborted it with RST, as Linux does with an orphaned socket
    /// whose retries ran out.
    Orphan(State),
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// Both FINs were exchanged and acknowledged (through LAST-ACK or TIME-WAIT).
    Closed,
    /// The peer's RST was accepted.
    ResetByPeer,
    /// We sent RST (aborted by us or at shutdown).
    Aborted,
    /// One of our timers ran out.
    TimedOut(Timeout),
    /// A half-open connection gave way to a new SYN at the connection limit.
    Evicted,
    /// A new SYN reused the 4-tuple of a connection in TIME-WAIT.
    Superseded,
    /// The SYN it was numbered for never reached its listener: smoltcp dropped it (a non-unicast
    /// source address, port 0, a bad checksum).
    SynDropped,
    /// It was in TIME-WAIT and ended before its 2 x MSL were over, for this reason.
    TimeWaitCut(TimeWaitCut),
}

/// Why a connection in TIME-WAIT ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeWaitCut {
    /// The program stopped (a shutdown, or a client that exits once its last ACK is out).
    Shutdown,
    /// At the connection limit the oldest connection in TIME-WAIT gave way to a new SYN.
    ConnectionLimit,
    /// The TIME-WAIT table was full: its oldest entry gave way to a newer one.
    TableFull,
}

/// What a segment that reached a connection in TIME-WAIT was answered with (RFC 9293 3.10.7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeWaitAck {
    /// The peer sent its FIN again (our last ACK was lost): ACKed again, the 2 x MSL timer
    /// restarted.
    FinAgain,
    /// An RST inside the window but not exactly at RCV.NXT: a challenge ACK (RFC 5961 3.2).
    ChallengeRst,
    /// A SYN whose sequence number is not beyond the old connection's: a challenge ACK (RFC 5961
    /// 4.2), not a new connection.
    OldSyn,
    /// Anything else: outside the window, or data after the peer's FIN. Answered with an ACK.
    Unacceptable,
}

impl TimeWaitAck {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeWaitAck::FinAgain => "the peer's FIN again (our last ACK was lost): ACKed again, the timer restarted (RFC 9293 3.10.7.4)",
            TimeWaitAck::ChallengeRst => "RST not exactly at the next expected sequence number: a challenge ACK (RFC 5961)",
            TimeWaitAck::OldSyn => "SYN with an old sequence number: not a new connection, a challenge ACK (RFC 5961)",
            TimeWaitAck::Unacceptable => "a segment after the peer's FIN: answered with an ACK (RFC 9293)",
        }
    }
}

/// A connection's TCP sender figures, read from its smoltcp socket: the congestion window and
/// threshold, the round-trip estimate and timer, and how its losses were repaired so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpFigures {
    /// Congestion window, bytes.
    pub cwnd: usize,
    /// Slow start threshold, bytes; `None` before the first loss (no threshold set yet).
    pub ssthresh: Option<usize>,
    /// Smoothed round-trip time (RFC 6298 SRTT, whole milliseconds); `None` before the first
    /// sample.
    pub srtt: Option<Duration>,
    /// Retransmission timeout (RFC 6298 RTO), backoff included.
    pub rto: Duration,
    /// Fast recoveries started (a loss shown by duplicate ACKs or SACK, repaired without waiting
    /// for the timer), SACK ones included.
    pub fast_retransmits: u32,
    /// Of those, the ones that resent the holes the SACK scoreboard showed (RFC 6675).
    pub sack_recoveries: u32,
    /// Retransmission timeouts (back to slow start).
    pub timeouts: u32,
    /// Fast recoveries that proved spurious and were undone: the peer reported every segment
    /// they resent as a duplicate (D-SACK, RFC 2883/3708), so the originals were late, not lost,
    /// and the window cut was taken back.
    pub undone: u32,
}

impl TcpFigures {
    /// Reads a socket's figures.
    pub fn of(sock: &smoltcp::socket::tcp::Socket<'_>) -> TcpFigures {
        let stats = sock.loss_recovery_stats();
        let ssthresh = sock.slow_start_threshold();
        TcpFigures {
            cwnd: sock.congestion_window(),
            ssthresh: (ssthresh != usize::MAX).then_some(ssthresh),
            srtt: sock.smoothed_rtt(),
            rto: sock.retransmission_timeout(),
            fast_retransmits: stats.fast_retransmits,
            sack_recoveries: stats.sack_recoveries,
            timeouts: stats.timeouts,
            undone: stats.undone_recoveries,
        }
    }

    /// Fast recoveries without SACK information (NewReno, RFC 6582).
    pub fn newreno_recoveries(&self) -> u32 {
        self.fast_retransmits.saturating_sub(self.sack_recoveries)
    }

    /// Losses repaired, by any means.
    pub fn repairs(&self) -> u32 {
        self.fast_retransmits + self.timeouts
    }
}

/// How a connection started repairing a loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossRepair {
    /// Fast recovery: the ACKs showed a loss before the timer ran out. With `sack` the SACK
    /// scoreboard showed which segments were missing and only those holes are resent (RFC 6675);
    /// without, one segment is resent per partial ACK (NewReno, RFC 6582).
    FastRetransmit {
        /// The SACK scoreboard chose what to resend.
        sack: bool,
    },
    /// The retransmission timer ran out: sending starts again from the last ACK, in slow start.
    Timeout,
}

/// One thing the stack did. Addresses are the stack's end (`local`) and the peer's (`remote`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackEvent {
    /// A connection got its id: a SYN reached a listener (the SYN's packet line comes next), or a
    /// client socket connected.
    Opened {
        conn: u64,
        local: SocketAddr,
        remote: SocketAddr,
        by: Opener,
        service: Option<ServiceKind>,
    },
    /// A connection's TCP state changed.
    State {
        conn: u64,
        local: SocketAddr,
        remote: SocketAddr,
        from: State,
        to: State,
        service: Option<ServiceKind>,
    },
    /// An RST reached a synchronized connection and was not allowed to reset it.
    RstIgnored {
        conn: u64,
        local: SocketAddr,
        remote: SocketAddr,
        seq: u32,
        why: RstIgnored,
    },
    /// A SYN was refused: the next RST towards `remote` is sent for this reason.
    Refused {
        local: SocketAddr,
        remote: SocketAddr,
        why: Refusal,
    },
    /// A connection entered TIME-WAIT and its last ACK is out: its socket is back, and the stack
    /// holds the 4-tuple for `hold` (2 x MSL) in its TIME-WAIT table. `Closed` follows when that
    /// ends.
    TimeWait {
        conn: u64,
        local: SocketAddr,
        remote: SocketAddr,
        hold: Duration,
    },
    /// A segment reached a connection in TIME-WAIT and was answered with an ACK, for this reason.
    TimeWaitAck {
        conn: u64,
        local: SocketAddr,
        remote: SocketAddr,
        why: TimeWaitAck,
        hold: Duration,
    },
    /// A connection started repairing a loss (one event per recovery), told after the egress
    /// that resent. `cwnd_before` and `rto_before` are the figures when the stack last looked (the
    /// connection's previous egress); `figures` are the ones now, the repair begun.
    LossRepair {
        conn: u64,
        local: SocketAddr,
        remote: SocketAddr,
        kind: LossRepair,
        cwnd_before: usize,
        rto_before: Duration,
        figures: TcpFigures,
    },
    /// A connection's socket is let go: its last TCP figures. Right before `Closed`, or when it
    /// enters the TIME-WAIT table (the socket goes then; `Closed` follows 2 x MSL later): once per
    /// connection that had a socket of its own.
    Figures {
        conn: u64,
        local: SocketAddr,
        remote: SocketAddr,
        figures: TcpFigures,
    },
    /// A connection's TCP figures while it runs: at most once a second per
    /// connection, after an egress (so only connections that move data are sampled). For the
    /// pictures (`/conn/ID`); not narrated.
    FiguresSampled {
        conn: u64,
        local: SocketAddr,
        remote: SocketAddr,
        figures: TcpFigures,
    },
    /// A connection is gone and its resources are back; every connection that was opened ends with
    /// exactly one of these.
    Closed {
        conn: u64,
        local: SocketAddr,
        remote: SocketAddr,
        cause: CloseCause,
        service: Option<ServiceKind>,
    },
    /// An ARP packet smoltcp learns from said that neighbour `ip` is at `to`, and the last one from
    /// `ip` said `from`: a second host answering for this address, or ARP spoofing. smoltcp's
    /// neighbour cache follows the packet (that is the protocol); the stack only tells. Once per
    /// change: the same MAC again is not a move.
    NeighbourMoved {
        ip: IpAddr,
        from: [u8; 6],
        to: [u8; 6],
    },
}

/// Watches a stack: every frame (through the device) and every [`StackEvent`]. All methods are tells;
/// the no-op `()` costs nothing.
pub trait StackObserver: Observer {
    /// The stack numbers its connections from `ids`; an observer that numbers flows of its own takes
    /// its numbers from the same source, so that every id names one connection.
    fn attach(&mut self, _ids: &ConnIds) {}
    /// The stack did something.
    fn event(&mut self, _now: Instant, _ev: &StackEvent) {}
    /// What services may read of the trace (the HTTP pages show recent packets and flows).
    fn view(&self) -> Option<&dyn TraceView> {
        None
    }
}

impl StackObserver for () {}

/// The source of connection ids (`c12`), shared by the stack, its tracer and the host side so that an
/// id names one connection across all of them.
#[derive(Debug, Clone)]
pub struct ConnIds(Rc<Cell<u64>>);

impl Default for ConnIds {
    fn default() -> Self {
        ConnIds(Rc::new(Cell::new(1)))
    }
}

impl ConnIds {
    /// A fresh id.
    pub fn next(&self) -> u64 {
        let id = self.0.get();
        self.0.set(id + 1);
        id
    }

    /// The id the next call to [`ConnIds::next`] returns.
    pub fn peek(&self) -> u64 {
        self.0.get()
    }
}

/// RFC 793 spelling of a TCP state.
pub(crate) fn state_name(s: State) -> &'static str {
    match s {
        State::Closed => "CLOSED",
        State::Listen => "LISTEN",
        State::SynSent => "SYN-SENT",
        State::SynReceived => "SYN-RECEIVED",
        State::Established => "ESTABLISHED",
        State::FinWait1 => "FIN-WAIT-1",
        State::FinWait2 => "FIN-WAIT-2",
        State::CloseWait => "CLOSE-WAIT",
        State::Closing => "CLOSING",
        State::LastAck => "LAST-ACK",
        State::TimeWait => "TIME-WAIT",
    }
}
