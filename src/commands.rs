//! What each subcommand does, as library functions: `serve`, `demo`, `connect`, `get`, `explain`, and
//! [`run`], which dispatches a parsed command line to them.

use smoltcp::time::Instant;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::client::{Connect, Get, Input, Tour};
use crate::clock::Clock;
use crate::config::{Cli, Command, ConfigError, DemoArgs, LogArgs, ServeConfig};
use crate::device::tap::TapDevice;
use crate::device::wire::wire;
use crate::device::{FrameIo, Nic};
use crate::reactor::{App, Reactor, RunError};
use crate::stack::{entropy_seed, Stack};
use crate::topology::{self, CLIENT, SERVER};
use crate::trace::{ExplainError, TraceConfig, Tracer};

/// Why a command did not succeed.
#[derive(Debug)]
pub enum CommandError {
    /// The command line asked for something impossible; nothing was run.
    Config(ConfigError),
    /// `explain` was given something that is no address or port.
    Explain(ExplainError),
    /// The run itself failed.
    Run(RunError),
}

impl CommandError {
    /// 2 for a usage mistake, 1 for a failure while running.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Config(_) | CommandError::Explain(_) => 2,
            CommandError::Run(_) => 1,
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Config(e) => write!(f, "{e}"),
            CommandError::Explain(e) => write!(f, "{e}"),
            CommandError::Run(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CommandError {}

impl From<ConfigError> for CommandError {
    fn from(e: ConfigError) -> Self {
        CommandError::Config(e)
    }
}

impl From<RunError> for CommandError {
    fn from(e: RunError) -> Self {
        CommandError::Run(e)
    }
}

/// Runs what the command line asks for; with no command, the demo.
pub fn run(cli: &Cli) -> Result<(), CommandError> {
    match &cli.command {
        Some(Command::Serve(args)) => {
            serve(&logged(args.validate()?, cli.log))?;
        }
        Some(Command::Connect(args)) => {
            let (cfg, target) = args.validate()?;
            connect(&logged(cfg, cli.log), target, args.udp, args.input())?;
        }
        Some(Command::Get(args)) => {
            get(&logged(args.validate()?, cli.log), &args.url)?;
        }
        Some(Command::Demo(args)) => run_demo(args, cli.log)?,
        Some(Command::Read(args)) => {
            crate::capture::read_capture(&args.file, args.trace_config(cli.log))
                .map_err(|e| CommandError::Run(RunError::App(e.to_string())))?;
        }
        Some(Command::Relay(args)) => crate::relay::run(&args.validate()?)?,
        Some(Command::Explain { what }) => {
            let text = crate::trace::explain(what).map_err(CommandError::Explain)?;
            println!("{}", text.trim_end());
        }
        None => run_demo(&cli.demo, cli.log)?,
    }
    Ok(())
}

/// The options every command takes apply to packet lines.
fn logged(mut cfg: ServeConfig, log: LogArgs) -> ServeConfig {
    cfg.trace.quiet = log.quiet;
    cfg.trace.absolute_seq = log.verbose;
    cfg
}

fn run_demo(args: &DemoArgs, log: LogArgs) -> Result<(), CommandError> {
    let (cfg, mode) = args.validate()?;
    demo(&logged(cfg, log), mode, args.exit)?;
    Ok(())
}

/// `tapstack serve`: attach to the TAP device, serve, run until told to stop.
pub(crate) fn serve(cfg: &ServeConfig) -> Result<(), RunError> {
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
pub(crate) fn demo_reactor(
    cfg: &ServeConfig,
    mode: DemoMode,
    exit: bool,
) -> Result<Reactor, RunError> {
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
    let client_cfg = topology::client_stack_config(cfg.seed.unwrap_or_else(entropy_seed));
    reactor.set_peer(Stack::new(&client_cfg, client_port, now));
    let server_ip = cfg
        .addrs
        .iter()
        .find_map(|c| match c.address() {
            smoltcp::wire::IpAddress::Ipv4(a) => Some(IpAddr::V4(a)),
            _ => None,
        })
        .unwrap_or(IpAddr::V4(SERVER));
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
pub(crate) fn demo(cfg: &ServeConfig, mode: DemoMode, exit: bool) -> Result<(), RunError> {
    let mut reactor = demo_reactor(cfg, mode, exit)?;
    log::info!(
        target: "tapstack",
        "demo: a server stack ({SERVER}) and a client stack ({CLIENT}) on an in-memory wire{}",
        if cfg.seed.is_some() { ", on the virtual clock (deterministic)" } else { "" }
    );
    reactor.announce_ready();
    reactor.run()
}

/// `tapstack connect`: a smoltcp client on the TAP device.
pub(crate) fn connect(
    cfg: &ServeConfig,
    target: SocketAddr,
    udp: bool,
    input: Input,
) -> Result<(), RunError> {
    let tap = TapDevice::open_with(&cfg.tap, cfg.offload)?;
    let mut reactor = Reactor::new(cfg, Box::new(tap), Clock::real())?;
    reactor.set_app(Box::new(Connect::new(target, udp, input)), true);
    reactor.run()
}

/// `tapstack get`: HTTP GET through the userspace stack on the TAP device.
pub(crate) fn get(cfg: &ServeConfig, url: &str) -> Result<(), RunError> {
    let app = Get::new(url).map_err(|e| RunError::App(e.to_string()))?;
    let tap = TapDevice::open_with(&cfg.tap, cfg.offload)?;
    let mut reactor = Reactor::new(cfg, Box::new(tap), Clock::real())?;
    reactor.set_app(Box::new(app), true);
    reactor.run()
}
