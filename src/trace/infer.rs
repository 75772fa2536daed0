//! Reading a capture (`tapstack read`): there is no stack to tell what it did, so who is client and
//! who is server, and the TCP states of both ends, are inferred from the frames, and the narration
//! says so.
//!
//! Directions are per flow: the end that sent the SYN is the client (the end that answered with a
//! SYN-ACK the server); without either, the end with the higher port (the ephemeral one). The server
//! takes the place the stack has in the live tool (`local`), so a frame from the client is `In`,
//! and its packet line says `c>s`.
//!
//! The state tracker follows both ends by RFC 9293's transitions, on this evidence: a segment sent
//! moves its sender (SYN, SYN-ACK, FIN, RST); an ACK that covers the other end's SYN or FIN shows
//! that its sender has processed it; a frame seen is taken as delivered (a capture cannot show
//! what was lost after the capture point). An RST resets its receiver only if its sequence number
//! is exactly the next one the receiver expects (the last number it acknowledged, or the end of
//! what the sender sent, every frame seen taken as delivered): otherwise RFC 5961 has the receiver
//! ignore it. Both tables are bounded.

use smoltcp::time::Instant;
use std::collections::HashMap;
use std::net::SocketAddr;

use super::decode::{decode, Decoded, TcpInfo};
use super::events::Event;
use super::records::PacketRecord;
use super::{Secs, Tracer, TCP};
use crate::device::Direction;

/// Flows (and connections) remembered at most; past it the tables start over.
const READ_FLOWS_CAP: usize = 65_536;
const INFERRED: &str = "inferred from the capture";

/// What reading a capture keeps besides the tracer's own records.
#[derive(Debug, Default)]
pub(super) struct ReadMode {
    /// (protocol, lower end, higher end) -> the client end.
    clients: HashMap<(u8, SocketAddr, SocketAddr), SocketAddr>,
    /// (server, client) -> the two ends' states.
    conns: HashMap<(SocketAddr, SocketAddr), Conn>,
    /// Frames whose TCP or UDP checksum was left for the network card (see [`offload_partial`]).
    offloaded: u64,
}

/// Whether a TCP or UDP checksum that does not verify holds what Linux leaves for a network card
/// with checksum offload to complete: the sum of the pseudo-header alone. A capture taken on the
/// sending host shows such frames before the card fixed them; Wireshark does not check these
/// checksums by default for the same reason.
fn offload_partial(frame: &[u8], d: &Decoded) -> bool {
    use smoltcp::wire::{checksum, IpAddress, IpProtocol};
    let (Some(ip), Some(bad)) = (d.ip, d.bad_checksum) else {
        return false;
    };
    let at = match bad {
        "bad TCP checksum" => 16,
        "bad UDP checksum" => 6,
        _ => return false,
    };
    let (hdr, l4_len) = match ip.version {
        4 => {
            let ihl = (frame.get(14).copied().unwrap_or(0) & 0x0f) as usize * 4;
            (ihl, (ip.len as usize).saturating_sub(ihl))
        }
        _ => (40, ip.len as usize),
    };
    let Some(field) = frame.get(14 + hdr + at..14 + hdr + at + 2) else {
        return false;
    };
    let field = u16::from_be_bytes([field[0], field[1]]);
    let addr = |a: std::net::IpAddr| IpAddress::from(a);
    let proto = IpProtocol::from(ip.proto);
    field == checksum::pseudo_header(&addr(ip.src), &addr(ip.dst), proto, l4_len as u32)
}

const CLIENT: usize = 0;
const SERVER: usize = 1;
const NAMES: [&str; 2] = ["client", "server"];

#[derive(Debug, Default, Clone, Copy)]
struct End {
    /// The state's name as the live narration writes it; "" before anything is known.
    state: &'static str,
    isn: Option<u32>,
    /// The sequence number of its FIN.
    fin: Option<u32>,
    /// The other end acknowledged that FIN.
    fin_acked: bool,
    /// The last acknowledgment number it sent: the next sequence number it expects.
    last_ack: Option<u32>,
    /// The end of the highest sequence number it sent (SYN and FIN count one).
    snd_max: Option<u32>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Conn {
    ends: [End; 2],
    /// An RST ended one of the ends.
    reset: bool,
}

/// What one segment told about the ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Inference {
    /// End `end` (0 client, 1 server) moved from one state to another.
    State {
        end: usize,
        from: &'static str,
        to: &'static str,
    },
    /// End `end` ignored an RST.
    RstIgnored { end: usize },
    /// The capture starts inside the connection.
    MidStream,
}

