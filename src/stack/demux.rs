//! Where a segment goes: the 4-tuple map from a connection's endpoints to its entry, and the peek
//! that reads a frame's TCP addressing before smoltcp sees it.
//!
//! smoltcp finds a segment's socket by asking every socket of a set in turn; with thousands of
//! connections in one set each frame would cost O(connections). So every TCP socket lives in a set of
//! its own, and a frame is handed to just the set its 4-tuple names.
//!
//! IPv6 segments may come behind extension headers. smoltcp reads one of them, a leading
//! Hop-by-Hop header, and answers any other (Destination Options, Routing, Fragment) with an ICMPv6
//! parameter problem; so the peek walks the chain to find the segment's 4-tuple behind a
//! Hop-by-Hop header, and [`ipv6_undeliverable`] names what smoltcp cannot deliver, for the stack
//! to drop and count instead (a segment of a live connection that missed its socket set would
//! otherwise be answered with RST from the shared set).

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpEndpoint, IpProtocol, Ipv4Packet, Ipv6ExtHeader,
    Ipv6FragmentHeader, Ipv6Packet, Ipv6RoutingHeader, TcpOption, TcpPacket,
};
use std::collections::HashMap;
use std::net::SocketAddr;

/// A TCP segment's addressing, read from a frame before the stack sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpPeek {
    pub src: IpEndpoint,
    pub dst: IpEndpoint,
    pub seq: u32,
    /// The acknowledgment number (meaningful with `ack`).
    pub ack_no: u32,
    pub syn: bool,
    pub ack: bool,
    pub rst: bool,
    pub fin: bool,
    /// Payload bytes (SYN and FIN not counted).
    pub len: u32,
    /// A SYN that offers window scaling (RFC 7323): the stack scales its windows only then.
    pub wscale: bool,
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
            let upper = ipv6_upper(&ip).ok()?;
            if upper.proto != IpProtocol::Tcp || upper.undeliverable.is_some() {
                return None;
            }
            (
                IpAddress::Ipv6(ip.src_addr()),
                IpAddress::Ipv6(ip.dst_addr()),
                upper.payload,
            )
        }
        _ => return None,
    };
    let tcp = TcpPacket::new_checked(payload).ok()?;
    Some(TcpPeek {
        src: IpEndpoint::new(src, tcp.src_port()),
        dst: IpEndpoint::new(dst, tcp.dst_port()),
        seq: tcp.seq_number().0 as u32,
        ack_no: tcp.ack_number().0 as u32,
        syn: tcp.syn(),
        ack: tcp.ack(),
        rst: tcp.rst(),
        fin: tcp.fin(),
        len: tcp.payload().len() as u32,
        wscale: tcp.syn() && offers_wscale(tcp.options()),
    })
}

/// Whether a SYN's options hold a window scale option (a malformed list ends the walk: smoltcp
/// would not take that SYN either).
fn offers_wscale(mut opts: &[u8]) -> bool {
    while !opts.is_empty() {
        match TcpOption::parse(opts) {
            Ok((_, TcpOption::WindowScale(_))) => return true,
            Ok((_, TcpOption::EndOfList)) | Err(_) => return false,
            Ok((rest, _)) => opts = rest,
        }
    }
    false
}

/// Extension headers walked at most: RFC 8200 recommends each kind at most once (twice for
/// Destination Options), seven in all; a longer chain is a crafted one.
const MAX_EXT_HEADERS: usize = 8;

/// The upper layer of an IPv6 packet, behind its extension headers.
struct Ipv6Upper<'a> {
    proto: IpProtocol,
    payload: &'a [u8],
    /// Why smoltcp cannot deliver it (an extension header it does not read), if it cannot.
    undeliverable: Option<&'static str>,
}

