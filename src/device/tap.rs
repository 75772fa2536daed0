//! Our own TAP device: `/dev/net/tun` with `IFF_TAP | IFF_NO_PI`, non-blocking.
//!
//! This is the only module with `unsafe` (ioctl and raw reads/writes, and [`fd_readable`] for the
//! client modes' standard input). Unlike smoltcp's
//! `TunTapInterface`, it never panics on I/O errors: a frame the link cannot take is dropped and counted,
//! the loop keeps running and recovers when the link comes back, and only a device that is gone for
//! good (deleted under us) ends the run, with its name in the error.

#![allow(unsafe_code)] // The one module that talks to /dev/net/tun: ioctl, read, write on its fd.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{csum, FrameIo, TxOutcome};

pub(crate) const ETHERNET_HEADER: usize = 14;

/// `struct virtio_net_hdr` (legacy, native endian): what precedes every frame with `IFF_VNET_HDR`.
pub(crate) const VNET_HDR: usize = 10;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// With receive offloads the kernel hands over TCP segments up to 64 KiB (GSO) in one frame.
pub(crate) const OFFLOAD_MAX_FRAME: usize = 65535 + ETHERNET_HEADER;

/// Why a TAP device could not be opened.
#[derive(Debug)]
pub enum TapError {
    /// No interface of that name.
    Missing(String),
    /// `/dev/net/tun` absent (no tun module) .
    NoTunDevice(io::Error),
    /// Not allowed to open `/dev/net/tun` or to attach to the interface.
    Permission(String, io::Error),
    /// The interface exists but is not a TAP device we can attach to (a TUN, a veth, busy...).
    NotTap(String, io::Error),
    Other(String, io::Error),
}

impl fmt::Display for TapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TapError::Missing(n) => write!(
                f,
                "TAP device {n} does not exist: create it once with `sudo ./tap-setup.sh --name {n}`"
            ),
            TapError::NoTunDevice(e) => write!(
                f,
                "cannot open /dev/net/tun ({e}): is the tun module loaded (`sudo modprobe tun`)?"
            ),
            TapError::Permission(n, e) => write!(
                f,
                "no permission to attach to TAP device {n} ({e}): create it for your user with `sudo ./tap-setup.sh --name {n}`, or run as root"
            ),
            TapError::NotTap(n, e) => write!(
                f,
                "cannot attach to {n} as a TAP device ({e}): is it a TAP device, and is no other program attached?"
            ),
            TapError::Other(n, e) => write!(f, "cannot open TAP device {n}: {e}"),
        }
    }
}

impl std::error::Error for TapError {}

pub(crate) struct TapDevice {
    fd: OwnedFd,
    name: String,
    mtu: usize,
    /// Frames carry a virtio-net header, and the kernel may send 64 KiB TCP segments with partial
    /// checksums (checksum and segmentation offload towards us).
    offload: bool,
    /// A write to a tap whose link is down succeeds and the kernel drops the frame out of sight; so the
    /// up flag is looked at (at most every [`LINK_CHECK_EVERY`]) and such frames are counted here.
    link_up: bool,
    link_checked: Option<std::time::Instant>,
}

fn ifreq_for(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

/// Runs one interface query (`SIOCGIFMTU`, `SIOCGIFFLAGS`) on a throwaway socket; the kernel fills
/// the answer into the returned `ifreq`.
fn interface_query(name: &str, request: libc::c_ulong) -> io::Result<libc::ifreq> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `sock` is a fresh, valid fd that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    let mut req = ifreq_for(name);
    // SAFETY: both requests read the name and write one member of the union inside `req`, which
    // outlives the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), request as _, &mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(req)
}

/// The interface's MTU.
fn interface_mtu(name: &str) -> io::Result<usize> {
    let req = interface_query(name, libc::SIOCGIFMTU as libc::c_ulong)?;
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    Ok(mtu.clamp(576, 65535) as usize)
}

