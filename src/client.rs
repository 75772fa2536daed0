//! Client-side apps that run on the loop over a userspace stack: the demo's guided tour, `connect`
//! (a smoltcp TCP/UDP client, like a tiny netcat) and `get` (HTTP/1.1 GET).
//!
//! All of them are built from [`TcpExchange`]: one TCP conversation driven from the client side,
//! polled with the time and the stack, no I/O of its own.

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress, IpEndpoint};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use crate::reactor::App;
use crate::reactor::TracedStack;
use crate::service::http::{self, ChunkedDecoder, ChunkedStep};
use crate::service::ServiceKind;
use crate::stack::TcpHandle;

/// How long a handshake may take before the connection counts as timed out.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Open,
    Done,
    Failed(String),
}

/// One TCP conversation from the client side: connect, send, receive, close.
pub struct TcpExchange {
    pub remote: SocketAddr,
    handle: Option<TcpHandle>,
    outgoing: Vec<u8>,
    sent: usize,
    /// No more data will be queued: close (FIN) once everything is sent.
    pub input_done: bool,
    /// Bytes received and not yet taken.
    received: Vec<u8>,
    pub total_received: usize,
    /// Close after receiving this many bytes (chargen).
    pub read_limit: Option<usize>,
    pub phase: Phase,
    started: Option<Instant>,
    pub established_at: Option<Instant>,
    closing: bool,
}

impl TcpExchange {
    pub fn new(remote: SocketAddr) -> Self {
        TcpExchange {
            remote,
            handle: None,
            outgoing: Vec::new(),
            sent: 0,
            input_done: false,
            received: Vec::new(),
            total_received: 0,
            read_limit: None,
            phase: Phase::Connecting,
            started: None,
            established_at: None,
            closing: false,
        }
    }

    /// Queues bytes to send.
    pub fn send(&mut self, data: &[u8]) {
        self.outgoing.extend_from_slice(data);
    }

    /// Takes what has been received so far.
    pub fn take_received(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.received)
    }

    pub fn received(&self) -> &[u8] {
        &self.received
    }

    pub fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Done | Phase::Failed(_))
    }

    pub fn poll_at(&self) -> Option<Instant> {
        match (&self.phase, self.started) {
            (Phase::Connecting, Some(t)) => Some(t + CONNECT_TIMEOUT),
            _ => None,
        }
    }

    fn fail(&mut self, stack: &mut TracedStack, why: String) {
        if let Some(h) = self.handle.take() {
            stack.tcp_abort(h);
        }
        self.phase = Phase::Failed(why);
    }

    /// Moves the conversation forward; returns whether anything happened.
    pub fn poll(&mut self, now: Instant, stack: &mut TracedStack) -> bool {
        if self.is_over() {
            return false;
        }
        let h = match self.handle {
            Some(h) => h,
            None => match stack.tcp_connect(self.remote) {
                Ok(h) => {
                    self.handle = Some(h);
                    self.started = Some(now);
                    return true;
                }
                Err(e) => {
                    self.phase = Phase::Failed(format!("cannot connect to {}: {e}", self.remote));
                    return true;
                }
            },
        };
        let mut progress = false;
        let sock = match stack.tcp(h) {
            Ok(s) => s,
            Err(e) => {
                self.handle = None;
                self.phase = Phase::Failed(e.to_string());
                return true;
            }
        };
        let state = sock.state();
        if self.phase == Phase::Connecting {
            if sock.may_send() || state == tcp::State::CloseWait {
                self.phase = Phase::Open;
                self.established_at = Some(now);
                progress = true;
            } else if state == tcp::State::Closed {
                self.fail(
                    stack,
                    format!(
                        "connection to {} refused (the peer answered with RST)",
                        self.remote
                    ),
                );
                return true;
            } else if self.started.is_some_and(|t| now >= t + CONNECT_TIMEOUT) {
                self.fail(
                    stack,
                    format!(
                        "connection to {} timed out after {} s",
                        self.remote,
                        CONNECT_TIMEOUT.secs()
                    ),
                );
                return true;
            } else {
                return false;
            }
        }
        let sock = match stack.tcp(h) {
            Ok(s) => s,
            Err(e) => {
                self.handle = None;
                self.phase = Phase::Failed(e.to_string());
                return true;
            }
        };
        while sock.can_send() && self.sent < self.outgoing.len() {
            match sock.send_slice(&self.outgoing[self.sent..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.sent += n;
                    progress = true;
                }
            }
        }
        if self.sent == self.outgoing.len() && self.sent > 0 {
            self.outgoing.clear();
            self.sent = 0;
        }
        let mut buf = [0u8; 4096];
        while sock.can_recv() {
            match sock.recv_slice(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.received.extend_from_slice(&buf[..n]);
                    self.total_received += n;
                    progress = true;
                }
            }
        }
        let read_enough = self.read_limit.is_some_and(|l| self.total_received >= l);
        if read_enough && !self.closing {
            // Like a kernel closing a socket with data still unread: hang up with RST, rather than
            // wait for everything the server queued to arrive first.
            sock.abort();
            self.handle = None;
            stack.tcp_release(h);
            self.phase = Phase::Done;
            return true;
        }
        let all_sent = self.outgoing.is_empty();
        let peer_done = !sock.may_recv() && sock.state() != tcp::State::SynSent;
        if !self.closing && all_sent && (self.input_done || peer_done) {
            sock.close();
            self.closing = true;
            progress = true;
        }
        match sock.state() {
            tcp::State::Closed | tcp::State::TimeWait => {
                // Over for us; the stack keeps the socket until TIME-WAIT ends and the last ACK is out.
                self.handle = None;
                stack.tcp_release(h);
                self.phase = Phase::Done;
                progress = true;
            }
            _ => {}
        }
        progress
    }
}