/// Walks an IPv6 packet's extension headers with checked views. `Err` names a malformed or
/// overlong chain.
fn ipv6_upper<'a>(ip: &Ipv6Packet<&'a [u8]>) -> Result<Ipv6Upper<'a>, &'static str> {
    let mut proto = ip.next_header();
    let mut rest: &'a [u8] = ip.payload();
    let mut undeliverable = None;
    for i in 0..=MAX_EXT_HEADERS {
        let len = match proto {
            IpProtocol::HopByHop | IpProtocol::Ipv6Opts | IpProtocol::Ipv6Route => {
                let h = Ipv6ExtHeader::new_checked(rest)
                    .map_err(|_| "ipv6: truncated extension header")?;
                match proto {
                    // smoltcp reads a Hop-by-Hop header in first place only, as RFC 8200 puts it.
                    IpProtocol::HopByHop if i > 0 => {
                        return Err("ipv6: Hop-by-Hop header not first");
                    }
                    IpProtocol::HopByHop => {}
                    IpProtocol::Ipv6Opts => {
                        undeliverable.get_or_insert(
                            "ipv6: behind a Destination Options header (smoltcp reads only Hop-by-Hop)",
                        );
                    }
                    _ => {
                        let r = Ipv6RoutingHeader::new_checked(h.payload())
                            .map_err(|_| "ipv6: truncated extension header")?;
                        // With segments left the packet is to be forwarded: this stack routes nothing.
                        undeliverable.get_or_insert(if r.segments_left() == 0 {
                            "ipv6: behind a Routing header (smoltcp reads only Hop-by-Hop)"
                        } else {
                            "ipv6: Routing header with segments left (not a router)"
                        });
                    }
                }
                proto = h.next_header();
                (h.header_len() as usize + 1) * 8
            }
            IpProtocol::Ipv6Frag => {
                // Eight bytes whatever its second (reserved, ignored on reception) byte says.
                let (Some(&next), Some(body)) = (rest.first(), rest.get(2..8)) else {
                    return Err("ipv6: truncated extension header");
                };
                let f = Ipv6FragmentHeader::new_checked(body)
                    .map_err(|_| "ipv6: truncated extension header")?;
                proto = IpProtocol::from(next);
                if f.frag_offset() != 0 || f.more_frags() {
                    // The upper header may be in another fragment: the walk ends here.
                    return Ok(Ipv6Upper {
                        proto,
                        payload: rest.get(8..).unwrap_or(&[]),
                        undeliverable: Some("ipv6: fragment (smoltcp reassembles IPv4 only)"),
                    });
                }
                undeliverable.get_or_insert(
                    "ipv6: behind an atomic Fragment header (smoltcp reads only Hop-by-Hop)",
                );
                8
            }
            _ => {
                return Ok(Ipv6Upper {
                    proto,
                    payload: rest,
                    undeliverable,
                })
            }
        };
        rest = rest.get(len..).ok_or("ipv6: truncated extension header")?;
    }
    Err("ipv6: more than 8 extension headers")
}

/// Why the stack must drop an IPv6 frame smoltcp would not deliver to a socket (an extension
/// header it does not read, a malformed chain), or `None` for any frame smoltcp takes as it is
/// (every frame without extension headers, or with a leading Hop-by-Hop header only).
pub(crate) fn ipv6_undeliverable(frame: &[u8]) -> Option<&'static str> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv6 {
        return None;
    }
    // smoltcp and the tracer judge a malformed IPv6 header itself.
    let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
    match ip.next_header() {
        IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Icmpv6 => None,
        _ => match ipv6_upper(&ip) {
            Ok(u) => u.undeliverable,
            Err(why) => Some(why),
        },
    }
}

pub(crate) fn to_socket_addr(e: IpEndpoint) -> SocketAddr {
    SocketAddr::new(e.addr.into(), e.port)
}