/// At most four inferences from one segment.
#[derive(Debug, Default)]
pub(super) struct Inferences {
    items: [Option<Inference>; 4],
}

impl Inferences {
    fn push(&mut self, i: Inference) {
        if let Some(slot) = self.items.iter_mut().find(|s| s.is_none()) {
            *slot = Some(i);
        }
    }

    fn iter(&self) -> impl Iterator<Item = Inference> + '_ {
        self.items.iter().flatten().copied()
    }
}

fn seq_ge(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

impl Conn {
    /// Both ends are done (CLOSED, or TIME-WAIT): by RST or by FIN.
    fn done(&self) -> Option<&'static str> {
        let over = |e: &End| matches!(e.state, "CLOSED" | "TIME-WAIT");
        if !self.ends.iter().all(over) {
            return None;
        }
        Some(if self.reset { "RST" } else { "FIN" })
    }

    fn set(&mut self, out: &mut Inferences, end: usize, to: &'static str) {
        let from = self.ends[end].state;
        if from == to {
            return;
        }
        self.ends[end].state = to;
        out.push(Inference::State {
            end,
            from: if from.is_empty() { "CLOSED" } else { from },
            to,
        });
    }

    /// One segment from end `x`.
    fn segment(&mut self, x: usize, t: &TcpInfo) -> Inferences {
        let y = 1 - x;
        let fl = t.flags;
        let mut out = Inferences::default();
        let pure_syn = fl.syn() && !fl.ack();
        // A new connection on the same ends: start over.
        if pure_syn
            && self.ends[x].isn != Some(t.seq)
            && !matches!(self.ends[x].state, "" | "SYN-SENT")
        {
            *self = Conn::default();
        }
        if self.ends[x].state.is_empty() && self.ends[y].state.is_empty() {
            if pure_syn {
                self.ends[y].state = "LISTEN";
            } else if fl.syn() {
                self.ends[x].state = "LISTEN";
                self.ends[y].state = "SYN-SENT";
            } else {
                self.ends[x].state = "ESTABLISHED";
                self.ends[y].state = "ESTABLISHED";
                out.push(Inference::MidStream);
            }
        }
        let end = t.seq.wrapping_add(t.seg_len());
        if !fl.rst() && self.ends[x].snd_max.is_none_or(|m| seq_ge(end, m)) {
            self.ends[x].snd_max = Some(end);
        }
        if fl.rst() {
            if self.ends[x].state == "LISTEN" {
                // It answered a SYN with RST: nothing was listening after all.
                self.ends[x].state = "CLOSED";
            }
            self.set(&mut out, x, "CLOSED");
            self.reset = true;
            match self.ends[y].state {
                "SYN-SENT" => {
                    let acks_syn = self.ends[y].isn.map(|i| i.wrapping_add(1)) == Some(t.ack);
                    if fl.ack() && acks_syn {
                        self.set(&mut out, y, "CLOSED");
                    } else {
                        out.push(Inference::RstIgnored { end: y });
                    }
                }
                "" | "CLOSED" | "LISTEN" | "TIME-WAIT" => {}
                _ => {
                    // The next number the receiver expects: the last it acknowledged, or (every
                    // frame seen taken as delivered) the end of what the sender sent.
                    let expected = |e: Option<u32>| e.is_none_or(|a| a == t.seq);
                    if expected(self.ends[y].last_ack) || self.ends[x].snd_max == Some(t.seq) {
                        self.set(&mut out, y, "CLOSED");
                    } else {
                        out.push(Inference::RstIgnored { end: y });
                    }
                }
            }
            return out;
        }
        if fl.syn() {
            self.ends[x].isn = Some(t.seq);
            if pure_syn {
                if matches!(self.ends[x].state, "" | "CLOSED") {
                    self.set(&mut out, x, "SYN-SENT");
                }
            } else if matches!(self.ends[x].state, "LISTEN" | "SYN-SENT") {
                self.set(&mut out, x, "SYN-RECEIVED");
            }
        }
        if fl.ack() {
            self.ends[x].last_ack = Some(t.ack);
            let covers_syn = self.ends[y]
                .isn
                .is_some_and(|i| seq_ge(t.ack, i.wrapping_add(1)));
            if !fl.syn() && covers_syn {
                if self.ends[x].state == "SYN-SENT" {
                    self.set(&mut out, x, "ESTABLISHED");
                }
                if self.ends[y].state == "SYN-RECEIVED" {
                    self.set(&mut out, y, "ESTABLISHED");
                }
            }
            if let Some(fin) = self.ends[y].fin {
                if !self.ends[y].fin_acked && seq_ge(t.ack, fin.wrapping_add(1)) {
                    self.ends[y].fin_acked = true;
                    // The sender has taken the other end's FIN...
                    match self.ends[x].state {
                        "ESTABLISHED" | "SYN-RECEIVED" => self.set(&mut out, x, "CLOSE-WAIT"),
                        "FIN-WAIT-1" => self.set(&mut out, x, "CLOSING"),
                        "FIN-WAIT-2" => self.set(&mut out, x, "TIME-WAIT"),
                        _ => {}
                    }
                    // ...and the other end gets the ACK of its FIN.
                    match self.ends[y].state {
                        "FIN-WAIT-1" => self.set(&mut out, y, "FIN-WAIT-2"),
                        "CLOSING" => self.set(&mut out, y, "TIME-WAIT"),
                        "LAST-ACK" => self.set(&mut out, y, "CLOSED"),
                        _ => {}
                    }
                }
            }
        }
        if fl.fin() && self.ends[x].fin.is_none() {
            self.ends[x].fin = Some(t.seq.wrapping_add(t.len + fl.syn() as u32));
            match self.ends[x].state {
                "ESTABLISHED" | "SYN-RECEIVED" => self.set(&mut out, x, "FIN-WAIT-1"),
                "CLOSE-WAIT" => self.set(&mut out, x, "LAST-ACK"),
                "SYN-SENT" => self.set(&mut out, x, "CLOSED"),
                _ => {}
            }
        }
        out
    }
}

