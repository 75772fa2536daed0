//! `tapstack relay` end to end: a kernel client and a kernel server, each in its own network namespace,
//! joined through the relay in a third one (client veth + TAP `ra` in bridge `br-a`, server veth + TAP
//! `rb` in bridge `br-b`). What the relay promises is measured from outside: ping's round trip is twice
//! the configured latency, ping's loss and the relay's own counts match the configured chance, TCP
//! still delivers every byte under loss, and no frame larger than the MTU crosses the relay although
//! both veths have segmentation offload on.

mod common;

use common::{is_root, skip, Netns, Tapstack};
use std::process::Stdio;
use std::time::Duration;

/// The relay's world: the three namespaces and the relay running in the middle one.
struct World {
    client: Netns,
    server: Netns,
    relay: Tapstack,
    _relay_ns: Netns,
}

const CLIENT_IP: &str = "192.168.69.100";
const SERVER_IP: &str = "192.168.69.1";

fn world(tag: &str, relay_args: &[&str]) -> Option<World> {
    if !is_root() {
        skip("needs root: it moves veth ends between network namespaces");
        return None;
    }
    let r = Netns::new(&format!("{tag}r"))?;
    let c = Netns::new(&format!("{tag}c"))?;
    let s = Netns::new(&format!("{tag}s"))?;
    r.sh_ok(&format!(
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 && \
         ip link add pc type veth peer name vc netns {c} && \
         ip link add ps type veth peer name vs netns {s} && \
         ip tuntap add dev ra mode tap && ip tuntap add dev rb mode tap && \
         ip link add br-a type bridge && ip link add br-b type bridge && \
         ip link set pc master br-a && ip link set ra master br-a && \
         ip link set ps master br-b && ip link set rb master br-b && \
         for i in pc ps ra rb br-a br-b; do ip link set $i up; done",
        c = c.name,
        s = s.name
    ));
    for (ns, dev, ip) in [(&c, "vc", CLIENT_IP), (&s, "vs", SERVER_IP)] {
        ns.sh_ok(&format!(
            "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && ip addr add {ip}/24 dev {dev} && ip link set {dev} up"
        ));
    }
    let mut args = vec!["relay", "ra", "rb"];
    args.extend_from_slice(relay_args);
    let relay = r.tapstack(&args);
    relay.wait_ready();
    Some(World {
        client: c,
        server: s,
        relay,
        _relay_ns: r,
    })
}

/// One direction's exit line from the relay, as (frames in, dropped, oversize, largest frame).
fn direction(err: &str, from: &str) -> (u64, u64, u64, u64) {
    let line = err
        .lines()
        .find(|l| l.contains(&format!("relay {from} -> ")))
        .unwrap_or_else(|| panic!("no stats line for {from}:\n{err}"));
    let before = |word: &str| -> u64 {
        let i = line
            .find(word)
            .unwrap_or_else(|| panic!("no '{word}' in {line}"));
        line[..i]
            .split_whitespace()
            .last()
            .and_then(|n| n.trim_end_matches(',').parse().ok())
            .unwrap_or_else(|| panic!("no count before '{word}' in {line}"))
    };
    let largest = line
        .rsplit("largest ")
        .next()
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no largest frame in {line}"));
    (
        before(" frames in"),
        before(" dropped"),
        before(" oversize"),
        largest,
    )
}

/// How late (microseconds after their due time) the relay sent frames from `from`, on average.
fn late_us(err: &str, from: &str) -> u64 {
    err.lines()
        .find(|l| l.contains(&format!("relay {from} -> ")))
        .and_then(|l| l.split("sent late by ").nth(1))
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no lateness for {from}:\n{err}"))
}