/// An ICMPv4 echo: send requests until one is answered.
struct Ping {
    target: IpAddr,
    handle: Option<SocketHandle>,
    ident: u16,
    seq: u16,
    count: u16,
    answered: u16,
    next_send: Instant,
    rtts: Vec<Duration>,
    sent_at: Vec<(u16, Instant)>,
}

/// A UDP request/reply with retries.
struct UdpAsk {
    target: SocketAddr,
    payload: Vec<u8>,
    handle: Option<SocketHandle>,
    tries: u32,
    next_send: Instant,
    reply: Option<Vec<u8>>,
}

enum Step {
    Ping(Ping),
    Tcp { kind: ServiceKind, ex: TcpExchange },
    Udp { kind: ServiceKind, ask: UdpAsk },
}

struct StepRecord {
    title: String,
    result: Result<String, String>,
    took: Duration,
}

/// Gives up on a step after this long (virtual or real time).
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
const UDP_RETRY: Duration = Duration::from_secs(1);
const UDP_TRIES: u32 = 10;

/// The demo's guided tour: ARP and ping, a TCP echo, each selected service, UDP echo, an HTTP GET.
pub struct Tour {
    steps: Vec<(String, String, Step)>,
    idx: usize,
    step_started: Option<Instant>,
    records: Vec<StepRecord>,
    outcome: Option<Result<(), String>>,
    started: Option<Instant>,
}

