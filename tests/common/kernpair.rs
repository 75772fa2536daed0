//! Real Linux TCP to capture: two network namespaces joined by a veth pair, nftables loss, tcpdump,
//! and a small Python client and server (bulk both ways, a half-close). Shared by `tests/read.rs`
//! and `tests/oracle.rs`.

#![allow(dead_code)]

use crate::common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Two namespaces joined by a veth pair; the server's end drops 2% of what arrives (nftables), so
/// Linux TCP recovers with SACK and (fast) retransmissions.
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
}

pub const CLIENT_IP: &str = "10.77.0.1";
pub const SERVER_IP: &str = "10.77.0.2";

impl Pair {
    pub fn new() -> Option<Pair> {
        if !is_root() {
            skip("needs root to join two network namespaces with a veth pair");
            return None;
        }
        let a = Netns::new("rda")?;
        let b = Netns::new("rdb")?;
        a.sh_ok(&format!(
            "ip link add va type veth peer name vb netns {} && ip addr add {CLIENT_IP}/24 dev va && ip link set va up",
            b.name
        ));
        b.sh_ok(&format!(
            "ip addr add {SERVER_IP}/24 dev vb && ip link set vb up"
        ));
        // Frames as the wire carries them: no segmentation offload (64 KiB segments) and checksums
        // computed before capture.
        a.sh("ethtool -K va tx off tso off gso off gro off");
        b.sh("ethtool -K vb tx off tso off gso off gro off");
        b.sh_ok(
            "nft add table inet loss && \
             nft add chain inet loss in '{ type filter hook input priority 0; }' && \
             nft add rule inet loss in tcp dport 5001 numgen random mod 100 '<' 2 drop && \
             nft add rule inet loss in tcp sport 5001 numgen random mod 100 '<' 2 drop",
        );
        Some(Pair { a, b })
    }

    /// tcpdump in the client's namespace with `args`, writing `file`; waits until it listens.
    pub fn tcpdump(&self, file: &Path, args: &[&str]) -> Child {
        let mut c = self
            .a
            .cmd("tcpdump")
            .args(["-Z", "root", "-U", "-w", file.to_str().unwrap()])
            .args(args)
            .arg("tcp")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpdump");
        // It says "listening on ..." once it captures.
        let mut err = c.stderr.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("listening on") {
            use std::io::Read;
            assert!(Instant::now() < deadline, "tcpdump did not start");
            match err.read(&mut buf) {
                Ok(0) | Err(_) => panic!("tcpdump: {}", String::from_utf8_lossy(&seen)),
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        std::thread::spawn(move || {
            use std::io::Read;
            let _ = err.read_to_end(&mut Vec::new());
        });
        c
    }
}

pub fn stop(mut c: Child) {
    let _ = Command::new("kill")
        .args(["-INT", &c.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if c.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}

pub const PY_SERVER: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001)); s.listen(4); s.settimeout(30)
for i in range(int(sys.argv[2])):
    c, _ = s.accept(); c.settimeout(30)
    while c.recv(65536):
        pass
    c.sendall(b"s" * 300000); c.close()
"#;

pub const PY_CLIENT: &str = r#"
import socket, sys
for i in range(int(sys.argv[2])):
    s = socket.create_connection((sys.argv[1], 5001), timeout=30)
    s.sendall(b"c" * 400000); s.shutdown(socket.SHUT_WR)
    n = 0
    while True:
        b = s.recv(65536)
        if not b:
            break
        n += len(b)
    s.close()
    assert n == 300000, n
print("OK")
"#;

/// The server's address behind the router of [`Pair::routed`].
pub const ROUTED_SERVER_IP: &str = "10.77.1.2";

impl Pair {
    /// Client and server with a router namespace between them that loses 2% of the segments each
    /// way (nftables, forward hook). Captured at the client, the server's lost segments never reach
    /// the capture (Wireshark: "previous segment not captured", the client's SACKs and duplicate
    /// ACKs), the client's are lost after it (retransmissions); neither sender knows, as on a real
    /// network. Returns the pair and the router; the server is at [`ROUTED_SERVER_IP`].
    pub fn routed() -> Option<(Pair, Netns)> {
        if !is_root() {
            skip("needs root to join three network namespaces with veth pairs");
            return None;
        }
        let a = Netns::new("rta")?;
        let r = Netns::new("rtr")?;
        let b = Netns::new("rtb")?;
        r.sh_ok(&format!(
            "ip link add ra type veth peer name va netns {a} && \
             ip link add rb type veth peer name vb netns {b} && \
             ip addr add 10.77.0.254/24 dev ra && ip link set ra up && \
             ip addr add 10.77.1.254/24 dev rb && ip link set rb up && \
             sysctl -qw net.ipv4.ip_forward=1",
            a = a.name,
            b = b.name
        ));
        a.sh_ok(&format!(
            "ip addr add {CLIENT_IP}/24 dev va && ip link set va up && ip route add default via 10.77.0.254"
        ));
        b.sh_ok(&format!(
            "ip addr add {ROUTED_SERVER_IP}/24 dev vb && ip link set vb up && ip route add default via 10.77.1.254"
        ));
        for (ns, devs) in [(&a, ["va", ""]), (&b, ["vb", ""]), (&r, ["ra", "rb"])] {
            for d in devs.iter().filter(|d| !d.is_empty()) {
                ns.sh(&format!("ethtool -K {d} tx off tso off gso off gro off"));
            }
        }
        r.sh_ok(
            "nft add table inet loss && \
             nft add chain inet loss fw '{ type filter hook forward priority 0; }' && \
             nft add rule inet loss fw tcp dport 5001 numgen random mod 100 '<' 2 drop && \
             nft add rule inet loss fw tcp sport 5001 numgen random mod 100 '<' 2 drop",
        );
        Some((Pair { a, b }, r))
    }
}
