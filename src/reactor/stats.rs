//! What the loop reports about itself: counters of both stacks and the resources in use, copied into
//! the status read-model each turn, and logged as two lines (every `--stats-interval`, on SIGUSR1 and
//! at shutdown).

use smoltcp::time::{Duration, Instant};

use super::{Reactor, TracedStack};
use crate::device::tap::TapQueueWatch;
use crate::host::Host;
use crate::status::Status;

impl Reactor {
    /// The counters and resources, logged.
    pub(super) fn log_stats(&mut self) {
        self.rss_at = None;
        self.refresh_counters();
        for (name, c) in [("stack", &self.status.stack), ("host", &self.status.host)] {
            log::info!(
                target: "tapstack::stats",
                "{name}: packets in {} out {}, bytes in {} out {}, connections accepted {} refused {} closed {} open {}, drops {}{}",
                c.packets_in, c.packets_out, c.bytes_in, c.bytes_out,
                c.conns_accepted, c.conns_refused, c.conns_closed,
                self.status.conns.values().filter(|r| r.stack.as_str() == name).count(),
                c.drops_total(),
                if c.drops.is_empty() { String::new() } else {
                    format!(" ({})", c.drops.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("; "))
                }
            );
        }
        let r = &self.status.resources;
        let tap = match &self.tap_queue {
            Some(t) => format!(
                ", {} txqueuelen {} tx_dropped {} rx_dropped {} tx_fifo_errors {}",
                t.name(),
                r.tap_queue_len,
                r.tap_tx_dropped,
                r.tap_rx_dropped,
                r.tap_tx_fifo_errors
            ),
            None => String::new(),
        };
        log::info!(
            target: "tapstack::stats",
            "resources: stack sockets {} (connections {}, listeners {}), trace flows {}, host sources {} (connections {}), rss {} KiB{tap}",
            r.stack_sockets, r.stack_conns, r.stack_listeners, r.trace_flows, r.host_sources, r.host_conns, r.rss_kib
        );
    }
}

/// Copies the counters of both stacks and the resources in use into the status read-model. Resident
/// memory and the TAP device's queue counters are read at most every 100 ms.
pub(super) fn refresh_counters(
    stack: &TracedStack,
    host: Option<&Host>,
    status: &mut Status,
    now: Instant,
    rss_at: &mut Option<Instant>,
    tap_queue: Option<&mut TapQueueWatch>,
) {
    status.stack = stack.all_counters();
    if let Some(h) = host {
        status.host = h.counters().clone();
    }
    stack.observer().merge_into(&mut status.stack);
    let r = &mut status.resources;
    r.stack_sockets = stack.socket_count();
    r.stack_conns = stack.connection_count();
    r.stack_listeners = stack.listener_count();
    r.trace_flows = stack.observer().flow_count();
    r.host_sources = host.map_or(0, |h| h.source_count());
    r.host_conns = host.map_or(0, |h| h.connection_count());
    if rss_at.is_none_or(|t| now >= t + Duration::from_millis(100)) {
        *rss_at = Some(now);
        r.rss_kib = crate::status::rss_kib();
        if let Some(s) = tap_queue.and_then(|t| t.sample(std::time::Instant::now())) {
            r.tap_queue_len = s.queue_len;
            r.tap_tx_dropped = s.tx_dropped;
            r.tap_rx_dropped = s.rx_dropped;
            r.tap_tx_fifo_errors = s.tx_fifo_errors;
        }
    }
}