/// The interface's flags (IFF_UP, ...).
fn interface_flags(name: &str) -> io::Result<libc::c_int> {
    let req = interface_query(name, libc::SIOCGIFFLAGS as libc::c_ulong)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_flags } as libc::c_int)
}

/// The interface's transmit queue length (`ip link set dev NAME txqueuelen N`): how many frames the
/// kernel holds for us while we are busy; for a TAP device the size of the ring we read from.
fn interface_txqueuelen(name: &str) -> io::Result<u64> {
    let req = interface_query(name, libc::SIOCGIFTXQLEN as libc::c_ulong)?;
    // SAFETY: SIOCGIFTXQLEN filled the `int` member of the union (ifr_qlen, which libc names
    // ifru_ifindex: the same `int` at the same place).
    let qlen = unsafe { req.ifr_ifru.ifru_ifindex };
    Ok(qlen.max(0) as u64)
}

/// The kernel's own view of a TAP device's queue, as `ip -s link show NAME` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TapQueueStats {
    /// `txqueuelen`: frames the kernel queues towards tapstack.
    pub(crate) queue_len: u64,
    /// Frames the kernel dropped on their way to tapstack (the queue was full): TX dropped.
    pub(crate) tx_dropped: u64,
    /// Frames from tapstack the kernel dropped: RX dropped.
    pub(crate) rx_dropped: u64,
    /// TX FIFO errors.
    pub(crate) tx_fifo_errors: u64,
}

/// Reads a TAP device's queue counters now and then (never per frame) and says when the kernel
/// started dropping frames queued for us.
///
/// The counters come from `/proc/self/net/dev`, which always shows the reading process's network
/// namespace, whereas `/sys/class/net` shows the namespace of whoever mounted sysfs: right under
/// `ip netns exec` (which mounts a fresh sysfs), but another namespace's devices under `nsenter -n`
/// or `unshare -n` without a remount. They are the same numbers (the kernel's `dev_get_stats`) as
/// `/sys/class/net/NAME/statistics/{tx,rx}_dropped` and `ip -s link`. The queue length comes from
/// `SIOCGIFTXQLEN` on our own socket, namespace-correct for the same reason.
pub(crate) struct TapQueueWatch {
    name: String,
    /// The file's text, kept so that a reading allocates nothing once it has grown to size.
    buf: String,
    /// TX dropped as last reported in a warning (or at the first reading: drops from before this
    /// run are not ours to warn about).
    reported: Option<u64>,
    warned_at: Option<std::time::Instant>,
}

/// At most one warning about the kernel's drops per this interval.
pub(crate) const TAP_DROP_WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl TapQueueWatch {
    pub(crate) fn new(name: &str) -> TapQueueWatch {
        TapQueueWatch {
            name: name.to_string(),
            buf: String::with_capacity(4096),
            reported: None,
            warned_at: None,
        }
    }

    /// The device's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Reads the counters now; `None` where they cannot be read (no /proc, the device gone).
    pub(crate) fn read(&mut self) -> Option<TapQueueStats> {
        use std::io::Read;
        self.buf.clear();
        std::fs::File::open("/proc/self/net/dev")
            .and_then(|mut f| f.read_to_string(&mut self.buf))
            .ok()?;
        let mut s = parse_net_dev(&self.buf, &self.name)?;
        s.queue_len = interface_txqueuelen(&self.name).unwrap_or(0);
        Some(s)
    }

    /// Reads the counters and logs the warning when TX dropped grew (at most once per
    /// [`TAP_DROP_WARN_EVERY`]; drops in between are told in the next one).
    pub(crate) fn sample(&mut self, now: std::time::Instant) -> Option<TapQueueStats> {
        let s = self.read()?;
        let reported = *self.reported.get_or_insert(s.tx_dropped);
        if s.tx_dropped > reported
            && self
                .warned_at
                .is_none_or(|t| now.duration_since(t) >= TAP_DROP_WARN_EVERY)
        {
            self.warned_at = Some(now);
            self.reported = Some(s.tx_dropped);
            log::warn!(
                target: "tapstack",
                "{}: the kernel dropped {} frames queued for tapstack (txqueuelen {}): raise it (tap-setup.sh sets 10000)",
                self.name,
                s.tx_dropped - reported,
                s.queue_len
            );
        }
        Some(s)
    }
}

