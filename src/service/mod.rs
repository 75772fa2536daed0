//! Sans-IO services: state machines that take bytes and time in and hand bytes out.
//!
//! A service never sees a socket. The host transport ([`crate::host`]) and the smoltcp transport
//! ([`crate::stack`]) drive the very same objects, and unit tests drive them by hand on a fake clock.
//!
//! A stream session is driven like this, every time its connection may have changed ([`driver`] does it
//! once for both transports):
//! 1. `handle_input` with whatever the transport has received; the session consumes what it can hold and
//!    returns how much. Unconsumed bytes stay in the transport's receive buffer, so a full session closes
//!    the TCP window instead of buffering without bound (backpressure).
//! 2. `handle_eof` once, when the peer has sent FIN.
//! 3. `poll_output` into the transport's send buffer, as long as there is room and output.
//! 4. `handle_timeout` when the time from `poll_timeout` has come.
//! 5. When `is_finished` and the output is flushed, the transport closes (FIN). From then on the session
//!    is left alone; what still arrives is read and thrown away.

use smoltcp::time::Instant;
use std::net::SocketAddr;
use std::time::SystemTime;

use crate::status::{Proto, Status};

pub(crate) mod chargen;
pub(crate) mod daytime;
pub(crate) mod discard;
pub(crate) mod driver;
pub(crate) mod echo;
pub(crate) mod fixed;
pub(crate) mod http;
pub(crate) mod qotd;
pub(crate) mod time;

/// Read access to what the tracer recorded, for the pages that draw it (`/conn/ID`, `/live`).
pub trait TraceView {
    /// The SVG ladder diagram of connection `id` (live or recently closed), if it is known.
    fn conn_svg(&self, id: u64) -> Option<String>;
    /// Packets recorded after packet number `since`, as a JSON document for `/live`.
    fn live_json(&self, since: u64) -> Vec<u8>;
    /// Connections that have a diagram: id and a one-line title, newest first.
    fn ladder_links(&self) -> Vec<(u64, String)>;
}

/// What a session may know of the world: the time, and the read-only status model.
pub struct Context<'a> {
    /// Monotonic time (from the loop's clock, real or virtual).
    pub now: Instant,
    /// Wall-clock time matching `now` (fixed epoch under the virtual clock).
    pub wall: SystemTime,
    /// The status read-model (the HTTP pages show it).
    pub status: &'a Status,
    /// Configuration the services share.
    pub settings: &'a Settings,
    /// The userspace stack's tracer, where there is one.
    pub trace: Option<&'a dyn TraceView>,
}

/// Service settings from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The qotd message (at most 512 bytes, checked by the config).
    pub message: String,
    /// HTTP idle timeout.
    pub idle_timeout: smoltcp::time::Duration,
    /// HTTP: the slowest average rate (bytes per second) a request body may arrive at, after a grace
    /// of one idle timeout from its head (mod_reqtimeout's `body=...,MinRate=500`); 0: no bound.
    pub body_min_rate: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            message: DEFAULT_QOTD.to_string(),
            idle_timeout: smoltcp::time::Duration::from_secs(30),
            body_min_rate: 500,
        }
    }
}

pub(crate) const DEFAULT_QOTD: &str =
    "Hello from tapstack's qotd service (RFC 865): every packet of this greeting is in the log.\r\n";

/// A TCP session of a service: one per connection.
///
/// Only `is_finished` must be written: by default a session ignores input (consumes all of it, so the
/// peer's window stays open), says nothing, and wants no timer.
pub trait StreamSession {
    /// Offers received bytes; returns how many were consumed (0 = full, try again after output drains).
    fn handle_input(&mut self, _cx: &Context, input: &[u8]) -> usize {
        input.len()
    }
    /// The peer will send nothing more (FIN received).
    fn handle_eof(&mut self, _cx: &Context) {}
    /// Writes pending output into `out`; returns the number of bytes written (0 = nothing now).
    fn poll_output(&mut self, _cx: &Context, _out: &mut [u8]) -> usize {
        0
    }
    /// When `handle_timeout` wants to be called next.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    /// Its timer (see `poll_timeout`) fell due.
    fn handle_timeout(&mut self, _cx: &Context) {}
    /// No more output will come: the transport closes once what was written is flushed.
    fn is_finished(&self) -> bool;
}

