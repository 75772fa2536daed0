//! Listener pools: smoltcp has no listen queue (one socket serves one connection, and a SYN that finds
//! no listening socket gets RST), so each served port keeps a listening entry at all times. A SYN to a
//! served port first gets a fresh listener, unless `--max-connections` is reached: then a half-open
//! connection gives way, or the SYN is refused, counted and logged, whether or not its port still
//! has a listener (listeners do not count towards the limit; served connections on all ports do).

use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};
use std::collections::VecDeque;

use super::demux::{to_socket_addr, TcpPeek};
use super::event::{CloseCause, Opener, Refusal, StackEvent, StackObserver};
use super::table::{Life, Role, Served, Window};
use super::Stack;
use crate::service::ServiceKind;

/// The listening entries of one served TCP port.
pub(super) struct Pool {
    pub port: u16,
    pub kind: ServiceKind,
    pub listeners: Vec<usize>,
}

pub(super) struct Listen {
    pub pools: Vec<Pool>,
    /// Served entries in the order their SYN came; those still in SYN-RECEIVED are the half-open
    /// ones that a new SYN may push out at the connection limit (stale keys are skipped).
    pub half_open: VecDeque<usize>,
    /// Connections being served.
    pub served: usize,
    pub max_connections: usize,
    /// The last time a refusal was logged, to keep a SYN flood from flooding the log too.
    last_refusal_log: Option<Instant>,
}

impl Listen {
    pub(super) fn new(max_connections: usize) -> Listen {
        Listen {
            pools: Vec::new(),
            half_open: VecDeque::new(),
            served: 0,
            max_connections,
            last_refusal_log: None,
        }
    }

    pub(super) fn serves(&self, port: u16) -> bool {
        self.pools.iter().any(|p| p.port == port)
    }

    pub(super) fn listener_count(&self) -> usize {
        self.pools.iter().map(|p| p.listeners.len()).sum()
    }

    /// Whether a refusal may be logged now (one line a second at most).
    fn may_log_refusal(&mut self, now: Instant) -> bool {
        let quiet = self
            .last_refusal_log
            .is_some_and(|t| now < t + Duration::from_secs(1));
        if !quiet {
            self.last_refusal_log = Some(now);
        }
        !quiet
    }
}

impl<O: StackObserver> Stack<O> {
    /// Listens on a TCP port for a service.
    pub fn serve_tcp(&mut self, kind: ServiceKind, port: u16) {
        self.listen.pools.push(Pool {
            port,
            kind,
            listeners: Vec::new(),
        });
        let i = self.listen.pools.len() - 1;
        self.replenish(i);
    }

