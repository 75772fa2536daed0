//! The classic services end to end, with real clients this project did not write: python3's socket
//! module (the way a textbook client talks to each RFC service), curl for HTTP, `nc -u` for UDP.
//!
//! Every check runs against the userspace stack over the TAP device (192.168.69.1, and fdaa::1 where
//! cheap) and against the host sockets (127.0.0.1, port + 10000), each test in its own fresh network
//! namespace with its own tapstack.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

const STACK4: &str = "192.168.69.1";
const STACK6: &str = "fdaa::1";
const HOST: &str = "127.0.0.1";

/// Every place a service listens: (address, offset added to the service port).
const TARGETS: [(&str, u16); 3] = [(STACK4, 0), (STACK6, 0), (HOST, 10000)];

const QOTD: &str = "Simplicity is prerequisite for reliability. -- E. W. Dijkstra";

/// Starts `tapstack serve --tap tap0 ARGS` in a fresh namespace and waits for its ready line.
fn start(tag: &str, args: &[&str]) -> Option<(Netns, Tapstack, String)> {
    let ns = Netns::with_tap(tag)?;
    let mut all = vec!["serve", "--tap", "tap0", "-q"];
    all.extend_from_slice(args);
    let ts = ns.tapstack(&all);
    let ready = ts.wait_ready();
    Some((ns, ts, ready))
}

/// `http://ADDR:PORT` for a target, with brackets for IPv6.
fn base_url(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("http://[{addr}]:{port}")
    } else {
        format!("http://{addr}:{port}")
    }
}

/// Byte `i` of every `/bytes/N` body.
fn pattern(first: u64, len: u64) -> Vec<u8> {
    (first..first + len).map(|i| (i % 251) as u8).collect()
}

/// One HTTP response as curl printed it with `-i`.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits curl's `-i` output into responses (interim 1xx ones skipped). `head_only` for `-I`.
/// Every final response must carry `Date`, `Server` and a `Content-Length` that matches its body.
fn parse_responses(mut out: &[u8], head_only: bool) -> Vec<Resp> {
    let mut resps = Vec::new();
    while !out.is_empty() {
        let end = find(out, b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(out)));
        let head = std::str::from_utf8(&out[..end]).expect("ASCII head");
        out = &out[end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status: u16 = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l
                    .split_once(':')
                    .unwrap_or_else(|| panic!("bad header {l:?}"));
                (n.trim().to_string(), v.trim().to_string())
            })
            .collect();
        if (100..200).contains(&status) {
            continue;
        }
        let mut r = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        let date = r
            .header("date")
            .unwrap_or_else(|| panic!("no Date: {head}"));
        assert!(
            date.len() == 29 && date.ends_with(" GMT") && date.as_bytes()[3] == b',',
            "{date}"
        );
        assert!(
            r.header("server")
                .is_some_and(|s| s.starts_with("tapstack/")),
            "{head}"
        );
        let len: usize = r
            .header("content-length")
            .unwrap_or_else(|| panic!("no Content-Length: {head}"))
            .parse()
            .unwrap();
        if !head_only {
            assert!(
                out.len() >= len,
                "body shorter than Content-Length {len}: {head}"
            );
            r.body = out[..len].to_vec();
            out = &out[len..];
        }
        resps.push(r);
    }
    resps
}

