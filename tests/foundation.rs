//! The foundation end to end: one tapstack on a TAP device in a fresh namespace, the kernel stack of
//! that namespace as its peer.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn ping_v4_and_v6_answered_by_the_userspace_stack() {
    let Some(ns) = Netns::with_tap("ping") else {
        return;
    };
    let ts = ns.tapstack(&["serve", "--tap", "tap0", "--serve", "echo"]);
    ts.wait_ready();
    let out = ns.sh_ok("ping -c 3 -i 0.2 -W 2 192.168.69.1");
    assert!(out.contains("3 received"), "{out}");
    let out = ns.sh_ok("ping -6 -c 3 -i 0.2 -W 2 fdaa::1");
    assert!(out.contains("3 received"), "{out}");
}

#[test]
fn one_mebibyte_echoed_byte_exact_on_both_stacks() {
    let Some(ns) = Netns::with_tap("bulk") else {
        return;
    };
    let ts = ns.tapstack(&["serve", "--tap", "tap0", "-q"]);
    let ready = ts.wait_ready();
    assert!(ready.contains("stack tcp 192.168.69.1:7 echo"), "{ready}");
    assert!(ready.contains("host tcp 127.0.0.1:10007 echo"), "{ready}");
    let a = ns.python(PY_ECHO_BULK, &["192.168.69.1", "7", "1048576"]);
    let b = ns.python(PY_ECHO_BULK, &["127.0.0.1", "10007", "1048576"]);
    assert!(a.starts_with("OK "), "{a}");
    assert_eq!(a, b, "both stacks must return the same bytes");
    let v6 = ns.python(PY_ECHO_BULK, &["fdaa::1", "7", "100000"]);
    assert!(v6.starts_with("OK "), "{v6}");
}

#[test]
fn udp_echo_on_both_stacks() {
    let Some(ns) = Netns::with_tap("udp") else {
        return;
    };
    let ts = ns.tapstack(&["serve", "--tap", "tap0", "--serve", "echo"]);
    ts.wait_ready();
    assert_eq!(
        ns.python(PY_UDP, &["192.168.69.1", "7", "hello stack"]),
        "hello stack"
    );
    assert_eq!(
        ns.python(PY_UDP, &["127.0.0.1", "10007", "hello host"]),
        "hello host"
    );
    assert_eq!(ns.python(PY_UDP, &["fdaa::1", "7", "hello v6"]), "hello v6");
}

#[test]
fn fifty_simultaneous_clients_all_served() {
    let Some(ns) = Netns::with_tap("conc") else {
        return;
    };
    let ts = ns.tapstack(&["serve", "--tap", "tap0", "--serve", "echo", "-q"]);
    ts.wait_ready();
    for (host, port) in [("192.168.69.1", "7"), ("127.0.0.1", "10007")] {
        let out = ns.python(PY_CONCURRENT, &[host, port, "50"]);
        assert!(out.starts_with("served 50 refused 0"), "{host}: {out}");
    }
    assert!(
        !ts.stderr_text().contains("refusing SYN"),
        "{}",
        ts.stderr_text()
    );
}

#[test]
fn connection_limit_refuses_with_rst_and_counts() {
    let Some(ns) = Netns::with_tap("limit") else {
        return;
    };
    let ts = ns.tapstack(&[
        "serve",
        "--tap",
        "tap0",
        "--serve",
        "echo",
        "--max-connections",
        "3",
        "-q",
    ]);
    ts.wait_ready();
    // Three connections held open, the fourth is refused at once (RST: ConnectionRefusedError).
    let out = ns.python(
        r#"
import socket
held = [socket.create_connection(("192.168.69.1", 7), timeout=5) for _ in range(3)]
for s in held:
    s.sendall(b"x"); assert s.recv(1) == b"x"
try:
    socket.create_connection(("192.168.69.1", 7), timeout=5)
    print("fourth accepted")
except ConnectionRefusedError:
    print("fourth refused")
for s in held:
    s.close()
"#,
        &[],
    );
    assert_eq!(out.trim(), "fourth refused");
    assert!(
        ts.wait_for("refusing SYN", Duration::from_secs(2))
            .is_some(),
        "{}",
        ts.stderr_text()
    );
}

#[test]
fn sigterm_closes_connections_and_exits_zero_within_a_second() {
    let Some(ns) = Netns::with_tap("term") else {
        return;
    };
    let mut ts = ns.tapstack(&["serve", "--tap", "tap0", "--serve", "echo"]);
    ts.wait_ready();
    // An open connection on each stack, idle; shutdown must FIN them.
    let mut client = ns
        .cmd("python3")
        .arg("-c")
        .arg(
            r#"
import socket, sys
a = socket.create_connection(("192.168.69.1", 7), timeout=10)
b = socket.create_connection(("127.0.0.1", 10007), timeout=10)
print("connected", flush=True)
def end(s):
    try:
        return s.recv(10)
    except OSError as e:
        return repr(e)
ra = end(a); rb = end(b)
print("eof" if ra == b"" and rb == b"" else f"stack {ra!r} host {rb!r}", flush=True)
"#,
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "connected");
    let start = Instant::now();
    ts.signal("TERM");
    let code = ts.wait_exit(Duration::from_secs(5));
    let took = start.elapsed();
    assert_eq!(code, Some(0), "{}", ts.stderr_text());
    assert!(took < Duration::from_millis(1500), "shutdown took {took:?}");
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "eof", "clients must see a clean FIN");
    let _ = client.wait();
}

