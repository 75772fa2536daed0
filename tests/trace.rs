//! Seeing every packet, end to end: packet lines with handshake labels, the close summary, pcap read
//! by tcpdump, JSON events, step mode from a pipe, counters on SIGUSR1, and `explain`.

mod common;
use common::*;
use std::time::Duration;

const PY_ECHO_ONCE: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"hello trace\n")
got = b""
while len(got) < 12:
    b = s.recv(100)
    if not b: break
    got += b
s.shutdown(socket.SHUT_WR)
assert s.recv(10) == b""
s.close()
print(got.decode().strip())
"#;

fn index_of(lines: &[&str], pat: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(pat))
        .unwrap_or_else(|| panic!("no line with {pat:?} in:\n{}", lines.join("\n")))
}

#[test]
fn echo_exchange_shows_handshake_lines_in_order_and_a_close_summary() {
    let Some(ns) = Netns::with_tap("hs") else {
        return;
    };
    let ts = ns.tapstack(&["serve", "--tap", "tap0", "--serve", "echo", "--no-host"]);
    ts.wait_ready();
    assert_eq!(
        ns.python(PY_ECHO_ONCE, &["192.168.69.1", "7"]).trim(),
        "hello trace"
    );
    let summary = ts
        .wait_for("closed by", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no close summary:\n{}", ts.stderr_text()));
    assert!(
        summary.contains("192.168.69.1:7") && summary.contains("handshake"),
        "{summary}"
    );
    assert!(
        summary.contains("12 bytes"),
        "both directions carried 12 bytes: {summary}"
    );
    let text = ts.stderr_text();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(" packet ")).collect();
    let h1 = index_of(&lines, "handshake 1/3");
    let h2 = index_of(&lines, "handshake 2/3");
    let h3 = index_of(&lines, "handshake 3/3");
    assert!(h1 < h2 && h2 < h3, "{text}");
    assert!(
        lines[h1].contains("[SYN]") && lines[h1].starts_with("INFO  packet  in  tap0"),
        "{}",
        lines[h1]
    );
    assert!(
        lines[h2].contains("[SYN,ACK]") && lines[h2].contains("out tap0"),
        "{}",
        lines[h2]
    );
    // Relative sequence numbers, like Wireshark: the SYN is seq 0.
    assert!(lines[h1].contains(" seq 0 "), "{}", lines[h1]);
    assert!(
        text.contains("close: FIN 1") && text.contains("close: FIN 2"),
        "{text}"
    );
    // Narration of the states, and the explanation of the flow's addresses and ports.
    assert!(
        text.contains("LISTEN -> SYN-RECEIVED") && text.contains("SYN-RECEIVED -> ESTABLISHED"),
        "{text}"
    );
    assert!(text.contains("port 7 is a well-known port"), "{text}");
    assert!(
        text.contains("private (192.168.0.0/16, RFC 1918)"),
        "{text}"
    );
}

#[test]
fn absolute_sequence_numbers_with_v_and_no_packet_lines_with_q() {
    let Some(ns) = Netns::with_tap("vq") else {
        return;
    };
    let ts = ns.tapstack(&[
        "-q",
        "serve",
        "--tap",
        "tap0",
        "--serve",
        "echo",
        "--no-host",
    ]);
    ts.wait_ready();
    ns.python(PY_ECHO_ONCE, &["192.168.69.1", "7"]);
    assert!(ts.wait_for("closed by", Duration::from_secs(5)).is_some());
    assert!(
        !ts.stderr_text().contains(" packet "),
        "{}",
        ts.stderr_text()
    );
    drop(ts);
    let ts = ns.tapstack(&[
        "-v",
        "serve",
        "--tap",
        "tap0",
        "--serve",
        "echo",
        "--no-host",
    ]);
    ts.wait_ready();
    ns.python(PY_ECHO_ONCE, &["192.168.69.1", "7"]);
    let syn = ts
        .wait_for("handshake 1/3", Duration::from_secs(5))
        .unwrap();
    assert!(!syn.contains(" seq 0 "), "absolute numbers with -v: {syn}");
}