/// A UDP reply is never larger than this (RFC 864 and friends; no amplification), except echo's.
pub(crate) const UDP_REPLY_MAX: usize = 512;

/// A UDP service: one request datagram in, at most one reply out.
pub trait DatagramService {
    /// Writes the reply to `request` into `out` and returns its length, or `None` for no reply.
    /// `out` is sized by the transport so that a reply is never an amplification risk beyond 512 bytes.
    fn handle_datagram(
        &mut self,
        cx: &Context,
        from: SocketAddr,
        request: &[u8],
        out: &mut [u8],
    ) -> Option<usize>;
}

/// The services tapstack knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKind {
    /// Echo (RFC 862), port 7.
    Echo,
    /// Discard (RFC 863), port 9.
    Discard,
    /// Daytime (RFC 867), port 13.
    Daytime,
    /// Quote of the day (RFC 865), port 17.
    Qotd,
    /// Character generator (RFC 864), port 19.
    Chargen,
    /// Time (RFC 868), port 37.
    Time,
    /// HTTP/1.1 with the status pages, port 80.
    Http,
}

impl ServiceKind {
    /// Every service, in port order.
    pub const ALL: [ServiceKind; 7] = [
        ServiceKind::Echo,
        ServiceKind::Discard,
        ServiceKind::Daytime,
        ServiceKind::Qotd,
        ServiceKind::Chargen,
        ServiceKind::Time,
        ServiceKind::Http,
    ];

    /// Its name, as `--serve` takes it.
    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Echo => "echo",
            ServiceKind::Discard => "discard",
            ServiceKind::Daytime => "daytime",
            ServiceKind::Qotd => "qotd",
            ServiceKind::Chargen => "chargen",
            ServiceKind::Time => "time",
            ServiceKind::Http => "http",
        }
    }

    /// The service of this name (`echo`, `http`...).
    pub fn from_name(name: &str) -> Option<ServiceKind> {
        ServiceKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The well-known port (RFC 862, 863, 867, 865, 864, 868; 80 for HTTP).
    pub fn default_port(self) -> u16 {
        match self {
            ServiceKind::Echo => 7,
            ServiceKind::Discard => 9,
            ServiceKind::Daytime => 13,
            ServiceKind::Qotd => 17,
            ServiceKind::Chargen => 19,
            ServiceKind::Time => 37,
            ServiceKind::Http => 80,
        }
    }

    /// The transports it runs on.
    pub fn protocols(self) -> &'static [Proto] {
        match self {
            ServiceKind::Http => &[Proto::Tcp],
            _ => &[Proto::Tcp, Proto::Udp],
        }
    }

    /// A session for a new TCP connection.
    pub fn new_stream(self, cx: &Context) -> Box<dyn StreamSession> {
        match self {
            ServiceKind::Echo => Box::new(echo::EchoSession::new()),
            ServiceKind::Discard => Box::new(discard::DiscardSession::new(cx)),
            ServiceKind::Daytime => Box::new(daytime::session(cx)),
            ServiceKind::Qotd => Box::new(qotd::session(cx)),
            ServiceKind::Chargen => Box::new(chargen::ChargenSession::new(cx)),
            ServiceKind::Time => Box::new(time::session(cx)),
            ServiceKind::Http => Box::new(http::HttpSession::new(cx)),
        }
    }

    /// How long a UDP reply to a `request_len`-byte request may be, in a buffer of `buf_len`: echo
    /// mirrors the request (a reply no larger than the request amplifies nothing); every other service
    /// answers at most 512 bytes (RFC 864 and friends), whatever it is asked.
    pub fn udp_reply_cap(self, request_len: usize, buf_len: usize) -> usize {
        let cap = match self {
            ServiceKind::Echo => request_len,
            _ => UDP_REPLY_MAX,
        };
        cap.min(buf_len)
    }

    /// The datagram side of the service, or `None` for TCP-only services.
    pub fn new_datagram(self) -> Option<Box<dyn DatagramService>> {
        match self {
            ServiceKind::Echo => Some(Box::new(echo::EchoDatagram)),
            ServiceKind::Discard => Some(Box::new(discard::DiscardDatagram::new())),
            ServiceKind::Daytime => Some(Box::new(daytime::DaytimeDatagram::new())),
            ServiceKind::Qotd => Some(Box::new(qotd::QotdDatagram::new())),
            ServiceKind::Chargen => Some(Box::new(chargen::ChargenDatagram::new())),
            ServiceKind::Time => Some(Box::new(time::TimeDatagram::new())),
            ServiceKind::Http => None,
        }
    }
}

