//! Reliability, round 2 (issue 14), the IP-layer cases, on the harness's virtual wire and clock:
//! many neighbours (case 10), IPv6 extension headers in front of a live connection's segments
//! (case 3), and fragmented UDP datagrams (case 7).
//!
//! Every figure printed here (`FIGURE ...` lines on stderr, `--nocapture` to see them) is in
//! RELIABILITY.md, "Round 2".

mod common;

use smoltcp::wire::{Icmpv6Repr, Ipv4Packet, NdiscRepr, RawHardwareAddress};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;
use tapstack::frames::{Arp, Eth, Ipv6, Tcp, CLIENT_V4, SERVER_MAC, SERVER_V4, SERVER_V6};
use tapstack::harness::{Harness, Side};
use tapstack::Direction;
use tapstack::ServiceKind;

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

// ---------------------------------------------------------------------------------------------
// Case 3. IPv6 extension headers in front of a live connection's segments.

/// An IPv6 peer that exists only in injected frames (the client stack ignores its MAC).
const PEER_V6: Ipv6Addr = Ipv6Addr::new(0xfdaa, 0, 0, 0, 0, 0, 0, 0x77);
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x77];

fn from_peer() -> Ipv6 {
    Eth::new(PEER_MAC, SERVER_MAC).ipv6(PEER_V6, SERVER_V6)
}

/// The peer's first sequence number; its data starts one later.
const PEER_ISN: u32 = 1000;

/// Opens a connection from the spoofed IPv6 peer's `port` to the discard service (port 9): a
/// neighbour solicitation tells the server where the peer is, then SYN, SYN-ACK, ACK. Returns the
/// server's next sequence number.
fn open_from_peer(h: &mut Harness, port: u16) -> u32 {
    let ns = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr: SERVER_V6,
        lladdr: Some(RawHardwareAddress::from_bytes(&PEER_MAC)),
    });
    h.inject(Side::Server, &from_peer().hop_limit(255).icmp(&ns));
    let mark = h.packet_mark();
    let syn = Tcp::new(port, 9, PEER_ISN).syn().mss(1460);
    h.inject(Side::Server, &from_peer().tcp(&syn));
    h.run_for(Duration::from_millis(10));
    let synack = h
        .packets_since(mark)
        .iter()
        .filter(|r| r.dir == Direction::Out)
        .find_map(|r| {
            r.decoded
                .tcp
                .filter(|t| t.flags.syn() && t.dst_port == port)
        })
        .expect("SYN-ACK to the IPv6 peer");
    let ack = Tcp::new(port, 9, PEER_ISN + 1).ack(synack.seq.wrapping_add(1));
    h.inject(Side::Server, &from_peer().tcp(&ack));
    h.run_for(Duration::from_millis(10));
    synack.seq.wrapping_add(1)
}

/// 8-byte extension headers, each followed by `next`: PadN options for Hop-by-Hop (0) and
/// Destination Options (60), a type-0 Routing header (43) with no segments left, an atomic
/// Fragment header (44: offset 0, no more fragments).
fn ext(kind: u8, next: u8) -> Vec<u8> {
    match kind {
        43 => vec![next, 0, 0, 0, 0, 0, 0, 0],
        44 => vec![next, 0, 0, 0, 0, 0, 0x12, 0x67],
        _ => vec![next, 0, 1, 4, 0, 0, 0, 0],
    }
}

/// What the server made of one data segment of a live connection behind an extension chain.
#[derive(Debug)]
struct Outcome {
    rst: bool,
    /// The server acknowledged the five bytes.
    delivered: bool,
    /// Drops counted under an `ipv6:` reason meanwhile.
    counted: u64,
    /// The server's next sequence number, for a segment that follows.
    server_next: u32,
}

fn ipv6_drops(h: &Harness) -> u64 {
    h.counters()
        .drops
        .iter()
        .filter(|(k, _)| k.starts_with("ipv6:"))
        .map(|(_, v)| v)
        .sum()
}

fn segment_behind(h: &mut Harness, port: u16, chain: &[(u8, u8)]) -> Outcome {
    let server_next = open_from_peer(h, port);
    let seg = Tcp::new(port, 9, PEER_ISN + 1)
        .ack(server_next)
        .psh()
        .data(b"hello");
    let mut payload: Vec<u8> = chain.iter().flat_map(|&(k, n)| ext(k, n)).collect();
    payload.extend(seg.segment(PEER_V6.into(), SERVER_V6.into()));
    let before = ipv6_drops(h);
    let mark = h.packet_mark();
    h.inject(Side::Server, &from_peer().packet(chain[0].0, &payload));
    h.run_for(Duration::from_millis(300));
    let out: Vec<_> = h
        .packets_since(mark)
        .iter()
        .filter(|r| r.dir == Direction::Out)
        .filter_map(|r| r.decoded.tcp)
        .filter(|t| t.dst_port == port)
        .collect();
    Outcome {
        rst: out.iter().any(|t| t.flags.rst()),
        delivered: out
            .iter()
            .any(|t| t.flags.ack() && t.ack == PEER_ISN + 1 + 5),
        counted: ipv6_drops(h) - before,
        server_next,
    }
}