#[test]
fn pcap_reads_with_tcpdump_while_running_and_after_shutdown() {
    let Some(ns) = Netns::with_tap("pcap") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("tapstack-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("cap.pcap");
    let mut ts = ns.tapstack(&[
        "serve",
        "--tap",
        "tap0",
        "--serve",
        "echo",
        "--no-host",
        "--pcap",
        pcap.to_str().unwrap(),
    ]);
    ts.wait_ready();
    ns.python(PY_ECHO_ONCE, &["192.168.69.1", "7"]);
    ts.wait_for("closed by", Duration::from_secs(5)).unwrap();
    // While running: flushed per frame.
    let live = ns.sh_ok(&format!("tcpdump -nr {} 2>/dev/null", pcap.display()));
    assert!(
        live.contains("Flags [S]") && live.contains("Flags [S.]"),
        "{live}"
    );
    ts.signal("TERM");
    assert_eq!(ts.wait_exit(Duration::from_secs(5)), Some(0));
    let out = ns.sh_ok(&format!(
        "tcpdump -nr {} 'tcp port 7' 2>/dev/null",
        pcap.display()
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains("192.168.69.100") && lines[0].contains("> 192.168.69.1.7: Flags [S]"),
        "{out}"
    );
    assert!(
        lines[1].contains("192.168.69.1.7 >") && lines[1].contains("Flags [S.]"),
        "{out}"
    );
    assert!(lines[2].contains("Flags [.]"), "{out}");
    // Real wall-clock timestamps: today's date.
    let dated = ns.sh_ok(&format!(
        "tcpdump -tttt -nr {} 2>/dev/null | head -1",
        pcap.display()
    ));
    let today = ns.sh_ok("date -u +%Y-%m-%d");
    assert!(dated.starts_with(today.trim()), "{dated} vs {today}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn events_file_is_json_lines_with_ready_states_and_close() {
    let Some(ns) = Netns::with_tap("ev") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("tapstack-ev-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ev = dir.join("events.jsonl");
    let mut ts = ns.tapstack(&[
        "serve",
        "--tap",
        "tap0",
        "--serve",
        "echo",
        "--events",
        ev.to_str().unwrap(),
    ]);
    ts.wait_ready();
    ns.python(PY_ECHO_ONCE, &["192.168.69.1", "7"]);
    ts.wait_for("closed by", Duration::from_secs(5)).unwrap();
    ts.signal("TERM");
    assert_eq!(ts.wait_exit(Duration::from_secs(5)), Some(0));
    let text = std::fs::read_to_string(&ev).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for e in &events {
        assert!(e["event"].is_string() && e["t_us"].is_i64(), "{e}");
    }
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[0], "ready");
    assert_eq!(*kinds.last().unwrap(), "shutdown");
    let states: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["event"] == "tcp_state")
        .map(|e| {
            (
                e["from"].as_str().unwrap().to_string(),
                e["to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        states.contains(&("LISTEN".into(), "SYN-RECEIVED".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("SYN-RECEIVED".into(), "ESTABLISHED".into())),
        "{states:?}"
    );
    let closed = events
        .iter()
        .find(|e| e["event"] == "conn_closed")
        .expect("conn_closed");
    assert!(closed.to_string().contains("192.168.69.1:7"), "{closed}");
    let syn = events
        .iter()
        .find(|e| e["event"] == "packet" && e.to_string().contains("handshake 1/3"))
        .expect("a packet event for the SYN");
    assert_eq!(syn["dir"], "in");
    assert!(events
        .iter()
        .any(|e| e["event"] == "shutdown" && e.to_string().contains("conns_accepted")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn step_mode_from_a_pipe_advances_one_packet_per_line() {
    let Some(ns) = Netns::with_tap("step") else {
        return;
    };
    let mut ts = ns.tapstack(&[
        "serve",
        "--tap",
        "tap0",
        "--serve",
        "echo",
        "--no-host",
        "--step",
    ]);
    ts.wait_ready();
    // One ping: ARP who-has, is-at, echo request, echo reply (the kernel may ARP first).
    let mut ping = ns
        .cmd("ping")
        .args(["-c", "1", "-W", "10", "192.168.69.1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let count = |ts: &Tapstack| {
        ts.stderr_text()
            .lines()
            .filter(|l| l.contains(" packet "))
            .count()
    };
    let wait_count = |ts: &Tapstack, n: usize| {
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while count(ts) < n && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        count(ts)
    };
    assert_eq!(wait_count(&ts, 1), 1, "{}", ts.stderr_text());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&ts), 1, "the loop must wait for Enter");
    ts.write_stdin("\n");
    assert_eq!(wait_count(&ts, 2), 2);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&ts), 2, "one packet per line");
    // `c`: continue without stepping; the ping completes.
    ts.write_stdin("c\n");
    let st = ping.wait().unwrap();
    assert!(st.success(), "{}", ts.stderr_text());
    // The reply's packet line may reach the pipe just after ping saw the reply.
    assert!(wait_count(&ts, 4) >= 4, "{}", ts.stderr_text());
    ts.write_stdin("q\n");
    // `q` quits cleanly once the next packet comes; in continue mode it is read no more, so SIGTERM.
    ts.signal("TERM");
    assert_eq!(ts.wait_exit(Duration::from_secs(5)), Some(0));
}

#[test]
fn q_in_step_mode_quits() {
    let Some(ns) = Netns::with_tap("stepq") else {
        return;
    };
    let mut ts = ns.tapstack(&[
        "serve",
        "--tap",
        "tap0",
        "--serve",
        "echo",
        "--no-host",
        "--step",
    ]);
    ts.wait_ready();
    let mut ping = ns
        .cmd("ping")
        .args(["-c", "1", "-W", "3", "192.168.69.1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    ts.wait_for(" packet ", Duration::from_secs(5)).unwrap();
    ts.write_stdin("q\n");
    let _ = ping.wait();
    assert_eq!(
        ts.wait_exit(Duration::from_secs(5)),
        Some(0),
        "{}",
        ts.stderr_text()
    );
}

#[test]
fn counters_on_sigusr1_interval_and_shutdown() {
    let Some(ns) = Netns::with_tap("stats") else {
        return;
    };
    let mut ts = ns.tapstack(&[
        "serve",
        "--tap",
        "tap0",
        "--serve",
        "echo",
        "--stats-interval",
        "0.5",
    ]);
    ts.wait_ready();
    ns.python(PY_ECHO_ONCE, &["192.168.69.1", "7"]);
    ns.python(PY_ECHO_ONCE, &["127.0.0.1", "10007"]);
    assert!(
        ts.wait_for("stack: packets in", Duration::from_secs(3))
            .is_some(),
        "interval stats"
    );
    ts.signal("USR1");
    assert!(ts
        .wait_for("resources: stack sockets", Duration::from_secs(3))
        .is_some());
    ts.signal("TERM");
    assert_eq!(ts.wait_exit(Duration::from_secs(5)), Some(0));
    let text = ts.stderr_text();
    let last_stack = text
        .lines()
        .rfind(|l| l.contains("stack: packets in"))
        .unwrap()
        .to_string();
    assert!(
        last_stack.contains("connections accepted 1") && last_stack.contains("closed 1"),
        "{last_stack}"
    );
    let last_host = text
        .lines()
        .rfind(|l| l.contains("host: packets in"))
        .unwrap()
        .to_string();
    assert!(last_host.contains("connections accepted 1"), "{last_host}");
}

#[test]
fn explain_command_for_addresses_and_ports() {
    let run = |arg: &str| {
        let out = std::process::Command::new(tapstack_bin())
            .args(["explain", arg])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = run("192.168.1.2:8080");
    assert_eq!(code, Some(0));
    assert!(
        out.contains("class C") && out.contains("private") && out.contains("network 192.168.1.0"),
        "{out}"
    );
    assert!(
        out.contains("host .2") && out.contains("port 8080 is a registered port"),
        "{out}"
    );
    let (_, out, _) = run("[fe80::1]:22");
    assert!(out.contains("link-local") && out.contains("ssh"), "{out}");
    let (_, out, _) = run("49152");
    assert!(out.contains("dynamic"), "{out}");
    let (_, out, _) = run("8.8.8.8");
    assert!(out.contains("class A") && out.contains("public"), "{out}");
    for bad in ["300.1.1.1", "1.2.3.4:99999", "[fe80::1", "abc", ""] {
        let (code, out, err) = run(bad);
        assert_eq!(code, Some(2), "{bad}: {out}{err}");
        assert_eq!(err.trim().lines().count(), 1, "{bad}: {err}");
        assert!(err.starts_with("error: "), "{bad}: {err}");
    }
}

/// A burst of connections: the first N of the second are narrated whole (SYN to close), the others are
/// counted in one line when the second is over; the counters still have every one.
#[test]
fn narration_is_limited_per_second_and_the_rest_summed_up() {
    let Some(ns) = Netns::with_tap("nl") else {
        return;
    };
    let ts = ns.tapstack(&[
        "-q",
        "serve",
        "--tap",
        "tap0",
        "--serve",
        "echo",
        "--narrate-limit",
        "5",
    ]);
    ts.wait_ready();
    let out = ns.python(
        r#"
import socket
for host, port in [("192.168.69.1", 7)] * 30 + [("127.0.0.1", 10007)] * 4:
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"x" * 64)
    got = b""
    while len(got) < 64:
        got += s.recv(64)
    s.close()
print("done")
"#,
        &[],
    );
    assert_eq!(out.trim(), "done");
    ts.wait_for("were not narrated", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no summary line:\n{}", ts.stderr_text()));
    ts.signal("TERM");
    ts.drain(Duration::from_secs(3));
    let text = ts.stderr_text();
    // One line per second that had connections left out (two if the burst straddled a second).
    let left_out: u64 = text
        .lines()
        .filter(|l| l.contains("were not narrated"))
        .map(|l| {
            l.split_whitespace()
                .find_map(|w| w.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{l}"))
        })
        .sum();
    let summaries = text.lines().filter(|l| l.contains(" closed by ")).count() as u64;
    let host = text
        .lines()
        .filter(|l| l.contains(" host 127.0.0.1:"))
        .count() as u64;
    let narrated = summaries + host / 2;
    assert_eq!(narrated + left_out, 34, "{text}");
    assert!((5..=15).contains(&narrated), "{narrated} narrated:\n{text}");
    // A narrated connection is told whole: each SYN-RECEIVED has its close summary.
    let opened = text.matches("LISTEN -> SYN-RECEIVED").count() as u64;
    assert_eq!(opened, summaries, "{text}");
    assert_eq!(host % 2, 0, "host lines come in pairs:\n{text}");
    // Counters are not limited.
    assert!(
        text.contains("connections accepted 30 refused 0 closed 30"),
        "{text}"
    );
    // Client ports (Linux picks them from 32768-60999: registered or dynamic) are explained once per
    // range, not one by one.
    let registered = text.matches("is a registered port").count();
    let dynamic = text.matches("is a dynamic port").count();
    assert!(
        registered <= 1 && dynamic <= 1 && registered + dynamic >= 1,
        "{registered} registered, {dynamic} dynamic:\n{text}"
    );
}

/// With offload (the TAP's default), a TCP line may carry far more than a 1500-byte frame; it says how
/// many wire-sized frames it stands for. `--no-offload` shows the wire-sized frames themselves.
#[test]
fn offloaded_segments_are_annotated_and_no_offload_shows_wire_frames() {
    let Some(ns) = Netns::with_tap("ol") else {
        return;
    };
    let send = r#"
import socket
s = socket.create_connection(("192.168.69.1", 9), timeout=10)
s.sendall(b"x" * 1_000_000)
s.shutdown(socket.SHUT_WR)
s.recv(10)
s.close()
print("sent")
"#;
    let lens = |text: &str| -> Vec<(u64, Option<u64>)> {
        text.lines()
            .filter(|l| l.contains(" packet  in  tap0") && l.contains(" > 192.168.69.1:9 "))
            .map(|l| {
                let num_after = |key: &str| {
                    l.split(key).nth(1).and_then(|r| {
                        r.split(|c: char| !c.is_ascii_digit())
                            .next()
                            .and_then(|n| n.parse::<u64>().ok())
                    })
                };
                (num_after(" len ").unwrap(), num_after("(offload: "))
            })
            .collect()
    };
    let ts = ns.tapstack(&["serve", "--tap", "tap0", "--serve", "discard", "--no-host"]);
    ts.wait_ready();
    assert_eq!(ns.python(send, &[]).trim(), "sent");
    ts.wait_for("closed by", Duration::from_secs(5)).unwrap();
    let text = ts.stderr_text();
    let segs = lens(&text);
    let big: Vec<_> = segs.iter().filter(|(len, _)| *len > 1460).collect();
    assert!(!big.is_empty(), "the kernel sent large segments:\n{text}");
    for &&(len, frames) in &big {
        // 1448 bytes per frame with timestamps, 1460 without.
        let n = frames.unwrap_or_else(|| panic!("a {len}-byte segment without a note"));
        assert!(
            n * 1460 >= len && (n - 1) * 1448 < len,
            "{len} bytes as {n} frames"
        );
    }
    assert!(segs
        .iter()
        .all(|&(len, frames)| (len > 1460) == frames.is_some()));
    drop(ts);

    let ts = ns.tapstack(&[
        "serve",
        "--tap",
        "tap0",
        "--serve",
        "discard",
        "--no-host",
        "--no-offload",
    ]);
    ts.wait_ready();
    assert_eq!(ns.python(send, &[]).trim(), "sent");
    ts.wait_for("closed by", Duration::from_secs(5)).unwrap();
    let text = ts.stderr_text();
    let segs = lens(&text);
    assert!(segs.len() > 600, "{} segments", segs.len());
    assert!(
        segs.iter()
            .all(|&(len, frames)| len <= 1460 && frames.is_none()),
        "{text}"
    );
}
