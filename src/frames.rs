//! Frame builders for tests and for [`Harness::inject`](crate::harness::Harness::inject): Ethernet
//! frames carrying ARP, or IPv4/IPv6 with TCP, UDP or ICMP, checksums right or, when asked,
//! deliberately wrong. One set, shared by the unit tests, the integration tests and the fuzz corpus.
//!
//! Layer by layer, outside in: an [`Eth`] (MAC addresses) becomes an [`Ipv4`] or [`Ipv6`] (addresses
//! and header fields), which frames a [`Tcp`] segment, a [`Udp`] datagram, an ICMP message or any
//! payload. Every field a test may want to break has a setter; anything not set is what smoltcp's own
//! emitters would write, so a builder frame and a smoltcp frame are byte for byte the same.
//!
//! ```
//! use tapstack::frames::{Eth, Tcp, Udp, CLIENT_V4, SERVER_V4};
//! use tapstack::trace::TcpFlags;
//!
//! // A SYN from the client stack to the server's echo port, as the harness wire would carry it.
//! let syn = Tcp::new(40000, 7, 1000).syn().mss(1460).to_server();
//! assert_eq!(syn.len(), 14 + 20 + 24);
//! // The same, with a TCP checksum that is off on purpose and a flag combination no stack sends.
//! let bad = Eth::to_server()
//!     .ipv4(CLIENT_V4, SERVER_V4)
//!     .tcp(&Tcp::new(40000, 7, 1000).flags(TcpFlags::SYN | TcpFlags::FIN).bad_checksum());
//! assert_eq!(bad.len(), 14 + 20 + 20);
//! // A UDP datagram whose length field lies.
//! let short = Eth::to_server().ipv4(CLIENT_V4, SERVER_V4).udp(&Udp::new(5000, 7, b"x").length(4));
//! assert_eq!(short.len(), 14 + 20 + 8 + 1);
//! ```

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::trace::TcpFlags;

/// The harness server stack's MAC (also tapstack's default MAC).
pub const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// The harness client stack's MAC.
pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
/// The Ethernet broadcast address.
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// The harness server stack's IPv4 address (tapstack's default).
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 1);
/// The harness client stack's IPv4 address.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 100);
/// The harness server stack's IPv6 address (tapstack's default).
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0xfdaa, 0, 0, 0, 0, 0, 0, 1);
/// The harness client stack's IPv6 address.
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfdaa, 0, 0, 0, 0, 0, 0, 0x100);

/// EtherTypes the builders write.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// IP protocol numbers the builders write.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IP protocol number of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;

/// The one's-complement sum of `data` (RFC 1071), folded but not complemented.
fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [last] = chunks.remainder() {
        acc += (*last as u32) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

fn pseudo_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let mut acc = 0;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = sum(&s.octets(), acc);
            acc = sum(&d.octets(), acc);
            acc = sum(&[0, proto], acc);
            sum(&(len as u16).to_be_bytes(), acc)
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a,
                IpAddr::V4(a) => a.to_ipv6_mapped(),
            };
            acc = sum(&v6(s).octets(), acc);
            acc = sum(&v6(d).octets(), acc);
            acc = sum(&(len as u32).to_be_bytes(), acc);
            sum(&[0, 0, 0, proto], acc)
        }
    }
}

/// What a checksum field ends up holding.
fn finish(acc: u32, wrong: bool) -> u16 {
    let c = !(acc as u16);
    // A deliberately wrong checksum is wrong by a fixed pattern, so a test can predict it.
    if wrong {
        c ^ 0x5a5a
    } else {
        c
    }
}

/// The MAC addresses of a frame; the start of every builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eth {
    /// Source MAC address.
    pub src: [u8; 6],
    /// Destination MAC address.
    pub dst: [u8; 6],
}

impl Eth {
    /// A new one with these addresses (everything else as smoltcp would write it).
    pub const fn new(src: [u8; 6], dst: [u8; 6]) -> Eth {
        Eth { src, dst }
    }

    /// From the harness client to the harness server.
    pub const fn to_server() -> Eth {
        Eth::new(CLIENT_MAC, SERVER_MAC)
    }

    /// From the harness server to the harness client.
    pub const fn to_client() -> Eth {
        Eth::new(SERVER_MAC, CLIENT_MAC)
    }

