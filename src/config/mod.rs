//! The command line and the validated configuration behind it.
//!
//! clap parses into one small group of options per concern, flattened into the subcommands that use
//! them, so each subcommand's `--help` lists only what it takes. [`Cli::try_parse_checked`] and the
//! `validate` methods turn what the user typed into a [`ServeConfig`] or one typed error ([`CliError`],
//! [`ConfigError`]); deciding the exit status is left to the binary. Nothing here touches the system.

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

pub(crate) use crate::addr::{parse_cidr, parse_mac, AddrError};
use crate::client::{parse_url, Input, UrlError};
use crate::commands::DemoMode;
use crate::device::FaultConfig;
use crate::service::{ServiceKind, Settings};
use crate::status::Proto;
use crate::topology::{SERVER_ADDRS, SERVER_GATEWAYS};
use crate::trace::{EventsTarget, TraceConfig};

/// TCP connections per stack at most, unless `--max-connections` says otherwise.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 1024;

#[derive(Debug, Parser)]
#[command(
    name = "tapstack",
    version,
    about = "One mio loop driving a smoltcp userspace TCP/IP stack and host sockets, every packet shown",
    after_help = "With no command, runs the demo: no root and no TAP device needed."
)]
/// The parsed command line.
pub struct Cli {
    #[command(flatten)]
    /// Logging options every command has.
    pub log: LogArgs,
    #[command(subcommand)]
    /// The subcommand (none: the demo).
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
    /// Read a capture file (pcap or pcapng; Ethernet, Linux cooked or raw IP) and show it as the live
    /// tool shows its own traffic: packet lines, labels, narration inferred from the frames, ladders.
    Read(Box<ReadArgs>),
    /// Relay frames between two TAP devices with delay, loss, duplication, reordering (a userspace netem).
    Relay(Box<RelayArgs>),
    /// Explain an IP address, a port, or ADDR:PORT.
    Explain {
        /// `192.168.1.2`, `192.168.1.2:8080`, `8080`, `[fe80::1]:22`
        what: String,
    },
}

/// What every command takes, before or after its name.
#[derive(Debug, Clone, Copy, Args)]
pub struct LogArgs {
    /// Hide packet lines (narration and errors stay).
    #[arg(short, long, global = true, display_order = 900)]
    pub quiet: bool,
    /// Absolute TCP sequence numbers in packet lines.
    #[arg(short, long, global = true, display_order = 900)]
    pub verbose: bool,
}

/// The userspace stack's place on its link.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Userspace stack")]
pub struct StackArgs {
    /// Address of the userspace stack, CIDR; repeatable.
    #[arg(long = "addr", value_name = "CIDR")]
    pub addrs: Vec<String>,
    /// Default gateway; repeatable, one per IP version.
    #[arg(long = "gateway", value_name = "IP")]
    pub gateways: Vec<String>,
    /// MAC address of the userspace stack.
    #[arg(long, default_value = crate::topology::SERVER_MAC)]
    pub mac: String,
    /// How long a TCP connection that closed first is held in TIME-WAIT (2 x MSL), seconds.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 60.0,
        allow_negative_numbers = true
    )]
    pub time_wait: f64,
    /// The largest TCP window, per direction and connection, in bytes (K and M suffixes: KiB, MiB).
    /// Memory follows use: a buffer's pages are taken only as data fills it, so an idle connection
    /// costs a page, a bulk one up to this; a served connection's windows start at 64K (256K where
    /// the TAP offloads segmentation) and grow only as its traffic uses them, so a peer that stops
    /// reading holds the starting size. Default 4M on a TAP, 64K on the demo's in-memory wire.
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true)]
    pub max_window: Option<String>,
}

/// What a serving stack offers, on both transports.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Services")]
pub struct ServiceArgs {
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
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS, allow_negative_numbers = true)]
    pub max_connections: usize,
    /// The qotd message (at most 512 bytes).
    #[arg(long)]
    pub message: Option<String>,
    /// HTTP idle timeout, seconds.
    #[arg(long, default_value_t = 30.0, allow_negative_numbers = true)]
    pub idle_timeout: f64,
    /// Exit when standard input closes (for harnesses in other languages).
    #[arg(long)]
    pub stdin_exit: bool,
}

/// What the loop shows of its traffic, and where.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Tracing")]
pub struct TraceArgs {
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
}

/// Trouble injected on the link, reproducibly.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Fault injection")]
pub struct FaultArgs {
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
}

