//! The command line and the validated configuration behind it.
//!
//! clap parses; [`ServeArgs::validate`] turns what the user typed into a [`ServeConfig`] or one clear
//! [`ConfigError`] line (exit status 2). Nothing here touches the system.

use clap::{Args, Parser, Subcommand};
use smoltcp::time::Duration;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, Ipv4Address, Ipv6Address};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::device::FaultConfig;
use crate::service::{ServiceKind, Settings};
use crate::status::Proto;
use crate::trace::{EventsTarget, TraceConfig};

#[derive(Debug, Parser)]
#[command(
    name = "tapstack",
    version,
    about = "One mio loop driving a smoltcp userspace TCP/IP stack and host sockets, every packet shown",
    after_help = "With no command, runs the demo: no root and no TAP device needed."
)]
pub struct Cli {
    /// Hide packet lines (narration and errors stay).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Absolute TCP sequence numbers in packet lines.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no command: the demo's options.
    #[command(flatten)]
    pub demo: DemoArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve on a TAP device (userspace stack) and on host sockets.
    Serve(Box<ServeArgs>),
    /// The demo (the default): a server stack and a client stack on an in-memory wire, a guided tour.
    Demo(Box<DemoArgs>),
    /// Open a TCP (or UDP) connection from the userspace stack; stdin or --send out, replies to stdout.
    Connect(Box<ConnectArgs>),
    /// HTTP GET through the userspace stack: headers to stderr, body to stdout.
    Get(Box<GetArgs>),
    /// Explain an IP address, a port, or ADDR:PORT.
    Explain {
        /// `192.168.1.2`, `192.168.1.2:8080`, `8080`, `[fe80::1]:22`
        what: String,
    },
}

/// Options shared by everything that runs the userspace stack.
#[derive(Debug, Clone, Args)]
pub struct StackArgs {
    /// Address of the userspace stack, CIDR; repeatable.
    #[arg(long = "addr", value_name = "CIDR")]
    pub addrs: Vec<String>,
    /// Default gateway; repeatable, one per IP version.
    #[arg(long = "gateway", value_name = "IP")]
    pub gateways: Vec<String>,
    /// MAC address of the userspace stack.
    #[arg(long, default_value = "02:00:00:00:00:01")]
    pub mac: String,
    /// Services to run, comma-separated, each `name` or `name:port`. Default: all.
    #[arg(long, value_name = "SERVICE[:PORT],...")]
    pub serve: Option<String>,
    /// Host address for the host-socket side.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Host port = service port + this.
    #[arg(long, default_value_t = 10000, allow_negative_numbers = true)]
    pub host_port_offset: u32,
    /// Serve only on the userspace stack.
    #[arg(long)]
    pub no_host: bool,
    /// TCP connections per stack at most; SYNs beyond are refused with RST.
    #[arg(long, default_value_t = 1024, allow_negative_numbers = true)]
    pub max_connections: usize,
    /// The qotd message (at most 512 bytes).
    #[arg(long)]
    pub message: Option<String>,
    /// HTTP idle timeout, seconds.
    #[arg(long, default_value_t = 30.0, allow_negative_numbers = true)]
    pub idle_timeout: f64,
    /// Write every frame to this pcap file.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Write JSON-lines events here (`-` = standard output).
    #[arg(long, value_name = "FILE")]
    pub events: Option<String>,
    /// Wait for Enter after each packet line (`c` continue, `q` quit).
    #[arg(long)]
    pub step: bool,
    /// Draw a ladder diagram of each TCP connection when it closes.
    #[arg(long)]
    pub ladder: bool,
    /// Narrate (state changes, close summaries) at most N new TCP connections a second; the rest are
    /// counted in one line a second. 0: narrate every connection.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100,
        allow_negative_numbers = true
    )]
    pub narrate_limit: u32,
    /// Print counters every N seconds.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub stats_interval: Option<f64>,
    /// Exit when standard input closes (for harnesses in other languages).
    #[arg(long)]
    pub stdin_exit: bool,
    /// Chance (0-1) that a frame is dropped.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub drop_chance: f64,
    /// Chance (0-1) that a frame is duplicated.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub dup_chance: f64,
    /// Chance (0-1) that a frame is held back behind later ones.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub reorder_chance: f64,
    /// Chance (0-1) that a frame has a bit flipped.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub corrupt_chance: f64,
    /// One-way latency added to every frame, milliseconds.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub latency_ms: f64,
    /// Seed for fault injection (and, in the demo, the virtual clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// TAP: no checksum and segmentation offload, so every frame is one a real Ethernet would carry
    /// (the trace then shows 1514-byte frames instead of 64 KiB segments; slower).
    #[arg(long)]
    pub no_offload: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// TAP device to attach to (create it with tap-setup.sh).
    #[arg(long, default_value = "tap0")]
    pub tap: String,
    #[command(flatten)]
    pub stack: StackArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Exit after the tour instead of serving on.
    #[arg(long)]
    pub exit: bool,
    /// Instead of the tour: connect to HOST:PORT on the wire (e.g. 192.168.69.1:7).
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "get")]
    pub connect: Option<String>,
    /// With --connect: UDP instead of TCP.
    #[arg(long, requires = "connect")]
    pub udp: bool,
    /// With --connect: send this text instead of standard input.
    #[arg(long, requires = "connect")]
    pub send: Option<String>,
    /// Instead of the tour: GET this URL on the wire (e.g. http://192.168.69.1/netstat.json).
    #[arg(long, value_name = "URL")]
    pub get: Option<String>,
    #[command(flatten)]
    pub stack: StackArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Where to connect: `ADDRESS:PORT` or `[IPv6]:PORT`.
    pub target: String,
    /// UDP: send one datagram, print the reply.
    #[arg(long)]
    pub udp: bool,
    /// Send this text (then close) instead of standard input.
    #[arg(long)]
    pub send: Option<String>,
    /// TAP device to attach to.
    #[arg(long, default_value = "tap0")]
    pub tap: String,
    #[command(flatten)]
    pub stack: StackArgs,
}

