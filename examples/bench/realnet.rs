//! The `realnet` section: TCP over a path with delay, loss and reordering, made by `tapstack relay`
//! (this kernel may have no netem), tapstack against the kernel on the same path in one run.
//!
//! Namespaces: the client `rnc` (veth `vc`, 192.168.69.100/24), the relay's `rnr` (two bridges, the
//! relay's TAP devices `ra` and `rb`, tapstack's `tap0`, the veth peers), and the kernel server's `rnk`
//! (veth `vk`, 192.168.69.1/24 with tapstack's MAC). `br-a` joins the client to the relay; `br-b` joins
//! the relay to one server at a time, tapstack's `tap0`, the kernel's veth or lwIP's `lw0`, so all are
//! reached at the same address through the same relay. rx: the client sends to discard (port 9); tx:
//! the server sends from chargen (port 19). Each figure is a median over runs of a time-bounded
//! transfer, in Mbit/s.
//!
//! lwIP (issue 15's "never below lwIP") is a small C program, `lwip/peer.c`, compiled at run time
//! against the system's liblwip (Debian's `liblwip-dev`); without it lwIP's columns say "not
//! installed" and the rest runs.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::peers::{self, Limit, Transfer};
use crate::sys::{Netns, Tapstack, CLIENT_SYSCTLS};

/// One path condition: name, one-way latency (ms), drop chance, reorder chance.
pub struct Condition {
    pub name: &'static str,
    pub latency_ms: f64,
    pub drop: f64,
    pub reorder: f64,
}

pub const CONDITIONS: &[Condition] = &[
    Condition {
        name: "0ms",
        latency_ms: 0.0,
        drop: 0.0,
        reorder: 0.0,
    },
    Condition {
        name: "5ms",
        latency_ms: 5.0,
        drop: 0.0,
        reorder: 0.0,
    },
    Condition {
        name: "5ms-loss0.5",
        latency_ms: 5.0,
        drop: 0.005,
        reorder: 0.0,
    },
    Condition {
        name: "5ms-loss2",
        latency_ms: 5.0,
        drop: 0.02,
        reorder: 0.0,
    },
    Condition {
        name: "20ms-loss1",
        latency_ms: 20.0,
        drop: 0.01,
        reorder: 0.0,
    },
    Condition {
        name: "5ms-reorder1",
        latency_ms: 5.0,
        drop: 0.0,
        reorder: 0.01,
    },
];

pub const MODES: &[&str] = &["offload", "no-offload"];

impl Condition {
    fn describe(&self) -> String {
        let mut s = if self.latency_ms > 0.0 {
            format!("{} ms each way", self.latency_ms)
        } else {
            "no delay".to_string()
        };
        if self.drop > 0.0 {
            s += &format!(", {}% loss", self.drop * 100.0);
        }
        if self.reorder > 0.0 {
            s += &format!(", {}% reordered", self.reorder * 100.0);
        }
        s
    }
}

/// The kernel reference's congestion control: CUBIC unless `BENCH_KERNEL_CC` names another (`host`:
/// whatever this host's default is). CUBIC because tapstack's smoltcp runs CUBIC (RFC 9438): a host
/// default of BBR does not slow down on random loss at all, which no loss-based sender matches, so
/// the ratio would measure the choice of algorithm, not the implementation.
pub fn kernel_cc() -> Option<String> {
    match std::env::var("BENCH_KERNEL_CC") {
        Ok(v) if v == "host" => None,
        Ok(v) if !v.is_empty() => Some(v),
        _ => Some("cubic".into()),
    }
}

/// What to run.
pub struct Plan<'a> {
    pub secs: u64,
    pub runs: usize,
    pub conditions: Vec<&'static Condition>,
    pub modes: Vec<&'static str>,
    pub bin: &'a Path,
    pub tmp: &'a Path,
    /// [`kernel_cc`]: set on the kernel server's and the client's sockets.
    pub kernel_cc: Option<String>,
    /// The lwIP server ([`build_lwip`]), or why there is none.
    pub lwip: Result<Lwip, String>,
}

/// The compiled lwIP server and the library's version.
pub struct Lwip {
    bin: PathBuf,
    version: String,
}

/// The servers, in the order they are measured and indexed in [`Row`].
const SERVERS: [&str; 3] = ["kernel", "tapstack", "lwip"];

