//! The system side of the benchmark: network namespaces it creates and always deletes, threads that
//! enter them, the tapstack process it starts and always stops, and readings from /proc.
//!
//! Safety rules kept here: every namespace is named `tsbench-<our pid>-<tag>`, is registered before it
//! is configured, and is deleted by its guard's Drop, by the Ctrl-C handler, or at the latest by the next
//! bench run (which deletes `tsbench-<pid>-*` namespaces whose pid no longer runs). No address is ever
//! given to an interface of the root namespace: every `ip` command runs inside one of ours. The only
//! processes signalled are the ones started here, by their PID.

use std::fs;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the Ctrl-C handler must undo: child PIDs to stop, namespaces to delete, files to remove.
#[derive(Default)]
struct Registry {
    pids: Vec<u32>,
    namespaces: Vec<String>,
    dirs: Vec<PathBuf>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    pids: Vec::new(),
    namespaces: Vec::new(),
    dirs: Vec::new(),
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Installs the SIGINT/SIGTERM/SIGHUP handler: stop our children, delete our namespaces, exit 130.
pub fn install_cleanup_on_signal() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        eprintln!("warning: cannot install the Ctrl-C cleanup handler");
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            eprintln!("\nsignal {sig}: cleaning up");
            cleanup_all();
            std::process::exit(130);
        }
    });
}

/// Undoes everything still registered (idempotent).
pub fn cleanup_all() {
    let (pids, namespaces, dirs) = {
        let mut r = registry();
        (
            std::mem::take(&mut r.pids),
            std::mem::take(&mut r.namespaces),
            std::mem::take(&mut r.dirs),
        )
    };
    for pid in pids {
        stop_pid(pid, Duration::from_secs(2));
    }
    for ns in namespaces {
        delete_netns(&ns);
    }
    for d in dirs {
        let _ = fs::remove_dir_all(d);
    }
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// SIGTERM, then SIGKILL after `grace`. Only for PIDs this process started.
fn stop_pid(pid: u32, grace: Duration) {
    // SAFETY: kill(2) with a PID we spawned and have not reaped yet (so it cannot have been reused).
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if !pid_alive(pid) || zombie(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

fn zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

fn delete_netns(name: &str) {
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
}

/// Deletes `tsbench-<pid>-*` namespaces left behind by bench runs that were killed (SIGKILL leaves no
/// chance to clean up); namespaces of a bench that still runs are left alone.
pub fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("tsbench-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !pid_alive(pid) {
            eprintln!("removing stale namespace {name} (its bench, pid {pid}, is gone)");
            delete_netns(name);
        }
    }
}

/// Sets the kernel's congestion control for one socket (`TCP_CONGESTION`; a listener passes it on to
/// the connections it accepts) and reads it back. A network namespace may not choose a default outside
/// `net.ipv4.tcp_allowed_congestion_control`, but a socket of a process with CAP_NET_ADMIN may use any
/// algorithm the kernel has.
pub fn set_congestion(sock: &impl AsRawFd, cc: &str) -> std::io::Result<()> {
    let fd = sock.as_raw_fd();
    // SAFETY: setsockopt on a descriptor the caller owns, with a pointer and length of a live slice.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            cc.as_ptr().cast(),
            cc.len() as libc::socklen_t,
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        return Err(std::io::Error::new(
            e.kind(),
            format!("TCP_CONGESTION {cc}: {e}"),
        ));
    }
    let mut buf = [0u8; 16];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: getsockopt into a buffer of `len` bytes that lives across the call.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let got = &buf[..(len as usize).min(buf.len())];
    let got = String::from_utf8_lossy(got.split(|&b| b == 0).next().unwrap_or(&[]));
    if r != 0 || got != cc {
        return Err(std::io::Error::other(format!(
            "TCP_CONGESTION {cc}: the socket uses {got:?}"
        )));
    }
    Ok(())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A scratch directory for tapstack's logs, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> io::Result<TempDir> {
        let p = std::env::temp_dir().join(format!("tsbench-{}", std::process::id()));
        fs::create_dir_all(&p)?;
        registry().dirs.push(p.clone());
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
        registry().dirs.retain(|d| d != &self.0);
    }
}