/// The round-trip times ping printed, in milliseconds.
fn ping_times(out: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn test_relay_round_trip_is_twice_the_latency() {
    let Some(w) = world("rlat", &["--latency-ms", "5", "--seed", "1"]) else {
        return;
    };
    // The first ping also waits for ARP, which the relay delays too.
    w.client.sh_ok(&format!("ping -c 1 -W 2 {SERVER_IP}"));
    let out = w
        .client
        .sh_ok(&format!("ping -c 40 -i 0.02 -W 2 {SERVER_IP}"));
    let mut t = ping_times(&out);
    assert_eq!(t.len(), 40, "{out}");
    t.sort_by(|a, b| a.total_cmp(b));
    let (min, median) = (t[0], t[t.len() / 2]);
    eprintln!(
        "round trips through 5 ms each way: min {min} ms, median {median} ms, max {} ms",
        t[t.len() - 1]
    );
    // 5 ms each way. The ping times also hold the VM's own scheduling (a median of 10.3 ms on a quiet
    // machine, 10.7 on a busy one), so the bound here is loose; the relay's own lateness below is the
    // sharp check of its timer.
    assert!(min >= 10.0, "a frame left the relay early: {t:?}");
    assert!(median < 11.5, "round trips too long: {t:?}");
    let err = w.relay.stop_clean();
    eprintln!("{err}");
    let (a_in, a_drop, _, _) = direction(&err, "ra");
    let (b_in, b_drop, _, _) = direction(&err, "rb");
    assert!(a_in >= 41 && b_in >= 41, "{err}");
    assert_eq!((a_drop, b_drop), (0, 0), "{err}");
    // Each frame on its own: its timer's precision (measured: 0.06-0.3 ms late on average alone, 0.7-1.0
    // under CI's parallel tests on 2 cores). How late is a figure for the benchmark ("relay late"
    // column); here only a timer that is broken (frames held a whole extra interval) must fail.
    assert!(
        late_us(&err, "ra") < 3000 && late_us(&err, "rb") < 3000,
        "{err}"
    );
}

#[test]
fn test_relay_loses_what_it_is_told_to() {
    let Some(w) = world("rloss", &["--drop-chance", "0.1", "--seed", "7"]) else {
        return;
    };
    // Let ARP through (a lost ARP request costs a second).
    w.client
        .sh(&format!("ping -c 3 -i 0.2 -W 1 -w 5 {SERVER_IP}"));
    let n = 400;
    let out = w
        .client
        .sh(&format!("ping -c {n} -i 0.005 -W 1 {SERVER_IP}"));
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let answered = ping_times(&out).len() as f64;
    // A round trip survives when neither the request nor the reply is lost: 0.9 * 0.9.
    let loss = 1.0 - answered / n as f64;
    eprintln!("ping loss {loss:.3} (expected 0.19)");
    assert!((0.12..0.26).contains(&loss), "ping loss {loss}: {out}");
    let err = w.relay.stop_clean();
    eprintln!("{err}");
    for from in ["ra", "rb"] {
        let (frames, dropped, _, _) = direction(&err, from);
        assert!(frames >= 300, "{err}");
        let rate = dropped as f64 / frames as f64;
        assert!((0.06..0.14).contains(&rate), "{from}: {rate}: {err}");
    }
}

/// Reads until the peer closes; prints the byte count and SHA-256.
const PY_SINK: &str = r#"
import socket, sys, hashlib
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001)); s.listen(1)
print("listening", flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    n += len(b); h.update(b)
print(n, h.hexdigest(), flush=True)
"#;

/// Sends N seeded random bytes; prints the count and SHA-256.
const PY_SOURCE: &str = r#"
import socket, sys, hashlib, random
n = int(sys.argv[2]); data = random.Random(5).randbytes(n)
s = socket.create_connection((sys.argv[1], 5001), timeout=60)
s.sendall(data); s.shutdown(socket.SHUT_WR)
s.recv(1)
print(n, hashlib.sha256(data).hexdigest(), flush=True)
"#;

#[test]
fn test_relay_tcp_bulk_survives_loss_in_wire_sized_frames() {
    let Some(w) = world(
        "rtcp",
        &["--latency-ms", "2", "--drop-chance", "0.02", "--seed", "3"],
    ) else {
        return;
    };
    let mut cmd = w.server.cmd("python3");
    cmd.args(["-c", PY_SINK, SERVER_IP])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let sink = Tapstack::spawn(cmd);
    let listening = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        sink.stdout_text().contains("listening")
    });
    assert!(
        listening,
        "python sink never listened: {}",
        sink.stderr_text()
    );
    let bytes = 8 << 20;
    let sent = w.client.sh_ok(&format!(
        "timeout 90 python3 -c '{PY_SOURCE}' {SERVER_IP} {bytes}"
    ));
    let mut sink = sink;
    assert_eq!(sink.wait_exit(Duration::from_secs(30)), Some(0));
    let got = sink.stdout_text();
    assert_eq!(
        got.lines().last().unwrap_or("").trim(),
        sent.trim(),
        "bytes or digest differ"
    );
    let err = w.relay.stop_clean();
    eprintln!("{err}");
    let (c_in, c_drop, c_over, c_largest) = direction(&err, "ra");
    let (_, _, s_over, s_largest) = direction(&err, "rb");
    // 8 MiB in at most 1448-byte payloads: the kernel cut every GSO segment before the relay.
    assert!(c_in >= bytes / 1448, "{err}");
    assert!(c_drop > 0, "loss was configured: {err}");
    assert_eq!((c_over, s_over), (0, 0), "{err}");
    assert!(c_largest <= 1514 && s_largest <= 1514, "{err}");
    // How late frames left under load is printed, not asserted: on a busy machine the relay's writes,
    // which run the receiver's kernel network processing, take milliseconds (see the report).
    eprintln!(
        "sent late on average: {} us client -> server, {} us back",
        late_us(&err, "ra"),
        late_us(&err, "rb")
    );
}

#[test]
fn test_relay_queue_is_bounded_and_counts_overflow() {
    let Some(w) = world("rqueue", &["--latency-ms", "30", "--queue-frames", "4"]) else {
        return;
    };
    w.client.sh_ok(&format!("ping -c 1 -W 2 {SERVER_IP}"));
    // 20 echo requests at once: at most 4 fit in the 30 ms the relay holds each.
    let out = w
        .client
        .sh(&format!("ping -c 20 -l 20 -i 0.002 -W 1 {SERVER_IP}"));
    let answered = ping_times(&String::from_utf8_lossy(&out.stdout)).len();
    let err = w.relay.stop_clean();
    eprintln!("{err}");
    let line = err.lines().find(|l| l.contains("relay ra -> ")).unwrap();
    let overflow: u64 = line
        .split(", ")
        .find_map(|p| p.strip_suffix(" queue overflow")?.parse().ok())
        .unwrap_or_else(|| panic!("no overflow count in {line}"));
    assert!(overflow >= 10, "{err}");
    assert!(
        answered <= 8,
        "{answered} answered through a 4-frame queue: {err}"
    );
}
