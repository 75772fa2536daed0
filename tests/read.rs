//! `tapstack read FILE` and `--pcap FILE.pcapng`: tapstack's own captures read back give the live
//! packet lines; pcapng comments carry them (tshark shows them); captures that tcpdump makes of real
//! Linux TCP under loss, between two namespaces, are read with the same flags, relative numbers and
//! lengths as tshark reads them; bad files get one line and exit 1.

mod common;
#[path = "common/kernpair.rs"]
mod kernpair;
use common::*;
use kernpair::{stop, Pair, CLIENT_IP, PY_CLIENT, PY_SERVER, SERVER_IP};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tapstack-read-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs tapstack with `args` (in `ns` if given); returns exit code, stdout, stderr.
fn tapstack(ns: Option<&Netns>, args: &[&str]) -> (Option<i32>, String, String) {
    let bin = tapstack_bin();
    let mut cmd = match ns {
        Some(ns) => ns.cmd(bin.to_str().unwrap()),
        None => Command::new(&bin),
    };
    let out = cmd.args(args).stdin(Stdio::null()).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Packet lines without the log prefix: `in  wire +0.000000s ...`.
fn packet_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("INFO  packet  "))
        .map(str::to_string)
        .collect()
}

/// A live line's direction word as `read` says it: in = peer to stack = client to server.
fn as_read(live: &str) -> String {
    let (word, rest) = live.split_at(3);
    let has_conn = rest.split_whitespace().nth(2).is_some_and(|w| {
        w.strip_prefix('c')
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
    });
    let word = match (word, has_conn) {
        (_, false) => "---",
        ("in ", true) => "c>s",
        _ => "s>c",
    };
    // Labels name the ends as the capture does.
    let rest = rest
        .replace("reset by the peer", "reset by the client")
        .replace("reset by the stack", "reset by the server");
    format!("{word}{rest}")
}

/// Equal line lists, or the first difference.
fn same_lines(got: &[String], want: &[String], what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "{what}: line {i} differs");
    }
    assert_eq!(got.len(), want.len(), "{what}: line count");
}

fn tshark() -> bool {
    let ok = Command::new("tshark")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip("needs tshark (Debian package tshark) to check what Wireshark reads");
    }
    ok
}

