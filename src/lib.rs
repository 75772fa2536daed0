//! tapstack: one mio loop driving two TCP/IP stacks side by side - the host kernel's, through ordinary
//! sockets, and a smoltcp userspace stack on a TAP device or an in-memory wire - with the same small
//! services on both, and every packet made visible.
//!
//! # The API
//! - [`harness`]: a server stack and a client stack on an in-memory wire, on a virtual clock, for
//!   other people's tests: verbs to connect, send, run the clock, change faults, cut or hold the wire,
//!   inject frames, and the decoded packets to assert on.
//! - [`frames`]: builders for the frames a test injects (Ethernet, ARP, IPv4/IPv6, TCP, UDP, ICMP).
//! - [`trace`]: what the tracer records and says: [`trace::PacketRecord`], [`trace::FlowRecord`],
//!   TCP flags, the decoder, address and port explanations, and the JSON events of `--events`.
//! - [`ServiceKind`], [`Settings`], [`FaultConfig`], [`Direction`], [`Counters`]: the few types those
//!   take and return.
//!
//! # The layers inside, bottom up
//! - `device`: links under the userspace stack: our own TAP device (the only `unsafe` in the crate;
//!   it never panics), an in-memory cable, a seeded fault injector, and the `Nic`, the
//!   `smoltcp::phy::Device` that puts any of them under smoltcp with an observer watching every frame.
//! - `stack`: the userspace stack: demultiplexing, listener pools, the connection table, ephemeral
//!   ports, client sockets, and the typed events it tells its observer.
//! - `host`: host kernel sockets serving the same services.
//! - `service`: sans-IO services (echo, discard, daytime, qotd, chargen, time, http): bytes and time
//!   in, bytes out, run over either transport by one driver.
//! - `trace`: beside them: it listens to frames and to the stack's events; `capture`: the files it
//!   writes (pcap, pcapng with a packet line per frame) and reads back (`tapstack read`).
//! - `reactor`: the one loop on top: tokens, deadlines, budgets, shutdown; `client`: the apps on it.
//! - `relay`: beside it all, `tapstack relay`: a userspace netem between two TAP devices.
//! - `config`, `commands`: the command line.
#![deny(unsafe_code)]
#![warn(unreachable_pub)]
#![warn(missing_docs)]

mod addr;
mod capture;
mod client;
mod clock;
mod commands;
mod config;
mod device;
pub mod frames;
pub mod harness;
mod host;
mod key;
mod logbuf;
mod reactor;
mod relay;
mod service;
mod stack;
mod status;
mod topology;
pub mod trace;

pub use device::{Direction, FaultConfig};
pub use service::{ServiceKind, Settings};
pub use status::Counters;

/// How the binary, the benchmark and the fuzz targets reach inside. Not an API: no documentation
/// promises, no stability; everything a user needs is above.
#[doc(hidden)]
pub mod internals {
    pub use crate::addr::{parse_cidr, parse_mac};
    pub use crate::capture::{read_capture, CaptureError, CaptureReader, Format, Frame, ReadError};
    pub use crate::commands::run;
    pub use crate::config::{Cli, CliError};
    pub use crate::device::wire::{wire, WireEnd};
    pub use crate::device::{FaultMark, FrameIo, Nic, Observer};
    pub use crate::logbuf::{flush as flush_log, Buffered as BufferedLog};
    pub use crate::reactor::INGRESS_BUDGET;
    pub use crate::service::http::{bytes_pattern, HttpSession, MAX_BODY, PENDING_CAP};
    pub use crate::service::{Context, StreamSession};
    pub use crate::stack::{Stack, StackConfig, TCP_BUFFER};
    pub use crate::status::Status;
    pub use crate::topology::{client_stack_config, SERVER, SERVER_ADDRS, SERVER_MAC};
    pub use crate::trace::Tracer;
}
