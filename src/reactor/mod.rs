//! The one loop: a single thread, a single `mio::Poll`, both stacks.
//!
//! Each turn, in this order:
//! 1. ingress: up to [`INGRESS_BUDGET`] frames from the link into smoltcp (so a flood on the TAP cannot
//!    starve the host sockets); if the budget ran out the turn ends with a zero timeout, since mio is
//!    edge-triggered and will not report the remaining frames again;
//! 2. services: every session of both stacks gets input, output and timers; each host listener with
//!    connections waiting accepts up to [`ACCEPT_BUDGET`](crate::host::ACCEPT_BUDGET) of them, and a
//!    backlog left over ends the turn with a zero timeout too, so the connections already open (their
//!    FINs, their requests) are served between two batches of new ones;
//! 3. egress: smoltcp sends what the services queued;
//! 4. the next deadline, computed after the services ran: smoltcp's `poll_at`, the fault injector's held
//!    frames, the sessions' own timers, the stats interval;
//! 5. `mio::Poll::poll` until readiness or that deadline. Idle means no wake-ups beyond real timers.
//!
//! Readiness only marks work for the next turn where the work is budgeted (the TAP, host listeners,
//! standard input under `--stdin-exit`); nothing the loop does waits for a peer or for input.

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;
use smoltcp::time::{Duration, Instant};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};

use crate::clock::Clock;
use crate::config::ServeConfig;
use crate::device::tap::TapQueueWatch;
use crate::device::{FaultInjector, FrameIo, Nic};
use crate::host::Host;
use crate::service::{Context, Settings};
use crate::stack::{
    entropy_seed, Stack, StackConfig, StackObserver, TCP_BUFFER, TCP_BUFFER_OFFLOAD, TCP_BUFFER_TAP,
};
use crate::status::Status;
use crate::trace::Tracer;

mod app;
mod stats;
mod stdin;

use app::poll_app;
pub(crate) use app::{App, RunError};
use stats::refresh_counters;

use stdin::{StdinRead, StdinWatch};

const SIGNALS: Token = Token(0);
const LINK: Token = Token(1);
const STDIN: Token = Token(2);

/// Frames taken from the link per loop turn before the host sockets get their say.
pub const INGRESS_BUDGET: usize = 64;

/// How long a clean shutdown waits for connections to finish their FIN exchange.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_millis(800);

/// The userspace stack as the loop runs it: watched by the tracer.
pub(crate) type TracedStack = Stack<Tracer>;

/// The loop and everything it drives.
pub(crate) struct Reactor {
    poll: Poll,
    clock: Clock,
    pub stack: TracedStack,
    pub host: Option<Host>,
    pub status: Status,
    settings: Settings,
    signals: Signals,
    stats_interval: Option<Duration>,
    next_stats: Option<Instant>,
    /// Standard input, watched for its end under `--stdin-exit`.
    stdin: Option<StdinWatch>,
    shutdown_at: Option<Instant>,
    /// Loop turns that slept and were woken (for the idle wake-up figure).
    pub wakeups: u64,
    /// The other end of the virtual wire, in the demo: a client stack on the same loop.
    pub peer: Option<TracedStack>,
    app: Option<Box<dyn App>>,
    /// End the run when the app finishes (client modes, `demo --exit`).
    exit_with_app: bool,
    /// 2 x MSL for the stacks on the loop (`--time-wait`).
    time_wait: smoltcp::time::Duration,
    app_result: Option<Result<(), String>>,
    /// Frames seen so far, to tell an idle turn from a busy one under the virtual clock.
    activity: u64,
    /// The last turn moved frames or made app progress.
    busy: bool,
    /// The app finished and the loop serves on (the demo without `--exit`).
    serving_on: bool,
    /// When resident memory was last read.
    rss_at: Option<Instant>,
    /// The TAP device's queue counters, read with resident memory (none on the in-memory wire).
    tap_queue: Option<TapQueueWatch>,
    /// When buffered log lines were last written (real time, also under the virtual clock).
    last_log_flush: std::time::Instant,
}

