//! Kernel-side peers: plain std::net sockets, run on threads that entered a namespace. Every loop here is
//! bounded in count and in time.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// How much and how long a bulk transfer may run.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub bytes: u64,
    pub time: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Transfer {
    pub fn gbps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e9
    }
}

const CHUNK: usize = 128 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn connect(addr: SocketAddr, cc: Option<&str>) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    if let Some(cc) = cc {
        crate::sys::set_congestion(&s, cc)?;
    }
    Ok(s)
}

/// Sends to a discard service until the limit, then half-closes and waits for the server's FIN: the
/// time counts until the last byte was consumed, not just buffered.
pub fn bulk_send(addr: SocketAddr, limit: Limit) -> io::Result<Transfer> {
    bulk_send_cc(addr, limit, None)
}

/// [`bulk_send`] with the kernel's congestion control for this connection set (`None`: the host's).
pub fn bulk_send_cc(addr: SocketAddr, limit: Limit, cc: Option<&str>) -> io::Result<Transfer> {
    let mut s = connect(addr, cc)?;
    let buf = vec![0x5au8; CHUNK];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < limit.bytes && start.elapsed() < limit.time {
        let n = (limit.bytes - sent).min(CHUNK as u64) as usize;
        sent += s.write(&buf[..n])? as u64;
    }
    s.shutdown(Shutdown::Write)?;
    let mut sink = [0u8; 4096];
    loop {
        match s.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => continue,
            // A discard server that resets instead of closing still consumed everything it acked.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e),
        }
    }
    Ok(Transfer {
        bytes: sent,
        elapsed: start.elapsed(),
    })
}

/// Reads from a chargen service until the limit.
pub fn bulk_recv(addr: SocketAddr, limit: Limit) -> io::Result<Transfer> {
    bulk_recv_cc(addr, limit, None)
}

/// [`bulk_recv`] with the kernel's congestion control for this connection set (`None`: the host's).
pub fn bulk_recv_cc(addr: SocketAddr, limit: Limit, cc: Option<&str>) -> io::Result<Transfer> {
    let mut s = connect(addr, cc)?;
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    let mut got = 0u64;
    while got < limit.bytes && start.elapsed() < limit.time {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                "chargen closed early",
            ));
        }
        got += n as u64;
    }
    let elapsed = start.elapsed();
    let _ = s.shutdown(Shutdown::Both);
    Ok(Transfer {
        bytes: got,
        elapsed,
    })
}

/// A kernel discard server for one connection: reads to EOF, then closes.
pub fn discard_once(listener: TcpListener) -> io::Result<u64> {
    let (mut s, _) = listener.accept()?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// 64-byte ping-pong, one connection to each of `a` and `b`, measured in alternating batches so that
/// both see the same machine (a shared VM's idle states and neighbours move RTTs by 5x). Returns the
/// round-trip times in microseconds of each, after a warm-up.
pub fn echo_rtt_pair(
    a: SocketAddr,
    b: SocketAddr,
    samples: usize,
    time: Duration,
) -> io::Result<(Vec<f64>, Vec<f64>)> {
    const BATCH: usize = 250;
    let mut conns = [connect(a, None)?, connect(b, None)?];
    let msg = [0x42u8; 64];
    let mut back = [0u8; 64];
    let mut rtts = [Vec::with_capacity(samples), Vec::with_capacity(samples)];
    for s in conns.iter_mut() {
        s.set_nodelay(true)?;
        for _ in 0..100 {
            s.write_all(&msg)?;
            s.read_exact(&mut back)?;
        }
    }
    let start = Instant::now();
    while rtts[1].len() < samples && start.elapsed() < time {
        for (s, v) in conns.iter_mut().zip(rtts.iter_mut()) {
            for _ in 0..BATCH {
                let t = Instant::now();
                s.write_all(&msg)?;
                s.read_exact(&mut back)?;
                v.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    for s in &conns {
        let _ = s.shutdown(Shutdown::Both);
    }
    let [x, y] = rtts;
    Ok((x, y))
}

#[derive(Debug, Default, Clone, Copy)]
pub struct ConnRate {
    pub ok: u64,
    /// Refused: RST in answer to the SYN, or a reset during the exchange.
    pub refused: u64,
    /// Anything else (timeouts, short echo).
    pub failed: u64,
    pub elapsed: Duration,
}

impl ConnRate {
    pub fn per_s(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

enum Outcome {
    Ok,
    Refused,
    Failed,
}

fn one_echo_connection(addr: SocketAddr) -> Outcome {
    let classify = |e: io::Error| match e.kind() {
        ErrorKind::ConnectionRefused
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted => Outcome::Refused,
        _ => Outcome::Failed,
    };
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        Ok(s) => s,
        Err(e) => return classify(e),
    };
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let msg = [0x37u8; 64];
    let mut back = [0u8; 64];
    if let Err(e) = s.write_all(&msg).and_then(|_| s.read_exact(&mut back)) {
        return classify(e);
    }
    if back != msg {
        return Outcome::Failed;
    }
    Outcome::Ok
}

/// `clients` threads, each: connect, one 64-byte echo, close; until `total` connections or `time`.
/// Must be called from a thread inside the namespace; the client threads enter it too.
pub fn conn_rate(
    ns: &crate::sys::Netns,
    addr: SocketAddr,
    clients: usize,
    total: u64,
    time: Duration,
) -> Result<ConnRate, String> {
    let issued = Arc::new(AtomicU64::new(0));
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let barrier = Arc::new(Barrier::new(clients + 1));
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (issued, counts, barrier) = (issued.clone(), counts.clone(), barrier.clone());
        handles.push(ns.spawn(move || {
            barrier.wait();
            let start = Instant::now();
            while start.elapsed() < time && issued.fetch_add(1, Ordering::Relaxed) < total {
                let i = match one_echo_connection(addr) {
                    Outcome::Ok => 0,
                    Outcome::Refused => 1,
                    Outcome::Failed => 2,
                };
                counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // The clock starts when every client is ready to go.
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("client thread cannot enter the namespace: {e}")),
            Err(_) => return Err("client thread panicked".into()),
        }
    }
    Ok(ConnRate {
        ok: counts[0].load(Ordering::Relaxed),
        refused: counts[1].load(Ordering::Relaxed),
        failed: counts[2].load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    })
}

/// Opens up to `n` idle connections with `threads` threads, within `time`. Returns them (open) and how
/// many attempts failed.
pub fn open_idle(
    ns: &crate::sys::Netns,
    addr: SocketAddr,
    n: usize,
    threads: usize,
    time: Duration,
) -> Result<(Vec<TcpStream>, u64), String> {
    let failed = Arc::new(AtomicU64::new(0));
    let issued = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..threads {
        let (failed, issued) = (failed.clone(), issued.clone());
        handles.push(ns.spawn(move || {
            let start = Instant::now();
            let mut mine = Vec::new();
            while start.elapsed() < time && issued.fetch_add(1, Ordering::Relaxed) < n as u64 {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
                    Ok(s) => mine.push(s),
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            mine
        }));
    }
    let mut all = Vec::with_capacity(n);
    for h in handles {
        match h.join() {
            Ok(Ok(v)) => all.extend(v),
            Ok(Err(e)) => return Err(format!("client thread cannot enter the namespace: {e}")),
            Err(_) => return Err("client thread panicked".into()),
        }
    }
    Ok((all, failed.load(Ordering::Relaxed)))
}
