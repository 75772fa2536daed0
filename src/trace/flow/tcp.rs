//! The per-segment half of the flow tracker: a TCP segment's relative numbers, handshake and close
//! stages, retransmission, reset and Wireshark-analysis labels, and its segment record.

use super::*;

/// `a < b` in sequence space.
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl FlowTable {
    pub(super) fn observe_tcp(
        &mut self,
        now_us: i64,
        dir: Direction,
        key: FlowKey,
        t: &TcpInfo,
        frame: u64,
        dropped: bool,
    ) -> Observed {
        let fl = t.flags;
        let (d, o) = (idx(dir), 1 - idx(dir));
        let pure_syn = fl.syn() && !fl.ack();
        // A connection the stack opened, before its first frame, that carried an earlier attempt's
        // analysis (see `open`): a SYN with another number starts it afresh.
        if pure_syn {
            if let Some(f) = self
                .map
                .get_mut(&key)
                .filter(|f| f.owned && !f.seen && f.dirs[d].syn && f.dirs[d].base != Some(t.seq))
            {
                f.dirs = [DirState::default(); 2];
                f.ana = Analysis::default();
                f.stage = 0;
            }
        }
        // Only a SYN can start a new connection on the tuple (one lookup less for every other frame).
        let replace = pure_syn
            && self.map.get(&key).is_some_and(|f| {
                f.closed || f.done.is_some() || (f.dirs[d].syn && f.dirs[d].base != Some(t.seq))
            });
        if replace {
            if let Some(f) = self.map.get(&key).filter(|f| !f.closed) {
                let reason = f.done.unwrap_or("superseded");
                self.close(&key, now_us, reason);
            }
            self.remove(&key);
        }
        if !self.map.contains_key(&key) {
            self.create(key, now_us);
            // The stack never opened it (it would have said so first): an ACK, FIN or refused SYN
            // from a source the stack cannot or need not answer. Nothing will ever close such a flow
            // when the answer cannot leave (no route, no ARP reply), so it may be retired at once,
            // like a UDP flow: random-source floods used to fill the table to its cap.
            if self.stack_driven {
                self.make_evictable(&key, now_us);
            }
        }
        let hint = if fl.rst() && dir == Direction::Out {
            self.rst_hints.remove(&(key.local, key.remote))
        } else {
            None
        };
        let Some(f) = self.map.get_mut(&key) else {
            return Observed::default();
        };
        // A flow the stack opened before its first frame is new to the reader all the same.
        let new_flow = !std::mem::replace(&mut f.seen, true);
        let mut labels = Labels::default();

        // Sequence bases: the ISN from a SYN, else the first number seen.
        if fl.syn() {
            if !f.dirs[d].syn {
                f.dirs[d].base = Some(t.seq);
                f.dirs[d].syn = true;
            }
        } else if f.dirs[d].base.is_none() {
            f.dirs[d].base = Some(t.seq);
        }
        if fl.ack() {
            f.dirs[d].last_ack = Some(t.ack);
        }
        if fl.ack() && f.dirs[o].base.is_none() {
            // The other side's first number, inferred from what this segment acknowledges.
            f.dirs[o].base = Some(t.ack.wrapping_sub(fl.syn() as u32));
        }
        let rel_seq = t.seq.wrapping_sub(f.dirs[d].base.unwrap_or(t.seq));
        let rel_ack = fl
            .ack()
            .then(|| t.ack.wrapping_sub(f.dirs[o].base.unwrap_or(t.ack)));

        // Retransmissions, duplicate ACKs, windows...: as Wireshark judges them.
        let found = f.ana.segment(now_us, d, frame, t);

        // The handshake.
        let side = Side::of(dir);
        if pure_syn {
            labels.push("handshake 1/3");
            if f.stage == 0 {
                f.stage = 1;
                f.syn_at = now_us;
                f.rec.opened_by = Some(side);
            }
        } else if fl.syn() && fl.ack() {
            labels.push("handshake 2/3");
            if f.stage <= 1 {
                f.stage = 2;
            }
        } else if f.stage == 2
            && !dropped
            && fl.ack()
            && !fl.rst()
            && f.rec.opened_by == Some(side)
            && f.dirs[o].base.map(|b| b.wrapping_add(1)) == Some(t.ack)
        {
            labels.push("handshake 3/3");
            f.stage = 3;
            f.rec.handshake_us = Some(now_us - f.syn_at);
        }

        // A SYN one way and a SYN-ACK the other: a connection is being set up on a flow that was
        // retirable (one only frames started), so it is followed as live until it closes. Only the
        // stack sends our side's SYN-ACK, so no peer can keep a flow live by itself.
        if fl.syn() && f.dirs[0].syn && f.dirs[1].syn && !f.closed && f.evict_seq != 0 {
            self.evictable.remove(&f.evict_seq);
            f.evict_seq = 0;
        }

        // The close.
        if fl.fin() {
            if f.dirs[d].fin.is_none() {
                f.dirs[d].fin = Some(t.seq.wrapping_add(t.len));
                f.dirs[d].fin_no = if f.dirs[o].fin.is_some() { 2 } else { 1 };
            }
            labels.push(if f.dirs[d].fin_no == 1 {
                "close: FIN 1"
            } else {
                "close: FIN 2"
            });
        }
        if fl.ack() && !f.dirs[o].fin_acked {
            if let Some(fin) = f.dirs[o].fin {
                if !seq_lt(t.ack, fin.wrapping_add(1)) {
                    f.dirs[o].fin_acked = true;
                    labels.push(if f.dirs[o].fin_no == 1 {
                        "close: ACK of FIN 1"
                    } else {
                        "close: ACK of FIN 2"
                    });
                }
            }
        }
        found.label(&mut labels);

        // A reset: who, and why when known.
        let mut rst_reason = None;
        if fl.rst() {
            labels.push(match (self.from_capture, dir) {
                (false, Direction::Out) => "reset by the stack",
                (false, Direction::In) => "reset by the peer",
                (true, Direction::Out) => "reset by the server",
                (true, Direction::In) => "reset by the client",
            });
            rst_reason = hint.or(match (dir, f.stage, f.rec.opened_by) {
                (Direction::Out, 0 | 1, Some(Side::Peer)) => Some("no listener"),
                (Direction::In, 0 | 1, Some(Side::Stack)) => {
                    Some("connection refused: nothing listens there")
                }
                _ => None,
            });
        }

        f.rec.push(SegmentRecord {
            t_us: now_us,
            dir,
            kind: "tcp",
            flags: fl,
            seq: rel_seq,
            ack: rel_ack,
            len: t.len,
            win: t.win,
            mss: t.opts.mss,
            labels,
            rst_reason,
            dropped,
            abs_seq: t.seq,
            dup_ack: found.dup_ack,
            win_shift: found.win_shift,
        });
        let id = f.rec.id;

        // A connection the stack owns ends when the stack says so; one read from a capture when both
        // ends are done by the inferred states and nothing more can belong to it (see
        // [`FlowTable::done`]). Others (frames the stack never opened a connection for, a tracer
        // without a stack) end at the first RST or when both FINs are acknowledged.
        let mut closed = false;
        if fl.rst() && !f.closed && self.from_capture && f.rec.rst_by.is_none() {
            f.rec.rst_by = Some(side);
            f.rec.rst_reason = rst_reason;
        }
        if !f.closed && !f.owned && !self.from_capture {
            if fl.rst() {
                f.rec.rst_by = Some(side);
                f.rec.rst_reason = rst_reason;
                closed = self.close(&key, now_us, "RST");
            } else if f.dirs[0].fin_acked && f.dirs[1].fin_acked {
                closed = self.close(&key, now_us, "FIN");
            }
        }
        Observed {
            conn: Some(id),
            new_flow,
            rel_seq: Some(rel_seq),
            rel_ack,
            labels,
            rst_reason,
            closed,
            dup_ack: found.dup_ack,
            win_shift: found.win_shift,
        }
    }
}
