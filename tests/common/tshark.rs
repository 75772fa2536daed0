//! Wireshark as the oracle: tshark's reading of a pcap (`-T fields`, `-z conv,tcp`) next to
//! tapstack's own (`--events`), and the comparison of the two, frame by frame and per connection.
//!
//! Only what tapstack decodes and concludes is compared: TCP flags, relative sequence and
//! acknowledgment numbers, payload length, raw and scaled window, options (MSS, window scale, SACK
//! permitted, SACK blocks in relative numbers), every `tcp.analysis` label kind with the duplicate
//! ACK's number and frame; per connection, segments per direction (from `-z conv,tcp`) and payload
//! bytes per direction (tshark's `tcp.len` summed) against the `conn_closed` events.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

/// Whether tshark can be run here.
pub fn available() -> bool {
    Command::new("tshark")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// tshark's `tcp.analysis.*` fields and the label tapstack gives for each. Fast and spurious
/// retransmissions are also `tcp.analysis.retransmission` in tshark; tapstack names the kind only.
pub const ANALYSIS: [(&str, &str); 14] = [
    ("tcp.analysis.retransmission", "retransmission"),
    ("tcp.analysis.fast_retransmission", "fast retransmission"),
    (
        "tcp.analysis.spurious_retransmission",
        "spurious retransmission",
    ),
    ("tcp.analysis.out_of_order", "out-of-order"),
    ("tcp.analysis.duplicate_ack", "duplicate ACK"),
    ("tcp.analysis.zero_window", "zero window"),
    ("tcp.analysis.zero_window_probe", "zero-window probe"),
    (
        "tcp.analysis.zero_window_probe_ack",
        "zero-window probe ACK",
    ),
    ("tcp.analysis.window_full", "window full"),
    ("tcp.analysis.window_update", "window update"),
    ("tcp.analysis.keep_alive", "keep-alive"),
    ("tcp.analysis.keep_alive_ack", "keep-alive ACK"),
    ("tcp.analysis.lost_segment", "previous segment lost"),
    ("tcp.analysis.ack_lost_segment", "ACKed unseen segment"),
];

const FLAG_NAMES: [(u16, &str); 9] = [
    (0x002, "SYN"),
    (0x001, "FIN"),
    (0x004, "RST"),
    (0x008, "PSH"),
    (0x010, "ACK"),
    (0x020, "URG"),
    (0x040, "ECE"),
    (0x080, "CWR"),
    (0x100, "NS"),
];

/// One TCP segment as read by either side.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Seg {
    pub frame: u64,
    pub src: String,
    pub dst: String,
    pub flags: u16,
    pub seq: u32,
    /// Only when ACK is set.
    pub ack: Option<u32>,
    pub len: u32,
    pub win_raw: u32,
    pub win: u64,
    pub mss: Option<u32>,
    pub wscale: Option<u32>,
    pub sack_ok: bool,
    pub sack: Vec<(u32, u32)>,
    pub labels: BTreeSet<String>,
    pub dup_ack: Option<(u32, u64)>,
    /// The checksum that does not verify, first in layer order: `"ip"` or `"tcp"` (tshark: only
    /// with [`segments_checked`]).
    pub bad_checksum: Option<&'static str>,
}

fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    let s = s.trim();
    if s.is_empty() {
        None
    } else {
        s.parse().ok()
    }
}

fn list(s: &str) -> Vec<u32> {
    s.split(',').filter_map(num).collect()
}

/// tshark's reading of every TCP frame of `pcap`, by frame number.
pub fn segments(pcap: &Path) -> BTreeMap<u64, Seg> {
    read_segments(pcap, false)
}

/// As [`segments`], with tshark verifying the IPv4 and TCP checksums (it does not by default).
pub fn segments_checked(pcap: &Path) -> BTreeMap<u64, Seg> {
    read_segments(pcap, true)
}

