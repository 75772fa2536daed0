//! Frame decoder: one Ethernet frame, read through smoltcp's checked zero-copy views, turned into plain
//! facts ([`Decoded`], a `Copy` struct: no allocation, no copy of the frame).
//!
//! The decoder never panics and never trusts a length field: each layer is opened with `new_checked`,
//! and when that fails the header bytes that are known to be present are read (with bounds-checked
//! `get`) only to say *what* is wrong. A malformed frame keeps the layers decoded before the fault,
//! plus a static reason string (`"truncated IPv4 header"`, `"TCP data offset beyond packet"`, ...)
//! that doubles as a counter key. Checksums (IPv4 header, ICMP, ICMPv6, UDP, TCP) are verified and a
//! bad one is reported separately in [`Decoded::bad_checksum`]: the frame is well formed, but the
//! stack will drop it.

use smoltcp::wire::{
    ArpHardware, ArpOperation, ArpPacket, EthernetFrame, EthernetProtocol, Icmpv4Packet,
    Icmpv6Packet, IpAddress, IpProtocol, Ipv4Packet, Ipv6ExtHeader, Ipv6Packet, TcpOption,
    TcpPacket, UdpPacket,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

mod facts;
pub use facts::{
    ArpInfo, Decoded, EthInfo, FragInfo, IcmpInfo, IpInfo, Mac, TcpFlags, TcpInfo, TcpOpts, UdpInfo,
};

type Step = Result<(), &'static str>;

/// Decodes one Ethernet frame. Never panics, never allocates.
pub fn decode(frame: &[u8]) -> Decoded {
    let mut d = Decoded {
        len: frame.len(),
        ..Decoded::default()
    };
    if let Err(reason) = decode_eth(frame, &mut d) {
        d.malformed = Some(reason);
    }
    d
}

fn decode_eth(frame: &[u8], d: &mut Decoded) -> Step {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| "truncated Ethernet header")?;
    let ethertype = eth.ethertype();
    d.eth = Some(EthInfo {
        src: Mac(eth.src_addr().0),
        dst: Mac(eth.dst_addr().0),
        ethertype: u16::from(ethertype),
    });
    match ethertype {
        EthernetProtocol::Arp => decode_arp(eth.payload(), d),
        EthernetProtocol::Ipv4 => decode_ipv4(eth.payload(), d),
        EthernetProtocol::Ipv6 => decode_ipv6(eth.payload(), d),
        EthernetProtocol::Unknown(_) => Err("unknown EtherType"),
    }
}

fn decode_arp(b: &[u8], d: &mut Decoded) -> Step {
    let p = ArpPacket::new_checked(b).map_err(|_| "truncated ARP packet")?;
    if p.hardware_type() != ArpHardware::Ethernet
        || p.protocol_type() != EthernetProtocol::Ipv4
        || p.hardware_len() != 6
        || p.protocol_len() != 4
    {
        return Err("ARP not for Ethernet/IPv4");
    }
    let ip = |s: &[u8]| -> Ipv4Addr {
        let a: [u8; 4] = s.try_into().unwrap_or([0; 4]);
        Ipv4Addr::from(a)
    };
    let op = match p.operation() {
        ArpOperation::Request => "request",
        ArpOperation::Reply => "reply",
        ArpOperation::Unknown(_) => "unknown",
    };
    d.arp = Some(ArpInfo {
        op,
        sender_mac: Mac::from_slice(p.source_hardware_addr()),
        sender_ip: ip(p.source_protocol_addr()),
        target_mac: Mac::from_slice(p.target_hardware_addr()),
        target_ip: ip(p.target_protocol_addr()),
    });
    if op == "unknown" {
        return Err("unknown ARP operation");
    }
    Ok(())
}

fn be16(b: &[u8], at: usize) -> u16 {
    match (b.get(at), b.get(at + 1)) {
        (Some(&h), Some(&l)) => u16::from_be_bytes([h, l]),
        _ => 0,
    }
}

/// Why `Ipv4Packet::new_checked` refused `b`, from the header bytes that are present.
fn ipv4_fault(b: &[u8]) -> &'static str {
    if b.len() < 20 {
        return "truncated IPv4 header";
    }
    let ihl = (b.first().copied().unwrap_or(0) & 0x0f) as usize * 4;
    let total = be16(b, 2) as usize;
    if ihl < 20 {
        "IPv4 header length below 20 bytes"
    } else if ihl > b.len() {
        "IPv4 header length beyond frame"
    } else if total < ihl {
        "IPv4 total length shorter than header"
    } else if total > b.len() {
        "IPv4 total length beyond frame"
    } else {
        "malformed IPv4 header"
    }
}