fn tshark_fields(file: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-r", p(file), "-T", "fields", "-E", "separator=\t"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// The demo's capture read back, as pcap and as pcapng, gives the live packet lines, with the
/// direction words of a capture (`c>s`, `s>c`); re-writing a read capture changes nothing.
#[test]
fn test_round_trip_of_the_demo_gives_the_live_packet_lines() {
    let Some(ns) = Netns::new("rdrt") else { return };
    let dir = tmpdir("rt");
    let (pcap, pcapng, again) = (
        dir.join("d.pcap"),
        dir.join("d.pcapng"),
        dir.join("again.pcapng"),
    );
    let mut live = None;
    for file in [&pcap, &pcapng] {
        let (code, _, err) = tapstack(
            Some(&ns),
            &["demo", "--exit", "--seed", "3", "--pcap", p(file)],
        );
        assert_eq!(code, Some(0), "{err}");
        let lines = packet_lines(&err);
        if let Some(l) = &live {
            assert_eq!(l, &lines, "the demo is deterministic");
        }
        live = Some(lines);
    }
    let live: Vec<String> = live.unwrap().iter().map(|l| as_read(l)).collect();
    assert!(live.len() > 60, "{live:?}");
    // Classic pcap names no interface: the lines say `pcap` where the live ones say `wire`.
    let (code, _, err) = tapstack(None, &["read", p(&pcap)]);
    assert_eq!(code, Some(0), "{err}");
    let from_pcap: Vec<String> = packet_lines(&err)
        .iter()
        .map(|l| l.replacen(" pcap +", " wire +", 1))
        .collect();
    same_lines(&from_pcap, &live, "read of the pcap");
    let (code, _, err) = tapstack(None, &["read", p(&pcapng), "--pcap", p(&again)]);
    assert_eq!(code, Some(0), "{err}");
    same_lines(&packet_lines(&err), &live, "read of the pcapng");
    assert!(
        err.contains(&format!("read {} frames from", live.len())),
        "{err}"
    );
    assert!(
        err.contains(
            "c2 client 192.168.69.100:49156: CLOSED -> SYN-SENT (inferred from the capture)"
        ),
        "{err}"
    );
    assert!(err.contains("client->server"), "{err}");
    let (code, _, err) = tapstack(None, &["read", p(&again)]);
    assert_eq!(code, Some(0), "{err}");
    same_lines(&packet_lines(&err), &live, "re-written by read");
    // Ladders, as live.
    let (code, _, err) = tapstack(None, &["read", p(&pcap), "--ladder"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("-- handshake --") && err.contains("-- close --"),
        "{err}"
    );
    // Step mode: Enter twice, then q: three frames shown, and a clean exit.
    let mut child = Command::new(tapstack_bin())
        .args(["read", p(&pcap), "--step"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"\n\nq\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    // The prompt and the next line share a line of the terminal.
    assert_eq!(err.matches("INFO  packet  ").count(), 3, "{err}");
    assert_eq!(err.matches("[step] Enter: next packet").count(), 3, "{err}");
    assert!(err.contains("read 3 frames from"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pcapng capture of the demo under faults: tshark reads it, every frame's comment is its packet
/// line (direction and summary), and frames the fault injector dropped, duplicated or corrupted say
/// so.
#[test]
fn test_pcapng_comments_carry_packet_lines_and_faults() {
    if !tshark() {
        return;
    }
    let Some(ns) = Netns::new("rdng") else { return };
    let dir = tmpdir("ng");
    let file = dir.join("faults.pcapng");
    let (code, _, err) = tapstack(
        Some(&ns),
        &[
            "demo",
            "--exit",
            "--seed",
            "3",
            "--drop-chance",
            "0.1",
            "--dup-chance",
            "0.05",
            "--corrupt-chance",
            "0.05",
            "--pcap",
            p(&file),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    // Live lines, without device and time, as the comments hold them; the notice a lost outgoing
    // frame gets is a line of its own, not a frame.
    let live: Vec<String> = packet_lines(&err)
        .iter()
        .filter(|l| !l.contains("the frame above never reached the link"))
        .map(|l| {
            let mut w = l.splitn(4, ' ').filter(|w| !w.is_empty());
            let dir = w.next().unwrap().to_string();
            let rest = l.split_once("s ").unwrap().1;
            format!("{dir} {rest}")
        })
        .collect();
    let rows = tshark_fields(&file, &["frame.comment"]);
    assert_eq!(rows.len(), live.len(), "one frame per packet line");
    let mut notes = [0usize; 4];
    for (row, line) in rows.iter().zip(&live) {
        let comment = &row[0];
        let words = comment.split(" | fault injector:").next().unwrap();
        let words = words
            .strip_suffix(" (after capture: the stack never received this frame)")
            .unwrap_or(words);
        assert_eq!(words, line, "comment {comment}");
        for (i, what) in [
            "DROPPED after capture, this frame never reached the link",
            "the stack never received this frame",
            "DUPLICATED",
            "CORRUPTED",
        ]
        .iter()
        .enumerate()
        {
            notes[i] += comment.contains(what) as usize;
        }
    }
    assert!(
        notes.iter().all(|&n| n > 0),
        "every kind of note: {notes:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The one line a bad file gets, and exit 1.
fn bad(file: &Path) -> String {
    let (code, out, err) = tapstack(None, &["read", p(file)]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(!err.contains("panicked"), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert_eq!(err.lines().last(), Some(errors[0]), "{err}");
    errors[0].to_string()
}

fn pcap_header(link: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    b.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&262_144u32.to_le_bytes());
    b.extend_from_slice(&link.to_le_bytes());
    b
}

fn record(b: &mut Vec<u8>, frame: &[u8]) {
    b.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
    b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    b.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    b.extend_from_slice(frame);
}

#[test]
fn test_bad_files_get_one_line_and_exit_1() {
    let dir = tmpdir("bad");
    let w = |name: &str, bytes: &[u8]| {
        let f = dir.join(name);
        std::fs::write(&f, bytes).unwrap();
        f
    };
    let f = w("empty.pcap", b"");
    assert_eq!(
        bad(&f),
        format!("error: {}: the file is empty: not a capture", p(&f))
    );
    let f = w("notes.txt", b"hello, world\n");
    assert_eq!(
        bad(&f),
        format!(
            "error: {}: not a capture file (pcap or pcapng): it starts with 68 65 6c 6c",
            p(&f)
        )
    );
    // Two frames of raw IPv4, the second cut short.
    let ip = [
        0x45u8, 0, 0, 20, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    let mut b = pcap_header(101);
    record(&mut b, &ip);
    record(&mut b, &ip);
    let cut = w("cut.pcap", &b[..b.len() - 5]);
    let line = bad(&cut);
    assert_eq!(
        line,
        format!(
            "error: {}: truncated record 2 at byte offset 60: it needs 36 bytes, only 31 are left (the capture was cut short)",
            p(&cut)
        )
    );
    // The frame before the cut was shown.
    let (_, _, err) = tapstack(None, &["read", p(&cut)]);
    assert_eq!(packet_lines(&err).len(), 1, "{err}");
    let mut b = pcap_header(147);
    record(&mut b, &ip);
    let f = w("user0.pcap", &b);
    assert_eq!(
        bad(&f),
        format!("error: {}: unknown link type 147 (a user-defined DLT) (record 1): tapstack reads Ethernet (1), raw IP (101, 228, 229), Linux cooked SLL (113) and SLL2 (276)", p(&f))
    );
    let f = w("header.pcap", &pcap_header(1)[..20]);
    assert_eq!(
        bad(&f),
        format!(
            "error: {}: truncated: the file header needs 24 bytes, the file has 20",
            p(&f)
        )
    );
    let missing = dir.join("missing.pcap");
    assert!(bad(&missing).contains("No such file"));
    // Reading a file into itself would destroy it.
    let mut b = pcap_header(101);
    record(&mut b, &ip);
    let f = w("self.pcap", &b);
    let (code, _, err) = tapstack(None, &["read", p(&f), "--pcap", p(&f)]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--pcap names the file being read"), "{err}");
    assert_eq!(std::fs::read(&f).unwrap(), b, "left as it was");
    let _ = std::fs::remove_dir_all(&dir);
}

/// tshark's flags field (`0x0012`) in tapstack's words (`SYN,ACK`).
fn flag_names(hex: &str) -> String {
    let v = u16::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap();
    let names = [
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
    let v: Vec<&str> = names
        .iter()
        .filter(|(b, _)| v & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}

/// Holds `read --events` against tshark on one file, frame by frame; returns (TCP frames,
/// retransmissions labelled by read, retransmissions and fast retransmissions by tshark, segments
/// carrying SACK blocks).
fn compare_with_tshark(file: &Path) -> (usize, usize, usize, usize, usize) {
    let events = file.with_extension("events.json");
    let (code, _, err) = tapstack(None, &["-q", "read", p(file), "--events", p(&events)]);
    assert_eq!(code, Some(0), "{err}");
    let evs: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let packets: Vec<&serde_json::Value> = evs.iter().filter(|e| e["event"] == "packet").collect();
    let rows = tshark_fields(
        file,
        &[
            "frame.number",
            "tcp.flags",
            "tcp.seq",
            "tcp.ack",
            "tcp.len",
            "tcp.analysis.retransmission",
            "tcp.analysis.fast_retransmission",
        ],
    );
    assert_eq!(
        packets.len(),
        rows.len(),
        "{}: one packet event per frame",
        p(file)
    );
    let (mut tcp, mut ours, mut retx, mut fast, mut sack) = (0, 0, 0, 0, 0);
    let mut disagreements = Vec::new();
    for (ev, row) in packets.iter().zip(&rows) {
        assert_eq!(ev["seq"].to_string(), row[0], "frame numbers");
        let t = &ev["tcp"];
        if row[1].is_empty() {
            continue;
        }
        tcp += 1;
        sack += (t["opts"]["sack_blocks"].as_u64().unwrap_or(0) > 0) as usize;
        let flags = flag_names(&row[1]);
        let mut want = vec![
            (
                "flags",
                flags.clone(),
                t["flags"].as_str().unwrap_or("").to_string(),
            ),
            ("rel seq", row[2].clone(), t["rel_seq"].to_string()),
            ("len", row[4].clone(), t["len"].to_string()),
        ];
        if flags.contains("ACK") {
            want.push(("rel ack", row[3].clone(), t["rel_ack"].to_string()));
        }
        for (what, theirs, mine) in want {
            if theirs != mine {
                disagreements.push(format!(
                    "frame {}: {what}: tshark {theirs}, read {mine}",
                    row[0]
                ));
            }
        }
        retx += (!row[5].is_empty() || !row[6].is_empty()) as usize;
        fast += !row[6].is_empty() as usize;
        ours += ev["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap_or("").contains("retransmission")) as usize;
    }
    assert!(
        disagreements.is_empty(),
        "{}: {} disagreements with tshark, first: {:?}",
        p(file),
        disagreements.len(),
        &disagreements[..disagreements.len().min(10)]
    );
    // The narration of a capture is inferred, and says so; directions are per flow.
    let (_, _, err) = tapstack(None, &["read", p(file)]);
    assert!(
        err.contains(&format!("client {CLIENT_IP}:"))
            && err.contains(": CLOSED -> SYN-SENT (inferred from the capture)"),
        "{err}"
    );
    assert!(
        err.contains("LAST-ACK -> CLOSED (inferred from the capture)"),
        "{err}"
    );
    for l in packet_lines(&err) {
        if l.contains(&format!("> {SERVER_IP}:5001")) {
            assert!(l.starts_with("c>s "), "{l}");
        } else if l.contains(&format!("{SERVER_IP}:5001 >")) {
            assert!(l.starts_with("s>c "), "{l}");
        }
    }
    (tcp, ours, retx, fast, sack)
}

/// Real Linux TCP, both ways, under 2% loss: captured by tcpdump on the veth (Ethernet) and on
/// `any` (Linux cooked SLL and SLL2) at the same time, each read back and held against tshark.
#[test]
fn test_tcpdump_captures_of_kernel_tcp_under_loss_agree_with_tshark() {
    if !tshark() {
        return;
    }
    let Some(pair) = Pair::new() else { return };
    let dir = tmpdir("kern");
    let files = [
        (dir.join("eth.pcap"), vec!["-i", "va"]),
        (dir.join("sll.pcap"), vec!["-i", "any", "-y", "LINUX_SLL"]),
        (dir.join("sll2.pcap"), vec!["-i", "any", "-y", "LINUX_SLL2"]),
    ];
    let dumps: Vec<Child> = files.iter().map(|(f, a)| pair.tcpdump(f, a)).collect();
    let conns = "3";
    let mut server = pair
        .b
        .cmd("python3")
        .args(["-c", PY_SERVER, SERVER_IP, conns])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let out = pair.a.python(PY_CLIENT, &[SERVER_IP, conns]);
    assert!(out.contains("OK"), "{out}");
    let _ = server.wait();
    std::thread::sleep(Duration::from_millis(300));
    for d in dumps {
        stop(d);
    }
    for (file, _) in &files {
        let (tcp, ours, retx, fast, sack) = compare_with_tshark(file);
        eprintln!(
            "{}: {tcp} TCP frames agree with tshark; retransmissions: read {ours}, tshark {retx} ({fast} fast); {sack} segments with SACK blocks",
            p(file)
        );
        assert!(tcp > 500, "{tcp} TCP frames");
        assert!(retx > 0 && ours > 0, "2% loss and not one retransmission");
        assert!(sack > 0, "loss and no SACK");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
