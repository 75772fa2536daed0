//! Addresses and ports in plain words: IPv4 classes (with network and host parts) and special ranges,
//! IPv6 scopes, port ranges and well-known services.
//!
//! [`explain`] takes what a learner would type (`192.168.1.2`, `192.168.1.2:8080`, `8080`,
//! `[fe80::1]:80`) and returns a few lines of text; the tracer uses [`explain_addr`] and
//! [`explain_port`] the first time a flow shows an address or port.

use std::fmt;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why [`explain`] could not read its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExplainError {
    /// Nothing was given.
    Empty,
    /// Not an IPv4 or IPv6 address.
    BadAddress(String),
    /// Not a whole number where a port was expected.
    BadPort(String),
    /// A number larger than 65535 where a port was expected.
    PortOutOfRange(String),
    /// `[` without `]`.
    UnclosedBracket,
}

impl fmt::Display for ExplainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExplainError::Empty => f.write_str(
                "nothing to explain: give an address (192.168.1.2), a port (80) or both (192.168.1.2:80, [fe80::1]:80)",
            ),
            ExplainError::BadAddress(s) => {
                let parts: Vec<&str> = s.split('.').collect();
                let big = parts
                    .iter()
                    .filter_map(|p| p.parse::<u64>().ok())
                    .find(|&n| n > 255);
                match big {
                    Some(n) if parts.len() == 4 => write!(
                        f,
                        "`{s}` is not an IPv4 address: {n} is larger than 255, the most one octet (8 bits) can hold"
                    ),
                    _ => write!(
                        f,
                        "`{s}` is not an IP address: IPv4 is four numbers 0-255 joined by dots (192.168.1.2), IPv6 is hex groups joined by colons (fe80::1)"
                    ),
                }
            }
            ExplainError::BadPort(s) => write!(
                f,
                "`{s}` is not a port: a port is a whole number from 0 to 65535"
            ),
            ExplainError::PortOutOfRange(s) => write!(
                f,
                "port {s} is out of range: ports are 16-bit numbers, 0 to 65535"
            ),
            ExplainError::UnclosedBracket => f.write_str(
                "missing `]`: an IPv6 address with a port is written in brackets, like [fe80::1]:80",
            ),
        }
    }
}

impl std::error::Error for ExplainError {}

/// Explains `ADDR`, `ADDR:PORT`, `PORT` or `[IPV6]:PORT`.
pub fn explain(input: &str) -> Result<String, ExplainError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(ExplainError::Empty);
    }
    let (addr, port) = parse_target(s)?;
    let mut out = String::new();
    if let Some(a) = addr {
        out.push_str(&explain_addr(a));
    }
    if let Some(p) = port {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&explain_port(p));
    }
    Ok(out)
}

fn parse_target(s: &str) -> Result<(Option<IpAddr>, Option<u16>), ExplainError> {
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or(ExplainError::UnclosedBracket)?;
        let a: Ipv6Addr = inner
            .parse()
            .map_err(|_| ExplainError::BadAddress(inner.to_string()))?;
        if after.is_empty() {
            return Ok((Some(IpAddr::V6(a)), None));
        }
        let p = after
            .strip_prefix(':')
            .ok_or_else(|| ExplainError::BadPort(after.to_string()))?;
        return Ok((Some(IpAddr::V6(a)), Some(parse_port(p)?)));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok((None, Some(parse_port(s)?)));
    }
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok((Some(a), None));
    }
    if let Some((h, p)) = s.rsplit_once(':') {
        if !h.contains(':') {
            let a: Ipv4Addr = h
                .parse()
                .map_err(|_| ExplainError::BadAddress(h.to_string()))?;
            return Ok((Some(IpAddr::V4(a)), Some(parse_port(p)?)));
        }
    }
    Err(ExplainError::BadAddress(s.to_string()))
}

fn parse_port(p: &str) -> Result<u16, ExplainError> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ExplainError::BadPort(p.to_string()));
    }
    match p.parse::<u64>() {
        Ok(n) if n <= 65535 => Ok(n as u16),
        _ => Err(ExplainError::PortOutOfRange(p.to_string())),
    }
}

