//! tapstack's benchmark: `cargo run --release --example bench -- [--quick] [--json]` (as root).
//!
//! It builds its own world and tears it down again: per run a network namespace `tsbench-<pid>-rNt`
//! holding `tap0` (192.168.69.100/24 on the kernel side) with the release `tapstack` binary attached to
//! it (started with `ip netns exec`, stopped by PID with SIGTERM), and two namespaces joined by a veth
//! pair with offloads off for the kernel's own ceiling. Kernel-side peers are Rust threads that
//! `setns(2)` into those namespaces and use std::net sockets, so their timing is precise and nothing
//! touches the root namespace. `wire_gbps` runs two smoltcp stacks in this process on tapstack's
//! in-memory wire. Every load loop is bounded in count and in time; namespaces are deleted on success,
//! error, panic and Ctrl-C (and stale ones of a killed bench on the next start). The `realnet` section
//! also compiles a small lwIP server (bench/lwip/peer.c) with `cc` against Debian's `liblwip-dev`, if
//! present.
//!
//! Output: progress on stderr, then a table (figure / median / min / max / target / verdict); with
//! `--json`, stdout carries exactly one JSON object (medians under the figure keys, plus `runs`,
//! `machine`, `mode`, `min_max` and `info`) and the table goes to stderr. See BENCHMARKS.md.

use clap::Parser;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "bench/peers.rs"]
mod peers;
#[path = "bench/realnet.rs"]
mod realnet;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/sys.rs"]
mod sys;
#[path = "bench/wire.rs"]
mod wire;

use peers::Limit;
use report::Run;
use sys::{Netns, Profiler, Tapstack};

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "tapstack's benchmark (needs root: it creates network namespaces)"
)]
struct Opts {
    /// Smoke test: 64 MiB or 1 s per transfer, 2,000 connections, 1,000 idle connections, 1 run.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// Runs to take medians over (default: 5, or 1 with --quick).
    #[arg(long)]
    runs: Option<usize>,
    /// Only these tests, comma-separated: wire,wireconn,veth,idle,rx,tx,echo,conn1,conn64,conns10k,log,
    /// realnet. realnet (through `tapstack relay`) runs in a full run, or with --quick when named here.
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// realnet: seconds per transfer.
    #[arg(long, value_name = "N", default_value_t = 10)]
    realnet_secs: u64,
    /// realnet: runs to take medians over.
    #[arg(long, value_name = "N", default_value_t = 3)]
    realnet_runs: usize,
    /// realnet: only these conditions, comma-separated: 0ms,5ms,5ms-loss0.5,5ms-loss2,20ms-loss1,5ms-reorder1.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    realnet_cases: Option<Vec<String>>,
    /// realnet: only these modes, comma-separated: offload,no-offload.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    realnet_modes: Option<Vec<String>>,
    /// Record a `perf record -g` profile of tapstack during each test into DIR (TEST-runN.perf.data).
    #[arg(long, value_name = "DIR")]
    profile: Option<PathBuf>,
    /// Experiment (not the reference setup): pin tapstack to CPU 0 and steer the kernel's receive
    /// processing of frames tapstack writes (the clients' TCP) to CPU 1 with RPS.
    #[arg(long)]
    steer: bool,
    /// Experiment (not the reference setup): tapstack on CPU 0, the bench's kernel clients on CPU 1,
    /// so that the scheduler never runs a client thread on tapstack's CPU.
    #[arg(long)]
    pin: bool,
}

const TESTS: &[&str] = &[
    "wire", "wireconn", "veth", "idle", "rx", "tx", "echo", "conn1", "conn64", "conns10k", "log",
    "realnet",
];

/// The sizes and time bounds of one mode.
struct Plan {
    transfer: Limit,
    echo_samples: usize,
    echo_time: Duration,
    conns: u64,
    conn_time: Duration,
    idle_conns: usize,
    idle_window: Duration,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                transfer: Limit {
                    bytes: 64 << 20,
                    time: Duration::from_secs(1),
                },
                echo_samples: 2_000,
                echo_time: Duration::from_secs(1),
                conns: 2_000,
                conn_time: Duration::from_secs(2),
                idle_conns: 1_000,
                idle_window: Duration::from_secs(1),
            }
        } else {
            Plan {
                transfer: Limit {
                    bytes: 1 << 30,
                    time: Duration::from_secs(5),
                },
                echo_samples: 20_000,
                echo_time: Duration::from_secs(3),
                conns: 30_000,
                conn_time: Duration::from_secs(4),
                idle_conns: 10_000,
                idle_window: Duration::from_secs(5),
            }
        }
    }
}