fn decode_ipv4(b: &[u8], d: &mut Decoded) -> Step {
    let p = Ipv4Packet::new_checked(b).map_err(|_| ipv4_fault(b))?;
    if p.version() != 4 {
        return Err("IPv4 EtherType but version is not 4");
    }
    if !p.verify_checksum() {
        d.bad_checksum = Some("bad IPv4 checksum");
    }
    let proto = p.next_header();
    let (src, dst) = (p.src_addr(), p.dst_addr());
    let fragment = (p.more_frags() || p.frag_offset() != 0).then(|| FragInfo {
        offset: p.frag_offset(),
        more: p.more_frags(),
        id: u32::from(p.ident()),
        len: p.total_len().saturating_sub(u16::from(p.header_len())),
    });
    d.ip = Some(IpInfo {
        version: 4,
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        proto: u8::from(proto),
        proto_name: proto_name(proto),
        ttl: p.hop_limit(),
        len: p.total_len(),
        fragment,
    });
    if fragment.is_some() {
        // Upper-layer headers and checksums span fragments: not decoded.
        return Ok(());
    }
    decode_l4(proto, p.payload(), IpAddr::V4(src), IpAddr::V4(dst), d)
}

fn decode_ipv6(b: &[u8], d: &mut Decoded) -> Step {
    let p = Ipv6Packet::new_checked(b).map_err(|_| {
        if b.len() < 40 {
            "truncated IPv6 header"
        } else {
            "IPv6 payload length beyond frame"
        }
    })?;
    if p.version() != 6 {
        return Err("IPv6 EtherType but version is not 6");
    }
    let (src, dst) = (p.src_addr(), p.dst_addr());
    let mut info = IpInfo {
        version: 6,
        src: IpAddr::V6(src),
        dst: IpAddr::V6(dst),
        proto: 0,
        proto_name: "",
        ttl: p.hop_limit(),
        len: (p.total_len().min(u16::MAX as usize)) as u16,
        fragment: None,
    };
    let mut nh = p.next_header();
    let mut rest = p.payload();
    // Walk (a bounded number of) extension headers to the upper layer.
    for _ in 0..8 {
        match nh {
            IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts => {
                let h = Ipv6ExtHeader::new_checked(rest)
                    .map_err(|_| "truncated IPv6 extension header")?;
                let hl = (h.header_len() as usize + 1) * 8;
                nh = h.next_header();
                rest = rest.get(hl..).ok_or("truncated IPv6 extension header")?;
            }
            IpProtocol::Ipv6Frag => {
                let h = Ipv6ExtHeader::new_checked(rest)
                    .map_err(|_| "truncated IPv6 fragment header")?;
                let raw = be16(rest, 2);
                nh = h.next_header();
                let id = (u32::from(be16(rest, 4)) << 16) | u32::from(be16(rest, 6));
                rest = rest.get(8..).unwrap_or(&[]);
                let frag = FragInfo {
                    offset: raw & 0xfff8,
                    more: raw & 1 != 0,
                    id,
                    len: rest.len().min(u16::MAX as usize) as u16,
                };
                if frag.offset != 0 || frag.more {
                    info.fragment = Some(frag);
                    info.proto = u8::from(nh);
                    info.proto_name = proto_name(nh);
                    d.ip = Some(info);
                    return Ok(());
                }
            }
            _ => break,
        }
    }
    info.proto = u8::from(nh);
    info.proto_name = proto_name(nh);
    d.ip = Some(info);
    decode_l4(nh, rest, IpAddr::V6(src), IpAddr::V6(dst), d)
}

fn proto_name(p: IpProtocol) -> &'static str {
    match p {
        IpProtocol::HopByHop => "Hop-by-Hop",
        IpProtocol::Icmp => "ICMP",
        IpProtocol::Igmp => "IGMP",
        IpProtocol::Tcp => "TCP",
        IpProtocol::Udp => "UDP",
        IpProtocol::Ipv6Route => "IPv6-Route",
        IpProtocol::Ipv6Frag => "IPv6-Frag",
        IpProtocol::IpSecEsp => "ESP",
        IpProtocol::IpSecAh => "AH",
        IpProtocol::Icmpv6 => "ICMPv6",
        IpProtocol::Ipv6NoNxt => "IPv6-NoNxt",
        IpProtocol::Ipv6Opts => "IPv6-Opts",
        IpProtocol::Unknown(_) => "unknown",
    }
}

