//! Pictures end to end: ladder diagrams in the terminal (`--ladder`, the demo), and in a real headless
//! Chromium loading `/conn/ID` and `/live` from the userspace stack after a `curl` request.
//!
//! The browser test needs Debian's `chromium` (installed by `.ci/run`); without it the test is
//! skipped loudly, and under `CI=true` it fails instead. Screenshots go to `target/test-artifacts/`.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const PY_ECHO_TCP_AND_UDP: &str = r#"
import socket, sys
host = sys.argv[1]
s = socket.create_connection((host, 7), timeout=10)
s.sendall(b"ladder\n")
got = b""
while len(got) < 7:
    b = s.recv(100)
    if not b: break
    got += b
s.shutdown(socket.SHUT_WR)
assert s.recv(10) == b""
s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(3)
u.sendto(b"hello udp", (host, 7))
data, _ = u.recvfrom(100)
print(got.decode().strip(), data.decode())
"#;

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// The lines of `text` from the first one containing `start` to the next blank line.
fn block_after<'a>(text: &'a str, start: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| !l.contains(start))
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn ladder_printed_on_close_and_open_flows_at_shutdown_and_pages_answer() {
    let Some(ns) = Netns::with_tap("ladder") else {
        return;
    };
    // A UTF-8 locale, but standard error is a pipe: plain ASCII.
    let mut ts = ns.tapstack_env(
        &["serve", "--tap", "tap0", "--serve", "echo,http", "--ladder"],
        &[("LANG", "C.UTF-8"), ("LC_ALL", "")],
    );
    ts.wait_ready();
    assert_eq!(
        ns.python(PY_ECHO_TCP_AND_UDP, &["192.168.69.1"]).trim(),
        "ladder hello udp"
    );
    let summary = ts
        .wait_for("closed by", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no close summary:\n{}", ts.stderr_text()));
    let id: u64 = summary
        .split_whitespace()
        .find_map(|w| w.strip_prefix('c')?.parse().ok())
        .unwrap();
    assert!(
        ts.wait_for(
            &format!("c{id} tcp 192.168.69.100:"),
            Duration::from_secs(5)
        )
        .is_some(),
        "{}",
        ts.stderr_text()
    );
    // The block is one log record, but it may reach the pipe in more than one read: wait for the
    // blank line that ends it.
    let title = format!("c{id} tcp 192.168.69.100:");
    let end = std::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = ts.stderr_text();
        let after = text.find(&title).map(|i| &text[i..]);
        if after.is_some_and(|a| a.contains("\n\n")) || std::time::Instant::now() > end {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The block comes right after the summary line.
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| l.contains("closed by")).unwrap();
    let title = lines[at + 1];
    assert!(
        title.starts_with(&format!("INFO  ladder  c{id} tcp 192.168.69.100:"))
            && title.ends_with(" -> 192.168.69.1:7"),
        "{text}"
    );
    let block: Vec<&str> = lines[at + 3..]
        .iter()
        .copied()
        .take_while(|l| !l.trim().is_empty())
        .collect();
    let block = block.join("\n");
    for needle in [
        "-- handshake --",
        "-- data --",
        "-- close --",
        "SYN seq=0 win=",
        "SYN,ACK seq=0 ack=1 win=",
        "PSH,ACK seq=1 ack=1 len=7",
        "+0.000000s  |",
        ">|",
        "|<",
    ] {
        assert!(block.contains(needle), "{needle:?} in\n{block}");
    }
    assert!(
        block.is_ascii(),
        "ASCII when standard error is no terminal:\n{block}"
    );

    // The pages, on the userspace stack and on the host.
    let conn = ns.sh_ok(&format!(
        "curl -sS -i --max-time 10 http://192.168.69.1/conn/{id}"
    ));
    assert!(conn.starts_with("HTTP/1.1 200 OK"), "{conn}");
    assert!(conn.contains("Content-Type: image/svg+xml\r\n"), "{conn}");
    assert!(conn.contains("Cache-Control: no-store\r\n"), "{conn}");
    assert!(
        conn.contains("Date: ") && conn.contains("Server: tapstack/"),
        "{conn}"
    );
    let segs = conn.matches(r#"class="seg""#).count();
    assert!(segs >= 9, "{conn}");
    // The stack's last TCP figures for it, under the title.
    assert!(
        conn.contains(r#"<text class="caption""#)
            && conn.contains("TCP figures: cwnd ")
            && conn.contains("as its socket was let go)"),
        "{conn}"
    );
    let host = ns.sh_ok(&format!(
        "curl -sS --max-time 10 http://127.0.0.1:10080/conn/c{id}"
    ));
    assert_eq!(
        host.matches(r#"class="seg""#).count(),
        segs,
        "the same diagram on the host"
    );
    for (path, code) in [
        ("/conn/abc", "400"),
        ("/conn/987654", "404"),
        ("/live", "200"),
    ] {
        let got = ns.sh_ok(&format!(
            "curl -sS -o /dev/null -w '%{{http_code}}' --max-time 10 http://192.168.69.1{path}"
        ));
        assert_eq!(got, code, "{path}");
    }
    let live = ns.sh_ok("curl -sS -i --max-time 10 'http://192.168.69.1/live.json?since=0'");
    assert!(live.contains("Cache-Control: no-store\r\n"), "{live}");
    let status = ns.sh_ok("curl -sS --max-time 10 http://192.168.69.1/");
    assert!(
        status.contains(&format!(r#"<a href="/conn/{id}">"#)),
        "{status}"
    );
    assert!(status.contains(r#"<a href="/live">"#), "{status}");

    // UDP never closes: drawn at shutdown.
    ts.signal("TERM");
    assert_eq!(ts.wait_exit(Duration::from_secs(10)), Some(0));
    let text = ts.stderr_text();
    assert!(text.contains("still open at shutdown"), "{text}");
    let udp = block_after(&text, " udp 192.168.69.100:").join("\n");
    assert!(udp.ends_with(" -> 192.168.69.1:7"), "{udp}");
    let udp = block_after(&text[text.find(" udp 192.168.69.100:").unwrap()..], "+0.").join("\n");
    assert!(udp.contains("UDP len=9 -"), "{udp}\n{text}");
    assert!(udp.contains("<-") && udp.contains("->|"), "{udp}");
}

#[test]
fn demo_draws_its_connections_pings_and_udp() {
    let out = Command::new(tapstack_bin())
        .args(["-q", "demo", "--exit", "--seed", "3", "--ladder"])
        .stdin(Stdio::null())
        .output()
        .expect("run the demo");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    let summaries = text.lines().filter(|l| l.contains(" closed by ")).count();
    let tcp_titles = text
        .lines()
        .filter(|l| l.starts_with("INFO  ladder  c") && l.contains(" tcp 192.168.69.100:"))
        .count();
    assert!(summaries >= 7, "{text}");
    assert_eq!(
        tcp_titles, summaries,
        "one ladder per closed connection:\n{text}"
    );
    assert!(
        text.contains("-- handshake --") && text.contains("-- close --"),
        "{text}"
    );
    // Chargen: the server's first flight (its initial window, RFC 6928) and our RST with unread data.
    // How many segments that is depends on congestion control; long flows folding into one row is
    // tested beside the ladder (src/trace/ladder.rs).
    let chargen = text
        .split("INFO  ladder  c")
        .find(|l| l.contains(":19\n"))
        .unwrap_or_else(|| panic!("a chargen ladder:\n{text}"));
    assert!(
        chargen.contains("len=1460") && chargen.contains("RST,ACK"),
        "chargen's data and our RST:\n{chargen}"
    );
    assert!(text.contains("still open at shutdown"), "{text}");
    assert!(
        text.contains(" icmp 192.168.69.100 -> 192.168.69.1 (echo id "),
        "{text}"
    );
    assert!(text.contains("echo request id="), "{text}");
    assert!(text.contains("UDP len=14"), "{text}");
}

/// A command running chromium headless inside the namespace, on a fresh profile.
fn chromium(ns: &Netns, profile: &std::path::Path, extra: &[&str], url: &str) -> String {
    let _ = std::fs::remove_dir_all(profile);
    std::fs::create_dir_all(profile).unwrap();
    let out = ns
        .cmd("timeout")
        .arg("90")
        .arg("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--no-proxy-server",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(extra)
        .arg(url)
        .env("HOME", profile)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium {extra:?} {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `&amp;` and friends back to text.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The `data-label` of every `class="seg"` element in `dom`, in order.
fn seg_labels(dom: &str) -> Vec<String> {
    dom.split(r#"class="seg""#)
        .skip(1)
        .map(|el| {
            let el = &el[..el.find('>').unwrap_or(el.len())];
            let v = el.split(r#"data-label=""#).nth(1).expect("data-label");
            unescape(&v[..v.find('"').unwrap()])
        })
        .collect()
}

/// Packets of one connection as `/live.json` lists them: (label, dropped).
fn conn_packets(live: &serde_json::Value, id: u64) -> Vec<String> {
    live["packets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["conn"] == id)
        .map(|p| p["label"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn chromium_shows_a_curl_connection_on_conn_and_live() {
    let have_chromium = Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_chromium {
        skip("needs chromium, which is not installed (apt-get install chromium)");
        return;
    }
    let Some(ns) = Netns::with_tap("chrome") else {
        return;
    };
    let ts = ns.tapstack(&["serve", "--tap", "tap0", "--serve", "http", "--no-host"]);
    ts.wait_ready();
    let code = ns.sh_ok(
        "curl -sS --max-time 10 --local-port 40123 -o /dev/null -w '%{http_code}' \
         http://192.168.69.1/bytes/3000",
    );
    assert_eq!(code, "200");
    ts.wait_for("40123 closed by", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("curl's connection never closed:\n{}", ts.stderr_text()));

    // What the tracer saw, from another code path (the packet ring).
    let live: serde_json::Value = serde_json::from_str(
        &ns.sh_ok("curl -sS --max-time 10 'http://192.168.69.1/live.json?since=0'"),
    )
    .unwrap();
    let id = live["packets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["summary"]
                .as_str()
                .unwrap()
                .contains("192.168.69.100:40123")
        })
        .and_then(|p| p["conn"].as_u64())
        .expect("curl's packets in /live.json");
    let expected = conn_packets(&live, id);
    assert!(expected.len() >= 9, "{expected:?}");
    assert!(expected[0].starts_with("SYN seq=0 win="), "{expected:?}");
    assert!(
        expected[1].starts_with("SYN,ACK seq=0 ack=1 win="),
        "{expected:?}"
    );
    assert!(expected.iter().any(|l| l.contains("len=")), "{expected:?}");
    assert!(
        expected.iter().any(|l| l.starts_with("FIN")),
        "{expected:?}"
    );

    let tmp = std::env::temp_dir().join(format!("tapstack-chromium-{}", std::process::id()));
    let dir = artifacts();

    // /live first (before other browser connections push curl's out of the last 8): the polling
    // script has run, and the DOM holds curl's packets and its diagram.
    let dom = chromium(
        &ns,
        &tmp,
        &["--virtual-time-budget=5000", "--dump-dom"],
        "http://192.168.69.1/live",
    );
    std::fs::write(dir.join("pictures-live-dom.html"), &dom).unwrap();
    // A row per packet (unless the page's own polling pushed them out of the last 500).
    let rows = dom
        .matches(&format!(r#"data-conn="{id}" data-label=""#))
        .count();
    if dom.matches(r#"<tr class="pkt "#).count() < 500 {
        assert_eq!(rows, expected.len(), "{dom}");
    }
    let start = dom
        .find(&format!(r#"id="conn-{id}""#))
        .unwrap_or_else(|| panic!("no diagram of c{id} on /live (DOM in pictures-live-dom.html)"));
    let section = &dom[start..start + dom[start..].find("</section>").unwrap()];
    assert_eq!(seg_labels(section), expected, "{section}");
    assert!(dom.contains(r#"data-label="SYN seq=0 win="#), "{dom}");

    // /conn/ID: one arrow per packet, with the right labels.
    let url = format!("http://192.168.69.1/conn/{id}");
    let svg = chromium(&ns, &tmp, &["--dump-dom"], &url);
    assert_eq!(
        svg.matches(r#"class="seg""#).count(),
        expected.len(),
        "{svg}"
    );
    assert_eq!(seg_labels(&svg), expected, "{svg}");
    assert!(
        svg.contains(&format!(
            "c{id} tcp 192.168.69.100:40123 -&gt; 192.168.69.1:80"
        )),
        "{svg}"
    );

    // Pictures for people.
    for (name, url, extra) in [
        ("pictures-conn.png", url.as_str(), None),
        (
            "pictures-live.png",
            "http://192.168.69.1/live",
            Some("--virtual-time-budget=3000"),
        ),
    ] {
        let png = dir.join(name);
        let _ = std::fs::remove_file(&png);
        let shot = format!("--screenshot={}", png.display());
        let mut args = vec![shot.as_str(), "--window-size=1200,900", "--hide-scrollbars"];
        args.extend(extra);
        chromium(&ns, &tmp, &args, url);
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 5000,
            "{}",
            png.display()
        );
        eprintln!("screenshot: {}", png.display());
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