fn printable(b: &[u8], max: usize) -> String {
    let s: String = String::from_utf8_lossy(&b[..b.len().min(max)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let s = s.trim().to_string();
    if b.len() > max {
        format!("{s}...")
    } else {
        s
    }
}

impl Tour {
    /// A tour of `services` (with their ports) on the server at `server`.
    pub fn new(server: IpAddr, services: &[(ServiceKind, u16)]) -> Tour {
        let mut steps = Vec::new();
        steps.push((
            format!("ping {server}"),
            "first the client must learn the server's MAC address: watch the ARP who-has and is-at, then three ICMP echo requests and replies".to_string(),
            Step::Ping(Ping {
                target: server,
                handle: None,
                ident: 0x7461,
                seq: 0,
                count: 3,
                answered: 0,
                next_send: Instant::ZERO,
                rtts: Vec::new(),
                sent_at: Vec::new(),
            }),
        ));
        let port_of = |k: ServiceKind| services.iter().find(|(s, _)| *s == k).map(|(_, p)| *p);
        if let Some(p) = port_of(ServiceKind::Echo) {
            let mut ex = TcpExchange::new(SocketAddr::new(server, p));
            ex.send(b"Hello, tapstack!\r\n");
            ex.input_done = true;
            steps.push((
                format!("TCP echo on port {p}"),
                "the three-way handshake (SYN, SYN-ACK, ACK), our greeting and its echo, then a FIN from each side".to_string(),
                Step::Tcp { kind: ServiceKind::Echo, ex },
            ));
        }
        for &(kind, p) in services {
            let (send, limit, why): (&[u8], Option<usize>, &str) = match kind {
                ServiceKind::Echo | ServiceKind::Http => continue,
                ServiceKind::Discard => (
                    b"this line goes nowhere\r\n",
                    None,
                    "the server reads and throws away; it never answers",
                ),
                ServiceKind::Daytime => (
                    b"",
                    None,
                    "the server sends one line with the date and closes first",
                ),
                ServiceKind::Qotd => (b"", None, "the server sends its message and closes first"),
                ServiceKind::Chargen => (
                    b"",
                    Some(148),
                    "the server streams lines of characters for as long as we read; we read two and hang up (RST, as a kernel does when unread data is left)",
                ),
                ServiceKind::Time => (
                    b"",
                    None,
                    "the server sends four bytes: seconds since 1900, then closes",
                ),
            };
            let mut ex = TcpExchange::new(SocketAddr::new(server, p));
            ex.send(send);
            ex.read_limit = limit;
            // Services that talk first close first; for the others we close when done sending.
            ex.input_done = matches!(kind, ServiceKind::Discard);
            steps.push((
                format!("TCP {kind} on port {p}"),
                why.to_string(),
                Step::Tcp { kind, ex },
            ));
        }
        if let Some(p) = port_of(ServiceKind::Echo) {
            steps.push((
                format!("UDP echo on port {p}"),
                "no handshake and no connection: one datagram there, one back".to_string(),
                Step::Udp {
                    kind: ServiceKind::Echo,
                    ask: UdpAsk {
                        target: SocketAddr::new(server, p),
                        payload: b"Hello over UDP".to_vec(),
                        handle: None,
                        tries: 0,
                        next_send: Instant::ZERO,
                        reply: None,
                    },
                },
            ));
        }
        if let Some(p) = port_of(ServiceKind::Http) {
            let mut ex = TcpExchange::new(SocketAddr::new(server, p));
            let host = match server {
                IpAddr::V4(a) => a.to_string(),
                IpAddr::V6(a) => format!("[{a}]"),
            };
            ex.send(format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tapstack-demo\r\nConnection: close\r\n\r\n").as_bytes());
            steps.push((
                format!("HTTP GET / on port {p}"),
                "a request, the status page as the answer, and the server closes (Connection: close)".to_string(),
                Step::Tcp { kind: ServiceKind::Http, ex },
            ));
        }
        Tour {
            steps,
            idx: 0,
            step_started: None,
            records: Vec::new(),
            outcome: None,
            started: None,
        }
    }

    fn describe(kind: ServiceKind, data: &[u8]) -> String {
        match kind {
            ServiceKind::Time if data.len() == 4 => {
                let secs = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                format!(
                    "{secs} seconds since 1900 (unix time {})",
                    secs as i64 - 2_208_988_800
                )
            }
            ServiceKind::Discard => "nothing came back, as it should".to_string(),
            ServiceKind::Http => {
                let line = data.split(|&b| b == b'\n').next().unwrap_or(&[]);
                format!("{} ({} bytes)", printable(line, 60), data.len())
            }
            _ => format!("{:?}", printable(data, 72)),
        }
    }
}

fn poll_ping(p: &mut Ping, now: Instant, stack: &mut TracedStack) -> Result<bool, String> {
    let IpAddr::V4(target) = p.target else {
        return Err("the tour pings IPv4 only".to_string());
    };
    let h = *p.handle.get_or_insert_with(|| stack.icmp_open(p.ident));
    let mut progress = false;
    let sock = stack.icmp(h);
    let mut buf = [0u8; 256];
    while let Ok((n, _from)) = sock.recv_slice(&mut buf) {
        progress = true;
        let Ok(pkt) = Icmpv4Packet::new_checked(&buf[..n]) else {
            continue;
        };
        let Ok(Icmpv4Repr::EchoReply { ident, seq_no, .. }) =
            Icmpv4Repr::parse(&pkt, &smoltcp::phy::ChecksumCapabilities::default())
        else {
            continue;
        };
        if ident != p.ident {
            continue;
        }
        if let Some(i) = p.sent_at.iter().position(|(s, _)| *s == seq_no) {
            let (_, at) = p.sent_at.remove(i);
            p.rtts.push(now - at);
            p.answered += 1;
        }
    }
    if p.answered < p.count && now >= p.next_send && sock.can_send() {
        p.seq = p.seq.wrapping_add(1);
        let payload = b"tapstack ping";
        let repr = Icmpv4Repr::EchoRequest {
            ident: p.ident,
            seq_no: p.seq,
            data: payload,
        };
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(
            &mut Icmpv4Packet::new_unchecked(&mut out),
            &smoltcp::phy::ChecksumCapabilities::default(),
        );
        if sock.send_slice(&out, IpAddress::Ipv4(target)).is_ok() {
            p.sent_at.push((p.seq, now));
            progress = true;
        }
        // A second apart, like ping(8); unanswered ones are simply sent again.
        p.next_send = now + Duration::from_millis(if p.seq == 1 { 200 } else { 1000 });
    }
    Ok(progress)
}

fn poll_udp(a: &mut UdpAsk, now: Instant, stack: &mut TracedStack) -> Result<bool, String> {
    let h = match a.handle {
        Some(h) => h,
        None => {
            let h = stack.udp_open().map_err(|e| e.to_string())?;
            a.handle = Some(h);
            h
        }
    };
    let sock = stack.udp(h);
    let mut buf = [0u8; 2048];
    if let Ok((n, _)) = sock.recv_slice(&mut buf) {
        a.reply = Some(buf[..n].to_vec());
        return Ok(true);
    }
    if now >= a.next_send {
        if a.tries >= UDP_TRIES {
            return Err(format!(
                "no UDP reply from {} after {} tries",
                a.target, a.tries
            ));
        }
        let ep = IpEndpoint::new(IpAddress::from(a.target.ip()), a.target.port());
        if sock.send_slice(&a.payload, ep).is_ok() {
            a.tries += 1;
        }
        a.next_send = now + UDP_RETRY;
        return Ok(true);
    }
    Ok(false)
}

impl App for Tour {
    fn poll(&mut self, now: Instant, stack: &mut TracedStack) -> bool {
        if self.outcome.is_some() {
            return false;
        }
        self.started.get_or_insert(now);
        let total = self.steps.len();
        let Some((title, why, step)) = self.steps.get_mut(self.idx) else {
            self.outcome = Some(Ok(()));
            return true;
        };
        let step_started = match self.step_started {
            Some(t) => t,
            None => {
                log::info!(
                    target: "tapstack::demo",
                    "== step {}/{total}: {title}: {why} ==",
                    self.idx + 1
                );
                self.step_started = Some(now);
                now
            }
        };
        let (progress, result): (bool, Option<Result<String, String>>) = match step {
            Step::Ping(p) => match poll_ping(p, now, stack) {
                Err(e) => (true, Some(Err(e))),
                Ok(prog) if p.answered >= p.count => {
                    if let Some(h) = p.handle.take() {
                        stack.release(h);
                    }
                    let mut r = p.rtts.clone();
                    r.sort();
                    let median = r.get(r.len() / 2).copied().unwrap_or_default();
                    let lost = p.seq - p.answered;
                    (
                        prog,
                        Some(Ok(format!(
                            "{} of {} answered, median round trip {} us",
                            p.answered,
                            p.seq,
                            median.total_micros()
                        ) + &if lost > 0 {
                            format!(", {lost} lost and sent again")
                        } else {
                            String::new()
                        })),
                    )
                }
                Ok(prog) => (prog, None),
            },
            Step::Tcp { kind, ex } => {
                let prog = ex.poll(now, stack);
                match &ex.phase {
                    Phase::Done => (prog, Some(Ok(Tour::describe(*kind, ex.received())))),
                    Phase::Failed(e) => (prog, Some(Err(e.clone()))),
                    _ => (prog, None),
                }
            }
            Step::Udp { kind, ask } => match poll_udp(ask, now, stack) {
                Err(e) => (true, Some(Err(e))),
                Ok(prog) => match &ask.reply {
                    Some(r) => {
                        if let Some(h) = ask.handle.take() {
                            stack.release(h);
                        }
                        (
                            prog,
                            Some(Ok(format!("{kind} answered {:?}", printable(r, 72)))),
                        )
                    }
                    None => (prog, None),
                },
            },
        };
        let result = match result {
            None if now >= step_started + STEP_TIMEOUT => {
                Some(Err(format!("gave up after {} s", STEP_TIMEOUT.secs())))
            }
            r => r,
        };
        if let Some(result) = result {
            match &result {
                Ok(msg) => log::info!(target: "tapstack::demo", "   {title}: {msg}"),
                Err(msg) => log::warn!(target: "tapstack::demo", "   {title} failed: {msg}"),
            }
            self.records.push(StepRecord {
                title: title.clone(),
                result,
                took: now - step_started,
            });
            self.idx += 1;
            self.step_started = None;
            return true;
        }
        progress
    }

    fn poll_at(&self) -> Option<Instant> {
        let t = match self.steps.get(self.idx).map(|s| &s.2) {
            Some(Step::Ping(p)) => Some(p.next_send),
            Some(Step::Udp { ask, .. }) => Some(ask.next_send),
            Some(Step::Tcp { ex, .. }) => ex.poll_at(),
            None => None,
        };
        match (t, self.step_started) {
            (Some(t), Some(s)) => Some(t.min(s + STEP_TIMEOUT)),
            (None, Some(s)) => Some(s + STEP_TIMEOUT),
            (t, None) => t,
        }
    }

    fn outcome(&self) -> Option<Result<(), String>> {
        let done = self.outcome.as_ref()?;
        let failed = self.records.iter().filter(|r| r.result.is_err()).count();
        Some(match done {
            Ok(()) if failed == 0 => Ok(()),
            Ok(()) => Err(format!("the tour finished with {failed} failed step(s)")),
            Err(e) => Err(e.clone()),
        })
    }

    fn finish(&mut self, _stack: &mut TracedStack) {
        log::info!(target: "tapstack::demo", "== tour summary ==");
        for r in &self.records {
            let (mark, msg) = match &r.result {
                Ok(m) => ("ok  ", m.as_str()),
                Err(m) => ("FAIL", m.as_str()),
            };
            log::info!(target: "tapstack::demo", "   {mark} {:<24} {:>9.3} ms  {msg}", r.title, r.took.total_micros() as f64 / 1000.0);
        }
    }
}

/// What `connect` sends.
pub enum Input {
    /// `--send TEXT`: these bytes, then FIN.
    Fixed(Vec<u8>),
    /// Standard input until end of file.
    Stdin,
}

/// `tapstack connect HOST:PORT`: a userspace-stack netcat. Sends TEXT or standard input, prints what
/// comes back to standard output, closes cleanly.
pub struct Connect {
    ex: Option<TcpExchange>,
    udp: Option<UdpAsk>,
    input: Input,
    stdin_done: bool,
    outcome: Option<Result<(), String>>,
}

impl Connect {
    pub fn new(remote: SocketAddr, udp: bool, input: Input) -> Connect {
        let (ex, udp) = if udp {
            let payload = match &input {
                Input::Fixed(b) => b.clone(),
                Input::Stdin => {
                    let mut v = Vec::new();
                    let _ = std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut v);
                    v
                }
            };
            (
                None,
                Some(UdpAsk {
                    target: remote,
                    payload,
                    handle: None,
                    tries: 0,
                    next_send: Instant::ZERO,
                    reply: None,
                }),
            )
        } else {
            let mut ex = TcpExchange::new(remote);
            if let Input::Fixed(b) = &input {
                ex.send(b);
                ex.input_done = true;
            }
            (Some(ex), None)
        };
        Connect {
            ex,
            udp,
            input,
            stdin_done: false,
            outcome: None,
        }
    }

    /// Reads what standard input has without blocking the loop (level-triggered poll before each read).
    fn pump_stdin(&mut self) -> bool {
        let Some(ex) = self.ex.as_mut() else {
            return false;
        };
        if self.stdin_done || !matches!(self.input, Input::Stdin) || ex.phase != Phase::Open {
            return false;
        }
        let mut progress = false;
        for _ in 0..16 {
            if !crate::device::tap::fd_readable(0) {
                break;
            }
            let mut buf = [0u8; 16384];
            match std::io::Read::read(&mut std::io::stdin().lock(), &mut buf) {
                Ok(0) | Err(_) => {
                    self.stdin_done = true;
                    ex.input_done = true;
                    return true;
                }
                Ok(n) => {
                    ex.send(&buf[..n]);
                    progress = true;
                }
            }
        }
        progress
    }
}

impl App for Connect {
    fn poll(&mut self, now: Instant, stack: &mut TracedStack) -> bool {
        if self.outcome.is_some() {
            return false;
        }
        if let Some(a) = self.udp.as_mut() {
            return match poll_udp(a, now, stack) {
                Err(e) => {
                    self.outcome = Some(Err(e));
                    true
                }
                Ok(p) => {
                    if let Some(r) = a.reply.take() {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&r);
                        let _ = out.flush();
                        self.outcome = Some(Ok(()));
                        return true;
                    }
                    p
                }
            };
        }
        let mut progress = self.pump_stdin();
        let Some(ex) = self.ex.as_mut() else {
            return progress;
        };
        progress |= ex.poll(now, stack);
        let got = ex.take_received();
        if !got.is_empty() {
            let mut out = std::io::stdout().lock();
            if out.write_all(&got).and_then(|_| out.flush()).is_err() {
                // Nobody reads our output any more: stop reading theirs too.
                ex.read_limit = Some(0);
            }
        }
        match &ex.phase {
            Phase::Done => self.outcome = Some(Ok(())),
            Phase::Failed(e) => self.outcome = Some(Err(e.clone())),
            _ => {}
        }
        progress
    }

    fn poll_at(&self) -> Option<Instant> {
        let t = self.ex.as_ref().and_then(|e| e.poll_at());
        let u = self.udp.as_ref().map(|a| a.next_send);
        match (t, u) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn outcome(&self) -> Option<Result<(), String>> {
        self.outcome.clone()
    }
}

/// Why a URL cannot be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    NotHttp(String),
    NeedsIp(String),
    Malformed(String),
}

impl std::fmt::Display for UrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UrlError::NotHttp(u) => {
                write!(f, "'{u}' is not an http:// URL (https is not supported)")
            }
            UrlError::NeedsIp(h) => write!(
                f,
                "'{h}' is a host name; the userspace stack has no DNS: give an IP address"
            ),
            UrlError::Malformed(u) => write!(
                f,
                "'{u}' is not a valid URL: expected http://ADDRESS[:PORT]/PATH"
            ),
        }
    }
}