impl ReadMode {
    /// Which way a frame goes: `In` from client to server, `Out` back (frames of no flow: `In`).
    fn direction(&mut self, d: &Decoded) -> Direction {
        let Some(ip) = d.ip else {
            return Direction::In;
        };
        let (proto, sp, dp, src_is_client) = if let Some(t) = d.tcp {
            let f = t.flags;
            let decided = match (f.syn(), f.ack()) {
                (true, false) => Some(true),
                (true, true) => Some(false),
                _ => None,
            };
            (6, t.src_port, t.dst_port, decided)
        } else if let Some(u) = d.udp {
            (17, u.src_port, u.dst_port, None)
        } else if let Some(i) = d.icmp.filter(|i| i.is_echo_request() || i.is_echo_reply()) {
            let id = i.ident.unwrap_or(0);
            (1, id, id, Some(i.is_echo_request()))
        } else {
            return Direction::In;
        };
        let (src, dst) = (SocketAddr::new(ip.src, sp), SocketAddr::new(ip.dst, dp));
        let key = (proto, src.min(dst), src.max(dst));
        if self.clients.len() >= READ_FLOWS_CAP && !self.clients.contains_key(&key) {
            self.clients.clear();
        }
        let client = match src_is_client {
            // A SYN names its sender the client, whatever came before; a SYN-ACK only a new flow's.
            Some(true) => {
                self.clients.insert(key, src);
                src
            }
            Some(false) => *self.clients.entry(key).or_insert(dst),
            None => *self.clients.entry(key).or_insert_with(|| {
                if dst.port() > src.port() {
                    dst
                } else {
                    src
                }
            }),
        };
        if client == src {
            Direction::In
        } else {
            Direction::Out
        }
    }

