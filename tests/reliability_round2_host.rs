//! Reliability, round 2 (issue 14), the host side of the loop: a burst of new host connections
//! (case 2) and bytes on standard input with `--stdin-exit` (case 8) must not hold the one loop that
//! also serves every other connection of both stacks.
//!
//! End to end, as root (or in an unprivileged user namespace): tapstack on `tap0` in a fresh network
//! namespace, clients (`ab`, python3) inside it, all traffic on the namespace's own loopback and tap0.
//! Every figure is printed as a `FIGURE ...` line (`--nocapture` to see it) and is in RELIABILITY.md.
//! A test that cannot run here says SKIPPED on stderr (a failure under `CI=true`).

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Case 2: a burst of new host connections.

/// Echo round trips on one established connection per stack (host 127.0.0.1:10007, userspace
/// 192.168.69.1:7 over tap0), one byte each, every 5 ms, until standard input closes or the time
/// limit. Prints `connected`, then one JSON object: per stack n, p50, p99, max (ms) and timeouts.
/// A round trip that takes longer than the socket timeout counts as a timeout at that figure, so a
/// frozen loop shows as a number, not a python traceback.
const PY_ECHO_PROBE: &str = r#"
import socket, sys, time, json, threading
secs = float(sys.argv[1])
conns = {}
for name, host, port in (("host", "127.0.0.1", 10007), ("tap", "192.168.69.1", 7)):
    s = socket.create_connection((host, port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(2)
    conns[name] = s
print("connected", flush=True)
stop = threading.Event()
def watch():
    sys.stdin.read()
    stop.set()
threading.Thread(target=watch, daemon=True).start()
rtts = {n: [] for n in conns}
timeouts = {n: 0 for n in conns}
t0 = time.time()
while not stop.is_set() and time.time() - t0 < secs:
    for n, s in conns.items():
        if timeouts[n]:
            continue
        t = time.perf_counter()
        try:
            s.sendall(b"p")
            assert s.recv(1) == b"p"
            rtts[n].append((time.perf_counter() - t) * 1000)
        except socket.timeout:
            timeouts[n] += 1
            rtts[n].append(2000.0)
    time.sleep(0.005)
out = {}
for n, v in rtts.items():
    v.sort()
    out[n] = {"n": len(v), "p50": round(v[len(v) // 2], 2), "p99": round(v[int(len(v) * 0.99)], 2),
              "max": round(v[-1], 2), "timeouts": timeouts[n]}
print(json.dumps(out), flush=True)
"#;

/// The number after `label` on a line of ab's report (`Failed requests:        0`); ab prints
/// `Non-2xx responses:` only when there were some, so a missing line is 0.
fn ab_figure(report: &str, label: &str) -> f64 {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn host_accept_burst_ab_20000_no_resets_and_echo_keeps_answering() {
    if !Command::new("ab")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        skip("needs ApacheBench (`ab`, Debian package apache2-utils; .ci/run installs it)");
        return;
    }
    let Some((ns, ts)) = Netns::serving("accept", &["--serve", "echo,http"]) else {
        return;
    };
    let mut probe = ns
        .cmd("python3")
        .arg("-c")
        .arg(PY_ECHO_PROBE)
        .arg("120")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the echo probe");
    let mut probe_out = BufReader::new(probe.stdout.take().unwrap());
    let mut line = String::new();
    probe_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "connected", "the echo probe could not connect");

    // Bounded: 20,000 requests, 64 at a time, and ab gives up after 120 s (`-t` before `-n`: the time
    // limit stays, the count is ours). `-r`: a reset is counted, not the end of the run; `-l`: the
    // page is dynamic, so a different length is not a failure.
    let t0 = Instant::now();
    let ab = ns
        .cmd("ab")
        .args([
            "-q", "-r", "-l", "-s", "10", "-t", "120", "-n", "20000", "-c", "64",
        ])
        .arg("http://127.0.0.1:10080/netstat.json")
        .stdin(Stdio::null())
        .output()
        .expect("run ab in the namespace");
    let ab_secs = t0.elapsed().as_secs_f64();
    // End the probe: it stops when its standard input closes.
    drop(probe.stdin.take());
    let mut rtt = String::new();
    probe_out.read_line(&mut rtt).unwrap();
    let _ = probe.wait();
    let report = String::from_utf8_lossy(&ab.stdout).into_owned();
    let complete = ab_figure(&report, "Complete requests:");
    let failed = ab_figure(&report, "Failed requests:");
    let non_2xx = ab_figure(&report, "Non-2xx responses:");
    let rps = ab_figure(&report, "Requests per second:");
    let r: Value = serde_json::from_str(rtt.trim())
        .unwrap_or_else(|e| panic!("echo probe output {rtt:?}: {e}"));
    let js = netstat_json(&ns, 10080);
    let refused = js["counters"]["host"]["conns_refused"]
        .as_i64()
        .unwrap_or(-1);
    let accepted = js["counters"]["host"]["conns_accepted"]
        .as_i64()
        .unwrap_or(-1);
    let failed_detail = report
        .lines()
        .find(|l| l.trim_start().starts_with("(Connect:"))
        .unwrap_or("")
        .trim();
    eprintln!(
        "FIGURE accept-burst: ab -c 64 -n 20000 /netstat.json on the host side: {complete} complete, {failed} failed {failed_detail}, \
         {non_2xx} non-2xx, {rps} req/s, {ab_secs:.1} s; host accepted {accepted}, refused {refused}; \
         echo during the run: host {}, tap {}",
        r["host"], r["tap"]
    );
    assert!(
        ab.status.success(),
        "ab failed: {report}{}",
        String::from_utf8_lossy(&ab.stderr)
    );
    assert_eq!(complete, 20000.0, "{report}");
    assert_eq!(failed, 0.0, "requests failed (resets): {report}");
    assert_eq!(non_2xx, 0.0, "{report}");
    assert_eq!(refused, 0, "host connections refused at --max-connections");
    for stack in ["host", "tap"] {
        assert_eq!(r[stack]["timeouts"], 0, "{stack} echo timed out: {r}");
        assert!(r[stack]["n"].as_u64().unwrap() > 10, "{r}");
        // Generous for a shared 2-core machine (p50 is a few ms): the 99th percentile, so that one
        // scheduler hiccup of a busy machine does not decide, and a looser bound on the worst. On the
        // unbudgeted loop echo stalled 0.4-2 s (timeouts).
        assert!(
            r[stack]["p99"].as_f64().unwrap() < 100.0,
            "{stack} echo stalled while ab ran: {r}"
        );
        assert!(
            r[stack]["max"].as_f64().unwrap() < 300.0,
            "{stack} echo stalled while ab ran: {r}"
        );
    }
    ts.stop_clean();
}

// ---------------------------------------------------------------------------------------------
// Case 8: `--stdin-exit` and bytes on standard input.

/// One echo exchange on a new host connection within `limit` seconds; prints {"ok", "ms"}.
const PY_ECHO_ONCE: &str = r#"
import socket, sys, time, json
host, port, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
t = time.perf_counter()
ok = False
try:
    s = socket.create_connection((host, port), timeout=limit)
    s.sendall(b"ping\n")
    got = b""
    while len(got) < 5:
        s.settimeout(max(0.001, limit - (time.perf_counter() - t)))
        b = s.recv(16)
        if not b:
            break
        got += b
    ok = got == b"ping\n"
except OSError:
    pass
print(json.dumps({"ok": ok, "ms": round((time.perf_counter() - t) * 1000, 2)}))
"#;

fn echo_once(ns: &Netns) -> Value {
    let out = ns.python(PY_ECHO_ONCE, &["127.0.0.1", "10007", "0.5"]);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("echo output {out:?}: {e}"))
}

#[test]
fn host_stdin_exit_bytes_on_stdin_do_not_block_the_loop() {
    let Some((ns, mut ts)) = Netns::serving("stdin", &["--serve", "echo", "--stdin-exit"]) else {
        return;
    };
    let before = echo_once(&ns);
    assert_eq!(before["ok"], true, "echo before any input: {before}");

    // One byte: the loop must read what is there and go on, not wait for end of file.
    ts.write_stdin("x");
    std::thread::sleep(Duration::from_millis(50));
    let after_byte = echo_once(&ns);

    // A megabyte, more than a pipe holds (64 KiB): read a bounded amount per turn, the rest later.
    let mut stdin = ts.child.stdin.take().expect("stdin piped");
    let writer = std::thread::spawn(move || {
        let chunk = [b'y'; 4096];
        let t = Instant::now();
        for _ in 0..256 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
        (stdin, t.elapsed())
    });
    let during_flood = echo_once(&ns);
    let (stdin, write_time) = writer.join().unwrap();
    let after_flood = echo_once(&ns);

    // End of file still ends the run cleanly.
    let t = Instant::now();
    drop(stdin);
    let code = ts.wait_exit(Duration::from_secs(5));
    let exit_ms = t.elapsed().as_secs_f64() * 1000.0;
    let err = ts.stderr_text();
    eprintln!(
        "FIGURE stdin-exit: host echo on a new connection after 1 byte on stdin: {after_byte}; while 1 MiB is written \
         to stdin: {during_flood}; after it ({:.0} ms to write): {after_flood}; stdin closed: exit {code:?} in {exit_ms:.0} ms",
        write_time.as_secs_f64() * 1000.0
    );
    for (what, r) in [
        ("after a byte on stdin", &after_byte),
        ("while stdin is written", &during_flood),
        ("after 1 MiB on stdin", &after_flood),
    ] {
        assert_eq!(
            r["ok"], true,
            "host echo {what}: no answer within 500 ms: {r}"
        );
    }
    assert_eq!(code, Some(0), "exit after stdin closed: {err}");
    assert!(err.contains("standard input closed"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
