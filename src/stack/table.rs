//! The connection table: one entry per TCP socket (listeners, served connections, client sockets),
//! each alone in its socket set; the index of their next deadlines; the entries touched this turn;
//! and the recycled sockets with their buffers.
//!
//! Memory. Closed sockets are kept and reused (`listen` and `connect` reset a socket without touching
//! its buffers), and their buffers are carved from large arenas whose pages the kernel supplies zeroed
//! and untouched: an idle connection costs only the pages its data actually touched.

use slab::Slab;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, LossRecoveryStats};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;
use std::collections::BTreeSet;

use crate::service::driver::StreamState;
use crate::service::{ServiceKind, StreamSession};

/// Buffers come from arenas of [`ARENA_SLICES`] buffers, between these sizes: above glibc's largest
/// mmap threshold (32 MiB), so each arena is a fresh anonymous mapping whose pages stay non-resident
/// until data touches them; and no larger than a machine with little memory lets one mapping be
/// (the kernel's heuristic overcommit refuses a single mapping larger than RAM and swap).
const ARENA_MIN: usize = 64 << 20;
const ARENA_MAX: usize = 256 << 20;
/// Each arena costs a resident page (malloc writes its header into the first one) and the page
/// table under that page (4 KiB per 2 MiB of address space touched). At 16 buffers an arena, 10,000
/// idle connections with 4 MiB buffers took 1,250 arenas: 5 MiB resident and 5 MiB of page tables.
const ARENA_SLICES: usize = 64;

/// The bytes of one arena for buffers of `slice` bytes: a whole number of them.
fn arena_bytes(slice: usize) -> usize {
    let want = slice
        .saturating_mul(ARENA_SLICES)
        .clamp(ARENA_MIN, ARENA_MAX);
    want.max(slice) / slice * slice
}

/// Where a served connection is in its life.
pub(super) enum Life {
    /// The SYN came at `since`; the handshake is not complete.
    Handshake { since: Instant },
    /// Being served (`stream.closing`: the session finished or a shutdown closed it, and what still
    /// arrives is read and thrown away).
    Open {
        session: Box<dyn StreamSession>,
        stream: StreamState,
    },
    /// Closed by a shutdown before it was ever served.
    Closing,
}

impl Life {
    pub(super) fn was_open(&self) -> bool {
        matches!(self, Life::Open { .. })
    }
}

/// A connection served by one of our services.
pub(super) struct Served {
    pub kind: ServiceKind,
    pub life: Life,
    pub window: Window,
}

/// A served connection's receive window, grown with what its service reads (Linux's receive buffer
/// auto-tuning, `tcp_rcv_space_adjust`): it starts at the table's initial window and doubles, up to
/// the buffer, whenever the service read more than half of it within one smoothed RTT. A service
/// that does not read never grows it, so a peer whose data nobody takes pins only the initial window.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    /// The most bytes the advertised window lets be queued.
    pub limit: usize,
    /// Bytes the service read since `since`.
    pub read: usize,
    pub since: Instant,
    /// From the SYN to the handshake's last ACK: the RTT a connection that only receives has (smoltcp
    /// samples RTT from data it sends).
    pub handshake_rtt: Option<Duration>,
}

impl Window {
    pub(super) fn new(limit: usize, now: Instant) -> Window {
        Window {
            limit,
            read: 0,
            since: now,
            handshake_rtt: None,
        }
    }

    /// Counts `read` bytes taken by the service at `now`; returns the new limit when it grows.
    /// `rtt` is the connection's smoothed RTT, else the handshake's (else a guess: a long one only
    /// makes growth easier, and growth needs reading anyway).
    pub(super) fn on_read(
        &mut self,
        read: usize,
        now: Instant,
        rtt: Option<Duration>,
        max: usize,
    ) -> Option<usize> {
        self.read += read;
        let rtt = rtt
            .or(self.handshake_rtt)
            .unwrap_or(Duration::from_millis(100))
            .max(Duration::from_millis(1));
        let elapsed = now - self.since;
        if elapsed < rtt {
            return None;
        }
        // Scaled to one RTT: a connection not touched for a while must not add up several RTTs.
        let per_rtt =
            self.read as u128 * rtt.total_micros() as u128 / elapsed.total_micros().max(1) as u128;
        self.read = 0;
        self.since = now;
        if per_rtt > (self.limit / 2) as u128 && self.limit < max {
            self.limit = (self.limit * 2).min(max);
            return Some(self.limit);
        }
        None
    }
}

