//! Loss repair is visible: under seeded loss on the in-memory wire, a bulk echo makes the stacks
//! repair losses, and each repair is told (an event the harness sees, a `loss_repair` line in
//! `--events`), and each connection's last TCP figures agree with the repairs told.

use std::sync::Mutex;
use std::time::Duration;
use tapstack::harness::{Harness, LossRepair, Side, TcpFigures};
use tapstack::trace::{EventsTarget, TraceConfig};
use tapstack::ServiceKind;

/// The narration (`tapstack::tcp` lines) of this test binary.
static NARRATION: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target() == "tapstack::tcp"
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            NARRATION.lock().unwrap().push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn test_sack_recovery_is_told_and_counted() {
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Info);
    let dir = std::env::temp_dir().join(format!("tapstack-loss-visible-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let events = dir.join("events.jsonl");
    let mut trace = TraceConfig::silent();
    trace.silent = false;
    trace.quiet = true;
    trace.events = Some(EventsTarget::File(events.clone()));
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .seed(5)
        .drop_chance(0.05)
        .latency(Duration::from_millis(5))
        .trace(trace)
        .build();
    let sent = data(400_000);
    let got = h.echo(7, &sent, Duration::from_secs(600)).unwrap();
    assert_eq!(got, sent);
    // The client's close is through; the server's last ACK may still be on the wire.
    h.run_for(Duration::from_secs(2));

    // The server (the echo's sender back) repaired losses, at least once with SACK.
    let repairs = h.loss_repairs(Side::Server);
    let sack = repairs
        .iter()
        .filter(|r| r.kind == LossRepair::FastRetransmit { sack: true })
        .count();
    let newreno = repairs
        .iter()
        .filter(|r| r.kind == LossRepair::FastRetransmit { sack: false })
        .count();
    let timeouts = repairs
        .iter()
        .filter(|r| r.kind == LossRepair::Timeout)
        .count();
    assert!(sack >= 1, "no SACK recovery told: {repairs:?}");
    // The first loss ends slow start: the window is cut and a threshold set. (Later ones may
    // leave it: CUBIC cuts once per congestion event, and never below two segments.)
    let first = repairs[0];
    assert!(
        first.figures.cwnd < first.cwnd_before,
        "the first recovery lowers the window: {first:?}"
    );
    assert!(
        repairs.iter().all(|r| r.figures.ssthresh.is_some()),
        "{repairs:?}"
    );

    // The last figures: one connection, counts equal to the repairs told, a round trip measured.
    let finals = h.final_figures(Side::Server);
    assert_eq!(finals.len(), 1, "{finals:?}");
    let (conn, f) = finals[0];
    assert!(repairs.iter().all(|r| r.conn == conn));
    assert_eq!(f.sack_recoveries as usize, sack, "{f:?}");
    assert_eq!(f.newreno_recoveries() as usize, newreno, "{f:?}");
    assert_eq!(f.timeouts as usize, timeouts, "{f:?}");
    let srtt = f.srtt.expect("a round trip was measured");
    assert!(
        srtt.total_millis() >= 10,
        "the wire's round trip is 10 ms: {f:?}"
    );
    assert!(
        f.rto.total_millis() >= 200,
        "the minimum RTO is 200 ms: {f:?}"
    );
    assert!(f.ssthresh.is_some(), "a loss sets the threshold: {f:?}");
    eprintln!(
        "server c{conn}: {sack} SACK recoveries, {newreno} NewReno, {timeouts} timeouts; {f:?}; {} s virtual",
        h.now().as_secs_f64()
    );

    // Narrated: each SACK recovery, the first with its explanation, and the close figures.
    let narration = NARRATION.lock().unwrap().clone();
    let told: Vec<&String> = narration
        .iter()
        .filter(|l| l.contains(&format!("c{conn} fast recovery: SACK showed a loss")))
        .collect();
    assert_eq!(told.len(), sack, "{narration:#?}");
    assert!(told[0].contains("RFC 6675"), "{}", told[0]);
    assert!(told.iter().skip(1).all(|l| !l.contains("RFC 6675")));
    let timed_out: Vec<&String> = narration
        .iter()
        .filter(|l| l.contains(&format!("c{conn} retransmission timeout after ")))
        .collect();
    assert_eq!(timed_out.len(), timeouts, "{narration:#?}");
    if let Some(first) = timed_out.first() {
        assert!(
            first.contains("back to slow start") && first.contains("RFC 6298"),
            "{first}"
        );
    }
    let closing: Vec<&String> = narration
        .iter()
        .filter(|l| l.contains(&format!("c{conn} TCP figures:")))
        .collect();
    assert_eq!(closing.len(), 1, "{narration:#?}");
    for l in told
        .iter()
        .take(2)
        .chain(timed_out.iter().take(1))
        .chain(&closing)
    {
        eprintln!("{l}");
    }
    assert!(
        closing[0].contains(&format!(
            "losses repaired: {sack} by SACK recovery, {newreno} by NewReno, {timeouts} by timeout"
        )),
        "{}",
        closing[0]
    );

    // The same in `--events`, once the tracer is done (dropping the harness flushes it).
    drop(h);
    let text = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let told_sack = lines
        .iter()
        .filter(|v| v["event"] == "loss_repair" && v["kind"] == "sack")
        .count();
    assert_eq!(told_sack, sack);
    let figures: Vec<_> = lines
        .iter()
        .filter(|v| v["event"] == "tcp_figures")
        .collect();
    assert_eq!(figures.len(), 1);
    assert_eq!(figures[0]["conn"], conn);
    assert_eq!(figures[0]["tcp"]["sack_recoveries"], sack);
    assert_eq!(figures[0]["tcp"]["timeouts"], timeouts);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn test_a_clean_wire_repairs_nothing() {
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .seed(1)
        .build();
    let sock = h.connect(7).unwrap();
    assert!(h.run_until(Duration::from_secs(5), |h| h.is_established(sock)));
    h.send(sock, &data(20_000));
    let mut got = 0;
    assert!(h.run_until(Duration::from_secs(5), |h| {
        got += h.recv(sock).len();
        got == 20_000
    }));
    let f = h.tcp_figures(sock).expect("the socket is open");
    assert_eq!(f.repairs(), 0, "{f:?}");
    assert!(f.ssthresh.is_none() && f.srtt.is_some(), "{f:?}");
    assert!(h.loss_repairs(Side::Server).is_empty());
    assert!(h.loss_repairs(Side::Client).is_empty());
    h.close(sock);
    assert!(h.run_until(Duration::from_secs(5), |h| h.is_closed(sock)));
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.final_figures(Side::Server).len(), 1);
}

/// While a connection moves data the stack samples its TCP figures about once a second of its
/// clock (not per segment), and the connection's picture (`/conn/ID`) carries the latest: sampled
/// while it runs, the last ones once its socket is let go.
#[test]
fn test_figures_are_sampled_while_data_moves_and_drawn() {
    let mut h = Harness::builder()
        .serve(ServiceKind::Discard, 9)
        .seed(5)
        .drop_chance(0.05)
        .latency(Duration::from_millis(5))
        .build();
    let sent = data(4 << 20);
    let c = h.connect(9).unwrap();
    let mut off = 0;
    while h.now() < Duration::from_millis(3_500) && off < sent.len() {
        off += h.send(c, &sent[off..]);
        h.run_for(Duration::from_millis(10));
    }
    assert!(
        off < sent.len(),
        "still sending after 3.5 s: the samples below are of a running connection"
    );
    let samples = h.sampled_figures(Side::Client);
    let conn = samples
        .first()
        .expect("the sender's figures were sampled")
        .0;
    assert!(samples.iter().all(|s| s.0 == conn), "{samples:?}");
    // A second after the first egress, then once a second: at about 1, 2 and 3 s.
    assert!(
        samples.len() == 3,
        "once a second, not per segment: {} samples in 3.5 s",
        samples.len()
    );
    // The picture has the latest figures the stack told: this sample, or a loss repair's since.
    let svg = h
        .conn_svg(Side::Client, conn)
        .expect("the client's picture");
    let (_, last) = samples[samples.len() - 1];
    let repaired = h.loss_repairs(Side::Client).last().map(|r| r.figures);
    let told =
        |f: TcpFigures| svg.contains(&format!("TCP figures: cwnd {} bytes", grouped(f.cwnd)));
    assert!(
        (told(last) || repaired.is_some_and(told)) && svg.contains("sampled while it ran)"),
        "{last:?} / {repaired:?} in\n{svg}"
    );

    h.close(c);
    assert!(h.run_until(Duration::from_secs(600), |h| h.is_closed(c)));
    h.release_socket(c);
    h.run_for(Duration::from_secs(2));
    let (id, fin) = *h
        .final_figures(Side::Client)
        .last()
        .expect("the last figures, as the socket went");
    assert_eq!(id, conn);
    let svg = h
        .conn_svg(Side::Client, conn)
        .expect("recently closed: still drawn");
    assert!(
        svg.contains(&format!("TCP figures: cwnd {} bytes", grouped(fin.cwnd)))
            && svg.contains("as its socket was let go)"),
        "{svg}"
    );
}

/// 1234567 as "1,234,567", as the narration writes byte counts.
fn grouped(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Reordering alone (no loss): late segments start fast recoveries that the peer's D-SACKs then
/// show were needless; the stack takes those window cuts back and its figures count them.
#[test]
fn test_spurious_recoveries_under_reordering_are_undone_and_counted() {
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .seed(3)
        .reorder_chance(0.05)
        .latency(Duration::from_millis(5))
        .build();
    let sent = data(1 << 20);
    assert_eq!(h.echo(7, &sent, Duration::from_secs(600)).unwrap(), sent);
    h.run_for(Duration::from_secs(2));
    let mut figures = h.final_figures(Side::Server);
    figures.extend(h.final_figures(Side::Client));
    let undone: u32 = figures.iter().map(|(_, f)| f.undone).sum();
    let recoveries: u32 = figures.iter().map(|(_, f)| f.fast_retransmits).sum();
    assert!(
        undone > 0 && undone <= recoveries,
        "{undone} undone of {recoveries} recoveries"
    );
}
