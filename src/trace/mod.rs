//! Making the userspace stack's traffic visible: every frame in and out gets a plain-words packet line,
//! TCP connections are narrated, addresses and ports explained, frames captured to pcap, and JSON
//! events emitted.
//!
//! What it offers the outside: [`decode`] (a frame read through smoltcp's checked views into plain
//! facts, [`Decoded`]: `Copy`, no allocation; malformed frames and bad checksums get a static reason),
//! the records it keeps ([`PacketRecord`], [`FlowRecord`] with its [`SegmentRecord`]s), the JSON
//! events of `--events` ([`Event`]), and [`explain`] (addresses and ports in plain words).
//!
//! The pieces inside, each small: `decode`; `flow` (connection ids, relative sequence numbers,
//! handshake / close / retransmission / reset labels, close summaries, in a bounded table);
//! `records`; `explain`; `pcap`, `events`, `step` (capture file, JSON lines, step mode); `ladder` and
//! `pictures` (ladder diagrams of flows, drawn in the terminal when a connection closes with
//! `--ladder`, and served as SVG and live JSON to the HTTP pages `/conn/ID` and `/live`).
//!
//! [`Tracer`] ties them together: it watches every frame of the stack's NIC and listens to the
//! stack's events, and narrates from those (never guessing what the stack did). Log targets:
//! `tapstack::packet` (info: packet lines; trace: plus hex dumps), `tapstack::tcp` (state changes and
//! close summaries), `tapstack::explain` (address and port explanations). Whether each is enabled is
//! checked once, when the tracer is built: set up logging first.
//!
//! A packet line: `in  tap0 +0.001234s c1 TCP 192.168.69.100:49152 > 192.168.69.1:7 [SYN] seq 0 win
//! 64240 len 0 <mss 1460,sackOK,ts 1 0,wscale 7> (handshake 1/3)`.

use smoltcp::time::Instant;
use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufRead, BufWriter, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::status::{Counters, Endpoint, Status};

pub(crate) mod analysis;
mod capture;
mod datagrams;
pub(crate) mod decode;
pub(crate) mod events;
pub(crate) mod explain;
pub(crate) mod flow;
mod infer;
pub(crate) mod ladder;
pub(crate) mod narrate;
mod observe;
pub(crate) mod pictures;
pub(crate) mod records;
pub(crate) mod step;
mod tell;

pub use analysis::DupAck;
pub use decode::{
    decode, ArpInfo, Decoded, EthInfo, FragInfo, IcmpInfo, IpInfo, Mac, TcpFlags, TcpInfo, TcpOpts,
    UdpInfo,
};
pub use events::{ConnClosed, Event, TraceCounters};
pub use explain::{explain, ExplainError};
pub use flow::EVICTABLE_KEPT;
pub use records::{DirStats, FlowRecord, Labels, PacketRecord, SegmentRecord, Side, TcpFiguresAt};

pub(crate) use events::EventSink;
pub(crate) use flow::FlowTable;
pub(crate) use step::Stepper;

use records::{PacketRing, Secs, Summary};

/// Where `--events` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsTarget {
    /// To standard output.
    Stdout,
    /// To this file.
    File(PathBuf),
}

impl EventsTarget {
    /// `--events` as given: `-` for standard output, else a file.
    pub fn from_arg(arg: &str) -> EventsTarget {
        if arg == "-" {
            EventsTarget::Stdout
        } else {
            EventsTarget::File(PathBuf::from(arg))
        }
    }
}

#[derive(Debug, Clone, Default)]
/// What the tracer shows and where it writes.
pub struct TraceConfig {
    /// `-v`: absolute TCP sequence numbers in packet lines.
    pub absolute_seq: bool,
    /// `-q`: no packet lines.
    pub quiet: bool,
    /// The pcap file, if any.
    pub pcap: Option<PathBuf>,
    /// JSON-lines events, if any.
    pub events: Option<EventsTarget>,
    /// `--step`: wait for a line on standard input after each packet line.
    pub step: bool,
    /// `--ladder`: draw each TCP connection when it closes.
    pub ladder: bool,
    /// Device name for packet lines (`tap0`, `wire`).
    pub device: String,
    /// Log nothing at all (no packet lines, narration or explanations): for the demo's client stack,
    /// whose frames the server's tracer already shows.
    pub silent: bool,
    /// `--narrate-limit`: narrate at most this many new TCP connections a second (0: all).
    pub narrate_limit: u32,
}

impl TraceConfig {
    /// Nothing logged, captured or emitted (tests, the demo's client stack).
    pub fn silent() -> TraceConfig {
        TraceConfig {
            quiet: true,
            silent: true,
            device: "wire".to_string(),
            ..TraceConfig::default()
        }
    }
}

const PACKET: &str = "tapstack::packet";
const TCP: &str = "tapstack::tcp";
const EXPLAIN: &str = "tapstack::explain";
/// Addresses explained at most once each, up to this many.
const EXPLAINED_ADDRS_CAP: usize = 4096;