fn decode_l4(proto: IpProtocol, b: &[u8], src: IpAddr, dst: IpAddr, d: &mut Decoded) -> Step {
    match (proto, src, dst) {
        (IpProtocol::Tcp, _, _) => decode_tcp(b, src, dst, d),
        (IpProtocol::Udp, _, _) => decode_udp(b, src, dst, d),
        (IpProtocol::Icmp, IpAddr::V4(_), _) => decode_icmpv4(b, d),
        (IpProtocol::Icmpv6, IpAddr::V6(s), IpAddr::V6(t)) => decode_icmpv6(b, s, t, d),
        _ => Ok(()),
    }
}

fn tcp_fault(b: &[u8]) -> &'static str {
    if b.len() < 20 {
        return "truncated TCP header";
    }
    let off = (b.get(12).copied().unwrap_or(0) >> 4) as usize * 4;
    if off < 20 {
        "TCP data offset below 5"
    } else {
        "TCP data offset beyond packet"
    }
}

fn decode_tcp(b: &[u8], src: IpAddr, dst: IpAddr, d: &mut Decoded) -> Step {
    let p = TcpPacket::new_checked(b).map_err(|_| tcp_fault(b))?;
    let mut bits = 0u16;
    for (set, bit) in [
        (p.fin(), TcpFlags::FIN),
        (p.syn(), TcpFlags::SYN),
        (p.rst(), TcpFlags::RST),
        (p.psh(), TcpFlags::PSH),
        (p.ack(), TcpFlags::ACK),
        (p.urg(), TcpFlags::URG),
        (p.ece(), TcpFlags::ECE),
        (p.cwr(), TcpFlags::CWR),
        (p.ns(), TcpFlags::NS),
    ] {
        if set {
            bits |= bit;
        }
    }
    let flags = TcpFlags(bits);
    let mut info = TcpInfo {
        src_port: p.src_port(),
        dst_port: p.dst_port(),
        seq: p.seq_number().0 as u32,
        ack: p.ack_number().0 as u32,
        flags,
        win: p.window_len(),
        hdr_len: p.header_len(),
        len: p.payload().len() as u32,
        opts: TcpOpts::default(),
    };
    let opts = parse_tcp_options(p.options(), &mut info.opts);
    d.tcp = Some(info);
    opts?;
    if !p.verify_checksum(&IpAddress::from(src), &IpAddress::from(dst)) {
        // Layer order: a bad IPv4 header checksum found first is the one blamed.
        d.bad_checksum = d.bad_checksum.or(Some("bad TCP checksum"));
    }
    if flags.syn() && flags.fin() {
        return Err("impossible TCP flags SYN+FIN");
    }
    if flags.syn() && flags.rst() {
        return Err("impossible TCP flags SYN+RST");
    }
    if flags.fin() && flags.rst() {
        return Err("impossible TCP flags FIN+RST");
    }
    if info.src_port == 0 || info.dst_port == 0 {
        return Err("TCP port 0");
    }
    Ok(())
}

/// Walks the option bytes, checking each length before smoltcp's `TcpOption::parse` reads it.
fn parse_tcp_options(mut o: &[u8], opts: &mut TcpOpts) -> Step {
    while let Some(&kind) = o.first() {
        match kind {
            0 => break,
            1 => o = o.get(1..).unwrap_or(&[]),
            _ => {
                let len = *o.get(1).ok_or("TCP option length missing")? as usize;
                if len == 0 {
                    return Err("TCP option length 0");
                }
                if len == 1 {
                    return Err("TCP option length 1");
                }
                if len > o.len() {
                    return Err("TCP option overruns header");
                }
                let (next, opt) =
                    TcpOption::parse(o).map_err(|_| "TCP option with wrong length for its kind")?;
                match opt {
                    TcpOption::MaxSegmentSize(m) => opts.mss = Some(m),
                    TcpOption::WindowScale(w) => opts.wscale = Some(w),
                    TcpOption::SackPermitted => opts.sack_ok = true,
                    TcpOption::SackRange(r) => {
                        let mut n = 0;
                        for (l, r) in r.iter().flatten() {
                            if let Some(slot) = opts.sack.get_mut(n) {
                                *slot = (*l, *r);
                                n += 1;
                            }
                        }
                        opts.sack_blocks = n as u8;
                    }
                    TcpOption::TimeStamp { tsval, tsecr } => opts.ts = Some((tsval, tsecr)),
                    _ => {}
                }
                o = next;
            }
        }
    }
    Ok(())
}

