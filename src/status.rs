//! The read-model the services may look at: endpoints, live connection tables of both stacks, counters.
//!
//! The reactor keeps it current (rows change on state transitions, counters are copied once per loop turn);
//! the HTTP status page renders it. It holds no sockets, so a service can read it while the reactor has a
//! socket borrowed.

use smoltcp::socket::tcp;
use std::collections::BTreeMap;

use crate::stack::{state_name, StackEvent};
use std::net::SocketAddr;

/// Which TCP/IP stack a connection or endpoint lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StackKind {
    /// The smoltcp userspace stack on the TAP device or the virtual wire.
    Stack,
    /// The host kernel's stack, through ordinary sockets.
    Host,
}

impl StackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StackKind::Stack => "stack",
            StackKind::Host => "host",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One served endpoint, as the ready line lists it: `stack tcp 192.168.69.1:7 echo`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Endpoint {
    pub stack: StackKind,
    pub proto: Proto,
    pub addr: SocketAddr,
    pub service: &'static str,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.stack.as_str(),
            self.proto.as_str(),
            self.addr,
            self.service
        )
    }
}

/// One row of the `netstat -an`-like table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnRow {
    /// Short connection id, as the TCP narration names it (`c12`).
    pub id: u64,
    pub stack: StackKind,
    pub proto: Proto,
    pub local: SocketAddr,
    pub remote: Option<SocketAddr>,
    /// TCP state in RFC 793 spelling (`ESTABLISHED`, `LISTEN`, ...); `-` for UDP.
    pub state: &'static str,
    pub service: &'static str,
}

/// Packet, byte and connection counters of one stack. On the host side the kernel hides TCP segments:
/// there `packets_*` count UDP datagrams only, and `bytes_*` count TCP and UDP payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Frames (host: UDP datagrams) received.
    pub packets_in: u64,
    /// Frames (host: UDP datagrams) sent.
    pub packets_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Connections accepted.
    pub conns_accepted: u64,
    /// SYNs refused at the connection limit.
    pub conns_refused: u64,
    /// Accepted connections closed since.
    pub conns_closed: u64,
    /// Frames or datagrams dropped, by reason (`"malformed: truncated IPv4 header"`, `"tx: link down"`).
    pub drops: BTreeMap<String, u64>,
    /// Neighbours whose MAC address changed (ARP said another MAC for an address than before: a
    /// second host answering for it, or ARP spoofing). Not a drop: the frame was processed. Left out
    /// of the JSON while 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub neighbours_moved: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Counters {
    /// Counts one drop for `reason`.
    pub fn drop(&mut self, reason: &str) {
        match self.drops.get_mut(reason) {
            Some(n) => *n += 1,
            None => {
                self.drops.insert(reason.to_string(), 1);
            }
        }
    }

    /// All drops together.
    pub fn drops_total(&self) -> u64 {
        self.drops.values().sum()
    }
}

/// What the process holds, for leak accounting (lwIP style: every pool's size is visible, so a test
/// can check that it returns to its baseline).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Resources {
    /// Sockets in smoltcp's socket set (listeners, connections, UDP, client sockets).
    pub stack_sockets: usize,
    /// Userspace TCP connections being served (the `--max-connections` budget).
    pub stack_conns: usize,
    /// Listening sockets kept ready across all served ports.
    pub stack_listeners: usize,
    /// Flows the tracer follows.
    pub trace_flows: usize,
    /// Host sockets registered with mio (listeners, UDP sockets, connections).
    pub host_sources: usize,
    pub host_conns: usize,
    /// Resident memory of the process, KiB (refreshed at most every 100 ms).
    pub rss_kib: u64,
    /// The TAP device's `txqueuelen`: frames the kernel queues towards tapstack while the loop is
    /// busy (0 without a TAP device). Refreshed with `rss_kib`.
    pub tap_queue_len: u64,
    /// Frames the kernel dropped on their way to tapstack because that queue was full: the device's
    /// TX dropped, as `ip -s link` shows it (since the device was created, not since tapstack started).
    pub tap_tx_dropped: u64,
    /// Frames from tapstack the kernel dropped: the device's RX dropped.
    pub tap_rx_dropped: u64,
    /// The device's TX FIFO errors.
    pub tap_tx_fifo_errors: u64,
}

/// Resident memory of this process in KiB, from /proc/self/status (0 where that is unavailable).
pub(crate) fn rss_kib() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[derive(Debug, Clone, Default)]
/// The read-model the HTTP pages render.
pub struct Status {
    /// Every endpoint served.
    pub endpoints: Vec<Endpoint>,
    /// Sockets, flows and memory in use.
    pub resources: Resources,
    /// Live connections of both stacks, keyed by connection id (so the table lists them in age order).
    pub conns: BTreeMap<u64, ConnRow>,
    /// Counters of the userspace stack.
    pub stack: Counters,
    /// Counters of the host side.
    pub host: Counters,
}

impl Status {
    /// The counters of one stack.
    pub fn counters(&self, stack: StackKind) -> &Counters {
        match stack {
            StackKind::Stack => &self.stack,
            StackKind::Host => &self.host,
        }
    }

    /// Follows the userspace stack: a row per served connection, from its first state change until
    /// it is closed. Client sockets have no rows.
    pub fn apply(&mut self, ev: &StackEvent) {
        match *ev {
            StackEvent::State {
                conn,
                local,
                remote,
                to,
                service: Some(kind),
                ..
            } if to != tcp::State::Closed => {
                self.conns.insert(
                    conn,
                    ConnRow {
                        id: conn,
                        stack: StackKind::Stack,
                        proto: Proto::Tcp,
                        local,
                        remote: Some(remote),
                        state: state_name(to),
                        service: kind.name(),
                    },
                );
            }
            StackEvent::Closed {
                conn,
                service: Some(_),
                ..
            } => {
                self.conns.remove(&conn);
            }
            _ => {}
        }
    }
}