/// A data segment of a live connection behind Hop-by-Hop, Destination Options, Routing (type 0, no
/// segments left) and atomic Fragment headers, and chains of them. On main the Hop-by-Hop one
/// missed the 4-tuple demux and the shared set answered with RST (a real peer accepts it: the
/// connection died); the others drew an ICMPv6 parameter problem and were counted nowhere. Now:
/// behind Hop-by-Hop (which smoltcp reads) the data is delivered and acknowledged; behind anything
/// else the segment is dropped and counted with its reason, and the connection lives on (the same
/// bytes sent plainly are acknowledged). Never an RST.
#[test]
fn h_ipv6_extension_headers_never_reset_a_live_connection() {
    let mut h = Harness::builder()
        .serve(ServiceKind::Discard, 9)
        .seed(3)
        .build();
    // (name, the chain as (header, next header) pairs, whether smoltcp can deliver it)
    type Case = (&'static str, &'static [(u8, u8)], bool);
    let cases: [Case; 6] = [
        ("Hop-by-Hop", &[(0, 6)], true),
        ("Destination Options", &[(60, 6)], false),
        ("Routing type 0", &[(43, 6)], false),
        ("atomic Fragment", &[(44, 6)], false),
        (
            "Hop-by-Hop, Destination Options",
            &[(0, 60), (60, 6)],
            false,
        ),
        (
            "Hop-by-Hop, Routing, Fragment",
            &[(0, 43), (43, 44), (44, 6)],
            false,
        ),
    ];
    let mut rows = Vec::new();
    for (i, (name, chain, deliverable)) in cases.iter().enumerate() {
        let port = 41000 + i as u16;
        let o = segment_behind(&mut h, port, chain);
        rows.push(format!(
            "{name}: rst {}, delivered {}, counted {}",
            o.rst, o.delivered, o.counted
        ));
        assert!(!o.rst, "{name}: the server reset a live connection: {o:?}");
        if *deliverable {
            assert!(o.delivered && o.counted == 0, "{name}: {o:?}");
        } else {
            assert!(!o.delivered && o.counted == 1, "{name}: {o:?}");
            // The connection is alive: the same bytes without extension headers get through.
            let mark = h.packet_mark();
            let seg = Tcp::new(port, 9, PEER_ISN + 1)
                .ack(o.server_next)
                .psh()
                .data(b"hello");
            h.inject(Side::Server, &from_peer().tcp(&seg));
            h.run_for(Duration::from_millis(300));
            let acked = h.packets_since(mark).iter().any(|r| {
                r.dir == Direction::Out
                    && r.decoded.tcp.is_some_and(|t| {
                        t.dst_port == port && t.ack == PEER_ISN + 6 && !t.flags.rst()
                    })
            });
            assert!(acked, "{name}: the connection did not survive");
        }
    }
    let drops: Vec<String> = h
        .counters()
        .drops
        .iter()
        .filter(|(k, _)| k.starts_with("ipv6:"))
        .map(|(k, v)| format!("{v} x {k}"))
        .collect();
    eprintln!(
        "FIGURE ipv6 extension headers: {}; drops: {drops:?}",
        rows.join("; ")
    );
}

// ---------------------------------------------------------------------------------------------
// Case 7. Fragmented UDP datagrams.

