//! Addresses as people type them: `ADDRESS/PREFIX` and MAC addresses, checked before smoltcp sees them.

use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};
use std::fmt;
use std::net::IpAddr;

/// An address that cannot be given to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrError {
    BadCidr(String),
    BadMac(String),
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::BadCidr(s) => write!(
                f,
                "bad address '{s}': expected ADDRESS/PREFIX, e.g. 192.168.69.1/24 or fdaa::1/64"
            ),
            AddrError::BadMac(s) => write!(
                f,
                "bad MAC address '{s}': expected six hex bytes like 02:00:00:00:00:01, unicast (first byte even), not all zero"
            ),
        }
    }
}

impl std::error::Error for AddrError {}

/// Parses `02:00:00:00:00:01` or `02-00-00-00-00-01`.
pub fn parse_mac(s: &str) -> Result<EthernetAddress, AddrError> {
    let bad = || AddrError::BadMac(s.to_string());
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut b = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(bad());
        }
        b[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    let mac = EthernetAddress(b);
    // smoltcp panics on a non-unicast hardware address: refuse it here, politely.
    if !mac.is_unicast() || b == [0; 6] {
        return Err(bad());
    }
    Ok(mac)
}

/// Parses `192.168.69.1/24` or `fdaa::1/64`: an address an interface can own.
pub fn parse_cidr(s: &str) -> Result<IpCidr, AddrError> {
    let bad = || AddrError::BadCidr(s.to_string());
    let (addr, len) = s.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max || addr.is_unspecified() || addr.is_multicast() {
        return Err(bad());
    }
    if let IpAddr::V4(v4) = addr {
        if v4.is_broadcast() {
            return Err(bad());
        }
    }
    Ok(IpCidr::new(IpAddress::from(addr), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cidr_forms() {
        assert_eq!(parse_cidr("192.168.69.1/24").unwrap().prefix_len(), 24);
        assert_eq!(parse_cidr("fdaa::1/64").unwrap().prefix_len(), 64);
        for bad in [
            "192.168.69.1",
            "1.2.3.4/40",
            "0.0.0.0/0",
            "255.255.255.255/32",
            "ff02::1/64",
        ] {
            assert_eq!(
                parse_cidr(bad),
                Err(AddrError::BadCidr(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn test_mac_forms() {
        let want = EthernetAddress([2, 0xaa, 0, 0, 0, 1]);
        assert_eq!(parse_mac("02:aa:00:00:00:01"), Ok(want));
        assert_eq!(parse_mac("02-AA-00-00-00-01"), Ok(want));
        for bad in ["01:00:00:00:00:01", "00:00:00:00:00:00", "2:0:0:0:0:1"] {
            assert_eq!(parse_mac(bad), Err(AddrError::BadMac(bad.into())), "{bad}");
        }
    }
}