impl std::fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a UDP peer address must never be answered: broadcast, multicast or unspecified sources are
/// how reflection attacks start.
pub(crate) fn udp_source_unanswerable(a: smoltcp::wire::IpAddress) -> bool {
    match a {
        smoltcp::wire::IpAddress::Ipv4(v4) => {
            v4.is_broadcast() || v4.is_multicast() || v4.is_unspecified()
        }
        smoltcp::wire::IpAddress::Ipv6(v6) => v6.is_multicast() || v6.is_unspecified(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_udp_reply_cap_echo_mirrors_others_512() {
        assert_eq!(ServiceKind::Echo.udp_reply_cap(1400, 65_536), 1400);
        assert_eq!(ServiceKind::Echo.udp_reply_cap(0, 65_536), 0);
        assert_eq!(ServiceKind::Echo.udp_reply_cap(1400, 1000), 1000);
        assert_eq!(ServiceKind::Chargen.udp_reply_cap(0, 65_536), UDP_REPLY_MAX);
        assert_eq!(ServiceKind::Qotd.udp_reply_cap(9000, 65_536), UDP_REPLY_MAX);
        assert_eq!(ServiceKind::Daytime.udp_reply_cap(1, 100), 100);
    }

    #[test]
    fn test_udp_reflection_sources_are_refused() {
        assert!(udp_source_unanswerable(smoltcp::wire::IpAddress::Ipv4(
            smoltcp::wire::Ipv4Address::BROADCAST
        )));
        assert!(udp_source_unanswerable(smoltcp::wire::IpAddress::Ipv4(
            smoltcp::wire::Ipv4Address::new(224, 0, 0, 1)
        )));
        assert!(udp_source_unanswerable(smoltcp::wire::IpAddress::Ipv4(
            smoltcp::wire::Ipv4Address::UNSPECIFIED
        )));
        assert!(!udp_source_unanswerable(smoltcp::wire::IpAddress::Ipv4(
            smoltcp::wire::Ipv4Address::new(192, 168, 69, 100)
        )));
    }
}

/// Test helpers: a context on a fake clock and a driver that runs a session the way a transport does.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub(crate) fn settings() -> Settings {
        Settings::default()
    }

    pub(crate) fn cx<'a>(now_ms: i64, status: &'a Status, settings: &'a Settings) -> Context<'a> {
        Context {
            now: Instant::from_millis(now_ms),
            wall: std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(crate::clock::VIRTUAL_EPOCH_UNIX_SECS)
                + std::time::Duration::from_millis(now_ms as u64),
            status,
            settings,
            trace: None,
        }
    }

    /// Collects all output a session has now, in chunks of at most `chunk` bytes.
    pub(crate) fn drain(
        s: &mut dyn StreamSession,
        cx: &Context,
        chunk: usize,
        limit: usize,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = s.poll_output(cx, &mut buf);
            if n == 0 || out.len() >= limit {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }
}
