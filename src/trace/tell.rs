//! Narration from what the stack says it did: state changes, RSTs it ignored, refusals and closes
//! with their causes ([`StackEvent`]s) become `tapstack::tcp` lines, flow records and `--events`
//! lines. Nothing here is guessed from the look of a frame.

use smoltcp::time::Instant;
use std::fmt::Write as _;
use std::net::SocketAddr;

use super::decode::Mac;
use super::events::{self, Event};
use super::{Secs, Tracer, TCP};
use crate::stack::{
    state_name, CloseCause, ConnIds, LossRepair, StackEvent, StackObserver, TcpFigures,
    TimeWaitAck, TimeWaitCut, Timeout,
};

/// Said the first time a connection enters TIME-WAIT: why it exists, in one plain sentence.
const TIME_WAIT_WHY: &str =
    "(TIME-WAIT: the side that closes first keeps the connection's numbers \
    for 2 x MSL, so that if its last ACK was lost and the peer sends its FIN again it can ACK it \
    instead of answering RST, and so that stray segments of this connection die out before the \
    same addresses and ports are used again)";

/// Said the first time each kind of loss repair is seen: what it is, in one plain sentence.
const SACK_WHY: &str = "(fast recovery with SACK: the peer's ACKs list the blocks it holds beyond a \
    gap, so the sender knows exactly which segments are missing and resends only those, without \
    waiting for a timer, RFC 6675; and it cuts its congestion window, to 0.7 x with CUBIC or half with Reno, since a loss means the path is full)";
const NEWRENO_WHY: &str =
    "(fast recovery without SACK: duplicate ACKs say one segment is missing; \
    the sender resends it, and each ACK that covers only part of what was in flight points at the \
    next hole, RFC 6582; the congestion window is cut, to 0.7 x with CUBIC or half with Reno, since a loss means the path is full)";
const TIMEOUT_WHY: &str = "(retransmission timeout: no ACK came within the RTO, so the sender \
    assumes everything in flight is lost, resends from the last acknowledged byte, starts again \
    from a window of one segment, and doubles its timer for the next try, RFC 6298)";

/// `14600` as `14,600`.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Milliseconds, with one decimal under 10 ms.
fn ms(d: smoltcp::time::Duration) -> String {
    let us = d.total_micros();
    if us < 10_000 && !us.is_multiple_of(1000) {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{} ms", us / 1000)
    }
}

/// The narration of a loss repair (without the first-time explanation).
fn repair_line(
    kind: LossRepair,
    cwnd_before: usize,
    rto_before: smoltcp::time::Duration,
    f: &TcpFigures,
) -> String {
    match kind {
        LossRepair::FastRetransmit { sack: true } => format!(
            "fast recovery: SACK showed a loss, resending the holes from the scoreboard ({})",
            window_change(cwnd_before, f.cwnd)
        ),
        LossRepair::FastRetransmit { sack: false } => format!(
            "fast recovery (NewReno): duplicate ACKs showed a loss, resending the first unacknowledged segment ({})",
            window_change(cwnd_before, f.cwnd)
        ),
        LossRepair::Timeout => format!(
            "retransmission timeout after {}: back to slow start (cwnd {} bytes), next timeout {}",
            ms(rto_before),
            grouped(f.cwnd),
            ms(f.rto)
        ),
    }
}

/// `cwnd 14,600 -> 7,300 bytes`, or `cwnd stays 7,300 bytes` (CUBIC cuts once per congestion
/// event, and never below two segments).
fn window_change(before: usize, after: usize) -> String {
    if before == after {
        format!("cwnd stays {} bytes", grouped(after))
    } else {
        format!("cwnd {} -> {} bytes", grouped(before), grouped(after))
    }
}

/// Which bit of `Tracer::explained_repairs` a kind is, and its explanation.
fn repair_why(kind: LossRepair) -> (u8, &'static str) {
    match kind {
        LossRepair::FastRetransmit { sack: true } => (1, SACK_WHY),
        LossRepair::FastRetransmit { sack: false } => (2, NEWRENO_WHY),
        LossRepair::Timeout => (4, TIMEOUT_WHY),
    }
}

