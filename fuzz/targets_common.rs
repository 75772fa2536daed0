// The bodies of the fuzz targets, shared by the cargo-fuzz crate (`fuzz/fuzz_targets/*.rs`) and the
// deterministic corpus replay that runs in plain `cargo test` (`tests/fuzz_replay.rs`): both
// `include!` this file, so CI replays exactly what the fuzzer ran, on the stable toolchain.
//
// Every target must never panic, whatever the bytes; each checks a few invariants of its own too.

#[allow(unused_imports)]
use smoltcp::time::{Duration as SmolDuration, Instant as SmolInstant};
#[allow(unused_imports)]
use std::time::{Duration as StdDuration, UNIX_EPOCH};
#[allow(unused_imports)]
use tapstack::internals::{FrameIo, Nic, Observer};
use tapstack::Direction;
#[allow(unused_imports)]
use tapstack::internals::{Context, StreamSession};
use tapstack::{ServiceKind, Settings};
#[allow(unused_imports)]
use tapstack::internals::{Stack, StackConfig};
#[allow(unused_imports)]
use tapstack::internals::Status;
#[allow(unused_imports)]
use tapstack::internals::Tracer;
use tapstack::trace::TraceConfig;

/// Splits fuzz input into records: `[u8 tag][u16 le length][bytes]`, repeated; a short tail is the
/// last record. The tag is the target's to interpret (a time step, a direction, a split size).
pub fn fuzz_records(mut data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while !data.is_empty() && out.len() < 256 {
        let tag = data[0];
        data = &data[1..];
        let len = match data {
            [a, b, ..] => u16::from_le_bytes([*a, *b]) as usize,
            _ => data.len(),
        };
        data = data.get(2..).unwrap_or(&[]);
        let n = len.min(data.len());
        out.push((tag, &data[..n]));
        data = &data[n..];
    }
    out
}

/// Encodes records in the format [`fuzz_records`] reads (for corpus files).
pub fn fuzz_encode(records: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, b) in records {
        out.push(*tag);
        out.extend_from_slice(&(b.len() as u16).to_le_bytes());
        out.extend_from_slice(b);
    }
    out
}

/// Target `decode`: the packet decoder on the whole input, then the Tracer as the port's Observer over
/// each record as a frame (tag bit 0: direction, bit 1: reported as dropped; the tag also advances
/// the clock), with packet lines rendered for every record kept.
pub fn fuzz_decode(data: &[u8]) {
    let d = tapstack::trace::decode(data);
    assert_eq!(d.len, data.len());
    let _ = d.problem();
    let mut tracer = Tracer::new(TraceConfig::silent(), UNIX_EPOCH).expect("silent tracer");
    let mut now = SmolInstant::ZERO;
    for (tag, frame) in fuzz_records(data) {
        now += SmolDuration::from_millis(tag as u64 * 7);
        let dir = if tag & 1 == 0 {
            Direction::In
        } else {
            Direction::Out
        };
        let d = tapstack::trace::decode(frame);
        assert_eq!(d.len, frame.len());
        if tag & 2 != 0 {
            tracer.dropped(now, dir, frame, "fuzz: dropped");
        } else {
            tracer.frame(now, dir, frame);
        }
    }
    for rec in tracer.recent_packets(0) {
        let _ = tracer.packet_line(rec);
        let _ = rec.summary(true);
    }
    let mut c = tapstack::Counters::default();
    tracer.merge_into(&mut c);
    assert!(tracer.flow_count() <= 65536);
}

