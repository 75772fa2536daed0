//! Closes by the book (RFC 9293), both sides: the demo's echo step is the textbook exchange for
//! every seed; no RST in the default demo but chargen's; and over a TAP in a test-made namespace,
//! Linux peers are never left in LAST-ACK, whichever side closes first, and a FIN re-sent into
//! our TIME-WAIT gets an ACK, not an RST.

mod common;
use common::*;
use std::process::Stdio;
use std::time::Duration;

/// Runs `tapstack ARGS` inside `ns` to its end; (exit code, stderr).
fn run(ns: &Netns, args: &[&str]) -> (Option<i32>, String) {
    let out = ns
        .cmd(tapstack_bin().to_str().unwrap())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The lines of a demo's step `n` (from its header to the next one).
fn step(stderr: &str, n: usize) -> Vec<&str> {
    let start = format!("== step {n}/");
    let next = format!("== step {}/", n + 1);
    stderr
        .lines()
        .skip_while(|l| !l.contains(&start))
        .take_while(|l| !l.contains(&next))
        .collect()
}

/// A packet line's direction, flags and length: `in [SYN] 0`.
fn shape(line: &str) -> String {
    let dir = if line.contains(" packet  in ") {
        "in"
    } else {
        "out"
    };
    let flags = line
        .split_once('[')
        .and_then(|(_, r)| r.split_once(']'))
        .map_or("?", |(f, _)| f);
    let len = line
        .split_once(" len ")
        .and_then(|(_, r)| r.split_whitespace().next())
        .unwrap_or("?");
    format!("{dir} [{flags}] {len}")
}

const TEXTBOOK: [&str; 10] = [
    "in [SYN] 0",
    "out [SYN,ACK] 0",
    "in [ACK] 0",
    "in [PSH,ACK] 18",
    "out [PSH,ACK] 18",
    "in [FIN,ACK] 0",
    "out [ACK] 0",
    "out [FIN,ACK] 0",
    "in [ACK] 0",
    // The ladder of the connection, within the step.
    "ladder",
];

fn check_demo(ns: &Netns, extra: &[&str]) {
    let mut args = vec!["demo", "--exit", "--ladder"];
    args.extend_from_slice(extra);
    let (code, err) = run(ns, &args);
    assert_eq!(code, Some(0), "{extra:?}: {err}");
    let lines = step(&err, 2);
    let mut got: Vec<String> = lines
        .iter()
        .filter(|l| l.contains(" packet ") && l.contains(" TCP "))
        .map(|l| shape(l))
        .collect();
    if lines.iter().any(|l| l.contains("ladder  c2 tcp")) {
        got.push("ladder".into());
    }
    assert_eq!(got, TEXTBOOK, "{extra:?}:\n{}", lines.join("\n"));
    assert!(
        lines.iter().any(|l| l.contains("LAST-ACK -> CLOSED")),
        "{extra:?}:\n{}",
        lines.join("\n")
    );
    // No RST anywhere but where the tour says why: chargen, port 19.
    for l in err
        .lines()
        .filter(|l| l.contains(" packet ") && l.contains("RST"))
    {
        assert!(l.contains(":19 ") || l.contains(".19 "), "{extra:?}: {l}");
    }
    assert_eq!(
        err.lines()
            .filter(|l| l.contains(" packet ") && l.contains("RST"))
            .count(),
        1,
        "{extra:?}: chargen's hang-up is the one RST"
    );
    // The summary comes after every step, and says ok for each.
    assert!(!err.contains("FAIL"), "{extra:?}: {err}");
    // Pings a second apart.
    let pings: Vec<f64> = step(&err, 1)
        .iter()
        .filter(|l| l.contains("echo request"))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('+')))
        .filter_map(|w| w.trim_start_matches('+').trim_end_matches('s').parse().ok())
        .collect();
    assert_eq!(pings.len(), 3, "{extra:?}");
    for w in pings.windows(2) {
        let gap = w[1] - w[0];
        assert!((0.99..1.05).contains(&gap), "{extra:?}: ping gap {gap}");
    }
}

#[test]
fn demo_echo_step_is_the_textbook_for_every_seed_and_the_real_clock() {
    let Some(ns) = Netns::new("textbook") else {
        return;
    };
    for seed in ["1", "2", "3", "4", "5"] {
        check_demo(&ns, &["--seed", seed]);
    }
    check_demo(&ns, &[]);
}

/// A daytime client (tapstack closes first), then an echo client (the kernel closes first);
/// with `drop_last_ack`, an nftables rule drops tapstack's first bare ACK from port 13 (its last
/// ACK), so the kernel, in LAST-ACK, must send its FIN again. Then waits and prints what `ss`
/// says of the kernel's sockets towards tapstack.
const PY_CLOSES: &str = r#"
import socket, subprocess, sys, time
host, drop = sys.argv[1], sys.argv[2] == "1"
def nft(cmd):
    subprocess.run(["nft"] + cmd.split(), check=True)