/// The TAP device under the userspace stack.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "TAP device")]
pub struct TapArgs {
    /// TAP device to attach to (create it with tap-setup.sh).
    #[arg(long, default_value = "tap0")]
    pub tap: String,
    /// No checksum and segmentation offload, so every frame is one a real Ethernet would carry
    /// (the trace then shows 1514-byte frames instead of 64 KiB segments; slower).
    #[arg(long)]
    pub no_offload: bool,
}

/// What every command that runs the userspace stack takes: its addresses, what is shown of its traffic,
/// and what goes wrong on its link.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub trace: TraceArgs,
    #[command(flatten)]
    pub faults: FaultArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub tap: TapArgs,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub services: ServiceArgs,
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
    /// The server stack's.
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub services: ServiceArgs,
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
    #[command(flatten)]
    pub tap: TapArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// `http://ADDRESS[:PORT]/PATH` (an IP address: the userspace stack has no DNS).
    pub url: String,
    #[command(flatten)]
    pub tap: TapArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `tapstack read FILE`: what is shown of a capture, and where.
#[derive(Debug, Clone, Args)]
pub struct ReadArgs {
    /// The capture file: pcap or pcapng (`tcpdump -w`, Wireshark, `tapstack --pcap`).
    pub file: PathBuf,
    /// Write the frames again to this file (pcapng, with packet lines as comments, if it ends in
    /// .pcapng).
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Write JSON-lines events here (`-` = standard output).
    #[arg(long, value_name = "FILE")]
    pub events: Option<String>,
    /// Wait for Enter after each packet line (`c` continue, `q` quit).
    #[arg(long)]
    pub step: bool,
    /// Draw a ladder diagram of each TCP connection when it closes (and of those still open at the
    /// end of the file).
    #[arg(long)]
    pub ladder: bool,
}

impl ReadArgs {
    /// The tracer's settings for reading (the device name comes from the file).
    pub(crate) fn trace_config(&self, log: LogArgs) -> TraceConfig {
        TraceConfig {
            absolute_seq: log.verbose,
            quiet: log.quiet,
            pcap: self.pcap.clone(),
            events: self.events.as_deref().map(EventsTarget::from_arg),
            step: self.step,
            ladder: self.ladder,
            ..TraceConfig::default()
        }
    }
}

/// `tapstack relay`: a userspace netem between two TAP devices.
#[derive(Debug, Clone, Args)]
#[command(after_help = RELAY_HELP)]
pub struct RelayArgs {
    /// The first TAP device: it must exist (`ip tuntap add dev IF_A mode tap`), be up, and be a port
    /// of the Linux bridge that holds the interface on side A.
    #[arg(value_name = "IF_A")]
    pub if_a: String,
    /// The second TAP device, likewise for side B.
    #[arg(value_name = "IF_B")]
    pub if_b: String,
    /// Frames held at most per direction (delayed or reordered); a frame beyond is dropped and
    /// counted as queue overflow, like a router's full buffer.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 8192,
        allow_negative_numbers = true
    )]
    pub queue_frames: i64,
    #[command(flatten)]
    pub faults: FaultArgs,
}

const RELAY_HELP: &str = "\
Frames read from IF_A are written to IF_B and the other way round; each direction gets the faults
on its own, with its own seed derived from --seed (the same seed, the same faults). The devices are
opened without offloads, so the kernel cuts large (GSO/TSO) segments into wire-sized frames before
the relay sees them. A setup, side A a client's veth end `vc`, side B a server's `vs`:
  ip tuntap add dev ra mode tap; ip tuntap add dev rb mode tap
  ip link add br-a type bridge; ip link set ra master br-a; ip link set vc master br-a
  ip link add br-b type bridge; ip link set rb master br-b; ip link set vs master br-b
  ip link set ra up; ip link set rb up; ip link set br-a up; ip link set br-b up; ...
  tapstack relay ra rb --latency-ms 5 --drop-chance 0.01 --seed 1
On SIGINT or SIGTERM it exits with one line per direction: frames in and out, dropped, duplicated,
reordered, corrupted, delayed, queue overflow, oversize, refused by the device, largest frame, and
how late frames left after their due time (mean, max).
SIGUSR1 prints those lines without stopping.";