    /// A frame with any EtherType and any payload (no padding to the 60-byte minimum).
    pub fn frame(&self, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(14 + payload.len());
        f.extend_from_slice(&self.dst);
        f.extend_from_slice(&self.src);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// An ARP packet in this frame.
    pub fn arp(&self, arp: &Arp) -> Vec<u8> {
        self.frame(ETHERTYPE_ARP, &arp.bytes())
    }

    /// An IPv4 header from `src` to `dst`, to be given a payload.
    pub fn ipv4(self, src: Ipv4Addr, dst: Ipv4Addr) -> Ipv4 {
        Ipv4 {
            eth: self,
            src,
            dst,
            ttl: 64,
            ident: 0,
            dont_frag: true,
            header_words: None,
            total_len: None,
            bad_checksum: false,
        }
    }

    /// An IPv6 header from `src` to `dst`, to be given a payload.
    pub fn ipv6(self, src: Ipv6Addr, dst: Ipv6Addr) -> Ipv6 {
        Ipv6 {
            eth: self,
            src,
            dst,
            hop_limit: 64,
            payload_len: None,
        }
    }
}

/// An ARP packet (Ethernet/IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    /// 1: request, 2: reply.
    pub operation: u16,
    /// Sender hardware address.
    pub sender_mac: [u8; 6],
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_mac: [u8; 6],
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl Arp {
    /// "Who has `target_ip`? Tell `sender_ip`" (send it to [`BROADCAST_MAC`]).
    pub fn request(sender_mac: [u8; 6], sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Arp {
        Arp {
            operation: 1,
            sender_mac,
            sender_ip,
            target_mac: [0; 6],
            target_ip,
        }
    }

    /// "`sender_ip` is at `sender_mac`", to `target_mac`/`target_ip`.
    pub fn reply(
        sender_mac: [u8; 6],
        sender_ip: Ipv4Addr,
        target_mac: [u8; 6],
        target_ip: Ipv4Addr,
    ) -> Arp {
        Arp {
            operation: 2,
            sender_mac,
            sender_ip,
            target_mac,
            target_ip,
        }
    }

    /// The ARP packet's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(28);
        b.extend_from_slice(&[0, 1, 0x08, 0, 6, 4]);
        b.extend_from_slice(&self.operation.to_be_bytes());
        b.extend_from_slice(&self.sender_mac);
        b.extend_from_slice(&self.sender_ip.octets());
        b.extend_from_slice(&self.target_mac);
        b.extend_from_slice(&self.target_ip.octets());
        b
    }
}

/// An IPv4 header; its methods frame a payload under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4 {
    eth: Eth,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    ident: u16,
    dont_frag: bool,
    header_words: Option<u8>,
    total_len: Option<u16>,
    bad_checksum: bool,
}

impl Ipv4 {
    /// Sets the time to live.
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the identification field.
    pub fn ident(mut self, ident: u16) -> Self {
        self.ident = ident;
        self
    }

    /// Clears the don't-fragment bit (set by default, as smoltcp sends).
    pub fn may_fragment(mut self) -> Self {
        self.dont_frag = false;
        self
    }

    /// Writes `words` into the header length field (IHL, 4-byte words) without changing the 20
    /// header bytes: below 5 or past the frame, the header is malformed on purpose.
    pub fn header_words(mut self, words: u8) -> Self {
        self.header_words = Some(words);
        self
    }

    /// Writes `len` into the total length field instead of the true length.
    pub fn total_len(mut self, len: u16) -> Self {
        self.total_len = Some(len);
        self
    }

    /// A header checksum that is wrong on purpose.
    pub fn bad_checksum(mut self) -> Self {
        self.bad_checksum = true;
        self
    }

    /// The frame carrying `payload` as protocol `proto`; upper-layer checksums are the caller's.
    pub fn packet(&self, proto: u8, payload: &[u8]) -> Vec<u8> {
        let total = self.total_len.unwrap_or((20 + payload.len()) as u16);
        let words = self.header_words.unwrap_or(5) & 0x0f;
        let mut h = [0u8; 20];
        h[0] = 0x40 | words;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[4..6].copy_from_slice(&self.ident.to_be_bytes());
        h[6] = if self.dont_frag { 0x40 } else { 0 };
        h[8] = self.ttl;
        h[9] = proto;
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        let c = finish(sum(&h, 0), self.bad_checksum);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let mut ip = Vec::with_capacity(20 + payload.len());
        ip.extend_from_slice(&h);
        ip.extend_from_slice(payload);
        self.eth.frame(ETHERTYPE_IPV4, &ip)
    }