if drop:
    nft("add table inet tw")
    nft("add chain inet tw in { type filter hook input priority 0 ; }")
    nft("add rule inet tw in ip saddr 192.168.69.1 tcp sport 13 tcp flags == ack counter drop")
s = socket.create_connection((host, 13), timeout=5)
data = b""
while True:
    b = s.recv(200)
    if not b:
        break
    data += b
s.close()
assert data.endswith(b"\n"), data
if drop:
    # Our FIN went after tapstack's; its ACK is dropped: wait until it was, then let the next go.
    for _ in range(100):
        out = subprocess.run(["nft", "list", "chain", "inet", "tw", "in"], capture_output=True, text=True).stdout
        if "packets 1 " in out:
            break
        time.sleep(0.01)
    nft("delete table inet tw")
e = socket.create_connection((host, 7), timeout=5)
e.sendall(b"ping\n")
got = b""
while len(got) < 5:
    got += e.recv(10)
e.close()
time.sleep(2.5)
ss = subprocess.run(["ss", "-tan"], capture_output=True, text=True).stdout
stuck = [l for l in ss.splitlines() if "LAST-ACK" in l or "CLOSE-WAIT" in l or "FIN-WAIT" in l]
print("stuck", len(stuck), "|".join(stuck))
"#;

fn closes_over_tap(drop_last_ack: bool) {
    let tag = if drop_last_ack { "twfin" } else { "twbook" };
    let Some(ns) = Netns::with_tap(tag) else {
        return;
    };
    let events = std::env::temp_dir().join(format!("tapstack-{tag}-{}.jsonl", std::process::id()));
    let ts = ns.tapstack(&[
        "serve",
        "--tap",
        "tap0",
        "--no-host",
        "--serve",
        "echo,daytime",
        "--events",
        events.to_str().unwrap(),
    ]);
    ts.wait_ready();
    let out = ns.python(
        PY_CLOSES,
        &["192.168.69.1", if drop_last_ack { "1" } else { "0" }],
    );
    let err = ts.stop_clean();
    assert!(
        out.contains("stuck 0 "),
        "the kernel was left waiting: {out}\n{err}"
    );
    // No RST either way across the TAP: the packet lines show every frame.
    assert!(
        !err.lines()
            .any(|l| l.contains(" packet ") && l.contains("RST")),
        "{err}"
    );
    let ev = std::fs::read_to_string(&events).unwrap();
    let _ = std::fs::remove_file(&events);
    let kinds = |k: &str| {
        ev.lines()
            .filter(|l| l.contains(&format!("\"event\":\"{k}\"")))
            .collect::<Vec<_>>()
    };
    // Daytime closed first: its connection entered TIME-WAIT for 60 s, and shutdown ended it.
    let tw = kinds("time_wait");
    assert_eq!(tw.len(), 1, "{ev}");
    assert!(tw[0].contains("\"hold_s\":60.0"), "{}", tw[0]);
    assert_eq!(kinds("conn_closed").len(), 2, "{ev}");
    let again = kinds("time_wait_ack");
    if drop_last_ack {
        assert_eq!(again.len(), 1, "{ev}");
        assert!(again[0].contains("\"restarted\":true"), "{}", again[0]);
        assert!(err.contains("the peer's FIN again"), "{err}");
    } else {
        assert!(again.is_empty(), "{ev}");
    }
}

#[test]
fn kernel_peers_never_stay_in_last_ack_whoever_closes_first() {
    closes_over_tap(false);
}

#[test]
fn fin_resent_into_time_wait_gets_an_ack_not_an_rst() {
    closes_over_tap(true);
}

/// An echo server that closes when the client does, then reports what `ss` says of its sockets.
const PY_ECHO_SERVER: &str = r#"
import socket, subprocess, sys, time
l = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], 7007))
l.listen(4)
print("serving", flush=True)
c, _ = l.accept()
while True:
    b = c.recv(4096)
    if not b:
        break
    c.sendall(b)
c.close()
time.sleep(2.5)
ss = subprocess.run(["ss", "-tan", "sport", "= :7007"], capture_output=True, text=True).stdout
stuck = [l for l in ss.splitlines() if "LAST-ACK" in l]
print("stuck", len(stuck), "|".join(stuck), flush=True)
"#;

#[test]
fn tapstack_connect_leaves_no_kernel_peer_in_last_ack() {
    let Some(ns) = Netns::with_tap("twconn") else {
        return;
    };
    let mut server = ns
        .cmd("python3")
        .args(["-c", PY_ECHO_SERVER, "192.168.69.100"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert_eq!(line.trim(), "serving");
    let t0 = std::time::Instant::now();
    let (code, err) = run(
        &ns,
        &["connect", "192.168.69.100:7007", "--send", "by the book"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "connect must not wait out TIME-WAIT"
    );
    // The client closed first: its last ACK went out before it exited.
    assert!(err.contains("last ACK sent; TIME-WAIT held"), "{err}");
    line.clear();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    let _ = server.wait();
    assert!(line.starts_with("stuck 0"), "{line}\n{err}");
}
