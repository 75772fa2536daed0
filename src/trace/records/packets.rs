//! Records of packets: one [`PacketRecord`] per frame (`Copy`, no heap data), its one-line summary
//! rendered on demand, and the ring of recent ones the `/live` page reads.

use super::*;

/// One frame as it crossed the port, with what the flow tracker added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketRecord {
    /// Monotonically increasing, from 1.
    pub seq: u64,
    /// Microseconds since the start.
    pub t_us: i64,
    /// Which way it crossed the device.
    pub dir: Direction,
    /// The frame, decoded.
    pub decoded: Decoded,
    /// Connection id of the flow it belongs to, if any.
    pub conn: Option<u64>,
    /// TCP sequence number relative to the sender's first one.
    pub rel_seq: Option<u32>,
    /// TCP acknowledgment number relative to the receiver's first sequence number.
    pub rel_ack: Option<u32>,
    /// What the flow tracker named it (handshake 1/3, retransmission...).
    pub labels: Labels,
    /// Why the RST was sent, when the stack said.
    pub rst_reason: Option<&'static str>,
    /// Why the frame was lost on the way, if it was.
    pub dropped: Option<&'static str>,
    /// A TCP segment larger than the wire's MTU (segmentation offload): how many wire-sized frames
    /// it stands for.
    pub wire_frames: Option<u32>,
    /// This fragment completed a datagram of this many bytes (its fragments all crossed the device).
    pub datagram: Option<u32>,
    /// A duplicate ACK: its number in the run and the frame whose ACK it repeats.
    pub dup_ack: Option<DupAck>,
    /// The TCP window scale shift in force for this segment (negotiated; never on a SYN).
    pub win_shift: Option<u8>,
}

impl PacketRecord {
    /// The one-line description, without direction, device or time.
    pub fn summary(&self, absolute_seq: bool) -> String {
        Summary {
            rec: self,
            absolute_seq,
        }
        .to_string()
    }
}