/// `curl -sS -i --max-time 10 ARGS` inside the namespace, left running.
fn curl_spawn(ns: &Netns, args: &[&str]) -> Child {
    ns.cmd("curl")
        .args(["-sS", "-i", "--max-time", "10"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run curl")
}

fn curl_done(child: Child, what: &str) -> (Vec<Resp>, String) {
    let out: Output = child.wait_with_output().expect("wait for curl");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "curl {what} failed: {err}");
    let head_only = what.split_whitespace().any(|a| a == "-I");
    (parse_responses(&out.stdout, head_only), err)
}

/// Runs curl with `args`; returns the responses and curl's standard error.
fn curl(ns: &Netns, args: &[&str]) -> (Vec<Resp>, String) {
    curl_done(curl_spawn(ns, args), &args.join(" "))
}

/// Runs curl for exactly one response.
fn curl1(ns: &Netns, args: &[&str]) -> Resp {
    let (mut rs, err) = curl(ns, args);
    assert_eq!(rs.len(), 1, "{args:?}: {err}");
    rs.remove(0)
}

/// A per-test scratch directory, removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(ns: &Netns) -> Scratch {
        let p = std::env::temp_dir().join(format!("{}-files", ns.name));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `/netstat.json` (at most 5 s) until the only live connection is the poll's own and every
/// accepted connection was closed: no session outlives its client. argv: host, port. Prints "settled".
const PY_SETTLED: &str = r##"
import http.client, json, sys, time
host, port = sys.argv[1], int(sys.argv[2])
mine = "host" if host.startswith("127.") else "stack"
other = "stack" if mine == "host" else "host"
for attempt in range(20):
    c = http.client.HTTPConnection(host, port, timeout=5)
    c.request("GET", "/netstat.json", headers={"Connection": "close"})
    js = json.loads(c.getresponse().read())
    c.close()
    # Connections in TIME-WAIT (the stack closed first) have no session left; they end 2 x MSL later.
    tw = {side: sum(1 for c in js["connections"] if c["stack"] == side and c["state"] == "TIME-WAIT")
          for side in (mine, other)}
    conns = [c for c in js["connections"] if c["state"] != "TIME-WAIT"]
    k = js["counters"]
    still = {side: k[side]["conns_accepted"] - k[side]["conns_closed"] - tw[side] for side in (mine, other)}
    if len(conns) == 1 and conns[0]["service"] == "http" and still == {mine: 1, other: 0}:
        print("settled")
        break
    time.sleep(0.25)
else:
    print("not settled:", json.dumps(conns), json.dumps(k))
"##;

/// Asserts that all connections are gone, asking the http service on the stack at `port`.
fn assert_settled(ns: &Netns, port: u16) {
    let out = ns.python(PY_SETTLED, &[STACK4, &port.to_string()]);
    assert_eq!(out.trim(), "settled");
}

// ---------------------------------------------------------------------------------------------------
// 1. RFC services over TCP, textbook python clients

/// python3 clients for echo, discard, daytime, qotd, chargen and time over TCP. argv: host, port
/// offset, the expected qotd message. Prints "OK".
const PY_RFC_TCP: &str = r##"
import datetime, socket, struct, sys, time
host, off, message = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()

def conn(port):
    return socket.create_connection((host, port + off), timeout=10)

def read_to_eof(s, limit=1 << 20):
    data = b""
    while len(data) <= limit:
        b = s.recv(65536)
        if not b:
            return data
        data += b
    raise AssertionError(f"no EOF after {len(data)} bytes")

def chargen_ref(i):
    line, col = divmod(i, 74)
    return 13 if col == 72 else 10 if col == 73 else 32 + (line + col) % 95

# daytime (RFC 867): one line, then the server closes.
before = datetime.datetime.now(datetime.timezone.utc)
s = conn(13)
line = read_to_eof(s)
s.close()
now = datetime.datetime.now(datetime.timezone.utc)
assert line.endswith(b"\r\n") and line.count(b"\n") == 1, line
text = line[:-2].decode("ascii")
assert any(f"{d:%B} " in text and f", {d.year} " in text for d in (before, now)), f"not this month: {text}"
t = datetime.datetime.strptime(text, "%A, %B %d, %Y %H:%M:%S-UTC").replace(tzinfo=datetime.timezone.utc)
assert abs((now - t).total_seconds()) < 5, (text, now)
assert text.split(",")[0] == t.strftime("%A"), f"wrong weekday: {text}"

# qotd (RFC 865): exactly the message, then EOF.
s = conn(17)
got = read_to_eof(s)
s.close()
assert got == message, (got, message)

# time (RFC 868): 4 bytes, seconds since 1900, then EOF.
s = conn(37)
got = read_to_eof(s)
s.close()
assert len(got) == 4, got
secs = struct.unpack(">I", got)[0] - 2208988800
assert abs(secs - time.time()) <= 5, (secs, time.time())

# chargen (RFC 864): read ~10 KB of the rotating pattern, then hang up.
s = conn(19)
data = b""
while len(data) < 10_000:
    b = s.recv(65536)
    assert b, f"chargen closed after {len(data)} bytes"
    data += b
s.close()
lines = data[:74 * 135].split(b"\r\n")
assert lines[0] == b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg", lines[0]
assert lines[1] == b"!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh", lines[1]
assert lines[94] == b"~ !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdef", lines[94]
assert lines[95] == lines[0] and lines[96] == lines[1], "period of 95 lines"
for l in lines[:130]:
    assert len(l) == 72 and all(32 <= c < 127 for c in l), l
bad = [i for i in range(len(data)) if data[i] != chargen_ref(i)]
assert not bad, f"chargen byte {bad[0]} wrong"

# chargen, politely: half-close, the server stops and closes (bounded drain).
s = conn(19)
first = s.recv(100)
assert first and first == bytes(chargen_ref(i) for i in range(len(first))), first
s.shutdown(socket.SHUT_WR)
rest = read_to_eof(s, limit=8 << 20)
s.close()

# discard (RFC 863): 1 MiB in, nothing out; half-close, the server closes.
s = conn(9)
s.sendall(bytes(range(256)) * 4096)
s.shutdown(socket.SHUT_WR)
got = read_to_eof(s)
s.close()
assert got == b"", f"discard sent {len(got)} bytes"

# echo (RFC 862): line by line, then a half-close is echoed to the end and closed.
s = conn(7)
for msg in [b"hello, echo\r\n", bytes(range(256)) * 40, b"x"]:
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        b = s.recv(65536)
        assert b, "echo closed early"
        got += b
    assert got == msg, (len(got), len(msg))
s.sendall(b"last words")
s.shutdown(socket.SHUT_WR)
assert read_to_eof(s) == b"last words"
s.close()
print("OK")
"##;

#[test]
fn rfc_services_over_tcp_with_python_sockets() {
    let Some((ns, _ts, _)) = start("rfc", &["--message", QOTD]) else {
        return;
    };
    for (addr, off) in TARGETS {
        let out = ns.python(PY_RFC_TCP, &[addr, &off.to_string(), QOTD]);
        assert_eq!(out.trim(), "OK", "{addr}");
    }
    assert_settled(&ns, 80);
}

// ---------------------------------------------------------------------------------------------------
// 2. UDP

/// One datagram to each UDP service. argv: host, port offset, the expected qotd message. Prints "OK".
const PY_RFC_UDP: &str = r##"
import datetime, socket, struct, sys, time
host, off, message = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
fam = socket.AF_INET6 if ":" in host else socket.AF_INET

def ask(port, payload=b"?"):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(2)
    try:
        for _ in range(3):
            s.sendto(payload, (host, port + off))
            try:
                data, frm = s.recvfrom(65536)
                assert frm[1] == port + off, frm
                return data
            except socket.timeout:
                continue
        raise AssertionError(f"no reply from udp port {port + off}")
    finally:
        s.close()

def chargen_ref(i):
    line, col = divmod(i, 74)
    return 13 if col == 72 else 10 if col == 73 else 32 + (line + col) % 95

for payload in [b"udp echo", bytes(range(256)) * 2, b"z" * 1400]:
    assert ask(7, payload) == payload, f"echo of {len(payload)} bytes"

got = ask(13)
t = datetime.datetime.strptime(got.decode("ascii"), "%A, %B %d, %Y %H:%M:%S-UTC\r\n")
t = t.replace(tzinfo=datetime.timezone.utc)
assert abs((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()) < 5, got

assert ask(17) == message, "qotd"

got = ask(37)
assert len(got) == 4, got
assert abs(struct.unpack(">I", got)[0] - 2208988800 - time.time()) <= 5

lengths = []
for _ in range(6):
    got = ask(19)
    assert len(got) <= 512, len(got)
    assert got == bytes(chargen_ref(i) for i in range(len(got))), got
    lengths.append(len(got))
assert len(set(lengths)) > 1, f"chargen lengths should vary: {lengths}"

# discard: no reply within a second, and the service still answers nothing afterwards.
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(1)
s.sendto(b"into the void", (host, 9 + off))
try:
    data = s.recvfrom(65536)
    raise AssertionError(f"discard replied {data!r}")
except socket.timeout:
    pass
s.close()
print("OK")
"##;

#[test]
fn rfc_services_over_udp_with_python_and_nc() {
    let Some((ns, _ts, _)) = start("udp", &["--message", QOTD]) else {
        return;
    };
    // The three targets at once: the discard and nc checks each wait out a second.
    std::thread::scope(|s| {
        for (addr, off) in TARGETS {
            let ns = &ns;
            s.spawn(move || {
                let out = ns.python(PY_RFC_UDP, &[addr, &off.to_string(), QOTD]);
                assert_eq!(out.trim(), "OK", "{addr}");
                // netcat-openbsd: send a line, wait a second for the reply, print it.
                let nc = |port: u16, input: &str| {
                    ns.sh_ok(&format!(
                        "printf '{input}' | nc -u -w1 {addr} {}",
                        port + off
                    ))
                };
                assert_eq!(nc(7, "nc says hi"), "nc says hi", "{addr}");
                assert_eq!(nc(17, "x"), QOTD, "{addr}");
                let day = nc(13, "x");
                assert!(
                    day.ends_with("-UTC\r\n") && day.lines().count() == 1,
                    "{addr}: {day:?}"
                );
            });
        }
    });
}

// ---------------------------------------------------------------------------------------------------
// 3. HTTP with curl

/// Holds an idle echo connection on each stack and fetches the status page and JSON with curl while
/// they are open. argv: the http base URLs. Prints "OK".
const PY_STATUS_WITH_IDLE_ECHO: &str = r##"
import json, socket, subprocess, sys
urls = sys.argv[1:]
held = []
for host, port in [("192.168.69.1", 7), ("127.0.0.1", 10007), ("fdaa::1", 7)]:
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    held.append(s)

def fmt(addr):
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

for url in urls:
    html = subprocess.run(["curl", "-sS", "--fail", "--max-time", "10", url + "/"],
                          capture_output=True, check=True).stdout.decode()
    assert html.startswith("<!DOCTYPE html>") and "</html>" in html, html[:200]
    assert "<th>Local Address</th>" in html and "<th>State</th>" in html, html
    for s in held:
        local, remote = fmt(s.getpeername()), fmt(s.getsockname())
        row = f"<td>tcp</td><td>{local}</td><td>{remote}</td><td>ESTABLISHED</td><td>echo</td></tr>"
        assert row in html, f"{url}: no row {row} in\n{html}"
    js = json.loads(subprocess.run(["curl", "-sS", "--fail", "--max-time", "10", url + "/netstat.json"],
                                   capture_output=True, check=True).stdout)
    assert set(js) >= {"endpoints", "connections", "counters"}, js.keys()
    assert set(js["counters"]) == {"stack", "host"}, js["counters"]
    for side in ("stack", "host"):
        c = js["counters"][side]
        for k in ("packets_in", "bytes_in", "conns_accepted"):
            assert isinstance(c[k], int), (side, k, c)
        assert c["conns_accepted"] >= 1, (side, c)
    eps = {(e["stack"], e["proto"], e["addr"], e["service"]) for e in js["endpoints"]}
    assert ("stack", "tcp", "192.168.69.1:80", "http") in eps, eps
    assert ("host", "udp", "127.0.0.1:10013", "daytime") in eps, eps
    for s in held:
        local, remote = fmt(s.getpeername()), fmt(s.getsockname())
        rows = [c for c in js["connections"] if c["local"] == local and c["remote"] == remote]
        assert len(rows) == 1, (local, remote, js["connections"])
        r = rows[0]
        assert (r["proto"], r["state"], r["service"]) == ("tcp", "ESTABLISHED", "echo"), r
        assert r["stack"] == ("host" if local.startswith("127.") else "stack"), r
for s in held:
    s.close()
print("OK")
"##;

#[test]
fn curl_status_page_and_netstat_json_show_open_connections() {
    let Some((ns, _ts, _)) = start("status", &[]) else {
        return;
    };
    let urls: Vec<String> = TARGETS.iter().map(|(a, o)| base_url(a, 80 + o)).collect();
    let args: Vec<&str> = urls.iter().map(String::as_str).collect();
    assert_eq!(ns.python(PY_STATUS_WITH_IDLE_ECHO, &args).trim(), "OK");

    for base in &urls {
        // HEAD: the headers a GET would have, no body.
        let (rs, _) = curl(&ns, &["-I", &format!("{base}/")]);
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].status, 200);
        assert!(rs[0]
            .header("content-type")
            .unwrap()
            .starts_with("text/html"));
        assert!(
            rs[0]
                .header("content-length")
                .unwrap()
                .parse::<usize>()
                .unwrap()
                > 500
        );
        let (rs, _) = curl(&ns, &["-I", &format!("{base}/bytes/100000")]);
        assert_eq!(rs[0].header("content-length"), Some("100000"));
        assert_eq!(rs[0].header("accept-ranges"), Some("bytes"));
        // curl's own count of body bytes after a HEAD.
        let out = ns.sh_ok(&format!(
            "curl -sS --max-time 10 -I -o /dev/null -w '%{{http_code}} %{{size_download}}' {base}/bytes/100000"
        ));
        assert_eq!(out, "200 0", "{base}");
    }
}