/// Historical IPv4 address classes (by first octet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ipv4Class {
    /// 0-127: 8 network bits, 24 host bits.
    A,
    /// 128-191: 16 network bits, 16 host bits.
    B,
    /// 192-223: 24 network bits, 8 host bits.
    C,
    /// 224-239: multicast.
    D,
    /// 240-255: reserved.
    E,
}

impl Ipv4Class {
    pub(crate) fn of(a: Ipv4Addr) -> Ipv4Class {
        match a.octets()[0] {
            0..=127 => Ipv4Class::A,
            128..=191 => Ipv4Class::B,
            192..=223 => Ipv4Class::C,
            224..=239 => Ipv4Class::D,
            _ => Ipv4Class::E,
        }
    }

    /// Network prefix length for classes A-C.
    pub(crate) fn network_bits(self) -> Option<u8> {
        match self {
            Ipv4Class::A => Some(8),
            Ipv4Class::B => Some(16),
            Ipv4Class::C => Some(24),
            Ipv4Class::D | Ipv4Class::E => None,
        }
    }

    pub(crate) fn letter(self) -> char {
        match self {
            Ipv4Class::A => 'A',
            Ipv4Class::B => 'B',
            Ipv4Class::C => 'C',
            Ipv4Class::D => 'D',
            Ipv4Class::E => 'E',
        }
    }

    fn range(self) -> &'static str {
        match self {
            Ipv4Class::A => "0-127",
            Ipv4Class::B => "128-191",
            Ipv4Class::C => "192-223",
            Ipv4Class::D => "224-239",
            Ipv4Class::E => "240-255",
        }
    }
}

fn in_net(a: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    (u32::from(a) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

/// The kind of an IPv4 address, as a short tag, with its range and meaning.
pub(crate) fn ipv4_kind(a: Ipv4Addr) -> (&'static str, &'static str, &'static str) {
    const TABLE: [([u8; 4], u32, &str, &str, &str); 22] = [
        ([0, 0, 0, 0], 32, "unspecified", "0.0.0.0/32", "means \"any address\" (a socket bound here listens on every address) or \"no address yet\""),
        ([0, 0, 0, 0], 8, "this network", "0.0.0.0/8", "\"this network\": only valid as a source while a host learns its address"),
        ([127, 0, 0, 0], 8, "loopback", "127.0.0.0/8", "never leaves the machine: packets come straight back to the same host"),
        ([10, 0, 0, 0], 8, "private", "10.0.0.0/8, RFC 1918", "for use inside one organisation; not routed on the internet, reached from outside only through NAT"),
        ([172, 16, 0, 0], 12, "private", "172.16.0.0/12, RFC 1918", "for use inside one organisation; not routed on the internet, reached from outside only through NAT"),
        ([192, 168, 0, 0], 16, "private", "192.168.0.0/16, RFC 1918", "for use inside homes and offices; not routed on the internet, reached from outside only through NAT"),
        ([100, 64, 0, 0], 10, "shared", "100.64.0.0/10, RFC 6598", "shared address space for carrier-grade NAT between an ISP and its customers"),
        ([169, 254, 0, 0], 16, "link-local", "169.254.0.0/16, RFC 3927", "picked by a host itself when no DHCP server answers; valid on one link only, never routed"),
        ([192, 0, 0, 0], 29, "DS-Lite", "192.0.0.0/29, RFC 7335", "between the two ends of a DS-Lite tunnel (IPv4 carried over an IPv6-only access network)"),
        ([192, 0, 0, 170], 31, "NAT64 discovery", "192.0.0.170/31, RFC 7050", "well-known names a host resolves to discover a NAT64 prefix"),
        ([192, 0, 0, 0], 24, "IETF protocol assignments", "192.0.0.0/24, RFC 6890", "reserved for special protocol uses"),
        ([192, 88, 99, 0], 24, "6to4 relay anycast (deprecated)", "192.88.99.0/24, RFC 7526", "once the anycast address of 6to4 relays; deprecated, not to be used"),
        ([192, 31, 196, 0], 24, "AS112", "192.31.196.0/24, RFC 7535", "answers the reverse-DNS queries for private addresses that leak onto the internet"),
        ([192, 175, 48, 0], 24, "AS112", "192.175.48.0/24, RFC 7534", "answers the reverse-DNS queries for private addresses that leak onto the internet"),
        ([192, 0, 2, 0], 24, "documentation", "192.0.2.0/24, TEST-NET-1, RFC 5737", "for examples in documentation; never used on a real network"),
        ([198, 51, 100, 0], 24, "documentation", "198.51.100.0/24, TEST-NET-2, RFC 5737", "for examples in documentation; never used on a real network"),
        ([203, 0, 113, 0], 24, "documentation", "203.0.113.0/24, TEST-NET-3, RFC 5737", "for examples in documentation; never used on a real network"),
        ([198, 18, 0, 0], 15, "benchmarking", "198.18.0.0/15, RFC 2544", "for testing network equipment in the lab"),
        ([224, 0, 0, 0], 4, "multicast", "224.0.0.0/4", "a group address: one packet is delivered to every host that joined the group"),
        ([255, 255, 255, 255], 32, "broadcast", "255.255.255.255/32", "limited broadcast: every host on this link receives it; routers never forward it"),
        ([240, 0, 0, 0], 4, "reserved", "240.0.0.0/4", "reserved for future use; not usable on real networks"),
        ([0, 0, 0, 0], 0, "public", "", "a public (globally routable) address: it can be reached across the internet"),
    ];
    for (net, bits, tag, range, meaning) in TABLE {
        if in_net(a, net, bits) {
            return (tag, range, meaning);
        }
    }
    ("public", "", "")
}

fn in_net6(a: Ipv6Addr, net: [u16; 8], bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits)
    };
    (u128::from(a) & mask) == (u128::from(Ipv6Addr::from(net)) & mask)
}

