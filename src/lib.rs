//! tapstack: one mio loop driving two TCP/IP stacks side by side - the host kernel's, through ordinary
//! sockets, and a smoltcp userspace stack on a TAP device or an in-memory wire - with the same small
//! services on both, and every packet made visible.
//!
//! The layers, bottom up:
//! - [`device`]: links under the userspace stack. [`device::tap`] is our own TAP device (the only
//!   `unsafe` in the crate; it never panics), [`device::wire`] an in-memory cable, [`device::fault`] a
//!   seeded fault injector, and [`device::Port`] the `smoltcp::phy::Device` that puts any of them under
//!   smoltcp with an observer watching every frame.
//! - [`stack`]: the smoltcp interface and socket set, with listener pools that give smoltcp a backlog.
//! - [`host`]: host kernel sockets serving the same services.
//! - [`service`]: sans-IO services (echo, discard, daytime, qotd, chargen, time, http): bytes and time
//!   in, bytes out, driven identically by both transports.
//! - [`trace`]: frame decoding into packet lines, TCP narration, explanations, pcap, JSON events.
//! - [`reactor`]: the one loop on top: tokens, deadlines, ingress budget, shutdown.
//! - [`config`] and [`clock`]: validated settings, and time that tests can replace.

pub mod addr;
pub mod client;
pub mod clock;
pub mod commands;
pub mod config;
pub mod device;
pub mod frames;
pub mod harness;
pub mod host;
mod key;
pub mod logbuf;
pub mod reactor;
pub mod service;
pub mod stack;
pub mod status;
pub mod topology;
pub mod trace;
