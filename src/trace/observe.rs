//! Every frame that crosses the stack's device: decoded, counted when malformed, captured, followed
//! by the flow tracker, written as a packet line and a `--events` line, drawn into ladders, and its
//! addresses explained the first time they are seen.

use smoltcp::time::Instant;

use std::fmt::Write as _;

use super::analysis;
use super::decode::{self, decode, Decoded};
use super::events::Event;
use super::records::{Labels, PacketRecord, Summary};
use super::step::StepReply;
use super::{explain, Secs, Tracer, EXPLAIN, EXPLAINED_ADDRS_CAP, PACKET};
use crate::device::{Direction, FaultMark, Observer};

impl Tracer {
    pub(super) fn count(&mut self, reason: &'static str) {
        *self.malformed.entry(reason).or_insert(0) += 1;
        self.malformed_keys
            .entry(reason)
            .or_insert_with(|| format!("malformed: {reason}"));
    }

    /// One frame that crossed the device (`dropped`: it was lost right after, on the way in).
    pub(super) fn handle(
        &mut self,
        now: Instant,
        dir: Direction,
        frame: &[u8],
        dropped: Option<&'static str>,
    ) {
        let t_us = self.now_us(now);
        let mut d = decode(frame);
        self.captured_checksum(frame, &mut d);
        if let Some(m) = d.malformed {
            self.count(m);
        }
        if let Some(c) = d.bad_checksum {
            self.count(c);
        }
        // The frame's number in the capture: every frame observed is captured, in this order.
        let number = self.packets.last_seq() + 1;
        let obs = self.flows.observe(t_us, dir, &d, number, dropped.is_some());
        let mut rec = PacketRecord {
            seq: 0,
            t_us,
            dir,
            decoded: d,
            conn: obs.conn,
            rel_seq: obs.rel_seq,
            rel_ack: obs.rel_ack,
            labels: obs.labels,
            rst_reason: obs.rst_reason,
            dropped,
            wire_frames: self.wire_mtu.and_then(|mtu| wire_frames(&d, mtu)),
            datagram: match dropped {
                None => self.datagrams.fragment(t_us, &d),
                Some(_) => None,
            },
            dup_ack: obs.dup_ack,
            win_shift: obs.win_shift,
        };
        rec.seq = self.packets.push(rec);
        self.capture(t_us, frame, &rec);
        if self.lines {
            // Formatted straight into the log record, not through a String first: at thousands of
            // frames a second the extra allocation and copy were a tenth of the loop's time.
            log::info!(
                target: PACKET,
                "{:<3} {} +{} {}",
                self.dir_word(&rec),
                self.device,
                Secs(rec.t_us),
                Summary {
                    rec: &rec,
                    absolute_seq: self.absolute_seq
                }
            );
            if self.hex {
                let mut dump = String::new();
                decode::hex_dump(&mut dump, frame);
                log::trace!(target: PACKET, "\n{dump}");
            }
        }
        if obs.new_flow && self.explain_on {
            if let Some(id) = obs.conn {
                self.explain_flow(id);
            }
        }
        if self.explain_on {
            self.explain_segment(&rec);
        }
        if let Some(ev) = self.events.as_mut() {
            ev.emit(&Event::Packet(&rec));
            if let Some(why) = dropped {
                ev.emit(&Event::Drop {
                    t_us,
                    dir,
                    reason: why,
                    len: frame.len(),
                    conn: obs.conn,
                    summary: rec.summary(self.absolute_seq),
                });
            }
        }
        // A frame can close flows other than its own (a SYN reusing a tuple, one retired).
        self.report_closed(t_us);
        if !self.quiet {
            if let Some(s) = self.step.as_mut() {
                if s.wait() == StepReply::Quit {
                    self.quit = true;
                }
            }
        }
    }

    /// A frame the stack sent was lost after the packet line was written.
    pub(super) fn dropped_out(&mut self, now: Instant, frame: &[u8], why: &'static str) {
        let t_us = self.now_us(now);
        let d = decode(frame);
        self.flows.mark_dropped(Direction::Out, &d);
        let conn = self.packets.mark_dropped(Direction::Out, &d, why);
        if self.lines {
            log::info!(
                target: PACKET,
                "out {} +{} DROPPED ({why}): the frame above never reached the link",
                self.device,
                Secs(t_us)
            );
        }
        if let Some(ev) = self.events.as_mut() {
            let rec = PacketRecord {
                seq: 0,
                t_us,
                dir: Direction::Out,
                decoded: d,
                conn,
                rel_seq: None,
                rel_ack: None,
                labels: Labels::default(),
                rst_reason: None,
                dropped: Some(why),
                wire_frames: None,
                datagram: None,
                dup_ack: None,
                win_shift: None,
            };
            ev.emit(&Event::Drop {
                t_us,
                dir: Direction::Out,
                reason: why,
                len: frame.len(),
                conn,
                summary: rec.summary(true),
            });
        }
    }

