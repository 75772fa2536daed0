//! Reliability, round 2 (issue 14), the IP-layer cases, on the harness's virtual wire and clock:
//! many neighbours (case 10), IPv6 extension headers in front of a live connection's segments
//! (case 3), and fragmented UDP datagrams (case 7).
//!
//! Every figure printed here (`FIGURE ...` lines on stderr, `--nocapture` to see them) is in
//! RELIABILITY.md, "Round 2".

use std::net::Ipv4Addr;
use std::time::Duration;
use tapstack::device::Direction;
use tapstack::frames::{Arp, Eth, Tcp, SERVER_MAC, SERVER_V4};
use tapstack::harness::{Harness, Side};
use tapstack::service::ServiceKind;

// ---------------------------------------------------------------------------------------------
// Case 10. More neighbours than smoltcp's default cache (8) holds.

/// The `i`th LAN host of the neighbour test: its own address and MAC, none of them the client
/// stack's (which ignores the server's frames to them).
fn lan_host(i: u8) -> (Ipv4Addr, [u8; 6]) {
    (Ipv4Addr::new(192, 168, 69, 10 + i), [2, 0, 0, 0, 1, i])
}

/// Answers every ARP request the server sent since `mark` for one of the `hosts` LAN hosts, as the
/// host itself would; returns how many it answered.
fn answer_arp(h: &mut Harness, mark: u64, hosts: u8, answered: &mut u64) -> usize {
    let mut n = 0;
    for r in h.packets_since(mark) {
        let Some(a) = r.decoded.arp else { continue };
        if r.dir != Direction::Out || a.op != "request" || r.seq <= *answered {
            continue;
        }
        *answered = r.seq;
        for i in 0..hosts {
            let (ip, mac) = lan_host(i);
            if a.target_ip == ip {
                let reply = Arp::reply(mac, ip, SERVER_MAC, SERVER_V4);
                h.inject(Side::Server, &Eth::new(mac, SERVER_MAC).arp(&reply));
                n += 1;
            }
        }
    }
    n
}

/// 20 LAN hosts each announce themselves once (an ARP reply to the server, as a host does when it
/// resolves the server before its first SYN), then open connections in rounds, all 20 at once, and
/// answer whatever ARP request the server still sends. With smoltcp's default 8-entry cache, 12 of
/// them are forgotten at once, and smoltcp asks for one missing neighbour per second (its rate
/// limit): SYN-ACKs wait a second each. Sized for a LAN, the cache remembers all 20.
#[test]
fn h_neighbours_beyond_eight_never_stall() {
    const HOSTS: u8 = 20;
    const ROUNDS: u16 = 5;
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .seed(21)
        .build();
    for i in 0..HOSTS {
        let (ip, mac) = lan_host(i);
        let reply = Arp::reply(mac, ip, SERVER_MAC, SERVER_V4);
        h.inject(Side::Server, &Eth::new(mac, SERVER_MAC).arp(&reply));
    }
    h.run_for(Duration::from_millis(10));
    let mark = h.packet_mark();
    let mut answered = mark;
    let mut arp_answers = 0;
    for round in 0..ROUNDS {
        let round_mark = h.packet_mark();
        for i in 0..HOSTS {
            let (ip, mac) = lan_host(i);
            let port = 40000 + round * 100 + i as u16;
            let syn = Tcp::new(port, 7, 1000).syn().mss(1460);
            h.inject(
                Side::Server,
                &Eth::new(mac, SERVER_MAC).ipv4(ip, SERVER_V4).tcp(&syn),
            );
        }
        // The hosts answer ARP within a millisecond, as on a LAN. A round ends when every host got
        // its SYN-ACK, or after 12 s (the server drops a handshake after 10 s).
        for _ in 0..12_000 {
            h.run_for(Duration::from_millis(1));
            arp_answers += answer_arp(&mut h, round_mark, HOSTS, &mut answered);
            // Distinct hosts answered (a retransmitted SYN-ACK counts once).
            let mut ports: Vec<u16> = h
                .packets_since(round_mark)
                .iter()
                .filter(|r| r.dir == Direction::Out)
                .filter_map(|r| r.decoded.tcp)
                .filter(|t| t.flags.syn() && t.flags.ack())
                .map(|t| t.dst_port)
                .collect();
            ports.sort_unstable();
            ports.dedup();
            if ports.len() >= HOSTS as usize {
                break;
            }
        }
    }
    // Each SYN against its SYN-ACK, by the host's port, on the server's packet clock.
    let records = h.packets_since(mark);
    let mut worst_us = 0i64;
    let mut unanswered = 0;
    for syn in records.iter().filter(|r| r.dir == Direction::In) {
        let Some(t) = syn.decoded.tcp.filter(|t| t.flags.syn() && !t.flags.ack()) else {
            continue;
        };
        let synack = records.iter().find(|r| {
            r.dir == Direction::Out
                && r.decoded
                    .tcp
                    .is_some_and(|s| s.flags.syn() && s.flags.ack() && s.dst_port == t.src_port)
        });
        match synack {
            Some(sa) => worst_us = worst_us.max(sa.t_us - syn.t_us),
            None => unanswered += 1,
        }
    }
    eprintln!(
        "FIGURE neighbours: {HOSTS} hosts x {ROUNDS} rounds of SYNs: slowest SYN-ACK after {:.3} ms, \
         {unanswered} SYNs never answered, {arp_answers} ARP requests from the server, {} virtual \
         ms in all",
        worst_us as f64 / 1000.0,
        h.now().as_millis()
    );
    assert_eq!(unanswered, 0, "SYNs whose SYN-ACK never left");
    assert!(
        worst_us < 100_000,
        "a SYN-ACK waited {worst_us} us for its neighbour (smoltcp's 1 s ARP rate limit)"
    );
    assert_eq!(arp_answers, 0, "every host was remembered");
}