    /// The IP packet carrying this TCP segment.
    pub fn tcp(&self, seg: &Tcp) -> Vec<u8> {
        let l4 = seg.segment(self.src.into(), self.dst.into());
        self.packet(PROTO_TCP, &l4)
    }

    /// The IP packet carrying this UDP datagram.
    pub fn udp(&self, dgram: &Udp) -> Vec<u8> {
        let l4 = dgram.datagram(self.src.into(), self.dst.into());
        self.packet(PROTO_UDP, &l4)
    }

    /// An ICMPv4 message, checksum filled.
    pub fn icmp(&self, repr: &Icmpv4Repr<'_>) -> Vec<u8> {
        let mut b = vec![0u8; repr.buffer_len()];
        repr.emit(
            &mut Icmpv4Packet::new_unchecked(&mut b[..]),
            &ChecksumCapabilities::default(),
        );
        self.packet(PROTO_ICMP, &b)
    }
}

/// An IPv6 header; its methods frame a payload under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6 {
    eth: Eth,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    payload_len: Option<u16>,
}

impl Ipv6 {
    /// Sets the hop limit.
    pub fn hop_limit(mut self, hops: u8) -> Self {
        self.hop_limit = hops;
        self
    }

    /// Writes `len` into the payload length field instead of the true length.
    pub fn payload_len(mut self, len: u16) -> Self {
        self.payload_len = Some(len);
        self
    }

    /// The frame carrying `payload` with next header `proto`; upper-layer checksums are the caller's.
    pub fn packet(&self, proto: u8, payload: &[u8]) -> Vec<u8> {
        let len = self.payload_len.unwrap_or(payload.len() as u16);
        let mut ip = Vec::with_capacity(40 + payload.len());
        ip.extend_from_slice(&[0x60, 0, 0, 0]);
        ip.extend_from_slice(&len.to_be_bytes());
        ip.push(proto);
        ip.push(self.hop_limit);
        ip.extend_from_slice(&self.src.octets());
        ip.extend_from_slice(&self.dst.octets());
        ip.extend_from_slice(payload);
        self.eth.frame(ETHERTYPE_IPV6, &ip)
    }

    /// The IP packet carrying this TCP segment.
    pub fn tcp(&self, seg: &Tcp) -> Vec<u8> {
        let l4 = seg.segment(self.src.into(), self.dst.into());
        self.packet(PROTO_TCP, &l4)
    }

    /// The IP packet carrying this UDP datagram.
    pub fn udp(&self, dgram: &Udp) -> Vec<u8> {
        let l4 = dgram.datagram(self.src.into(), self.dst.into());
        self.packet(PROTO_UDP, &l4)
    }

    /// An ICMPv6 message (echo, neighbor discovery...), checksum filled.
    pub fn icmp(&self, repr: &Icmpv6Repr<'_>) -> Vec<u8> {
        let mut b = vec![0u8; repr.buffer_len()];
        repr.emit(
            &self.src,
            &self.dst,
            &mut Icmpv6Packet::new_unchecked(&mut b[..]),
            &ChecksumCapabilities::default(),
        );
        self.packet(PROTO_ICMPV6, &b)
    }
}

/// A TCP segment: any flags, any option bytes, any payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tcp {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// The acknowledgment number field (written whatever the flags say).
    pub ack: u32,
    /// TCP flags.
    pub flags: TcpFlags,
    /// Sets the advertised window.
    pub window: u16,
    /// Raw option bytes, padded with zeros (end of list) to a multiple of 4 when framed.
    pub options: Vec<u8>,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// The data offset field, in 4-byte words, if it must lie.
    pub data_offset: Option<u8>,
    /// Write a wrong checksum on purpose.
    pub bad_checksum: bool,
}

impl Tcp {
    /// No flags, no options, window 64240 (Linux's first window).
    pub fn new(src_port: u16, dst_port: u16, seq: u32) -> Tcp {
        Tcp {
            src_port,
            dst_port,
            seq,
            ack: 0,
            flags: TcpFlags::default(),
            window: 64240,
            options: Vec::new(),
            payload: Vec::new(),
            data_offset: None,
            bad_checksum: false,
        }
    }

    /// Replaces the flags (bits of [`TcpFlags`]): any combination, possible or not.
    pub fn flags(mut self, bits: u16) -> Self {
        self.flags = TcpFlags(bits);
        self
    }