/// Displays a [`PacketRecord`] as its summary (write it straight into a line buffer).
pub(crate) struct Summary<'a> {
    pub rec: &'a PacketRecord,
    pub absolute_seq: bool,
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.rec;
        let d = &r.decoded;
        if let Some(c) = r.conn {
            write!(f, "c{c} ")?;
        }
        if let Some(a) = d.arp {
            match a.op {
                "request" if a.sender_ip == a.target_ip => {
                    write!(f, "ARP announce: {} is-at {}", a.sender_ip, a.sender_mac)?
                }
                "request" => write!(
                    f,
                    "ARP who-has {}? tell {} ({})",
                    a.target_ip, a.sender_ip, a.sender_mac
                )?,
                _ => write!(
                    f,
                    "ARP {} is-at {} (to {} {})",
                    a.sender_ip, a.sender_mac, a.target_ip, a.target_mac
                )?,
            }
        } else if let Some(ip) = d.ip {
            let v = if ip.version == 4 { "" } else { "v6" };
            if let Some(t) = d.tcp {
                write!(
                    f,
                    "TCP {} > {} [{}]",
                    SocketAddr::new(ip.src, t.src_port),
                    SocketAddr::new(ip.dst, t.dst_port),
                    t.flags
                )?;
                let (seq, ack) = match (self.absolute_seq, r.rel_seq) {
                    (false, Some(s)) => (s, r.rel_ack.unwrap_or(t.ack)),
                    _ => (t.seq, t.ack),
                };
                write!(f, " seq {seq}")?;
                if t.flags.ack() {
                    write!(f, " ack {ack}")?;
                }
                write!(f, " win {}", t.win)?;
                if let Some(shift) = r.win_shift.filter(|&s| s > 0) {
                    write!(
                        f,
                        " (x{} = {})",
                        1u32 << shift,
                        Thousands(u64::from(t.win) << shift)
                    )?;
                }
                write!(f, " len {}", t.len)?;
                if !t.opts.is_empty() {
                    // SACK edges are numbers of the other side's stream: relative to its start.
                    let base = match (self.absolute_seq, r.rel_ack) {
                        (false, Some(a)) => t.ack.wrapping_sub(a),
                        _ => 0,
                    };
                    f.write_str(" <")?;
                    t.opts.write_relative(f, base)?;
                    f.write_str(">")?;
                }
            } else if let Some(u) = d.udp {
                write!(
                    f,
                    "UDP {} > {} len {}",
                    SocketAddr::new(ip.src, u.src_port),
                    SocketAddr::new(ip.dst, u.dst_port),
                    u.len
                )?;
            } else if let Some(i) = d.icmp {
                write!(f, "ICMP{v} {} > {} {}", ip.src, ip.dst, i.name)?;
                if let (Some(id), Some(seq)) = (i.ident, i.seq) {
                    write!(f, " id {id} seq {seq}")?;
                }
                match (i.kind, i.target) {
                    (135, Some(t)) => write!(f, ": who has {t}?")?,
                    (136, Some(t)) => write!(f, ": {t} is here")?,
                    _ => {}
                }
                write!(f, " len {}", i.len)?;
            } else {
                write!(
                    f,
                    "IPv{} {} > {} {}",
                    ip.version, ip.src, ip.dst, ip.proto_name
                )?;
                if ip.proto_name == "unknown" {
                    write!(f, " (protocol {})", ip.proto)?;
                }
                if let Some(fr) = ip.fragment {
                    write!(f, " {fr}")?;
                }
                if let Some(n) = r.datagram {
                    write!(f, ", completes the {n}-byte datagram")?;
                }
                if ip.fragment.is_none() && d.malformed.is_none() {
                    write!(f, " len {}", ip.len)?;
                }
            }
        } else if let Some(e) = d.eth {
            write!(
                f,
                "Ethernet {} > {} type 0x{:04x}",
                e.src, e.dst, e.ethertype
            )?;
        }
        if !r.labels.is_empty() || r.rst_reason.is_some() {
            f.write_str(" (")?;
            for (i, l) in r.labels.as_slice().iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                f.write_str(l)?;
                if let (&"duplicate ACK", Some(da)) = (l, r.dup_ack) {
                    write!(f, " #{} of frame {}", da.num, da.frame)?;
                }
            }
            if let Some(reason) = r.rst_reason {
                write!(f, ": {reason}")?;
            }
            f.write_str(")")?;
        }
        if let Some(n) = r.wire_frames {
            write!(f, " (offload: {n} wire-sized frames)")?;
        }
        if let Some(m) = d.malformed {
            if d.eth.is_some() {
                f.write_str(" ")?;
            }
            write!(f, "MALFORMED: {m} ({} bytes)", d.len)?;
        }
        if let Some(c) = d.bad_checksum {
            write!(f, " BAD CHECKSUM: {c} (the stack drops this)")?;
        }
        if let Some(why) = r.dropped {
            write!(f, " DROPPED: {why}")?;
        }
        Ok(())
    }
}

/// The serialized shape of a [`PacketRecord`] (see docs/EVENTS.md, event `packet`).
#[derive(Serialize)]
struct PacketView<'a> {
    seq: u64,
    t_us: i64,
    dir: Direction,
    len: usize,
    summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    conn: Option<u64>,
    labels: &'a [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    rst_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eth: Option<&'a crate::trace::decode::EthInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arp: Option<&'a crate::trace::decode::ArpInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'a crate::trace::decode::IpInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp: Option<&'a crate::trace::decode::IcmpInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    udp: Option<&'a crate::trace::decode::UdpInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp: Option<TcpView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    malformed: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bad_checksum: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wire_frames: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    datagram: Option<u32>,
}