/// A network namespace of ours, deleted on drop.
pub struct Netns {
    pub name: String,
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Netns {
    /// `tsbench-<pid>-<tag>`, with loopback up.
    pub fn create(tag: &str) -> Result<Netns, String> {
        let name = format!("tsbench-{}-{tag}", std::process::id());
        // Registered first: whatever happens next, cleanup knows about it.
        registry().namespaces.push(name.clone());
        let ns = Netns { name };
        run(Command::new("ip").args(["netns", "add", &ns.name]))?;
        ns.sh("ip link set lo up")?;
        Ok(ns)
    }

    /// Runs `sh -c script` inside the namespace.
    pub fn sh(&self, script: &str) -> Result<String, String> {
        run(Command::new("ip").args(["netns", "exec", &self.name, "sh", "-c", script]))
    }

    /// A command that runs inside the namespace.
    pub fn cmd(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `f` on a fresh thread inside the namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<io::Result<T>> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = fs::File::open(&path)?;
            // SAFETY: setns(2) with a valid namespace fd; it only affects this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })
    }

    /// Runs `f` inside the namespace and waits for it.
    pub fn run_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        match self.spawn(f).join() {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("cannot enter namespace {}: {e}", self.name)),
            Err(_) => Err("a peer thread panicked".to_string()),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete_netns(&self.name);
        registry().namespaces.retain(|n| n != &self.name);
    }
}

/// Kernel-side tuning inside one of our namespaces, for clients that open tens of thousands of
/// connections: a wide ephemeral port range, and no TIME-WAIT sockets (the kernel client closes first,
/// so without this 5 runs of connection tests would run out of ports). Per-namespace sysctls only.
pub const CLIENT_SYSCTLS: &str = "sysctl -qw net.ipv4.ip_local_port_range='1024 65535' && \
     sysctl -qw net.ipv4.tcp_max_tw_buckets=0 && \
     sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && \
     sysctl -qw net.ipv6.conf.default.disable_ipv6=1";

/// A namespace with `tap0` (host side 192.168.69.100/24), as the tests make it.
pub fn tap_netns(tag: &str) -> Result<Netns, String> {
    let ns = Netns::create(tag)?;
    ns.sh(CLIENT_SYSCTLS)?;
    ns.sh("ip tuntap add dev tap0 mode tap && \
         ip addr add 192.168.69.100/24 dev tap0 && \
         ip link set tap0 up")?;
    Ok(ns)
}

/// Two namespaces joined by a veth pair (192.168.70.1 in `a`, .2 in `b`), with TSO/GSO/GRO off so that
/// the kernel moves 1500-byte frames like tapstack's path must. Returns how offloads were turned off.
pub fn veth_pair(tag: &str) -> Result<(Netns, Netns, &'static str), String> {
    let a = Netns::create(&format!("{tag}a"))?;
    let b = Netns::create(&format!("{tag}b"))?;
    a.sh(CLIENT_SYSCTLS)?;
    b.sh(CLIENT_SYSCTLS)?;
    a.sh(&format!(
        "ip link add va type veth peer name vb netns {} && \
         ip addr add 192.168.70.1/24 dev va && ip link set va up",
        b.name
    ))?;
    b.sh("ip addr add 192.168.70.2/24 dev vb && ip link set vb up")?;
    let off = "ethtool -K {} tso off gso off gro off 2>/dev/null";
    let how = if a.sh(&off.replace("{}", "va")).is_ok() && b.sh(&off.replace("{}", "vb")).is_ok() {
        "ethtool -K tso/gso/gro off"
    } else {
        // No ethtool: one segment per GSO packet is the same thing as far as frame sizes go.
        a.sh("ip link set dev va gso_max_segs 1")?;
        b.sh("ip link set dev vb gso_max_segs 1")?;
        "ip link gso_max_segs 1 (ethtool missing; GRO left as is)"
    };
    Ok((a, b, how))
}