/// An 8,000-byte UDP echo: the client stack sends it in six IPv4 fragments, the server reassembles
/// it, answers 8,000 bytes in six fragments of its own, and the trace shows every fragment. On main
/// smoltcp had no fragmentation: the datagram was never answered and nothing counted the loss.
#[test]
fn h_udp_echo_of_8000_bytes_in_fragments() {
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .seed(7)
        .build();
    let data: Vec<u8> = (0..8000u32).map(|i| (i * 31 + i / 253) as u8).collect();
    let reply = h.udp_request(7, &data, Duration::from_secs(2));
    let lines = h.packet_lines();
    let fragments = |dir: Direction| {
        h.packets()
            .iter()
            .filter(|r| r.dir == dir && r.decoded.ip.is_some_and(|ip| ip.fragment.is_some()))
            .count()
    };
    let (frags_in, frags_out) = (fragments(Direction::In), fragments(Direction::Out));
    let frag_lines: Vec<&String> = lines.iter().filter(|l| l.contains("fragment")).collect();
    eprintln!(
        "FIGURE udp fragments: 8,000-byte echo: {} bytes back; {frags_in} fragments in, \
         {frags_out} out; {}",
        reply.as_ref().map_or(0, |r| r.len()),
        frag_lines
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    assert_eq!(
        reply.as_deref(),
        Some(&data[..]),
        "the echo came back whole"
    );
    // 8,008 bytes of UDP in fragments of at most 1,480: six each way.
    assert_eq!((frags_in, frags_out), (6, 6), "{lines:#?}");
    assert!(
        frag_lines
            .iter()
            .any(|l| l.contains("fragment 2 of datagram id") && l.contains("offset 1480")),
        "{lines:#?}"
    );
    // The fragment that completes the 8,008-byte datagram (8,000 bytes and the UDP header) says so,
    // each way.
    let whole = lines
        .iter()
        .filter(|l| l.contains("completes the 8008-byte datagram"))
        .count();
    assert_eq!(whole, 2, "{lines:#?}");
    assert!(
        frag_lines.iter().any(|l| l.contains("last fragment")),
        "{lines:#?}"
    );
}

/// The first 1,480 bytes of an 8,008-byte UDP datagram to the echo port that never completes.
fn first_fragment_only(ident: u16) -> Vec<u8> {
    let mut payload = vec![0x5a; 1480];
    payload[..8].copy_from_slice(&[0xc3, 0x50, 0, 7, 0x1f, 0x48, 0, 0]);
    let mut f = Eth::to_server()
        .ipv4(CLIENT_V4, SERVER_V4)
        .ident(ident)
        .may_fragment()
        .packet(17, &payload);
    let mut p = Ipv4Packet::new_checked(&mut f[14..]).expect("a whole IPv4 header");
    p.set_more_frags(true);
    p.fill_checksum();
    f
}

/// 200 first fragments of datagrams that never complete: they take smoltcp's 4 reassembly slots
/// and every other fragment meanwhile is dropped, counted (`ipv4: fragment dropped, every
/// reassembly slot busy`), an 8,000-byte echo included; 5 s later (the reassembly timeout) the
/// slots are free and the echo comes back. Memory stays what the 4 fixed slots cost.
#[test]
fn h_fragment_flood_is_bounded_and_counted() {
    const FLOOD: u16 = 200;
    const BUSY: &str = "ipv4: fragment dropped, every reassembly slot busy";
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .seed(8)
        .build();
    for ident in 0..FLOOD {
        h.inject(Side::Server, &first_fragment_only(ident));
    }
    h.run_for(Duration::from_millis(10));
    let busy = |h: &Harness| h.counters().drops.get(BUSY).copied().unwrap_or(0);
    let flood_drops = busy(&h);
    let data = vec![0x42u8; 8000];
    let during = h.udp_request(7, &data, Duration::from_secs(1));
    let echo_drops = busy(&h) - flood_drops;
    h.run_for(Duration::from_secs(5));
    let after = h.udp_request(7, &data, Duration::from_secs(1));
    eprintln!(
        "FIGURE fragment flood: {FLOOD} unfinished datagrams: {flood_drops} fragments counted as \
         dropped (4 held in the slots); an 8,000-byte echo meanwhile: {} ({echo_drops} of its \
         fragments counted); 5 s later: {} bytes back",
        if during.is_some() { "answered" } else { "lost" },
        after.as_ref().map_or(0, |r| r.len())
    );
    assert_eq!(flood_drops, FLOOD as u64 - 4, "4 slots, the rest counted");
    assert!(during.is_none() && echo_drops >= 6, "{echo_drops}");
    assert_eq!(after.as_deref(), Some(&data[..]), "the slots came back");
}

/// Sends one `size`-byte UDP datagram to each of host:port pairs and prints how many bytes came back
/// from each (0: no answer within 2 s).
const PY_UDP_BIG: &str = r#"
import socket, sys
size = int(sys.argv[1])
data = bytes((i * 31 + i // 253) & 0xff for i in range(size))
out = []
for target in sys.argv[2:]:
    host, port = target.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(data, (host, int(port)))
    try:
        got = s.recvfrom(70000)[0]
        out.append(str(len(got)) if got == data else "differs")
    except socket.timeout:
        out.append("0")
    s.close()
print(" ".join(out))
"#;

/// The same echo end to end: the kernel in the namespace sends 8,000 bytes to the stack's echo
/// port in fragments (tap0's MTU is 1,500), tapstack reassembles and answers; the host side answers
/// the same datagram on 127.0.0.1:10007. With and without the device's offloads.
#[test]
fn tap_udp_echo_of_8000_bytes_like_the_host_side() {
    for extra in [&[][..], &["--no-offload"][..]] {
        let Some(ns) = common::Netns::with_tap("udpfrag") else {
            return;
        };
        let mut args = vec!["serve", "--tap", "tap0", "-q", "--serve", "echo"];
        args.extend_from_slice(extra);
        let ts = ns.tapstack(&args);
        ts.wait_ready();
        let got = ns.python(PY_UDP_BIG, &["8000", "192.168.69.1:7", "127.0.0.1:10007"]);
        eprintln!(
            "FIGURE udp fragments on the TAP {extra:?}: stack, host: {}",
            got.trim()
        );
        assert_eq!(got.trim(), "8000 8000", "{extra:?}");
    }
}
