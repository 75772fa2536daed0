//! No root needed: the demo on the virtual wire, its determinism, and the client modes (`connect`,
//! `get`) over a TAP device against kernel-side servers that this project did not write.

mod common;
use common::*;
use std::process::Stdio;
use std::time::Duration;

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tapstack-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the demo with `args` inside `ns` (its host sockets then live on the namespace's loopback).
fn demo(ns: &Netns, args: &[&str]) -> (Option<i32>, String, String) {
    let (code, out, err) = demo_bytes(ns, args);
    (code, String::from_utf8_lossy(&out).into_owned(), err)
}

fn demo_bytes(ns: &Netns, args: &[&str]) -> (Option<i32>, Vec<u8>, String) {
    let out = ns
        .cmd(tapstack_bin().to_str().unwrap())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn packet_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(" packet ")).collect()
}

#[test]
fn same_seed_twice_gives_identical_packets_and_pcap() {
    let Some(ns) = Netns::new("det") else { return };
    let dir = tmpdir("det");
    let (a, b) = (dir.join("a.pcap"), dir.join("b.pcap"));
    let (ca, _, ea) = demo(
        &ns,
        &[
            "demo",
            "--exit",
            "--seed",
            "5",
            "--pcap",
            a.to_str().unwrap(),
        ],
    );
    let (cb, _, eb) = demo(
        &ns,
        &[
            "demo",
            "--exit",
            "--seed",
            "5",
            "--pcap",
            b.to_str().unwrap(),
        ],
    );
    assert_eq!((ca, cb), (Some(0), Some(0)), "{ea}");
    let (la, lb) = (packet_lines(&ea), packet_lines(&eb));
    assert!(la.len() > 50, "{ea}");
    assert_eq!(la, lb, "packet lines must replay exactly");
    let (pa, pb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(pa.len() > 1000);
    assert_eq!(pa, pb, "pcap files must be byte-identical");
    // A different seed gives different initial sequence numbers, visible with -v.
    let (_, _, ec) = demo(&ns, &["-v", "demo", "--exit", "--seed", "6"]);
    let (_, _, ed) = demo(&ns, &["-v", "demo", "--exit", "--seed", "5"]);
    assert_ne!(packet_lines(&ec), packet_lines(&ed));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tour_completes_under_twenty_percent_loss_and_narrates_retransmissions() {
    let Some(ns) = Netns::new("loss") else { return };
    let (code, _, err) = demo(
        &ns,
        &["demo", "--exit", "--seed", "3", "--drop-chance", "0.2"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("retransmission"), "{err}");
    assert!(err.contains("DROPPED") || err.contains("dropped"), "{err}");
    assert!(!err.contains("FAIL"), "{err}");
    let oks = err.lines().filter(|l| l.contains(" ok  ")).count();
    assert_eq!(oks, 9, "every step of the tour: {err}");
}

#[test]
fn demo_runs_as_an_unprivileged_user_and_shows_the_handshake() {
    let Some(ns) = Netns::new("unpriv") else {
        return;
    };
    if !is_root() {
        // Already unprivileged: run it directly.
        let (code, _, err) = demo(&ns, &["--exit"]);
        assert_eq!(code, Some(0), "{err}");
        return;
    }
    let out = ns
        .cmd("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(tapstack_bin())
        .arg("--exit")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lines = packet_lines(&err);
    let h1 = lines
        .iter()
        .position(|l| l.contains("handshake 1/3"))
        .expect("SYN line");
    assert!(
        lines[h1 + 1].contains("handshake 2/3")
            || lines.iter().skip(h1).any(|l| l.contains("handshake 2/3"))
    );
    assert!(err.contains("ARP who-has 192.168.69.1"), "{err}");
    assert!(err.contains("== tour summary =="), "{err}");
    assert!(err.contains("HTTP/1.1 200 OK"), "{err}");
}

#[test]
fn demo_connect_and_get_replace_the_tour() {
    let Some(ns) = Netns::new("dcg") else { return };
    let (code, out, err) = demo(
        &ns,
        &[
            "demo",
            "--connect",
            "192.168.69.1:7",
            "--send",
            "over the wire",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "over the wire");
    assert!(!err.contains("tour summary"));
    let (code, out, err) = demo_bytes(&ns, &["demo", "--get", "http://192.168.69.1/bytes/5000"]);
    assert_eq!(code, Some(0), "{err}");
    let want: Vec<u8> = (0..5000u64)
        .map(tapstack::internals::bytes_pattern)
        .collect();
    assert!(
        out == want,
        "the body must be the /bytes pattern ({} bytes)",
        out.len()
    );
    assert!(
        err.contains("HTTP/1.1 200 OK") && err.contains("Content-Length: 5000"),
        "{err}"
    );
    let (code, _, err) = demo(&ns, &["demo", "--get", "http://192.168.69.1/nope"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("HTTP 404"), "{err}");
    let (code, _, err) = demo(
        &ns,
        &["demo", "--connect", "192.168.69.1:9999", "--send", "x"],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("refused"), "{err}");
}

#[test]
fn demo_without_exit_keeps_serving_on_host_sockets_and_stdin_exit_ends_it() {
    let Some(ns) = Netns::new("serveon") else {
        return;
    };
    let mut ts = ns.tapstack(&["demo", "--serve", "echo", "--stdin-exit", "-q"]);
    ts.wait_ready();
    assert!(
        ts.wait_for("the tour is over", Duration::from_secs(20))
            .is_some(),
        "{}",
        ts.stderr_text()
    );
    assert_eq!(
        ns.python(PY_UDP, &["127.0.0.1", "10007", "still here"]),
        "still here"
    );
    let echo = ns.python(PY_ECHO_BULK, &["127.0.0.1", "10007", "10000"]);
    assert!(echo.starts_with("OK "), "{echo}");
    ts.close_stdin();
    assert_eq!(
        ts.wait_exit(Duration::from_secs(5)),
        Some(0),
        "{}",
        ts.stderr_text()
    );
    assert!(ts.stderr_text().contains("standard input closed"));
}

/// A kernel-side echo server and HTTP servers in the namespace, at 192.168.69.100.
const PY_SERVERS: &str = r#"
import socket, threading, http.server, socketserver, sys, os
os.chdir(sys.argv[1])
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            b = self.request.recv(65536)
            if not b: break
            self.request.sendall(b)
class Chunked(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/moved":
            self.send_response(301); self.send_header("Location", "http://192.168.69.100:8001/chunked"); self.send_header("Content-Length", "0"); self.end_headers(); return
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        for part in [b"first chunk, ", b"second chunk, ", b"x" * 5000, b" the end"]:
            self.wfile.write(b"%x\r\n" % len(part) + part + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
socketserver.ThreadingTCPServer.allow_reuse_address = True
servers = [
    socketserver.ThreadingTCPServer(("192.168.69.100", 7007), Echo),
    socketserver.ThreadingTCPServer(("192.168.69.100", 8000), Quiet),
    socketserver.ThreadingTCPServer(("192.168.69.100", 8001), Chunked),
]
for s in servers:
    threading.Thread(target=s.serve_forever, daemon=True).start()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("192.168.69.100", 7007))
def udp_echo():
    while True:
        d, a = udp.recvfrom(65536)
        udp.sendto(d, a)
threading.Thread(target=udp_echo, daemon=True).start()
print("serving", flush=True)
sys.stdin.read()
"#;

#[test]
fn connect_and_get_over_the_tap_against_kernel_servers() {
    let Some(ns) = Netns::with_tap("client") else {
        return;
    };
    let dir = tmpdir("www");
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.join("file.bin"), &body).unwrap();
    let mut servers = ns
        .cmd("python3")
        .args(["-c", PY_SERVERS, dir.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(servers.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "serving");
    let bin = tapstack_bin();
    let run = |args: &[&str], stdin: &[u8]| {
        let mut c = ns.cmd(bin.to_str().unwrap());
        c.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut input, &data);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        (
            out.status.code(),
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // connect --send
    let (code, out, err) = run(
        &[
            "-q",
            "connect",
            "192.168.69.100:7007",
            "--send",
            "hello kernel",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"hello kernel");
    assert!(err.is_empty() || !err.contains("panicked"), "{err}");
    // connect with 200 KB from standard input, echoed back exactly.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 256) as u8).collect();
    let (code, out, err) = run(&["-q", "connect", "192.168.69.100:7007"], &big);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.len(), big.len(), "{err}");
    assert!(
        out == big,
        "echo through the userspace client must be byte-exact"
    );
    // UDP
    let (code, out, err) = run(
        &[
            "-q",
            "connect",
            "--udp",
            "192.168.69.100:7007",
            "--send",
            "dgram",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, b"dgram");
    // Refused: nothing listens on 7999.
    let (code, _, err) = run(
        &["-q", "connect", "192.168.69.100:7999", "--send", "x"],
        b"",
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("refused") && err.contains("192.168.69.100:7999"),
        "{err}"
    );
    // get: a static file from python's http.server, Content-Length body.
    let (code, out, err) = run(&["-q", "get", "http://192.168.69.100:8000/file.bin"], b"");
    assert_eq!(code, Some(0), "{err}");
    assert!(out == body, "body must be byte-exact ({} bytes)", out.len());
    assert!(err.contains("200 OK"), "{err}");
    // get: chunked body
    let (code, out, err) = run(&["-q", "get", "http://192.168.69.100:8001/chunked"], b"");
    assert_eq!(code, Some(0), "{err}");
    let want = [
        b"first chunk, ".to_vec(),
        b"second chunk, ".to_vec(),
        vec![b'x'; 5000],
        b" the end".to_vec(),
    ]
    .concat();
    assert!(out == want, "chunked body must be reassembled");
    assert!(err.contains("Transfer-Encoding: chunked"), "{err}");
    // A redirect is reported, not followed.
    let (code, out, err) = run(&["-q", "get", "http://192.168.69.100:8001/moved"], b"");
    assert_eq!(code, Some(1), "{err}");
    assert!(out.is_empty());
    assert!(
        err.contains("301")
            && err.contains("http://192.168.69.100:8001/chunked")
            && err.contains("not followed"),
        "{err}"
    );
    // 404 from python: exit 1.
    let (code, _, err) = run(&["-q", "get", "http://192.168.69.100:8000/missing"], b"");
    assert_eq!(code, Some(1), "{err}");
    // Usage: a host name is refused up front.
    let (code, _, err) = run(&["get", "http://example.com/"], b"");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no DNS"), "{err}");
    // With packet lines on, the client's own handshake is shown (SYN out from the userspace stack).
    let (code, _, err) = run(&["connect", "192.168.69.100:7007", "--send", "hi"], b"");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("out tap0") && err.contains("handshake 1/3"),
        "{err}"
    );
    drop(servers.stdin.take());
    let _ = servers.kill();
    let _ = servers.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