#[test]
fn deleting_the_tap_device_exits_one_naming_it() {
    let Some(ns) = Netns::with_tap("del") else {
        return;
    };
    let mut ts = ns.tapstack(&["serve", "--tap", "tap0", "--serve", "echo"]);
    ts.wait_ready();
    ns.sh_ok("ping -c 1 -W 2 192.168.69.1 >/dev/null");
    ns.sh_ok("ip link del tap0");
    let code = ts.wait_exit(Duration::from_secs(5));
    let err = ts.stderr_text();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("tap0"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn missing_tap_device_is_a_clear_error() {
    let Some(ns) = Netns::new("miss") else { return };
    let mut ts = ns.tapstack(&["serve", "--tap", "tap9"]);
    let code = ts.wait_exit(Duration::from_secs(5));
    let err = ts.stderr_text();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("tap9") && err.contains("tap-setup.sh"),
        "{err}"
    );
}

#[test]
fn host_port_in_use_is_a_clear_error() {
    let Some(ns) = Netns::with_tap("inuse") else {
        return;
    };
    let mut holder = ns
        .cmd("python3")
        .args(["-c", "import socket,time\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',10007));s.listen()\nprint('held',flush=True)\ntime.sleep(30)"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let mut ts = ns.tapstack(&["serve", "--tap", "tap0", "--serve", "echo"]);
    let code = ts.wait_exit(Duration::from_secs(5));
    let _ = holder.kill();
    let _ = holder.wait();
    let err = ts.stderr_text();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("127.0.0.1:10007") && err.contains("in use"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_two_with_one_line() {
    for args in [
        vec!["serve", "--serve", "gopher"],
        vec!["serve", "--addr", "1.2.3.4/40"],
        vec!["serve", "--mac", "01:00:00:00:00:00"],
        vec!["serve", "--serve", "echo,discard:7"],
        vec!["serve", "--serve", "echo:99999"],
    ] {
        let out = std::process::Command::new(tapstack_bin())
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn link_down_for_two_seconds_then_service_resumes() {
    let Some(ns) = Netns::with_tap("flap") else {
        return;
    };
    let mut ts = ns.tapstack(&["serve", "--tap", "tap0", "--serve", "echo", "-q"]);
    ts.wait_ready();
    assert_eq!(
        ns.python(PY_UDP, &["192.168.69.1", "7", "before"]),
        "before"
    );
    ns.sh_ok("ip link set tap0 down");
    // While down, nothing crosses; the loop must keep running (and count what it could not send).
    let out = ns.sh("ping -c 2 -i 0.5 -W 1 192.168.69.1");
    assert!(
        !out.status.success(),
        "ping must fail while the link is down"
    );
    std::thread::sleep(Duration::from_secs(2));
    ns.sh_ok("ip link set tap0 up");
    let out = ns.sh_ok("ping -c 3 -i 0.2 -W 2 192.168.69.1");
    assert!(out.contains("3 received"), "{out}");
    let echo = ns.python(PY_ECHO_BULK, &["192.168.69.1", "7", "65536"]);
    assert!(echo.starts_with("OK "), "{echo}");
    ts.signal("TERM");
    assert_eq!(
        ts.wait_exit(Duration::from_secs(5)),
        Some(0),
        "{}",
        ts.stderr_text()
    );
}

#[test]
fn bulk_echo_without_offload_and_with_faults_on_the_tap() {
    let Some(ns) = Netns::with_tap("nooff") else {
        return;
    };
    let ts = ns.tapstack(&[
        "serve",
        "--tap",
        "tap0",
        "--serve",
        "echo,discard",
        "-q",
        "--no-offload",
    ]);
    ts.wait_ready();
    assert!(
        !ts.stderr_text().contains("offload"),
        "{}",
        ts.stderr_text()
    );
    let out = ns.python(PY_ECHO_BULK, &["192.168.69.1", "7", "1048576"]);
    assert!(out.starts_with("OK "), "{out}");
    drop(ts);
    // Fault injection on the TAP: offload is off by itself, and the echo still completes byte-exact.
    let ts = ns.tapstack(&[
        "serve",
        "--tap",
        "tap0",
        "--serve",
        "echo",
        "-q",
        "--drop-chance",
        "0.02",
        "--seed",
        "4",
    ]);
    ts.wait_ready();
    assert!(
        !ts.stderr_text().contains("segmentation offload"),
        "{}",
        ts.stderr_text()
    );
    let out = ns.python(PY_ECHO_BULK, &["192.168.69.1", "7", "262144"]);
    assert!(out.starts_with("OK "), "{out}");
    drop(ts);
    let ts = ns.tapstack(&["serve", "--tap", "tap0", "--serve", "echo", "-q"]);
    let ready = ts
        .wait_for("attached to TAP device", std::time::Duration::from_secs(10))
        .unwrap();
    assert!(
        ready.contains("segmentation offload"),
        "offload is the default: {ready}"
    );
}