const STACK_IP: [u8; 4] = [192, 168, 69, 1];

fn stack(port: u16) -> SocketAddr {
    SocketAddr::from((STACK_IP, port))
}

struct Bench<'a> {
    opts: &'a Opts,
    plan: Plan,
    bin: PathBuf,
    tmp: &'a Path,
}

impl Bench<'_> {
    fn sel(&self, t: &str) -> bool {
        self.opts
            .only
            .as_ref()
            .is_none_or(|o| o.iter().any(|x| x == t))
    }

    /// Whether any test besides realnet runs.
    fn main_tests(&self) -> bool {
        TESTS.iter().any(|t| *t != "realnet" && self.sel(t))
    }

    /// realnet is long: a full run has it, a quick one only when named.
    fn realnet(&self) -> bool {
        match &self.opts.only {
            Some(o) => o.iter().any(|x| x == "realnet"),
            None => !self.opts.quick,
        }
    }

    fn profile(&self, pid: u32, test: &str, run: usize) -> Profiler {
        Profiler::start(
            self.opts.profile.as_deref(),
            pid,
            &format!("{test}-run{run}"),
        )
    }

    fn tapstack(&self, ns: &Netns, quiet: bool, log: &str) -> Result<Tapstack, String> {
        let mut args = vec![];
        if quiet {
            args.push("-q");
        }
        args.extend([
            "serve",
            "--tap",
            "tap0",
            "--serve",
            "discard,chargen,echo",
            "--max-connections",
            "20000",
        ]);
        Tapstack::start(ns, &self.bin, &args, self.tmp.join(log))
    }

    fn run(&self, run: usize) -> Result<Run, String> {
        let mut r = Run::new();
        let p = &self.plan;
        if self.sel("wire") {
            let t = wire::wire_transfer(p.transfer)?;
            note(&format!(
                "wire: {} MiB in {:.2} s",
                t.bytes >> 20,
                t.elapsed.as_secs_f64()
            ));
            r.insert("wire_gbps", t.gbps());
        }
        if self.sel("wireconn") {
            let (n, took) = wire::wire_conns(p.conns as usize / 3)?;
            note(&format!(
                "wireconn: {n} connections in {:.2} s on the in-memory wire",
                took.as_secs_f64()
            ));
            r.insert("wire_conn_us", took.as_secs_f64() * 1e6 / n as f64);
        }
        if self.sel("veth") {
            let (a, b, how) = sys::veth_pair(&format!("r{run}v"))?;
            let listener = a
                .run_in(|| TcpListener::bind("192.168.70.1:5009"))?
                .map_err(|e| format!("veth listener: {e}"))?;
            let server = a.spawn(move || peers::discard_once(listener));
            let limit = p.transfer;
            let t = b
                .run_in(move || peers::bulk_send("192.168.70.1:5009".parse().unwrap(), limit))?
                .map_err(|e| format!("veth transfer: {e}"))?;
            let _ = server.join();
            note(&format!(
                "veth ({how}): {} MiB in {:.2} s",
                t.bytes >> 20,
                t.elapsed.as_secs_f64()
            ));
            r.insert("veth_gbps", t.gbps());
        }
        let tap_tests = [
            "idle", "rx", "tx", "echo", "conn1", "conn64", "conns10k", "log",
        ];
        if !tap_tests.iter().any(|t| self.sel(t)) {
            return Ok(r);
        }
        let ns = sys::tap_netns(&format!("r{run}t"))?;
        let mut ts = self.tapstack(&ns, true, &format!("run{run}-quiet.log"))?;
        if self.opts.pin && !self.opts.steer {
            ns.sh(&format!("taskset -p 1 {} >/dev/null", ts.pid))?;
        }
        if self.opts.steer {
            ns.sh(&format!(
                "taskset -p 1 {} >/dev/null && echo 2 > /sys/class/net/tap0/queues/rx-0/rps_cpus",
                ts.pid
            ))?;
        }
        if let Some(kb) = ts.status_field("VmRSS") {
            r.insert("rss_baseline_mib", kb as f64 / 1024.0);
        }

        if self.sel("idle") {
            // Let the link settle (ARP, the kernel's own chatter), then count sleeps that ended.
            std::thread::sleep(Duration::from_millis(1000));
            let before = ts.status_field("voluntary_ctxt_switches").unwrap_or(0);
            let t0 = Instant::now();
            std::thread::sleep(p.idle_window);
            let after = ts.status_field("voluntary_ctxt_switches").unwrap_or(0);
            let rate = after.saturating_sub(before) as f64 / t0.elapsed().as_secs_f64();
            note(&format!(
                "idle: {} wake-ups in {:.1} s",
                after - before,
                t0.elapsed().as_secs_f64()
            ));
            r.insert("idle_wakeups_per_s", rate);
        }
        let mut rx_alone = None;
        if self.sel("rx") || self.sel("conns10k") {
            let limit = p.transfer;
            let f0 = ts.frames();
            let prof = self.profile(ts.pid, "rx", run);
            let cpu0 = ts.cpu();
            let t = ns
                .run_in(move || peers::bulk_send(stack(9), limit))?
                .map_err(|e| format!("tcp_rx: {e}"))?;
            let cpu = (ts.cpu() - cpu0).as_secs_f64() / t.elapsed.as_secs_f64() * 100.0;
            drop(prof);
            note(&format!(
                "rx: {} MiB in {:.2} s, tapstack CPU {cpu:.0}%",
                t.bytes >> 20,
                t.elapsed.as_secs_f64()
            ));
            rx_alone = Some(t.gbps());
            if self.sel("rx") {
                r.insert("tcp_rx_gbps", t.gbps());
                r.insert("tcp_rx_cpu_pct", cpu);
                if let (Some(a), Some(b)) = (f0, ts.frames()) {
                    let (fin, fout) = (b.0 - a.0, b.1 - a.1);
                    note(&format!("rx: {fin} frames in, {fout} out"));
                    r.insert(
                        "tcp_rx_acks_per_100_frames",
                        fout as f64 * 100.0 / fin.max(1) as f64,
                    );
                    r.insert(
                        "tcp_rx_cpu_us_per_frame",
                        cpu / 100.0 * t.elapsed.as_secs_f64() * 1e6 / fin.max(1) as f64,
                    );
                }
            }
        }
        if self.sel("tx") {
            let limit = p.transfer;
            let f0 = ts.frames();
            let prof = self.profile(ts.pid, "tx", run);
            let cpu0 = ts.cpu();
            let t = ns
                .run_in(move || peers::bulk_recv(stack(19), limit))?
                .map_err(|e| format!("tcp_tx: {e}"))?;
            let cpu = (ts.cpu() - cpu0).as_secs_f64() / t.elapsed.as_secs_f64() * 100.0;
            drop(prof);
            note(&format!(
                "tx: {} MiB in {:.2} s, tapstack CPU {cpu:.0}%",
                t.bytes >> 20,
                t.elapsed.as_secs_f64()
            ));
            r.insert("tcp_tx_gbps", t.gbps());
            r.insert("tcp_tx_cpu_pct", cpu);
            if let (Some(a), Some(b)) = (f0, ts.frames()) {
                let (fin, fout) = (b.0 - a.0, b.1 - a.1);
                note(&format!("tx: {fin} frames in, {fout} out"));
                r.insert(
                    "tcp_tx_cpu_us_per_frame",
                    cpu / 100.0 * t.elapsed.as_secs_f64() * 1e6 / fout.max(1) as f64,
                );
                r.insert("tcp_tx_frames_out_per_ack", fout as f64 / fin.max(1) as f64);
            }
        }
        if self.sel("echo") {
            let (n, time) = (p.echo_samples, p.echo_time);
            let kernel = SocketAddr::from(([127, 0, 0, 1], 10007));
            let prof = self.profile(ts.pid, "echo", run);
            let (mut v, mut k) = ns
                .run_in(move || peers::echo_rtt_pair(stack(7), kernel, n, time))?
                .map_err(|e| format!("echo: {e}"))?;
            drop(prof);
            if v.is_empty() || k.is_empty() {
                return Err("echo: no samples".into());
            }
            v.sort_by(|a, b| a.total_cmp(b));
            k.sort_by(|a, b| a.total_cmp(b));
            let pct = |v: &[f64], q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
            note(&format!(
                "echo: {} round trips each, tap p50 {:.1} us p99 {:.1} us, host socket p50 {:.1} us p99 {:.1} us",
                v.len(),
                pct(&v, 0.5),
                pct(&v, 0.99),
                pct(&k, 0.5),
                pct(&k, 0.99)
            ));
            r.insert("echo_rtt_p50_us", pct(&v, 0.5));
            r.insert("echo_rtt_p99_us", pct(&v, 0.99));
            r.insert("kernel_echo_rtt_p50_us", pct(&k, 0.5));
            r.insert("echo_rtt_ratio", pct(&v, 0.5) / pct(&k, 0.5));
        }
        let mut refused = 0u64;
        let mut failed = 0u64;
        let mut rate64 = None;
        for (test, clients, key) in [
            ("conn1", 1, "conn_per_s_1"),
            ("conn64", 64, "conn_per_s_64"),
        ] {
            let needed = self.sel(test) || (test == "conn64" && self.sel("log"));
            if !needed {
                continue;
            }
            let prof = self.profile(ts.pid, test, run);
            let cpu0 = ts.cpu();
            let c = peers::conn_rate(&ns, stack(7), clients, p.conns, p.conn_time)?;
            let cpu = (ts.cpu() - cpu0).as_secs_f64() / c.elapsed.as_secs_f64() * 100.0;
            drop(prof);
            note(&format!(
                "{test}: {} ok, {} refused, {} failed in {:.2} s, tapstack CPU {cpu:.0}%",
                c.ok,
                c.refused,
                c.failed,
                c.elapsed.as_secs_f64()
            ));
            refused += c.refused;
            failed += c.failed;
            if test == "conn64" {
                rate64 = Some(c.per_s());
                r.insert("conn64_cpu_pct", cpu);
                r.insert("conn64_cpu_us_per_conn", cpu / 100.0 / c.per_s() * 1e6);
            }
            if self.sel(test) {
                r.insert(key, c.per_s());
            }
        }
        if self.sel("conn1") || self.sel("conn64") {
            r.insert("refused", refused as f64);
            r.insert("conn_failed", failed as f64);
        }
        if self.sel("conns10k") {
            let n = p.idle_conns;
            let want = n as u64 + 1024;
            let got = sys::raise_nofile(want);
            if got < want {
                note(&format!("warning: RLIMIT_NOFILE is {got}, below {want}"));
            }
            let t0 = Instant::now();
            let (open, open_failed) =
                peers::open_idle(&ns, stack(9), n, 16, Duration::from_secs(60))?;
            let open_s = t0.elapsed().as_secs_f64();
            std::thread::sleep(Duration::from_millis(500));
            let rss = ts.status_field("VmRSS").unwrap_or(0) as f64 / 1024.0;
            let limit = p.transfer;
            let prof = self.profile(ts.pid, "conns10k", run);
            let t = ns
                .run_in(move || peers::bulk_send(stack(9), limit))?
                .map_err(|e| format!("tcp_rx with {n} open: {e}"))?;
            drop(prof);
            note(&format!(
                "conns10k: {} open ({open_failed} failed) in {open_s:.1} s, VmRSS {rss:.1} MiB, rx {:.2} Gbit/s",
                open.len(),
                t.gbps()
            ));
            r.insert("conns_10k_opened", open.len() as f64);
            r.insert("conns_10k_open_per_s", open.len() as f64 / open_s);
            r.insert("conns_10k_rss_mib", rss);
            r.insert("conns_10k_tput_gbps", t.gbps());
            if let Some(alone) = rx_alone {
                r.insert("conns_10k_tput_ratio", t.gbps() / alone);
            }
            drop(open);
        }
        if let Some(line) = ts.stats_line() {
            note(&format!("tapstack counters: {line}"));
        }
        ts.stop();
        if self.sel("log") {
            // The same connection test on a fresh tapstack that logs packet lines to a file.
            let log = self.tapstack(&ns, false, &format!("run{run}-logged.log"))?;
            let c = peers::conn_rate(&ns, stack(7), 64, p.conns, p.conn_time)?;
            let bytes = log.log_len();
            drop(log);
            note(&format!(
                "log: {} ok, {} refused in {:.2} s with packet lines on; {bytes} log bytes",
                c.ok,
                c.refused,
                c.elapsed.as_secs_f64()
            ));
            if let Some(q) = rate64 {
                r.insert("log_cost_ratio", c.per_s() / q);
            }
            r.insert("log_bytes_per_conn", bytes as f64 / c.ok.max(1) as f64);
        }
        Ok(r)
    }
}

