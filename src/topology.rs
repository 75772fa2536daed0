//! Where the demo's two stacks sit: one place for their addresses, MACs and gateways.
//!
//! The server stack's values are also `serve`'s defaults on a TAP device. There the client's addresses
//! belong to the kernel's side of the TAP (tap-setup.sh gives them to it), which is why they are the
//! server's gateways; in the demo and the harness a second userspace stack holds them instead, on the
//! other end of an in-memory wire.
//!
//! The stack values are text, parsed like the command line's, because they are its defaults.

use std::net::Ipv4Addr;

use crate::addr::{parse_cidr, parse_mac};
use crate::stack::{StackConfig, TCP_BUFFER};

/// The server stack's IPv4 address.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 1);
/// The server stack's MAC address (`--mac`'s default).
pub const SERVER_MAC: &str = "02:00:00:00:00:01";
/// The server stack's addresses (`--addr`'s default).
pub const SERVER_ADDRS: [&str; 3] = ["192.168.69.1/24", "fdaa::1/64", "fe80::1/64"];
/// The server stack's gateways (`--gateway`'s default): the client's side of the link.
pub(crate) const SERVER_GATEWAYS: [&str; 2] = ["192.168.69.100", "fe80::100"];

/// The client stack's IPv4 address.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 100);
/// The client stack's MAC address.
pub(crate) const CLIENT_MAC: &str = "02:00:00:00:00:02";
/// The client stack's addresses.
pub(crate) const CLIENT_ADDRS: [&str; 3] = ["192.168.69.100/24", "fdaa::100/64", "fe80::100/64"];

/// The client only ever opens a few connections at a time (the tour, a test), so its table stays
/// small.
const CLIENT_MAX_CONNECTIONS: usize = 64;

/// The demo client stack's configuration. Its random seed is one past the server's, so a seeded run
/// replays exactly and the two stacks still never pick the same sequence numbers or ports.
pub fn client_stack_config(server_seed: u64) -> StackConfig {
    StackConfig {
        mac: parse_mac(CLIENT_MAC).expect("constant MAC"),
        addrs: CLIENT_ADDRS
            .iter()
            .map(|a| parse_cidr(a).expect("constant CIDR"))
            .collect(),
        // Both stacks share one link: nothing lies beyond it.
        gateway_v4: None,
        gateway_v6: None,
        random_seed: server_seed.wrapping_add(1),
        max_connections: CLIENT_MAX_CONNECTIONS,
        tcp_buffer: TCP_BUFFER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::IpAddress;

    #[test]
    fn test_first_addresses_are_the_named_ipv4_ones() {
        assert!(SERVER_ADDRS[0].starts_with(&format!("{SERVER}/")));
        assert!(CLIENT_ADDRS[0].starts_with(&format!("{CLIENT}/")));
        assert_eq!(
            client_stack_config(0).addrs[0].address(),
            IpAddress::Ipv4(CLIENT)
        );
    }

    #[test]
    fn test_server_gateways_are_client_addresses() {
        for g in SERVER_GATEWAYS {
            assert!(
                CLIENT_ADDRS.iter().any(|a| a.split('/').next() == Some(g)),
                "{g}"
            );
        }
    }

    #[test]
    fn test_constants_parse() {
        for a in SERVER_ADDRS.iter().chain(&CLIENT_ADDRS) {
            parse_cidr(a).unwrap();
        }
        assert_ne!(parse_mac(SERVER_MAC), parse_mac(CLIENT_MAC));
    }

    #[test]
    fn test_client_seed_differs_from_server() {
        assert_eq!(client_stack_config(7).random_seed, 8);
        assert_eq!(client_stack_config(u64::MAX).random_seed, 0);
    }
}
