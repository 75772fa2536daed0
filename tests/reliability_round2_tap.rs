//! Reliability, round 2 (issue 14), case 11: bursts of frames overflow the TAP device's queue.
//!
//! The kernel queues frames towards tapstack in tap0's queue (`txqueuelen`); while tapstack is busy
//! a burst beyond it is dropped by the kernel, out of tapstack's sight. tapstack now reads the
//! device's own counters and shows them (`resources:` stats line, `/netstat.json`), and warns when
//! they grow.
//!
//! The figure printed here (`FIGURE ...` on stderr, `--nocapture` to see it) is in RELIABILITY.md,
//! "Round 2", "TAP queue".

mod common;

use common::*;
use std::time::{Duration, Instant};

/// Sends N small UDP datagrams to the stack's discard port as fast as it can (at most 5 s); prints
/// how many the kernel accepted.
const PY_BURST: &str = r#"
import socket, sys, time
n = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent, t0 = 0, time.time()
for i in range(n):
    try:
        s.sendto(b"burst %d" % i, ("192.168.69.1", 9))
        sent += 1
    except OSError:
        pass
    if time.time() - t0 > 5:
        break
print(sent)
"#;

/// The kernel's TX dropped count of tap0, from `ip -s link show tap0` inside the namespace.
fn kernel_tx_dropped(ns: &Netns) -> u64 {
    let out = ns.sh_ok("ip -s link show dev tap0");
    let mut lines = out.lines();
    while let Some(l) = lines.next() {
        if l.trim_start().starts_with("TX:") {
            let header: Vec<&str> = l.split_whitespace().collect();
            let values: Vec<&str> = lines
                .next()
                .expect("TX values")
                .split_whitespace()
                .collect();
            let col = header
                .iter()
                .position(|h| *h == "dropped")
                .expect("a dropped column")
                - 1; // "TX:" has no value under it
            return values[col].parse().expect("a number");
        }
    }
    panic!("no TX line in `ip -s link`: {out}");
}

/// The number after `key ` in `line`.
fn field(line: &str, key: &str) -> u64 {
    let at = line
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + key.len();
    line[at..]
        .split_whitespace()
        .next()
        .and_then(|v| v.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no number after {key} in {line}"))
}

/// Case 11: tap0 with a queue of 2 frames, tapstack stopped (SIGSTOP) while the namespace's kernel
/// sends 3,000 UDP datagrams towards it. The kernel drops all but 2; tapstack shows exactly the
/// kernel's count (`ip -s link` TX dropped) in its stats line and `/netstat.json`, and warns once.
#[test]
fn tap_queue_overflow_is_counted_and_warned() {
    const BURST: &str = "3000";
    let Some(ns) = Netns::with_tap("tapq") else {
        return;
    };
    ns.set_tap_txqueuelen(2);
    let mut ts = ns.tapstack(&["serve", "--tap", "tap0", "-q"]);
    ts.wait_ready();
    // The kernel learns the stack's MAC first, so the burst goes out as frames, not ARP requests.
    let echoed = ns.python(PY_UDP, &["192.168.69.1", "7", "hello"]);
    assert_eq!(echoed, "hello");
    let before = kernel_tx_dropped(&ns);

    ts.signal("STOP");
    let t0 = Instant::now();
    let sent = ns.python(PY_BURST, &[BURST]);
    let burst_time = t0.elapsed();
    let dropped = kernel_tx_dropped(&ns);
    ts.signal("CONT");
    assert!(
        dropped > before,
        "the kernel dropped nothing (sent {})",
        sent.trim()
    );

    let warning = ts
        .wait_for("frames queued for tapstack", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no warning; stderr:\n{}", ts.stderr_text()));
    assert!(
        warning.contains("tap0: the kernel dropped")
            && warning.contains("(txqueuelen 2)")
            && warning.contains("tap-setup.sh sets 10000"),
        "{warning}"
    );
    // The kernel may drop a frame more after the test read its count (one sent while tapstack
    // was still stopped, an ARP refresh): tapstack tells what the kernel said when it looked.
    let warned = field(&warning, "the kernel dropped ");
    let now = kernel_tx_dropped(&ns);
    assert!(
        (dropped - before..=now - before).contains(&warned),
        "warned {warned}, kernel {} then {}",
        dropped - before,
        now - before
    );

    ts.signal("USR1");
    let stats = ts
        .wait_for("tx_dropped", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no stats line; stderr:\n{}", ts.stderr_text()));
    assert!(stats.contains("resources:"), "{stats}");
    assert_eq!(field(&stats, "tap0 txqueuelen "), 2, "{stats}");
    let told = field(&stats, "tx_dropped ");
    assert!(
        (dropped..=kernel_tx_dropped(&ns)).contains(&told),
        "{stats}"
    );

    let js = netstat_json(&ns, 10080);
    let r = &js["resources"];
    assert_eq!(r["tap_queue_len"], 2, "{r}");
    let shown = r["tap_tx_dropped"].as_u64().unwrap();
    assert!((dropped..=kernel_tx_dropped(&ns)).contains(&shown), "{r}");
    assert_eq!(r["tap_rx_dropped"], 0, "{r}");

    // Once a minute at most: more drops now say nothing yet.
    ts.signal("STOP");
    ns.python(PY_BURST, &["500"]);
    let dropped_again = kernel_tx_dropped(&ns);
    ts.signal("CONT");
    std::thread::sleep(Duration::from_millis(500));
    let warnings = ts
        .stderr_text()
        .matches("frames queued for tapstack")
        .count();
    assert_eq!(warnings, 1, "{}", ts.stderr_text());
    let js = netstat_json(&ns, 10080);
    let shown = js["resources"]["tap_tx_dropped"].as_u64().unwrap();
    assert!(
        (dropped_again..=kernel_tx_dropped(&ns)).contains(&shown),
        "{js}"
    );

    // The queue tap-setup.sh sets holds the same burst whole: no drop, and tapstack reads all of it.
    ns.set_tap_txqueuelen(TAP_SETUP_TXQUEUELEN);
    ts.signal("STOP");
    ns.python(PY_BURST, &[BURST]);
    let dropped_setup = kernel_tx_dropped(&ns) - dropped_again;
    ts.signal("CONT");
    assert_eq!(
        dropped_setup, 0,
        "txqueuelen {TAP_SETUP_TXQUEUELEN} dropped frames"
    );
    let js = netstat_json(&ns, 10080);
    assert_eq!(js["resources"]["tap_queue_len"], TAP_SETUP_TXQUEUELEN);
    let shown = js["resources"]["tap_tx_dropped"].as_u64().unwrap();
    assert!(
        (dropped_again..=kernel_tx_dropped(&ns)).contains(&shown),
        "{js}"
    );

    ts.signal("TERM");
    assert_eq!(ts.wait_exit(Duration::from_secs(5)), Some(0));
    eprintln!(
        "FIGURE tap-queue: txqueuelen 2, tapstack stopped, {} of {BURST} UDP datagrams sent in {:.0} ms: \
         kernel TX dropped {}, tapstack tap_tx_dropped {} (stats line and /netstat.json), one warning: {warning}; \
         the same burst with txqueuelen {TAP_SETUP_TXQUEUELEN} (tap-setup.sh): {dropped_setup} dropped",
        sent.trim(),
        burst_time.as_secs_f64() * 1000.0,
        dropped - before,
        dropped - before,
    );
}