pub(super) enum Role {
    Listener {
        pool: usize,
    },
    Served(Served),
    /// A client socket.
    Client {
        /// The owner is done with it: remove it once closed.
        released: bool,
    },
}

/// What the stack last saw of a socket's loss recovery (a reset socket starts at zero).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Seen {
    pub stats: LossRecoveryStats,
    pub cwnd: usize,
    pub rto: Duration,
    /// When the last [`super::StackEvent::FiguresSampled`] went out (`None`: never).
    pub sampled: Option<Instant>,
}

/// One TCP socket in a socket set of its own.
pub(super) struct Entry {
    pub set: SocketSet<'static>,
    pub handle: SocketHandle,
    pub role: Role,
    /// The connection id (for a listener: the id its next connection gets).
    pub id: u64,
    /// Told apart from an earlier entry under the same key (client handles carry it).
    pub generation: u32,
    pub local: IpEndpoint,
    pub remote: IpEndpoint,
    /// The state last reported.
    pub state: tcp::State,
    /// When it was entered.
    pub state_since: Instant,
    /// We reset it (an abort): its close is ours.
    pub aborted: bool,
    /// When our FIN was queued (the socket entered FIN-WAIT-1 or LAST-ACK): the start of the time
    /// the peer may hold it open before [`super::ORPHAN_TIMEOUT`] ends it.
    pub closed_since: Option<Instant>,
    /// The acknowledgment number of the last segment from the peer: SND.NXT once our FIN is
    /// acknowledged (what TIME-WAIT answers with).
    pub peer_ack: u32,
    /// The peer's SYN offered window scaling, so our windows are scaled.
    pub peer_wscale: bool,
    /// In TIME-WAIT, the ACK of the peer's FIN has gone out.
    pub last_ack_out: bool,
    /// The socket's loss-recovery counts, window and timer when the stack last looked: a count
    /// that grew since is a [`super::StackEvent::LossRepair`].
    pub seen: Seen,
    /// Where this entry sits in the deadline index.
    deadline: Option<Instant>,
    /// Queued in `ready` for this turn.
    ready: bool,
}

impl Entry {
    pub(super) fn sock(&mut self) -> &mut tcp::Socket<'static> {
        self.set.get_mut::<tcp::Socket>(self.handle)
    }

    pub(super) fn sock_ref(&self) -> &tcp::Socket<'static> {
        self.set.get::<tcp::Socket>(self.handle)
    }

    pub(super) fn state_now(&self) -> tcp::State {
        self.sock_ref().state()
    }

    /// When the peer's hold on a connection we closed runs out: in FIN-WAIT-1, CLOSING or LAST-ACK,
    /// [`super::ORPHAN_TIMEOUT`] after our FIN was queued. Only for connections nobody owns any more
    /// (served ones, and client sockets their owner released), like Linux's orphans.
    pub(super) fn orphan_deadline(&self) -> Option<Instant> {
        let owned = matches!(
            self.role,
            Role::Listener { .. } | Role::Client { released: false }
        );
        let held = matches!(
            self.state,
            tcp::State::FinWait1 | tcp::State::Closing | tcp::State::LastAck
        );
        if owned || !held {
            return None;
        }
        self.closed_since.map(|t| t + super::ORPHAN_TIMEOUT)
    }

    pub(super) fn service(&self) -> Option<ServiceKind> {
        match &self.role {
            Role::Served(s) => Some(s.kind),
            _ => None,
        }
    }
}

/// Zeroed buffer space that nothing has touched yet, in slices of one size.
struct Arena {
    slice: usize,
    free: Vec<&'static mut [u8]>,
}

impl Arena {
    fn take(&mut self) -> &'static mut [u8] {
        if let Some(s) = self.free.pop() {
            return s;
        }
        // Leaked on purpose: the slices go into sockets that are recycled, never dropped, so the arenas
        // are bounded by the most sockets ever open at once (about --max-connections).
        let arena: &'static mut [u8] = vec![0u8; arena_bytes(self.slice)].leak();
        self.free.extend(arena.chunks_exact_mut(self.slice));
        self.free.pop().expect("an arena holds at least one slice")
    }
}