/// The tapstack binary: beside the example's directory (`target/release/tapstack`), built first when
/// running under cargo so that it is never stale.
/// `TAPSTACK_BENCH_BIN=/path/to/tapstack` measures another build instead (to compare two builds under
/// the same conditions, run them alternately).
pub fn tapstack_binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("TAPSTACK_BENCH_BIN") {
        let bin = PathBuf::from(bin);
        return match bin.exists() {
            true => Ok(bin),
            false => Err(format!("TAPSTACK_BENCH_BIN: {} not found", bin.display())),
        };
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .ok_or("cannot locate the target directory")?
        .to_path_buf();
    if let Ok(cargo) = std::env::var("CARGO") {
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut c = Command::new(cargo);
        c.args(["build", "--quiet", "--bin", "tapstack"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            c.arg("--release");
        }
        let st = c.status().map_err(|e| format!("cargo build: {e}"))?;
        if !st.success() {
            return Err("building the tapstack binary failed".into());
        }
    }
    let bin = dir.join("tapstack");
    if !bin.exists() {
        return Err(format!(
            "{} not found: run `cargo build --release` first",
            bin.display()
        ));
    }
    Ok(bin)
}

/// A running tapstack (or another server of the bench's, see [`Tapstack::start_program`]), stopped
/// (SIGTERM, then SIGKILL) on drop.
pub struct Tapstack {
    child: Option<Child>,
    pub pid: u32,
    pub log: PathBuf,
}

impl Tapstack {
    /// Starts `tapstack ARGS` inside `ns` with stderr to `log`, and waits for its `ready:` line.
    pub fn start(ns: &Netns, bin: &Path, args: &[&str], log: PathBuf) -> Result<Tapstack, String> {
        Self::start_program(ns, bin, args, log, "tapstack")
    }

    /// [`Tapstack::start`] for any server that prints `ready:` on stderr once serving; `comm` is the
    /// name its process must have (`/proc/PID/comm`, at most 15 bytes).
    pub fn start_program(
        ns: &Netns,
        bin: &Path,
        args: &[&str],
        log: PathBuf,
        comm: &str,
    ) -> Result<Tapstack, String> {
        let file = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = ns
            .cmd(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| format!("cannot start {comm}: {e}"))?;
        let pid = child.id();
        registry().pids.push(pid);
        let mut t = Tapstack {
            child: Some(child),
            pid,
            log,
        };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if t.log_text().contains("ready:") {
                break;
            }
            if let Some(c) = t.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(format!("{comm} exited ({st}): {}", t.log_text()));
                }
            }
            if Instant::now() > end {
                return Err(format!("{comm} never became ready: {}", t.log_text()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // `ip netns exec` execs the program: the PID must be the program's own.
        let got = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if got.trim() != comm {
            return Err(format!("pid {pid} is `{}`, not {comm}", got.trim()));
        }
        Ok(t)
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        let _ = fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    pub fn log_len(&self) -> u64 {
        fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    pub fn status_field(&self, key: &str) -> Option<u64> {
        status_field(self.pid, key)
    }

    /// User + system CPU time so far.
    pub fn cpu(&self) -> Duration {
        cpu_time(self.pid)
    }

    /// Asks for the counters line (SIGUSR1) and returns the `stack:` line it logs.
    pub fn stats_line(&self) -> Option<String> {
        // SAFETY: our own child, not reaped yet.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGUSR1) };
        std::thread::sleep(Duration::from_millis(200));
        self.log_text()
            .lines()
            .rev()
            .find(|l| l.contains("stack: packets"))
            .map(|l| l.trim().to_string())
    }

    /// The userspace stack's frame counters (in, out), from the counters line.
    pub fn frames(&self) -> Option<(u64, u64)> {
        let line = self.stats_line()?;
        let rest = &line[line.find("stack: packets in ")? + "stack: packets in ".len()..];
        let mut it = rest.split([' ', ',']).filter(|w| !w.is_empty());
        let rx = it.next()?.parse().ok()?;
        (it.next()? == "out").then_some(())?;
        let tx = it.next()?.parse().ok()?;
        Some((rx, tx))
    }

    /// SIGTERM and wait (SIGKILL after 3 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_pid(self.pid, Duration::from_secs(3));
            let _ = c.wait();
            registry().pids.retain(|p| *p != self.pid);
        }
    }
}

impl Drop for Tapstack {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `VmRSS:`-style field of /proc/PID/status, in its unit (kB for sizes).
pub fn status_field(pid: u32, key: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a process.
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(s) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    let Some((_, rest)) = s.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3 of stat, so utime (14) and stime (15) are at 11 and 12.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    Duration::from_secs_f64(ticks as f64 / clk_tck())
}

/// Raises RLIMIT_NOFILE to at least `want` (root may raise the hard limit). Returns the soft limit.
pub fn raise_nofile(want: u64) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `r`.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    if r.rlim_cur >= want {
        return r.rlim_cur;
    }
    let new = libc::rlimit {
        rlim_cur: want.max(r.rlim_cur),
        rlim_max: want.max(r.rlim_max),
    };
    // SAFETY: setrlimit reads `new`.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
        return new.rlim_cur;
    }
    let fallback = libc::rlimit {
        rlim_cur: r.rlim_max,
        rlim_max: r.rlim_max,
    };
    // SAFETY: as above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &fallback) };
    r.rlim_max
}

/// nproc, kernel release, CPU model.
pub fn machine() -> (usize, String, String) {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    (nproc, kernel, cpu)
}

/// `perf record` attached to a process for the length of one test (`--profile DIR`).
pub struct Profiler(Option<Child>);

impl Profiler {
    pub fn start(dir: Option<&Path>, pid: u32, name: &str) -> Profiler {
        let Some(dir) = dir else {
            return Profiler(None);
        };
        let out = dir.join(format!("{name}.perf.data"));
        let child = Command::new("perf")
            .args([
                "record",
                "-q",
                "-F",
                "1999",
                "-g",
                "-p",
                &pid.to_string(),
                "-o",
            ])
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        if let Some(c) = &child {
            registry().pids.push(c.id());
            // perf needs a moment to attach.
            std::thread::sleep(Duration::from_millis(300));
        }
        Profiler(child)
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let pid = c.id();
            // SAFETY: our own child, not reaped yet. SIGINT makes perf write its file and exit.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
            let _ = c.wait();
            registry().pids.retain(|p| *p != pid);
        }
    }
}