    fn with(mut self, bit: u16) -> Self {
        self.flags.0 |= bit;
        self
    }

    /// Sets SYN.
    pub fn syn(self) -> Self {
        self.with(TcpFlags::SYN)
    }

    /// Sets FIN.
    pub fn fin(self) -> Self {
        self.with(TcpFlags::FIN)
    }

    /// Sets RST.
    pub fn rst(self) -> Self {
        self.with(TcpFlags::RST)
    }

    /// Sets PSH.
    pub fn psh(self) -> Self {
        self.with(TcpFlags::PSH)
    }

    /// Sets ACK and the acknowledgment number.
    pub fn ack(mut self, n: u32) -> Self {
        self.ack = n;
        self.with(TcpFlags::ACK)
    }

    /// Sets the advertised window.
    pub fn window(mut self, window: u16) -> Self {
        self.window = window;
        self
    }

    /// Sets the payload.
    pub fn data(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    /// Appends raw option bytes (malformed ones included).
    pub fn option_bytes(mut self, bytes: &[u8]) -> Self {
        self.options.extend_from_slice(bytes);
        self
    }

    /// Adds a maximum segment size option.
    pub fn mss(self, mss: u16) -> Self {
        let [hi, lo] = mss.to_be_bytes();
        self.option_bytes(&[2, 4, hi, lo])
    }

    /// Adds a window scale option.
    pub fn wscale(self, shift: u8) -> Self {
        self.option_bytes(&[3, 3, shift])
    }

    /// Adds the SACK-permitted option.
    pub fn sack_permitted(self) -> Self {
        self.option_bytes(&[4, 2])
    }

    /// Adds a timestamps option.
    pub fn timestamp(self, tsval: u32, tsecr: u32) -> Self {
        let mut o = vec![8, 10];
        o.extend_from_slice(&tsval.to_be_bytes());
        o.extend_from_slice(&tsecr.to_be_bytes());
        self.option_bytes(&o)
    }

    /// Writes `words` into the data offset field, whatever the header really holds.
    pub fn data_offset(mut self, words: u8) -> Self {
        self.data_offset = Some(words);
        self
    }

    /// A checksum that is wrong on purpose.
    pub fn bad_checksum(mut self) -> Self {
        self.bad_checksum = true;
        self
    }

    /// The TCP bytes, checksummed for `src` -> `dst`.
    pub fn segment(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let mut opts = self.options.clone();
        opts.resize(opts.len().next_multiple_of(4), 0);
        let hl = 20 + opts.len();
        let words = self.data_offset.unwrap_or((hl / 4) as u8);
        let mut t = Vec::with_capacity(hl + self.payload.len());
        t.extend_from_slice(&self.src_port.to_be_bytes());
        t.extend_from_slice(&self.dst_port.to_be_bytes());
        t.extend_from_slice(&self.seq.to_be_bytes());
        t.extend_from_slice(&self.ack.to_be_bytes());
        // The NS flag lives in the low bit of the data offset byte.
        t.push((words << 4) | ((self.flags.0 >> 8) as u8 & 1));
        t.push(self.flags.0 as u8);
        t.extend_from_slice(&self.window.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        t.extend_from_slice(&opts);
        t.extend_from_slice(&self.payload);
        let c = finish(
            sum(&t, pseudo_sum(src, dst, PROTO_TCP, t.len())),
            self.bad_checksum,
        );
        t[16..18].copy_from_slice(&c.to_be_bytes());
        t
    }

    /// This segment from the harness client to the harness server, over IPv4.
    pub fn to_server(&self) -> Vec<u8> {
        Eth::to_server().ipv4(CLIENT_V4, SERVER_V4).tcp(self)
    }

    /// This segment from the harness server to the harness client, over IPv4.
    pub fn to_client(&self) -> Vec<u8> {
        Eth::to_client().ipv4(SERVER_V4, CLIENT_V4).tcp(self)
    }
}

/// A UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Udp {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// The length field, if it must lie.
    pub length: Option<u16>,
    /// Write a wrong checksum on purpose.
    pub bad_checksum: bool,
}

impl Udp {
    /// A new one with these addresses (everything else as smoltcp would write it).
    pub fn new(src_port: u16, dst_port: u16, payload: &[u8]) -> Udp {
        Udp {
            src_port,
            dst_port,
            payload: payload.to_vec(),
            length: None,
            bad_checksum: false,
        }
    }