/// The drop counters of `name` in the text of `/proc/net/dev`: after `NAME:` come 8 receive
/// columns (bytes packets errs drop fifo frame compressed multicast) and 8 transmit ones (bytes
/// packets errs drop fifo colls carrier compressed).
fn parse_net_dev(text: &str, name: &str) -> Option<TapQueueStats> {
    let line = text.lines().find_map(|l| {
        let (dev, rest) = l.split_once(':')?;
        (dev.trim() == name).then_some(rest)
    })?;
    let mut cols = line.split_whitespace().map(|c| c.parse::<u64>().ok());
    let mut col = |skip: usize| cols.nth(skip).flatten();
    let rx_dropped = col(3)?;
    let tx_dropped = col(7)?;
    let tx_fifo_errors = col(0)?;
    Some(TapQueueStats {
        queue_len: 0,
        tx_dropped,
        rx_dropped,
        tx_fifo_errors,
    })
}

/// How long a look at the link's up flag stays good.
const LINK_CHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether an interface of this name exists.
pub(crate) fn interface_exists(name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

impl TapDevice {
    /// Attaches to an existing TAP interface. It does not create one: a tap created implicitly would
    /// have no address on the host side, and the user would wonder why nothing answers. `offload` asks the kernel for large TCP segments (one read instead of
    /// up to 44) and leaves their checksums to us. Where the kernel refuses, the device runs without.
    pub(crate) fn open_with(name: &str, offload: bool) -> Result<TapDevice, TapError> {
        if !interface_exists(name) {
            return Err(TapError::Missing(name.to_string()));
        }
        let path = c"/dev/net/tun";
        // SAFETY: plain open(2) of a constant path.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) => TapError::Permission(name.to_string(), e),
                _ => TapError::NoTunDevice(e),
            });
        }
        // SAFETY: `fd` is a fresh, valid fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut req = ifreq_for(name);
        let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
        if offload {
            flags |= libc::IFF_VNET_HDR;
        }
        req.ifr_ifru.ifru_flags = flags as libc::c_short;
        // SAFETY: TUNSETIFF reads `req`, which outlives the call.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, &req) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => TapError::Permission(name.to_string(), e),
                Some(libc::EINVAL) | Some(libc::EBUSY) => TapError::NotTap(name.to_string(), e),
                _ => TapError::Other(name.to_string(), e),
            });
        }
        let mtu = interface_mtu(name).map_err(|e| TapError::Other(name.to_string(), e))?;
        // Offload features outlive the file descriptor that set them: without this, a `--no-offload`
        // run after an offload run on the same device is handed frames whose checksums the kernel left
        // for the reader to finish, and drops every one as corrupt.
        {
            let feats = if offload {
                libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6
            } else {
                0
            };
            // SAFETY: TUNSETOFFLOAD takes its argument by value.
            let r = unsafe {
                libc::ioctl(
                    fd.as_raw_fd(),
                    libc::TUNSETOFFLOAD as _,
                    feats as libc::c_ulong,
                )
            };
            if r < 0 && offload {
                log::info!(
                    target: "tapstack",
                    "{name}: the kernel refused checksum/segmentation offload ({}); running without",
                    io::Error::last_os_error()
                );
            } else if r < 0 {
                log::warn!(
                    target: "tapstack",
                    "{name}: cannot turn the device's offloads off ({}); frames may arrive with unfinished checksums",
                    io::Error::last_os_error()
                );
            }
        }
        Ok(TapDevice {
            fd,
            name: name.to_string(),
            mtu,
            offload,
            link_up: true,
            link_checked: None,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The interface's IP MTU.
    pub(crate) fn mtu(&self) -> usize {
        self.mtu
    }

    fn gone(&self, e: io::Error) -> io::Error {
        io::Error::new(
            e.kind(),
            format!("TAP device {} is gone ({e}); was it deleted?", self.name),
        )
    }
}

/// Whether a read of `fd` would return at once (data or end of file). poll(2) is level-triggered, so
/// unlike the loop's edge-triggered readiness it can be asked before every read of a blocking fd.
pub(crate) fn fd_readable(fd: RawFd) -> bool {
    let mut fds = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `fds` is one valid pollfd for the duration of the call; timeout 0 never blocks.
    let r = unsafe { libc::poll(&mut fds, 1, 0) };
    r > 0 && fds.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

/// A one-shot `CLOCK_MONOTONIC` timer as a file descriptor (timerfd(2)), for a loop that must wake
/// within microseconds of a deadline: epoll's own timeout has millisecond resolution (mio rounds it
/// up), which would add up to a millisecond to every delay the relay holds a frame for.
pub(crate) struct TimerFd {
    fd: OwnedFd,
}

impl TimerFd {
    pub(crate) fn new() -> io::Result<TimerFd> {
        // SAFETY: plain timerfd_create(2); the result is checked before use.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh, valid fd that nothing else owns.
        Ok(TimerFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Fires once, `after` from now (at once for zero); replaces any earlier setting.
    pub(crate) fn arm(&self, after: std::time::Duration) -> io::Result<()> {
        // An all-zero it_value would disarm the timer instead.
        let after = after.max(std::time::Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs().min(i32::MAX as u64) as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is valid for reads during the call; the old value is not asked for.
        let r =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Consumes an expiry, so that the (edge-triggered) readiness can fire again.
    pub(crate) fn clear(&self) {
        let mut ticks = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `ticks`; EAGAIN (not expired) is fine.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), ticks.as_mut_ptr().cast(), 8) };
    }
}

impl AsRawFd for TimerFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsRawFd for TapDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Errors after which the fd will never work again: the interface was deleted.
fn is_fatal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADFD) | Some(libc::ENODEV) | Some(libc::ENXIO) | Some(libc::EBADF)
    )
}