    /// The inferences from one well-formed TCP segment going `dir`.
    fn tcp(
        &mut self,
        dir: Direction,
        server: SocketAddr,
        client: SocketAddr,
        t: &TcpInfo,
    ) -> Inferences {
        if self.conns.len() >= READ_FLOWS_CAP && !self.conns.contains_key(&(server, client)) {
            self.conns.clear();
        }
        let sender = match dir {
            Direction::In => CLIENT,
            Direction::Out => SERVER,
        };
        self.conns
            .entry((server, client))
            .or_default()
            .segment(sender, t)
    }
}

impl Tracer {
    /// One frame read from a capture, at `now` (time since the capture's first frame): shown as a
    /// live frame would be, its direction and the ends' TCP states inferred.
    pub(crate) fn read_frame(&mut self, now: Instant, frame: &[u8]) {
        let mut d = decode(frame);
        if offload_partial(frame, &d) {
            d.bad_checksum = None;
        }
        if self.read.is_none() {
            self.flows.set_from_capture();
        }
        let dir = self.read.get_or_insert_with(Box::default).direction(&d);
        // A connection closes when a new SYN reuses its tuple (told before that SYN's inferences),
        // when it is retired, or at the end of the capture; never at the frame that ended it, since
        // more of it may follow (a FIN re-sent into TIME-WAIT, segments in flight after an RST).
        self.handle(now, dir, frame, None);
        self.infer_tcp(now, dir, &d);
    }

    /// Infers the ends' TCP states from one frame and narrates them; returns its connection id.
    fn infer_tcp(&mut self, now: Instant, dir: Direction, d: &Decoded) -> Option<u64> {
        let (Some(ip), Some(t)) = (d.ip, d.tcp) else {
            return None;
        };
        if d.problem().is_some() {
            return None;
        }
        let (src, dst) = (
            SocketAddr::new(ip.src, t.src_port),
            SocketAddr::new(ip.dst, t.dst_port),
        );
        let (server, client) = match dir {
            Direction::In => (dst, src),
            Direction::Out => (src, dst),
        };
        let read = self.read.as_mut()?;
        let inferred = read.tcp(dir, server, client, &t);
        let done = read.conns.get(&(server, client)).and_then(Conn::done);
        let t_us = now.total_micros();
        let flow = self.flows.get(6, server, client);
        let conn = flow.map(|f| f.id);
        let narrated = self.tcp_log && flow.is_none_or(|f| f.narrated);
        let addr = [client, server];
        for i in inferred.iter() {
            let id = conn.map_or(String::new(), |c| format!("c{c} "));
            match i {
                Inference::State { end, from, to } => {
                    if narrated {
                        log::info!(
                            target: TCP,
                            "+{} {id}{} {}: {from} -> {to} ({INFERRED})",
                            Secs(t_us),
                            NAMES[end],
                            addr[end]
                        );
                    }
                    if let Some(ev) = self.events.as_mut() {
                        ev.emit(&Event::TcpState {
                            t_us,
                            conn,
                            local: addr[end],
                            remote: Some(addr[1 - end]),
                            from,
                            to,
                        });
                    }
                }
                Inference::RstIgnored { end } => {
                    if narrated {
                        log::info!(
                            target: TCP,
                            "+{} {id}{} {}: RST ignored, its sequence number is not exactly the next one expected: a challenge ACK is due (RFC 5961) ({INFERRED})",
                            Secs(t_us),
                            NAMES[end],
                            addr[end]
                        );
                    }
                }
                Inference::MidStream => {
                    if narrated {
                        log::info!(
                            target: TCP,
                            "+{} {id}{client} -> {server}: the capture starts inside this connection (no SYN seen): both ends taken as ESTABLISHED ({INFERRED})",
                            Secs(t_us)
                        );
                    }
                }
            }
        }
        if let Some(reason) = done {
            self.flows.done(t_us, server, client, reason);
            self.report_closed(t_us);
        }
        conn
    }

    /// Reading a capture, a TCP or UDP checksum left for the network card to complete (checksum
    /// offload on the capturing host) is not held against the frame: it is followed, and counted.
    pub(super) fn captured_checksum(&mut self, frame: &[u8], d: &mut Decoded) {
        if let Some(read) = self.read.as_mut() {
            if offload_partial(frame, d) {
                d.bad_checksum = None;
                read.offloaded += 1;
            }
        }
    }

