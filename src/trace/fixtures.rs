//! Test fixtures: frames built with smoltcp's `Repr::emit` (checksums filled), and a few hand-broken ones.

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, NdiscRepr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber, TcpTimestampRepr, UdpPacket, UdpRepr,
};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

pub const STACK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
pub const STACK4: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 1);
pub const PEER4: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 100);
pub const STACK6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
pub const PEER6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);

pub fn caps() -> ChecksumCapabilities {
    ChecksumCapabilities::default()
}

pub fn eth(src: [u8; 6], dst: [u8; 6], ethertype: EthernetProtocol, payload: &[u8]) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: EthernetAddress(src),
        dst_addr: EthernetAddress(dst),
        ethertype,
    };
    let mut buf = vec![0u8; repr.buffer_len() + payload.len()];
    let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
    repr.emit(&mut f);
    f.payload_mut().copy_from_slice(payload);
    buf
}

pub fn arp(op: ArpOperation, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: EthernetAddress(sha),
        source_protocol_addr: spa,
        target_hardware_addr: EthernetAddress(tha),
        target_protocol_addr: tpa,
    };
    let mut b = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut b[..]));
    let dst = if op == ArpOperation::Request {
        [0xff; 6]
    } else {
        tha
    };
    eth(sha, dst, EthernetProtocol::Arp, &b)
}

pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol, l4: &[u8]) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: proto,
        payload_len: l4.len(),
        hop_limit: 64,
    };
    let mut b = vec![0u8; repr.buffer_len() + l4.len()];
    let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
    repr.emit(&mut p, &caps());
    p.payload_mut().copy_from_slice(l4);
    b
}

pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, proto: IpProtocol, l4: &[u8]) -> Vec<u8> {
    let repr = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: proto,
        payload_len: l4.len(),
        hop_limit: 64,
    };
    let mut b = vec![0u8; repr.buffer_len() + l4.len()];
    let mut p = Ipv6Packet::new_unchecked(&mut b[..]);
    repr.emit(&mut p);
    p.payload_mut().copy_from_slice(l4);
    b
}

/// A frame carrying IPv4 `ip` from the peer to the stack (or back with `out`).
pub fn v4_frame(out: bool, ip: &[u8]) -> Vec<u8> {
    if out {
        eth(STACK_MAC, PEER_MAC, EthernetProtocol::Ipv4, ip)
    } else {
        eth(PEER_MAC, STACK_MAC, EthernetProtocol::Ipv4, ip)
    }
}

/// A TCP segment to build.
#[derive(Clone)]
pub struct Seg {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: Option<u32>,
    pub control: TcpControl,
    pub win: u16,
    pub payload: Vec<u8>,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_ok: bool,
    pub ts: Option<(u32, u32)>,
}

impl Seg {
    pub fn new(src_port: u16, dst_port: u16, seq: u32) -> Seg {
        Seg {
            src_port,
            dst_port,
            seq,
            ack: None,
            control: TcpControl::None,
            win: 64240,
            payload: Vec::new(),
            mss: None,
            wscale: None,
            sack_ok: false,
            ts: None,
        }
    }
    pub fn ack(mut self, n: u32) -> Seg {
        self.ack = Some(n);
        self
    }
    pub fn syn(mut self) -> Seg {
        self.control = TcpControl::Syn;
        self
    }
    pub fn fin(mut self) -> Seg {
        self.control = TcpControl::Fin;
        self
    }
    pub fn rst(mut self) -> Seg {
        self.control = TcpControl::Rst;
        self
    }
    pub fn psh(mut self) -> Seg {
        self.control = TcpControl::Psh;
        self
    }
    pub fn data(mut self, d: &[u8]) -> Seg {
        self.payload = d.to_vec();
        self
    }
    pub fn opts(mut self) -> Seg {
        self.mss = Some(1460);
        self.wscale = Some(7);
        self.sack_ok = true;
        self.ts = Some((1000, 0));
        self
    }