/// The virtio-net header that asks the kernel to segment `frame` (Ethernet, IPv4 or IPv6, TCP) into
/// `mss`-sized segments. The TCP checksum field is rewritten to the pseudo-header sum that
/// `NEEDS_CSUM` expects (the kernel computes each segment's checksum from it).
fn gso_header(frame: &mut [u8], mss: u16) -> Option<[u8; VNET_HDR]> {
    let t = csum::tcp_in_frame(frame)?;
    frame[t.start + 16..t.start + 18].copy_from_slice(&t.pseudo_sum.to_be_bytes());
    let (tcp, tcp_hdr) = (t.start, t.header_len);
    let gso_type = if t.v6 {
        VIRTIO_NET_HDR_GSO_TCPV6
    } else {
        VIRTIO_NET_HDR_GSO_TCPV4
    };
    let mut hdr = [0u8; VNET_HDR];
    hdr[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    hdr[1] = gso_type;
    hdr[2..4].copy_from_slice(&((tcp + tcp_hdr) as u16).to_ne_bytes());
    hdr[4..6].copy_from_slice(&mss.to_ne_bytes());
    hdr[6..8].copy_from_slice(&(tcp as u16).to_ne_bytes());
    hdr[8..10].copy_from_slice(&16u16.to_ne_bytes());
    Some(hdr)
}

impl TapDevice {
    fn read_offloaded(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut hdr = [0u8; VNET_HDR];
        loop {
            let iov = [
                libc::iovec {
                    iov_base: hdr.as_mut_ptr().cast(),
                    iov_len: hdr.len(),
                },
                libc::iovec {
                    iov_base: buf.as_mut_ptr().cast(),
                    iov_len: buf.len(),
                },
            ];
            // SAFETY: both iovecs point at live buffers valid for writes of their lengths.
            let n = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
            if n >= 0 {
                let n = (n as usize).saturating_sub(VNET_HDR);
                if hdr[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
                    let start = u16::from_ne_bytes([hdr[6], hdr[7]]) as usize;
                    let offset = u16::from_ne_bytes([hdr[8], hdr[9]]) as usize;
                    csum::complete(&mut buf[..n], start, offset);
                }
                return Ok(Some(n));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(None),
                io::ErrorKind::Interrupted => continue,
                _ if is_fatal(&e) => return Err(self.gone(e)),
                _ => return Ok(None),
            }
        }
    }

    fn write_with_header(&mut self, hdr: &[u8; VNET_HDR], frame: &[u8]) -> isize {
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut _,
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: frame.as_ptr() as *mut _,
                iov_len: frame.len(),
            },
        ];
        // SAFETY: both iovecs point at live buffers valid for reads of their lengths; writev does not
        // write through them despite the `*mut` in `iovec`.
        unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) }
    }
}