fn note(s: &str) {
    eprintln!("  {s}");
}

fn main() {
    let opts = Opts::parse();
    if let Some(only) = &opts.only {
        for t in only {
            if !TESTS.contains(&t.as_str()) {
                eprintln!("unknown test '{t}' (known: {})", TESTS.join(", "));
                std::process::exit(2);
            }
        }
    }
    for c in opts.realnet_cases.iter().flatten() {
        if !realnet::CONDITIONS.iter().any(|k| k.name == c) {
            let known: Vec<_> = realnet::CONDITIONS.iter().map(|k| k.name).collect();
            eprintln!("unknown realnet case '{c}' (known: {})", known.join(", "));
            std::process::exit(2);
        }
    }
    for m in opts.realnet_modes.iter().flatten() {
        if !realnet::MODES.contains(&m.as_str()) {
            eprintln!(
                "unknown realnet mode '{m}' (known: {})",
                realnet::MODES.join(", ")
            );
            std::process::exit(2);
        }
    }
    if !sys::is_root() {
        eprintln!("bench: needs root (it creates network namespaces and a TAP device in them)");
        std::process::exit(2);
    }
    sys::install_cleanup_on_signal();
    sys::remove_stale_namespaces();
    if opts.pin {
        // Threads and children inherit the mask of the thread that makes them: the clients stay on
        // CPU 1, and tapstack is moved to CPU 0 once started.
        // SAFETY: a zeroed cpu_set_t with one bit set, for the calling thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(1, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
    let code = match std::panic::catch_unwind(|| bench(&opts)) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            eprintln!("bench: {e}");
            1
        }
        Err(_) => 101,
    };
    sys::cleanup_all();
    std::process::exit(code);
}

