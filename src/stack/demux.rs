//! Where a segment goes: the 4-tuple map from a connection's endpoints to its entry, and the peek
//! that reads a frame's TCP addressing before smoltcp sees it.
//!
//! smoltcp finds a segment's socket by asking every socket of a set in turn; with thousands of
//! connections in one set each frame would cost O(connections). So every TCP socket lives in a set of
//! its own, and a frame is handed to just the set its 4-tuple names.

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpEndpoint, IpProtocol, Ipv4Packet, Ipv6Packet,
    TcpPacket,
};
use std::collections::HashMap;
use std::net::SocketAddr;

/// A TCP segment's addressing, read from a frame before the stack sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpPeek {
    pub src: IpEndpoint,
    pub dst: IpEndpoint,
    pub seq: u32,
    pub syn: bool,
    pub ack: bool,
    pub rst: bool,
}

impl TcpPeek {
    /// A SYN that opens a connection (no ACK, no RST).
    pub(crate) fn is_pure_syn(&self) -> bool {
        self.syn && !self.ack && !self.rst
    }
}

/// Reads the TCP addressing of an Ethernet frame with checked views; `None` for anything else or
/// anything malformed (the stack and the tracer deal with those).
pub(crate) fn peek_tcp(frame: &[u8]) -> Option<TcpPeek> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (src, dst, payload) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp || ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            let (s, d) = (
                IpAddress::Ipv4(ip.src_addr()),
                IpAddress::Ipv4(ip.dst_addr()),
            );
            let hl = ip.header_len() as usize;
            let tl = (ip.total_len() as usize).min(eth.payload().len());
            (s, d, eth.payload().get(hl..tl)?)
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            (
                IpAddress::Ipv6(ip.src_addr()),
                IpAddress::Ipv6(ip.dst_addr()),
                ip.payload(),
            )
        }
        _ => return None,
    };
    let tcp = TcpPacket::new_checked(payload).ok()?;
    Some(TcpPeek {
        src: IpEndpoint::new(src, tcp.src_port()),
        dst: IpEndpoint::new(dst, tcp.dst_port()),
        seq: tcp.seq_number().0 as u32,
        syn: tcp.syn(),
        ack: tcp.ack(),
        rst: tcp.rst(),
    })
}

pub(crate) fn to_socket_addr(e: IpEndpoint) -> SocketAddr {
    SocketAddr::new(e.addr.into(), e.port)
}

/// A TCP connection's (local, remote) endpoints as the demultiplexing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tuple(IpEndpoint, IpEndpoint);

impl std::hash::Hash for Tuple {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        crate::key::hash_tuple(
            h,
            6,
            (self.0.addr.into(), self.0.port),
            (self.1.addr.into(), self.1.port),
        );
    }
}

/// Connection entries by 4-tuple.
#[derive(Default)]
pub(super) struct Demux {
    by_tuple: HashMap<Tuple, usize>,
}

impl Demux {
    /// The entry a segment from `p.src` to `p.dst` belongs to.
    pub(super) fn lookup(&self, p: &TcpPeek) -> Option<usize> {
        self.by_tuple.get(&Tuple(p.dst, p.src)).copied()
    }

    /// Files `key` under its endpoints; returns the entry that held them before, if another did.
    pub(super) fn insert(
        &mut self,
        local: IpEndpoint,
        remote: IpEndpoint,
        key: usize,
    ) -> Option<usize> {
        self.by_tuple
            .insert(Tuple(local, remote), key)
            .filter(|&old| old != key)
    }

    /// Forgets `key`'s endpoints (unless a newer entry took them over).
    pub(super) fn remove(&mut self, local: IpEndpoint, remote: IpEndpoint, key: usize) {
        let t = Tuple(local, remote);
        if self.by_tuple.get(&t) == Some(&key) {
            self.by_tuple.remove(&t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::tests::test_frames;

    #[test]
    fn test_peek_reads_syn_addressing() {
        let f = test_frames::syn(49152, 7);
        let p = peek_tcp(&f).unwrap();
        assert!(p.syn && !p.ack && !p.rst && p.is_pure_syn());
        assert_eq!(p.src.port, 49152);
        assert_eq!(p.dst.port, 7);
    }

    #[test]
    fn test_peek_ignores_truncated_and_foreign_frames() {
        let f = test_frames::syn(1, 2);
        for cut in [0, 10, 14, 20, 33, 40, 50] {
            assert!(peek_tcp(&f[..cut]).is_none(), "cut at {cut}");
        }
        let mut arp = f.clone();
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!(peek_tcp(&arp).is_none());
    }

    #[test]
    fn test_demux_keeps_the_newest_entry_for_a_tuple() {
        let f = test_frames::syn(40000, 7);
        let p = peek_tcp(&f).unwrap();
        let mut d = Demux::default();
        assert_eq!(d.insert(p.dst, p.src, 1), None);
        assert_eq!(d.lookup(&p), Some(1));
        assert_eq!(d.insert(p.dst, p.src, 2), Some(1));
        d.remove(p.dst, p.src, 1);
        assert_eq!(
            d.lookup(&p),
            Some(2),
            "a stale key does not remove the new one"
        );
        d.remove(p.dst, p.src, 2);
        assert_eq!(d.lookup(&p), None);
    }
}