impl TapDevice {
    fn link_is_up(&mut self) -> bool {
        let now = std::time::Instant::now();
        if self
            .link_checked
            .is_none_or(|t| now.duration_since(t) >= LINK_CHECK_EVERY)
        {
            self.link_checked = Some(now);
            // An interface that cannot be asked is not declared down: the write will tell.
            self.link_up = interface_flags(&self.name).map_or(true, |f| f & libc::IFF_UP != 0);
        }
        self.link_up
    }

    /// Runs one write (retried on EINTR) and says what became of the frame: a frame the link cannot
    /// take now is dropped with a reason; only a device that is gone is an error.
    fn write_retrying(
        &mut self,
        mut write: impl FnMut(&mut Self) -> isize,
    ) -> io::Result<TxOutcome> {
        if !self.link_is_up() {
            return Ok(TxOutcome::Dropped("tx: link down"));
        }
        loop {
            if write(self) >= 0 {
                return Ok(TxOutcome::Sent);
            }
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) => {
                    Ok(TxOutcome::Dropped("tx: tap queue full"))
                }
                Some(libc::EIO) | Some(libc::ENETDOWN) => Ok(TxOutcome::Dropped("tx: link down")),
                Some(libc::EINVAL) | Some(libc::EMSGSIZE) => {
                    Ok(TxOutcome::Dropped("tx: frame rejected by tap"))
                }
                _ if is_fatal(&e) => Err(self.gone(e)),
                _ => Ok(TxOutcome::Dropped("tx: tap write error")),
            };
        }
    }
}

