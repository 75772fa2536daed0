//! Client-side apps that run on the loop over a userspace stack: the demo's guided tour, `connect`
//! (a smoltcp TCP/UDP client, like a tiny netcat) and `get` (HTTP/1.1 GET).
//!
//! All of them are built from [`TcpExchange`]: one TCP conversation driven from the client side,
//! polled with the time and the stack, no I/O of its own. The UDP asks of the tour and of
//! `connect --udp` share `UdpAsk`, below.

use smoltcp::iface::SocketHandle;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpEndpoint};
use std::net::SocketAddr;

use crate::reactor::TracedStack;

mod connect;
mod exchange;
mod get;
mod tour;

pub(crate) use connect::{Connect, Input};
pub(crate) use get::{parse_url, Get, UrlError};
pub(crate) use tour::Tour;

/// A datagram may be lost: ask again this often, this many times.
const UDP_RETRY: Duration = Duration::from_secs(1);
const UDP_TRIES: u32 = 10;

/// A UDP request/reply with retries: the tour's UDP echo and `connect --udp`.
struct UdpAsk {
    target: SocketAddr,
    payload: Vec<u8>,
    handle: Option<SocketHandle>,
    tries: u32,
    next_send: Instant,
    reply: Option<Vec<u8>>,
}

impl UdpAsk {
    fn new(target: SocketAddr, payload: Vec<u8>) -> UdpAsk {
        UdpAsk {
            target,
            payload,
            handle: None,
            tries: 0,
            next_send: Instant::ZERO,
            reply: None,
        }
    }

    /// Sends, resends and takes the reply into `reply`; `Ok(true)` when something happened.
    fn poll(&mut self, now: Instant, stack: &mut TracedStack) -> Result<bool, String> {
        let h = match self.handle {
            Some(h) => h,
            None => {
                let h = stack.udp_open().map_err(|e| e.to_string())?;
                self.handle = Some(h);
                h
            }
        };
        let sock = stack.udp(h);
        let mut buf = [0u8; 2048];
        if let Ok((n, _)) = sock.recv_slice(&mut buf) {
            self.reply = Some(buf[..n].to_vec());
            return Ok(true);
        }
        if now >= self.next_send {
            if self.tries >= UDP_TRIES {
                return Err(format!(
                    "no UDP reply from {} after {} tries",
                    self.target, self.tries
                ));
            }
            let ep = IpEndpoint::new(IpAddress::from(self.target.ip()), self.target.port());
            if sock.send_slice(&self.payload, ep).is_ok() {
                self.tries += 1;
            }
            self.next_send = now + UDP_RETRY;
            return Ok(true);
        }
        Ok(false)
    }
}