#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// `http://ADDRESS[:PORT]/PATH` (an IP address: the userspace stack has no DNS).
    pub url: String,
    /// TAP device to attach to.
    #[arg(long, default_value = "tap0")]
    pub tap: String,
    #[command(flatten)]
    pub stack: StackArgs,
}

impl Cli {
    /// Parses the command line. Demo options given before a subcommand (`tapstack --seed 3 serve`)
    /// would be silently ignored: that is a usage error instead (clap exits with status 2).
    pub fn parse_checked() -> Cli {
        use clap::{CommandFactory, FromArgMatches};
        let mut cmd = Cli::command();
        let matches = match cmd.try_get_matches_from_mut(std::env::args_os()) {
            Ok(m) => m,
            Err(e) => {
                use clap::error::ErrorKind;
                if matches!(
                    e.kind(),
                    ErrorKind::DisplayHelp
                        | ErrorKind::DisplayVersion
                        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                ) {
                    e.exit();
                }
                usage_exit(&e.to_string());
            }
        };
        if let Some((sub, _)) = matches.subcommand() {
            for id in matches.ids() {
                let id = id.as_str();
                if id != "quiet"
                    && id != "verbose"
                    && matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
                {
                    let flag = id.replace('_', "-");
                    usage_exit(&format!(
                        "'--{flag}' belongs after the subcommand: `tapstack {sub} --{flag} ...`"
                    ));
                }
            }
        }
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| usage_exit(&e.to_string()))
    }
}

/// A usage mistake found by clap: its first line only (no usage block), exit status 2.
fn usage_exit(text: &str) -> ! {
    let first = text.lines().next().unwrap_or("invalid arguments").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    crate::logbuf::flush();
    eprintln!("error: {first} (see tapstack --help)");
    std::process::exit(2)
}

/// Parses `192.168.69.1:7` or `[fdaa::1]:7`.
pub fn parse_target(s: &str) -> Result<std::net::SocketAddr, ConfigError> {
    match s.parse::<std::net::SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(a),
        _ => Err(ConfigError::BadTarget(s.to_string())),
    }
}

/// One served endpoint, before binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceSpec {
    pub kind: ServiceKind,
    pub port: u16,
}