#[test]
fn curl_bytes_and_ranges_byte_exact() {
    let Some((ns, _ts, _)) = start("ranges", &[]) else {
        return;
    };
    for (addr, off) in TARGETS {
        let base = base_url(addr, 80 + off);
        let url = format!("{base}/bytes/100000");
        let r = curl1(&ns, &[&url]);
        assert_eq!(r.status, 200, "{url}");
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert!(
            r.body == pattern(0, 100_000),
            "{url}: body differs from the pattern"
        );

        for (range, first, last) in [
            ("10-19", 10, 19),
            ("-5", 99_995, 99_999),
            ("99990-", 99_990, 99_999),
        ] {
            let r = curl1(&ns, &["-H", &format!("Range: bytes={range}"), &url]);
            assert_eq!(r.status, 206, "{url} {range}");
            assert_eq!(
                r.header("content-range"),
                Some(&*format!("bytes {first}-{last}/100000")),
                "{url} {range}"
            );
            assert_eq!(r.body, pattern(first, last - first + 1), "{url} {range}");
        }
        // curl's own -r option.
        let r = curl1(&ns, &["-r", "1000-1250", &url]);
        assert_eq!((r.status, r.body.clone()), (206, pattern(1000, 251)));

        let r = curl1(&ns, &["-H", "Range: bytes=200000-", &url]);
        assert_eq!(r.status, 416, "{url}");
        assert_eq!(r.header("content-range"), Some("bytes */100000"));

        let r = curl1(&ns, &[&format!("{base}/bytes/0")]);
        assert_eq!((r.status, r.body.len()), (200, 0));
    }
}