/// Splits `http://192.168.69.100:8000/path` into the address and the request target.
pub fn parse_url(url: &str) -> Result<(SocketAddr, String, String), UrlError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| UrlError::NotHttp(url.to_string()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(UrlError::Malformed(url.to_string()));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, tail) = v6
            .split_once(']')
            .ok_or_else(|| UrlError::Malformed(url.to_string()))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| UrlError::Malformed(url.to_string()))?,
            None if tail.is_empty() => 80,
            None => return Err(UrlError::Malformed(url.to_string())),
        };
        (h, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| UrlError::Malformed(url.to_string()))?,
            ),
            None => (authority, 80),
        }
    };
    if port == 0 {
        return Err(UrlError::Malformed(url.to_string()));
    }
    let ip: IpAddr = host.parse().map_err(|_| {
        if host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            UrlError::NeedsIp(host.to_string())
        } else {
            UrlError::Malformed(url.to_string())
        }
    })?;
    Ok((
        SocketAddr::new(ip, port),
        authority.to_string(),
        path.to_string(),
    ))
}

#[derive(Debug)]
enum Body {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// `tapstack get URL`: one HTTP/1.1 GET over the userspace stack. Status line and headers to standard
/// error, the body to standard output; Content-Length and chunked bodies; redirects reported, not
/// followed.
pub struct Get {
    ex: TcpExchange,
    buf: Vec<u8>,
    head: Option<http::ResponseHead>,
    body: Option<Body>,
    body_bytes: u64,
    outcome: Option<Result<(), String>>,
}

impl Get {
    pub fn new(url: &str) -> Result<Get, UrlError> {
        let (addr, authority, path) = parse_url(url)?;
        let mut ex = TcpExchange::new(addr);
        ex.send(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: tapstack/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            )
            .as_bytes(),
        );
        Ok(Get {
            ex,
            buf: Vec::new(),
            head: None,
            body: None,
            body_bytes: 0,
            outcome: None,
        })
    }