    /// The end of the capture: ladders of the connections still open, events flushed.
    pub(crate) fn read_done(&mut self, now: Instant) {
        let t_us = self.now_us(now);
        let offloaded = self.read.as_ref().map_or(0, |r| r.offloaded);
        if offloaded > 0 {
            log::info!(
                target: "tapstack",
                "+{} {offloaded} frames carried the partial TCP or UDP checksum that Linux leaves for the network card to complete (checksum offload, captured on the sending host): followed as good frames",
                Secs(t_us)
            );
        }
        // Connections whose ends were both done (TIME-WAIT included) end with the capture.
        self.flows.finish(t_us);
        self.report_closed(t_us);
        if let Some(l) = self.ladders.as_mut() {
            l.draw_open_flows(&self.flows);
        }
        self.flush();
    }

    /// The direction word of a packet line: `in`/`out` live; reading a capture, `c>s` (client to
    /// server), `s>c`, or `---` for a frame of no flow (ARP, ICMP errors).
    pub(super) fn dir_word(&self, rec: &PacketRecord) -> &'static str {
        match (&self.read, rec.conn, rec.dir) {
            (None, _, d) => d.as_str(),
            (Some(_), None, _) => "---",
            (Some(_), Some(_), Direction::In) => "c>s",
            (Some(_), Some(_), Direction::Out) => "s>c",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::decode::TcpFlags;

    fn seg(flags: u16, seq: u32, ack: u32, len: u32) -> TcpInfo {
        TcpInfo {
            src_port: 0,
            dst_port: 0,
            seq,
            ack,
            flags: TcpFlags(flags),
            win: 0,
            hdr_len: 20,
            len,
            opts: Default::default(),
        }
    }

    const S: u16 = TcpFlags::SYN;
    const A: u16 = TcpFlags::ACK;
    const F: u16 = TcpFlags::FIN;
    const R: u16 = TcpFlags::RST;

    /// Runs segments (`true`: from the client) and collects "end: from -> to" lines.
    fn run(segs: &[(bool, TcpInfo)]) -> Vec<String> {
        let mut c = Conn::default();
        let mut v = Vec::new();
        for (from_client, t) in segs {
            let x = if *from_client { CLIENT } else { SERVER };
            for i in c.segment(x, t).iter() {
                v.push(match i {
                    Inference::State { end, from, to } => format!("{}: {from} -> {to}", NAMES[end]),
                    Inference::RstIgnored { end } => format!("{}: RST ignored", NAMES[end]),
                    Inference::MidStream => "mid-stream".to_string(),
                });
            }
        }
        v
    }

    #[test]
    fn test_a_textbook_connection_walks_both_ends_through_rfc_9293() {
        let got = run(&[
            (true, seg(S, 100, 0, 0)),
            (false, seg(S | A, 500, 101, 0)),
            (true, seg(A, 101, 501, 0)),
            (true, seg(A, 101, 501, 5)),
            (false, seg(A, 501, 106, 5)),
            (true, seg(F | A, 106, 506, 0)),
            (false, seg(A, 506, 107, 0)),
            (false, seg(F | A, 506, 107, 0)),
            (true, seg(A, 107, 507, 0)),
        ]);
        assert_eq!(
            got,
            [
                "client: CLOSED -> SYN-SENT",
                "server: LISTEN -> SYN-RECEIVED",
                "client: SYN-SENT -> ESTABLISHED",
                "server: SYN-RECEIVED -> ESTABLISHED",
                "client: ESTABLISHED -> FIN-WAIT-1",
                "server: ESTABLISHED -> CLOSE-WAIT",
                "client: FIN-WAIT-1 -> FIN-WAIT-2",
                "server: CLOSE-WAIT -> LAST-ACK",
                "client: FIN-WAIT-2 -> TIME-WAIT",
                "server: LAST-ACK -> CLOSED",
            ]
        );
    }

    #[test]
    fn test_simultaneous_close_goes_through_closing() {
        let got = run(&[
            (true, seg(A, 1, 1, 0)),
            (true, seg(F | A, 1, 1, 0)),
            (false, seg(F | A, 1, 1, 0)),
            (true, seg(A, 2, 2, 0)),
            (false, seg(A, 2, 2, 0)),
        ]);
        assert_eq!(
            got,
            [
                "mid-stream",
                "client: ESTABLISHED -> FIN-WAIT-1",
                "server: ESTABLISHED -> FIN-WAIT-1",
                "client: FIN-WAIT-1 -> CLOSING",
                "server: FIN-WAIT-1 -> FIN-WAIT-2",
                "server: FIN-WAIT-2 -> TIME-WAIT",
                "client: CLOSING -> TIME-WAIT",
            ]
        );
    }

    #[test]
    fn test_an_rst_resets_only_at_the_expected_number() {
        let got = run(&[
            (true, seg(S, 100, 0, 0)),
            (false, seg(S | A, 500, 101, 0)),
            (true, seg(A, 101, 501, 0)),
            (false, seg(A, 501, 101, 0)),
            // Out of place: the server expects 101.
            (true, seg(R, 150, 0, 0)),
            (true, seg(R, 101, 0, 0)),
        ]);
        assert_eq!(
            &got[4..],
            [
                "client: ESTABLISHED -> CLOSED",
                "server: RST ignored",
                "server: ESTABLISHED -> CLOSED",
            ]
        );
        // A refused SYN.
        let got = run(&[(true, seg(S, 7, 0, 0)), (false, seg(R | A, 0, 8, 0))]);
        assert_eq!(
            got,
            ["client: CLOSED -> SYN-SENT", "client: SYN-SENT -> CLOSED"]
        );
    }

    #[test]
    fn test_a_checksum_left_for_the_card_is_told_from_a_corrupted_one() {
        use crate::frames::{Eth, Tcp, SERVER_V4};
        use smoltcp::wire::{checksum, IpAddress, IpProtocol};
        use std::net::Ipv4Addr;
        let peer = Ipv4Addr::new(192, 168, 69, 100);
        let mut f = Eth::to_server()
            .ipv4(peer, SERVER_V4)
            .tcp(&Tcp::new(40000, 7, 1).ack(1).data(b"hello"));
        assert!(!offload_partial(&f, &decode(&f)), "a good checksum");
        // What Linux leaves with offload: the pseudo-header's sum (20 + 5 bytes of TCP).
        let partial = checksum::pseudo_header(
            &IpAddress::Ipv4(peer),
            &IpAddress::Ipv4(SERVER_V4),
            IpProtocol::Tcp,
            25,
        );
        f[14 + 20 + 16..14 + 20 + 18].copy_from_slice(&partial.to_be_bytes());
        let d = decode(&f);
        assert_eq!(d.bad_checksum, Some("bad TCP checksum"));
        assert!(offload_partial(&f, &d));
        // A flipped bit is no offload.
        f[14 + 20 + 16] ^= 0x40;
        assert!(!offload_partial(&f, &decode(&f)));
    }

    #[test]
    fn test_directions_follow_the_syn_else_the_higher_port() {
        use crate::frames::{Eth, Tcp, SERVER_V4};
        use std::net::Ipv4Addr;
        let peer = Ipv4Addr::new(192, 168, 69, 100);
        let mut r = ReadMode::default();
        // A server on a high port, a client on a low one: the SYN decides.
        let syn = Eth::to_server()
            .ipv4(peer, SERVER_V4)
            .tcp(&Tcp::new(80, 50000, 1).syn());
        let back = Eth::to_client()
            .ipv4(SERVER_V4, peer)
            .tcp(&Tcp::new(50000, 80, 9).syn().ack(2));
        assert_eq!(r.direction(&decode(&syn)), Direction::In);
        assert_eq!(r.direction(&decode(&back)), Direction::Out);
        // No SYN: the higher port is the client's.
        let mid = Eth::to_server()
            .ipv4(peer, SERVER_V4)
            .tcp(&Tcp::new(443, 40000, 1).ack(1));
        assert_eq!(r.direction(&decode(&mid)), Direction::Out);
    }
}
