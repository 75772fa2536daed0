//! `tapstack connect`: a userspace-stack netcat.

use smoltcp::time::Instant;
use std::io::Write;
use std::net::SocketAddr;

use crate::reactor::App;
use crate::reactor::TracedStack;

use super::exchange::{Phase, TcpExchange};
use super::UdpAsk;

/// What `connect` sends.
pub enum Input {
    /// `--send TEXT`: these bytes, then FIN.
    Fixed(Vec<u8>),
    /// Standard input until end of file.
    Stdin,
}

/// `tapstack connect HOST:PORT`: a userspace-stack netcat. Sends TEXT or standard input, prints what
/// comes back to standard output, closes cleanly.
pub(crate) struct Connect {
    ex: Option<TcpExchange>,
    udp: Option<UdpAsk>,
    input: Input,
    stdin_done: bool,
    outcome: Option<Result<(), String>>,
}

impl Connect {
    pub(crate) fn new(remote: SocketAddr, udp: bool, input: Input) -> Connect {
        let (ex, udp) = if udp {
            let payload = match &input {
                Input::Fixed(b) => b.clone(),
                Input::Stdin => {
                    let mut v = Vec::new();
                    let _ = std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut v);
                    v
                }
            };
            (None, Some(UdpAsk::new(remote, payload)))
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
            return match a.poll(now, stack) {
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