/// Crafted frames for the seed corpora, from the crate's one set of frame builders
/// (`tapstack::frames`): the malformed kinds the TAP test sends, and a few well-formed rarities, so
/// that the fuzzer starts at every drop path of the decoder and the stack.
pub fn fuzz_crafted_frames() -> Vec<(&'static str, Vec<u8>)> {
    use tapstack::frames::*;
    use tapstack::trace::TcpFlags;
    let v4 = || Eth::to_server().ipv4(CLIENT_V4, SERVER_V4);
    let v6 = || Eth::to_server().ipv6(CLIENT_V6, SERVER_V6);
    let syn = |port: u16| Tcp::new(port, 7, 1000).syn().mss(1460);
    vec![
        (
            "ipv4-bad-checksum",
            v4().bad_checksum().udp(&Udp::new(2000, 9, b"abc")),
        ),
        (
            "ipv4-ihl-below-5",
            v4().header_words(4).packet(PROTO_UDP, &[0; 8]),
        ),
        (
            "ipv4-ihl-past-frame",
            v4().header_words(12).packet(PROTO_UDP, &[0; 8]),
        ),
        (
            "ipv4-total-past-frame",
            v4().total_len(200).udp(&Udp::new(1, 9, b"abc")),
        ),
        (
            "ipv4-total-below-header",
            v4().total_len(12).udp(&Udp::new(1, 9, b"abc")),
        ),
        ("tcp-bad-checksum", syn(40000).bad_checksum().to_server()),
        (
            "tcp-offset-below-5",
            Tcp::new(41000, 7, 1).data_offset(3).to_server(),
        ),
        (
            "tcp-offset-past-segment",
            Tcp::new(42000, 7, 1).data_offset(12).to_server(),
        ),
        ("tcp-syn-fin", syn(43000).fin().to_server()),
        ("tcp-syn-rst", syn(43100).rst().to_server()),
        (
            "tcp-fin-rst",
            Tcp::new(43200, 7, 1)
                .flags(TcpFlags::FIN | TcpFlags::RST)
                .ack(1)
                .to_server(),
        ),
        ("tcp-port-0", syn(0).to_server()),
        (
            "tcp-option-length-0",
            Tcp::new(44000, 7, 1)
                .syn()
                .option_bytes(&[2, 0, 5, 180])
                .to_server(),
        ),
        (
            "tcp-option-overrun",
            Tcp::new(44200, 7, 1)
                .syn()
                .option_bytes(&[3, 30, 7, 1])
                .to_server(),
        ),
        (
            "tcp-syn-every-option",
            syn(45000)
                .wscale(14)
                .sack_permitted()
                .timestamp(1, 0)
                .to_server(),
        ),
        ("tcp-syn-v6", v6().tcp(&syn(45100))),
        (
            "udp-bad-checksum",
            Udp::new(3000, 7, b"abc").bad_checksum().to_server(),
        ),
        (
            "udp-length-below-8",
            Udp::new(1, 9, b"abc").length(4).to_server(),
        ),
        (
            "ipv6-payload-past-frame",
            v6().payload_len(100).udp(&Udp::new(1, 7, b"x")),
        ),
        (
            "arp-request",
            Eth::new(CLIENT_MAC, BROADCAST_MAC)
                .arp(&Arp::request(CLIENT_MAC, CLIENT_V4, SERVER_V4)),
        ),
    ]
}

/// The server stack of the harness (same MAC, addresses and seed), on one end of an in-memory wire;
/// returns it with the other end, where the fuzzer's frames go in.
pub fn fuzz_server_stack(seed: u64) -> (Stack<Tracer>, tapstack::internals::WireEnd) {
    let (a, b) = tapstack::internals::wire();
    let tracer = Tracer::new(TraceConfig::silent(), UNIX_EPOCH).expect("silent tracer");
    let port = Nic::new(Box::new(a) as Box<dyn FrameIo>, tracer);
    let cfg = StackConfig {
        mac: tapstack::internals::parse_mac("02:00:00:00:00:01").expect("constant MAC"),
        addrs: tapstack::internals::SERVER_ADDRS
            .iter()
            .map(|c| tapstack::internals::parse_cidr(c).expect("constant CIDR"))
            .collect(),
        gateway_v4: None,
        gateway_v6: None,
        random_seed: seed,
        max_connections: 16,
        tcp_buffer: 4096,
    };
    let mut stack = Stack::new(&cfg, port, SmolInstant::ZERO);
    for kind in ServiceKind::ALL {
        stack.serve_tcp(kind, kind.default_port());
        stack.serve_udp(kind, kind.default_port());
    }
    (stack, b)
}

