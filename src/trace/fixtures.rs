//! The trace tests' vocabulary over the crate's frame builders ([`crate::frames`]): a peer
//! (`PEER_*`, the harness client's addresses) talking to the stack (`STACK_*`, the harness server's),
//! with `inbound` frames towards the stack and `outbound` ones from it. IPv6 talks link-local.

use smoltcp::wire::{
    ArpOperation, EthernetProtocol, Icmpv4Repr, Icmpv6Repr, IpProtocol, NdiscRepr,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::frames::{Arp, Eth, Udp, BROADCAST_MAC, CLIENT_MAC, CLIENT_V4, SERVER_MAC, SERVER_V4};

pub(super) use crate::frames::Tcp as Seg;

pub(super) const STACK_MAC: [u8; 6] = SERVER_MAC;
pub(super) const PEER_MAC: [u8; 6] = CLIENT_MAC;
pub(super) const STACK4: Ipv4Addr = SERVER_V4;
pub(super) const PEER4: Ipv4Addr = CLIENT_V4;
pub(super) const STACK6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
pub(super) const PEER6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);

pub(super) fn eth(
    src: [u8; 6],
    dst: [u8; 6],
    ethertype: EthernetProtocol,
    payload: &[u8],
) -> Vec<u8> {
    Eth::new(src, dst).frame(ethertype.into(), payload)
}

/// An ARP packet from `sha`; requests are broadcast.
pub(super) fn arp(
    op: ArpOperation,
    sha: [u8; 6],
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let (operation, dst) = if op == ArpOperation::Request {
        (1, BROADCAST_MAC)
    } else {
        (2, tha)
    };
    Eth::new(sha, dst).arp(&Arp {
        operation,
        sender_mac: sha,
        sender_ip: spa,
        target_mac: tha,
        target_ip: tpa,
    })
}

/// The IPv4 packet alone (no Ethernet header).
pub(super) fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol, l4: &[u8]) -> Vec<u8> {
    Eth::new(PEER_MAC, STACK_MAC)
        .ipv4(src, dst)
        .packet(proto.into(), l4)[14..]
        .to_vec()
}

/// A frame carrying IPv4 `ip` from the peer to the stack (or back with `out`).
pub(super) fn v4_frame(out: bool, ip: &[u8]) -> Vec<u8> {
    let e = if out {
        Eth::to_client()
    } else {
        Eth::to_server()
    };
    e.frame(EthernetProtocol::Ipv4.into(), ip)
}

/// Where a segment goes over IPv4: towards the stack or from it.
pub(super) trait SegFrames {
    /// Peer to stack over IPv4.
    fn inbound(&self) -> Vec<u8>;
    /// Stack to peer over IPv4.
    fn outbound(&self) -> Vec<u8>;
    /// The options Linux puts on a SYN: MSS 1460, window scale 7, SACK permitted, a timestamp.
    fn opts(self) -> Self;
}

impl SegFrames for Seg {
    fn inbound(&self) -> Vec<u8> {
        self.to_server()
    }

    fn outbound(&self) -> Vec<u8> {
        self.to_client()
    }

    fn opts(self) -> Self {
        self.mss(1460).wscale(7).sack_permitted().timestamp(1000, 0)
    }
}

/// Rewrites TCP flags (bits of byte 13) of an IPv4 TCP frame and fixes the checksum.
pub(super) fn with_tcp_flags(mut frame: Vec<u8>, flags: u8) -> Vec<u8> {
    let ip = smoltcp::wire::Ipv4Packet::new_checked(&frame[14..]).unwrap();
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let tcp = &mut frame[14 + 20..];
    tcp[13] = flags;
    let mut p = smoltcp::wire::TcpPacket::new_checked(tcp).unwrap();
    p.fill_checksum(&src.into(), &dst.into());
    frame
}

pub(super) fn udp4(src: SocketAddr, dst: SocketAddr, payload: &[u8], out: bool) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        panic!("v4 only")
    };
    let e = if out {
        Eth::to_client()
    } else {
        Eth::to_server()
    };
    e.ipv4(s, d).udp(&Udp::new(src.port(), dst.port(), payload))
}

pub(super) fn udp6(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (src.ip(), dst.ip()) else {
        panic!("v6 only")
    };
    Eth::to_server()
        .ipv6(s, d)
        .udp(&Udp::new(src.port(), dst.port(), payload))
}

pub(super) fn icmp4_echo(request: bool, ident: u16, seq_no: u16, out: bool) -> Vec<u8> {
    let data = &[0x61u8; 56][..];
    let repr = if request {
        Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        }
    } else {
        Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data,
        }
    };
    if out {
        Eth::to_client().ipv4(STACK4, PEER4).icmp(&repr)
    } else {
        Eth::to_server().ipv4(PEER4, STACK4).icmp(&repr)
    }
}

/// An ICMPv6 message from the peer to the all-nodes multicast MAC.
pub(super) fn icmp6(repr: Icmpv6Repr<'_>, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    Eth::new(PEER_MAC, [0x33, 0x33, 0, 0, 0, 1])
        .ipv6(src, dst)
        .icmp(&repr)
}

pub(super) fn icmp6_echo_request(ident: u16, seq_no: u16) -> Vec<u8> {
    icmp6(
        Icmpv6Repr::EchoRequest {
            ident,
            seq_no,
            data: b"ping",
        },
        PEER6,
        STACK6,
    )
}

pub(super) fn neighbor_solicit(target: Ipv6Addr) -> Vec<u8> {
    let s = target.segments();
    let solicited = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | (s[6] & 0xff), s[7]);
    icmp6(
        Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
            target_addr: target,
            lladdr: None,
        }),
        PEER6,
        solicited,
    )
}

pub(super) fn sa(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}