/// Why the command line could not be parsed.
#[derive(Debug)]
pub enum CliError {
    /// `--help`, `--version`, or help shown for a missing subcommand: not a mistake in itself. The
    /// caller prints it with [`clap::Error::print`] and exits with its [`clap::Error::exit_code`].
    Help(clap::Error),
    /// clap's own complaint, first line only: the usage block it appends would bury it.
    Parse(String),
    /// A demo option given before a subcommand (`tapstack --seed 3 serve`): it would be silently
    /// ignored.
    Misplaced {
        /// The option.
        option: String,
        /// The subcommand it came before.
        subcommand: String,
    },
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Help(e) => write!(f, "{e}"),
            CliError::Parse(first) => write!(f, "{first} (see tapstack --help)"),
            CliError::Misplaced { option, subcommand } => write!(
                f,
                "'--{option}' belongs after the subcommand: `tapstack {subcommand} --{option} ...` (see tapstack --help)"
            ),
        }
    }
}

impl std::error::Error for CliError {}

impl CliError {
    fn parse(e: &clap::Error) -> CliError {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("invalid arguments").trim();
        CliError::Parse(first.strip_prefix("error: ").unwrap_or(first).to_string())
    }
}

impl Cli {
    /// Parses a command line (the program name first), refusing demo options given before a
    /// subcommand.
    pub fn try_parse_checked<I, T>(args: I) -> Result<Cli, CliError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        use clap::error::ErrorKind;
        use clap::{CommandFactory, FromArgMatches};
        let cmd = Cli::command();
        let matches = cmd
            .clone()
            .try_get_matches_from(args)
            .map_err(|e| match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => CliError::Help(e),
                _ => CliError::parse(&e),
            })?;
        if let Some((sub, _)) = matches.subcommand() {
            // Only the demo's own options: global ones belong anywhere, and groups are no options.
            let misplaced = cmd
                .get_arguments()
                .filter(|a| !a.is_global_set())
                .map(|a| a.get_id().as_str())
                .find(|&id| {
                    matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
                });
            if let Some(id) = misplaced {
                return Err(CliError::Misplaced {
                    option: id.replace('_', "-"),
                    subcommand: sub.to_string(),
                });
            }
        }
        Cli::from_arg_matches(&matches).map_err(|e| CliError::parse(&e))
    }
}

mod validate;