fn bench(opts: &Opts) -> Result<(), String> {
    let bin = sys::tapstack_binary()?;
    let tmp = sys::TempDir::new().map_err(|e| format!("temp dir: {e}"))?;
    if let Some(d) = &opts.profile {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let runs_n = opts.runs.unwrap_or(if opts.quick { 1 } else { 5 }).max(1);
    let bench = Bench {
        opts,
        plan: Plan::new(opts.quick),
        bin,
        tmp: &tmp.0,
    };
    let machine = sys::machine();
    eprintln!(
        "tapstack bench ({} mode, {runs_n} run{}): {} CPUs, {}, kernel {}",
        if opts.quick { "quick" } else { "full" },
        if runs_n == 1 { "" } else { "s" },
        machine.0,
        machine.2,
        machine.1
    );
    let started = Instant::now();
    let mut runs = Vec::new();
    if bench.main_tests() {
        for i in 1..=runs_n {
            eprintln!("run {i}/{runs_n}");
            runs.push(bench.run(i)?);
        }
    }
    let realnet = if bench.realnet() {
        let plan = realnet::Plan {
            secs: opts.realnet_secs.max(1),
            runs: opts.realnet_runs.max(1),
            conditions: realnet::CONDITIONS
                .iter()
                .filter(|c| {
                    opts.realnet_cases
                        .as_ref()
                        .is_none_or(|o| o.iter().any(|x| x == c.name))
                })
                .collect(),
            modes: realnet::MODES
                .iter()
                .copied()
                .filter(|m| {
                    opts.realnet_modes
                        .as_ref()
                        .is_none_or(|o| o.iter().any(|x| x == m))
                })
                .collect(),
            bin: &bench.bin,
            tmp: &tmp.0,
            kernel_cc: realnet::kernel_cc(),
            lwip: realnet::build_lwip(&tmp.0),
        };
        if let Err(e) = &plan.lwip {
            eprintln!("realnet: lwIP {e}; its columns stay empty");
        }
        eprintln!(
            "realnet: {} conditions x {} modes x {} servers x 2 directions x {} runs of {} s",
            plan.conditions.len(),
            plan.modes.len(),
            if plan.lwip.is_ok() { 3 } else { 2 },
            plan.runs,
            plan.secs
        );
        let rows = realnet::run(&plan)?;
        Some((realnet::table(&rows, &plan), realnet::json(&rows, &plan)))
    } else {
        None
    };
    eprintln!(
        "done in {:.0} s (load average now: {})\n",
        started.elapsed().as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let mut table = if runs.is_empty() {
        String::new()
    } else {
        report::table(&runs)
    };
    if opts.quick {
        table +=
            "quick mode: short transfers and 1,000 (not 10,000) idle connections; a smoke test, \
                  not comparable with the targets\n";
    }
    let mode = if opts.quick { "quick" } else { "full" };
    if !table.is_empty() {
        table += &format!("\n{}", report::legend());
    }
    if let Some((t, _)) = &realnet {
        table += &format!("\n{t}");
    }
    if opts.json {
        eprint!("{table}");
        let mut j = report::json(&runs, machine, mode);
        if let (Some((_, r)), Some(o)) = (&realnet, j.as_object_mut()) {
            o.insert("realnet".into(), r.clone());
        }
        println!("{j}");
    } else {
        print!("{table}");
    }
    Ok(())
}
