//! Deterministic replay of the fuzz corpora in plain `cargo test` (no nightly, no libFuzzer): every
//! file under `fuzz/corpus/<target>/` goes through the very function the fuzz target runs
//! (`fuzz/targets_common.rs`, included here). Crashers the fuzzer found live in the same folders, so
//! a regression fails CI.
//!
//! `cargo test --release --test fuzz_replay -- --ignored write_corpus` regenerates the seed files
//! (those named `seed-*`) from real exchanges on the in-process harness and from crafted frames
//! (`fuzz_crafted_frames`, built with `tapstack::frames`).

include!("../fuzz/targets_common.rs");

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

fn replay(target: &str, f: fn(&[u8])) {
    let files = corpus(target);
    assert!(
        files.len() >= 20,
        "{target}: only {} corpus files",
        files.len()
    );
    for (path, data) in &files {
        let r = std::panic::catch_unwind(|| f(data));
        assert!(r.is_ok(), "{target}: {} panicked", path.display());
    }
    eprintln!("{target}: {} corpus files replayed", files.len());
}

#[test]
fn replay_decode_corpus() {
    replay("decode", fuzz_decode);
}

#[test]
fn replay_stack_ingress_corpus() {
    replay("stack_ingress", fuzz_stack_ingress);
}

#[test]
fn replay_http_corpus() {
    replay("http", fuzz_http);
}

#[test]
fn records_round_trip() {
    let recs: Vec<(u8, &[u8])> = vec![(1, b"abc"), (200, b""), (7, &[0u8; 300])];
    let enc = fuzz_encode(&recs);
    assert_eq!(fuzz_records(&enc), recs);
    // Garbage never panics the splitter.
    for n in 0..8 {
        let _ = fuzz_records(&[0xff; 8][..n]);
    }
}

/// Reads the frames of a classic pcap file, in order.
fn pcap_frames(path: &Path) -> Vec<Vec<u8>> {
    let b = std::fs::read(path).unwrap();
    let mut at = 24;
    let mut out = Vec::new();
    while at + 16 <= b.len() {
        let incl = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16;
        out.push(b[at..at + incl].to_vec());
        at += incl;
    }
    out
}

