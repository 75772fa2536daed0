//! The stack's own record of which MAC address each IPv4 neighbour answered ARP with, so that a
//! neighbour whose MAC changes is told ([`StackEvent::NeighbourMoved`](super::StackEvent)): a second
//! host answering for the address, or ARP spoofing (issue 14, case 9). smoltcp updates its neighbour
//! cache from the same packets as it always did; this record only watches.
//!
//! Bounded like smoltcp's neighbour cache ([`NEIGHBOURS_KEPT`] entries). When it is full, a new
//! address drops the oldest one learned (first in, first out), as a full smoltcp cache gives up an
//! old entry for a new one: a flood of invented senders costs a bounded amount of memory, and every
//! address seen recently is watched.

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, IpCidr,
    Ipv4Address,
};
use std::collections::{HashMap, VecDeque};

/// Addresses the record holds at most: the size of smoltcp's neighbour cache (Cargo.toml,
/// `iface-neighbor-cache-count-512`).
pub(crate) const NEIGHBOURS_KEPT: usize = 512;

/// What an ARP packet says about its sender: `ip` is at `mac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ArpSender {
    pub(crate) ip: Ipv4Address,
    pub(crate) mac: [u8; 6],
}

/// The sender of `frame` if it is an ARP request or reply that smoltcp learns a neighbour from: to
/// our MAC (or broadcast, multicast), for one of our addresses, from a unicast sender in one of our
/// networks (the same tests as smoltcp's `process_arp`). Anything else, malformed frames included,
/// is `None`.
pub(crate) fn arp_sender(
    frame: &[u8],
    our_mac: EthernetAddress,
    ours: &[IpCidr],
) -> Option<ArpSender> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    let dst = eth.dst_addr();
    if !dst.is_broadcast() && !dst.is_multicast() && dst != our_mac {
        return None;
    }
    let packet = ArpPacket::new_checked(eth.payload()).ok()?;
    let ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr,
        source_protocol_addr,
        target_protocol_addr,
        ..
    } = ArpRepr::parse(&packet).ok()?
    else {
        return None;
    };
    if matches!(operation, ArpOperation::Unknown(_)) {
        return None;
    }
    let ip = source_protocol_addr;
    let unicast = !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast())
        && source_hardware_addr.is_unicast();
    let for_us = ours
        .iter()
        .any(|c| matches!(c, IpCidr::Ipv4(v4) if v4.address() == target_protocol_addr));
    let on_link = ours.iter().any(
        |c| matches!(c, IpCidr::Ipv4(v4) if v4.contains_addr(&ip) && v4.broadcast() != Some(ip)),
    );
    (unicast && for_us && on_link).then_some(ArpSender {
        ip,
        mac: source_hardware_addr.0,
    })
}

/// IPv4 address -> the MAC its last ARP packet came from, at most [`NEIGHBOURS_KEPT`] of them.
#[derive(Debug, Default)]
pub(crate) struct Neighbours {
    macs: HashMap<Ipv4Address, [u8; 6]>,
    /// The addresses in the order they were first learned (oldest first); always the keys of `macs`.
    order: VecDeque<Ipv4Address>,
}

impl Neighbours {
    /// Records that `ip` is at `mac`. Returns the MAC it was at before if that was another one (the
    /// neighbour moved); a first sighting or the same MAC again is `None`.
    pub(crate) fn learn(&mut self, ip: Ipv4Address, mac: [u8; 6]) -> Option<[u8; 6]> {
        if let Some(old) = self.macs.get_mut(&ip) {
            if *old == mac {
                return None;
            }
            return Some(std::mem::replace(old, mac));
        }
        if self.macs.len() >= NEIGHBOURS_KEPT {
            if let Some(oldest) = self.order.pop_front() {
                self.macs.remove(&oldest);
            }
        }
        self.macs.insert(ip, mac);
        self.order.push_back(ip);
        None
    }

    /// Addresses recorded.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.macs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0x66];

    fn ip(i: u32) -> Ipv4Address {
        Ipv4Address::from_bits(0x0a00_0000 + i)
    }

    #[test]
    fn a_changed_mac_is_a_move_once_and_the_same_mac_is_nothing() {
        let mut n = Neighbours::default();
        assert_eq!(n.learn(ip(1), A), None, "first sighting");
        assert_eq!(n.learn(ip(1), A), None, "same MAC again");
        assert_eq!(n.learn(ip(1), B), Some(A), "moved");
        assert_eq!(n.learn(ip(1), B), None, "the move is told once");
        assert_eq!(n.learn(ip(1), A), Some(B), "and moving back is a move too");
        assert_eq!(n.len(), 1);
    }

    #[test]
    fn the_record_is_bounded_and_drops_the_oldest() {
        let mut n = Neighbours::default();
        for i in 0..(NEIGHBOURS_KEPT as u32 + 100) {
            assert_eq!(n.learn(ip(i), A), None);
            assert!(n.len() <= NEIGHBOURS_KEPT);
            assert_eq!(n.order.len(), n.len());
        }
        assert_eq!(n.len(), NEIGHBOURS_KEPT);
        // The first 100 were dropped: seen again with another MAC, they are first sightings.
        assert_eq!(n.learn(ip(0), B), None);
        // The newest ones are still watched.
        let last = NEIGHBOURS_KEPT as u32 + 99;
        assert_eq!(n.learn(ip(last), B), Some(A));
    }

    #[test]
    fn only_arp_that_smoltcp_learns_from_is_read_and_junk_is_none() {
        use crate::frames::{
            Arp, Eth, BROADCAST_MAC, CLIENT_MAC, CLIENT_V4, SERVER_MAC, SERVER_V4,
        };
        let ours = [IpCidr::new(smoltcp::wire::IpAddress::Ipv4(SERVER_V4), 24)];
        let me = EthernetAddress(SERVER_MAC);
        let reply = Eth::to_server().arp(&Arp::reply(B, CLIENT_V4, SERVER_MAC, SERVER_V4));
        assert_eq!(
            arp_sender(&reply, me, &ours),
            Some(ArpSender {
                ip: CLIENT_V4,
                mac: B
            })
        );
        let request =
            Eth::new(CLIENT_MAC, BROADCAST_MAC).arp(&Arp::request(A, CLIENT_V4, SERVER_V4));
        assert_eq!(arp_sender(&request, me, &ours).map(|s| s.mac), Some(A));
        // For another host's address, to another MAC, from off the network: smoltcp ignores them.
        let other = Eth::to_server().arp(&Arp::request(A, CLIENT_V4, CLIENT_V4));
        assert_eq!(arp_sender(&other, me, &ours), None);
        let elsewhere =
            Eth::new(A, [2, 9, 9, 9, 9, 9]).arp(&Arp::reply(B, CLIENT_V4, SERVER_MAC, SERVER_V4));
        assert_eq!(arp_sender(&elsewhere, me, &ours), None);
        let far = Eth::to_server().arp(&Arp::reply(B, [10, 1, 1, 1].into(), SERVER_MAC, SERVER_V4));
        assert_eq!(arp_sender(&far, me, &ours), None);
        // Every truncation of a good frame, and garbage, is None, never a panic.
        for n in 0..reply.len() {
            assert_eq!(arp_sender(&reply[..n], me, &ours), None);
        }
        assert_eq!(arp_sender(&[0xff; 100], me, &ours), None);
    }
}
