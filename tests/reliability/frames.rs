//! Hand-made frames for the in-process attacks: Ethernet + IPv4 + TCP/UDP with any flags and any
//! option bytes, checksums filled in (or deliberately not).
#![allow(dead_code)]

use smoltcp::wire::{IpAddress, Ipv4Address, Ipv4Packet, TcpPacket, UdpPacket};

pub const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
pub const SERVER_IP: Ipv4Address = Ipv4Address::new(192, 168, 69, 1);
pub const CLIENT_IP: Ipv4Address = Ipv4Address::new(192, 168, 69, 100);
/// A peer that exists only in injected frames: its MAC is neither stack's, so the client stack on the
/// wire ignores what the server sends it (and does not answer with RST).
pub const SPOOF_IP: Ipv4Address = Ipv4Address::new(192, 168, 69, 77);
pub const SPOOF_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x77];

/// An ARP request from `SPOOF_IP` for the server: the server learns where the spoofed peer is.
pub fn spoof_arp() -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&SPOOF_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&SPOOF_MAC);
    f.extend_from_slice(&SPOOF_IP.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&SERVER_IP.octets());
    f
}

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;

/// One TCP segment to be framed.
#[derive(Clone, Debug)]
pub struct Seg {
    pub src: Ipv4Address,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Raw option bytes (padded with zeros to a multiple of 4).
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Seg {
    pub fn syn(src: Ipv4Address, src_port: u16, dst_port: u16, seq: u32) -> Seg {
        Seg {
            src,
            src_port,
            dst_port,
            seq,
            ack: 0,
            flags: SYN,
            window: 64240,
            options: vec![2, 4, 0x05, 0xb4],
            payload: Vec::new(),
        }
    }
}

fn eth_ipv4(src: Ipv4Address, dst: Ipv4Address, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(34 + l4.len());
    f.extend_from_slice(&SERVER_MAC);
    f.extend_from_slice(if src == CLIENT_IP {
        &CLIENT_MAC
    } else {
        &SPOOF_MAC
    });
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + l4.len()) as u16;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        proto,
        0,
        0,
    ]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(l4);
    Ipv4Packet::new_unchecked(&mut f[14..34]).fill_checksum();
    f
}

/// An Ethernet frame from `seg.src` to the server carrying `seg`, checksums correct.
pub fn tcp_frame(seg: &Seg) -> Vec<u8> {
    let mut opts = seg.options.clone();
    while !opts.len().is_multiple_of(4) {
        opts.push(0);
    }
    let hl = 20 + opts.len();
    let mut t = Vec::with_capacity(hl + seg.payload.len());
    t.extend_from_slice(&seg.src_port.to_be_bytes());
    t.extend_from_slice(&seg.dst_port.to_be_bytes());
    t.extend_from_slice(&seg.seq.to_be_bytes());
    t.extend_from_slice(&seg.ack.to_be_bytes());
    t.push(((hl / 4) as u8) << 4);
    t.push(seg.flags);
    t.extend_from_slice(&seg.window.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(&opts);
    t.extend_from_slice(&seg.payload);
    TcpPacket::new_unchecked(&mut t[..])
        .fill_checksum(&IpAddress::Ipv4(seg.src), &IpAddress::Ipv4(SERVER_IP));
    eth_ipv4(seg.src, SERVER_IP, 6, &t)
}

/// A UDP datagram from `src:sport` to `dst:dport`, checksum correct.
pub fn udp_frame(
    src: Ipv4Address,
    sport: u16,
    dst: Ipv4Address,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut u = Vec::with_capacity(len as usize);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    UdpPacket::new_unchecked(&mut u[..])
        .fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst));
    let mut f = eth_ipv4(src, dst, 17, &u);
    if dst == Ipv4Address::BROADCAST || dst.octets()[3] == 255 {
        f[..6].copy_from_slice(&[0xff; 6]);
    }
    f
}

/// Reads (seq, ack, flags, payload length, window) of a TCP segment in an Ethernet/IPv4 frame.
pub fn parse_tcp(frame: &[u8]) -> Option<(u16, u16, u32, u32, u8, usize)> {
    if frame.len() < 54 || frame[12..14] != [0x08, 0x00] || frame[23] != 6 {
        return None;
    }
    let ihl = (frame[14] & 0x0f) as usize * 4;
    let tl = u16::from_be_bytes([frame[16], frame[17]]) as usize;
    let t = frame.get(14 + ihl..14 + tl)?;
    let hl = (t[12] >> 4) as usize * 4;
    Some((
        u16::from_be_bytes([t[0], t[1]]),
        u16::from_be_bytes([t[2], t[3]]),
        u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
        t[13],
        t.len().saturating_sub(hl),
    ))
}