/// Compiles `lwip/peer.c` into `tmp` with `cc` and pkg-config's flags for lwip. `Err` says what is
/// missing (or how the compiler failed), for the table.
pub fn build_lwip(tmp: &Path) -> Result<Lwip, String> {
    let pkg_config = |arg: &str| {
        Command::new("pkg-config")
            .args([arg, "lwip"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .ok_or("not installed (pkg-config lwip: apt-get install liblwip-dev pkg-config)")
    };
    let version = pkg_config("--modversion")?;
    let flags = pkg_config("--cflags")? + " " + &pkg_config("--libs")?;
    let src = tmp.join("lwip-peer.c");
    let bin = tmp.join("lwip-peer");
    std::fs::write(&src, include_str!("lwip/peer.c")).map_err(|e| e.to_string())?;
    let out = Command::new("cc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&bin)
        .arg(&src)
        .args(flags.split_whitespace())
        .output()
        .map_err(|e| format!("not installed (cc: {e})"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "does not build: {}",
            err.lines().take(3).collect::<Vec<_>>().join(" / ")
        ));
    }
    Ok(Lwip { bin, version })
}

/// Medians (Mbit/s, None when every run failed) per condition, mode, server and direction.
pub struct Row {
    pub condition: &'static Condition,
    pub mode: &'static str,
    /// [`SERVERS`] x [rx, tx]
    pub mbps: [[Option<f64>; 2]; 3],
    /// [`SERVERS`]: how late the relay sent frames on average over the runs, ms (the worse
    /// direction): delay beyond the configured one, where the relay itself is the bottleneck.
    pub late_ms: [Option<f64>; 3],
}

const SERVER: &str = "192.168.69.1";

struct World {
    client: Netns,
    relay_ns: Netns,
    kernel: Netns,
}

fn world() -> Result<World, String> {
    let client = Netns::create("rnc")?;
    let relay_ns = Netns::create("rnr")?;
    let kernel = Netns::create("rnk")?;
    client.sh(CLIENT_SYSCTLS)?;
    kernel.sh(CLIENT_SYSCTLS)?;
    relay_ns.sh(&format!(
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 && \
         ip link add pc type veth peer name vc netns {c} && \
         ip link add pk type veth peer name vk netns {k} && \
         ip tuntap add dev ra mode tap && ip tuntap add dev rb mode tap && \
         ip tuntap add dev tap0 mode tap && ip tuntap add dev lw0 mode tap && \
         ip link add br-a type bridge && ip link add br-b type bridge && \
         ip link set pc master br-a && ip link set ra master br-a && ip link set rb master br-b && \
         for i in pc pk ra rb tap0 lw0 br-a br-b; do ip link set $i up; done",
        c = client.name,
        k = kernel.name
    ))?;
    client.sh("ip addr add 192.168.69.100/24 dev vc && ip link set vc up")?;
    kernel.sh(&format!(
        "ip link set vk address {} && ip addr add {SERVER}/24 dev vk && ip link set vk up",
        tapstack::internals::SERVER_MAC
    ))?;
    Ok(World {
        client,
        relay_ns,
        kernel,
    })
}

impl World {
    /// Puts `port` (pk, tap0 or lw0) behind the relay, the others out, and makes the client forget
    /// where the server was.
    fn attach(&self, port: &str) -> Result<(), String> {
        let mut script = String::new();
        for other in ["pk", "tap0", "lw0"].into_iter().filter(|p| *p != port) {
            script += &format!("ip link set {other} nomaster && ");
        }
        self.relay_ns
            .sh(&format!("{script}ip link set {port} master br-b"))?;
        self.client.sh("ip neigh flush dev vc")?;
        Ok(())
    }

    /// Offloads of the kernel server's veth on or off.
    fn kernel_offload(&self, on: bool) -> Result<(), String> {
        let v = if on { "on" } else { "off" };
        self.kernel
            .sh(&format!("ethtool -K vk tso {v} gso {v} gro {v}"))
            .map(|_| ())
    }
}

/// The next connection on a (non-blocking) listener, if one comes before `end`; blocking, with
/// 10 s timeouts.
fn accept_until(listener: &TcpListener, end: Instant) -> std::io::Result<TcpStream> {
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                s.set_write_timeout(Some(Duration::from_secs(10)))?;
                return Ok(s);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A kernel server for one connection: chargen (writes until the client goes away) or discard (reads
/// to end of file); either way over by `end`.
fn serve_once(listener: TcpListener, chargen: bool, end: Instant) -> std::io::Result<u64> {
    let mut s = accept_until(&listener, end)?;
    let mut buf: Vec<u8> = (0..128 * 1024u32).map(|i| b' ' + (i % 95) as u8).collect();
    let mut total = 0u64;
    while Instant::now() < end {
        let r = if chargen {
            s.write(&buf)
        } else {
            s.read(&mut buf)
        };
        match r {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    Ok(total)
}

/// Listeners of the kernel server (sockets keep the namespace they were made in).
struct KernelServer {
    discard: TcpListener,
    chargen: TcpListener,
}

fn transfer(
    w: &World,
    ks: Option<&KernelServer>,
    tx: bool,
    limit: Limit,
    cc: Option<String>,
) -> Result<Transfer, String> {
    let port = if tx { 19 } else { 9 };
    let addr = SocketAddr::new(SERVER.parse().unwrap(), port);
    let server = ks
        .map(|k| -> Result<_, String> {
            let l = if tx { &k.chargen } else { &k.discard };
            let l = l.try_clone().map_err(|e| e.to_string())?;
            let end = Instant::now() + limit.time + Duration::from_secs(30);
            Ok(std::thread::spawn(move || serve_once(l, tx, end)))
        })
        .transpose()?;
    let t = w.client.run_in(move || {
        if tx {
            peers::bulk_recv_cc(addr, limit, cc.as_deref())
        } else {
            peers::bulk_send_cc(addr, limit, cc.as_deref())
        }
    })?;
    if let Some(s) = server {
        let _ = s.join();
    }
    t.map_err(|e| e.to_string())
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn note(s: &str) {
    eprintln!("  {s}");
}

pub fn run(plan: &Plan) -> Result<Vec<Row>, String> {
    let w = world()?;
    let ks = KernelServer {
        discard: w
            .kernel
            .run_in(|| TcpListener::bind((SERVER, 9)))?
            .map_err(|e| format!("kernel discard: {e}"))?,
        chargen: w
            .kernel
            .run_in(|| TcpListener::bind((SERVER, 19)))?
            .map_err(|e| format!("kernel chargen: {e}"))?,
    };
    for l in [&ks.discard, &ks.chargen] {
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        if let Some(cc) = &plan.kernel_cc {
            crate::sys::set_congestion(l, cc).map_err(|e| format!("kernel server: {e}"))?;
        }
    }
    let limit = Limit {
        bytes: u64::MAX,
        time: Duration::from_secs(plan.secs),
    };
    let mut rows = Vec::new();
    for (ci, c) in plan.conditions.iter().enumerate() {
        let latency = c.latency_ms.to_string();
        let drop = c.drop.to_string();
        let reorder = c.reorder.to_string();
        let seed = (ci + 1).to_string();
        for &mode in &plan.modes {
            let offload = mode == "offload";
            let mut mbps = [[None; 2]; 3];
            let mut late = [None; 3];
            for (si, server) in SERVERS.into_iter().enumerate() {
                let lwip = match (server, &plan.lwip) {
                    ("lwip", Ok(l)) => Some(&l.bin),
                    ("lwip", Err(_)) => continue,
                    _ => None,
                };
                let mut ts = None;
                let mut relay = Tapstack::start(
                    &w.relay_ns,
                    plan.bin,
                    &[
                        "relay",
                        "ra",
                        "rb",
                        "--latency-ms",
                        &latency,
                        "--drop-chance",
                        &drop,
                        "--reorder-chance",
                        &reorder,
                        "--seed",
                        &seed,
                    ],
                    plan.tmp
                        .join(format!("realnet-relay-{}-{mode}-{server}.log", c.name)),
                )?;
                if si == 0 {
                    w.kernel_offload(offload)?;
                    w.attach("pk")?;
                } else if let Some(bin) = lwip {
                    // lwIP has no offloads: in both modes it gets what the relay sends.
                    // A reference that fails to start leaves its cells empty, not the bench failed.
                    w.attach("lw0")?;
                    match Tapstack::start_program(
                        &w.relay_ns,
                        bin,
                        &["lw0", tapstack::internals::SERVER_MAC, SERVER],
                        plan.tmp.join(format!("realnet-lwip-{}-{mode}.log", c.name)),
                        "lwip-peer",
                    ) {
                        Ok(t) => ts = Some(t),
                        Err(e) => {
                            note(&format!("realnet {} {mode} lwip: {e}", c.name));
                            continue;
                        }
                    }
                } else {
                    let mut args = vec![
                        "-q",
                        "serve",
                        "--tap",
                        "tap0",
                        "--serve",
                        "discard,chargen",
                        "--no-host",
                    ];
                    if !offload {
                        args.push("--no-offload");
                    }
                    w.attach("tap0")?;
                    ts = Some(Tapstack::start(
                        &w.relay_ns,
                        plan.bin,
                        &args,
                        plan.tmp.join(format!("realnet-{}-{mode}.log", c.name)),
                    )?);
                }
                for (di, tx) in [false, true].into_iter().enumerate() {
                    let dir = if tx { "tx" } else { "rx" };
                    let mut v = Vec::new();
                    for run in 1..=plan.runs {
                        let ks = (si == 0).then_some(&ks);
                        match transfer(&w, ks, tx, limit, plan.kernel_cc.clone()) {
                            Ok(t) => {
                                let m = t.gbps() * 1000.0;
                                note(&format!(
                                    "realnet {} {mode} {server} {dir} run {run}: {m:.1} Mbit/s ({} MiB in {:.1} s)",
                                    c.name,
                                    t.bytes >> 20,
                                    t.elapsed.as_secs_f64()
                                ));
                                v.push(m);
                            }
                            Err(e) => note(&format!(
                                "realnet {} {mode} {server} {dir} run {run}: failed: {e}",
                                c.name
                            )),
                        }
                    }
                    mbps[si][di] = median(v);
                }
                if let Some(mut t) = ts {
                    t.stop();
                }
                relay.stop();
                let log = relay.log_text();
                for l in log.lines().filter(|l| l.contains("relay ")) {
                    note(&format!("{server}: {}", l.trim()));
                }
                late[si] = log
                    .lines()
                    .filter_map(|l| l.split("sent late by ").nth(1))
                    .filter_map(|t| t.split_whitespace().next()?.parse::<f64>().ok())
                    .reduce(f64::max)
                    .map(|us| us / 1000.0);
            }
            rows.push(Row {
                condition: c,
                mode,
                mbps,
                late_ms: late,
            });
        }
    }
    w.kernel_offload(true)?;
    Ok(rows)
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "fail".into(),
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.1}"),
    }
}

fn ratio(a: Option<f64>, k: Option<f64>) -> String {
    match (a, k) {
        (Some(a), Some(k)) if k > 0.0 => format!("{:.2}", a / k),
        _ => "-".into(),
    }
}

/// The markdown table: one line per condition and mode; Mbit/s rx / tx, tapstack's ratios to the
/// kernel and to lwIP.
pub fn table(rows: &[Row], plan: &Plan) -> String {
    let cc = plan
        .kernel_cc
        .as_deref()
        .map_or("the host's default".to_string(), |c| c.to_uppercase());
    let missing = match &plan.lwip {
        Err(e) if e.starts_with("not installed") => "not installed",
        _ => "not built",
    };
    let lwip = plan.lwip.as_ref().map_or(format!("lwIP {missing}"), |l| {
        format!("lwIP {} (raw API, no offloads in either mode)", l.version)
    });
    let mut out = format!(
        "realnet: through `tapstack relay`, {} s transfers, median of {} (Mbit/s; rx = client -> discard, tx = chargen -> client); kernel sockets (client and reference server) use {cc}, tapstack's smoltcp CUBIC; {lwip}\n\n",
        plan.secs, plan.runs
    );
    out += "| condition | mode | kernel rx / tx | tapstack rx / tx | lwIP rx / tx | tapstack / kernel rx / tx | tapstack / lwIP rx / tx | relay late, ms: kernel / tapstack / lwIP |\n";
    out += "|---|---|---|---|---|---|---|---|\n";
    let late = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    for r in rows {
        let [k, t, l] = r.mbps;
        let (lwip, vs_lwip) = match &plan.lwip {
            Ok(_) => (
                format!("{} / {}", fmt(l[0]), fmt(l[1])),
                format!("{} / {}", ratio(t[0], l[0]), ratio(t[1], l[1])),
            ),
            Err(_) => (missing.into(), "-".into()),
        };
        out += &format!(
            "| {} | {} | {} / {} | {} / {} | {lwip} | {} / {} | {vs_lwip} | {} / {} / {} |\n",
            r.condition.describe(),
            r.mode,
            fmt(k[0]),
            fmt(k[1]),
            fmt(t[0]),
            fmt(t[1]),
            ratio(t[0], k[0]),
            ratio(t[1], k[1]),
            late(r.late_ms[0]),
            late(r.late_ms[1]),
            late(r.late_ms[2]),
        );
    }
    if let Err(e) = &plan.lwip {
        out += &format!("\nlwIP: {e}\n");
    }
    out
}

pub fn json(rows: &[Row], plan: &Plan) -> serde_json::Value {
    let mut obj = serde_json::Map::new();
    obj.insert(
        "kernel_cc".into(),
        serde_json::json!(plan.kernel_cc.as_deref().unwrap_or("host")),
    );
    obj.insert(
        "lwip".into(),
        match &plan.lwip {
            Ok(l) => serde_json::json!(format!("{} raw API", l.version)),
            Err(e) => serde_json::json!(e),
        },
    );
    let quotient = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    for r in rows {
        let [k, t, l] = r.mbps;
        obj.insert(
            format!("{}/{}", r.condition.name, r.mode),
            serde_json::json!({
                "kernel_rx_mbps": k[0], "kernel_tx_mbps": k[1],
                "tapstack_rx_mbps": t[0], "tapstack_tx_mbps": t[1],
                "lwip_rx_mbps": l[0], "lwip_tx_mbps": l[1],
                "tapstack_over_lwip_rx": quotient(t[0], l[0]),
                "tapstack_over_lwip_tx": quotient(t[1], l[1]),
                "relay_late_ms_kernel": r.late_ms[0], "relay_late_ms_tapstack": r.late_ms[1],
                "relay_late_ms_lwip": r.late_ms[2],
            }),
        );
    }
    serde_json::Value::Object(obj)
}