impl FrameIo for TapDevice {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if self.offload {
            return self.read_offloaded(buf);
        }
        loop {
            // SAFETY: reads at most buf.len() bytes into `buf`, which is valid for writes.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(Some(n as usize));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(None),
                io::ErrorKind::Interrupted => continue,
                _ if is_fatal(&e) => return Err(self.gone(e)),
                // Anything else (EIO while the link flaps): nothing to read now, keep going.
                _ => return Ok(None),
            }
        }
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<TxOutcome> {
        if self.offload {
            let hdr = [0u8; VNET_HDR];
            return self.write_retrying(|t| t.write_with_header(&hdr, frame));
        }
        self.write_retrying(|t| {
            // SAFETY: writes frame.len() bytes from `frame`, which is valid for reads.
            unsafe { libc::write(t.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) }
        })
    }

    fn segments_tcp(&self) -> bool {
        self.offload
    }

    /// Writes one large TCP segment with a GSO header: the kernel cuts it into `mss`-sized segments
    /// and fills in their checksums, so one write replaces up to 44.
    fn send_segmented(&mut self, frame: &mut [u8], mss: u16) -> io::Result<TxOutcome> {
        let Some(hdr) = gso_header(frame, mss) else {
            // Not a TCP segment we can describe: send it as it is.
            return self.send(frame);
        };
        self.write_retrying(|t| t.write_with_header(&hdr, frame))
    }

    fn wire_mtu(&self) -> usize {
        self.mtu
    }

    fn max_frame(&self) -> usize {
        if self.offload {
            OFFLOAD_MAX_FRAME
        } else {
            self.mtu + ETHERNET_HEADER
        }
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_missing_device_names_it_and_points_to_setup() {
        let e = TapDevice::open_with("tsnope0", true)
            .err()
            .expect("no such device");
        let msg = e.to_string();
        assert!(
            msg.contains("tsnope0") && msg.contains("tap-setup.sh"),
            "{msg}"
        );
    }

    #[test]
    fn test_complete_checksum_matches_a_full_computation() {
        // An IPv4 TCP segment from smoltcp with a correct checksum; replace the checksum by the
        // pseudo-header partial sum, as a kernel with NEEDS_CSUM would leave it, and complete it.
        use smoltcp::phy::ChecksumCapabilities;
        use smoltcp::wire::{IpAddress, Ipv4Address, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber};
        let (src, dst) = (
            Ipv4Address::new(192, 168, 69, 100),
            Ipv4Address::new(192, 168, 69, 1),
        );
        let payload = [7u8; 1001];
        let repr = TcpRepr {
            src_port: 40000,
            dst_port: 9,
            control: TcpControl::Psh,
            seq_number: TcpSeqNumber(5),
            ack_number: Some(TcpSeqNumber(9)),
            window_len: 512,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &payload,
        };
        let mut seg = vec![0u8; repr.buffer_len()];
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut seg),
            &IpAddress::Ipv4(src),
            &IpAddress::Ipv4(dst),
            &ChecksumCapabilities::default(),
        );
        let good = [seg[16], seg[17]];
        // Pseudo-header sum: addresses, protocol 6, TCP length; not complemented.
        let mut sum: u32 = 0;
        for b in [src.octets(), dst.octets()] {
            sum +=
                u16::from_be_bytes([b[0], b[1]]) as u32 + u16::from_be_bytes([b[2], b[3]]) as u32;
        }
        sum += 6 + seg.len() as u32;
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        seg[16..18].copy_from_slice(&(sum as u16).to_be_bytes());
        csum::complete(&mut seg, 0, 16);
        assert_eq!([seg[16], seg[17]], good);
        // Nonsense offsets change nothing and do not panic.
        let before = seg.clone();
        csum::complete(&mut seg, 5000, 16);
        csum::complete(&mut seg, 0, 5000);
        assert_eq!(seg, before);
    }

    #[test]
    fn test_net_dev_columns_are_the_drop_counters() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:  154518    2219    0    0    0     0          0         0   154518    2219    0    0    0     0       0          0\n  \
tap10:       1       2    3    4    5     6          7         8        9      10   11   12   13    14      15         16\n   \
tap1:       0       0    0    7    0     0          0         0        0       0    0 3200    9     0       0          0\n";
        let s = parse_net_dev(text, "tap1").expect("tap1 is listed");
        assert_eq!((s.rx_dropped, s.tx_dropped, s.tx_fifo_errors), (7, 3200, 9));
        let s = parse_net_dev(text, "tap10").expect("tap10 is listed");
        assert_eq!((s.rx_dropped, s.tx_dropped, s.tx_fifo_errors), (4, 12, 13));
        assert_eq!(parse_net_dev(text, "tap"), None);
        assert_eq!(parse_net_dev("tap1: 1 2 3\n", "tap1"), None);
    }

    #[test]
    fn test_fatal_errors_are_the_gone_ones() {
        assert!(is_fatal(&io::Error::from_raw_os_error(libc::EBADFD)));
        assert!(!is_fatal(&io::Error::from_raw_os_error(libc::EIO)));
        assert!(!is_fatal(&io::Error::from_raw_os_error(libc::EAGAIN)));
    }
}