    fn emit_body(&mut self, data: &[u8]) -> Result<(), String> {
        self.body_bytes += data.len() as u64;
        let mut out = std::io::stdout().lock();
        out.write_all(data)
            .and_then(|_| out.flush())
            .map_err(|e| format!("cannot write the body: {e}"))
    }

    /// Consumes buffered bytes; `Some` when the response is complete or broken.
    fn process(&mut self, eof: bool) -> Option<Result<(), String>> {
        if self.head.is_none() {
            match http::parse_response_head(&self.buf) {
                Ok(None) if eof => {
                    return Some(Err(
                        "the server closed before a complete response head".into()
                    ))
                }
                Ok(None) => return None,
                Err(e) => return Some(Err(format!("malformed response: {e}"))),
                Ok(Some(head)) => {
                    let mut err = std::io::stderr().lock();
                    let _ = writeln!(
                        err,
                        "HTTP/1.{} {} {}",
                        head.minor_version, head.status, head.reason
                    );
                    for h in &head.headers {
                        let _ = writeln!(err, "{}: {}", h.name, String::from_utf8_lossy(&h.value));
                    }
                    let chunked =
                        http::header(&head.headers, "transfer-encoding").is_some_and(|v| {
                            String::from_utf8_lossy(v)
                                .to_ascii_lowercase()
                                .contains("chunked")
                        });
                    let length = http::header(&head.headers, "content-length")
                        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
                    self.body = Some(if chunked {
                        Body::Chunked(ChunkedDecoder::new())
                    } else if let Some(n) = length {
                        Body::Length(n)
                    } else {
                        Body::UntilClose
                    });
                    self.buf.drain(..head.len);
                    self.head = Some(head);
                }
            }
        }
        loop {
            match self.body.as_mut()? {
                Body::Length(left) => {
                    let take = (*left).min(self.buf.len() as u64) as usize;
                    *left -= take as u64;
                    let data: Vec<u8> = self.buf.drain(..take).collect();
                    if let Err(e) = self.emit_body(&data) {
                        return Some(Err(e));
                    }
                    if matches!(self.body, Some(Body::Length(0))) {
                        return Some(self.verdict());
                    }
                    if eof {
                        return Some(Err("the server closed before the whole body arrived".into()));
                    }
                    return None;
                }
                Body::UntilClose => {
                    let data = std::mem::take(&mut self.buf);
                    if let Err(e) = self.emit_body(&data) {
                        return Some(Err(e));
                    }
                    return eof.then(|| self.verdict());
                }
                Body::Chunked(dec) => {
                    if dec.is_done() {
                        return Some(self.verdict());
                    }
                    if self.buf.is_empty() {
                        return eof.then(|| Err("the server closed inside a chunked body".into()));
                    }
                    match dec.step(&self.buf) {
                        Err(e) => return Some(Err(format!("bad chunked body: {e}"))),
                        Ok(ChunkedStep::Framing(n)) | Ok(ChunkedStep::Done(n)) => {
                            if n == 0 && !dec.is_done() {
                                return eof.then(|| {
                                    Err("the server closed inside a chunked body".into())
                                });
                            }
                            self.buf.drain(..n);
                        }
                        Ok(ChunkedStep::Data(n)) => {
                            let data: Vec<u8> = self.buf.drain(..n).collect();
                            if let Err(e) = self.emit_body(&data) {
                                return Some(Err(e));
                            }
                        }
                    }
                }
            }
        }
    }