/// A connection's TCP figures, as the line at its end says them.
pub(super) fn figures_line(f: &TcpFigures) -> String {
    let ssthresh = f.ssthresh.map_or("none (no loss yet)".to_string(), |s| {
        format!("{} bytes", grouped(s))
    });
    // smoltcp keeps SRTT in whole milliseconds: a LAN's round trip reads 0.
    let srtt = match f.srtt {
        None => "none (no sample)".to_string(),
        Some(d) if d.total_millis() == 0 => "under 1 ms".to_string(),
        Some(d) => ms(d),
    };
    let mut line = format!(
        "TCP figures: cwnd {} bytes, ssthresh {ssthresh}, srtt {srtt}, rto {}; losses repaired: {} by SACK recovery, {} by NewReno, {} by timeout",
        grouped(f.cwnd),
        ms(f.rto),
        f.sack_recoveries,
        f.newreno_recoveries(),
        f.timeouts
    );
    if f.undone > 0 {
        let _ = write!(
            line,
            "; {} of the recoveries undone (D-SACK: the resent segments had arrived, only late)",
            f.undone
        );
    }
    line
}

fn repair_kind_name(kind: LossRepair) -> &'static str {
    match kind {
        LossRepair::FastRetransmit { sack: true } => "sack",
        LossRepair::FastRetransmit { sack: false } => "newreno",
        LossRepair::Timeout => "timeout",
    }
}

/// What a state change that skips one says about the segment that caused it.
fn skipped(from: &str, to: &str) -> &'static str {
    match (from, to) {
        ("SYN-RECEIVED", "CLOSE-WAIT") => {
            " (one segment completed the handshake and carried the peer's FIN, with any data before it: ESTABLISHED and the peer's close at once)"
        }
        ("SYN-SENT", "CLOSE-WAIT") => {
            " (the SYN-ACK carried the peer's FIN too: ESTABLISHED and the peer's close at once)"
        }
        ("FIN-WAIT-1", "TIME-WAIT") => {
            " (the peer's FIN also acknowledged ours: FIN-WAIT-2 passed in the same segment)"
        }
        _ => "",
    }
}

impl Tracer {
    pub(super) fn log_narration_summary(&self, t_us: i64, force: bool) {
        if let Some(s) = self.flows.narration().take_summary(t_us, force) {
            if self.tcp_log {
                log::info!(target: TCP, "+{} {s}", Secs(t_us));
            }
        }
    }

    /// A smoltcp socket of the userspace stack changed state.
    pub(crate) fn tcp_state(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: Option<SocketAddr>,
        from: &'static str,
        to: &'static str,
    ) {
        let t_us = self.now_us(now);
        let mut conn = None;
        let mut closed = false;
        match remote {
            Some(r) => {
                // TIME-WAIT is not the end: the connection ends when the stack says `Closed`
                // (2 x MSL later, or earlier for a reason it gives), so that its summary and ladder
                // hold its last ACK and whatever comes during TIME-WAIT.
                let (id, c) = if to == "TIME-WAIT" {
                    (self.flows.tcp_id(t_us, local, r).0, false)
                } else {
                    self.flows.tcp_state(t_us, local, r, from, to)
                };
                conn = Some(id);
                closed = c;
                if self.tcp_log {
                    let f = self.flows.get(6, local, r);
                    if f.is_none_or(|f| f.narrated) {
                        self.log_narration_summary(t_us, false);
                        let arrow = f.map_or("<->", |f| f.arrow());
                        log::info!(target: TCP, "+{} c{id} {local} {arrow} {r} {from} -> {to}{}", Secs(t_us), skipped(from, to));
                    }
                }
            }
            None => {
                if self.tcp_log {
                    log::info!(target: TCP, "+{} listener {local} {from} -> {to}", Secs(t_us));
                }
            }
        }
        if let Some(ev) = self.events.as_mut() {
            ev.emit(&Event::TcpState {
                t_us,
                conn,
                local,
                remote,
                from,
                to,
            });
        }
        if closed {
            self.report_closed(t_us);
        }
    }

    /// Why the next RST towards `remote` from `local` is sent (no listener, pool full, abort).
    pub(crate) fn rst_reason(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        reason: &'static str,
    ) {
        self.flows.rst_hint(local, remote, reason);
    }

    /// Tells the flows closed since the last call (summary line, `conn_closed`, ladder), oldest first.
    pub(super) fn report_closed(&mut self, t_us: i64) {
        let n = self.flows.take_unreported();
        let from = self.flows.closed().len().saturating_sub(n);
        for i in from..self.flows.closed().len() {
            let f = &self.flows.closed()[i];
            if self.tcp_log && f.narrated {
                if let Some(s) = self.flows.narration().take_summary(t_us, false) {
                    log::info!(target: TCP, "+{} {s}", Secs(t_us));
                }
                log::info!(target: TCP, "+{} {}", Secs(t_us), f.summary_line());
            }
            if let Some(ev) = self.events.as_mut() {
                ev.emit(&Event::ConnClosed(events::ConnClosed::new(t_us, f)));
            }
            if let Some(l) = self.ladders.as_mut() {
                l.closed(f);
            }
        }
    }
}