fn decode_udp(b: &[u8], src: IpAddr, dst: IpAddr, d: &mut Decoded) -> Step {
    let p = UdpPacket::new_checked(b).map_err(|_| {
        if b.len() < 8 {
            "truncated UDP header"
        } else if (be16(b, 4) as usize) < 8 {
            "UDP length below 8"
        } else {
            "UDP length beyond packet"
        }
    })?;
    d.udp = Some(UdpInfo {
        src_port: p.src_port(),
        dst_port: p.dst_port(),
        len: p.payload().len(),
    });
    if !p.verify_checksum(&IpAddress::from(src), &IpAddress::from(dst)) {
        // Layer order: a bad IPv4 header checksum found first is the one blamed.
        d.bad_checksum = d.bad_checksum.or(Some("bad UDP checksum"));
    }
    Ok(())
}

fn icmpv4_name(t: u8) -> &'static str {
    match t {
        0 => "echo reply",
        3 => "destination unreachable",
        5 => "redirect",
        8 => "echo request",
        9 => "router advertisement",
        10 => "router solicitation",
        11 => "time exceeded",
        12 => "parameter problem",
        13 => "timestamp request",
        14 => "timestamp reply",
        _ => "unknown type",
    }
}

fn decode_icmpv4(b: &[u8], d: &mut Decoded) -> Step {
    let p = Icmpv4Packet::new_checked(b).map_err(|_| "truncated ICMP header")?;
    let kind = u8::from(p.msg_type());
    let echo = kind == 0 || kind == 8;
    d.icmp = Some(IcmpInfo {
        version: 4,
        kind,
        code: p.msg_code(),
        name: icmpv4_name(kind),
        ident: echo.then(|| p.echo_ident()),
        seq: echo.then(|| p.echo_seq_no()),
        target: None,
        len: p.data().len(),
    });
    if !p.verify_checksum() {
        // Layer order: a bad IPv4 header checksum found first is the one blamed.
        d.bad_checksum = d.bad_checksum.or(Some("bad ICMP checksum"));
    }
    Ok(())
}

fn icmpv6_name(t: u8) -> &'static str {
    match t {
        1 => "destination unreachable",
        2 => "packet too big",
        3 => "time exceeded",
        4 => "parameter problem",
        128 => "echo request",
        129 => "echo reply",
        130 => "multicast listener query",
        131 => "multicast listener report",
        132 => "multicast listener done",
        133 => "router solicitation",
        134 => "router advertisement",
        135 => "neighbor solicitation",
        136 => "neighbor advertisement",
        137 => "redirect",
        143 => "multicast listener report v2",
        _ => "unknown type",
    }
}

fn decode_icmpv6(b: &[u8], src: Ipv6Addr, dst: Ipv6Addr, d: &mut Decoded) -> Step {
    let p = match Icmpv6Packet::new_checked(b) {
        Ok(p) => p,
        Err(_) => {
            let kind = *b.first().ok_or("truncated ICMPv6 header")?;
            if b.len() < 4 {
                return Err("truncated ICMPv6 header");
            }
            let name = icmpv6_name(kind);
            if name != "unknown type" && kind != 132 {
                return Err("truncated ICMPv6 message");
            }
            // A type smoltcp does not model: describe the header, nothing more.
            d.icmp = Some(IcmpInfo {
                version: 6,
                kind,
                code: b.get(1).copied().unwrap_or(0),
                name,
                ident: None,
                seq: None,
                target: None,
                len: b.len() - 4,
            });
            return Ok(());
        }
    };
    let kind = u8::from(p.msg_type());
    let echo = kind == 128 || kind == 129;
    let ndp = kind == 135 || kind == 136;
    d.icmp = Some(IcmpInfo {
        version: 6,
        kind,
        code: p.msg_code(),
        name: icmpv6_name(kind),
        ident: echo.then(|| p.echo_ident()),
        seq: echo.then(|| p.echo_seq_no()),
        target: ndp.then(|| p.target_addr()),
        len: p.payload().len(),
    });
    if !p.verify_checksum(&src, &dst) {
        // Layer order: a bad IPv4 header checksum found first is the one blamed.
        d.bad_checksum = d.bad_checksum.or(Some("bad ICMPv6 checksum"));
    }
    Ok(())
}

