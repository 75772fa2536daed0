//! Ephemeral ports for client sockets (RFC 6335's dynamic range), picked in a seeded order so that a
//! deterministic run picks the same ports every time.

use std::collections::HashSet;

/// The dynamic (ephemeral) port range, RFC 6335.
pub(crate) const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;

pub(super) struct Ports {
    next: u16,
    /// Local ports of client sockets, so that picking a free one does not scan every connection.
    in_use: HashSet<u16>,
}

impl Ports {
    pub(super) fn new(seed: u64) -> Ports {
        Ports {
            next: EPHEMERAL.start() + (seed % 16384) as u16,
            in_use: HashSet::new(),
        }
    }

    /// A free ephemeral port that `served` (a served port) does not claim; taken until
    /// [`Ports::give_back`].
    pub(super) fn take(&mut self, served: impl Fn(u16) -> bool) -> Option<u16> {
        let span = (EPHEMERAL.end() - EPHEMERAL.start()) as u32 + 1;
        for _ in 0..span {
            let p = self.next;
            self.next = if p == *EPHEMERAL.end() {
                *EPHEMERAL.start()
            } else {
                p + 1
            };
            if !self.in_use.contains(&p) && !served(p) {
                self.in_use.insert(p);
                return Some(p);
            }
        }
        None
    }

    pub(super) fn give_back(&mut self, port: u16) {
        self.in_use.remove(&port);
    }

    #[cfg(test)]
    pub(super) fn in_use(&self) -> &HashSet<u16> {
        &self.in_use
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ports_are_unique_skip_served_ones_and_come_back() {
        let mut p = Ports::new(0);
        let a = p.take(|_| false).unwrap();
        assert_eq!(a, 49152);
        let b = p.take(|port| port == 49153).unwrap();
        assert_eq!(b, 49154, "a served port is skipped");
        p.give_back(a);
        assert_eq!(p.in_use().len(), 1);
    }

    #[test]
    fn test_ports_run_out() {
        let mut p = Ports::new(7);
        for _ in EPHEMERAL {
            assert!(p.take(|_| false).is_some());
        }
        assert_eq!(p.take(|_| false), None);
    }
}