/// The stack's events: narration and flow records follow what the stack did.
impl StackObserver for Tracer {
    fn attach(&mut self, ids: &ConnIds) {
        self.flows.share_ids(ids.clone());
    }

    fn event(&mut self, now: Instant, ev: &StackEvent) {
        match *ev {
            StackEvent::Opened {
                conn,
                local,
                remote,
                ..
            } => {
                let t_us = self.now_us(now);
                self.flows.open(t_us, local, remote, conn);
            }
            StackEvent::State {
                local,
                remote,
                from,
                to,
                ..
            } => self.tcp_state(now, local, Some(remote), state_name(from), state_name(to)),
            StackEvent::RstIgnored {
                conn,
                local,
                remote,
                seq,
                why,
            } => {
                let t_us = self.now_us(now);
                let narrated = self.flows.get(6, local, remote).is_none_or(|f| f.narrated);
                if self.tcp_log && narrated {
                    log::info!(target: TCP, "+{} c{conn} {local} <- {remote} RST ignored: {}", Secs(t_us), why.as_str());
                }
                if let Some(ev) = self.events.as_mut() {
                    ev.emit(&Event::RstIgnored {
                        t_us,
                        conn,
                        local,
                        remote,
                        seq,
                        why: why.as_str(),
                    });
                }
            }
            StackEvent::TimeWait {
                conn,
                local,
                remote,
                hold,
            } => {
                let t_us = self.now_us(now);
                let f = self.flows.get(6, local, remote);
                if self.tcp_log && f.is_none_or(|f| f.narrated) {
                    let arrow = f.map_or("<->", |f| f.arrow());
                    let why = if std::mem::replace(&mut self.explained_time_wait, true) {
                        ""
                    } else {
                        TIME_WAIT_WHY
                    };
                    log::info!(target: TCP, "+{} c{conn} {local} {arrow} {remote} last ACK sent; TIME-WAIT held {} s (2 x MSL), until +{} {why}", Secs(t_us), hold.secs(), Secs(t_us + hold.total_micros() as i64));
                }
                if let Some(ev) = self.events.as_mut() {
                    ev.emit(&Event::TimeWait {
                        t_us,
                        conn,
                        local,
                        remote,
                        hold_s: hold.total_millis() as f64 / 1000.0,
                    });
                }
            }
            StackEvent::TimeWaitAck {
                conn,
                local,
                remote,
                why,
                hold,
            } => {
                let t_us = self.now_us(now);
                let f = self.flows.get(6, local, remote);
                if self.tcp_log && f.is_none_or(|f| f.narrated) {
                    let arrow = f.map_or("<->", |f| f.arrow());
                    let more = if why == TimeWaitAck::FinAgain {
                        format!(
                            ": {} s more, until +{}",
                            hold.secs(),
                            Secs(t_us + hold.total_micros() as i64)
                        )
                    } else {
                        String::new()
                    };
                    log::info!(target: TCP, "+{} c{conn} {local} {arrow} {remote} in TIME-WAIT: {}{more}", Secs(t_us), why.as_str());
                }
                if let Some(ev) = self.events.as_mut() {
                    ev.emit(&Event::TimeWaitAck {
                        t_us,
                        conn,
                        local,
                        remote,
                        why: why.as_str(),
                        restarted: why == TimeWaitAck::FinAgain,
                    });
                }
            }
            StackEvent::Refused { local, remote, why } => {
                self.rst_reason(local, remote, why.as_str())
            }
            StackEvent::Closed {
                local,
                remote,
                cause,
                ..
            } => {
                // Connections that end without a last state change (evicted, timed out, released)
                // end in the trace too, so that their flows do not linger.
                let t_us = self.now_us(now);
                if self.flows.end(t_us, local, remote, close_reason(cause)) {
                    self.report_closed(t_us);
                }
            }
            StackEvent::LossRepair {
                conn,
                local,
                remote,
                kind,
                cwnd_before,
                rto_before,
                figures,
            } => {
                let t_us = self.now_us(now);
                self.flows
                    .set_tcp_figures(conn, local, remote, t_us, figures, false);
                let f = self.flows.get(6, local, remote);
                if self.tcp_log && f.is_none_or(|f| f.narrated) {
                    let (bit, why) = repair_why(kind);
                    let line = repair_line(kind, cwnd_before, rto_before, &figures);
                    if self.explained_repairs & bit == 0 {
                        self.explained_repairs |= bit;
                        log::info!(target: TCP, "+{} c{conn} {line} {why}", Secs(t_us));
                    } else {
                        log::info!(target: TCP, "+{} c{conn} {line}", Secs(t_us));
                    }
                }
                if let Some(ev) = self.events.as_mut() {
                    ev.emit(&Event::LossRepair {
                        t_us,
                        conn,
                        local,
                        remote,
                        kind: repair_kind_name(kind),
                        cwnd_before,
                        rto_before_ms: rto_before.total_millis(),
                        tcp: figures.into(),
                    });
                }
            }
            StackEvent::Figures {
                conn,
                local,
                remote,
                figures,
            } => {
                let t_us = self.now_us(now);
                self.flows
                    .set_tcp_figures(conn, local, remote, t_us, figures, true);
                // A connection that never measured a round trip nor lost anything has nothing to
                // tell (a handshake that never completed, an RST at once). The flow may have
                // closed already (its last state change came first): its record says whether
                // `--narrate-limit` left it out.
                let telling = figures.srtt.is_some() || figures.repairs() > 0;
                let narrated = match self.flows.get(6, local, remote) {
                    Some(f) => f.narrated,
                    None => self
                        .flows
                        .closed()
                        .iter()
                        .rev()
                        .find(|f| f.id == conn)
                        .is_some_and(|f| f.narrated),
                };
                if self.tcp_log && telling && narrated {
                    log::info!(target: TCP, "+{} c{conn} {}", Secs(t_us), figures_line(&figures));
                }
                if let Some(ev) = self.events.as_mut() {
                    ev.emit(&Event::TcpFigures {
                        t_us,
                        conn,
                        local,
                        remote,
                        tcp: figures.into(),
                    });
                }
            }
            StackEvent::FiguresSampled {
                conn,
                local,
                remote,
                figures,
            } => {
                let t_us = self.now_us(now);
                self.flows
                    .set_tcp_figures(conn, local, remote, t_us, figures, false);
            }
            StackEvent::NeighbourMoved { ip, from, to } => {
                let t_us = self.now_us(now);
                let (from, to) = (Mac(from), Mac(to));
                log::warn!(
                    target: "tapstack::arp",
                    "+{} {ip} moved from {from} to {to}: a second host answering for this address, or ARP spoofing",
                    Secs(t_us)
                );
                if let Some(ev) = self.events.as_mut() {
                    ev.emit(&Event::NeighbourMoved { t_us, ip, from, to });
                }
            }
        }
    }