/// Writes `b` as a classic hex dump (offset, 16 bytes in hex, ASCII), one line per 16 bytes.
pub(crate) fn hex_dump(out: &mut String, b: &[u8]) {
    use std::fmt::Write;
    for (i, chunk) in b.chunks(16).enumerate() {
        let _ = write!(out, "  {:04x}  ", i * 16);
        for j in 0..16 {
            match chunk.get(j) {
                Some(x) => {
                    let _ = write!(out, "{x:02x} ");
                }
                None => out.push_str("   "),
            }
            if j == 7 {
                out.push(' ');
            }
        }
        out.push(' ');
        for &x in chunk {
            out.push(if x.is_ascii_graphic() || x == b' ' {
                x as char
            } else {
                '.'
            });
        }
        out.push('\n');
    }
    if out.ends_with('\n') {
        out.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::fixtures::*;
    use smoltcp::wire::ArpOperation;

    fn syn_with_options() -> Vec<u8> {
        Seg::new(49152, 7, 1000).syn().opts().inbound()
    }

    /// Offset of the TCP header in an IPv4 frame built by the fixtures.
    const TCP_AT: usize = 14 + 20;

    #[test]
    fn test_arp_request_and_reply() {
        let d = decode(&arp(ArpOperation::Request, PEER_MAC, PEER4, [0; 6], STACK4));
        assert_eq!(d.problem(), None);
        let a = d.arp.unwrap();
        assert_eq!((a.op, a.sender_ip, a.target_ip), ("request", PEER4, STACK4));
        assert_eq!(a.sender_mac, Mac(PEER_MAC));
        assert!(d.eth.unwrap().dst.is_broadcast());
        let d = decode(&arp(
            ArpOperation::Reply,
            STACK_MAC,
            STACK4,
            PEER_MAC,
            PEER4,
        ));
        let a = d.arp.unwrap();
        assert_eq!((a.op, a.sender_mac), ("reply", Mac(STACK_MAC)));
    }

    #[test]
    fn test_icmpv4_echo_request_and_reply() {
        let d = decode(&icmp4_echo(true, 0x1234, 7, false));
        assert_eq!(d.problem(), None);
        let i = d.icmp.unwrap();
        assert_eq!(
            (i.version, i.name, i.ident, i.seq, i.len),
            (4, "echo request", Some(0x1234), Some(7), 56)
        );
        assert_eq!(d.ip.unwrap().proto_name, "ICMP");
        let d = decode(&icmp4_echo(false, 0x1234, 7, true));
        assert_eq!(d.icmp.unwrap().name, "echo reply");
        assert_eq!(d.ip.unwrap().src, IpAddr::V4(STACK4));
    }

    #[test]
    fn test_icmpv6_echo_and_neighbor_solicitation() {
        let d = decode(&icmp6_echo_request(9, 3));
        assert_eq!(d.problem(), None);
        let i = d.icmp.unwrap();
        assert_eq!((i.version, i.name, i.seq), (6, "echo request", Some(3)));
        let d = decode(&neighbor_solicit(STACK6));
        assert_eq!(d.problem(), None);
        let i = d.icmp.unwrap();
        assert_eq!((i.name, i.target), ("neighbor solicitation", Some(STACK6)));
    }

    #[test]
    fn test_udp_v4_and_v6() {
        let d = decode(&udp4(sa(PEER4, 5000), sa(STACK4, 7), b"hello", false));
        assert_eq!(d.problem(), None);
        let u = d.udp.unwrap();
        assert_eq!((u.src_port, u.dst_port, u.len), (5000, 7, 5));
        let src = SocketAddr::new(PEER6.into(), 5000);
        let dst = SocketAddr::new(STACK6.into(), 9);
        let d = decode(&udp6(src, dst, b"xyz"));
        assert_eq!(d.problem(), None);
        assert_eq!(d.ip.unwrap().version, 6);
        assert_eq!(d.udp.unwrap().len, 3);
    }

    use std::net::SocketAddr;

    #[test]
    fn test_tcp_syn_with_options() {
        let d = decode(&syn_with_options());
        assert_eq!(d.problem(), None);
        let t = d.tcp.unwrap();
        assert_eq!((t.src_port, t.dst_port, t.seq), (49152, 7, 1000));
        assert_eq!(t.flags.to_string(), "SYN");
        assert_eq!(t.opts.mss, Some(1460));
        assert_eq!(t.opts.wscale, Some(7));
        assert!(t.opts.sack_ok);
        assert_eq!(t.opts.ts, Some((1000, 0)));
        assert_eq!(t.opts.to_string(), "mss 1460,sackOK,ts 1000 0,wscale 7");
        assert_eq!(t.seg_len(), 1);
    }

    #[test]
    fn test_flags_display() {
        assert_eq!(
            TcpFlags(TcpFlags::SYN | TcpFlags::ACK).to_string(),
            "SYN,ACK"
        );
        assert_eq!(
            TcpFlags(TcpFlags::FIN | TcpFlags::PSH | TcpFlags::ACK).to_string(),
            "FIN,PSH,ACK"
        );
        assert_eq!(TcpFlags(0).to_string(), "none");
    }

    fn reason(frame: &[u8]) -> Option<&'static str> {
        decode(frame).problem()
    }

    #[test]
    fn test_truncated_ethernet() {
        assert_eq!(reason(&[0u8; 10]), Some("truncated Ethernet header"));
        assert_eq!(reason(&[]), Some("truncated Ethernet header"));
    }

    #[test]
    fn test_unknown_ethertype() {
        let f = eth(
            PEER_MAC,
            STACK_MAC,
            EthernetProtocol::Unknown(0x88cc),
            &[1, 2, 3],
        );
        assert_eq!(reason(&f), Some("unknown EtherType"));
        assert_eq!(decode(&f).eth.unwrap().ethertype, 0x88cc);
    }

    #[test]
    fn test_ipv4_ihl_below_5() {
        let mut f = syn_with_options();
        f[14] = 0x44;
        assert_eq!(reason(&f), Some("IPv4 header length below 20 bytes"));
    }

    #[test]
    fn test_ipv4_ihl_past_frame() {
        let mut f = udp4(sa(PEER4, 1), sa(STACK4, 2), b"", false);
        f[14] = 0x4f;
        assert_eq!(reason(&f), Some("IPv4 header length beyond frame"));
    }

    #[test]
    fn test_ipv4_total_length_past_frame() {
        let mut f = syn_with_options();
        f[16..18].copy_from_slice(&1500u16.to_be_bytes());
        assert_eq!(reason(&f), Some("IPv4 total length beyond frame"));
        f[16..18].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(reason(&f), Some("IPv4 total length shorter than header"));
    }

    #[test]
    fn test_truncated_ipv4() {
        let f = eth(PEER_MAC, STACK_MAC, EthernetProtocol::Ipv4, &[0x45, 0, 0]);
        assert_eq!(reason(&f), Some("truncated IPv4 header"));
    }

    #[test]
    fn test_bad_ipv4_checksum() {
        let mut f = syn_with_options();
        f[14 + 10] ^= 0xff;
        let d = decode(&f);
        assert_eq!(d.malformed, None);
        assert_eq!(d.bad_checksum, Some("bad IPv4 checksum"));
        assert!(d.tcp.is_some(), "still decoded");
    }

    #[test]
    fn test_a_corrupted_ipv4_header_is_blamed_on_the_ipv4_checksum_not_tcp() {
        // A flipped bit in the source address breaks both the header checksum and the TCP
        // pseudo-header sum: the IP layer is checked first.
        let mut f = syn_with_options();
        f[14 + 12] ^= 0x01;
        assert_eq!(decode(&f).bad_checksum, Some("bad IPv4 checksum"));
    }

    #[test]
    fn test_bad_tcp_and_udp_checksum() {
        let mut f = Seg::new(1, 2, 3).data(b"abc").inbound();
        let n = f.len();
        f[n - 1] ^= 1;
        assert_eq!(reason(&f), Some("bad TCP checksum"));
        let mut f = udp4(sa(PEER4, 1), sa(STACK4, 2), b"abc", false);
        let n = f.len();
        f[n - 1] ^= 1;
        assert_eq!(reason(&f), Some("bad UDP checksum"));
        let mut f = icmp4_echo(true, 1, 1, false);
        let n = f.len();
        f[n - 1] ^= 1;
        assert_eq!(reason(&f), Some("bad ICMP checksum"));
    }

    #[test]
    fn test_tcp_data_offset_below_5() {
        let mut f = syn_with_options();
        f[TCP_AT + 12] = 0x40;
        assert_eq!(reason(&f), Some("TCP data offset below 5"));
    }

    #[test]
    fn test_tcp_data_offset_past_segment() {
        let mut f = Seg::new(1, 2, 3).inbound();
        f[TCP_AT + 12] = 0xf0;
        assert_eq!(reason(&f), Some("TCP data offset beyond packet"));
    }

    #[test]
    fn test_truncated_tcp() {
        let ip = ipv4(PEER4, STACK4, IpProtocol::Tcp, &[0; 12]);
        assert_eq!(reason(&v4_frame(false, &ip)), Some("truncated TCP header"));
    }

    #[test]
    fn test_tcp_option_lengths() {
        let base = syn_with_options();
        assert_eq!(base[TCP_AT + 20], 2, "fixture starts with MSS");
        for (len, why) in [
            (0u8, "TCP option length 0"),
            (1, "TCP option length 1"),
            (60, "TCP option overruns header"),
            (3, "TCP option with wrong length for its kind"),
        ] {
            let mut f = base.clone();
            f[TCP_AT + 21] = len;
            let d = decode(&f);
            assert_eq!(d.malformed, Some(why), "len {len}");
            assert!(d.tcp.is_some());
        }
        // Length byte missing: the last option byte is a kind with nothing after it.
        let mut f = base.clone();
        let opts_end = TCP_AT + (f[TCP_AT + 12] >> 4) as usize * 4;
        f[opts_end - 1] = 8;
        assert_eq!(reason(&f), Some("TCP option length missing"));
    }

    #[test]
    fn test_impossible_flags() {
        let f = with_tcp_flags(Seg::new(1, 2, 3).inbound(), 0x03);
        assert_eq!(reason(&f), Some("impossible TCP flags SYN+FIN"));
        let f = with_tcp_flags(Seg::new(1, 2, 3).inbound(), 0x06);
        assert_eq!(reason(&f), Some("impossible TCP flags SYN+RST"));
        let f = with_tcp_flags(Seg::new(1, 2, 3).inbound(), 0x05);
        assert_eq!(reason(&f), Some("impossible TCP flags FIN+RST"));
    }

    #[test]
    fn test_truncated_ipv6() {
        let f = eth(PEER_MAC, STACK_MAC, EthernetProtocol::Ipv6, &[0x60; 30]);
        assert_eq!(reason(&f), Some("truncated IPv6 header"));
        let mut f = udp6(
            SocketAddr::new(PEER6.into(), 1),
            SocketAddr::new(STACK6.into(), 2),
            b"abc",
        );
        f[14 + 4..14 + 6].copy_from_slice(&500u16.to_be_bytes());
        assert_eq!(reason(&f), Some("IPv6 payload length beyond frame"));
    }

    #[test]
    fn test_truncated_arp() {
        let f = eth(
            PEER_MAC,
            [0xff; 6],
            EthernetProtocol::Arp,
            &[0, 1, 8, 0, 6, 4, 0, 1, 2, 0],
        );
        assert_eq!(reason(&f), Some("truncated ARP packet"));
    }

    #[test]
    fn test_udp_lengths() {
        let mut f = udp4(sa(PEER4, 1), sa(STACK4, 2), b"abc", false);
        f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(reason(&f), Some("UDP length below 8"));
        f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&400u16.to_be_bytes());
        assert_eq!(reason(&f), Some("UDP length beyond packet"));
    }

    #[test]
    fn test_ipv4_fragment_not_decoded_further() {
        let mut f = Seg::new(1, 2, 3).data(b"abcdefgh").inbound();
        f[14 + 6] = 0x20; // more fragments
        {
            let mut p = Ipv4Packet::new_checked(&mut f[14..]).unwrap();
            p.fill_checksum();
        }
        let d = decode(&f);
        assert_eq!(d.problem(), None);
        assert!(d.tcp.is_none());
        assert!(d.ip.unwrap().fragment.unwrap().more);
    }

    /// An IPv4 fragment from the client: datagram `id`, `len` bytes at `offset`, `more` or not.
    fn ipv4_fragment(id: u16, offset: u16, more: bool, len: usize) -> Vec<u8> {
        let mut f = crate::frames::Eth::to_server()
            .ipv4(crate::frames::CLIENT_V4, crate::frames::SERVER_V4)
            .ident(id)
            .may_fragment()
            .packet(17, &vec![0xab; len]);
        let mut p = Ipv4Packet::new_checked(&mut f[14..]).unwrap();
        p.set_more_frags(more);
        p.set_frag_offset(offset);
        p.fill_checksum();
        f
    }

    #[test]
    fn test_fragment_line_names_datagram_and_place() {
        let line = |f: &[u8]| {
            let d = decode(f);
            assert_eq!(d.problem(), None);
            assert!(d.udp.is_none(), "upper layers span fragments: not decoded");
            d.ip.unwrap().fragment.unwrap().to_string()
        };
        assert_eq!(
            line(&ipv4_fragment(4711, 0, true, 1480)),
            "fragment 1 of datagram id 4711, offset 0, more follow"
        );
        assert_eq!(
            line(&ipv4_fragment(4711, 1480, true, 1480)),
            "fragment 2 of datagram id 4711, offset 1480, more follow"
        );
        assert_eq!(
            line(&ipv4_fragment(4711, 5920, true, 1480)),
            "fragment 5 of datagram id 4711, offset 5920, more follow"
        );
        // The last one's number depends on the pieces before it, which the frame does not show.
        assert_eq!(
            line(&ipv4_fragment(4711, 7400, false, 608)),
            "last fragment of datagram id 4711, offset 7400"
        );
        // Pieces of unequal length: the place is not guessed.
        assert_eq!(
            line(&ipv4_fragment(9, 1000, true, 96)),
            "fragment of datagram id 9, offset 1000, more follow"
        );
        let d = decode(&ipv4_fragment(4711, 1480, true, 1480));
        assert_eq!(
            d.ip.unwrap().fragment,
            Some(FragInfo {
                offset: 1480,
                more: true,
                id: 4711,
                len: 1480
            })
        );
    }

    #[test]
    fn test_ipv6_fragment_header_gives_id_and_length() {
        let mut payload = vec![17, 0, 0x05, 0xc9, 0, 0, 0x12, 0x67];
        payload.extend_from_slice(&[0u8; 64]);
        let f = crate::frames::Eth::to_server()
            .ipv6(crate::frames::CLIENT_V6, crate::frames::SERVER_V6)
            .packet(44, &payload);
        let fr = decode(&f).ip.unwrap().fragment.unwrap();
        assert_eq!(
            (fr.offset, fr.more, fr.id, fr.len),
            (1480, true, 0x1267, 64)
        );
        assert_eq!(
            fr.to_string(),
            "fragment of datagram id 4711, offset 1480, more follow"
        );
    }

    /// Every truncation and every single-byte corruption of every fixture decodes without a panic.
    #[test]
    fn test_no_panic_on_truncation_or_corruption() {
        let fixtures = [
            syn_with_options(),
            Seg::new(1, 2, 3).ack(9).data(b"hello").inbound(),
            arp(ArpOperation::Request, PEER_MAC, PEER4, [0; 6], STACK4),
            icmp4_echo(true, 1, 2, false),
            icmp6_echo_request(1, 2),
            neighbor_solicit(STACK6),
            udp4(sa(PEER4, 1), sa(STACK4, 2), b"abc", false),
            udp6(
                SocketAddr::new(PEER6.into(), 1),
                SocketAddr::new(STACK6.into(), 2),
                b"abc",
            ),
        ];
        for f in &fixtures {
            for n in 0..=f.len() {
                let _ = decode(&f[..n]);
            }
            for i in 0..f.len() {
                for mask in [0x01u8, 0x0f, 0x80, 0xff] {
                    let mut g = f.clone();
                    g[i] ^= mask;
                    let d = decode(&g);
                    let _ = format!("{d:?}");
                }
            }
        }
    }

    #[test]
    fn test_hex_dump_layout() {
        let mut s = String::new();
        hex_dump(&mut s, b"ABCDEFGHIJKLMNOPQR");
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("  0000  41 42 43 44 45 46 47 48  49 4a"));
        assert!(lines[0].ends_with("ABCDEFGHIJKLMNOP"));
        assert!(lines[1].starts_with("  0010  51 52"));
    }
}