/// Everything the reactor needs, checked.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub tap: String,
    pub addrs: Vec<IpCidr>,
    pub gateway_v4: Option<Ipv4Address>,
    pub gateway_v6: Option<Ipv6Address>,
    pub mac: EthernetAddress,
    pub services: Vec<ServiceSpec>,
    /// `None` with `--no-host`.
    pub host: Option<IpAddr>,
    pub host_port_offset: u16,
    pub max_connections: usize,
    pub settings: Settings,
    pub trace: TraceConfig,
    pub faults: FaultConfig,
    pub seed: Option<u64>,
    pub stats_interval: Option<Duration>,
    pub stdin_exit: bool,
    /// Ask the TAP device for checksum and segmentation offload (off under fault injection).
    pub offload: bool,
}

impl ServeConfig {
    /// The host-side port of a service port.
    pub fn host_port(&self, port: u16) -> u16 {
        port + self.host_port_offset
    }
}

/// A usage mistake: one line, exit status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    UnknownService(String),
    BadPort(String),
    DuplicatePort {
        port: u16,
        proto: Proto,
        first: ServiceKind,
        second: ServiceKind,
    },
    BadCidr(String),
    BadIp(String),
    BadMac(String),
    HostPortOutOfRange {
        service: ServiceKind,
        port: u16,
        offset: u32,
    },
    BadNumber {
        option: &'static str,
        value: String,
        why: &'static str,
    },
    MessageTooLong(usize),
    NoServices,
    TwoGateways(&'static str),
    BadTarget(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownService(s) => {
                let known: Vec<&str> = ServiceKind::ALL.iter().map(|k| k.name()).collect();
                write!(f, "unknown service '{s}' (known: {})", known.join(", "))
            }
            ConfigError::BadPort(s) => write!(f, "bad port '{s}': a port is a number from 1 to 65535"),
            ConfigError::DuplicatePort { port, proto, first, second } => write!(
                f,
                "{first} and {second} both want {} port {port}: give one of them another port (e.g. {second}:{})",
                proto.as_str(),
                port.saturating_add(1000)
            ),
            ConfigError::BadCidr(s) => write!(
                f,
                "bad address '{s}': expected ADDRESS/PREFIX, e.g. 192.168.69.1/24 or fdaa::1/64"
            ),
            ConfigError::BadIp(s) => write!(f, "bad IP address '{s}'"),
            ConfigError::BadMac(s) => write!(
                f,
                "bad MAC address '{s}': expected six hex bytes like 02:00:00:00:00:01, unicast (first byte even), not all zero"
            ),
            ConfigError::HostPortOutOfRange { service, port, offset } => write!(
                f,
                "host port for {service} would be {port} + {offset} = {}, past 65535: lower --host-port-offset or use --no-host",
                *port as u32 + offset
            ),
            ConfigError::BadNumber { option, value, why } => write!(f, "bad value '{value}' for --{option}: {why}"),
            ConfigError::MessageTooLong(n) => {
                write!(f, "--message is {n} bytes; RFC 865 allows at most 512")
            }
            ConfigError::NoServices => write!(f, "--serve lists no services"),
            ConfigError::TwoGateways(v) => write!(f, "two {v} gateways given; give at most one per IP version"),
            ConfigError::BadTarget(t) => write!(
                f,
                "bad target '{t}': expected ADDRESS:PORT, e.g. 192.168.69.100:7 or [fdaa::100]:7 (an IP address: no DNS)"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

pub const DEFAULT_ADDRS: [&str; 3] = ["192.168.69.1/24", "fdaa::1/64", "fe80::1/64"];
pub const DEFAULT_GATEWAYS: [&str; 2] = ["192.168.69.100", "fe80::100"];

/// Parses `echo,http:8080,qotd`. Two services on one port and protocol is an error.
pub fn parse_services(list: Option<&str>) -> Result<Vec<ServiceSpec>, ConfigError> {
    let specs: Vec<ServiceSpec> = match list {
        None => ServiceKind::ALL
            .iter()
            .map(|&kind| ServiceSpec {
                kind,
                port: kind.default_port(),
            })
            .collect(),
        Some(list) => {
            let mut v = Vec::new();
            for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (name, port) = match item.split_once(':') {
                    Some((n, p)) => (n, Some(p)),
                    None => (item, None),
                };
                let kind = ServiceKind::from_name(&name.to_ascii_lowercase())
                    .ok_or_else(|| ConfigError::UnknownService(name.to_string()))?;
                let port = match port {
                    None => kind.default_port(),
                    Some(p) => match p.parse::<u16>() {
                        Ok(n) if n > 0 => n,
                        _ => return Err(ConfigError::BadPort(p.to_string())),
                    },
                };
                v.push(ServiceSpec { kind, port });
            }
            v
        }
    };
    if specs.is_empty() {
        return Err(ConfigError::NoServices);
    }
    let mut seen: Vec<(u16, Proto, ServiceKind)> = Vec::new();
    let mut out = Vec::new();
    for spec in specs {
        let mut duplicate_of_same = false;
        for &proto in spec.kind.protocols() {
            if let Some(&(_, _, first)) = seen
                .iter()
                .find(|(p, pr, _)| *p == spec.port && *pr == proto)
            {
                if first == spec.kind {
                    duplicate_of_same = true;
                    continue;
                }
                return Err(ConfigError::DuplicatePort {
                    port: spec.port,
                    proto,
                    first,
                    second: spec.kind,
                });
            }
            seen.push((spec.port, proto, spec.kind));
        }
        // `echo,echo` is harmless repetition, not a conflict: serve it once.
        if !duplicate_of_same {
            out.push(spec);
        }
    }
    Ok(out)
}

pub fn parse_mac(s: &str) -> Result<EthernetAddress, ConfigError> {
    let bad = || ConfigError::BadMac(s.to_string());
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut b = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(bad());
        }
        b[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    let mac = EthernetAddress(b);
    // smoltcp panics on a non-unicast hardware address: refuse it here, politely.
    if !mac.is_unicast() || b == [0; 6] {
        return Err(bad());
    }
    Ok(mac)
}

pub fn parse_cidr(s: &str) -> Result<IpCidr, ConfigError> {
    let bad = || ConfigError::BadCidr(s.to_string());
    let (addr, len) = s.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max || addr.is_unspecified() || addr.is_multicast() {
        return Err(bad());
    }
    if let IpAddr::V4(v4) = addr {
        if v4.is_broadcast() {
            return Err(bad());
        }
    }
    Ok(IpCidr::new(IpAddress::from(addr), len))
}

fn positive(option: &'static str, v: f64, allow_zero: bool) -> Result<f64, ConfigError> {
    if !v.is_finite() || v < 0.0 || (!allow_zero && v == 0.0) {
        return Err(ConfigError::BadNumber {
            option,
            value: v.to_string(),
            why: if allow_zero {
                "must be 0 or more"
            } else {
                "must be more than 0"
            },
        });
    }
    Ok(v)
}

fn chance(option: &'static str, v: f64) -> Result<f64, ConfigError> {
    if !(0.0..=1.0).contains(&v) {
        return Err(ConfigError::BadNumber {
            option,
            value: v.to_string(),
            why: "a chance is between 0 and 1",
        });
    }
    Ok(v)
}

fn secs(v: f64) -> Duration {
    Duration::from_micros((v * 1e6) as u64)
}

impl StackArgs {
    /// Checks everything but the device name; `device` names the link in packet lines.
    pub fn validate(&self, device: &str) -> Result<ServeConfig, ConfigError> {
        let addrs = if self.addrs.is_empty() {
            DEFAULT_ADDRS
                .iter()
                .map(|s| parse_cidr(s))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            self.addrs
                .iter()
                .map(|s| parse_cidr(s))
                .collect::<Result<Vec<_>, _>>()?
        };
        if addrs.len() > 3 {
            return Err(ConfigError::BadCidr(format!(
                "{} (at most 3 addresses per interface)",
                self.addrs.join(" ")
            )));
        }
        let gateways: Vec<String> = if self.gateways.is_empty() {
            DEFAULT_GATEWAYS.iter().map(|s| s.to_string()).collect()
        } else {
            self.gateways.clone()
        };
        let (mut gateway_v4, mut gateway_v6) = (None, None);
        for g in &gateways {
            match g
                .parse::<IpAddr>()
                .map_err(|_| ConfigError::BadIp(g.clone()))?
            {
                IpAddr::V4(a) if gateway_v4.is_none() => gateway_v4 = Some(a),
                IpAddr::V6(a) if gateway_v6.is_none() => gateway_v6 = Some(a),
                IpAddr::V4(_) => return Err(ConfigError::TwoGateways("IPv4")),
                IpAddr::V6(_) => return Err(ConfigError::TwoGateways("IPv6")),
            }
        }
        let mac = parse_mac(&self.mac)?;
        let services = parse_services(self.serve.as_deref())?;
        let host = if self.no_host {
            None
        } else {
            Some(
                self.host
                    .parse::<IpAddr>()
                    .map_err(|_| ConfigError::BadIp(self.host.clone()))?,
            )
        };
        if self.host_port_offset > 65535 {
            return Err(ConfigError::BadNumber {
                option: "host-port-offset",
                value: self.host_port_offset.to_string(),
                why: "must be 0 to 65535",
            });
        }
        if host.is_some() {
            for s in &services {
                if s.port as u32 + self.host_port_offset > 65535 {
                    return Err(ConfigError::HostPortOutOfRange {
                        service: s.kind,
                        port: s.port,
                        offset: self.host_port_offset,
                    });
                }
            }
        }
        if self.max_connections == 0 || self.max_connections > 1_000_000 {
            return Err(ConfigError::BadNumber {
                option: "max-connections",
                value: self.max_connections.to_string(),
                why: "must be 1 to 1000000",
            });
        }
        let mut settings = Settings::default();
        if let Some(m) = &self.message {
            if m.len() > 512 {
                return Err(ConfigError::MessageTooLong(m.len()));
            }
            settings.message = m.clone();
        }
        settings.idle_timeout = secs(positive("idle-timeout", self.idle_timeout, false)?);
        let stats_interval = match self.stats_interval {
            Some(v) => Some(secs(positive("stats-interval", v, false)?)),
            None => None,
        };
        let faults = FaultConfig {
            drop: chance("drop-chance", self.drop_chance)?,
            duplicate: chance("dup-chance", self.dup_chance)?,
            reorder: chance("reorder-chance", self.reorder_chance)?,
            corrupt: chance("corrupt-chance", self.corrupt_chance)?,
            latency: Duration::from_micros(
                (positive("latency-ms", self.latency_ms, true)? * 1000.0) as u64,
            ),
            seed: self.seed.unwrap_or(0),
        };
        if faults.drop >= 1.0 {
            return Err(ConfigError::BadNumber {
                option: "drop-chance",
                value: self.drop_chance.to_string(),
                why: "1 drops every frame; nothing could ever connect",
            });
        }
        let trace = TraceConfig {
            pcap: self.pcap.clone(),
            events: self.events.as_deref().map(|e| {
                if e == "-" {
                    EventsTarget::Stdout
                } else {
                    EventsTarget::File(PathBuf::from(e))
                }
            }),
            step: self.step,
            ladder: self.ladder,
            narrate_limit: self.narrate_limit,
            device: device.to_string(),
            ..TraceConfig::default()
        };
        Ok(ServeConfig {
            tap: device.to_string(),
            addrs,
            gateway_v4,
            gateway_v6,
            mac,
            services,
            host,
            host_port_offset: self.host_port_offset as u16,
            max_connections: self.max_connections,
            settings,
            trace,
            faults,
            seed: self.seed,
            stats_interval,
            stdin_exit: self.stdin_exit,
            offload: !self.no_offload && !faults.is_active(),
        })
    }
}

fn check_tap(tap: &str) -> Result<(), ConfigError> {
    if tap.is_empty() || tap.len() > 15 || tap.contains(['/', ' ', '\0']) {
        return Err(ConfigError::BadNumber {
            option: "tap",
            value: tap.to_string(),
            why: "an interface name is 1 to 15 characters, no '/' or spaces",
        });
    }
    Ok(())
}

impl ServeArgs {
    pub fn validate(&self) -> Result<ServeConfig, ConfigError> {
        check_tap(&self.tap)?;
        self.stack.validate(&self.tap)
    }
}

/// A client mode over the TAP: the stack serves nothing and opens no host sockets.
fn client_config(tap: &str, stack: &StackArgs) -> Result<ServeConfig, ConfigError> {
    check_tap(tap)?;
    let mut cfg = stack.validate(tap)?;
    cfg.services.clear();
    cfg.host = None;
    Ok(cfg)
}

impl ConnectArgs {
    pub fn validate(&self) -> Result<(ServeConfig, std::net::SocketAddr), ConfigError> {
        let target = parse_target(&self.target)?;
        Ok((client_config(&self.tap, &self.stack)?, target))
    }
}

impl GetArgs {
    pub fn validate(&self) -> Result<ServeConfig, ConfigError> {
        client_config(&self.tap, &self.stack)
    }
}

impl DemoArgs {
    pub fn validate(&self) -> Result<ServeConfig, ConfigError> {
        if let Some(t) = &self.connect {
            parse_target(t)?;
        }
        let mut cfg = self.stack.validate("wire")?;
        // The demo always draws its connections.
        cfg.trace.ladder = true;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Result<ServeConfig, String> {
        let mut v = vec!["tapstack", "serve"];
        v.extend_from_slice(args);
        let cli = Cli::try_parse_from(v).map_err(|e| e.to_string())?;
        match cli.command {
            Some(Command::Serve(a)) => a.validate().map_err(|e| e.to_string()),
            _ => panic!("not a serve command"),
        }
    }

    #[test]
    fn test_defaults_serve_everything_on_standard_ports() {
        let c = serve(&[]).unwrap();
        assert_eq!(c.tap, "tap0");
        let ports: Vec<(ServiceKind, u16)> = c.services.iter().map(|s| (s.kind, s.port)).collect();
        assert_eq!(ports.len(), 7);
        assert!(ports.contains(&(ServiceKind::Echo, 7)));
        assert!(ports.contains(&(ServiceKind::Http, 80)));
        assert_eq!(c.addrs.len(), 3);
        assert_eq!(c.gateway_v4, Some(Ipv4Address::new(192, 168, 69, 100)));
        assert!(c.gateway_v6.is_some());
        assert_eq!(c.host, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(c.host_port(7), 10007);
        assert_eq!(c.max_connections, 1024);
    }

    #[test]
    fn test_serve_list_with_ports() {
        let c = serve(&["--serve", "echo,http:8080,qotd"]).unwrap();
        let got: Vec<(ServiceKind, u16)> = c.services.iter().map(|s| (s.kind, s.port)).collect();
        assert_eq!(
            got,
            vec![
                (ServiceKind::Echo, 7),
                (ServiceKind::Http, 8080),
                (ServiceKind::Qotd, 17)
            ]
        );
    }

    #[test]
    fn test_same_service_on_two_ports_is_fine() {
        let c = serve(&["--serve", "echo,echo:7007"]).unwrap();
        assert_eq!(c.services.len(), 2);
    }

    #[test]
    fn test_unknown_service() {
        let e = serve(&["--serve", "echo,gopher"]).unwrap_err();
        assert!(e.starts_with("unknown service 'gopher'"), "{e}");
    }

    #[test]
    fn test_port_out_of_range_and_zero() {
        assert!(serve(&["--serve", "echo:70000"])
            .unwrap_err()
            .starts_with("bad port '70000'"));
        assert!(serve(&["--serve", "echo:0"])
            .unwrap_err()
            .starts_with("bad port '0'"));
        assert!(serve(&["--serve", "echo:x"])
            .unwrap_err()
            .starts_with("bad port 'x'"));
    }

    #[test]
    fn test_duplicate_port_is_an_error() {
        let e = serve(&["--serve", "echo,discard:7"]).unwrap_err();
        assert!(e.contains("echo and discard both want tcp port 7"), "{e}");
        // http is TCP only, so http on a UDP-only-conflicting port would still clash on TCP.
        let e = serve(&["--serve", "http:7,echo"]).unwrap_err();
        assert!(e.contains("tcp port 7"), "{e}");
    }

    #[test]
    fn test_bad_cidr() {
        for bad in [
            "192.168.69.1",
            "192.168.69.1/33",
            "300.1.1.1/24",
            "fdaa::1/129",
            "0.0.0.0/0",
            "224.0.0.1/4",
        ] {
            let e = serve(&["--addr", bad]).unwrap_err();
            assert!(e.starts_with(&format!("bad address '{bad}'")), "{bad}: {e}");
        }
        let c = serve(&["--addr", "10.0.0.1/8"]).unwrap();
        assert_eq!(c.addrs.len(), 1);
    }

    #[test]
    fn test_bad_mac() {
        for bad in [
            "02:00:00:00:00",
            "01:00:00:00:00:01",
            "00:00:00:00:00:00",
            "zz:00:00:00:00:01",
            "020000000001",
        ] {
            let e = serve(&["--mac", bad]).unwrap_err();
            assert!(
                e.starts_with(&format!("bad MAC address '{bad}'")),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            serve(&["--mac", "02-aa-bb-cc-dd-ee"]).unwrap().mac,
            EthernetAddress([2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee])
        );
    }

    #[test]
    fn test_host_port_overflow() {
        let e = serve(&["--serve", "echo:60000"]).unwrap_err();
        assert!(e.contains("past 65535"), "{e}");
        assert!(serve(&["--serve", "echo:60000", "--no-host"]).is_ok());
        assert!(serve(&["--serve", "echo:60000", "--host-port-offset", "0"]).is_ok());
    }

    #[test]
    fn test_bad_numbers() {
        assert!(serve(&["--drop-chance", "1.5"])
            .unwrap_err()
            .contains("between 0 and 1"));
        assert!(serve(&["--drop-chance", "1"])
            .unwrap_err()
            .contains("drops every frame"));
        assert!(serve(&["--max-connections", "0"])
            .unwrap_err()
            .contains("max-connections"));
        assert!(serve(&["--idle-timeout", "0"])
            .unwrap_err()
            .contains("idle-timeout"));
        assert!(serve(&["--host", "localhost:1"])
            .unwrap_err()
            .starts_with("bad IP address"));
        assert!(serve(&["--gateway", "1.2.3.4", "--gateway", "1.2.3.5"])
            .unwrap_err()
            .contains("two IPv4 gateways"));
    }

    #[test]
    fn test_message_limit() {
        let long = "x".repeat(513);
        assert!(serve(&["--message", &long])
            .unwrap_err()
            .contains("at most 512"));
        assert_eq!(serve(&["--message", "hi"]).unwrap().settings.message, "hi");
    }

    #[test]
    fn test_no_command_is_the_demo_with_its_options() {
        let cli =
            Cli::try_parse_from(["tapstack", "--seed", "3", "--exit", "--drop-chance", "0.2"])
                .unwrap();
        assert!(cli.command.is_none());
        assert!(cli.demo.exit);
        let c = cli.demo.validate().unwrap();
        assert_eq!(c.seed, Some(3));
        assert_eq!(c.faults.drop, 0.2);
    }

    #[test]
    fn test_connect_and_get_parse_targets() {
        let cli = Cli::try_parse_from(["tapstack", "connect", "192.168.69.100:7", "--send", "hi"])
            .unwrap();
        let Some(Command::Connect(a)) = cli.command else {
            panic!("connect")
        };
        let (cfg, target) = a.validate().unwrap();
        assert_eq!(target, "192.168.69.100:7".parse().unwrap());
        assert!(cfg.services.is_empty() && cfg.host.is_none());
        let cli = Cli::try_parse_from(["tapstack", "connect", "example.com:80"]).unwrap();
        let Some(Command::Connect(a)) = cli.command else {
            panic!("connect")
        };
        assert!(a
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("bad target 'example.com:80'"));
        let cli = Cli::try_parse_from(["tapstack", "connect", "[fdaa::100]:0"]).unwrap();
        let Some(Command::Connect(a)) = cli.command else {
            panic!("connect")
        };
        assert!(a.validate().is_err());
    }

    #[test]
    fn test_bad_tap_name() {
        assert!(serve(&["--tap", "a-very-long-interface-name"])
            .unwrap_err()
            .contains("--tap"));
    }
}
