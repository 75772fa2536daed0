//! What the decoder learns of a frame: plain `Copy` facts per layer, printed as the packet lines and
//! `--events` write them.

use serde::Serialize;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A six-octet Ethernet (MAC) address, printed `02:00:00:00:00:01`.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub(super) fn from_slice(s: &[u8]) -> Mac {
        let mut m = [0u8; 6];
        if s.len() == 6 {
            m.copy_from_slice(s);
        }
        Mac(m)
    }

    /// Whether this is the broadcast address.
    pub fn is_broadcast(&self) -> bool {
        self.0 == [0xff; 6]
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// TCP header flags, printed (and serialized) as `SYN,ACK`.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    /// No more data from the sender.
    pub const FIN: u16 = 0x001;
    /// Synchronize sequence numbers.
    pub const SYN: u16 = 0x002;
    /// Reset.
    pub const RST: u16 = 0x004;
    /// Push.
    pub const PSH: u16 = 0x008;
    /// Acknowledgment.
    pub const ACK: u16 = 0x010;
    /// Urgent pointer significant.
    pub const URG: u16 = 0x020;
    /// ECN echo.
    pub const ECE: u16 = 0x040;
    /// Congestion window reduced.
    pub const CWR: u16 = 0x080;
    /// ECN nonce sum (RFC 3540, historic).
    pub const NS: u16 = 0x100;

    const NAMES: [(u16, &'static str); 9] = [
        (Self::SYN, "SYN"),
        (Self::FIN, "FIN"),
        (Self::RST, "RST"),
        (Self::PSH, "PSH"),
        (Self::ACK, "ACK"),
        (Self::URG, "URG"),
        (Self::ECE, "ECE"),
        (Self::CWR, "CWR"),
        (Self::NS, "NS"),
    ];

    /// Whether `bit` (one of the constants) is set.
    pub fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
    /// SYN is set.
    pub fn syn(self) -> bool {
        self.has(Self::SYN)
    }
    /// FIN is set.
    pub fn fin(self) -> bool {
        self.has(Self::FIN)
    }
    /// RST is set.
    pub fn rst(self) -> bool {
        self.has(Self::RST)
    }
    /// Acknowledgment number (meaningful with ACK).
    pub fn ack(self) -> bool {
        self.has(Self::ACK)
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (bit, name) in Self::NAMES {
            if self.has(bit) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for TcpFlags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
/// The Ethernet header.
pub struct EthInfo {
    /// Source.
    pub src: Mac,
    /// Destination.
    pub dst: Mac,
    /// The EtherType field (0x0800 IPv4, 0x0806 ARP, 0x86dd IPv6).
    pub ethertype: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
/// An ARP packet (Ethernet/IPv4).
pub struct ArpInfo {
    /// `"request"`, `"reply"` or `"unknown"`.
    pub op: &'static str,
    /// Sender hardware address.
    pub sender_mac: Mac,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_mac: Mac,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
/// IPv4 fragmentation fields.
pub struct FragInfo {
    /// Fragment offset in bytes.
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
    /// The identification of the datagram the fragment belongs to (16 bits in IPv4, 32 in IPv6).
    pub id: u32,
    /// Bytes of the datagram this fragment carries.
    pub len: u16,
}

impl FragInfo {
    /// The fragment's place in its datagram, counting from 1, where the frame alone tells: the first
    /// one, and any one that is not the last when the fragments before it were as long as it is
    /// (every sender cuts a datagram into equal pieces but the last).
    pub fn number(&self) -> Option<u32> {
        if self.offset == 0 {
            Some(1)
        } else if self.more && self.len > 0 && self.offset.is_multiple_of(self.len) {
            Some((self.offset / self.len) as u32 + 1)
        } else {
            None
        }
    }
}

/// `fragment 2 of datagram id 4711, offset 1480, more follow`, `last fragment of datagram id 4711,
/// offset 7400`.
impl fmt::Display for FragInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.more, self.number()) {
            (false, _) => f.write_str("last fragment")?,
            (true, Some(n)) => write!(f, "fragment {n}")?,
            (true, None) => f.write_str("fragment")?,
        }
        write!(f, " of datagram id {}, offset {}", self.id, self.offset)?;
        if self.more {
            f.write_str(", more follow")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
/// The IPv4 or IPv6 header.
pub struct IpInfo {
    /// 4 or 6.
    pub version: u8,
    /// Source.
    pub src: IpAddr,
    /// Destination.
    pub dst: IpAddr,
    /// The upper-layer protocol number (after IPv6 extension headers).
    pub proto: u8,
    /// The upper protocol in words (`TCP`, `UDP`, `ICMP`...).
    pub proto_name: &'static str,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// Header plus payload, in bytes.
    pub len: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Fragmentation fields (IPv4).
    pub fragment: Option<FragInfo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
/// An ICMP or ICMPv6 message.
pub struct IcmpInfo {
    /// 4 (ICMP) or 6 (ICMPv6).
    pub version: u8,
    #[serde(rename = "type")]
    /// ICMP type.
    pub kind: u8,
    /// ICMP code.
    pub code: u8,
    /// `"echo request"`, `"neighbor solicitation"`, ...
    pub name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Echo identifier, for echo requests and replies.
    pub ident: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Sequence number (or ICMP echo sequence).
    pub seq: Option<u16>,
    /// NDP target address (neighbor solicitation / advertisement).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Ipv6Addr>,
    /// Bytes after the ICMP header.
    pub len: usize,
}

impl IcmpInfo {
    /// An echo request (ping).
    pub fn is_echo_request(&self) -> bool {
        (self.version == 4 && self.kind == 8) || (self.version == 6 && self.kind == 128)
    }
    /// An echo reply (ping answer).
    pub fn is_echo_reply(&self) -> bool {
        (self.version == 4 && self.kind == 0) || (self.version == 6 && self.kind == 129)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
/// A UDP datagram.
pub struct UdpInfo {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload bytes.
    pub len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
/// TCP options of a segment.
pub struct TcpOpts {
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Maximum segment size option, if present.
    pub mss: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Window scale option (shift count), if present.
    pub wscale: Option<u8>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    /// SACK permitted option present.
    pub sack_ok: bool,
    /// Number of SACK blocks carried.
    #[serde(skip_serializing_if = "is_zero")]
    pub sack_blocks: u8,
    /// The SACK blocks (left edge, right edge; absolute), the first `sack_blocks` of them. Events
    /// carry them relative to the receiver's first sequence number (`sack` beside `rel_ack`).
    #[serde(skip)]
    pub sack: [(u32, u32); 3],
    /// (TSval, TSecr).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ts: Option<(u32, u32)>,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

impl TcpOpts {
    /// No flag set.
    pub fn is_empty(&self) -> bool {
        *self == TcpOpts::default()
    }
}

impl TcpOpts {
    /// The SACK blocks carried, absolute.
    pub fn sack_blocks(&self) -> &[(u32, u32)] {
        &self.sack[..(self.sack_blocks as usize).min(3)]
    }

    /// Writes the options with SACK edges relative to `base` (the acknowledged side's first
    /// sequence number; 0 for absolute numbers): `sack 2921-4381`, as Wireshark shows them.
    pub fn write_relative(&self, f: &mut impl fmt::Write, base: u32) -> fmt::Result {
        let mut sep = "";
        if let Some(m) = self.mss {
            write!(f, "{sep}mss {m}")?;
            sep = ",";
        }
        if self.sack_ok {
            write!(f, "{sep}sackOK")?;
            sep = ",";
        }
        if self.sack_blocks > 0 {
            write!(f, "{sep}sack")?;
            for (l, r) in self.sack_blocks() {
                write!(f, " {}-{}", l.wrapping_sub(base), r.wrapping_sub(base))?;
            }
            sep = ",";
        }
        if let Some((v, e)) = self.ts {
            write!(f, "{sep}ts {v} {e}")?;
            sep = ",";
        }
        if let Some(w) = self.wscale {
            write!(f, "{sep}wscale {w}")?;
        }
        Ok(())
    }
}

impl fmt::Display for TcpOpts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_relative(f, 0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
/// A TCP segment.
pub struct TcpInfo {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Absolute sequence number.
    pub seq: u32,
    /// Absolute acknowledgment number (the raw field, meaningful only with ACK).
    pub ack: u32,
    /// TCP flags.
    pub flags: TcpFlags,
    /// Advertised window, as on the wire (not scaled).
    pub win: u16,
    /// Header length in bytes (data offset * 4).
    pub hdr_len: u8,
    /// Payload bytes.
    pub len: u32,
    #[serde(skip_serializing_if = "TcpOpts::is_empty")]
    /// Its options.
    pub opts: TcpOpts,
}

impl TcpInfo {
    /// Sequence space the segment occupies: payload, plus one for SYN and one for FIN.
    pub fn seg_len(&self) -> u32 {
        self.len + self.flags.syn() as u32 + self.flags.fin() as u32
    }
}

/// Everything the decoder learned about one frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Frame length in bytes.
    pub len: usize,
    /// The Ethernet header, if the frame has one.
    pub eth: Option<EthInfo>,
    /// The ARP packet, if the frame is one.
    pub arp: Option<ArpInfo>,
    /// The IP header, if any.
    pub ip: Option<IpInfo>,
    /// The ICMP message, if any.
    pub icmp: Option<IcmpInfo>,
    /// The UDP datagram, if any.
    pub udp: Option<UdpInfo>,
    /// The TCP segment, if any.
    pub tcp: Option<TcpInfo>,
    /// What is wrong with the frame, if anything (also the counter key).
    pub malformed: Option<&'static str>,
    /// A checksum that does not verify (`"bad IPv4 checksum"`, `"bad TCP checksum"`, ...).
    pub bad_checksum: Option<&'static str>,
}

impl Decoded {
    /// The first problem: the malformation, else the bad checksum.
    pub fn problem(&self) -> Option<&'static str> {
        self.malformed.or(self.bad_checksum)
    }
}