fn read_segments(pcap: &Path, check: bool) -> BTreeMap<u64, Seg> {
    let mut fields = vec![
        "frame.number",
        "ip.src",
        "ipv6.src",
        "tcp.srcport",
        "ip.dst",
        "ipv6.dst",
        "tcp.dstport",
        "tcp.flags",
        "tcp.seq",
        "tcp.ack",
        "tcp.len",
        "tcp.window_size_value",
        "tcp.window_size",
        "tcp.options.mss_val",
        "tcp.options.wscale.shift",
        "tcp.options.sack_perm",
        "tcp.options.sack_le",
        "tcp.options.sack_re",
        "tcp.analysis.duplicate_ack_num",
        "tcp.analysis.duplicate_ack_frame",
    ];
    let fixed = fields.len();
    fields.extend(ANALYSIS.iter().map(|a| a.0));
    let checks = fields.len();
    fields.extend(["ip.checksum.status", "tcp.checksum.status"]);
    let mut cmd = Command::new("tshark");
    if check {
        cmd.args([
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
        ]);
    }
    cmd.args(["-r"]).arg(pcap).args([
        "-Y",
        "tcp",
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    for f in &fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut segs = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let c: Vec<&str> = line.split('\t').collect();
        if c.len() < fields.len() {
            continue;
        }
        let ip = |a: &str, b: &str| {
            if a.is_empty() {
                b.to_string()
            } else {
                a.to_string()
            }
        };
        let end = |ip: String, port: &str| {
            let a: std::net::IpAddr = ip.parse().expect("tshark address");
            SocketAddr::new(a, num(port).unwrap_or(0)).to_string()
        };
        let flags = u16::from_str_radix(c[7].trim_start_matches("0x"), 16).unwrap_or(0);
        let (le, re) = (list(c[16]), list(c[17]));
        let mut labels = BTreeSet::new();
        for (i, (_, ours)) in ANALYSIS.iter().enumerate() {
            if !c[fixed + i].trim().is_empty() {
                labels.insert(ours.to_string());
            }
        }
        // tshark adds the plain kind to fast and spurious retransmissions.
        if labels.contains("fast retransmission") || labels.contains("spurious retransmission") {
            labels.remove("retransmission");
        }
        let s = Seg {
            frame: num(c[0]).unwrap_or(0),
            src: end(ip(c[1], c[2]), c[3]),
            dst: end(ip(c[4], c[5]), c[6]),
            flags,
            seq: num(c[8]).unwrap_or(0),
            ack: (flags & 0x10 != 0).then(|| num(c[9]).unwrap_or(0)),
            len: num(c[10]).unwrap_or(0),
            win_raw: num(c[11]).unwrap_or(0),
            win: num(c[12]).unwrap_or(0),
            mss: num(c[13]),
            wscale: num(c[14]),
            sack_ok: !c[15].trim().is_empty(),
            sack: le.into_iter().zip(re).collect(),
            labels,
            dup_ack: match (num(c[18]), num(c[19])) {
                (Some(n), Some(f)) if labels_has_dup(c[fixed + 4]) => Some((n, f)),
                _ => None,
            },
            // 0: bad, 1: good, 2: not verified.
            bad_checksum: if c[checks].trim() == "0" {
                Some("ip")
            } else if c[checks + 1].trim() == "0" {
                Some("tcp")
            } else {
                None
            },
        };
        segs.insert(s.frame, s);
    }
    segs
}

fn labels_has_dup(field: &str) -> bool {
    !field.trim().is_empty()
}

/// tapstack's reading of the same frames, from its `--events` lines.
pub fn our_segments(events: &[serde_json::Value]) -> BTreeMap<u64, Seg> {
    let mut segs = BTreeMap::new();
    for e in events.iter().filter(|e| e["event"] == "packet") {
        let t = &e["tcp"];
        if t.is_null() {
            continue;
        }
        let ip = &e["ip"];
        let end = |a: &serde_json::Value, p: &serde_json::Value| {
            let a: std::net::IpAddr = a.as_str().unwrap().parse().unwrap();
            SocketAddr::new(a, p.as_u64().unwrap() as u16).to_string()
        };
        let mut flags = 0;
        for name in t["flags"].as_str().unwrap_or("").split(',') {
            if let Some((bit, _)) = FLAG_NAMES.iter().find(|(_, n)| *n == name) {
                flags |= bit;
            }
        }
        let o = &t["opts"];
        let mut labels = BTreeSet::new();
        for l in e["labels"].as_array().into_iter().flatten() {
            let l = l.as_str().unwrap();
            if ANALYSIS.iter().any(|a| a.1 == l) {
                labels.insert(l.to_string());
            }
        }
        let u = |v: &serde_json::Value| v.as_u64().map(|x| x as u32);
        let s = Seg {
            frame: e["seq"].as_u64().unwrap(),
            src: end(&ip["src"], &t["src_port"]),
            dst: end(&ip["dst"], &t["dst_port"]),
            flags,
            seq: u(&t["rel_seq"]).unwrap_or_else(|| u(&t["seq"]).unwrap_or(0)),
            ack: (flags & 0x10 != 0).then(|| u(&t["rel_ack"]).unwrap_or(0)),
            len: u(&t["len"]).unwrap_or(0),
            win_raw: u(&t["win"]).unwrap_or(0),
            win: t["window_size"].as_u64().unwrap_or(0),
            mss: u(&o["mss"]),
            wscale: u(&o["wscale"]),
            sack_ok: o["sack_ok"].as_bool().unwrap_or(false),
            sack: t["sack"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| (u(&p[0]).unwrap_or(0), u(&p[1]).unwrap_or(0)))
                .collect(),
            labels,
            dup_ack: t["dup_ack"]
                .as_object()
                .map(|d| (u(&d["num"]).unwrap_or(0), d["frame"].as_u64().unwrap_or(0))),
            bad_checksum: e["bad_checksum"].as_str().map(|c| {
                if c.contains("TCP") {
                    "tcp"
                } else {
                    "ip"
                }
            }),
        };
        segs.insert(s.frame, s);
    }
    segs
}

/// tshark's conversations (`-z conv,tcp`): per (A, B) pair, frames A->B and B->A.
pub fn conversations(pcap: &Path) -> BTreeMap<(String, String), (u64, u64)> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-q", "-z", "conv,tcp"])
        .output()
        .expect("run tshark");
    let mut convs = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 6 || w[1] != "<->" {
            continue;
        }
        // A <-> B  frames(B->A) bytes unit  frames(A->B) bytes unit ...
        let (Some(back), Some(fwd)) = (num::<u64>(w[3]), num::<u64>(w[6])) else {
            continue;
        };
        let norm = |s: &str| -> String {
            // IPv6 conversations print the address bare before the port.
            s.parse::<SocketAddr>().map_or_else(
                |_| match s.rsplit_once(':') {
                    Some((a, p)) => format!("[{a}]:{p}"),
                    None => s.to_string(),
                },
                |a| a.to_string(),
            )
        };
        convs.insert((norm(w[0]), norm(w[2])), (fwd, back));
    }
    convs
}