/// A TCP connection's (local, remote) endpoints as the demultiplexing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tuple(pub IpEndpoint, pub IpEndpoint);

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
        assert!(!p.wscale && !p.fin && p.len == 0);
        let ws = crate::frames::Tcp::new(49152, 7, 1)
            .syn()
            .mss(1460)
            .wscale(7);
        assert!(peek_tcp(&ws.to_server()).unwrap().wscale);
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

    use crate::frames::{Eth, Tcp, CLIENT_V6, SERVER_V6};

    const HBH: u8 = 0;
    const ROUTING: u8 = 43;
    const FRAGMENT: u8 = 44;
    const DEST_OPTS: u8 = 60;

    /// An 8-byte extension header of kind `_` followed by `next`: PadN options for Hop-by-Hop and
    /// Destination Options, a type-0 Routing header with `arg` segments left, or a Fragment header
    /// with `arg` as its offset/M field.
    fn ext(next: u8, kind: u8, arg: u16) -> Vec<u8> {
        match kind {
            ROUTING => vec![next, 0, 0, arg as u8, 0, 0, 0, 0],
            FRAGMENT => {
                let [hi, lo] = arg.to_be_bytes();
                vec![next, 0, hi, lo, 0, 0, 0x12, 0x67]
            }
            _ => vec![next, 0, 1, 4, 0, 0, 0, 0],
        }
    }

    /// A TCP segment to the server behind the extension header bytes `chain`, whose first header
    /// is `first`.
    fn v6_behind(first: u8, chain: &[u8]) -> Vec<u8> {
        let seg = Tcp::new(40000, 7, 1).ack(1).data(b"hello");
        let mut p = chain.to_vec();
        p.extend(seg.segment(CLIENT_V6.into(), SERVER_V6.into()));
        Eth::to_server()
            .ipv6(CLIENT_V6, SERVER_V6)
            .packet(first, &p)
    }

    #[test]
    fn test_peek_reads_tcp_behind_hop_by_hop() {
        let f = v6_behind(HBH, &ext(6, HBH, 0));
        let p = peek_tcp(&f).expect("the 4-tuple behind a Hop-by-Hop header");
        assert_eq!((p.src.port, p.dst.port, p.seq), (40000, 7, 1));
        assert_eq!(
            ipv6_undeliverable(&f),
            None,
            "smoltcp reads Hop-by-Hop itself"
        );
        let plain = Eth::to_server()
            .ipv6(CLIENT_V6, SERVER_V6)
            .tcp(&Tcp::new(40000, 7, 1).ack(1).data(b"hello"));
        assert_eq!(peek_tcp(&plain), Some(p));
        assert_eq!(ipv6_undeliverable(&plain), None);
    }

    #[test]
    fn test_headers_smoltcp_does_not_read_are_undeliverable() {
        let cases = [
            (DEST_OPTS, ext(6, DEST_OPTS, 0), "Destination Options"),
            (ROUTING, ext(6, ROUTING, 0), "behind a Routing header"),
            (ROUTING, ext(6, ROUTING, 2), "segments left"),
            (FRAGMENT, ext(6, FRAGMENT, 0), "atomic Fragment"),
            (
                FRAGMENT,
                ext(6, FRAGMENT, 1),
                "fragment (smoltcp reassembles IPv4 only)",
            ),
            (FRAGMENT, ext(6, FRAGMENT, 1480), "fragment (smoltcp"),
        ];
        // A Fragment header's second byte is reserved, not a length.
        let mut reserved = ext(6, FRAGMENT, 0);
        reserved[1] = 0xff;
        assert!(ipv6_undeliverable(&v6_behind(FRAGMENT, &reserved))
            .is_some_and(|w| w.contains("atomic Fragment")));
        for (first, chain, why) in cases {
            let f = v6_behind(first, &chain);
            assert_eq!(peek_tcp(&f), None, "{why}");
            let got = ipv6_undeliverable(&f).unwrap_or("delivered");
            assert!(got.contains(why), "{why}: {got}");
        }
        // Behind a Hop-by-Hop header, the next one decides.
        let mut chain = ext(DEST_OPTS, HBH, 0);
        chain.extend(ext(6, DEST_OPTS, 0));
        assert!(ipv6_undeliverable(&v6_behind(HBH, &chain)).is_some());
    }

    #[test]
    fn test_malformed_extension_chains_are_named() {
        // A length field past the packet.
        let mut long = ext(6, DEST_OPTS, 0);
        long[1] = 200;
        assert_eq!(
            ipv6_undeliverable(&v6_behind(DEST_OPTS, &long)),
            Some("ipv6: truncated extension header")
        );
        // Hop-by-Hop anywhere but first.
        let mut chain = ext(HBH, DEST_OPTS, 0);
        chain.extend(ext(6, HBH, 0));
        assert_eq!(
            ipv6_undeliverable(&v6_behind(DEST_OPTS, &chain)),
            Some("ipv6: Hop-by-Hop header not first")
        );
        // Nine headers: the walk stops.
        let mut chain = Vec::new();
        for i in 0..9 {
            chain.extend(ext(if i == 8 { 6 } else { DEST_OPTS }, DEST_OPTS, 0));
        }
        assert_eq!(
            ipv6_undeliverable(&v6_behind(DEST_OPTS, &chain)),
            Some("ipv6: more than 8 extension headers")
        );
        // Every cut of every chain: no panic, and never a peek into the wrong bytes.
        for f in [
            v6_behind(HBH, &ext(6, HBH, 0)),
            v6_behind(FRAGMENT, &ext(6, FRAGMENT, 0)),
            v6_behind(ROUTING, &ext(6, ROUTING, 1)),
        ] {
            for cut in 0..f.len() {
                let mut g = f[..cut].to_vec();
                // Keep the payload length honest, so that the cut reaches the extension headers.
                if g.len() >= 14 + 40 {
                    let pl = (g.len() - 54) as u16;
                    g[18..20].copy_from_slice(&pl.to_be_bytes());
                }
                let _ = ipv6_undeliverable(&g);
                assert!(
                    peek_tcp(&g).is_none() || cut >= 14 + 40 + 8 + 20,
                    "cut at {cut}"
                );
            }
        }
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
