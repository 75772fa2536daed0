//! From what the user typed to a [`ServeConfig`]: every value checked, every mistake one typed
//! [`ConfigError`] naming the option.

use smoltcp::time::Duration;
use smoltcp::wire::{EthernetAddress, IpCidr, Ipv4Address, Ipv6Address};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::*;

/// Parses `192.168.69.1:7` or `[fdaa::1]:7`.
pub(crate) fn parse_target(s: &str) -> Result<SocketAddr, ConfigError> {
    match s.parse::<SocketAddr>() {
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
    /// 2 x MSL: how long the userspace stack holds TIME-WAIT (`--time-wait`).
    pub time_wait: Duration,
    /// `--max-window`: socket buffer per direction and connection; `None` = the device's default.
    pub max_window: Option<usize>,
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
    Addr(AddrError),
    BadIp(String),
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
    BadUrl(UrlError),
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
            ConfigError::Addr(e) => write!(f, "{e}"),
            ConfigError::BadIp(s) => write!(f, "bad IP address '{s}'"),
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
            ConfigError::BadUrl(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<AddrError> for ConfigError {
    fn from(e: AddrError) -> Self {
        ConfigError::Addr(e)
    }
}

impl From<UrlError> for ConfigError {
    fn from(e: UrlError) -> Self {
        ConfigError::BadUrl(e)
    }
}

/// Parses `echo,http:8080,qotd`. Two services on one port and protocol is an error.
pub(crate) fn parse_services(list: Option<&str>) -> Result<Vec<ServiceSpec>, ConfigError> {
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

/// The userspace stack's own settings, checked.
struct StackParts {
    addrs: Vec<IpCidr>,
    gateway_v4: Option<Ipv4Address>,
    gateway_v6: Option<Ipv6Address>,
    mac: EthernetAddress,
    time_wait: Duration,
    max_window: Option<usize>,
}

/// `--max-window` bounds: below 4 KiB a window holds under three full segments; above 32 MiB
/// (Linux's default tcp_rmem maximum is 6 MiB) one connection could reserve more than a small
/// machine has.
const MAX_WINDOW_MIN: usize = 4 << 10;
const MAX_WINDOW_MAX: usize = 32 << 20;

/// `65536`, `256K`, `4M` (binary units) as bytes, within the bounds above.
fn parse_window(v: &str) -> Result<usize, ConfigError> {
    let bad = || ConfigError::BadNumber {
        option: "max-window",
        value: v.to_string(),
        why: "bytes per direction and connection, 4K to 32M (K = KiB, M = MiB; e.g. 4M)",
    };
    let t = v.trim();
    let (digits, unit) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1usize << 10),
        Some((i, 'm' | 'M')) => (&t[..i], 1usize << 20),
        _ => (t, 1),
    };
    let n: usize = digits.parse().map_err(|_| bad())?;
    let bytes = n.checked_mul(unit).ok_or_else(bad)?;
    if !(MAX_WINDOW_MIN..=MAX_WINDOW_MAX).contains(&bytes) {
        return Err(bad());
    }
    Ok(bytes)
}

/// The longest `--time-wait`: RFC 9293's MSL of 2 minutes makes 240 s; an hour is far past any
/// sensible value and keeps a typo from holding every 4-tuple for days.
const TIME_WAIT_MAX_SECS: f64 = 3600.0;

impl StackArgs {
    fn validate(&self) -> Result<StackParts, ConfigError> {
        if !self.time_wait.is_finite()
            || self.time_wait <= 0.0
            || self.time_wait > TIME_WAIT_MAX_SECS
        {
            return Err(ConfigError::BadNumber {
                option: "time-wait",
                value: self.time_wait.to_string(),
                why:
                    "seconds of TIME-WAIT (2 x MSL): more than 0 and at most 3600 (Linux holds 60)",
            });
        }
        let time_wait = secs(self.time_wait);
        let addrs = if self.addrs.is_empty() {
            SERVER_ADDRS
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
            return Err(AddrError::BadCidr(format!(
                "{} (at most 3 addresses per interface)",
                self.addrs.join(" ")
            ))
            .into());
        }
        let gateways: Vec<String> = if self.gateways.is_empty() {
            SERVER_GATEWAYS.iter().map(|s| s.to_string()).collect()
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
        let max_window = self.max_window.as_deref().map(parse_window).transpose()?;
        Ok(StackParts {
            addrs,
            gateway_v4,
            gateway_v6,
            mac,
            time_wait,
            max_window,
        })
    }
}

/// What a serving stack offers, checked.
struct ServiceParts {
    services: Vec<ServiceSpec>,
    host: Option<IpAddr>,
    host_port_offset: u16,
    max_connections: usize,
    settings: Settings,
    stdin_exit: bool,
}

impl ServiceArgs {
    fn validate(&self) -> Result<ServiceParts, ConfigError> {
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
        Ok(ServiceParts {
            services,
            host,
            host_port_offset: self.host_port_offset as u16,
            max_connections: self.max_connections,
            settings,
            stdin_exit: self.stdin_exit,
        })
    }

    /// A client's stack serves nothing and opens no host sockets.
    fn none() -> ServiceParts {
        ServiceParts {
            services: Vec::new(),
            host: None,
            host_port_offset: 0,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            settings: Settings::default(),
            stdin_exit: false,
        }
    }
}

impl TraceArgs {
    /// Returns the trace settings and the counters' interval; `device` names the link in packet lines.
    fn validate(&self, device: &str) -> Result<(TraceConfig, Option<Duration>), ConfigError> {
        let stats_interval = match self.stats_interval {
            Some(v) => Some(secs(positive("stats-interval", v, false)?)),
            None => None,
        };
        let trace = TraceConfig {
            pcap: self.pcap.clone(),
            events: self.events.as_deref().map(EventsTarget::from_arg),
            step: self.step,
            ladder: self.ladder,
            narrate_limit: self.narrate_limit,
            device: device.to_string(),
            ..TraceConfig::default()
        };
        Ok((trace, stats_interval))
    }
}

impl FaultArgs {
    fn validate(&self) -> Result<FaultConfig, ConfigError> {
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
        Ok(faults)
    }
}

impl RunArgs {
    /// Puts the checked groups together; `services` is `None` for a client, whose stack serves
    /// nothing. `device` names the link in packet lines.
    fn validate(
        &self,
        device: &str,
        services: Option<&ServiceArgs>,
    ) -> Result<ServeConfig, ConfigError> {
        let stack = self.stack.validate()?;
        let served = match services {
            Some(s) => s.validate()?,
            None => ServiceArgs::none(),
        };
        let (trace, stats_interval) = self.trace.validate(device)?;
        let faults = self.faults.validate()?;
        Ok(ServeConfig {
            tap: device.to_string(),
            addrs: stack.addrs,
            gateway_v4: stack.gateway_v4,
            gateway_v6: stack.gateway_v6,
            mac: stack.mac,
            services: served.services,
            host: served.host,
            host_port_offset: served.host_port_offset,
            max_connections: served.max_connections,
            time_wait: stack.time_wait,
            max_window: stack.max_window,
            settings: served.settings,
            trace,
            faults,
            seed: self.faults.seed,
            stats_interval,
            stdin_exit: served.stdin_exit,
            offload: !faults.is_active(),
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

impl TapArgs {
    /// Checks the device name, then the rest on it.
    fn run_config(
        &self,
        run: &RunArgs,
        services: Option<&ServiceArgs>,
    ) -> Result<ServeConfig, ConfigError> {
        check_tap(&self.tap)?;
        let mut cfg = run.validate(&self.tap, services)?;
        cfg.offload &= !self.no_offload;
        Ok(cfg)
    }
}

impl ServeArgs {
    pub fn validate(&self) -> Result<ServeConfig, ConfigError> {
        self.tap.run_config(&self.run, Some(&self.services))
    }
}

impl ConnectArgs {
    pub fn validate(&self) -> Result<(ServeConfig, SocketAddr), ConfigError> {
        let target = parse_target(&self.target)?;
        let cfg = self.tap.run_config(&self.run, None)?;
        Ok((cfg, target))
    }

    pub fn input(&self) -> Input {
        input(self.send.as_deref())
    }
}

impl GetArgs {
    pub fn validate(&self) -> Result<ServeConfig, ConfigError> {
        let cfg = self.tap.run_config(&self.run, None)?;
        parse_url(&self.url)?;
        Ok(cfg)
    }
}

impl DemoArgs {
    /// The server stack's configuration and what the client stack does.
    pub fn validate(&self) -> Result<(ServeConfig, DemoMode), ConfigError> {
        let target = self.connect.as_deref().map(parse_target).transpose()?;
        let mut cfg = self.run.validate("wire", Some(&self.services))?;
        // The demo always draws its connections.
        cfg.trace.ladder = true;
        let mode = match (target, &self.get) {
            (Some(target), _) => DemoMode::Connect {
                target,
                udp: self.udp,
                input: input(self.send.as_deref()),
            },
            (None, Some(url)) => {
                parse_url(url)?;
                DemoMode::Get(url.clone())
            }
            (None, None) => DemoMode::Tour,
        };
        Ok((cfg, mode))
    }
}

/// `--send TEXT`, or else standard input.
fn input(send: Option<&str>) -> Input {
    match send {
        Some(t) => Input::Fixed(t.as_bytes().to_vec()),
        None => Input::Stdin,
    }
}

impl RelayArgs {
    /// The relay's configuration, checked: the fault chances as for `serve`, and a queue of 1 to
    /// 1,000,000 frames.
    pub(crate) fn validate(&self) -> Result<crate::relay::RelayConfig, ConfigError> {
        if !(1..=1_000_000).contains(&self.queue_frames) {
            return Err(ConfigError::BadNumber {
                option: "queue-frames",
                value: self.queue_frames.to_string(),
                why: "must be 1 to 1000000",
            });
        }
        Ok(crate::relay::RelayConfig {
            a: self.if_a.clone(),
            b: self.if_b.clone(),
            faults: self.faults.validate()?,
            queue_frames: self.queue_frames as usize,
        })
    }
}