pub(crate) use validate::{ConfigError, ServeConfig};

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{EthernetAddress, Ipv4Address};

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
    fn test_time_wait_is_checked() {
        assert_eq!(
            serve(&[]).unwrap().time_wait,
            smoltcp::time::Duration::from_secs(60)
        );
        assert_eq!(
            serve(&["--time-wait", "1.5"]).unwrap().time_wait,
            smoltcp::time::Duration::from_millis(1500)
        );
        for bad in ["0", "-1", "3601", "NaN", "inf"] {
            let e = serve(&["--time-wait", bad]).unwrap_err();
            assert!(
                e.contains("time-wait") && e.contains("2 x MSL"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn test_max_window_takes_binary_units_and_is_bounded() {
        assert_eq!(serve(&[]).unwrap().max_window, None);
        for (v, bytes) in [
            ("65536", 65536),
            ("256K", 256 << 10),
            ("4M", 4 << 20),
            ("32m", 32 << 20),
        ] {
            assert_eq!(
                serve(&["--max-window", v]).unwrap().max_window,
                Some(bytes),
                "{v}"
            );
        }
        for bad in [
            "4095",
            "33M",
            "0",
            "-1",
            "4G",
            "x",
            "",
            "99999999999999999999M",
        ] {
            let e = serve(&["--max-window", bad]).unwrap_err();
            assert!(
                e.contains("max-window") && e.contains("4K to 32M"),
                "{bad}: {e}"
            );
        }
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
        let (c, _) = cli.demo.validate().unwrap();
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

    /// The long options `tapstack ARGS --help` lists.
    fn help_options(args: &[&str]) -> Vec<String> {
        let mut v = vec!["tapstack"];
        v.extend_from_slice(args);
        v.push("--help");
        let Err(CliError::Help(e)) = Cli::try_parse_checked(v) else {
            panic!("{args:?}: no help")
        };
        e.to_string()
            .split_whitespace()
            .filter(|w| w.starts_with("--"))
            .map(|w| w.trim_end_matches([',', '.', ')']).to_string())
            .collect()
    }

    #[test]
    fn test_each_help_lists_its_own_options() {
        let connect = help_options(&["connect"]);
        for other in [
            "--serve",
            "--max-connections",
            "--message",
            "--no-host",
            "--exit",
            "--get",
        ] {
            assert!(!connect.iter().any(|o| o == other), "connect lists {other}");
        }
        assert!(connect.iter().any(|o| o == "--udp"));
        let get = help_options(&["get"]);
        for other in [
            "--serve",
            "--max-connections",
            "--message",
            "--udp",
            "--send",
        ] {
            assert!(!get.iter().any(|o| o == other), "get lists {other}");
        }
        let serve = help_options(&["serve"]);
        for own in [
            "--max-connections",
            "--serve",
            "--message",
            "--tap",
            "--quiet",
        ] {
            assert!(serve.iter().any(|o| o == own), "serve lacks {own}");
        }
        for other in ["--exit", "--connect", "--udp", "--send", "--get"] {
            assert!(!serve.iter().any(|o| o == other), "serve lists {other}");
        }
        let demo = help_options(&["demo"]);
        assert!(demo.iter().any(|o| o == "--exit"));
        assert!(!demo.iter().any(|o| o == "--tap"), "the demo has no TAP");
        let explain = help_options(&["explain"]);
        assert!(
            explain
                .iter()
                .all(|o| o == "--quiet" || o == "--verbose" || o == "--help"),
            "{explain:?}"
        );
        // Bare `tapstack` is the demo.
        assert!(help_options(&[]).iter().any(|o| o == "--exit"));
        let read = help_options(&["read"]);
        for own in ["--pcap", "--events", "--step", "--ladder", "--quiet"] {
            assert!(read.iter().any(|o| o == own), "read lacks {own}");
        }
        for other in [
            "--seed",
            "--tap",
            "--serve",
            "--drop-chance",
            "--narrate-limit",
        ] {
            assert!(!read.iter().any(|o| o == other), "read lists {other}");
        }
    }

    #[test]
    fn test_demo_option_before_subcommand_is_refused() {
        let e = Cli::try_parse_checked(["tapstack", "--seed", "3", "serve"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "'--seed' belongs after the subcommand: `tapstack serve --seed ...` (see tapstack --help)"
        );
        assert!(Cli::try_parse_checked(["tapstack", "-q", "serve"]).is_ok());
    }

    #[test]
    fn test_parse_error_is_its_first_line() {
        let e = Cli::try_parse_checked(["tapstack", "serve", "--bogus"]).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, CliError::Parse(_)), "{e:?}");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.ends_with("(see tapstack --help)"), "{text}");
    }

    #[test]
    fn test_demo_modes() {
        let cli =
            Cli::try_parse_from(["tapstack", "--connect", "192.168.69.1:7", "--udp"]).unwrap();
        let (_, mode) = cli.demo.validate().unwrap();
        assert!(matches!(
            mode,
            DemoMode::Connect {
                udp: true,
                input: Input::Stdin,
                ..
            }
        ));
        let cli = Cli::try_parse_from(["tapstack", "demo", "--get", "ftp://x/"]).unwrap();
        let Some(Command::Demo(a)) = cli.command else {
            panic!("demo")
        };
        assert!(matches!(a.validate(), Err(ConfigError::BadUrl(_))));
    }

    #[test]
    fn test_relay_takes_two_devices_and_fault_options() {
        let Some(Command::Relay(r)) = Cli::try_parse_checked([
            "tapstack",
            "relay",
            "ra",
            "rb",
            "--latency-ms",
            "5",
            "--drop-chance",
            "0.01",
            "--seed",
            "1",
        ])
        .unwrap()
        .command
        else {
            panic!("relay")
        };
        let c = r.validate().unwrap();
        assert_eq!((c.a.as_str(), c.b.as_str()), ("ra", "rb"));
        assert_eq!(c.faults.latency.total_micros(), 5000);
        assert_eq!((c.faults.drop, c.faults.seed), (0.01, 1));
        assert_eq!(c.queue_frames, 8192);
        let Some(Command::Relay(r)) =
            Cli::try_parse_checked(["tapstack", "relay", "ra", "rb", "--queue-frames", "0"])
                .unwrap()
                .command
        else {
            panic!("relay")
        };
        assert!(r
            .validate()
            .unwrap_err()
            .to_string()
            .contains("queue-frames"));
        assert!(Cli::try_parse_checked(["tapstack", "relay", "ra"]).is_err());
    }
}