/// A closed TCP socket alone in its set.
pub(super) type Spare = (SocketSet<'static>, SocketHandle);

pub(super) struct Table {
    entries: Slab<Entry>,
    /// Entries touched this turn.
    ready: Vec<usize>,
    /// Entries by their next deadline.
    deadlines: BTreeSet<(Instant, usize)>,
    /// Closed sockets, each alone in its set, ready for reuse.
    spare: Vec<Spare>,
    arena: Arena,
    next_generation: u32,
    /// The receive window a served connection starts with (see [`Window`]).
    pub(super) initial_window: usize,
}

impl Table {
    pub(super) fn new(tcp_buffer: usize, initial_window: usize) -> Table {
        Table {
            entries: Slab::new(),
            ready: Vec::new(),
            deadlines: BTreeSet::new(),
            spare: Vec::new(),
            arena: Arena {
                slice: tcp_buffer,
                free: Vec::new(),
            },
            next_generation: 0,
            initial_window: initial_window.min(tcp_buffer),
        }
    }

    /// The size of each socket buffer (`--max-window`).
    pub(super) fn buffer_size(&self) -> usize {
        self.arena.slice
    }

    /// A closed TCP socket alone in its set: a recycled one, or a new one on untouched buffers. A
    /// served one (`served`) advertises only the initial window until its service reads (see
    /// [`Window`]); a client socket's owner reads as it likes, so it gets the whole buffer.
    pub(super) fn fresh_socket(&mut self, served: bool) -> Spare {
        let limit = served.then_some(self.initial_window);
        if let Some(mut s) = self.spare.pop() {
            s.0.get_mut::<tcp::Socket>(s.1).set_rx_window_limit(limit);
            return s;
        }
        let rx = tcp::SocketBuffer::new(&mut self.arena.take()[..]);
        let tx = tcp::SocketBuffer::new(&mut self.arena.take()[..]);
        let mut set = SocketSet::new(Vec::with_capacity(1));
        let mut sock = tcp::Socket::new(rx, tx);
        // CUBIC (RFC 9438) like Linux; smoltcp's `reset` keeps the choice for a recycled socket.
        sock.set_congestion_control(tcp::CongestionControl::Cubic);
        sock.set_rx_window_limit(limit);
        let handle = set.add(sock);
        (set, handle)
    }

    /// Keeps a closed socket for reuse, up to `cap` of them.
    pub(super) fn keep_spare(&mut self, spare: Spare, cap: usize) {
        if self.spare.len() < cap {
            self.spare.push(spare);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn insert(
        &mut self,
        (set, handle): Spare,
        role: Role,
        id: u64,
        local: IpEndpoint,
        remote: IpEndpoint,
        state: tcp::State,
        now: Instant,
    ) -> usize {
        self.next_generation = self.next_generation.wrapping_add(1);
        let key = self.entries.insert(Entry {
            set,
            handle,
            role,
            id,
            generation: self.next_generation,
            local,
            remote,
            state,
            state_since: now,
            aborted: false,
            closed_since: None,
            peer_ack: 0,
            peer_wscale: false,
            last_ack_out: false,
            seen: Seen::default(),
            deadline: None,
            ready: false,
        });
        self.mark_ready(key);
        key
    }

    /// Takes an entry out of the table and the deadline index.
    pub(super) fn remove(&mut self, key: usize) -> Entry {
        let mut e = self.entries.remove(key);
        if let Some(t) = e.deadline.take() {
            self.deadlines.remove(&(t, key));
        }
        e
    }

    pub(super) fn get(&self, key: usize) -> Option<&Entry> {
        self.entries.get(key)
    }

    pub(super) fn get_mut(&mut self, key: usize) -> Option<&mut Entry> {
        self.entries.get_mut(key)
    }

    pub(super) fn contains(&self, key: usize) -> bool {
        self.entries.contains(key)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn keys(&self) -> Vec<usize> {
        self.entries.iter().map(|(k, _)| k).collect()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().map(|(_, e)| e)
    }

    /// Queues an entry for this turn's services and egress.
    pub(super) fn mark_ready(&mut self, key: usize) {
        if let Some(e) = self.entries.get_mut(key) {
            if !e.ready {
                e.ready = true;
                self.ready.push(key);
            }
        }
    }

    pub(super) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Takes the queue for this turn's egress; entries marked while it runs queue for the next.
    pub(super) fn take_ready(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.ready)
    }

    /// Puts back a queue taken with [`Table::take_ready`] whose entries stay queued.
    pub(super) fn restore_ready(&mut self, mut queue: Vec<usize>) {
        queue.append(&mut self.ready);
        self.ready = queue;
    }

    /// An entry's turn is over.
    pub(super) fn done(&mut self, key: usize) {
        if let Some(e) = self.entries.get_mut(key) {
            e.ready = false;
        }
    }

    /// Hands back the vector [`Table::take_ready`] gave, so that its capacity is kept.
    pub(super) fn return_queue(&mut self, mut queue: Vec<usize>) {
        queue.clear();
        if self.ready.is_empty() {
            self.ready = queue;
        }
    }

    /// Marks the entries whose deadline has come.
    pub(super) fn wake_due(&mut self, now: Instant) {
        while let Some(&(t, key)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(e) = self.entries.get_mut(key) {
                e.deadline = None;
            }
            self.mark_ready(key);
        }
    }

    /// Marks the entries whose deadline falls before `t` (they may be waiting for a neighbour that was
    /// just learned).
    pub(super) fn wake_before(&mut self, t: Instant) {
        let waiting: Vec<usize> = self
            .deadlines
            .range(..(t, usize::MAX))
            .map(|&(_, k)| k)
            .collect();
        for k in waiting {
            self.mark_ready(k);
        }
    }

    /// Files an entry's next deadline.
    pub(super) fn schedule(&mut self, key: usize, at: Option<Instant>) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        if let Some(old) = e.deadline.take() {
            self.deadlines.remove(&(old, key));
        }
        if let Some(t) = at {
            e.deadline = Some(t);
            self.deadlines.insert((t, key));
        }
    }

    pub(super) fn first_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(t, _)| t)
    }
}