    fn view(&self) -> Option<&dyn crate::service::TraceView> {
        Some(self)
    }
}

fn close_reason(cause: CloseCause) -> &'static str {
    match cause {
        CloseCause::Closed => "CLOSED",
        CloseCause::ResetByPeer => "reset by the peer",
        CloseCause::Aborted => "aborted",
        CloseCause::TimedOut(Timeout::Handshake) => "handshake timed out",
        CloseCause::TimedOut(Timeout::FinWait2) => "FIN-WAIT-2 timed out",
        // An orphan: we closed, and the peer neither took our last data and FIN nor went away.
        CloseCause::TimedOut(Timeout::Orphan(smoltcp::socket::tcp::State::FinWait1)) => {
            "FIN-WAIT-1 timed out, reset"
        }
        CloseCause::TimedOut(Timeout::Orphan(smoltcp::socket::tcp::State::Closing)) => {
            "CLOSING timed out, reset"
        }
        CloseCause::TimedOut(Timeout::Orphan(_)) => "LAST-ACK timed out, reset",
        CloseCause::Evicted => "evicted at the connection limit",
        CloseCause::Superseded => "superseded",
        CloseCause::SynDropped => "SYN dropped before its listener",
        CloseCause::TimeWaitCut(TimeWaitCut::Shutdown) => "shutdown during TIME-WAIT",
        CloseCause::TimeWaitCut(TimeWaitCut::ConnectionLimit) => {
            "TIME-WAIT cut short at the connection limit"
        }
        CloseCause::TimeWaitCut(TimeWaitCut::TableFull) => {
            "TIME-WAIT cut short (TIME-WAIT table full)"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_skipped_state_is_explained() {
        // ACK + data + FIN in one segment: SYN-RECEIVED straight to CLOSE-WAIT.
        let s = skipped("SYN-RECEIVED", "CLOSE-WAIT");
        assert!(
            s.contains("completed the handshake") && s.contains("FIN"),
            "{s}"
        );
        assert!(skipped("FIN-WAIT-1", "TIME-WAIT").contains("acknowledged ours"));
        assert_eq!(skipped("ESTABLISHED", "CLOSE-WAIT"), "");
        assert!(TIME_WAIT_WHY.contains("last ACK") && TIME_WAIT_WHY.contains("2 x MSL"));
    }

    fn figures() -> TcpFigures {
        TcpFigures {
            cwnd: 7300,
            ssthresh: Some(7300),
            srtt: Some(smoltcp::time::Duration::from_micros(10_200)),
            rto: smoltcp::time::Duration::from_millis(210),
            fast_retransmits: 4,
            sack_recoveries: 3,
            timeouts: 1,
            undone: 0,
        }
    }

    #[test]
    fn test_undone_recoveries_are_told_only_when_there_are_some() {
        let mut f = figures();
        assert!(!figures_line(&f).contains("undone"));
        f.undone = 2;
        assert!(
            figures_line(&f).ends_with(
                "1 by timeout; 2 of the recoveries undone (D-SACK: the resent segments had arrived, only late)"
            ),
            "{}",
            figures_line(&f)
        );
    }

    #[test]
    fn test_loss_repairs_are_told() {
        let f = figures();
        let rto = smoltcp::time::Duration::from_millis(400);
        assert_eq!(
            repair_line(LossRepair::FastRetransmit { sack: true }, 14_600, rto, &f),
            "fast recovery: SACK showed a loss, resending the holes from the scoreboard (cwnd 14,600 -> 7,300 bytes)"
        );
        assert!(
            repair_line(LossRepair::FastRetransmit { sack: false }, 14_600, rto, &f)
                .contains("NewReno")
        );
        assert!(
            repair_line(LossRepair::FastRetransmit { sack: true }, 7_300, rto, &f)
                .ends_with("(cwnd stays 7,300 bytes)")
        );
        let t = TcpFigures {
            cwnd: 1460,
            rto: smoltcp::time::Duration::from_millis(800),
            ..f
        };
        assert_eq!(
            repair_line(LossRepair::Timeout, 14_600, rto, &t),
            "retransmission timeout after 400 ms: back to slow start (cwnd 1,460 bytes), next timeout 800 ms"
        );
        // Each kind has its own explanation, said once (a bit of its own).
        let kinds = [
            LossRepair::FastRetransmit { sack: true },
            LossRepair::FastRetransmit { sack: false },
            LossRepair::Timeout,
        ];
        let bits: u8 = kinds.iter().map(|&k| repair_why(k).0).fold(0, |a, b| {
            assert_eq!(a & b, 0);
            a | b
        });
        assert_eq!(bits, 7);
        assert!(SACK_WHY.contains("RFC 6675") && TIMEOUT_WHY.contains("RFC 6298"));
    }

    #[test]
    fn test_close_figures_line() {
        assert_eq!(
            figures_line(&figures()),
            "TCP figures: cwnd 7,300 bytes, ssthresh 7,300 bytes, srtt 10 ms, rto 210 ms; losses repaired: 3 by SACK recovery, 1 by NewReno, 1 by timeout"
        );
        let fresh = TcpFigures {
            cwnd: 14_600,
            srtt: Some(smoltcp::time::Duration::from_micros(2_500)),
            rto: smoltcp::time::Duration::from_millis(200),
            ..TcpFigures::default()
        };
        assert_eq!(
            figures_line(&fresh),
            "TCP figures: cwnd 14,600 bytes, ssthresh none (no loss yet), srtt 2.5 ms, rto 200 ms; losses repaired: 0 by SACK recovery, 0 by NewReno, 0 by timeout"
        );
        let lan = TcpFigures {
            srtt: Some(smoltcp::time::Duration::from_micros(400)),
            ..fresh
        };
        assert!(
            figures_line(&lan).contains("srtt under 1 ms,"),
            "{}",
            figures_line(&lan)
        );
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn test_time_wait_causes_are_named() {
        for (cut, word) in [
            (TimeWaitCut::Shutdown, "shutdown"),
            (TimeWaitCut::ConnectionLimit, "connection limit"),
            (TimeWaitCut::TableFull, "table full"),
        ] {
            let r = close_reason(CloseCause::TimeWaitCut(cut));
            assert!(r.contains(word) && r.contains("TIME-WAIT"), "{r}");
        }
    }
}
