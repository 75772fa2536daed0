//! End-to-end test fixtures: a fresh network namespace per test with its own `tap0` and loopback,
//! the tapstack binary started inside it, and clients run inside it too.
//!
//! Nothing here touches the root namespace's interfaces: every address lives inside the namespace,
//! which is deleted on drop, also when the test fails. Names are unique per process and test, so tests
//! run in parallel without colliding.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Says where a person sees it that the calling test cannot run here (libtest still reports it
/// "ok"); under `CI=true` that is a failure instead, since CI runs as root and a skip there means
/// something is broken.
pub fn skip(why: &str) {
    // libtest names each test's thread after the test.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let why = why.trim();
    if in_ci() {
        panic!("CI=true: {test} must run here, but it {why}");
    }
    // libtest captures what `eprint!` writes; a write on the stderr handle itself goes past the
    // capture, so the notice shows in plain `cargo test` output.
    let line = format!("SKIPPED {test}: {why}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// The `txqueuelen` tap-setup.sh gives the TAP device: room for a burst of SYNs while tapstack is busy.
pub const TAP_SETUP_TXQUEUELEN: u32 = 10000;

pub fn tapstack_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tapstack"))
}

enum Mode {
    /// `ip netns add NAME`: we are root.
    Root(String),
    /// `unshare -Urn`: an unprivileged user + net namespace held open by a sleeping child.
    User(Child),
}

/// A network namespace that exists for one test.
pub struct Netns {
    mode: Mode,
    pub name: String,
}

impl Netns {
    /// A fresh namespace with loopback up. `None` (after a loud message) when namespaces cannot be made
    /// here and CI is not asking for them.
    pub fn new(tag: &str) -> Option<Netns> {
        let name = format!(
            "ts-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let ns = if is_root() {
            let ok = Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                skip("needs `ip netns add` to create a network namespace, and it failed (is iproute2 installed?)");
                return None;
            }
            Netns {
                mode: Mode::Root(name.clone()),
                name,
            }
        } else {
            let child = Command::new("unshare")
                .args(["-Urn", "sleep", "600"])
                .stdin(Stdio::null())
                .spawn();
            let Ok(child) = child else {
                skip("needs root (CAP_NET_ADMIN) to create a network namespace; not root, and `unshare -Urn` (an unprivileged one) is not available");
                return None;
            };
            std::thread::sleep(Duration::from_millis(100));
            let ns = Netns {
                mode: Mode::User(child),
                name,
            };
            if !ns.sh("true").status.success() {
                skip("needs root (CAP_NET_ADMIN) to create a network namespace; not root, and unprivileged user namespaces are not allowed here");
                return None;
            }
            ns
        };
        ns.sh_ok("ip link set lo up");
        Some(ns)
    }

    /// A fresh namespace holding `tap0` with the host side of the usual addresses, link up.
    pub fn with_tap(tag: &str) -> Option<Netns> {
        let ns = Netns::new(tag)?;
        let out = ns.sh("ip tuntap add dev tap0 mode tap && \
             ip addr add 192.168.69.100/24 dev tap0 && \
             ip -6 addr add fdaa::100/64 dev tap0 nodad && \
             ip -6 addr add fe80::100/64 dev tap0 nodad && \
             ip link set tap0 up");
        if !out.status.success() {
            skip(&format!(
                "needs a TAP device in its network namespace, and creating one failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return None;
        }
        Some(ns)
    }

    /// A fresh namespace with tap0 and `tapstack serve --tap tap0 -q ARGS` in it, ready; `None`
    /// (after a visible skip) where namespaces cannot be made.
    pub fn serving(tag: &str, args: &[&str]) -> Option<(Netns, Tapstack)> {
        let ns = Netns::with_tap(tag)?;
        let mut all = vec!["serve", "--tap", "tap0", "-q"];
        all.extend_from_slice(args);
        let ts = ns.tapstack(&all);
        ts.wait_ready();
        Some((ns, ts))
    }

    /// Sets tap0's queue towards tapstack (`txqueuelen`); [`TAP_SETUP_TXQUEUELEN`] is what
    /// tap-setup.sh sets. [`Netns::with_tap`] keeps the kernel's default (1000), which the existing
    /// tests and their figures were measured with.
    pub fn set_tap_txqueuelen(&self, n: u32) {
        self.sh_ok(&format!("ip link set dev tap0 txqueuelen {n}"));
    }

    /// A command that runs inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        match &self.mode {
            Mode::Root(name) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", name, program]);
                c
            }
            Mode::User(child) => {
                let mut c = Command::new("nsenter");
                c.args([
                    "--preserve-credentials",
                    "-U",
                    "-n",
                    "-t",
                    &child.id().to_string(),
                    program,
                ]);
                c
            }
        }
    }

    pub fn sh(&self, script: &str) -> Output {
        self.cmd("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("run sh in the namespace")
    }

    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "`{script}` failed in {}: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a python3 program inside the namespace with `args`; returns its stdout, asserting success.
    pub fn python(&self, program: &str, args: &[&str]) -> String {
        let out = self
            .cmd("python3")
            .arg("-c")
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run python3 in the namespace");
        assert!(
            out.status.success(),
            "python3 failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `tapstack ARGS` inside the namespace.
    pub fn tapstack(&self, args: &[&str]) -> Tapstack {
        self.tapstack_env(args, &[])
    }

    pub fn tapstack_env(&self, args: &[&str], env: &[(&str, &str)]) -> Tapstack {
        let bin = tapstack_bin();
        let mut cmd = self.cmd(bin.to_str().unwrap());
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Tapstack::spawn(cmd)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        match &mut self.mode {
            Mode::Root(name) => {
                // Processes still inside would keep the namespace alive: end the ones we started first.
                let _ = Command::new("ip")
                    .args(["netns", "pids", name])
                    .output()
                    .map(|o| {
                        for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                            let _ = Command::new("kill").args(["-KILL", pid]).status();
                        }
                    });
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
            Mode::User(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

#[derive(Default)]
struct Lines {
    lines: Vec<String>,
    closed: bool,
}

/// A running tapstack with its standard error collected line by line.
pub struct Tapstack {
    pub child: Child,
    stderr: Arc<(Mutex<Lines>, Condvar)>,
    stdout: Arc<(Mutex<Lines>, Condvar)>,
}

fn collect(r: impl std::io::Read + Send + 'static, into: Arc<(Mutex<Lines>, Condvar)>) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            let (m, cv) = &*into;
            m.lock().unwrap().lines.push(line);
            cv.notify_all();
        }
        let (m, cv) = &*into;
        m.lock().unwrap().closed = true;
        cv.notify_all();
    });
}

impl Tapstack {
    /// Ends it with SIGTERM, checks it exits 0 without a panic, and returns its standard error.
    pub fn stop_clean(mut self) -> String {
        self.signal("TERM");
        let code = self.wait_exit(Duration::from_secs(5));
        let err = self.stderr_text();
        assert_eq!(code, Some(0), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        err
    }

    pub fn spawn(mut cmd: Command) -> Tapstack {
        let mut child = cmd.spawn().expect("start tapstack");
        let stderr = Arc::new((Mutex::new(Lines::default()), Condvar::new()));
        let stdout = Arc::new((Mutex::new(Lines::default()), Condvar::new()));
        collect(child.stderr.take().unwrap(), stderr.clone());
        collect(child.stdout.take().unwrap(), stdout.clone());
        Tapstack {
            child,
            stderr,
            stdout,
        }
    }

    fn wait_in(buf: &Arc<(Mutex<Lines>, Condvar)>, pat: &str, timeout: Duration) -> Option<String> {
        let (m, cv) = &**buf;
        let deadline = Instant::now() + timeout;
        let mut g = m.lock().unwrap();
        loop {
            if let Some(l) = g.lines.iter().find(|l| l.contains(pat)) {
                return Some(l.clone());
            }
            let now = Instant::now();
            if g.closed || now >= deadline {
                return None;
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// Waits for a stderr line containing `pat`.
    pub fn wait_for(&self, pat: &str, timeout: Duration) -> Option<String> {
        Self::wait_in(&self.stderr, pat, timeout)
    }

    /// Waits for the ready line; panics with the output so far if it does not come.
    pub fn wait_ready(&self) -> String {
        match self.wait_for("ready:", Duration::from_secs(20)) {
            Some(l) => l,
            None => panic!(
                "tapstack never became ready; stderr:\n{}",
                self.stderr_text()
            ),
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.0.lock().unwrap().lines.join("\n")
    }

    pub fn stdout_text(&self) -> String {
        self.stdout.0.lock().unwrap().lines.join("\n")
    }

    /// Waits for the stdout and stderr collectors to see end of file (after the process exited).
    pub fn drain(&self, timeout: Duration) {
        for buf in [&self.stderr, &self.stdout] {
            let (m, cv) = &**buf;
            let deadline = Instant::now() + timeout;
            let mut g = m.lock().unwrap();
            while !g.closed && Instant::now() < deadline {
                g = cv.wait_timeout(g, Duration::from_millis(50)).unwrap().0;
            }
        }
    }

    pub fn write_stdin(&mut self, s: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin piped");
        stdin
            .write_all(s.as_bytes())
            .expect("write to tapstack's stdin");
        stdin.flush().unwrap();
    }

    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit; returns its exit code (None if killed by a signal or timed out).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                self.drain(Duration::from_secs(2));
                return st.code();
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Tapstack {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A python3 TCP client: sends N random bytes (seeded) while reading back, checks byte-exact echo.
/// Arguments: host, port, N, and optionally how long one read or write may wait (20 s).
pub const PY_ECHO_BULK: &str = r#"
import socket, sys, threading, hashlib, random
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
wait = float(sys.argv[4]) if len(sys.argv) > 4 else 20
data = random.Random(n).randbytes(n)
s = socket.create_connection((host, port), timeout=wait)
got = bytearray()
def rx():
    while len(got) < n:
        b = s.recv(65536)
        if not b:
            break
        got.extend(b)
t = threading.Thread(target=rx); t.start()
s.sendall(data)
t.join(wait + 10)
s.shutdown(socket.SHUT_WR)
tail = s.recv(10)
s.close()
assert bytes(got) == data, f"echo mismatch: sent {n}, got {len(got)}"
assert tail == b"", "data after the echo"
print("OK", hashlib.sha256(got).hexdigest())
"#;

/// A python3 UDP client: sends one datagram, prints the reply.
pub const PY_UDP: &str = r#"
import socket, sys
host, port, msg = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(3)
for attempt in range(3):
    s.sendto(msg, (host, port))
    try:
        data, _ = s.recvfrom(65536)
        print(data.decode("latin-1"), end="")
        break
    except socket.timeout:
        continue
else:
    sys.exit("no UDP reply")
"#;

/// N TCP clients connect at the same moment, each echoes a distinct message; prints "served K refused R".
pub const PY_CONCURRENT: &str = r#"
import socket, sys, threading
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
barrier = threading.Barrier(n)
ok, bad = [0], []
lock = threading.Lock()
def client(i):
    msg = f"client {i} says hello\n".encode()
    try:
        barrier.wait(10)
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            b = s.recv(4096)
            if not b:
                break
            got += b
        s.close()
        with lock:
            if got == msg:
                ok[0] += 1
            else:
                bad.append(f"{i}: got {got!r}")
    except Exception as e:
        with lock:
            bad.append(f"{i}: {e!r}")
ts = [threading.Thread(target=client, args=(i,)) for i in range(n)]
[t.start() for t in ts]
[t.join(30) for t in ts]
print(f"served {ok[0]} refused {len(bad)}")
for b in bad[:5]:
    print(b)
"#;

/// `GET /netstat.json` on the host side of the http service (127.0.0.1:10080 by default), parsed. The
/// host side is used so that the poll itself does not show up in the userspace stack's resources.
pub fn netstat_json(ns: &Netns, port: u16) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{port}/netstat.json");
    let mut last = String::new();
    for _ in 0..20 {
        let out = ns
            .cmd("curl")
            .args(["-sS", "--fail", "--max-time", "5", &url])
            .stdin(Stdio::null())
            .output()
            .expect("run curl in the namespace");
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).expect("netstat.json parses");
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("GET {url} failed: {last}");
}

/// Frame crafting for python3 inside a namespace: Ethernet + IPv4/IPv6 + TCP/UDP with correct (or
/// deliberately wrong) checksums, and a raw AF_PACKET socket on the kernel side of `tap0`, whose
/// frames reach tapstack as if they came off the wire.
pub const PY_FRAMES: &str = r#"
import socket, struct, time, os, sys, json, random
STACK_MAC = bytes.fromhex("020000000001")
KMAC = bytes.fromhex(open("/sys/class/net/tap0/address").read().strip().replace(":", ""))
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def eth(payload, etype=0x0800, dst=STACK_MAC):
    return dst + KMAC + struct.pack("!H", etype) + payload
def ipv4(payload, src="192.168.69.100", dst="192.168.69.1", proto=6, ihl=5, total=None, good=True, ttl=64):
    tl = total if total is not None else 20 + len(payload)
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tl & 0xffff, 1, 0x4000, ttl, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    c = csum(h)
    if not good:
        c ^= 0x5a5a
    return h[:10] + struct.pack("!H", c) + h[12:] + payload
def pseudo(src, dst, proto, length):
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto, length)
def tcp(sport, dport, seq=0, ack=0, flags=0x02, win=65535, opts=b"", payload=b"", src="192.168.69.100",
        dst="192.168.69.1", doff=None, good=True):
    while len(opts) % 4:
        opts += b"\0"
    off = doff if doff is not None else (20 + len(opts)) // 4
    h = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xffffffff, ack & 0xffffffff, (off & 0xf) << 4,
                    flags, win, 0, 0) + opts
    seg = h + payload
    c = csum(pseudo(src, dst, 6, len(seg)) + seg)
    if not good:
        c ^= 0x5a5a
    return seg[:16] + struct.pack("!H", c) + seg[18:]
def udp(sport, dport, payload, src="192.168.69.100", dst="192.168.69.1", good=True, length=None):
    ln = length if length is not None else 8 + len(payload)
    h = struct.pack("!HHHH", sport, dport, ln, 0)
    c = csum(pseudo(src, dst, 17, 8 + len(payload)) + h + payload)
    if c == 0:
        c = 0xffff
    if not good:
        c ^= 0x5a5a
    return h[:6] + struct.pack("!H", c) + payload
def tcp_frame(sport, dport, src="192.168.69.100", **kw):
    return eth(ipv4(tcp(sport, dport, src=src, **kw), src=src))
def udp_frame(sport, dport, payload, src="192.168.69.100", dst="192.168.69.1", dst_mac=STACK_MAC):
    return eth(ipv4(udp(sport, dport, payload, src=src, dst=dst), src=src, dst=dst, proto=17), dst=dst_mac)
def raw_socket():
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(("tap0", 0))
    return s
def tx_dropped():
    return int(open("/sys/class/net/tap0/statistics/tx_dropped").read())
def netstat():
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", 10080, timeout=5)
    c.request("GET", "/netstat.json", headers={"Connection": "close"})
    js = json.loads(c.getresponse().read())
    c.close()
    return js
"#;