    /// Explains what a segment shows the first time it shows it: each analysis label (duplicate ACK,
    /// zero window...), and our SYN's MSS when segmentation offload sized it past the wire's MTU.
    pub(super) fn explain_segment(&mut self, rec: &PacketRecord) {
        let mut text = String::new();
        for l in rec.labels.as_slice() {
            if let Some((bit, name, why)) = analysis::LABELS.iter().find(|x| x.1 == *l) {
                if self.explained_labels & bit == 0 {
                    self.explained_labels |= bit;
                    let _ = write!(text, "\n{name}: {why}");
                }
            }
        }
        if let (Some(mtu), Some(ip), Some(t)) = (self.wire_mtu, rec.decoded.ip, rec.decoded.tcp) {
            let hdr = if ip.version == 4 { 40 } else { 60 };
            let mss = t.opts.mss.map_or(0, usize::from);
            if rec.dir == Direction::Out
                && t.flags.syn()
                && mss + hdr > mtu
                && !std::mem::replace(&mut self.explained_offload_mss, true)
            {
                let _ = write!(
                    text,
                    "\nmss {mss}: segmentation offload. The stack sizes its MSS from its device's \
                     {}-byte MTU, not from the wire's {mtu}: it hands the link segments of up to 64 KiB \
                     and the kernel cuts them into {mtu}-byte frames; the peer still sends no more \
                     than its own MTU allows (`--no-offload` gives the wire's MSS, {})",
                    mss + hdr,
                    mtu - hdr
                );
            }
        }
        if text.is_empty() {
            return;
        }
        match rec.conn {
            Some(id) => log::info!(target: EXPLAIN, "c{id} frame {}:{text}", rec.seq),
            None => log::info!(target: EXPLAIN, "frame {}:{text}", rec.seq),
        }
    }

    /// Explains a new flow's addresses and ports: each address and each named service port once, and
    /// the dynamic and unnamed registered ranges once each (client ports would otherwise be explained
    /// one by one).
    pub(super) fn explain_flow(&mut self, id: u64) {
        let Some((local, remote, proto)) = self.flows.ends(id) else {
            return;
        };
        let mut text = String::new();
        for a in [remote.ip(), local.ip()] {
            if self.explained_addrs.len() < EXPLAINED_ADDRS_CAP && self.explained_addrs.insert(a) {
                text.push('\n');
                text.push_str(&explain::explain_addr(a));
            }
        }
        if proto != "icmp" {
            for p in [remote.port(), local.port()] {
                let fresh = if p >= 49152 {
                    !std::mem::replace(&mut self.explained_dynamic, true)
                } else if p >= 1024 && explain::port_service(p).is_none() {
                    !std::mem::replace(&mut self.explained_registered, true)
                } else {
                    self.explained_ports.insert(p)
                };
                if fresh {
                    text.push('\n');
                    text.push_str(&explain::explain_port(p));
                }
            }
        }
        if text.is_empty() {
            return;
        }
        if proto == "icmp" {
            let (l, r) = (local.ip(), remote.ip());
            log::info!(target: EXPLAIN, "c{id} icmp echo {l} / {r}:{text}");
        } else {
            log::info!(target: EXPLAIN, "c{id} {proto} {local} / {remote}:{text}");
        }
    }
}

impl Observer for Tracer {
    fn frame(&mut self, now: Instant, dir: Direction, frame: &[u8]) {
        self.handle(now, dir, frame, None);
    }

    /// Outgoing frames were already observed (captured, printed) before the loss; incoming ones never
    /// reached the stack but did reach the device, so they are captured and printed here, marked.
    fn dropped(&mut self, now: Instant, dir: Direction, frame: &[u8], reason: &'static str) {
        match dir {
            Direction::In => self.handle(now, dir, frame, Some(reason)),
            Direction::Out => self.dropped_out(now, frame, reason),
        }
    }

    fn fault(&mut self, _now: Instant, dir: Direction, mark: FaultMark) {
        self.fault_ahead(dir, mark);
    }
}

/// How many frames of at most `mtu` bytes of IP would carry this TCP segment's payload, when the
/// segment is larger than that (it crossed the link whole, thanks to segmentation offload).
fn wire_frames(d: &Decoded, mtu: usize) -> Option<u32> {
    let (ip, t) = (d.ip?, d.tcp?);
    let total = ip.len as usize;
    if total <= mtu || t.len == 0 {
        return None;
    }
    // IP and TCP headers repeat in every frame.
    let per_frame = mtu.checked_sub(total - t.len as usize)?.max(1);
    Some((t.len as usize).div_ceil(per_frame) as u32)
}
