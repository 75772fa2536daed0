//! `wire_gbps`: the userspace stack's own ceiling, with no system calls. A server [`Stack`] serving
//! discard sits on one end of an in-memory [`wire`]; a bare smoltcp client (Interface + SocketSet on a
//! [`Nic`]) on the other end sends to it. Both run in this thread, one after the other, like two loops
//! sharing a core; the figure counts bytes the server acknowledged.

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SInstant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};
use std::time::{Duration, Instant, SystemTime};

use tapstack::internals::{
    client_stack_config, parse_mac, wire, FrameIo, Nic, Stack, StackConfig, Status, Tracer,
    INGRESS_BUDGET, SERVER, SERVER_MAC, TCP_BUFFER,
};
use tapstack::trace::TraceConfig;
use tapstack::{ServiceKind, Settings};

use crate::peers::{Limit, Transfer};

pub fn wire_transfer(limit: Limit) -> Result<Transfer, String> {
    let t0 = Instant::now();
    let now = || SInstant::from_micros(t0.elapsed().as_micros() as i64);
    let (server_end, client_end) = wire();

    // The server: tapstack's own Stack, as the reactor drives it (ingress, services, egress).
    let tracer = Tracer::new(
        TraceConfig {
            quiet: true,
            device: "wire".into(),
            ..TraceConfig::default()
        },
        SystemTime::now(),
    )
    .map_err(|e| format!("tracer: {e}"))?;
    let sport = Nic::new(Box::new(server_end) as Box<dyn FrameIo>, tracer);
    let scfg = StackConfig {
        mac: parse_mac(SERVER_MAC).map_err(|e| e.to_string())?,
        addrs: vec![IpCidr::new(IpAddress::Ipv4(SERVER), 24)],
        gateway_v4: None,
        gateway_v6: None,
        random_seed: 1,
        max_connections: 16,
        tcp_buffer: TCP_BUFFER,
    };
    let mut server = Stack::new(&scfg, sport, now());
    server.serve_tcp(ServiceKind::Discard, 9);
    let mut status = Status::default();
    let settings = Settings::default();

    // The client: bare smoltcp with the same buffer size, where the demo's client stack would sit.
    // Its IPv4 address alone: the transfer runs over IPv4.
    let demo_client = client_stack_config(scfg.random_seed);
    let mut cport = Nic::new(client_end, ());
    let mut ccfg = Config::new(HardwareAddress::Ethernet(demo_client.mac));
    ccfg.random_seed = demo_client.random_seed;
    let mut ciface = Interface::new(ccfg, &mut cport, now());
    ciface.update_ip_addrs(|a| {
        let _ = a.push(demo_client.addrs[0]);
    });
    let mut csockets = SocketSet::new(Vec::new());
    let sock = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
        tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
    );
    let ch = csockets.add(sock);
    csockets
        .get_mut::<tcp::Socket>(ch)
        .connect(ciface.context(), (SERVER, 9), 49152)
        .map_err(|e| format!("connect: {e}"))?;

    let chunk = vec![0x5au8; TCP_BUFFER];
    let mut queued = 0u64;
    let mut start: Option<Instant> = None;
    let give_up = Instant::now() + limit.time + Duration::from_secs(5);
    loop {
        let t = now();
        // Client: frames in, data into the socket, frames out.
        while cport.fill_rx(t) {
            ciface.poll_ingress_single(t, &mut cport, &mut csockets);
        }
        let s = csockets.get_mut::<tcp::Socket>(ch);
        if s.state() == tcp::State::Established && start.is_none() {
            start = Some(Instant::now());
        }
        let acked = queued - s.send_queue() as u64;
        if let Some(st) = start {
            if acked >= limit.bytes || st.elapsed() >= limit.time {
                return Ok(Transfer {
                    bytes: acked,
                    elapsed: st.elapsed(),
                });
            }
        }
        if s.can_send() && queued < limit.bytes {
            let want = ((limit.bytes - queued) as usize).min(chunk.len());
            queued += s.send_slice(&chunk[..want]).unwrap_or(0) as u64;
        }
        while ciface.poll_egress(t, &mut cport, &mut csockets) != smoltcp::iface::PollResult::None {
        }

        // Server: one reactor turn without the waiting.
        let t = now();
        server.serve_turn(t, SystemTime::now(), INGRESS_BUDGET, &mut status, &settings);

        if Instant::now() > give_up {
            return Err("the wire transfer never finished (stalled?)".into());
        }
    }
}

/// `wire_conn_us`: what one connection (connect, a 64-byte echo, close; 64 at a time) costs the two
/// userspace stacks on the in-memory wire, in microseconds of this thread: no system calls, no
/// scheduler, so it moves little with the machine's load and shows changes to the stack and the
/// tracer that the TAP figures bury in kernel time. Both stacks are tapstack's (the client's tracer is
/// silent, the server's follows flows as `-q` does); virtual time.
pub fn wire_conns(total: usize) -> Result<(usize, Duration), String> {
    use tapstack::harness::Harness;
    let mut h = Harness::builder()
        .serve(ServiceKind::Echo, 7)
        .trace(TraceConfig {
            quiet: true,
            device: "wire".into(),
            ..TraceConfig::default()
        })
        .max_connections(256)
        .build();
    let msg = [0x37u8; 64];
    let t0 = Instant::now();
    let mut done = 0;
    while done < total {
        let batch: Vec<_> = (0..64.min(total - done))
            .map(|_| h.connect(7).map_err(|e| format!("connect: {e:?}")))
            .collect::<Result<_, _>>()?;
        let mut got = vec![0usize; batch.len()];
        let mut sent = vec![false; batch.len()];
        let ok = h.run_until(Duration::from_secs(10), |h| {
            for (i, &c) in batch.iter().enumerate() {
                if !sent[i] && h.is_established(c) {
                    sent[i] = h.send(c, &msg) == msg.len();
                }
                got[i] += h.recv(c).len();
            }
            got.iter().all(|&n| n == msg.len())
        });
        if !ok {
            return Err("wire connections: echoes did not come back".into());
        }
        for &c in &batch {
            h.close(c);
        }
        if !h.run_until(Duration::from_secs(10), |h| {
            batch.iter().all(|&c| h.is_closed(c)) && h.connection_count() == 0
        }) {
            return Err("wire connections: did not close".into());
        }
        done += batch.len();
    }
    Ok((done, t0.elapsed()))
}
