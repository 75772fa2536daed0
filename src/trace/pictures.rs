//! Pictures of flows: the tracer's [`FlowRecord`]s turned into [`Ladder`]s, drawn in the terminal
//! (`--ladder`, always in the demo) and served to the browser (`/conn/ID`, `/live`, `/live.json`
//! through [`TraceView`]).
//!
//! # From a record to a ladder ([`ladder_of`])
//!
//! - Columns: the left one is the end that opened the flow (the client: who sent the first SYN, or
//!   for UDP and pings whoever sent first), the right one the other end. Pings show addresses only
//!   (the "port" of an ICMP flow is its echo identifier, named in the title instead).
//! - Times are counted from the flow's first segment (the first SYN of a TCP connection).
//! - Labels: TCP `SYN seq=0 win=64240 mss=1460`, `PSH,ACK seq=1 ack=1 len=5`, `RST,ACK seq=1 ack=1
//!   (no listener)` (relative numbers; the window only on SYNs or when it is 0); UDP `UDP len=5`;
//!   pings `echo request id=1 seq=1`.
//! - Groups: a segment labelled `handshake ...` is in [`Group::Handshake`], one labelled `close: ...`
//!   or `reset by ...` in [`Group::Close`], any other TCP segment in [`Group::Data`]; UDP and ping
//!   segments in [`Group::Other`] (no group headers).
//! - Retransmissions and frames dropped by the fault injector come from the record's labels and
//!   marks. Folding follows the record (first 64, last 64 kept); the terminal folds further, to the
//!   first [`TERM_HEAD`] and last [`TERM_TAIL`] segments.
//!
//! # When the terminal draws
//!
//! With `TraceConfig.ladder` (and not `silent`), each TCP connection is drawn when it closes, as one
//! block on standard error right after its close summary line (one log record of target
//! `tapstack::ladder`, so its prefix stands before the title: `INFO  ladder  c3 tcp ...`; written
//! straight to standard error when no logger takes that target). UDP exchanges and pings never close:
//! they (and TCP connections still open) are drawn at shutdown, the newest [`SHUTDOWN_DRAWN`] of them,
//! oldest first. Flows pushed out of a full flow table are not drawn (the table holds 65536 flows, so
//! that needs far more traffic than anyone reads ladders of). Box drawing characters when standard
//! error is a terminal and the locale (`LC_ALL`, else `LC_CTYPE`, else `LANG`) says UTF-8, plain ASCII
//! otherwise; never colour.
//!
//! # `/live.json`
//!
//! `GET /live.json?since=N` answers the packets recorded after packet number `N` (the newest
//! [`LIVE_MAX_PACKETS`] of them; `skipped` counts the older ones left out) and the flows those packets
//! belong to, so that the page can refresh their diagrams (`/conn/ID`) when `segments` changes:
//!
//! ```json
//! {"last":42,"skipped":0,"device":"tap0",
//!  "packets":[{"seq":41,"t_us":1234,"dir":"in","conn":3,"proto":"tcp","flags":"SYN","rel_seq":0,
//!              "len":0,"labels":["handshake 1/3"],"dropped":false,
//!              "label":"SYN seq=0 win=64240 mss=1460","summary":"c3 TCP ... (handshake 1/3)"}],
//!  "conns":[{"id":3,"proto":"tcp","title":"c3 tcp 192.168.69.100:40000 -> 192.168.69.1:80",
//!            "segments":1,"closed":null}]}
//! ```

use serde::Serialize;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};

use super::analysis;
use super::decode::TcpFlags;
use super::flow::FlowTable;
use super::ladder::{self, Group, Ladder, Segment, TextStyle};
use super::records::{FlowRecord, PacketRecord, SegmentRecord, Side, TcpFiguresAt};
use super::{Secs, Tracer};
use crate::device::Direction;
use crate::service::TraceView;

/// Segments the terminal shows from the start of a long flow.
pub(crate) const TERM_HEAD: usize = 20;
/// Segments the terminal shows from the end of a long flow.
pub(crate) const TERM_TAIL: usize = 10;
/// Flows still open (UDP, pings, unfinished TCP) drawn at shutdown, at most.
pub(crate) const SHUTDOWN_DRAWN: usize = 16;
/// Packets in one `/live.json` answer, at most.
pub(crate) const LIVE_MAX_PACKETS: usize = 1000;
/// Flows described in one `/live.json` answer, at most (the newest ones).
pub(crate) const LIVE_MAX_CONNS: usize = 16;
/// Open flows linked from the status page, at most (the newest ones; closed ones: the closed ring).
pub(crate) const LINKS_OPEN: usize = 64;

/// The label of a TCP segment: `FLAGS seq=S[ ack=A][ win=W][ mss=M][ len=L][ (reason)]`; the window
/// only on SYNs or when it is 0.
pub(crate) fn tcp_label(
    flags: TcpFlags,
    seq: u32,
    ack: Option<u32>,
    win: u16,
    mss: Option<u16>,
    len: u32,
    rst_reason: Option<&str>,
) -> String {
    let mut s = String::with_capacity(48);
    let _ = write!(s, "{flags} seq={seq}");
    if let Some(a) = ack.filter(|_| flags.ack()) {
        let _ = write!(s, " ack={a}");
    }
    if flags.syn() || win == 0 {
        let _ = write!(s, " win={win}");
    }
    if let Some(m) = mss {
        let _ = write!(s, " mss={m}");
    }
    if len > 0 {
        let _ = write!(s, " len={len}");
    }
    if let Some(r) = rst_reason {
        let _ = write!(s, " ({r})");
    }
    s
}