#[test]
fn curl_four_parallel_ranges_reassemble_a_megabyte() {
    let Some((ns, _ts, _)) = start("parallel", &[]) else {
        return;
    };
    const N: u64 = 1_000_000;
    let expected = pattern(0, N);
    let want = ns.python(
        "import hashlib, sys\nn = int(sys.argv[1])\nprint(hashlib.sha256(bytes(i % 251 for i in range(n))).hexdigest())",
        &[&N.to_string()],
    );
    for (addr, off) in TARGETS {
        let url = format!("{}/bytes/{N}", base_url(addr, 80 + off));
        let parts: Vec<(u64, u64)> = (0..4).map(|i| (i * N / 4, (i + 1) * N / 4 - 1)).collect();
        let children: Vec<Child> = parts
            .iter()
            .map(|(a, b)| curl_spawn(&ns, &["-r", &format!("{a}-{b}"), &url]))
            .collect();
        let mut whole = Vec::new();
        for (child, (a, b)) in children.into_iter().zip(&parts) {
            let (rs, err) = curl_done(child, &url);
            assert_eq!(rs.len(), 1, "{err}");
            assert_eq!(rs[0].status, 206);
            assert_eq!(
                rs[0].header("content-range"),
                Some(&*format!("bytes {a}-{b}/{N}"))
            );
            assert_eq!(rs[0].body.len() as u64, b - a + 1);
            whole.extend_from_slice(&rs[0].body);
        }
        assert!(whole == expected, "{url}: reassembled body differs");
        // The same check as a checksum over what curl wrote to disk.
        let scratch = Scratch::new(&ns);
        let file = scratch.path("whole");
        std::fs::write(&file, &whole).unwrap();
        let got = ns.python(
            "import hashlib, sys\nprint(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())",
            &[&file],
        );
        assert_eq!(got, want, "{url}");
    }
}

