//! What each subcommand does, as library functions: `serve`, `demo`, `connect`, `get`.

use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpCidr};
use std::net::{IpAddr, SocketAddr};

use crate::client::{Connect, Get, Input, Tour};
use crate::clock::Clock;
use crate::config::{parse_cidr, ServeConfig};
use crate::device::tap::TapDevice;
use crate::device::wire::wire;
use crate::device::{FrameIo, Nic};
use crate::reactor::{App, Reactor, RunError, Summary};
use crate::stack::{entropy_seed, Stack, StackConfig, TCP_BUFFER};
use crate::trace::{TraceConfig, Tracer};

/// The client stack of the demo: the far end of the wire, where the kernel side would be on a TAP.
pub const DEMO_CLIENT_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
pub const DEMO_CLIENT_ADDRS: [&str; 3] = ["192.168.69.100/24", "fdaa::100/64", "fe80::100/64"];

/// `tapstack serve`: attach to the TAP device, serve, run until told to stop.
pub fn serve(cfg: &ServeConfig) -> Result<Summary, RunError> {
    let tap = TapDevice::open_with(&cfg.tap, cfg.offload)?;
    log::info!(
        target: "tapstack",
        "attached to TAP device {} (MTU {}{})",
        tap.name(),
        tap.mtu(),
        if cfg.offload { ", checksum and segmentation offload" } else { "" }
    );
    let mut reactor = Reactor::new(cfg, Box::new(tap), Clock::real())?;
    reactor.announce_ready();
    reactor.run()
}

/// What the demo does on its client stack.
pub enum DemoMode {
    Tour,
    Connect {
        target: SocketAddr,
        udp: bool,
        input: Input,
    },
    Get(String),
}

/// Builds the demo's loop: the server stack from `cfg` on one end of an in-memory wire, a client
/// stack on the other, on the virtual clock when a seed is given. Exposed for tests and benchmarks.
pub fn demo_reactor(cfg: &ServeConfig, mode: DemoMode, exit: bool) -> Result<Reactor, RunError> {
    let clock = if cfg.seed.is_some() {
        Clock::virtual_at_zero()
    } else {
        Clock::real()
    };
    let (server_end, client_end) = wire();
    let mut reactor = Reactor::new(cfg, Box::new(server_end), clock)?;
    let now = reactor.clock().now();
    let client_port = Nic::new(
        Box::new(client_end) as Box<dyn FrameIo>,
        Tracer::new(
            TraceConfig::silent(),
            reactor.clock().wall_at(Instant::ZERO),
        )
        .map_err(|e| RunError::Io("cannot set up the client's tracer", e))?,
    );
    let client_cfg = StackConfig {
        mac: DEMO_CLIENT_MAC,
        addrs: DEMO_CLIENT_ADDRS
            .iter()
            .map(|a| parse_cidr(a).expect("constant CIDR"))
            .collect::<Vec<IpCidr>>(),
        gateway_v4: None,
        gateway_v6: None,
        random_seed: cfg.seed.map_or_else(entropy_seed, |s| s.wrapping_add(1)),
        max_connections: 64,
        tcp_buffer: TCP_BUFFER,
    };
    reactor.set_peer(Stack::new(&client_cfg, client_port, now));
    let server_ip = cfg
        .addrs
        .iter()
        .find_map(|c| match c.address() {
            smoltcp::wire::IpAddress::Ipv4(a) => Some(IpAddr::V4(a)),
            _ => None,
        })
        .unwrap_or(IpAddr::from([192, 168, 69, 1]));
    // The tour keeps serving afterwards unless told to exit; connect and get always end.
    let exit = exit || !matches!(mode, DemoMode::Tour);
    let app: Box<dyn App> = match mode {
        DemoMode::Tour => {
            let services: Vec<_> = cfg.services.iter().map(|s| (s.kind, s.port)).collect();
            Box::new(Tour::new(server_ip, &services))
        }
        DemoMode::Connect { target, udp, input } => Box::new(Connect::new(target, udp, input)),
        DemoMode::Get(url) => Box::new(Get::new(&url).map_err(|e| RunError::App(e.to_string()))?),
    };
    reactor.set_app(app, exit);
    Ok(reactor)
}

/// `tapstack` / `tapstack demo`.
pub fn demo(cfg: &ServeConfig, mode: DemoMode, exit: bool) -> Result<Summary, RunError> {
    let mut reactor = demo_reactor(cfg, mode, exit)?;
    log::info!(
        target: "tapstack",
        "demo: a server stack (192.168.69.1) and a client stack (192.168.69.100) on an in-memory wire{}",
        if cfg.seed.is_some() { ", on the virtual clock (deterministic)" } else { "" }
    );
    reactor.announce_ready();
    reactor.run()
}

/// `tapstack connect`: a smoltcp client on the TAP device.
pub fn connect(
    cfg: &ServeConfig,
    target: SocketAddr,
    udp: bool,
    input: Input,
) -> Result<Summary, RunError> {
    let tap = TapDevice::open_with(&cfg.tap, cfg.offload)?;
    let mut reactor = Reactor::new(cfg, Box::new(tap), Clock::real())?;
    reactor.set_app(Box::new(Connect::new(target, udp, input)), true);
    reactor.run()
}

/// `tapstack get`: HTTP GET through the userspace stack on the TAP device.
pub fn get(cfg: &ServeConfig, url: &str) -> Result<Summary, RunError> {
    let app = Get::new(url).map_err(|e| RunError::App(e.to_string()))?;
    let tap = TapDevice::open_with(&cfg.tap, cfg.offload)?;
    let mut reactor = Reactor::new(cfg, Box::new(tap), Clock::real())?;
    reactor.set_app(Box::new(app), true);
    reactor.run()
}