/// Runs `script` on a harness serving `kind` on its port, capturing the server's frames; returns them
/// with their direction (true: into the server).
fn capture(
    kind: ServiceKind,
    seed: u64,
    script: impl FnOnce(&mut tapstack::harness::Harness),
) -> Vec<(bool, Vec<u8>)> {
    let path = std::env::temp_dir().join(format!(
        "tapstack-corpus-{}-{}.pcap",
        std::process::id(),
        kind.name()
    ));
    let trace = TraceConfig {
        pcap: Some(path.clone()),
        ..TraceConfig::silent()
    };
    let mut h = tapstack::harness::Harness::builder()
        .serve(kind, kind.default_port())
        .seed(seed)
        .trace(trace)
        .build();
    script(&mut h);
    let packets = h.packets();
    drop(h);
    let frames = pcap_frames(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(frames.len(), packets.len().min(frames.len()));
    packets
        .iter()
        .zip(frames)
        .map(|(r, f)| (r.dir == Direction::In, f))
        .collect()
}

fn tcp_exchange(h: &mut tapstack::harness::Harness, port: u16, send: &[u8]) {
    let s = h.connect(port).unwrap();
    h.run_until(StdDuration::from_secs(5), |h| h.is_established(s));
    h.send(s, send);
    let mut got = 0;
    h.run_until(StdDuration::from_secs(5), |h| {
        got += h.recv(s).len();
        got >= send.len().max(1)
    });
    h.close(s);
    h.run_until(StdDuration::from_secs(5), |h| {
        h.recv(s);
        h.is_closed(s)
    });
}

#[test]
#[ignore = "writes fuzz/corpus/*/seed-*: run by hand after changing the targets"]
fn write_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let write = |target: &str, name: String, data: Vec<u8>| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    };
    type Frames = Vec<(bool, Vec<u8>)>;
    let mut sessions: Vec<(String, Frames)> = Vec::new();
    for (i, kind) in ServiceKind::ALL.into_iter().enumerate() {
        let port = kind.default_port();
        let payload: &[u8] = if kind == ServiceKind::Http {
            b"GET /netstat.json HTTP/1.1\r\nHost: x\r\n\r\n"
        } else {
            b"hello, fuzzer\r\n"
        };
        let frames = capture(kind, 1, |h| {
            tcp_exchange(h, port, payload);
            if kind != ServiceKind::Http {
                let _ = h.udp_request(port, b"udp hello", StdDuration::from_secs(1));
            }
        });
        sessions.push((format!("{i}-{}", kind.name()), frames));
    }
    // Both directions into the decoder, one file per frame kind and one per session.
    let mut n = 0;
    for (name, frames) in &sessions {
        let recs: Vec<(u8, &[u8])> = frames
            .iter()
            .map(|(inb, f)| (if *inb { 2 } else { 3 }, f.as_slice()))
            .collect();
        write("decode", format!("session-{name}"), fuzz_encode(&recs));
        for (inb, f) in frames.iter().take(6) {
            write("decode", format!("frame-{n:03}"), f.clone());
            let _ = inb;
            n += 1;
        }
        // The client's side of each session, into the stack (same seed as the harness server).
        let inbound: Vec<(u8, &[u8])> = frames
            .iter()
            .filter(|(inb, _)| *inb)
            .map(|(_, f)| (1u8, f.as_slice()))
            .collect();
        write(
            "stack_ingress",
            format!("session-{name}"),
            fuzz_encode(&inbound),
        );
        // Each inbound frame alone, and the session with a long pause (timers) at the end.
        for (k, (_, f)) in inbound.iter().enumerate().take(3) {
            write(
                "stack_ingress",
                format!("frame-{name}-{k}"),
                fuzz_encode(&[(1, f)]),
            );
        }
        let mut paused = inbound.clone();
        if let Some(last) = paused.last_mut() {
            last.0 = 255;
        }
        write(
            "stack_ingress",
            format!("paused-{name}"),
            fuzz_encode(&paused),
        );
    }
    // Frames no harness exchange produces: one file each, into the decoder and into the stack.
    for (name, f) in fuzz_crafted_frames() {
        write("decode", format!("crafted-{name}"), f.clone());
        write(
            "stack_ingress",
            format!("crafted-{name}"),
            fuzz_encode(&[(1, &f)]),
        );
    }
    let requests: [&[u8]; 14] = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /netstat.json HTTP/1.1\r\n\r\n",
        b"HEAD /bytes/100 HTTP/1.1\r\nRange: bytes=5-9\r\n\r\n",
        b"GET /bytes/1000 HTTP/1.1\r\nRange: bytes=-10\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /x HTTP/1.0\r\n\r\n",
        b"DELETE / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"\r\n\r\nGET /bytes/99999999999 HTTP/1.1\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    ];
    for (i, r) in requests.iter().enumerate() {
        write("http", format!("req-{i:02}"), fuzz_encode(&[(60, r)]));
        // One byte at a time (slowloris), output one byte at a time.
        let bytes: Vec<(u8, &[u8])> = r.chunks(1).map(|c| (0u8, c)).collect();
        write("http", format!("bytewise-{i:02}"), fuzz_encode(&bytes));
        // Split in two, then FIN.
        let (a, b) = r.split_at(r.len() / 2);
        write(
            "http",
            format!("split-fin-{i:02}"),
            fuzz_encode(&[(10, a), (0x80 | 20, b)]),
        );
    }
    let big = vec![b'A'; 9000];
    write("http", "head-too-big".into(), fuzz_encode(&[(60, &big)]));
    write(
        "http",
        "idle-timeout".into(),
        fuzz_encode(&[(60, b"GET / HT"), (0x7f, b"")]),
    );
}

/// The crafted seeds are what their names say: each malformed one trips exactly the decoder's check
/// for it (the reasons the stack counts its drops under), the others decode clean.
#[test]
fn crafted_seeds_are_what_they_say() {
    let expect = |name: &str| -> Option<&str> {
        Some(match name {
            "ipv4-bad-checksum" => "bad IPv4 checksum",
            "ipv4-ihl-below-5" => "IPv4 header length below 20 bytes",
            "ipv4-ihl-past-frame" => "IPv4 header length beyond frame",
            "ipv4-total-past-frame" => "IPv4 total length beyond frame",
            "ipv4-total-below-header" => "IPv4 total length shorter than header",
            "tcp-bad-checksum" => "bad TCP checksum",
            "tcp-offset-below-5" => "TCP data offset below 5",
            "tcp-offset-past-segment" => "TCP data offset beyond packet",
            "tcp-syn-fin" => "impossible TCP flags SYN+FIN",
            "tcp-syn-rst" => "impossible TCP flags SYN+RST",
            "tcp-fin-rst" => "impossible TCP flags FIN+RST",
            "tcp-port-0" => "TCP port 0",
            "tcp-option-length-0" => "TCP option length 0",
            "tcp-option-overrun" => "TCP option overruns header",
            "udp-bad-checksum" => "bad UDP checksum",
            "udp-length-below-8" => "UDP length below 8",
            "ipv6-payload-past-frame" => "IPv6 payload length beyond frame",
            _ => return None,
        })
    };
    let frames = fuzz_crafted_frames();
    assert!(frames.len() >= 20);
    for (name, f) in frames {
        let d = tapstack::trace::decode(&f);
        assert_eq!(d.problem(), expect(name), "{name}");
    }
}
