//! Figures, their targets, medians over runs, the table and the JSON object.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// Reference figure: no target.
    None,
    AtLeast(f64),
    AtMost(f64),
    /// `>= abs` and `>= factor x` another figure.
    AtLeastAndRel(f64, f64, &'static str),
    /// `<= factor x` another figure, judged on the median of the per-run ratio (third key), which
    /// compares figures measured side by side.
    AtMostRel(f64, &'static str, &'static str),
}

pub struct Figure {
    pub key: &'static str,
    pub what: &'static str,
    pub target: Target,
    /// Decimal places in the table.
    pub prec: usize,
}

/// The figures of the issue, in table order.
pub const FIGURES: &[Figure] = &[
    Figure {
        key: "tcp_rx_gbps",
        what: "kernel -> tapstack discard over TAP, Gbit/s",
        target: Target::AtLeastAndRel(4.0, 0.65, "veth_gbps"),
        prec: 2,
    },
    Figure {
        key: "tcp_tx_gbps",
        what: "tapstack chargen -> kernel over TAP, Gbit/s",
        target: Target::AtLeastAndRel(3.5, 0.65, "veth_gbps"),
        prec: 2,
    },
    Figure {
        key: "veth_gbps",
        what: "kernel -> kernel over veth, offloads off, Gbit/s",
        target: Target::None,
        prec: 2,
    },
    Figure {
        key: "wire_gbps",
        what: "smoltcp client -> Stack discard, in-memory wire, Gbit/s",
        target: Target::None,
        prec: 2,
    },
    Figure {
        key: "echo_rtt_p50_us",
        what: "64-byte echo RTT over TAP, p50, us",
        target: Target::AtMostRel(1.5, "kernel_echo_rtt_p50_us", "echo_rtt_ratio"),
        prec: 1,
    },
    Figure {
        key: "echo_rtt_p99_us",
        what: "64-byte echo RTT over TAP, p99, us",
        target: Target::None,
        prec: 1,
    },
    Figure {
        key: "kernel_echo_rtt_p50_us",
        what: "same on tapstack's host socket (loopback), p50, us",
        target: Target::None,
        prec: 1,
    },
    Figure {
        key: "conn_per_s_1",
        what: "connect+echo+close, 1 client, conn/s",
        target: Target::None,
        prec: 0,
    },
    Figure {
        key: "conn_per_s_64",
        what: "connect+echo+close, 64 clients, conn/s",
        target: Target::AtLeast(10_000.0),
        prec: 0,
    },
    Figure {
        key: "refused",
        what: "connections refused in those two runs",
        target: Target::AtMost(0.0),
        prec: 0,
    },
    Figure {
        key: "conns_10k_rss_mib",
        what: "tapstack VmRSS with 10k idle connections, MiB",
        target: Target::AtMost(150.0),
        prec: 1,
    },
    Figure {
        key: "conns_10k_tput_ratio",
        what: "rx throughput with 10k open / alone",
        target: Target::AtLeast(0.5),
        prec: 2,
    },
    Figure {
        key: "log_cost_ratio",
        what: "conn/s (64 clients) logging to a file / with -q",
        target: Target::AtLeast(0.5),
        prec: 2,
    },
    Figure {
        key: "idle_wakeups_per_s",
        what: "voluntary context switches/s, idle",
        target: Target::AtMost(2.0),
        prec: 2,
    },
];

/// Diagnostic figures without targets (table's second part, JSON `info`).
pub const INFO: &[(&str, &str)] = &[
    (
        "wire_conn_us",
        "CPU per connection of both stacks on the in-memory wire, us (no syscalls: steady)",
    ),
    (
        "tcp_rx_cpu_pct",
        "tapstack CPU during tcp_rx, % of one core",
    ),
    (
        "tcp_rx_cpu_us_per_frame",
        "tapstack CPU per received frame in tcp_rx, us",
    ),
    (
        "tcp_rx_acks_per_100_frames",
        "frames tapstack sent (ACKs) per 100 received in tcp_rx",
    ),
    (
        "tcp_tx_cpu_pct",
        "tapstack CPU during tcp_tx, % of one core",
    ),
    (
        "tcp_tx_cpu_us_per_frame",
        "tapstack CPU per sent frame in tcp_tx, us",
    ),
    (
        "tcp_tx_frames_out_per_ack",
        "frames sent per frame received (ACK) in tcp_tx",
    ),
    (
        "echo_rtt_ratio",
        "per-run echo p50 / kernel echo p50 (the verdict's basis)",
    ),
    (
        "conn64_cpu_pct",
        "tapstack CPU during conn_per_s_64, % of one core",
    ),
    (
        "conn64_cpu_us_per_conn",
        "tapstack CPU per connection in conn_per_s_64, us (steadier than the rate)",
    ),
    (
        "conn_failed",
        "connections failed otherwise (timeouts) in conn tests",
    ),
    ("conns_10k_opened", "idle connections actually established"),
    ("conns_10k_open_per_s", "rate of opening them, conn/s"),
    (
        "conns_10k_tput_gbps",
        "rx throughput with them open, Gbit/s",
    ),
    ("rss_baseline_mib", "tapstack VmRSS after start, MiB"),
    (
        "log_bytes_per_conn",
        "log file bytes per connection without -q",
    ),
];

pub type Run = BTreeMap<&'static str, f64>;

#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn stat(runs: &[Run], key: &str) -> Option<Stat> {
    let mut v: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.get(key).copied())
        .filter(|x| x.is_finite())
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Stat {
        median,
        min: v[0],
        max: v[n - 1],
    })
}