    fn verdict(&self) -> Result<(), String> {
        let Some(head) = &self.head else {
            return Err("no response".into());
        };
        match head.status {
            200..=299 => Ok(()),
            300..=399 => {
                let loc = http::header(&head.headers, "location")
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                Err(format!(
                    "HTTP {} {}: redirect to {} (not followed)",
                    head.status,
                    head.reason,
                    loc.as_deref().unwrap_or("an unnamed location")
                ))
            }
            s => Err(format!("HTTP {s} {}", head.reason)),
        }
    }
}

impl App for Get {
    fn poll(&mut self, now: Instant, stack: &mut TracedStack) -> bool {
        if self.outcome.is_some() {
            return false;
        }
        let progress = self.ex.poll(now, stack);
        self.buf.extend_from_slice(&self.ex.take_received());
        let eof = self.ex.phase == Phase::Done;
        if let Phase::Failed(e) = &self.ex.phase {
            self.outcome = Some(Err(e.clone()));
            return true;
        }
        if let Some(r) = self.process(eof) {
            self.outcome = Some(r);
            return true;
        }
        if eof {
            self.outcome = Some(Err(
                "the server closed before the response was complete".into()
            ));
        }
        progress
    }

    fn poll_at(&self) -> Option<Instant> {
        self.ex.poll_at()
    }

