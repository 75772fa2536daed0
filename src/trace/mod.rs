//! SKELETON: the trace helper replaces this with decode/explain/pcap/events/flow modules.
//! The API below is what the reactor calls; keep these signatures.

pub mod ladder;
use smoltcp::time::Instant;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::device::{Direction, Observer};
use crate::status::{Endpoint, Status};

/// Where `--events` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsTarget {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, Default)]
pub struct TraceConfig {
    /// `-v`: absolute TCP sequence numbers in packet lines.
    pub absolute_seq: bool,
    /// `-q`: no packet lines.
    pub quiet: bool,
    pub pcap: Option<PathBuf>,
    pub events: Option<EventsTarget>,
    /// `--step`: wait for a line on standard input after each packet line.
    pub step: bool,
    /// `--ladder`: draw each TCP connection when it closes.
    pub ladder: bool,
    /// Device name for packet lines (`tap0`, `wire`).
    pub device: String,
}

impl TraceConfig {
    /// Watches but says nothing: for the demo's client stack, whose frames the server's tracer shows.
    pub fn silent() -> TraceConfig {
        TraceConfig {
            quiet: true,
            device: "wire".to_string(),
            ..TraceConfig::default()
        }
    }
}

pub struct Tracer {
    next_id: u64,
    quit: bool,
}

impl Tracer {
    /// `wall_epoch`: the wall-clock time of `Instant::ZERO` (for pcap timestamps).
    pub fn new(_cfg: TraceConfig, _wall_epoch: SystemTime) -> std::io::Result<Tracer> {
        Ok(Tracer {
            next_id: 1,
            quit: false,
        })
    }

    /// A fresh connection id (host connections get theirs here, so ids are unique across stacks).
    pub fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The id of the TCP flow with this 4-tuple (assigned on first sight).
    pub fn conn_id(&mut self, _local: SocketAddr, _remote: SocketAddr) -> u64 {
        self.alloc_id()
    }

    /// A smoltcp socket of the userspace stack changed state.
    pub fn tcp_state(
        &mut self,
        _now: Instant,
        _local: SocketAddr,
        _remote: Option<SocketAddr>,
        _from: &'static str,
        _to: &'static str,
    ) {
    }

    /// Why the next RST towards `remote` from `local` is sent (no listener, pool full, abort).
    pub fn rst_reason(&mut self, _local: SocketAddr, _remote: SocketAddr, _reason: &'static str) {}

    pub fn ready(&mut self, _now: Instant, _endpoints: &[Endpoint]) {}
    pub fn error(&mut self, _now: Instant, _msg: &str) {}
    pub fn shutdown(&mut self, _now: Instant, _status: &Status) {}
    pub fn flush(&mut self) {}

    /// `q` was typed in step mode.
    pub fn quit_requested(&self) -> bool {
        self.quit
    }
}

impl Observer for Tracer {
    fn frame(&mut self, _now: Instant, _dir: Direction, _frame: &[u8]) {}
    fn dropped(&mut self, _now: Instant, _dir: Direction, _frame: &[u8], _reason: &'static str) {}
}

/// SKELETON: replaced by the trace helper's explain module.
pub fn explain(input: &str) -> Result<String, String> {
    Err(format!("cannot explain '{input}' yet"))
}