#[derive(Serialize)]
struct TcpView<'a> {
    #[serde(flatten)]
    tcp: &'a crate::trace::decode::TcpInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    rel_seq: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rel_ack: Option<u32>,
    /// The window in bytes: the field shifted by the negotiated scale (Wireshark's
    /// `tcp.window_size`).
    window_size: u64,
    /// The scale shift in force, when both SYNs negotiated one.
    #[serde(skip_serializing_if = "Option::is_none")]
    win_shift: Option<u8>,
    /// SACK blocks, relative to the acknowledged side's first sequence number.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sack: Vec<(u32, u32)>,
    /// A duplicate ACK: `{"num": n, "frame": N}` (the frame whose ACK it repeats).
    #[serde(skip_serializing_if = "Option::is_none")]
    dup_ack: Option<DupAck>,
}

impl Serialize for PacketRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = &self.decoded;
        PacketView {
            seq: self.seq,
            t_us: self.t_us,
            dir: self.dir,
            len: d.len,
            summary: self.summary(false),
            conn: self.conn,
            labels: self.labels.as_slice(),
            rst_reason: self.rst_reason,
            eth: d.eth.as_ref(),
            arp: d.arp.as_ref(),
            ip: d.ip.as_ref(),
            icmp: d.icmp.as_ref(),
            udp: d.udp.as_ref(),
            tcp: d.tcp.as_ref().map(|tcp| {
                let rel_ack = self.rel_ack.filter(|_| tcp.flags.ack());
                let base = rel_ack.map_or(0, |a| tcp.ack.wrapping_sub(a));
                TcpView {
                    tcp,
                    rel_seq: self.rel_seq,
                    rel_ack,
                    window_size: u64::from(tcp.win) << self.win_shift.unwrap_or(0),
                    win_shift: self.win_shift,
                    sack: tcp
                        .opts
                        .sack_blocks()
                        .iter()
                        .map(|(l, r)| (l.wrapping_sub(base), r.wrapping_sub(base)))
                        .collect(),
                    dup_ack: self.dup_ack,
                }
            }),
            malformed: d.malformed,
            bad_checksum: d.bad_checksum,
            dropped: self.dropped,
            wire_frames: self.wire_frames,
            datagram: self.datagram,
        }
        .serialize(s)
    }
}

/// The last `cap` packet records, numbered from 1.
#[derive(Debug)]
pub(crate) struct PacketRing {
    buf: VecDeque<PacketRecord>,
    cap: usize,
    next_seq: u64,
}

/// Packet records kept for `recent_packets`.
pub(crate) const RECENT_PACKETS: usize = 4096;

impl PacketRing {
    pub(crate) fn new(cap: usize) -> Self {
        PacketRing {
            buf: VecDeque::new(),
            cap: cap.max(1),
            next_seq: 1,
        }
    }

    /// Stores `rec` under the next sequence number (overwriting `rec.seq`) and returns that number.
    pub(crate) fn push(&mut self, mut rec: PacketRecord) -> u64 {
        rec.seq = self.next_seq;
        self.next_seq += 1;
        if self.buf.len() >= self.cap {
            self.buf.pop_front();
        }
        self.buf.push_back(rec);
        rec.seq
    }

    /// Records with a sequence number greater than `since`, oldest first.
    pub(crate) fn since(&self, since: u64) -> impl Iterator<Item = &PacketRecord> {
        let first = self.buf.front().map_or(self.next_seq, |r| r.seq);
        let skip = since.saturating_add(1).saturating_sub(first) as usize;
        self.buf.iter().skip(skip)
    }

    /// The sequence number of the newest record (0 when none yet).
    pub(crate) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Marks a recent record (among the last 16) as dropped; returns its connection id.
    pub(crate) fn mark_dropped(
        &mut self,
        dir: Direction,
        decoded: &Decoded,
        why: &'static str,
    ) -> Option<u64> {
        let r = self
            .buf
            .iter_mut()
            .rev()
            .take(16)
            .find(|r| r.dir == dir && r.decoded == *decoded && r.dropped.is_none())?;
        r.dropped = Some(why);
        r.labels.remove("handshake 3/3");
        r.conn
    }
}