/// Target `stack_ingress`: each record is a frame sent into the stack over the wire; its tag is the
/// time that passes before the next turn (tag * 10 ms; 255: jump 70 s, for the timers). Each turn
/// runs ingress, the services and egress as the reactor does, and drains what the stack sent.
pub fn fuzz_stack_ingress(data: &[u8]) {
    let (mut stack, mut peer) = fuzz_server_stack(1);
    let settings = Settings {
        idle_timeout: SmolDuration::from_secs(5),
        ..Settings::default()
    };
    let mut status = Status::default();
    let mut now = SmolInstant::ZERO;
    let mut buf = vec![0u8; 2048];
    let turn = |stack: &mut Stack<Tracer>, now: SmolInstant, status: &mut Status| {
        for _ in 0..4 {
            let wall = UNIX_EPOCH + StdDuration::from_secs(1_704_067_200);
            stack.serve_turn(now, wall, 64, status, &settings);
        }
        assert!(stack.connection_count() <= 16, "max-connections exceeded");
    };
    for (tag, frame) in fuzz_records(data) {
        let _ = peer.send(frame);
        turn(&mut stack, now, &mut status);
        while let Ok(Some(_)) = peer.recv(&mut buf) {}
        now += if tag == 255 {
            SmolDuration::from_secs(70)
        } else {
            SmolDuration::from_millis(tag as u64 * 10)
        };
    }
    // Let every timer run out.
    for _ in 0..8 {
        turn(&mut stack, now, &mut status);
        while let Ok(Some(_)) = peer.recv(&mut buf) {}
        match stack.poll_at(now) {
            Some(t) if t > now => now = t,
            _ => now += SmolDuration::from_millis(500),
        }
    }
    let _ = stack.socket_count();
}

/// Target `http`: the HTTP session as a transport drives it. Each record's bytes are offered as
/// input (what is not consumed stays and is offered again, as the TCP receive buffer would); the tag
/// picks the output buffer size (tag % 61 + 1 bytes) and, with bit 7, ends the input (FIN); tag
/// 0x7f lets the idle timeout fire.
pub fn fuzz_http(data: &[u8]) {
    let settings = Settings::default();
    let status = Status::default();
    let mut now = SmolInstant::ZERO;
    let cx_at = |now: SmolInstant| Context {
        now,
        wall: UNIX_EPOCH + StdDuration::from_secs(1_704_067_200),
        status: &status,
        settings: &settings,
        trace: None,
    };
    let mut s = tapstack::internals::HttpSession::new(&cx_at(now));
    let mut pending: Vec<u8> = Vec::new();
    let mut out = vec![0u8; 64];
    let mut total_out = 0usize;
    let mut eof = false;
    for (tag, bytes) in fuzz_records(data) {
        now += SmolDuration::from_millis(3);
        let cx = cx_at(now);
        if !eof {
            pending.extend_from_slice(bytes);
        }
        // The transport's receive buffer is bounded: so is what waits here.
        pending.truncate(64 * 1024);
        let chunk = (tag % 61) as usize + 1;
        for _ in 0..64 {
            let used = s.handle_input(&cx, &pending);
            assert!(used <= pending.len(), "consumed more than offered");
            pending.drain(..used);
            let n = s.poll_output(&cx, &mut out[..chunk]);
            assert!(n <= chunk, "wrote past the buffer");
            total_out += n;
            assert!(
                s.pending()
                    <= tapstack::internals::MAX_BODY as usize
                        + tapstack::internals::PENDING_CAP
                        + 16 * 1024,
                "queued output past its cap: {}",
                s.pending()
            );
            if used == 0 && n == 0 {
                break;
            }
        }
        if tag & 0x80 != 0 && !eof {
            eof = true;
            s.handle_eof(&cx);
        }
        if tag == 0x7f {
            if let Some(t) = s.poll_timeout() {
                now = now.max(t);
                s.handle_timeout(&cx_at(now));
            }
        }
        if s.is_finished() {
            break;
        }
    }
    // Drain (bounded: generated bodies can be large).
    let cx = cx_at(now);
    for _ in 0..4096 {
        if s.poll_output(&cx, &mut out) == 0 {
            break;
        }
    }
    let _ = total_out;
}
