//! Narration from what the stack says it did: state changes, RSTs it ignored, refusals and closes
//! with their causes ([`StackEvent`]s) become `tapstack::tcp` lines, flow records and `--events`
//! lines. Nothing here is guessed from the look of a frame.

use smoltcp::time::Instant;
use std::net::SocketAddr;

use super::decode::Mac;
use super::events::{self, Event};
use super::{Secs, Tracer, TCP};
use crate::stack::{
    state_name, CloseCause, ConnIds, StackEvent, StackObserver, TimeWaitAck, TimeWaitCut, Timeout,
};

/// Said the first time a connection enters TIME-WAIT: why it exists, in one plain sentence.
const TIME_WAIT_WHY: &str =
    "(TIME-WAIT: the side that closes first keeps the connection's numbers \
    for 2 x MSL, so that if its last ACK was lost and the peer sends its FIN again it can ACK it \
    instead of answering RST, and so that stray segments of this connection die out before the \
    same addresses and ports are used again)";

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