/// The stack port's observer: decodes, follows flows, logs, captures and emits events.
pub struct Tracer {
    device: String,
    absolute_seq: bool,
    quiet: bool,
    /// Cached `log_enabled!` results (and `!quiet` for packet lines).
    lines: bool,
    hex: bool,
    explain_on: bool,
    tcp_log: bool,
    wall_epoch: SystemTime,
    flows: FlowTable,
    packets: PacketRing,
    malformed: BTreeMap<&'static str, u64>,
    /// `"malformed: <reason>"`, built once per reason for [`Tracer::merge_into`].
    malformed_keys: BTreeMap<&'static str, String>,
    /// `--pcap`: classic pcap or pcapng.
    pcap: Option<crate::capture::CaptureWriter>,
    /// What the fault injector said it does to the next frame each way (In, Out), for the capture.
    fault_marks: [crate::device::FaultMark; 2],
    /// Reading a capture (`tapstack read`): directions and states inferred from the frames.
    read: Option<Box<infer::ReadMode>>,
    events: Option<EventSink>,
    step: Option<Stepper>,
    quit: bool,
    explained_addrs: HashSet<IpAddr>,
    explained_ports: HashSet<u16>,
    explained_dynamic: bool,
    /// A registered port with no service name was explained (clients get these too: Linux picks
    /// them from 32768-60999).
    explained_registered: bool,
    /// Why TIME-WAIT exists was said once.
    explained_time_wait: bool,
    /// Loss repairs explained so far (bits: SACK recovery, NewReno recovery, timeout).
    explained_repairs: u8,
    last_us: i64,
    /// `--ladder`: where ladder diagrams are drawn (none when off or silent).
    ladders: Option<pictures::LadderOut>,
    /// The wire's IP MTU when the link offloads segmentation (TCP segments above it are annotated).
    wire_mtu: Option<usize>,
    /// Fragments on their way to making a datagram.
    datagrams: datagrams::Datagrams,
    /// Analysis label kinds explained so far (bits of `analysis::kind`).
    explained_labels: u16,
    /// The offload-sized MSS of our SYNs was explained.
    explained_offload_mss: bool,
}

impl Tracer {
    /// `wall_epoch`: the wall-clock time of `Instant::ZERO` (for pcap timestamps).
    pub fn new(cfg: TraceConfig, wall_epoch: SystemTime) -> std::io::Result<Tracer> {
        let mut t = Tracer {
            device: cfg.device,
            absolute_seq: cfg.absolute_seq,
            quiet: cfg.quiet,
            lines: !cfg.quiet && log::log_enabled!(target: PACKET, log::Level::Info),
            hex: !cfg.quiet && log::log_enabled!(target: PACKET, log::Level::Trace),
            explain_on: !cfg.silent && log::log_enabled!(target: EXPLAIN, log::Level::Info),
            tcp_log: !cfg.silent && log::log_enabled!(target: TCP, log::Level::Info),
            wall_epoch,
            flows: FlowTable::default(),
            packets: PacketRing::new(records::RECENT_PACKETS),
            malformed: BTreeMap::new(),
            malformed_keys: BTreeMap::new(),
            pcap: None,
            fault_marks: Default::default(),
            read: None,
            events: None,
            step: None,
            quit: false,
            explained_addrs: HashSet::new(),
            explained_ports: HashSet::new(),
            explained_dynamic: false,
            explained_registered: false,
            explained_time_wait: false,
            explained_repairs: 0,
            last_us: 0,
            ladders: (cfg.ladder && !cfg.silent).then(pictures::LadderOut::stderr),
            wire_mtu: None,
            datagrams: datagrams::Datagrams::default(),
            explained_labels: 0,
            explained_offload_mss: false,
        };
        t.flows.set_narration_limit(cfg.narrate_limit);
        if let Some(path) = &cfg.pcap {
            t.pcap = Some(crate::capture::CaptureWriter::create(path, &t.device)?);
        }
        match &cfg.events {
            Some(EventsTarget::Stdout) => t.set_events_writer(Box::new(io::stdout())),
            Some(EventsTarget::File(path)) => {
                let f = std::fs::File::create(path).map_err(|e| {
                    io::Error::new(e.kind(), format!("events file {}: {e}", path.display()))
                })?;
                t.set_events_writer(Box::new(BufWriter::new(f)));
            }
            None => {}
        }
        if cfg.step {
            t.step = Some(Stepper::stdio());
        }
        Ok(t)
    }

    /// Sends events to `out`.
    pub fn set_events_writer(&mut self, out: Box<dyn Write>) {
        self.events = Some(EventSink::new(out));
    }

    /// Turns step mode on, reading answers from `input` and writing prompts to `prompt`.
    pub fn set_step_io(&mut self, input: Box<dyn BufRead>, prompt: Box<dyn Write>) {
        self.step = Some(Stepper::new(input, prompt));
    }

    /// Draws ladder diagrams to `out` (as `--ladder` does to standard error).
    pub fn set_ladder_writer(&mut self, out: Box<dyn Write>, style: ladder::TextStyle) {
        self.ladders = Some(pictures::LadderOut::new(out, style));
    }