    /// Moves listeners that took a SYN into service, then makes sure one listens again (unless the
    /// connection limit is reached).
    pub(super) fn replenish(&mut self, pool: usize) {
        let mut i = 0;
        while i < self.listen.pools[pool].listeners.len() {
            let key = self.listen.pools[pool].listeners[i];
            let initial_window = self.table.initial_window;
            let Some(e) = self.table.get_mut(key) else {
                self.listen.pools[pool].listeners.swap_remove(i);
                continue;
            };
            if e.state_now() == tcp::State::Listen {
                i += 1;
                continue;
            }
            self.listen.pools[pool].listeners.swap_remove(i);
            let sock = e.sock_ref();
            match (sock.local_endpoint(), sock.remote_endpoint()) {
                (Some(local), Some(remote)) => {
                    e.local = local;
                    e.remote = remote;
                    e.role = Role::Served(Served {
                        kind: self.listen.pools[pool].kind,
                        life: Life::Handshake {
                            since: self.last_now,
                        },
                        window: Window::new(initial_window, self.last_now),
                    });
                    self.listen.served += 1;
                    self.listen.half_open.push_back(key);
                    if let Some(old) = self.demux.insert(local, remote, key) {
                        // A stale entry for the same 4-tuple (TIME-WAIT cut short): the new one wins.
                        if self.table.contains(old) {
                            self.recycle(old, CloseCause::Superseded);
                        }
                    }
                    self.table.mark_ready(key);
                }
                // Left LISTEN without a peer (an RST reset it): listen again.
                _ => {
                    let port = self.listen.pools[pool].port;
                    let _ = e.sock().listen(port);
                    i += 1;
                }
            }
        }
        if self.listen.pools[pool].listeners.is_empty()
            && self.listen.served < self.listen.max_connections
        {
            let port = self.listen.pools[pool].port;
            let mut spare = self.table.fresh_socket(true);
            if spare.0.get_mut::<tcp::Socket>(spare.1).listen(port).is_ok() {
                let any = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::UNSPECIFIED), port);
                let key = self.table.insert(
                    spare,
                    Role::Listener { pool },
                    0,
                    any,
                    any,
                    tcp::State::Listen,
                    self.last_now,
                );
                self.listen.pools[pool].listeners.push(key);
            } else {
                self.table.keep_spare(spare, usize::MAX);
            }
        }
    }

    /// Finds the listener for a SYN that belongs to no entry, and numbers the connection it will
    /// become; `None` when the SYN is refused (the shared set answers it with RST).
    pub(super) fn accept_syn(&mut self, now: Instant, p: &TcpPeek) -> Option<usize> {
        let Some(pool) = self
            .listen
            .pools
            .iter()
            .position(|pl| pl.port == p.dst.port)
        else {
            self.refuse(now, p, Refusal::NoListener);
            return None;
        };
        // The limit is on served connections across all ports, not per listener: every port keeps
        // its listener when the limit is reached elsewhere (a connection closing anywhere frees a
        // slot for any port), so the listener's presence says nothing about the room left.
        // At the limit, a half-open connection gives way (as a kernel's full SYN queue drops its
        // oldest), so a flood of SYNs that are never answered cannot lock real clients out.
        // Connections in TIME-WAIT count too, and the oldest of them gives way first: it has no
        // socket and nothing left to say but a last ACK again.
        if self.listen.served + self.time_wait.served() >= self.listen.max_connections {
            if let Some(old) = self.time_wait.oldest(true) {
                self.end_time_wait(
                    old,
                    CloseCause::TimeWaitCut(super::event::TimeWaitCut::ConnectionLimit),
                );
            }
        }
        if self.listen.served + self.time_wait.served() >= self.listen.max_connections
            && !self.evict_half_open()
        {
            self.refuse(now, p, Refusal::ConnectionLimit);
            return None;
        }
        self.replenish(pool);
        let Some(key) = self.listen.pools[pool].listeners.first().copied() else {
            self.refuse(now, p, Refusal::ConnectionLimit);
            return None;
        };
        let id = self.ids.next();
        let kind = self.listen.pools[pool].kind;
        if let Some(e) = self.table.get_mut(key) {
            e.id = id;
        }
        self.emit(StackEvent::Opened {
            conn: id,
            local: to_socket_addr(p.dst),
            remote: to_socket_addr(p.src),
            by: Opener::Peer,
            service: Some(kind),
        });
        Some(key)
    }

    fn refuse(&mut self, now: Instant, p: &TcpPeek, why: Refusal) {
        self.emit(StackEvent::Refused {
            local: to_socket_addr(p.dst),
            remote: to_socket_addr(p.src),
            why,
        });
        if why != Refusal::ConnectionLimit {
            return;
        }
        self.counters.conns_refused += 1;
        if self.listen.may_log_refusal(now) {
            log::warn!(
                target: "tapstack::tcp",
                "refusing SYN from {} to port {}: {} connections open, the --max-connections limit ({} refused so far)",
                p.src, p.dst.port, self.listen.served, self.counters.conns_refused
            );
        }
    }

    /// Drops the oldest connection still in SYN-RECEIVED; false when there is none.
    fn evict_half_open(&mut self) -> bool {
        while let Some(key) = self.listen.half_open.pop_front() {
            let Some(e) = self.table.get(key) else {
                continue;
            };
            if !matches!(e.role, Role::Served(_)) || e.state_now() != tcp::State::SynReceived {
                continue;
            }
            self.counters
                .drop("tcp: half-open connection evicted at the connection limit");
            self.remove_served(key, CloseCause::Evicted);
            return true;
        }
        false
    }

    /// A served connection is gone: its slot is free, so make sure every port listens again.
    pub(super) fn slot_freed(&mut self) {
        for i in 0..self.listen.pools.len() {
            if self.listen.pools[i].listeners.is_empty() {
                self.replenish(i);
            }
        }
    }

    /// Keeps the half-open queue short: drops keys from its front that are no longer half-open.
    pub(super) fn trim_half_open(&mut self, removed: usize) {
        while let Some(&k) = self.listen.half_open.front() {
            let stale = k == removed
                || !self
                    .table
                    .get(k)
                    .is_some_and(|x| x.state == tcp::State::SynReceived);
            if !stale {
                break;
            }
            self.listen.half_open.pop_front();
        }
    }
}