/// The analysis labels of a segment, for the note beside its arrow: `duplicate ACK #2 of frame 7`.
pub(crate) fn analysis_note(s: &SegmentRecord) -> String {
    let mut out = String::new();
    for l in s.labels.as_slice() {
        if analysis::explanation(l).is_none() {
            continue;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(l);
        if let (&"duplicate ACK", Some(d)) = (l, s.dup_ack) {
            let _ = write!(out, " #{} of frame {}", d.num, d.frame);
        }
    }
    out
}

/// The arrow label of one segment of `f`.
pub(crate) fn segment_label(f: &FlowRecord, s: &SegmentRecord) -> String {
    match s.kind {
        "tcp" => tcp_label(s.flags, s.seq, s.ack, s.win, s.mss, s.len, s.rst_reason),
        "udp" => format!("UDP len={}", s.len),
        kind => format!("{kind} id={} seq={}", f.local.port(), s.seq),
    }
}

/// The group of a segment from its labels (see the [module docs](self)).
pub(crate) fn group_of(tcp: bool, labels: &[&str]) -> Group {
    if !tcp {
        Group::Other
    } else if labels.iter().any(|l| l.starts_with("handshake")) {
        Group::Handshake
    } else if labels
        .iter()
        .any(|l| l.starts_with("close:") || l.starts_with("reset by"))
    {
        Group::Close
    } else {
        Group::Data
    }
}

/// Whether the peer (rather than the stack) is the left column: the end that opened the flow.
fn peer_is_left(f: &FlowRecord) -> bool {
    match f.opened_by {
        Some(Side::Peer) => true,
        Some(Side::Stack) => false,
        None => f.segments().next().is_none_or(|s| s.dir == Direction::In),
    }
}

/// An end of the flow as a column name: `address:port`, or the address alone for pings.
fn end_name(f: &FlowRecord, a: std::net::SocketAddr) -> String {
    if f.proto == "icmp" {
        a.ip().to_string()
    } else {
        a.to_string()
    }
}

/// `c3 tcp 192.168.69.100:49152 -> 192.168.69.1:7` (client first); pings name their echo id.
pub(crate) fn title_of(f: &FlowRecord) -> String {
    let (l, r) = if peer_is_left(f) {
        (f.remote, f.local)
    } else {
        (f.local, f.remote)
    };
    let mut t = format!(
        "c{} {} {} -> {}",
        f.id,
        f.proto,
        end_name(f, l),
        end_name(f, r)
    );
    if f.proto == "icmp" {
        let _ = write!(t, " (echo id {})", f.local.port());
    }
    t
}

/// The stack's TCP figures under a connection's title: when they were told, and whether they are
/// the last ones.
fn figures_caption(at: &TcpFiguresAt) -> String {
    let when = if at.last {
        "as its socket was let go"
    } else {
        "sampled while it ran"
    };
    format!(
        "{} (+{}, {when})",
        super::tell::figures_line(&at.figures),
        Secs(at.t_us)
    )
}

/// The ladder of a flow record: everything the record kept, with its fold.
pub(crate) fn ladder_of(f: &FlowRecord) -> Ladder {
    let peer_left = peer_is_left(f);
    let t0 = f.segments().next().map_or(f.first_us, |s| s.t_us);
    let tcp = f.proto == "tcp";
    let seg = |s: &SegmentRecord| Segment {
        t_us: s.t_us - t0,
        from: if (s.dir == Direction::In) == peer_left {
            ladder::Side::Left
        } else {
            ladder::Side::Right
        },
        label: segment_label(f, s),
        retransmission: s.labels.has_retransmission(),
        dropped: s.dropped,
        group: group_of(tcp, s.labels.as_slice()),
        analysis: analysis_note(s),
    };
    let mut segments: Vec<Segment> = Vec::with_capacity(f.first.len() + f.last.len());
    segments.extend(f.first.iter().map(seg));
    let fold_at = segments.len();
    segments.extend(f.last.iter().map(seg));
    let (left, right) = if peer_left {
        (f.remote, f.local)
    } else {
        (f.local, f.remote)
    };
    Ladder {
        title: title_of(f),
        caption: f.tcp.as_deref().map(figures_caption),
        left: end_name(f, left),
        right: end_name(f, right),
        segments,
        folded: f.folded,
        fold_at: if f.folded > 0 { fold_at } else { 0 },
    }
}

/// Folds `l` further to its first `head` and last `tail` segments, merging with a fold it already
/// has when that one lies in the part left out (otherwise `l` stays as it is).
pub(crate) fn fold_more(l: &mut Ladder, head: usize, tail: usize) {
    let n = l.segments.len();
    if n <= head.saturating_add(tail) {
        return;
    }
    if l.folded > 0 && !(head..=n - tail).contains(&l.fold_at.min(n)) {
        return;
    }
    let (kept, folded, fold_at) = ladder::fold(std::mem::take(&mut l.segments), head, tail);
    l.segments = kept;
    l.folded += folded;
    l.fold_at = fold_at;
}

/// The text style for a stream: Unicode only for a terminal whose locale says UTF-8 (`var` looks up
/// environment variables: `LC_ALL`, else `LC_CTYPE`, else `LANG`).
pub(crate) fn style_for(var: impl Fn(&str) -> Option<String>, is_terminal: bool) -> TextStyle {
    if !is_terminal {
        return TextStyle::Ascii;
    }
    let locale = ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .find_map(|k| var(k).filter(|v| !v.is_empty()))
        .unwrap_or_default()
        .to_ascii_lowercase();
    if locale.contains("utf-8") || locale.contains("utf8") {
        TextStyle::Unicode
    } else {
        TextStyle::Ascii
    }
}

/// The text style for standard error.
pub(crate) fn stderr_style() -> TextStyle {
    style_for(|k| std::env::var(k).ok(), std::io::stderr().is_terminal())
}

/// A flow as a terminal block: its ladder folded to [`TERM_HEAD`] + [`TERM_TAIL`] segments, then a
/// blank line.
pub(crate) fn text_block(f: &FlowRecord, style: TextStyle) -> String {
    let mut l = ladder_of(f);
    fold_more(&mut l, TERM_HEAD, TERM_TAIL);
    let mut s = ladder::render_text(&l, style);
    s.push('\n');
    s
}

/// The log target of ladder blocks on standard error.
pub(crate) const LOG_TARGET: &str = "tapstack::ladder";

/// Where ladder blocks are written.
enum Sink {
    /// One log record per block (target [`LOG_TARGET`]), so that a block keeps its place among the
    /// other log lines however the logger buffers them; the record's prefix stands on the title line.
    Log,
    Writer(Box<dyn Write>),
}

/// Where the terminal's ladders go (standard error unless a test says otherwise).
pub(crate) struct LadderOut {
    out: Sink,
    style: TextStyle,
}

impl LadderOut {
    pub(crate) fn new(out: Box<dyn Write>, style: TextStyle) -> Self {
        LadderOut {
            out: Sink::Writer(out),
            style,
        }
    }

    /// Standard error: through the logger when it takes [`LOG_TARGET`] (the usual case: the logger
    /// writes to standard error), else straight there.
    pub(crate) fn stderr() -> Self {
        let mut out = LadderOut::new(Box::new(std::io::stderr()), stderr_style());
        if log::log_enabled!(target: LOG_TARGET, log::Level::Info) {
            out.out = Sink::Log;
        }
        out
    }

    fn write(&mut self, block: &str) {
        match &mut self.out {
            Sink::Log => {
                // The logger ends the record with the newline taken off here.
                let text = block.strip_suffix('\n').unwrap_or(block);
                log::info!(target: LOG_TARGET, "{text}");
            }
            Sink::Writer(w) => {
                let _ = w.write_all(block.as_bytes());
                let _ = w.flush();
            }
        }
    }

    /// Draws one flow, as one write.
    pub(crate) fn draw(&mut self, f: &FlowRecord) {
        let block = text_block(f, self.style);
        self.write(&block);
    }

    /// A TCP connection closed: drawn now. The stack says `Closed` when a connection really ends
    /// (after TIME-WAIT too), so its last ACK is in the flow already.
    pub(crate) fn closed(&mut self, f: &FlowRecord) {
        self.draw(f);
    }

    /// At shutdown: draws the flows that never closed (UDP, pings, TCP still open), the newest
    /// [`SHUTDOWN_DRAWN`], oldest first.
    pub(crate) fn draw_open_flows(&mut self, flows: &FlowTable) {
        let open: Vec<&FlowRecord> = flows
            .records()
            .filter(|f| f.closed_us.is_none() && f.segments().next().is_some())
            .collect();
        if open.is_empty() {
            return;
        }
        let skip = open.len().saturating_sub(SHUTDOWN_DRAWN);
        let mut block = format!(
            "{} flow{} still open at shutdown{}:\n\n",
            open.len(),
            if open.len() == 1 { "" } else { "s" },
            if skip > 0 {
                format!(" (the oldest {skip} not drawn)")
            } else {
                String::new()
            }
        );
        for f in &open[skip..] {
            block.push_str(&text_block(f, self.style));
        }
        self.write(&block);
    }
}

/// A flow by id: from the table (most complete: it saw what came after the close), else from the
/// closed ring.
fn flow_in(flows: &FlowTable, id: u64) -> Option<&FlowRecord> {
    flows
        .record(id)
        .or_else(|| flows.closed().iter().rev().find(|f| f.id == id))
}

fn find_flow(t: &Tracer, id: u64) -> Option<&FlowRecord> {
    flow_in(&t.flows, id)
}

/// One packet of `/live.json`.
#[derive(Serialize)]
struct LivePacket<'a> {
    seq: u64,
    t_us: i64,
    dir: Direction,
    conn: Option<u64>,
    proto: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<TcpFlags>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rel_seq: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rel_ack: Option<u32>,
    /// Payload bytes (TCP, UDP, ICMP), else the frame's length.
    len: usize,
    labels: &'a [&'static str],
    dropped: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    drop_reason: Option<&'static str>,
    /// The arrow label, as in the diagrams.
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    summary: String,
}