#[test]
fn curl_keep_alive_post_echo_and_errors() {
    let Some((ns, ts, _)) = start("curlmisc", &[]) else {
        return;
    };
    let scratch = Scratch::new(&ns);
    let upload = scratch.path("upload");
    let data: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&upload, &data).unwrap();

    for (addr, off) in TARGETS {
        let base = base_url(addr, 80 + off);
        // Two URLs, one connection.
        let (rs, err) = curl(
            &ns,
            &[
                "-v",
                &format!("{base}/bytes/10"),
                &format!("{base}/netstat.json"),
            ],
        );
        assert_eq!(rs.len(), 2, "{err}");
        assert_eq!((rs[0].status, rs[0].body.clone()), (200, pattern(0, 10)));
        assert_eq!(rs[1].status, 200);
        assert!(
            rs.iter().all(|r| r.header("connection").is_none()),
            "keep-alive is the HTTP/1.1 default"
        );
        assert!(
            err.contains("Re-using existing connection"),
            "{base}: {err}"
        );
        assert_eq!(err.matches("Connected to").count(), 1, "{base}: {err}");

        // Connection: close is honoured: the server says so and closes, curl connects again.
        let (rs, err) = curl(
            &ns,
            &[
                "-v",
                "-H",
                "Connection: close",
                &format!("{base}/bytes/10"),
                &format!("{base}/bytes/20"),
            ],
        );
        assert_eq!(rs.len(), 2, "{err}");
        assert!(
            rs.iter().all(|r| r.header("connection") == Some("close")),
            "{rs:?}"
        );
        assert_eq!(rs[1].body, pattern(0, 20));
        assert!(
            !err.contains("Re-using existing connection"),
            "{base}: {err}"
        );
        assert_eq!(err.matches("Connected to").count(), 2, "{base}: {err}");

        // POST /echo: 200 KB back byte for byte.
        let r = curl1(
            &ns,
            &[
                "--data-binary",
                &format!("@{upload}"),
                "-H",
                "Content-Type: application/octet-stream",
                &format!("{base}/echo"),
            ],
        );
        assert_eq!(r.status, 200, "{base}");
        assert_eq!(r.header("content-length"), Some("200000"));
        assert!(r.body == data, "{base}: echoed body differs");

        let r = curl1(&ns, &[&format!("{base}/nope")]);
        assert_eq!(r.status, 404, "{base}");
        let r = curl1(&ns, &["-X", "DELETE", &format!("{base}/")]);
        assert_eq!(r.status, 405, "{base}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
        let r = curl1(&ns, &[&format!("{base}/echo")]);
        assert_eq!((r.status, r.header("allow")), (405, Some("POST")), "{base}");
    }
    assert!(
        !ts.stderr_text().contains("panicked"),
        "{}",
        ts.stderr_text()
    );
}

// ---------------------------------------------------------------------------------------------------
// 4. HTTP error paths from raw sockets