    /// Bounds the flow table (default 65536 flows). Call before any traffic.
    pub fn set_flow_cap(&mut self, cap: usize) {
        let limit = self.flows.narration().limit();
        self.flows = FlowTable::new(cap);
        self.flows.set_narration_limit(limit);
    }

    /// The link carries TCP segments larger than this IP MTU (offload): packet lines then say how many
    /// wire-sized frames such a segment stands for.
    pub fn set_wire_mtu(&mut self, mtu: Option<usize>) {
        self.wire_mtu = mtu;
    }

    /// Whether a new host-socket connection is narrated (the same limit as the userspace stack's).
    pub fn narrate_host_conn(&self, now: Instant) -> bool {
        let t_us = now.total_micros();
        self.log_narration_summary(t_us, false);
        self.flows.narration().admit(t_us)
    }

    /// Reports connections left out of the narration once their second is over.
    pub fn tick(&mut self, now: Instant) {
        if self.flows.narration().due_us().is_some() {
            let t_us = self.now_us(now);
            self.log_narration_summary(t_us, false);
        }
    }

    /// When [`Tracer::tick`] has a summary to write.
    pub fn poll_at(&self) -> Option<Instant> {
        if !self.tcp_log {
            return None;
        }
        self.flows
            .narration()
            .due_us()
            .map(|t| Instant::from_micros(t.max(0)))
    }

    /// A fresh connection id (host connections get theirs here, so ids are unique across stacks).
    pub fn alloc_id(&self) -> u64 {
        self.flows.alloc_id()
    }

    /// Everything is bound (the `ready` event).
    pub fn ready(&mut self, now: Instant, endpoints: &[Endpoint]) {
        let t_us = self.now_us(now);
        if let Some(ev) = self.events.as_mut() {
            ev.emit(&Event::Ready {
                t_us,
                device: &self.device,
                endpoints,
            });
        }
    }

    /// Reports an error (the `error` event).
    pub fn error(&mut self, now: Instant, msg: &str) {
        let t_us = self.now_us(now);
        if let Some(ev) = self.events.as_mut() {
            ev.emit(&Event::Error { t_us, message: msg });
        }
    }

    /// The program stops: the final counters (the `shutdown` event), the open flows' ladders.
    pub fn shutdown(&mut self, now: Instant, status: &Status) {
        let t_us = self.now_us(now);
        if let Some(ev) = self.events.as_mut() {
            ev.emit(&Event::Shutdown {
                t_us,
                stack: &status.stack,
                host: &status.host,
                trace: events::TraceCounters {
                    malformed: &self.malformed,
                    flow_evictions: self.flows.evictions(),
                    packets: self.packets.last_seq(),
                },
            });
        }
        if let Some(l) = self.ladders.as_mut() {
            l.draw_open_flows(&self.flows);
        }
        self.log_narration_summary(t_us, true);
        self.flush();
    }

    /// Writes out what the event sink buffered.
    pub fn flush(&mut self) {
        if let Some(ev) = self.events.as_mut() {
            ev.flush();
        }
    }

    /// `q` was typed in step mode.
    pub fn quit_requested(&self) -> bool {
        self.quit
    }

    /// Malformed frames and bad checksums seen, by reason.
    pub fn malformed(&self) -> &BTreeMap<&'static str, u64> {
        &self.malformed
    }

    /// Sets `"malformed: <reason>"` drop counters in `c` to the tracer's counts (idempotent: call it
    /// as often as the counters are copied).
    pub fn merge_into(&self, c: &mut Counters) {
        for (reason, &n) in &self.malformed {
            let Some(key) = self.malformed_keys.get(reason) else {
                continue;
            };
            match c.drops.get_mut(key.as_str()) {
                Some(v) => *v = n,
                None => {
                    c.drops.insert(key.clone(), n);
                }
            }
        }
    }

    /// Flows in the table (bounded).
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Flows pushed out of the bounded flow table so far.
    pub fn flow_evictions(&self) -> u64 {
        self.flows.evictions()
    }

    /// Flows in the table (live, and closed ones not yet evicted), oldest first.
    pub fn flow_records(&self) -> impl Iterator<Item = &FlowRecord> {
        self.flows.records()
    }

    /// The last 64 closed TCP connections, oldest first.
    pub fn closed_flows(&self) -> impl Iterator<Item = &FlowRecord> {
        self.flows.closed().iter()
    }

    /// Packet records numbered after `since` (0: all kept), oldest first; at most the last 4096.
    pub fn recent_packets(&self, since: u64) -> impl Iterator<Item = &PacketRecord> {
        self.packets.since(since)
    }

    /// The number of the newest packet record (0 before any frame).
    pub fn last_packet_seq(&self) -> u64 {
        self.packets.last_seq()
    }

    /// The packet line for a record: `in  tap0 +1.234567s <summary>`.
    pub fn packet_line(&self, rec: &PacketRecord) -> String {
        format!(
            "{:<3} {} +{} {}",
            self.dir_word(rec),
            self.device,
            Secs(rec.t_us),
            Summary {
                rec,
                absolute_seq: self.absolute_seq
            }
        )
    }

    fn now_us(&mut self, now: Instant) -> i64 {
        let t = now.total_micros();
        self.last_us = t;
        t
    }
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