    fn outcome(&self) -> Option<Result<(), String>> {
        self.outcome.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_url_forms() {
        let (a, host, path) = parse_url("http://192.168.69.100:8000/x/y?z=1").unwrap();
        assert_eq!(a, "192.168.69.100:8000".parse().unwrap());
        assert_eq!(host, "192.168.69.100:8000");
        assert_eq!(path, "/x/y?z=1");
        let (a, _, path) = parse_url("http://10.0.0.1").unwrap();
        assert_eq!(a.port(), 80);
        assert_eq!(path, "/");
        let (a, host, _) = parse_url("http://[fdaa::100]:81/").unwrap();
        assert_eq!(a, "[fdaa::100]:81".parse().unwrap());
        assert_eq!(host, "[fdaa::100]:81");
    }

    #[test]
    fn test_parse_url_errors() {
        assert!(matches!(
            parse_url("https://1.2.3.4/"),
            Err(UrlError::NotHttp(_))
        ));
        assert!(matches!(
            parse_url("http://example.com/"),
            Err(UrlError::NeedsIp(_))
        ));
        assert!(matches!(
            parse_url("http://1.2.3.4:99999/"),
            Err(UrlError::Malformed(_))
        ));
        assert!(matches!(
            parse_url("http://1.2.3.4:0/"),
            Err(UrlError::Malformed(_))
        ));
        assert!(matches!(
            parse_url("http:///x"),
            Err(UrlError::Malformed(_))
        ));
        assert!(matches!(
            parse_url("http://[fe80::1/"),
            Err(UrlError::Malformed(_))
        ));
    }
}