    /// Writes `len` into the length field instead of the true length.
    pub fn length(mut self, len: u16) -> Self {
        self.length = Some(len);
        self
    }

    /// A checksum that is wrong on purpose.
    pub fn bad_checksum(mut self) -> Self {
        self.bad_checksum = true;
        self
    }

    /// The UDP bytes, checksummed for `src` -> `dst` over the true length.
    pub fn datagram(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let true_len = 8 + self.payload.len();
        let mut u = Vec::with_capacity(true_len);
        u.extend_from_slice(&self.src_port.to_be_bytes());
        u.extend_from_slice(&self.dst_port.to_be_bytes());
        u.extend_from_slice(&self.length.unwrap_or(true_len as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(&self.payload);
        let acc = sum(&u, pseudo_sum(src, dst, PROTO_UDP, true_len));
        let mut c = !(acc as u16);
        // Zero means "no checksum" in UDP; its one's-complement twin is sent instead.
        if c == 0 {
            c = 0xffff;
        }
        if self.bad_checksum {
            c ^= 0x5a5a;
        }
        u[6..8].copy_from_slice(&c.to_be_bytes());
        u
    }

    /// This datagram from the harness client to the harness server, over IPv4.
    pub fn to_server(&self) -> Vec<u8> {
        Eth::to_server().ipv4(CLIENT_V4, SERVER_V4).udp(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
        EthernetRepr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
        TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, TcpTimestampRepr, UdpPacket, UdpRepr,
    };

    fn smol_eth(src: [u8; 6], dst: [u8; 6], ethertype: EthernetProtocol, p: &[u8]) -> Vec<u8> {
        let repr = EthernetRepr {
            src_addr: EthernetAddress(src),
            dst_addr: EthernetAddress(dst),
            ethertype,
        };
        let mut buf = vec![0u8; repr.buffer_len() + p.len()];
        let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        repr.emit(&mut f);
        f.payload_mut().copy_from_slice(p);
        buf
    }

    fn smol_ipv4(proto: IpProtocol, l4: &[u8]) -> Vec<u8> {
        let repr = Ipv4Repr {
            src_addr: CLIENT_V4,
            dst_addr: SERVER_V4,
            next_header: proto,
            payload_len: l4.len(),
            hop_limit: 64,
        };
        let mut b = vec![0u8; repr.buffer_len() + l4.len()];
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        repr.emit(&mut p, &ChecksumCapabilities::default());
        p.payload_mut().copy_from_slice(l4);
        smol_eth(CLIENT_MAC, SERVER_MAC, EthernetProtocol::Ipv4, &b)
    }

    #[test]
    fn test_tcp_syn_with_options_matches_smoltcp() {
        let repr = TcpRepr {
            src_port: 49152,
            dst_port: 7,
            control: TcpControl::Syn,
            seq_number: TcpSeqNumber(1000),
            ack_number: None,
            window_len: 64240,
            window_scale: Some(7),
            max_seg_size: Some(1460),
            sack_permitted: true,
            sack_ranges: [None, None, None],
            timestamp: Some(TcpTimestampRepr::new(1000, 0)),
            payload: b"",
        };
        let mut l4 = vec![0u8; repr.buffer_len()];
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut l4[..]),
            &IpAddress::Ipv4(CLIENT_V4),
            &IpAddress::Ipv4(SERVER_V4),
            &ChecksumCapabilities::default(),
        );
        let ours = Tcp::new(49152, 7, 1000)
            .syn()
            .mss(1460)
            .wscale(7)
            .sack_permitted()
            .timestamp(1000, 0)
            .to_server();
        assert_eq!(ours, smol_ipv4(IpProtocol::Tcp, &l4));
    }

    #[test]
    fn test_tcp_data_ack_psh_matches_smoltcp() {
        let repr = TcpRepr {
            src_port: 80,
            dst_port: 40000,
            control: TcpControl::Psh,
            seq_number: TcpSeqNumber(-5),
            ack_number: Some(TcpSeqNumber(77)),
            window_len: 512,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None, None, None],
            timestamp: None,
            payload: b"odd",
        };
        let mut l4 = vec![0u8; repr.buffer_len()];
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut l4[..]),
            &IpAddress::Ipv4(CLIENT_V4),
            &IpAddress::Ipv4(SERVER_V4),
            &ChecksumCapabilities::default(),
        );
        let ours = Tcp::new(80, 40000, -5i32 as u32)
            .psh()
            .ack(77)
            .window(512)
            .data(b"odd")
            .to_server();
        assert_eq!(ours, smol_ipv4(IpProtocol::Tcp, &l4));
    }

    #[test]
    fn test_udp_v4_and_v6_match_smoltcp() {
        let udp = |src: IpAddr, dst: IpAddr| {
            let repr = UdpRepr {
                src_port: 5000,
                dst_port: 7,
            };
            let mut b = vec![0u8; 8 + 5];
            repr.emit(
                &mut UdpPacket::new_unchecked(&mut b[..]),
                &src.into(),
                &dst.into(),
                5,
                |p| p.copy_from_slice(b"hello"),
                &ChecksumCapabilities::default(),
            );
            b
        };
        let ours = Udp::new(5000, 7, b"hello").to_server();
        let l4 = udp(CLIENT_V4.into(), SERVER_V4.into());
        assert_eq!(ours, smol_ipv4(IpProtocol::Udp, &l4));

        let l4 = udp(CLIENT_V6.into(), SERVER_V6.into());
        let repr = Ipv6Repr {
            src_addr: CLIENT_V6,
            dst_addr: SERVER_V6,
            next_header: IpProtocol::Udp,
            payload_len: l4.len(),
            hop_limit: 64,
        };
        let mut b = vec![0u8; repr.buffer_len() + l4.len()];
        let mut p = Ipv6Packet::new_unchecked(&mut b[..]);
        repr.emit(&mut p);
        p.payload_mut().copy_from_slice(&l4);
        let smol = smol_eth(CLIENT_MAC, SERVER_MAC, EthernetProtocol::Ipv6, &b);
        let ours = Eth::to_server()
            .ipv6(CLIENT_V6, SERVER_V6)
            .udp(&Udp::new(5000, 7, b"hello"));
        assert_eq!(ours, smol);
    }

    #[test]
    fn test_arp_request_matches_smoltcp() {
        let repr = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress(CLIENT_MAC),
            source_protocol_addr: CLIENT_V4,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: SERVER_V4,
        };
        let mut b = vec![0u8; repr.buffer_len()];
        repr.emit(&mut ArpPacket::new_unchecked(&mut b[..]));
        let smol = smol_eth(CLIENT_MAC, BROADCAST_MAC, EthernetProtocol::Arp, &b);
        let ours = Eth::new(CLIENT_MAC, BROADCAST_MAC)
            .arp(&Arp::request(CLIENT_MAC, CLIENT_V4, SERVER_V4));
        assert_eq!(ours, smol);
    }

    #[test]
    fn test_wrong_on_purpose_is_wrong_and_only_there() {
        let good = Tcp::new(1, 2, 3).syn().to_server();
        let bad = Tcp::new(1, 2, 3).syn().bad_checksum().to_server();
        let tcp = |f: &[u8]| TcpPacket::new_checked(f[34..].to_vec()).unwrap();
        assert!(tcp(&good).verify_checksum(&CLIENT_V4.into(), &SERVER_V4.into()));
        assert!(!tcp(&bad).verify_checksum(&CLIENT_V4.into(), &SERVER_V4.into()));
        assert_eq!(good[..50], bad[..50], "only the checksum differs");

        let ip = Eth::to_server().ipv4(CLIENT_V4, SERVER_V4).bad_checksum();
        let f = ip.udp(&Udp::new(1, 2, b"x"));
        assert!(!Ipv4Packet::new_checked(&f[14..]).unwrap().verify_checksum());
        let f = Eth::to_server()
            .ipv4(CLIENT_V4, SERVER_V4)
            .udp(&Udp::new(1, 2, b"x").bad_checksum());
        let u = UdpPacket::new_checked(&f[34..]).unwrap();
        assert!(!u.verify_checksum(&CLIENT_V4.into(), &SERVER_V4.into()));
    }

    #[test]
    fn test_lying_length_fields_are_written_as_asked() {
        let f = Eth::to_server()
            .ipv4(CLIENT_V4, SERVER_V4)
            .header_words(3)
            .total_len(9)
            .packet(PROTO_UDP, &[0; 8]);
        assert_eq!((f[14] & 0x0f, u16::from_be_bytes([f[16], f[17]])), (3, 9));
        let f = Tcp::new(1, 2, 3).data_offset(15).to_server();
        assert_eq!(f[34 + 12] >> 4, 15);
        assert_eq!(f.len(), 54, "the header itself stays 20 bytes");
    }
}