/// The kind of an IPv6 address, as a short tag, with its range and meaning. The special-purpose
/// ranges come from IANA's IPv6 Special-Purpose Address Registry (RFC 6890 and the RFCs it lists),
/// most specific first.
pub(crate) fn ipv6_kind(a: Ipv6Addr) -> (&'static str, &'static str, &'static str) {
    type Row = ([u16; 8], u32, &'static str, &'static str, &'static str);
    const TABLE: [Row; 20] = [
        ([0; 8], 128, "unspecified", "::/128", "means \"any address\" (a socket bound here listens on every address) or \"no address yet\""),
        ([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback", "::1/128", "never leaves the machine: packets come straight back to the same host"),
        ([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, "IPv4-mapped", "::ffff:0:0/96", "an IPv4 address written as IPv6, as a dual-stack socket reports IPv4 peers"),
        ([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, "NAT64", "64:ff9b::/96, RFC 6052", "the well-known NAT64 prefix: an IPv4 address embedded in its last 32 bits, reached through a NAT64 translator"),
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "NAT64 (local use)", "64:ff9b:1::/48, RFC 8215", "a NAT64 prefix for translation inside one network"),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only", "100::/64, RFC 6666", "a black hole: packets sent here are dropped on purpose (remotely triggered filtering)"),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "Teredo", "2001::/32, RFC 4380", "IPv6 tunnelled in UDP over IPv4 through NATs; the address embeds the server and the client's public IPv4 address"),
        ([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, "benchmarking", "2001:2::/48, RFC 5180", "for testing network equipment in the lab"),
        ([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, "ORCHIDv2", "2001:20::/28, RFC 7343", "cryptographic host identifiers, not routed as locators"),
        ([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32, "documentation", "2001:db8::/32, RFC 3849", "for examples in documentation; never used on a real network"),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation", "3fff::/20, RFC 9637", "for examples in documentation; never used on a real network"),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, "IETF protocol assignments", "2001::/23, RFC 2928", "reserved for special protocol uses"),
        ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4", "2002::/16, RFC 3056", "IPv6 carried over IPv4: the 32 bits after 2002: are the site's IPv4 address"),
        ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "segment routing", "5f00::/16, RFC 9602", "SRv6 segment identifiers: instructions for segment routing, inside one domain"),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local", "fc00::/7, RFC 4193", "IPv6's private addresses: routed inside one site, not on the internet"),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local", "fe80::/10", "valid on one link only (one cable, one Wi-Fi); every IPv6 interface has one, routers never forward it"),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast", "ff00::/8", "a group address: one packet is delivered to every interface that joined the group"),
        ([0, 0, 0, 0, 0, 0, 0, 0], 96, "IPv4-compatible (deprecated)", "::/96, RFC 4291", "an old way of writing IPv4 addresses as IPv6; deprecated, never used on the wire"),
        ([0x2000, 0, 0, 0, 0, 0, 0, 0], 3, "global", "2000::/3", "a global unicast address: routed across the internet"),
        ([0; 8], 0, "reserved", "", "in a range IANA has not assigned for ordinary use"),
    ];
    for (net, bits, tag, range, meaning) in TABLE {
        if in_net6(a, net, bits) {
            return (tag, range, meaning);
        }
    }
    (
        "reserved",
        "",
        "in a range IANA has not assigned for ordinary use",
    )
}

/// A few lines about one address.
pub(crate) fn explain_addr(a: IpAddr) -> String {
    let mut out = String::new();
    match a {
        IpAddr::V4(v4) => explain_v4(&mut out, v4, ""),
        IpAddr::V6(v6) => {
            let (tag, range, meaning) = ipv6_kind(v6);
            let _ = writeln!(
                out,
                "{v6} is an IPv6 address (128 bits, eight groups of 16 bits in hex)."
            );
            if range.is_empty() {
                let _ = write!(out, "  {tag}: {meaning}");
            } else {
                let _ = write!(out, "  {tag} ({range}): {meaning}");
            }
            if tag == "multicast" {
                let scope = match s_scope(v6) {
                    1 => "interface-local",
                    2 => "link-local",
                    4 => "admin-local",
                    5 => "site-local",
                    8 => "organization-local",
                    0xe => "global",
                    _ => "unusual",
                };
                let _ = write!(out, "\n  scope: {scope}");
                let well_known = match v6.segments() {
                    [0xff02, 0, 0, 0, 0, 0, 0, 1] => Some("all nodes on this link"),
                    [0xff02, 0, 0, 0, 0, 0, 0, 2] => Some("all routers on this link"),
                    [0xff02, 0, 0, 0, 0, 0, 0, 0xfb] => Some("mDNS"),
                    [0xff02, 0, 0, 0, 0, 0, 0, 0x16] => Some("MLDv2 reports"),
                    [0xff02, 0, 0, 0, 0, 1, s6, _] if s6 >> 8 == 0xff => Some(
                        "solicited-node group: neighbor discovery asks here who owns an address ending in the same 24 bits",
                    ),
                    _ => None,
                };
                if let Some(w) = well_known {
                    let _ = write!(out, "\n  this group is: {w}");
                }
            }
            if let Some(v4) = v6.to_ipv4_mapped() {
                out.push('\n');
                explain_v4(&mut out, v4, "  ");
            }
        }
    }
    out
}

fn s_scope(a: Ipv6Addr) -> u16 {
    a.segments()[0] & 0x000f
}

fn explain_v4(out: &mut String, a: Ipv4Addr, indent: &str) {
    let class = Ipv4Class::of(a);
    let (tag, range, meaning) = ipv4_kind(a);
    let _ = writeln!(
        out,
        "{indent}{a} is an IPv4 address (32 bits, four octets of 0-255)."
    );
    let _ = write!(
        out,
        "{indent}  class {} (first octet {})",
        class.letter(),
        class.range()
    );
    match class.network_bits() {
        Some(bits) => {
            let mask = u32::MAX << (32 - bits as u32);
            let net = Ipv4Addr::from(u32::from(a) & mask);
            let host = Ipv4Addr::from(u32::from(a) & !mask);
            let host_short = host.octets()[(bits / 8) as usize..]
                .iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>()
                .join(".");
            let _ = write!(
                out,
                ": the first {bits} bits name the network, the other {} the host\n{indent}    network {net}, host .{host_short} ({host})",
                32 - bits
            );
        }
        None if class == Ipv4Class::D => {
            let _ = write!(out, ": multicast groups, no network/host split");
        }
        None => {
            let _ = write!(out, ": reserved, no network/host split");
        }
    }
    let _ = write!(
        out,
        "\n{indent}    (classes are history: since 1993 a prefix length such as /24 sets the split)"
    );
    if range.is_empty() {
        let _ = write!(out, "\n{indent}  {tag}: {meaning}");
    } else {
        let _ = write!(out, "\n{indent}  {tag} ({range}): {meaning}");
    }
}

/// `"well-known"` (0-1023), `"registered"` (1024-49151) or `"dynamic"` (49152-65535).
pub(crate) fn port_range(p: u16) -> &'static str {
    match p {
        0..=1023 => "well-known",
        1024..=49151 => "registered",
        _ => "dynamic",
    }
}

/// The service usually found on a port.
pub(crate) fn port_service(p: u16) -> Option<&'static str> {
    Some(match p {
        7 => "echo (sends back what it receives)",
        9 => "discard (throws away what it receives)",
        13 => "daytime (the date and time as text)",
        17 => "qotd (quote of the day)",
        19 => "chargen (an endless stream of characters)",
        20 => "ftp-data (FTP file transfers)",
        21 => "ftp (FTP control)",
        22 => "ssh (secure shell)",
        23 => "telnet",
        25 => "smtp (mail between servers)",
        37 => "time (seconds since 1900, binary)",
        43 => "whois",
        53 => "domain (DNS)",
        67 => "dhcp server (bootps)",
        68 => "dhcp client (bootpc)",
        69 => "tftp",
        79 => "finger",
        80 => "http (the web)",
        88 => "kerberos",
        110 => "pop3 (mail retrieval)",
        111 => "sunrpc (portmapper)",
        119 => "nntp (news)",
        123 => "ntp (time synchronisation)",
        135 => "msrpc",
        137 => "netbios-ns",
        138 => "netbios-dgm",
        139 => "netbios-ssn",
        143 => "imap (mail retrieval)",
        161 => "snmp",
        162 => "snmptrap",
        179 => "bgp (routing between networks)",
        389 => "ldap (directories)",
        443 => "https (the web over TLS)",
        445 => "microsoft-ds (SMB file sharing)",
        465 => "submissions (mail submission over TLS)",
        500 => "isakmp (IPsec key exchange)",
        514 => "syslog",
        515 => "printer (lpd)",
        520 => "rip",
        546 => "dhcpv6 client",
        547 => "dhcpv6 server",
        554 => "rtsp (streaming)",
        587 => "submission (mail from clients)",
        631 => "ipp (printing)",
        636 => "ldaps (LDAP over TLS)",
        853 => "domain-s (DNS over TLS)",
        873 => "rsync",
        989 => "ftps-data",
        990 => "ftps",
        993 => "imaps (IMAP over TLS)",
        995 => "pop3s (POP3 over TLS)",
        1080 => "socks (proxy)",
        1194 => "openvpn",
        1433 => "ms-sql",
        1883 => "mqtt",
        3306 => "mysql",
        3389 => "rdp (remote desktop)",
        5353 => "mdns (multicast DNS)",
        5432 => "postgresql",
        5900 => "vnc",
        6379 => "redis",
        8080 => "http-alt (a second web server, proxies)",
        8443 => "https-alt",
        _ => return None,
    })
}

/// A few lines about one port.
pub(crate) fn explain_port(p: u16) -> String {
    let mut out = String::new();
    let range = port_range(p);
    if p == 0 {
        out.push_str(
            "port 0 is reserved (RFC 6335): no packet should carry it; binding to port 0 asks the \
             system to choose a free port",
        );
        return out;
    }
    let _ = write!(out, "port {p} is a {range} port");
    match range {
        "well-known" => out.push_str(
            " (0-1023): assigned by IANA to standard services; servers listen here, and on Unix only root may bind them",
        ),
        "registered" => out.push_str(
            " (1024-49151): registered with IANA by applications; any user may bind them (Linux also \
             picks client ports from 32768-60999 by default, net.ipv4.ip_local_port_range)",
        ),
        _ => out.push_str(
            " (49152-65535): dynamic or ephemeral: the operating system picks one for the client end of a connection",
        ),
    }
    if let Some(s) = port_service(p) {
        let usually = if p <= 1023 { "service" } else { "often" };
        let _ = write!(out, "\n  {usually}: {s}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }
    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn test_class_edges() {
        for (first, class) in [
            (0, Ipv4Class::A),
            (127, Ipv4Class::A),
            (128, Ipv4Class::B),
            (191, Ipv4Class::B),
            (192, Ipv4Class::C),
            (223, Ipv4Class::C),
            (224, Ipv4Class::D),
            (239, Ipv4Class::D),
            (240, Ipv4Class::E),
            (255, Ipv4Class::E),
        ] {
            assert_eq!(
                Ipv4Class::of(Ipv4Addr::new(first, 1, 2, 3)),
                class,
                "{first}"
            );
            let text = explain_addr(IpAddr::V4(Ipv4Addr::new(first, 1, 2, 3)));
            assert!(
                text.contains(&format!("class {}", class.letter())),
                "{text}"
            );
        }
    }

    #[test]
    fn test_private_ranges_and_edges() {
        for (a, kind) in [
            ("9.255.255.255", "public"),
            ("10.0.0.0", "private"),
            ("10.255.255.255", "private"),
            ("11.0.0.0", "public"),
            ("172.15.255.255", "public"),
            ("172.16.0.0", "private"),
            ("172.31.255.255", "private"),
            ("172.32.0.0", "public"),
            ("192.167.255.255", "public"),
            ("192.168.0.0", "private"),
            ("192.168.255.255", "private"),
            ("192.169.0.0", "public"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.255", "loopback"),
            ("169.254.0.1", "link-local"),
            ("169.255.0.1", "public"),
            ("255.255.255.255", "broadcast"),
            ("255.255.255.254", "reserved"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.200", "documentation"),
            ("100.64.0.1", "shared"),
            ("100.127.255.255", "shared"),
            ("100.128.0.0", "public"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.255", "multicast"),
            ("0.0.0.0", "unspecified"),
            ("8.8.8.8", "public"),
        ] {
            assert_eq!(ipv4_kind(v4(a)).0, kind, "{a}");
        }
    }

    #[test]
    fn test_test_nets_named() {
        assert!(explain("192.0.2.1").unwrap().contains("TEST-NET-1"));
        assert!(explain("198.51.100.1").unwrap().contains("TEST-NET-2"));
        assert!(explain("203.0.113.1").unwrap().contains("TEST-NET-3"));
    }

    #[test]
    fn test_ipv6_kinds() {
        for (a, kind) in [
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "reserved"),
            ("fdaa::1", "unique-local"),
            ("fc00::1", "unique-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("2606:4700::1", "global"),
            ("::ffff:192.168.1.2", "IPv4-mapped"),
        ] {
            assert_eq!(ipv6_kind(v6(a)).0, kind, "{a}");
        }
        let mapped = explain("::ffff:192.168.1.2").unwrap();
        assert!(
            mapped.contains("class C") && mapped.contains("private"),
            "{mapped}"
        );
        assert!(explain("ff02::1").unwrap().contains("all nodes"));
    }

    #[test]
    fn test_special_purpose_ranges_of_rfc_6890_are_named() {
        for (addr, tag, range) in [
            ("64:ff9b::c000:201", "NAT64", "64:ff9b::/96, RFC 6052"),
            (
                "64:ff9b:1::1",
                "NAT64 (local use)",
                "64:ff9b:1::/48, RFC 8215",
            ),
            ("100::1", "discard-only", "100::/64, RFC 6666"),
            ("2001::1", "Teredo", "2001::/32, RFC 4380"),
            ("2001:2::1", "benchmarking", "2001:2::/48, RFC 5180"),
            ("2001:db8::1", "documentation", "2001:db8::/32, RFC 3849"),
            ("3fff::1", "documentation", "3fff::/20, RFC 9637"),
            ("2002:c000:204::1", "6to4", "2002::/16, RFC 3056"),
            ("fd00::1", "unique-local", "fc00::/7, RFC 4193"),
            ("2606:4700::1", "global", "2000::/3"),
        ] {
            let a: Ipv6Addr = addr.parse().unwrap();
            assert_eq!(ipv6_kind(a).0, tag, "{addr}");
            assert_eq!(ipv6_kind(a).1, range, "{addr}");
        }
        for (addr, tag) in [
            ("192.88.99.1", "6to4 relay anycast (deprecated)"),
            ("192.0.0.2", "DS-Lite"),
            ("192.0.0.9", "IETF protocol assignments"),
            ("192.0.0.170", "NAT64 discovery"),
            ("192.175.48.1", "AS112"),
        ] {
            assert_eq!(ipv4_kind(addr.parse().unwrap()).0, tag, "{addr}");
        }
        // A reserved range has no range text: no empty "()".
        let t = explain("4000::1").unwrap();
        assert!(t.contains("reserved: in a range IANA"), "{t}");
        assert!(!t.contains("()"), "{t}");
    }

    #[test]
    fn test_port_ranges() {
        for (p, r) in [
            (0, "well-known"),
            (1023, "well-known"),
            (1024, "registered"),
            (49151, "registered"),
            (49152, "dynamic"),
            (65535, "dynamic"),
        ] {
            assert_eq!(port_range(p), r, "{p}");
            if p != 0 {
                assert!(explain(&p.to_string()).unwrap().contains(r));
            }
        }
        // Port 0 is in the well-known range but no service's: it is only ever reserved.
        let zero = explain("0").unwrap();
        assert!(zero.contains("reserved (RFC 6335)"), "{zero}");
        assert!(!zero.contains("servers listen here"), "{zero}");
        assert!(explain("7").unwrap().contains("echo"));
        assert!(explain("22").unwrap().contains("ssh"));
    }

    #[test]
    fn test_explain_addr_and_port() {
        let t = explain("192.168.1.2:8080").unwrap();
        assert!(t.contains("class C"), "{t}");
        assert!(t.contains("private"), "{t}");
        assert!(t.contains("network 192.168.1.0"), "{t}");
        assert!(t.contains("host .2 (0.0.0.2)"), "{t}");
        assert!(t.contains("port 8080 is a registered port"), "{t}");
        let t = explain("10.1.2.3").unwrap();
        assert!(t.contains("network 10.0.0.0, host .1.2.3 (0.1.2.3)"), "{t}");
        let t = explain("[fe80::1]:80").unwrap();
        assert!(t.contains("link-local") && t.contains("http"), "{t}");
        let t = explain("  [2001:db8::1]  ").unwrap();
        assert!(t.contains("documentation"), "{t}");
    }

    #[test]
    fn test_invalid_inputs() {
        assert!(matches!(
            explain("300.1.1.1"),
            Err(ExplainError::BadAddress(_))
        ));
        assert!(explain("300.1.1.1")
            .unwrap_err()
            .to_string()
            .contains("300 is larger than 255"));
        assert_eq!(
            explain("1.2.3.4:99999"),
            Err(ExplainError::PortOutOfRange("99999".into()))
        );
        assert_eq!(explain("[fe80::1"), Err(ExplainError::UnclosedBracket));
        assert!(matches!(explain("abc"), Err(ExplainError::BadAddress(_))));
        assert_eq!(explain(""), Err(ExplainError::Empty));
        assert_eq!(explain("   "), Err(ExplainError::Empty));
        assert!(matches!(explain("1.2.3.4:"), Err(ExplainError::BadPort(_))));
        assert!(matches!(
            explain("1.2.3.4:http"),
            Err(ExplainError::BadPort(_))
        ));
        assert!(matches!(
            explain("[fe80::1]x"),
            Err(ExplainError::BadPort(_))
        ));
        assert!(matches!(
            explain("99999999999999999999999"),
            Err(ExplainError::PortOutOfRange(_))
        ));
        for e in [
            ExplainError::Empty,
            ExplainError::BadAddress("abc".into()),
            ExplainError::BadPort("x".into()),
            ExplainError::PortOutOfRange("70000".into()),
            ExplainError::UnclosedBracket,
        ] {
            let s = e.to_string();
            assert!(!s.is_empty() && !s.contains('\n'), "{s}");
        }
    }
}