    /// The TCP bytes, checksum filled for `src` -> `dst`.
    pub fn bytes(&self, src: IpAddress, dst: IpAddress) -> Vec<u8> {
        let repr = TcpRepr {
            src_port: self.src_port,
            dst_port: self.dst_port,
            control: self.control,
            seq_number: TcpSeqNumber(self.seq as i32),
            ack_number: self.ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: self.win,
            window_scale: self.wscale,
            max_seg_size: self.mss,
            sack_permitted: self.sack_ok,
            sack_ranges: [None, None, None],
            timestamp: self.ts.map(|(v, e)| TcpTimestampRepr::new(v, e)),
            payload: &self.payload,
        };
        let mut b = vec![0u8; repr.buffer_len()];
        let mut p = TcpPacket::new_unchecked(&mut b[..]);
        repr.emit(&mut p, &src, &dst, &caps());
        b
    }

    /// Peer to stack over IPv4.
    pub fn inbound(&self) -> Vec<u8> {
        let l4 = self.bytes(PEER4.into(), STACK4.into());
        v4_frame(false, &ipv4(PEER4, STACK4, IpProtocol::Tcp, &l4))
    }

    /// Stack to peer over IPv4.
    pub fn outbound(&self) -> Vec<u8> {
        let l4 = self.bytes(STACK4.into(), PEER4.into());
        v4_frame(true, &ipv4(STACK4, PEER4, IpProtocol::Tcp, &l4))
    }
}

/// Rewrites TCP flags (bits of byte 13) of an IPv4 TCP frame and fixes the checksum.
pub fn with_tcp_flags(mut frame: Vec<u8>, flags: u8) -> Vec<u8> {
    let (src, dst) = {
        let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        (ip.src_addr(), ip.dst_addr())
    };
    let tcp = &mut frame[14 + 20..];
    tcp[13] = flags;
    let mut p = TcpPacket::new_checked(tcp).unwrap();
    p.fill_checksum(&src.into(), &dst.into());
    frame
}

pub fn udp4(src: SocketAddr, dst: SocketAddr, payload: &[u8], out: bool) -> Vec<u8> {
    let (IpAddress::Ipv4(s), IpAddress::Ipv4(d)) = (src.ip().into(), dst.ip().into()) else {
        panic!("v4 only")
    };
    let l4 = udp_bytes(src, dst, payload);
    v4_frame(out, &ipv4(s, d, IpProtocol::Udp, &l4))
}

pub fn udp6(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (IpAddress::Ipv6(s), IpAddress::Ipv6(d)) = (src.ip().into(), dst.ip().into()) else {
        panic!("v6 only")
    };
    let l4 = udp_bytes(src, dst, payload);
    eth(
        PEER_MAC,
        STACK_MAC,
        EthernetProtocol::Ipv6,
        &ipv6(s, d, IpProtocol::Udp, &l4),
    )
}

fn udp_bytes(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let repr = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    let mut b = vec![0u8; repr.header_len() + payload.len()];
    let mut p = UdpPacket::new_unchecked(&mut b[..]);
    repr.emit(
        &mut p,
        &src.ip().into(),
        &dst.ip().into(),
        payload.len(),
        |buf| buf.copy_from_slice(payload),
        &caps(),
    );
    b
}

pub fn icmp4_echo(request: bool, ident: u16, seq_no: u16, out: bool) -> Vec<u8> {
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
    let mut b = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Icmpv4Packet::new_unchecked(&mut b[..]), &caps());
    let (s, d) = if out {
        (STACK4, PEER4)
    } else {
        (PEER4, STACK4)
    };
    v4_frame(out, &ipv4(s, d, IpProtocol::Icmp, &b))
}

pub fn icmp6(repr: Icmpv6Repr<'_>, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut b = vec![0u8; repr.buffer_len()];
    repr.emit(
        &src,
        &dst,
        &mut Icmpv6Packet::new_unchecked(&mut b[..]),
        &caps(),
    );
    eth(
        PEER_MAC,
        [0x33, 0x33, 0, 0, 0, 1],
        EthernetProtocol::Ipv6,
        &ipv6(src, dst, IpProtocol::Icmpv6, &b),
    )
}

pub fn icmp6_echo_request(ident: u16, seq_no: u16) -> Vec<u8> {
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

pub fn neighbor_solicit(target: Ipv6Addr) -> Vec<u8> {
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

pub fn sa(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}