/// One flow of `/live.json`.
#[derive(Serialize)]
struct LiveConn {
    id: u64,
    proto: &'static str,
    title: String,
    /// Segments seen both ways (changes whenever the diagram does).
    segments: u64,
    /// The close reason, when closed.
    closed: Option<&'static str>,
}

#[derive(Serialize)]
struct LiveDoc<'a> {
    /// The newest packet number: ask for `since=last` next time.
    last: u64,
    /// Packets after `since` left out (older than the newest [`LIVE_MAX_PACKETS`], or no longer kept).
    skipped: u64,
    device: &'a str,
    packets: Vec<LivePacket<'a>>,
    conns: Vec<LiveConn>,
}

fn live_packet<'a>(t: &Tracer, r: &'a PacketRecord) -> LivePacket<'a> {
    let d = &r.decoded;
    let (proto, len, label) = if let Some(tcp) = d.tcp {
        let label = r.rel_seq.map(|seq| {
            tcp_label(
                tcp.flags,
                seq,
                r.rel_ack,
                tcp.win,
                tcp.opts.mss,
                tcp.len,
                r.rst_reason,
            )
        });
        ("tcp", tcp.len as usize, label)
    } else if let Some(u) = d.udp {
        ("udp", u.len, Some(format!("UDP len={}", u.len)))
    } else if let Some(i) = d.icmp {
        let label = match (i.ident, i.seq) {
            (Some(id), Some(seq)) => Some(format!("{} id={id} seq={seq}", i.name)),
            _ => None,
        };
        ("icmp", i.len, label)
    } else if d.arp.is_some() {
        ("arp", d.len, None)
    } else if let Some(ip) = d.ip {
        (ip.proto_name, d.len, None)
    } else {
        ("ethernet", d.len, None)
    };
    LivePacket {
        seq: r.seq,
        t_us: r.t_us,
        dir: r.dir,
        conn: r.conn,
        proto,
        flags: d.tcp.map(|t| t.flags),
        rel_seq: r.rel_seq,
        rel_ack: r.rel_ack.filter(|_| d.tcp.is_some_and(|t| t.flags.ack())),
        len,
        labels: r.labels.as_slice(),
        dropped: r.dropped.is_some(),
        drop_reason: r.dropped,
        label,
        summary: r.summary(t.absolute_seq),
    }
}