#[cfg(test)]
mod arena_tests {
    use super::*;

    #[test]
    fn test_arena_holds_64_buffers_of_4m_in_one_mapping() {
        let slice = 4 << 20;
        let mut arena = Arena {
            slice,
            free: Vec::new(),
        };
        let mut starts: Vec<usize> = (0..ARENA_SLICES)
            .map(|_| arena.take().as_ptr() as usize)
            .collect();
        starts.sort_unstable();
        // One allocation, cut into adjacent slices: separate arenas would leave malloc's header
        // (and the mapping's page rounding) between them.
        assert!(starts.windows(2).all(|w| w[1] - w[0] == slice));
        assert!(arena.free.is_empty());
    }

    #[test]
    fn test_arena_bytes_is_whole_buffers_within_bounds() {
        for slice in [
            4 << 10,
            64 << 10,
            100_000,
            256 << 10,
            4 << 20,
            5 << 20,
            32 << 20,
        ] {
            let n = arena_bytes(slice);
            assert_eq!(n % slice, 0, "{slice}");
            // Above glibc's largest mmap threshold, so never carved from the heap.
            assert!(n > 32 << 20 && n <= ARENA_MAX, "{slice}: {n}");
        }
        assert_eq!(arena_bytes(64 << 10), 64 << 20);
        assert_eq!(arena_bytes(4 << 20), 256 << 20);
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;

    #[test]
    fn test_window_doubles_only_when_half_is_read_per_rtt() {
        let rtt = Some(Duration::from_millis(10));
        let t = |ms| Instant::from_millis(ms);
        let mut w = Window::new(64 << 10, t(0));
        // A service that reads nothing, or less than half per RTT, never grows it.
        assert_eq!(w.on_read(0, t(50), rtt, 1 << 20), None);
        assert_eq!(w.on_read(30 << 10, t(60), rtt, 1 << 20), None);
        // 40 KiB, but over 20 ms (a connection not touched for a while): 20 KiB per RTT.
        assert_eq!(w.on_read(40 << 10, t(80), rtt, 1 << 20), None);
        // More than half within one RTT: doubled, up to the buffer.
        assert_eq!(w.on_read(33 << 10, t(90), rtt, 1 << 20), Some(128 << 10));
        assert_eq!(
            w.on_read(100 << 10, t(100), rtt, 192 << 10),
            Some(192 << 10)
        );
        assert_eq!(w.on_read(1 << 20, t(110), rtt, 192 << 10), None);
        // Counted across turns within one RTT.
        let mut w = Window::new(64 << 10, t(0));
        assert_eq!(w.on_read(20 << 10, t(4), rtt, 1 << 20), None);
        assert_eq!(w.on_read(20 << 10, t(10), rtt, 1 << 20), Some(128 << 10));
    }
}