impl Reactor {
    /// Builds the stack on `io`, binds the host sockets, registers everything. Logs nothing yet.
    pub(crate) fn new(
        cfg: &ServeConfig,
        io: Box<dyn FrameIo>,
        clock: Clock,
    ) -> Result<Reactor, RunError> {
        let poll = Poll::new().map_err(|e| RunError::Io("cannot create the event loop", e))?;
        let now = clock.now();
        let tracer = Tracer::new(cfg.trace.clone(), clock.wall_at(Instant::ZERO))
            .map_err(|e| RunError::Io("cannot open the trace outputs", e))?;
        let faults = cfg
            .faults
            .is_active()
            .then(|| FaultInjector::new(cfg.faults));
        if let Some(fd) = io.raw_fd() {
            poll.registry()
                .register(&mut SourceFd(&fd), LINK, Interest::READABLE)
                .map_err(|e| RunError::Io("cannot watch the TAP device", e))?;
        }
        // Only a TAP device has a file descriptor; the demo's wire has none.
        let tap_queue = io.raw_fd().map(|_| TapQueueWatch::new(&cfg.tap));
        let port = Nic::new(io, tracer).with_faults(faults);
        let stack_cfg = StackConfig {
            mac: cfg.mac,
            addrs: cfg.addrs.clone(),
            gateway_v4: cfg.gateway_v4,
            gateway_v6: cfg.gateway_v6,
            random_seed: cfg.seed.unwrap_or_else(entropy_seed),
            max_connections: cfg.max_connections,
            // A TAP device reaches real paths with delay: large buffers, windows grown with use. The
            // in-memory wire (demo) has no delay and keeps today's small buffers.
            tcp_buffer: cfg.max_window.unwrap_or(if tap_queue.is_some() {
                TCP_BUFFER_TAP
            } else if port.offloads() {
                TCP_BUFFER_OFFLOAD
            } else {
                TCP_BUFFER
            }),
        };
        let mut port = port;
        if port.offloads() {
            let mtu = port.io().wire_mtu();
            port.observer_mut().set_wire_mtu(Some(mtu));
        }
        let mut stack = Stack::new(&stack_cfg, port, now);
        stack.set_time_wait(cfg.time_wait);
        for s in &cfg.services {
            stack.serve_tcp(s.kind, s.port);
            if s.kind.protocols().contains(&crate::status::Proto::Udp) {
                stack.serve_udp(s.kind, s.port);
            }
        }
        let host = match cfg.host {
            None => None,
            Some(ip) => {
                let mut host = Host::new(cfg.max_connections);
                for s in &cfg.services {
                    let addr = SocketAddr::new(ip, cfg.host_port(s.port));
                    host.serve_tcp(poll.registry(), s.kind, addr)?;
                    if s.kind.protocols().contains(&crate::status::Proto::Udp) {
                        host.serve_udp(poll.registry(), s.kind, addr)?;
                    }
                }
                Some(host)
            }
        };
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGUSR1])
            .map_err(|e| RunError::Io("cannot install signal handlers", e))?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .map_err(|e| RunError::Io("cannot watch signals", e))?;
        let stdin = if cfg.stdin_exit {
            match StdinWatch::open(io::stdin().as_fd(), poll.registry()) {
                Ok(w) => Some(w),
                Err(e) => {
                    // A regular file or /dev/null cannot be polled: it never "closes" in that sense
                    // anyway.
                    log::warn!("--stdin-exit: standard input cannot be watched ({e}); ignoring it");
                    None
                }
            }
        } else {
            None
        };
        let mut status = Status {
            endpoints: stack.endpoints(),
            ..Status::default()
        };
        if let Some(h) = &host {
            status.endpoints.extend_from_slice(h.endpoints());
        }
        Ok(Reactor {
            poll,
            clock,
            stack,
            host,
            status,
            settings: cfg.settings.clone(),
            signals,
            stats_interval: cfg.stats_interval,
            next_stats: cfg.stats_interval.map(|d| now + d),
            stdin,
            shutdown_at: None,
            wakeups: 0,
            peer: None,
            app: None,
            exit_with_app: false,
            time_wait: cfg.time_wait,
            app_result: None,
            activity: 0,
            busy: false,
            serving_on: false,
            rss_at: None,
            tap_queue,
            last_log_flush: std::time::Instant::now(),
        })
    }

    /// Puts a client stack on the loop (the other end of the demo's wire).
    pub(crate) fn set_peer(&mut self, mut peer: TracedStack) {
        peer.set_time_wait(self.time_wait);
        // The demo shows its closes segment by segment: FIN / ACK / FIN / ACK.
        self.stack.set_ack_fin_at_once(true);
        self.peer = Some(peer);
    }

    /// Runs `app` on the loop; with `exit_with_app` the run ends when it finishes, with its result.
    pub(crate) fn set_app(&mut self, app: Box<dyn App>, exit_with_app: bool) {
        self.app = Some(app);
        self.exit_with_app = exit_with_app;
    }

    fn frames_seen(&self) -> u64 {
        let c = self.stack.nic().counters();
        let mut n = c.packets_in + c.packets_out;
        if let Some(p) = &self.peer {
            let c = p.nic().counters();
            n += c.packets_in + c.packets_out;
        }
        n
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The ready line (and the `ready` event): every endpoint, once everything is bound.
    pub(crate) fn announce_ready(&mut self) {
        let list: Vec<String> = self
            .status
            .endpoints
            .iter()
            .map(|e| e.to_string())
            .collect();
        log::info!(target: "tapstack", "ready: {}", list.join(", "));
        let now = self.clock.now();
        self.stack.observer_mut().ready(now, &self.status.endpoints);
    }

    /// Begins a clean shutdown: FIN on every connection, then the loop ends within the grace time.
    pub(crate) fn begin_shutdown(&mut self, why: &str) {
        if self.shutdown_at.is_some() {
            return;
        }
        let now = self.clock.now();
        log::info!(target: "tapstack", "shutting down ({why}): closing {} connections", self.connection_count());
        self.shutdown_at = Some(now + SHUTDOWN_GRACE);
        self.stack.close_all();
        if let Some(h) = self.host.as_mut() {
            h.close_all(self.poll.registry());
            h.apply_rows(&mut self.status);
        }
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.stack.connection_count() + self.host.as_ref().map_or(0, |h| h.connection_count())
    }

    fn refresh_counters(&mut self) {
        refresh_counters(
            &self.stack,
            self.host.as_ref(),
            &mut self.status,
            self.clock.now(),
            &mut self.rss_at,
            self.tap_queue.as_mut(),
        );
    }

    /// One loop turn's work without waiting: each stack's turn (ingress, services or the app,
    /// egress), the host sockets' timers in between. Returns whether work was left waiting.
    pub(crate) fn turn(&mut self) -> bool {
        let now = self.clock.now();
        let wall = self.clock.wall();
        let registry = self.poll.registry();
        let (host, settings, rss_at) = (&mut self.host, &self.settings, &mut self.rss_at);
        let tap_queue = &mut self.tap_queue;
        let app_running = self.app_result.is_none();
        // Without a client stack of its own (connect, get), the app runs on the main stack.
        let (mut main_app, mut peer_app) = match self.peer {
            None => (self.app.as_mut().filter(|_| app_running), None),
            Some(_) => (None, self.app.as_mut().filter(|_| app_running)),
        };
        let mut app_done = None;
        let mut progress = false;
        let mut accept_backlog = false;
        let n = self
            .stack
            .turn(now, INGRESS_BUDGET, &mut self.status, |stack, status| {
                refresh_counters(
                    stack,
                    host.as_ref(),
                    status,
                    now,
                    rss_at,
                    tap_queue.as_mut(),
                );
                stack.run_services(now, wall, status, settings);
                if let Some(h) = host.as_mut() {
                    let cx = Context {
                        now,
                        wall,
                        status,
                        settings,
                        trace: stack.observer().view(),
                    };
                    accept_backlog = h.accept_backlog(registry, &cx, stack.observer());
                    h.run_timers(registry, &cx);
                    h.apply_rows(status);
                }
                if let Some(app) = main_app.take() {
                    progress |= poll_app(app, now, stack, &mut app_done);
                }
            });
        self.stack.observer_mut().tick(now);
        // Like frames left on the link: mio will not report a listener's remaining connections again.
        let mut more = n == INGRESS_BUDGET || accept_backlog;
        if let Some(peer) = self.peer.as_mut() {
            // The client stack has no services and no status rows of its own.
            let mut scratch = Status::default();
            let taken = peer.turn(now, INGRESS_BUDGET, &mut scratch, |peer, _| {
                if let Some(app) = peer_app.take() {
                    progress |= poll_app(app, now, peer, &mut app_done);
                }
            });
            more |= taken == INGRESS_BUDGET;
        }
        if app_done.is_some() {
            self.app_result = app_done;
        }
        // An app that moved on (a tour step done, data queued) gets another turn at once.
        more |= progress;
        // A link without a file descriptor (the in-memory wire) cannot wake the loop: look instead.
        more |= self.stack.nic().io().has_pending();
        if let Some(p) = &self.peer {
            more |= p.nic().io().has_pending();
        }
        let seen = self.frames_seen();
        if seen != self.activity {
            self.activity = seen;
            progress = true;
        }
        self.busy = progress;
        more
    }

    /// The time the loop must wake at, at the latest.
    pub(crate) fn deadline(&mut self) -> Option<Instant> {
        let now = self.clock.now();
        let mut t = self.stack.poll_at(now);
        let mut min = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t: Instant| t.min(x)));
            }
        };
        min(self.host.as_ref().and_then(|h| h.poll_at()));
        min(self.next_stats);
        min(self.shutdown_at);
        min(self.stack.observer().poll_at());
        if let Some(p) = self.peer.as_mut() {
            min(p.poll_at(now));
        }
        if self.app_result.is_none() {
            min(self.app.as_ref().and_then(|a| a.poll_at()));
        }
        t
    }

    /// Runs until a signal, `q` in step mode, stdin closing (with `--stdin-exit`), or a fatal link error.
    pub(crate) fn run(&mut self) -> Result<(), RunError> {
        let mut events = Events::with_capacity(1024);
        loop {
            let mut more = self.turn();
            more |= self.read_stdin();
            if let Some(e) = self.stack.nic_mut().take_fatal() {
                let now = self.clock.now();
                self.stack.observer_mut().error(now, &e.to_string());
                self.stack.observer_mut().flush();
                return Err(RunError::LinkGone(e));
            }
            if self.stack.observer().quit_requested() {
                self.begin_shutdown("q typed in step mode");
            }
            if !self.exit_with_app && self.app_result.is_some() && !self.serving_on {
                self.serving_on = true;
                self.clock.make_real();
                let hint = self
                    .host
                    .as_ref()
                    .and_then(|h| h.endpoints().first())
                    .map(|e| format!(": try `nc {} {}`", e.addr.ip(), e.addr.port()))
                    .unwrap_or_default();
                log::info!(target: "tapstack", "the tour is over; serving on{hint} (Ctrl-C to stop)");
            }
            if self.exit_with_app && self.shutdown_at.is_none() {
                if let Some(r) = &self.app_result {
                    if let Err(e) = r {
                        let now = self.clock.now();
                        self.stack.observer_mut().error(now, e);
                    }
                    self.begin_shutdown("finished");
                }
            }
            let now = self.clock.now();
            if let Some(t) = self.shutdown_at {
                if now >= t
                    || (!self.stack.has_connections()
                        && self.host.as_ref().is_none_or(|h| h.connection_count() == 0))
                {
                    if self.stack.has_connections() {
                        self.stack.abort_all();
                        self.stack.turn(now, 0, &mut self.status, |_, _| {});
                    }
                    // Nobody is left to answer for the connections in TIME-WAIT: they end now,
                    // and say so (their summaries and ladders come out here).
                    self.stack.end_time_wait_all();
                    self.stack.turn(now, 0, &mut self.status, |_, _| {});
                    if let Some(p) = self.peer.as_mut() {
                        p.end_time_wait_all();
                    }
                    self.finish();
                    return match self.app_result.take() {
                        Some(Err(e)) => Err(RunError::App(e)),
                        _ => Ok(()),
                    };
                }
            }
            if self.next_stats.is_some_and(|t| t <= now) {
                self.log_stats();
                self.next_stats = self.stats_interval.map(|d| now + d);
            }
            let timeout = if more {
                Some(std::time::Duration::ZERO)
            } else if self.clock.is_virtual() {
                // Virtual time: never sleep for a deadline, jump to it once a turn did nothing.
                let deadline = self.deadline();
                if !self.busy {
                    self.clock.advance_idle(deadline, None);
                }
                match deadline {
                    // Nothing scheduled at all: only the host sockets can bring work.
                    None if !self.busy => None,
                    _ => Some(std::time::Duration::ZERO),
                }
            } else {
                self.deadline().map(|t| {
                    let d = if t > now { t - now } else { Duration::ZERO };
                    std::time::Duration::from_micros(d.total_micros())
                })
            };
            let timeout = self.flush_logs(timeout);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(RunError::Io("event loop failed", e));
                }
            }
            if timeout != Some(std::time::Duration::ZERO) {
                self.wakeups += 1;
            }
            self.dispatch(&events);
        }
    }

    /// Writes buffered log lines at most every `logbuf::FLUSH_EVERY` (under load, one write per many
    /// turns instead of one per turn), and keeps the loop from sleeping past the moment they are due.
    fn flush_logs(&mut self, timeout: Option<std::time::Duration>) -> Option<std::time::Duration> {
        if crate::logbuf::is_empty() {
            return timeout;
        }
        let since = self.last_log_flush.elapsed();
        if since >= crate::logbuf::FLUSH_EVERY {
            crate::logbuf::flush();
            self.last_log_flush = std::time::Instant::now();
            return timeout;
        }
        let due = crate::logbuf::FLUSH_EVERY - since;
        Some(timeout.map_or(due, |t| t.min(due)))
    }

    fn dispatch(&mut self, events: &Events) {
        let now = self.clock.now();
        let wall = self.clock.wall();
        for ev in events.iter() {
            match ev.token() {
                SIGNALS => {
                    let pending: Vec<i32> = self.signals.pending().collect();
                    for sig in pending {
                        match sig {
                            SIGUSR1 => self.log_stats(),
                            SIGINT => self.begin_shutdown("SIGINT"),
                            _ => self.begin_shutdown("SIGTERM"),
                        }
                    }
                }
                // Frames are read in the next turn's budgeted ingress.
                LINK => {}
                // Read in the next loop turn, a bounded amount at a time.
                STDIN => {
                    if let Some(w) = self.stdin.as_mut() {
                        w.ready = true;
                    }
                }
                token => {
                    if let Some(h) = self.host.as_mut() {
                        let cx = Context {
                            now,
                            wall,
                            status: &self.status,
                            settings: &self.settings,
                            trace: Some(self.stack.observer()),
                        };
                        h.ready(self.poll.registry(), token, &cx);
                    }
                }
            }
        }
        if let Some(h) = self.host.as_mut() {
            h.apply_rows(&mut self.status);
        }
    }

    /// Reads what standard input has, at most [`STDIN_READS`] reads, never waiting (`--stdin-exit`);
    /// its end begins the shutdown. Returns whether input is left for the next turn.
    fn read_stdin(&mut self) -> bool {
        let Some(w) = self.stdin.as_mut().filter(|w| w.ready) else {
            return false;
        };
        match w.read() {
            StdinRead::More => return true,
            StdinRead::Drained => w.ready = false,
            StdinRead::Closed => {
                self.stop_stdin();
                self.begin_shutdown("standard input closed");
            }
            StdinRead::Failed(e) => {
                self.stop_stdin();
                log::warn!("--stdin-exit: cannot read standard input ({e}); no longer watching it");
            }
        }
        false
    }

    /// Stops watching standard input. Deregistered before it is closed: a duplicate of fd 0 shares its
    /// open file, whose registration would otherwise outlive our descriptor.
    fn stop_stdin(&mut self) {
        if let Some(w) = self.stdin.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&w.file.as_raw_fd()));
        }
    }

    /// The final counters (logged, and in the `shutdown` event), then goodbye.
    fn finish(&mut self) {
        self.refresh_counters();
        self.log_stats();
        let now = self.clock.now();
        let status = self.status.clone();
        let tracer = self.stack.observer_mut();
        tracer.shutdown(now, &status);
        tracer.flush();
        log::info!(target: "tapstack", "bye");
    }
}