/// Raw-socket HTTP clients for the error paths. argv: host, port. Prints "OK".
const PY_HTTP_RAW: &str = r##"
import email.utils, socket, sys, threading, time
host, port = sys.argv[1], int(sys.argv[2])

def conn():
    return socket.create_connection((host, port), timeout=10)

def read_all(s):
    data = b""
    while True:
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            return data, "reset"
        if not b:
            return data, "eof"
        data += b

def responses(data, head_only=()):
    out = []
    while data:
        end = data.index(b"\r\n\r\n")
        head = data[:end].decode()
        data = data[end + 4:]
        lines = head.split("\r\n")
        status = int(lines[0].split()[1])
        hs = {}
        for l in lines[1:]:
            k, v = l.split(":", 1)
            hs[k.strip().lower()] = v.strip()
        n = 0 if len(out) in head_only else int(hs["content-length"])
        assert len(data) >= n, (head, len(data))
        out.append((status, hs, data[:n]))
        data = data[n:]
    return out

def one_status(req, send_in_thread=False):
    s = conn()
    if send_in_thread:
        t = threading.Thread(target=lambda: s.sendall(req)); t.daemon = True; t.start()
    else:
        s.sendall(req)
    data, how = read_all(s)
    s.close()
    rs = responses(data)
    assert len(rs) == 1, rs
    assert rs[0][1].get("connection") == "close", rs[0][1]
    return rs[0][0]

# Malformed request line -> 400, then close.
assert one_status(b"GARBAGE\x01 / HTTP/1.1\r\n\r\n") == 400
assert one_status(b"GET / HTTP/9.9\r\nHost: x\r\n\r\n") == 400
assert one_status(b"GET / HTTP/1.1\r\nContent-Length: nope\r\n\r\n") == 400