fn medians(runs: &[Run]) -> BTreeMap<&'static str, f64> {
    FIGURES
        .iter()
        .map(|f| f.key)
        .chain(INFO.iter().map(|i| i.0))
        .filter_map(|k| stat(runs, k).map(|s| (k, s.median)))
        .collect()
}

/// The target in words (with the other figure's value resolved) and whether the median meets it.
pub fn verdict(f: &Figure, med: &BTreeMap<&'static str, f64>) -> (String, Option<bool>) {
    let Some(&v) = med.get(f.key) else {
        return (target_text(f, med), None);
    };
    let ok = match f.target {
        Target::None => None,
        Target::AtLeast(t) => Some(v >= t),
        Target::AtMost(t) => Some(v <= t),
        Target::AtLeastAndRel(abs, k, other) => {
            Some(v >= abs && med.get(other).is_none_or(|o| v >= k * o))
        }
        Target::AtMostRel(k, other, ratio) => match med.get(ratio) {
            Some(q) => Some(*q <= k),
            None => med.get(other).map(|o| v <= k * o),
        },
    };
    (target_text(f, med), ok)
}

fn target_text(f: &Figure, med: &BTreeMap<&'static str, f64>) -> String {
    match f.target {
        Target::None => "-".into(),
        Target::AtLeast(t) => format!(">= {t}"),
        Target::AtMost(t) => format!("<= {t}"),
        Target::AtLeastAndRel(abs, k, other) => match med.get(other) {
            Some(o) => format!(">= {abs} & >= {k}x veth ({:.2})", k * o),
            None => format!(">= {abs} & >= {k}x {other}"),
        },
        Target::AtMostRel(k, other, ratio) => match (med.get(ratio), med.get(other)) {
            (Some(q), _) => format!("<= {k}x kernel (ratio {q:.2})"),
            (None, Some(o)) => format!("<= {k}x kernel ({:.1})", k * o),
            _ => format!("<= {k}x {other}"),
        },
    }
}

pub fn table(runs: &[Run]) -> String {
    let med = medians(runs);
    let mut rows: Vec<[String; 6]> = vec![[
        "figure".into(),
        "median".into(),
        "min".into(),
        "max".into(),
        "target".into(),
        "verdict".into(),
    ]];
    for f in FIGURES {
        let (target, ok) = verdict(f, &med);
        let verdict = match ok {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "-",
        };
        match stat(runs, f.key) {
            Some(s) => rows.push([
                f.key.into(),
                format!("{:.*}", f.prec, s.median),
                format!("{:.*}", f.prec, s.min),
                format!("{:.*}", f.prec, s.max),
                target,
                verdict.into(),
            ]),
            None => rows.push([
                f.key.into(),
                "n/a".into(),
                "".into(),
                "".into(),
                target,
                "-".into(),
            ]),
        }
    }
    let mut info_rows: Vec<[String; 6]> = Vec::new();
    for (k, _) in INFO {
        if let Some(s) = stat(runs, k) {
            info_rows.push([
                (*k).into(),
                format!("{:.1}", s.median),
                format!("{:.1}", s.min),
                format!("{:.1}", s.max),
                "info".into(),
                "".into(),
            ]);
        }
    }
    let mut w = [0usize; 6];
    for r in rows.iter().chain(info_rows.iter()) {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |r: &[String; 6]| {
        format!(
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {:<w4$}  {}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        )
    };
    let mut out = String::new();
    out += &line(&rows[0]);
    out += &format!("{}\n", "-".repeat(w.iter().sum::<usize>() + 10));
    for r in &rows[1..] {
        out += &line(r);
    }
    if !info_rows.is_empty() {
        out += &format!("{}\n", "-".repeat(w.iter().sum::<usize>() + 10));
        for r in &info_rows {
            out += &line(r);
        }
    }
    out
}

/// What each figure measures, one line each.
pub fn legend() -> String {
    let w = FIGURES
        .iter()
        .map(|f| f.key.len())
        .chain(INFO.iter().map(|i| i.0.len()))
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, what) in FIGURES
        .iter()
        .map(|f| (f.key, f.what))
        .chain(INFO.iter().copied())
    {
        out += &format!("  {k:<w$}  {what}\n");
    }
    out
}

pub fn json(runs: &[Run], machine: (usize, String, String), mode: &str) -> serde_json::Value {
    let med = medians(runs);
    let mut obj = serde_json::Map::new();
    for f in FIGURES {
        obj.insert(
            f.key.into(),
            med.get(f.key)
                .map_or(serde_json::Value::Null, |v| serde_json::json!(v)),
        );
    }
    obj.insert("runs".into(), serde_json::json!(runs.len()));
    obj.insert(
        "machine".into(),
        serde_json::json!({ "nproc": machine.0, "kernel": machine.1, "cpu": machine.2 }),
    );
    obj.insert("mode".into(), serde_json::json!(mode));
    let spread: serde_json::Map<String, serde_json::Value> = FIGURES
        .iter()
        .filter_map(|f| {
            stat(runs, f.key).map(|s| (f.key.to_string(), serde_json::json!([s.min, s.max])))
        })
        .collect();
    obj.insert("min_max".into(), serde_json::Value::Object(spread));
    let info: serde_json::Map<String, serde_json::Value> = INFO
        .iter()
        .filter_map(|(k, _)| med.get(k).map(|v| (k.to_string(), serde_json::json!(v))))
        .collect();
    obj.insert("info".into(), serde_json::Value::Object(info));
    serde_json::Value::Object(obj)
}