/// The differences between tshark's reading of a frame and ours, one line each.
pub fn differences(theirs: &Seg, ours: &Seg) -> Vec<String> {
    let mut d = Vec::new();
    let f = theirs.frame;
    macro_rules! cmp {
        ($field:ident) => {
            if theirs.$field != ours.$field {
                d.push(format!(
                    "frame {f} {}: tshark {:?}, tapstack {:?}",
                    stringify!($field),
                    theirs.$field,
                    ours.$field
                ));
            }
        };
    }
    cmp!(src);
    cmp!(dst);
    cmp!(flags);
    cmp!(seq);
    cmp!(ack);
    cmp!(len);
    cmp!(win_raw);
    cmp!(win);
    cmp!(mss);
    cmp!(wscale);
    cmp!(sack_ok);
    cmp!(sack);
    cmp!(dup_ack);
    for l in theirs.labels.symmetric_difference(&ours.labels) {
        let who = if theirs.labels.contains(l) {
            "tshark only"
        } else {
            "tapstack only"
        };
        d.push(format!("frame {f} label `{l}`: {who}"));
    }
    d
}

/// Writes `pcap` without the frames whose IPv4 or TCP/UDP checksum does not verify, or that are
/// malformed, to `out` (the frames a receiving stack discards) and returns their numbers in `pcap`.
pub fn without_bad_checksums(pcap: &Path, out: &Path) -> Vec<u64> {
    const CHECK: [&str; 8] = [
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-o",
        "icmp.check_checksum:TRUE",
    ];
    const BAD: &str =
        "ip.checksum.status==0 || tcp.checksum.status==0 || udp.checksum.status==0 || tcp.hdr_len < 20 || ip.bogus_header_length";
    let listed = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(&CHECK[..6])
        .args(["-Y", BAD, "-T", "fields", "-e", "frame.number"])
        .output()
        .expect("run tshark");
    let bad: Vec<u64> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let w = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(&CHECK[..6])
        .args(["-Y", &format!("!({BAD})"), "-F", "pcap", "-w"])
        .arg(out)
        .output()
        .expect("run tshark");
    assert!(
        w.status.success(),
        "tshark -w: {}",
        String::from_utf8_lossy(&w.stderr)
    );
    bad
}

/// Renumbers the frames of a capture written by [`without_bad_checksums`] as they were numbered in
/// the original (`bad`: the frames left out, ascending).
pub fn renumber(segs: BTreeMap<u64, Seg>, bad: &[u64]) -> BTreeMap<u64, Seg> {
    let original = |k: u64| {
        // The k-th frame kept.
        let mut n = k;
        for &b in bad {
            if b <= n {
                n += 1;
            } else {
                break;
            }
        }
        n
    };
    segs.into_iter()
        .map(|(k, mut s)| {
            let n = original(k);
            s.frame = n;
            if let Some(d) = s.dup_ack.as_mut() {
                d.1 = original(d.1);
            }
            (n, s)
        })
        .collect()
}
