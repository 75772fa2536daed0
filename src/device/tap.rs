//! Our own TAP device: `/dev/net/tun` with `IFF_TAP | IFF_NO_PI`, non-blocking.
//!
//! This is the only module with `unsafe` (ioctl and raw reads/writes, and [`fd_readable`] for the
//! client modes' standard input). Unlike smoltcp's
//! `TunTapInterface`, it never panics on I/O errors: a frame the link cannot take is dropped and counted,
//! the loop keeps running and recovers when the link comes back, and only a device that is gone for
//! good (deleted under us) ends the run, with its name in the error.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{FrameIo, TxOutcome};

pub const ETHERNET_HEADER: usize = 14;

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

pub struct TapDevice {
    fd: OwnedFd,
    name: String,
    mtu: usize,
}

fn ifreq_for(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

/// The interface's MTU, read with SIOCGIFMTU on a throwaway socket.
fn interface_mtu(name: &str) -> io::Result<usize> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `sock` is a fresh, valid fd that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    let mut req = ifreq_for(name);
    // SAFETY: SIOCGIFMTU reads the name and writes ifru_mtu inside `req`, which outlives the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU as _, &mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled the mtu member of the union.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    Ok(mtu.clamp(576, 65535) as usize)
}

/// Whether an interface of this name exists.
pub fn interface_exists(name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

impl TapDevice {
    /// Attaches to an existing TAP interface. It does not create one: a tap created implicitly would have
    /// no address on the host side, and the user would wonder why nothing answers.
    pub fn open(name: &str) -> Result<TapDevice, TapError> {
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
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
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
        Ok(TapDevice {
            fd,
            name: name.to_string(),
            mtu,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface's IP MTU.
    pub fn mtu(&self) -> usize {
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
pub fn fd_readable(fd: RawFd) -> bool {
    let mut fds = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `fds` is one valid pollfd for the duration of the call; timeout 0 never blocks.
    let r = unsafe { libc::poll(&mut fds, 1, 0) };
    r > 0 && fds.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
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

impl FrameIo for TapDevice {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
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
        loop {
            // SAFETY: writes frame.len() bytes from `frame`, which is valid for reads.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
            if n >= 0 {
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

    fn max_frame(&self) -> usize {
        self.mtu + ETHERNET_HEADER
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
        let e = TapDevice::open("tsnope0").err().expect("no such device");
        let msg = e.to_string();
        assert!(
            msg.contains("tsnope0") && msg.contains("tap-setup.sh"),
            "{msg}"
        );
    }

    #[test]
    fn test_fatal_errors_are_the_gone_ones() {
        assert!(is_fatal(&io::Error::from_raw_os_error(libc::EBADFD)));
        assert!(!is_fatal(&io::Error::from_raw_os_error(libc::EIO)));
        assert!(!is_fatal(&io::Error::from_raw_os_error(libc::EAGAIN)));
    }
}
