//! The peers of the in-process attacks: the harness client, and a spoofed host that exists only in
//! injected frames. The frames themselves come from `tapstack::frames`.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use tapstack::frames::{
    Arp, Eth, Ipv4, Tcp, Udp, BROADCAST_MAC, CLIENT_MAC, CLIENT_V4, SERVER_MAC, SERVER_V4,
};

/// A peer that exists only in injected frames: its MAC is neither stack's, so the client stack on the
/// wire ignores what the server sends it (and does not answer with RST).
pub const SPOOF_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 77);
pub const SPOOF_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x77];

/// An ARP request from `SPOOF_IP` for the server: the server learns where the spoofed peer is.
pub fn spoof_arp() -> Vec<u8> {
    Eth::new(SPOOF_MAC, BROADCAST_MAC).arp(&Arp::request(SPOOF_MAC, SPOOF_IP, SERVER_V4))
}

/// IPv4 from `src` to `dst` on `src`'s Ethernet: the client stack's MAC for its own address, the
/// spoofed MAC for any other; broadcast destinations get the broadcast MAC.
pub fn ip_from(src: Ipv4Addr, dst: Ipv4Addr) -> Ipv4 {
    let src_mac = if src == CLIENT_V4 {
        CLIENT_MAC
    } else {
        SPOOF_MAC
    };
    let dst_mac = if dst.is_broadcast() || dst.octets()[3] == 255 {
        BROADCAST_MAC
    } else {
        SERVER_MAC
    };
    Eth::new(src_mac, dst_mac).ipv4(src, dst).ident(1)
}

/// A SYN with the MSS option every real SYN carries.
pub fn syn(src_port: u16, dst_port: u16, seq: u32) -> Tcp {
    Tcp::new(src_port, dst_port, seq).syn().mss(1460)
}

/// `seg` from `src` to the server.
pub fn tcp_frame(src: Ipv4Addr, seg: &Tcp) -> Vec<u8> {
    ip_from(src, SERVER_V4).tcp(seg)
}

/// A UDP datagram from `src:sport` to `dst:dport`, checksum correct.
pub fn udp_frame(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    ip_from(src, dst).udp(&Udp::new(sport, dport, payload))
}