# A head over 8 KiB -> 431.
assert one_status(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n") == 431

# A declared body over 1 MiB -> 413. A chunked one for /echo is not held: it streams back chunked.
assert one_status(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n") == 413
chunk = b"%x\r\n" % 65536 + b"c" * 65536 + b"\r\n"
req = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
       + chunk * 17 + b"0\r\n\r\n")
s = conn()
t = threading.Thread(target=lambda: s.sendall(req)); t.daemon = True; t.start()
data, how = read_all(s)
s.close()
head, _, rest = data.partition(b"\r\n\r\n")
assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nTransfer-Encoding: chunked" in head, head
body = b""
while True:
    line, _, rest = rest.partition(b"\r\n")
    n = int(line, 16)
    if n == 0:
        break
    body += rest[:n]
    rest = rest[n + 2:]
assert how == "eof" and body == b"c" * (65536 * 17), (how, len(body))

# Pipelined: three requests in one send, three responses in order (HEAD without a body).
s = conn()
s.sendall(b"GET /bytes/5 HTTP/1.1\r\nHost: x\r\n\r\n"
          b"HEAD /bytes/300 HTTP/1.1\r\nHost: x\r\n\r\n"
          b"GET /bytes/7 HTTP/1.1\r\nHost: x\r\nRange: bytes=2-\r\nConnection: close\r\n\r\n")
data, how = read_all(s)
s.close()
assert how == "eof", how
rs = responses(data, head_only=(1,))
assert [r[0] for r in rs] == [200, 200, 206], rs
assert rs[0][2] == bytes(range(5)) and rs[2][2] == bytes(range(2, 7)), rs
assert rs[1][1]["content-length"] == "300" and rs[1][2] == b""
for status, hs, body in rs:
    assert hs["server"].startswith("tapstack/"), hs
    date = email.utils.parsedate_to_datetime(hs["date"]).timestamp()
    assert abs(date - time.time()) < 5, hs["date"]

# HTTP/1.0 closes after one response, unless it asks for keep-alive.
s = conn()
s.sendall(b"GET /bytes/3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /bytes/2 HTTP/1.0\r\n\r\n")
data, how = read_all(s)
s.close()
rs = responses(data)
assert how == "eof" and [r[2] for r in rs] == [bytes(range(3)), bytes(range(2))], data
assert [r[1].get("connection") for r in rs] == ["keep-alive", "close"], rs

# Connection: close ends the conversation: a request pipelined behind it is not answered.
s = conn()
s.sendall(b"GET /bytes/3 HTTP/1.1\r\nConnection: close\r\n\r\nGET /bytes/4 HTTP/1.1\r\n\r\n")
data, how = read_all(s)
s.close()
rs = responses(data)
assert how == "eof" and len(rs) == 1 and rs[0][2] == bytes(range(3)), data

# A body is skipped to find the next request; a POST /echo body comes back between two GETs.
s = conn()
s.sendall(b"GET /bytes/2 HTTP/1.1\r\nContent-Length: 4\r\n\r\nxxxx"
          b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
          b"GET /bytes/3 HTTP/1.1\r\nConnection: close\r\n\r\n")
data, how = read_all(s)
s.close()
assert [r[2] for r in responses(data)] == [bytes(range(2)), b"abcde", bytes(range(3))], data
print("OK")
"##;

/// A silent connection is closed by the server after the idle timeout; one that keeps talking is
/// not. argv: host, port. Prints the seconds until EOF.
const PY_HTTP_IDLE: &str = r##"
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
# Busy: a request every 0.4 s for 2 s keeps the connection open past the 1 s idle timeout.
s = socket.create_connection((host, port), timeout=5)
for i in range(5):
    s.sendall(b"GET /bytes/4 HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while not got.endswith(b"\x00\x01\x02\x03"):
        b = s.recv(4096)
        assert b, f"closed while busy, request {i}"
        got += b
    time.sleep(0.4)
s.close()
# Silent: closed by the server after about a second.
s = socket.create_connection((host, port), timeout=5)
t0 = time.monotonic()
try:
    b = s.recv(100)
except ConnectionResetError:
    b = b""
took = time.monotonic() - t0
assert b == b"", b
print(f"{took:.2f}")
"##;

#[test]
fn http_error_paths_and_pipelining_from_raw_sockets() {
    let Some((ns, ts, _)) = start("httperr", &[]) else {
        return;
    };
    for (addr, off) in TARGETS {
        let out = ns.python(PY_HTTP_RAW, &[addr, &(80 + off).to_string()]);
        assert_eq!(out.trim(), "OK", "{addr}");
    }
    assert!(
        !ts.stderr_text().contains("panicked"),
        "{}",
        ts.stderr_text()
    );
}

#[test]
fn http_idle_timeout_closes_silent_connections() {
    let Some((ns, _ts, _)) = start("idle", &["--serve", "http", "--idle-timeout", "1"]) else {
        return;
    };
    // All three at once: the timeout is per connection, whatever the stack.
    let children: Vec<(&str, Child)> = TARGETS
        .iter()
        .map(|(addr, off)| {
            let child = ns
                .cmd("python3")
                .arg("-c")
                .arg(PY_HTTP_IDLE)
                .arg(addr)
                .arg((80 + off).to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (*addr, child)
        })
        .collect();
    for (addr, child) in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{addr}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let took: f64 = text.trim().parse().unwrap();
        eprintln!("{addr}: silent connection closed by the server after {took} s");
        assert!(
            (0.8..3.0).contains(&took),
            "{addr}: silent connection closed after {took} s"
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// 5. Many sessions across services at once

/// N threads per target, all released at once, each a different service. argv: N, then targets as
/// host:offset. Prints "ok K failed F" and the first failures.
const PY_MIXED: &str = r##"
import http.client, socket, struct, sys, threading, time
n = int(sys.argv[1])
targets = [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in sys.argv[2:]]
jobs = [(host, off, i) for host, off in targets for i in range(n)]
barrier = threading.Barrier(len(jobs))
lock = threading.Lock()
ok, bad = [0], []

def chargen_ref(i):
    line, col = divmod(i, 74)
    return 13 if col == 72 else 10 if col == 73 else 32 + (line + col) % 95

def to_eof(s):
    data = b""
    while len(data) < 1 << 20:
        b = s.recv(65536)
        if not b:
            return data
        data += b
    raise AssertionError("no EOF")

def job(host, off, i):
    kind = i % 6
    if kind == 5:
        c = http.client.HTTPConnection(host, 80 + off, timeout=15)
        c.request("GET", f"/bytes/{1000 + i}")
        r = c.getresponse()
        body = r.read()
        assert r.status == 200 and body == bytes(j % 251 for j in range(1000 + i)), r.status
        c.request("GET", "/netstat.json")
        r = c.getresponse()
        assert r.status == 200 and b"connections" in r.read()
        c.close()
        return
    port = [7, 13, 17, 19, 37][kind]
    s = socket.create_connection((host, port + off), timeout=15)
    try:
        if port == 7:
            msg = f"thread {i} on {host}\n".encode() * 50
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                b = s.recv(65536)
                assert b, "echo closed early"
                got += b
            assert got == msg
        elif port == 13:
            assert to_eof(s).endswith(b"-UTC\r\n")
        elif port == 17:
            assert len(to_eof(s)) > 0
        elif port == 19:
            got = b""
            while len(got) < 4096:
                b = s.recv(65536)
                assert b, "chargen closed early"
                got += b
            assert got[:4096] == bytes(chargen_ref(j) for j in range(4096))
        elif port == 37:
            got = to_eof(s)
            assert len(got) == 4 and abs(struct.unpack(">I", got)[0] - 2208988800 - time.time()) < 5
    finally:
        s.close()

def run(host, off, i):
    try:
        barrier.wait(15)
        job(host, off, i)
        with lock:
            ok[0] += 1
    except Exception as e:
        with lock:
            bad.append(f"{host}+{off} job {i}: {e!r}")

ts = [threading.Thread(target=run, args=j) for j in jobs]
[t.start() for t in ts]
[t.join(25) for t in ts]
print(f"ok {ok[0]} failed {len(bad)}")
for b in bad[:8]:
    print(b)
"##;

#[test]
fn many_concurrent_sessions_across_services_on_both_stacks() {
    let Some((ns, ts, _)) = start("mixed", &[]) else {
        return;
    };
    let targets: Vec<String> = TARGETS.iter().map(|(a, o)| format!("{a}:{o}")).collect();
    let mut args = vec!["40"];
    args.extend(targets.iter().map(String::as_str));
    let started = Instant::now();
    let out = ns.python(PY_MIXED, &args);
    assert!(out.starts_with("ok 120 failed 0"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        !ts.stderr_text().contains("refusing SYN"),
        "{}",
        ts.stderr_text()
    );
    assert_settled(&ns, 80);
}

// ---------------------------------------------------------------------------------------------------
// 6. --serve picks the services

fn ready_set(ready: &str) -> BTreeSet<String> {
    let list = ready.split_once("ready: ").expect("ready line").1;
    list.split(", ").map(|s| s.trim().to_string()).collect()
}

fn expected_set(services: &[(&str, u16, bool)]) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for &(name, port, udp) in services {
        for proto in if udp {
            &["tcp", "udp"][..]
        } else {
            &["tcp"][..]
        } {
            set.insert(format!("stack {proto} 192.168.69.1:{port} {name}"));
            set.insert(format!("stack {proto} [fdaa::1]:{port} {name}"));
            set.insert(format!("host {proto} 127.0.0.1:{} {name}", port + 10000));
        }
    }
    set
}

/// Connects to each port; prints "open" or "refused" per port. argv: host, ports...
const PY_PROBE: &str = r##"
import socket, sys
host = sys.argv[1]
res = []
for p in sys.argv[2:]:
    try:
        socket.create_connection((host, int(p)), timeout=5).close()
        res.append("open")
    except ConnectionRefusedError:
        res.append("refused")
print(" ".join(res))
"##;

#[test]
fn serve_list_selects_services_and_ports() {
    let Some((ns, _ts, ready)) = start(
        "select",
        &["--serve", "echo,http:8080,qotd", "--message", QOTD],
    ) else {
        return;
    };
    let want = expected_set(&[("echo", 7, true), ("http", 8080, false), ("qotd", 17, true)]);
    assert_eq!(ready_set(&ready), want, "{ready}");

    for (addr, off) in TARGETS {
        let ports: Vec<String> = [7, 8080, 17, 9, 13, 19, 37, 80]
            .iter()
            .map(|p| (p + off).to_string())
            .collect();
        let mut args = vec![addr];
        args.extend(ports.iter().map(String::as_str));
        let out = ns.python(PY_PROBE, &args);
        assert_eq!(
            out.trim(),
            "open open open refused refused refused refused refused",
            "{addr}"
        );

        let base = base_url(addr, 8080 + off);
        let r = curl1(&ns, &[&format!("{base}/bytes/1000")]);
        assert_eq!(
            (r.status, r.body.clone()),
            (200, pattern(0, 1000)),
            "{base}"
        );
        let r = curl1(&ns, &[&format!("{base}/netstat.json")]);
        let text = String::from_utf8(r.body).unwrap();
        assert!(text.contains("\"127.0.0.1:18080\""), "{text}");
        assert!(!text.contains("daytime"), "{text}");
    }
    assert_eq!(ns.python(PY_UDP, &[STACK4, "17", "q"]), QOTD);
    assert_eq!(ns.python(PY_UDP, &[HOST, "10017", "q"]), QOTD);
}

#[test]
fn serve_list_runs_echo_twice() {
    let Some((ns, _ts, ready)) = start("twice", &["--serve", "echo,echo:7007"]) else {
        return;
    };
    assert_eq!(
        ready_set(&ready),
        expected_set(&[("echo", 7, true), ("echo", 7007, true)]),
        "{ready}"
    );
    for (addr, off) in TARGETS {
        for port in [7 + off, 7007 + off] {
            let out = ns.python(PY_ECHO_BULK, &[addr, &port.to_string(), "100000"]);
            assert!(out.starts_with("OK "), "{addr}:{port}: {out}");
            let msg = format!("udp to {port}");
            assert_eq!(ns.python(PY_UDP, &[addr, &port.to_string(), &msg]), msg);
        }
        let out = ns.python(
            PY_PROBE,
            &[addr, &(13 + off).to_string(), &(80 + off).to_string()],
        );
        assert_eq!(out.trim(), "refused refused", "{addr}");
    }
}