/// The `/live.json` document for packets after `since` (see the [module docs](self)).
pub(crate) fn live_json(t: &Tracer, since: u64) -> Vec<u8> {
    let last = t.last_packet_seq();
    let since = since.min(last);
    let available = t.recent_packets(since).count();
    let packets: Vec<LivePacket> = t
        .recent_packets(since)
        .skip(available.saturating_sub(LIVE_MAX_PACKETS))
        .map(|r| live_packet(t, r))
        .collect();
    let mut ids: Vec<u64> = Vec::new();
    for id in packets.iter().rev().filter_map(|p| p.conn) {
        if ids.len() >= LIVE_MAX_CONNS {
            break;
        }
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let conns = ids
        .into_iter()
        .filter_map(|id| find_flow(t, id))
        .map(|f| LiveConn {
            id: f.id,
            proto: f.proto,
            title: title_of(f),
            segments: f.inbound.segments + f.outbound.segments,
            closed: f.close_reason,
        })
        .collect();
    let doc = LiveDoc {
        last,
        skipped: (last - since).saturating_sub(packets.len() as u64),
        device: &t.device,
        packets,
        conns,
    };
    let mut out = serde_json::to_vec(&doc).unwrap_or_default();
    out.push(b'\n');
    out
}

/// The state of a flow in a link title: `open`, `closed by FIN`; with its segment count.
fn link_title(f: &FlowRecord) -> String {
    let n = f.inbound.segments + f.outbound.segments;
    let noun = if n == 1 { "segment" } else { "segments" };
    match f.close_reason {
        Some(r) => format!("{} (closed by {r}, {n} {noun})", title_of(f)),
        None => format!("{} (open, {n} {noun})", title_of(f)),
    }
}

impl TraceView for Tracer {
    fn conn_svg(&self, id: u64) -> Option<String> {
        find_flow(self, id).map(|f| ladder::render_svg(&ladder_of(f)))
    }

    fn live_json(&self, since: u64) -> Vec<u8> {
        live_json(self, since)
    }

    /// Open flows (the newest [`LINKS_OPEN`]) and the closed ring, newest first.
    fn ladder_links(&self) -> Vec<(u64, String)> {
        let open: Vec<&FlowRecord> = self
            .flows
            .records()
            .filter(|f| f.closed_us.is_none())
            .collect();
        let skip = open.len().saturating_sub(LINKS_OPEN);
        let mut v: Vec<(u64, String)> = open[skip..]
            .iter()
            .map(|f| (f.id, link_title(f)))
            .chain(self.flows.closed().iter().map(|f| {
                // The table's copy saw what came after the close (a last ACK).
                let f = self.flows.record(f.id).unwrap_or(f);
                (f.id, link_title(f))
            }))
            .collect();
        v.sort_by_key(|x| std::cmp::Reverse(x.0));
        v.dedup_by_key(|x| x.0);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::records::Labels;
    use std::net::SocketAddr;

    fn flags(names: &str) -> TcpFlags {
        let mut f = TcpFlags::default();
        for n in names.split(',') {
            let bit = match n {
                "SYN" => TcpFlags::SYN,
                "FIN" => TcpFlags::FIN,
                "RST" => TcpFlags::RST,
                "PSH" => TcpFlags::PSH,
                "ACK" => TcpFlags::ACK,
                _ => panic!("flag {n}"),
            };
            f = TcpFlags(f.0 | bit);
        }
        f
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp(
        t_us: i64,
        dir: Direction,
        fl: &str,
        seq: u32,
        ack: Option<u32>,
        len: u32,
        mss: Option<u16>,
        labels: &[&'static str],
    ) -> SegmentRecord {
        let mut l = Labels::default();
        for x in labels {
            l.push(x);
        }
        SegmentRecord {
            t_us,
            dir,
            kind: "tcp",
            flags: flags(fl),
            seq,
            ack,
            len,
            win: 64240,
            mss,
            labels: l,
            rst_reason: None,
            dropped: false,
            abs_seq: seq.wrapping_add(1000),
            dup_ack: None,
            win_shift: None,
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A peer (client) talks to the stack's echo port: handshake, 5 bytes each way lost once, close.
    fn echo_record() -> FlowRecord {
        use Direction::{In, Out};
        let mut f = FlowRecord::new(
            3,
            "tcp",
            addr("192.168.69.1:7"),
            addr("192.168.69.100:49152"),
            1_000_000,
        );
        f.opened_by = Some(Side::Peer);
        let mut lost = tcp(1_001_203, In, "PSH,ACK", 1, Some(1), 5, None, &[]);
        lost.dropped = true;
        for s in [
            tcp(
                1_000_000,
                In,
                "SYN",
                0,
                None,
                0,
                Some(1460),
                &["handshake 1/3"],
            ),
            tcp(
                1_000_048,
                Out,
                "SYN,ACK",
                0,
                Some(1),
                0,
                Some(1460),
                &["handshake 2/3"],
            ),
            tcp(
                1_000_095,
                In,
                "ACK",
                1,
                Some(1),
                0,
                None,
                &["handshake 3/3"],
            ),
            lost,
            tcp(
                1_201_530,
                In,
                "PSH,ACK",
                1,
                Some(1),
                5,
                None,
                &["retransmission"],
            ),
            tcp(1_201_577, Out, "PSH,ACK", 1, Some(6), 5, None, &[]),
            tcp(
                1_202_410,
                In,
                "FIN,ACK",
                6,
                Some(6),
                0,
                None,
                &["close: FIN 1"],
            ),
            tcp(
                1_202_455,
                Out,
                "FIN,ACK",
                6,
                Some(7),
                0,
                None,
                &["close: FIN 2", "close: ACK of FIN 1"],
            ),
            tcp(
                1_202_512,
                In,
                "ACK",
                7,
                Some(7),
                0,
                None,
                &["close: ACK of FIN 2"],
            ),
        ] {
            f.push(s);
        }
        f
    }

    fn seg(t_us: i64, from: ladder::Side, label: &str, group: Group) -> Segment {
        Segment {
            t_us,
            from,
            label: label.to_string(),
            retransmission: false,
            dropped: false,
            group,
            analysis: String::new(),
        }
    }

    #[test]
    fn flow_record_to_ladder() {
        use ladder::Side::{Left, Right};
        use Group::*;
        let l = ladder_of(&echo_record());
        let mut lost = seg(1203, Left, "PSH,ACK seq=1 ack=1 len=5", Data);
        lost.dropped = true;
        let mut retx = seg(201_530, Left, "PSH,ACK seq=1 ack=1 len=5", Data);
        retx.retransmission = true;
        retx.analysis = "retransmission".into();
        let expected = Ladder {
            title: "c3 tcp 192.168.69.100:49152 -> 192.168.69.1:7".into(),
            caption: None,
            left: "192.168.69.100:49152".into(),
            right: "192.168.69.1:7".into(),
            segments: vec![
                seg(0, Left, "SYN seq=0 win=64240 mss=1460", Handshake),
                seg(
                    48,
                    Right,
                    "SYN,ACK seq=0 ack=1 win=64240 mss=1460",
                    Handshake,
                ),
                seg(95, Left, "ACK seq=1 ack=1", Handshake),
                lost,
                retx,
                seg(201_577, Right, "PSH,ACK seq=1 ack=6 len=5", Data),
                seg(202_410, Left, "FIN,ACK seq=6 ack=6", Close),
                seg(202_455, Right, "FIN,ACK seq=6 ack=7", Close),
                seg(202_512, Left, "ACK seq=7 ack=7", Close),
            ],
            folded: 0,
            fold_at: 0,
        };
        assert_eq!(l, expected);
    }

    #[test]
    fn stack_opened_flow_has_the_stack_on_the_left() {
        let mut f = echo_record();
        f.opened_by = Some(Side::Stack);
        let l = ladder_of(&f);
        assert_eq!(l.left, "192.168.69.1:7");
        assert_eq!(l.title, "c3 tcp 192.168.69.1:7 -> 192.168.69.100:49152");
        assert_eq!(
            l.segments[0].from,
            ladder::Side::Right,
            "In = from the peer"
        );
    }

    /// The terminal block for the echo record, byte for byte.
    const ECHO_ASCII: &str = r#"c3 tcp 192.168.69.100:49152 -> 192.168.69.1:7

 +----------------------+                            +----------------+
 | 192.168.69.100:49152 |                            | 192.168.69.1:7 |
 +----------+-----------+                            +-------+--------+
            |                -- handshake --                 |
+0.000000s  |--------- SYN seq=0 win=64240 mss=1460 -------->|
+0.000048s  |<--- SYN,ACK seq=0 ack=1 win=64240 mss=1460 ----|
+0.000095s  |--------------- ACK seq=1 ack=1 --------------->|
            |                                                |
            |                   -- data --                   |
+0.001203s  |---------- PSH,ACK seq=1 ack=1 len=5 --x        |  (dropped)
+0.201530s  |========== PSH,ACK seq=1 ack=1 len=5 ==========>|  (retransmission)
+0.201577s  |<--------- PSH,ACK seq=1 ack=6 len=5 -----------|
            |                                                |
            |                  -- close --                   |
+0.202410s  |------------- FIN,ACK seq=6 ack=6 ------------->|
+0.202455s  |<------------ FIN,ACK seq=6 ack=7 --------------|
+0.202512s  |--------------- ACK seq=7 ack=7 --------------->|
            |                                                |

"#;

    #[test]
    fn terminal_block_is_the_ascii_ladder() {
        assert_eq!(text_block(&echo_record(), TextStyle::Ascii), ECHO_ASCII);
        let mut out = LadderOut::new(Box::new(Vec::new()), TextStyle::Ascii);
        out.draw(&echo_record());
    }

    #[test]
    fn rst_udp_and_ping_labels() {
        let mut f = echo_record();
        let mut rst = tcp(5, Direction::Out, "RST,ACK", 0, Some(1), 0, None, &[]);
        rst.rst_reason = Some("no listener");
        rst.labels.push("reset by the stack");
        assert_eq!(segment_label(&f, &rst), "RST,ACK seq=0 ack=1 (no listener)");
        assert_eq!(group_of(true, rst.labels.as_slice()), Group::Close);
        let mut zero = tcp(5, Direction::Out, "ACK", 9, Some(3), 0, None, &[]);
        zero.win = 0;
        assert_eq!(segment_label(&f, &zero), "ACK seq=9 ack=3 win=0");

        f.proto = "udp";
        let mut d = rst;
        d.kind = "udp";
        d.len = 5;
        assert_eq!(segment_label(&f, &d), "UDP len=5");
        assert_eq!(group_of(false, &["handshake 1/3"]), Group::Other);

        let mut p = FlowRecord::new(
            4,
            "icmp",
            addr("192.168.69.1:77"),
            addr("192.168.69.100:77"),
            0,
        );
        d.kind = "echo request";
        d.seq = 2;
        d.dir = Direction::In;
        p.push(d);
        d.kind = "echo reply";
        d.dir = Direction::Out;
        p.push(d);
        let l = ladder_of(&p);
        assert_eq!(
            l.title,
            "c4 icmp 192.168.69.100 -> 192.168.69.1 (echo id 77)"
        );
        assert_eq!(
            (l.left.as_str(), l.right.as_str()),
            ("192.168.69.100", "192.168.69.1")
        );
        assert_eq!(l.segments[0].label, "echo request id=77 seq=2");
        assert_eq!(l.segments[1].from, ladder::Side::Right);
        assert!(l.segments.iter().all(|s| s.group == Group::Other));
    }

    #[test]
    fn long_flows_fold_in_the_record_and_further_in_the_terminal() {
        let mut f = echo_record();
        for i in 0..300u32 {
            f.push(tcp(
                2_000_000 + i as i64,
                Direction::In,
                "ACK",
                7 + i,
                Some(7),
                1,
                None,
                &[],
            ));
        }
        let l = ladder_of(&f);
        assert_eq!(l.segments.len(), 128);
        assert_eq!((l.folded, l.fold_at), (309 - 128, 64));
        let text = text_block(&f, TextStyle::Ascii);
        let total_folded = 309 - (TERM_HEAD + TERM_TAIL) as u64;
        assert!(
            text.contains(&format!("... {total_folded} segments folded ...")),
            "{text}"
        );
        assert_eq!(
            text.lines().filter(|l| l.starts_with('+')).count(),
            TERM_HEAD + TERM_TAIL
        );
        // A fold outside the part left out stays as it is.
        let mut short = ladder_of(&echo_record());
        short.folded = 5;
        short.fold_at = 1;
        fold_more(&mut short, 2, 2);
        assert_eq!((short.segments.len(), short.folded), (9, 5));
    }

    #[test]
    fn unicode_only_on_a_utf8_terminal() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            style_for(env(&[("LANG", "en_US.UTF-8")]), true),
            TextStyle::Unicode
        );
        assert_eq!(
            style_for(env(&[("LANG", "en_US.UTF-8")]), false),
            TextStyle::Ascii
        );
        assert_eq!(
            style_for(env(&[("LC_ALL", "C"), ("LANG", "en_US.utf8")]), true),
            TextStyle::Ascii,
            "LC_ALL wins"
        );
        assert_eq!(
            style_for(env(&[("LC_ALL", ""), ("LC_CTYPE", "C.utf8")]), true),
            TextStyle::Unicode
        );
        assert_eq!(style_for(env(&[]), true), TextStyle::Ascii);
    }

    /// Through a real tracer: frames in, ladders, SVG and live JSON out.
    mod tracer {
        use super::super::*;
        use crate::device::Observer;
        use crate::service::TraceView;
        use crate::status::Status;
        use crate::trace::fixtures::*;
        use crate::trace::TraceConfig;
        use smoltcp::time::Instant;
        use std::cell::RefCell;
        use std::net::SocketAddr;
        use std::rc::Rc;

        #[derive(Clone, Default)]
        struct Shared(Rc<RefCell<Vec<u8>>>);

        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.borrow_mut().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl Shared {
            fn text(&self) -> String {
                String::from_utf8(self.0.borrow().clone()).unwrap()
            }
        }

        fn at(ms: i64) -> Instant {
            Instant::from_millis(ms)
        }

        fn tracer() -> (Tracer, Shared) {
            let mut t = Tracer::new(
                TraceConfig {
                    device: "tap0".into(),
                    quiet: true,
                    ..TraceConfig::default()
                },
                std::time::UNIX_EPOCH,
            )
            .unwrap();
            let out = Shared::default();
            t.set_ladder_writer(Box::new(out.clone()), TextStyle::Ascii);
            (t, out)
        }

        const P: u16 = 49152;

        /// Peer ISN 1000, stack ISN 5000 on the echo port: handshake, "hello" each way; then the
        /// close, the peer first unless `stack_first`.
        fn exchange(t: &mut Tracer, stack_first: bool) {
            let p = |s: u32| Seg::new(P, 7, s);
            let s = |q: u32| Seg::new(7, P, q);
            t.frame(at(0), Direction::In, &p(1000).syn().opts().inbound());
            t.frame(
                at(1),
                Direction::Out,
                &s(5000).syn().ack(1001).opts().outbound(),
            );
            t.frame(at(2), Direction::In, &p(1001).ack(5001).inbound());
            t.frame(
                at(3),
                Direction::In,
                &p(1001).ack(5001).psh().data(b"hello").inbound(),
            );
            t.frame(
                at(4),
                Direction::Out,
                &s(5001).ack(1006).psh().data(b"hello").outbound(),
            );
            if stack_first {
                t.frame(at(6), Direction::Out, &s(5006).ack(1006).fin().outbound());
                t.frame(at(7), Direction::In, &p(1006).ack(5007).fin().inbound());
                let (local, remote) = (
                    "192.168.69.1:7".parse().unwrap(),
                    "192.168.69.100:49152".parse().unwrap(),
                );
                t.tcp_state(at(7), local, Some(remote), "FIN-WAIT-2", "TIME-WAIT");
                t.frame(at(8), Direction::Out, &s(5007).ack(1007).outbound());
            } else {
                t.frame(at(5), Direction::In, &p(1006).ack(5006).inbound());
                t.frame(at(6), Direction::In, &p(1006).ack(5006).fin().inbound());
                t.frame(at(7), Direction::Out, &s(5006).ack(1007).fin().outbound());
                t.frame(at(9), Direction::In, &p(1007).ack(5007).inbound());
            }
        }

        #[test]
        fn a_closed_connection_is_drawn_once_when_it_closes() {
            let (mut t, out) = tracer();
            exchange(&mut t, false);
            let text = out.text();
            assert_eq!(
                text.matches("c1 tcp 192.168.69.100:49152 -> 192.168.69.1:7")
                    .count(),
                1,
                "{text}"
            );
            for needle in [
                "|--------- SYN seq=0 win=64240 mss=1460 -------->|",
                "|<--- SYN,ACK seq=0 ack=1 win=64240 mss=1460 ----|",
                "-- handshake --",
                "-- data --",
                "-- close --",
                "|---------- PSH,ACK seq=1 ack=1 len=5 ---------->|",
                "+0.009000s  |--------------- ACK seq=7 ack=7 --------------->|",
            ] {
                assert!(text.contains(needle), "{needle} in\n{text}");
            }
            let f = t.closed_flows().next().unwrap();
            assert_eq!(text, text_block(f, TextStyle::Ascii));
        }

        #[test]
        fn time_wait_waits_for_the_stacks_last_ack() {
            let (mut t, out) = tracer();
            exchange(&mut t, true);
            let text = out.text();
            let last = text.lines().rfind(|l| l.starts_with('+')).unwrap();
            assert!(
                last.starts_with("+0.008000s  |<-------------- ACK seq=7 ack=7"),
                "{text}"
            );
            assert_eq!(text.matches("c1 tcp").count(), 1);
        }

        #[test]
        fn svg_caption_tells_the_stacks_latest_tcp_figures() {
            use crate::stack::{StackEvent, StackObserver, TcpFigures};
            use smoltcp::time::Duration;
            let (mut t, _) = tracer();
            let p = |s: u32| Seg::new(P, 7, s);
            let s = |q: u32| Seg::new(7, P, q);
            t.frame(at(0), Direction::In, &p(1000).syn().opts().inbound());
            t.frame(
                at(1),
                Direction::Out,
                &s(5000).syn().ack(1001).opts().outbound(),
            );
            t.frame(at(2), Direction::In, &p(1001).ack(5001).inbound());
            assert!(
                !t.conn_svg(1).unwrap().contains("TCP figures"),
                "nothing told yet"
            );
            let (local, remote): (SocketAddr, SocketAddr) = (
                "192.168.69.1:7".parse().unwrap(),
                "192.168.69.100:49152".parse().unwrap(),
            );
            let mut figures = TcpFigures {
                cwnd: 14_600,
                ssthresh: Some(10_220),
                srtt: Some(Duration::from_millis(17)),
                rto: Duration::from_millis(217),
                fast_retransmits: 2,
                sack_recoveries: 1,
                timeouts: 1,
                undone: 0,
            };
            let sampled = StackEvent::FiguresSampled {
                conn: 1,
                local,
                remote,
                figures,
            };
            t.event(at(1500), &sampled);
            let svg = t.conn_svg(1).unwrap();
            assert!(svg.contains(r#"<text class="caption""#), "{svg}");
            assert!(
                svg.contains("TCP figures: cwnd 14,600 bytes, ssthresh 10,220 bytes, srtt 17 ms, rto 217 ms; losses repaired: 1 by SACK recovery, 1 by NewReno, 1 by timeout (+1.500000s, sampled while it ran)"),
                "{svg}"
            );
            // Another connection's figures are not this one's.
            t.event(
                at(1600),
                &StackEvent::FiguresSampled {
                    conn: 2,
                    local,
                    remote: "192.168.69.100:49153".parse().unwrap(),
                    figures: TcpFigures::default(),
                },
            );
            assert!(t.conn_svg(1).unwrap().contains("cwnd 14,600 bytes"));
            // The close, then the last figures (as the stack tells them: the socket is let go
            // when the connection has already closed in the trace).
            t.frame(at(3000), Direction::In, &p(1001).ack(5001).fin().inbound());
            t.frame(
                at(3001),
                Direction::Out,
                &s(5001).ack(1002).fin().outbound(),
            );
            t.frame(at(3002), Direction::In, &p(1002).ack(5002).inbound());
            figures.cwnd = 20_440;
            t.event(
                at(3003),
                &StackEvent::Figures {
                    conn: 1,
                    local,
                    remote,
                    figures,
                },
            );
            let svg = t.conn_svg(1).unwrap();
            assert!(
                svg.contains("TCP figures: cwnd 20,440 bytes")
                    && svg.contains("(+3.003000s, as its socket was let go)"),
                "{svg}"
            );
            assert!(!svg.contains("sampled while it ran"), "{svg}");
        }

        #[test]
        fn svg_and_live_json_follow_the_packets() {
            let (mut t, _) = tracer();
            exchange(&mut t, false);
            let svg = t.conn_svg(1).unwrap();
            assert_eq!(svg.matches(r#"class="seg""#).count(), 9);
            assert!(svg.contains(r#"data-label="SYN seq=0 win=64240 mss=1460""#));
            assert!(t.conn_svg(2).is_none());

            let v: serde_json::Value = serde_json::from_slice(&t.live_json(0)).unwrap();
            assert_eq!(
                (v["last"].as_u64(), v["skipped"].as_u64()),
                (Some(9), Some(0))
            );
            let packets = v["packets"].as_array().unwrap();
            assert_eq!(packets.len(), 9);
            let syn = &packets[0];
            assert_eq!(syn["seq"], 1);
            assert_eq!(syn["dir"], "in");
            assert_eq!(syn["conn"], 1);
            assert_eq!(syn["flags"], "SYN");
            assert_eq!(syn["rel_seq"], 0);
            assert_eq!(syn["labels"][0], "handshake 1/3");
            assert_eq!(syn["label"], "SYN seq=0 win=64240 mss=1460");
            assert_eq!(syn["dropped"], false);
            assert!(syn["summary"].as_str().unwrap().contains("[SYN]"));
            assert_eq!(packets[3]["label"], "PSH,ACK seq=1 ack=1 len=5");
            assert_eq!(packets[3]["len"], 5);
            assert_eq!(v["conns"][0]["id"], 1);
            assert_eq!(v["conns"][0]["segments"], 9);
            assert_eq!(v["conns"][0]["closed"], "FIN");

            let v: serde_json::Value = serde_json::from_slice(&t.live_json(8)).unwrap();
            assert_eq!(v["packets"].as_array().unwrap().len(), 1);
            let v: serde_json::Value = serde_json::from_slice(&t.live_json(99)).unwrap();
            assert_eq!(v["packets"].as_array().unwrap().len(), 0);
            assert_eq!(v["last"], 9);

            let links = t.ladder_links();
            assert_eq!(links.len(), 1);
            assert_eq!(
                links[0],
                (
                    1,
                    "c1 tcp 192.168.69.100:49152 -> 192.168.69.1:7 (closed by FIN, 9 segments)"
                        .to_string()
                )
            );
        }

        #[test]
        fn live_json_is_bounded_and_says_what_it_skipped() {
            let (mut t, _) = tracer();
            let sa = |ip: std::net::Ipv4Addr, port| SocketAddr::new(ip.into(), port);
            for i in 0..1500 {
                let port = 40000 + (i % 20) as u16;
                t.frame(
                    at(i),
                    Direction::In,
                    &udp4(sa(PEER4, port), sa(STACK4, 7), b"x", false),
                );
            }
            let v: serde_json::Value = serde_json::from_slice(&t.live_json(0)).unwrap();
            let packets = v["packets"].as_array().unwrap();
            assert_eq!(packets.len(), LIVE_MAX_PACKETS);
            assert_eq!(packets.last().unwrap()["seq"], 1500);
            assert_eq!(v["skipped"], 500);
            assert_eq!(v["conns"].as_array().unwrap().len(), LIVE_MAX_CONNS);
            assert_eq!(packets[0]["label"], "UDP len=1");
            assert_eq!(packets[0]["proto"], "udp");
        }

        #[test]
        fn open_flows_are_drawn_at_shutdown_bounded() {
            let (mut t, out) = tracer();
            let sa = |ip: std::net::Ipv4Addr, port| SocketAddr::new(ip.into(), port);
            t.frame(at(0), Direction::In, &icmp4_echo(true, 77, 1, false));
            t.frame(at(1), Direction::Out, &icmp4_echo(false, 77, 1, true));
            for i in 0..20 {
                let peer = sa(PEER4, 5000 + i);
                t.frame(
                    at(2),
                    Direction::In,
                    &udp4(peer, sa(STACK4, 7), b"hi", false),
                );
                t.frame(
                    at(3),
                    Direction::Out,
                    &udp4(sa(STACK4, 7), peer, b"hi", true),
                );
            }
            assert_eq!(out.text(), "", "nothing before shutdown");
            t.shutdown(at(10), &Status::default());
            let text = out.text();
            assert!(
                text.starts_with("21 flows still open at shutdown (the oldest 5 not drawn):\n\n"),
                "{text}"
            );
            assert_eq!(text.matches(" udp ").count(), SHUTDOWN_DRAWN, "{text}");
            assert!(!text.contains("icmp"), "the oldest are left out");
            assert!(
                text.contains("|------------------ UDP len=2 ------------------>|"),
                "{text}"
            );
        }

        #[test]
        fn silent_tracers_draw_nothing() {
            let cfg = TraceConfig {
                ladder: true,
                ..TraceConfig::silent()
            };
            let t = Tracer::new(cfg, std::time::UNIX_EPOCH).unwrap();
            assert!(t.ladders.is_none());
            let cfg = TraceConfig {
                ladder: true,
                ..TraceConfig::default()
            };
            assert!(Tracer::new(cfg, std::time::UNIX_EPOCH)
                .unwrap()
                .ladders
                .is_some());
            assert!(Tracer::new(TraceConfig::default(), std::time::UNIX_EPOCH)
                .unwrap()
                .ladders
                .is_none());
        }
    }
}
