//! The demo's guided tour: ARP and ping, a TCP echo, each selected service, UDP echo, an HTTP GET.

use smoltcp::iface::SocketHandle;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress};
use std::net::{IpAddr, SocketAddr};

use crate::reactor::App;
use crate::reactor::TracedStack;
use crate::service::ServiceKind;

use super::exchange::{Phase, TcpExchange};
use super::UdpAsk;

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

/// The demo's guided tour: ARP and ping, a TCP echo, each selected service, UDP echo, an HTTP GET.
pub(crate) struct Tour {
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
    pub(crate) fn new(server: IpAddr, services: &[(ServiceKind, u16)]) -> Tour {
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
            let greeting = b"Hello, tapstack!\r\n";
            ex.send(greeting);
            // Close once the echo is back: the data, its echo, then a FIN from each side.
            ex.close_after = Some(greeting.len());
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
                    ask: UdpAsk::new(SocketAddr::new(server, p), b"Hello over UDP".to_vec()),
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
        p.next_send = now + Duration::from_millis(1000);
    }
    Ok(progress)
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
            Step::Udp { kind, ask } => match ask.poll(now, stack) {
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
