//! Standard input under `--stdin-exit`: watched and read without ever blocking the loop; its end
//! begins a clean shutdown.

use mio::unix::SourceFd;
use mio::Interest;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd};

use super::STDIN;

/// Reads of standard input per loop turn at most (of [`STDIN_CHUNK`] bytes): a writer that never
/// stops gets 256 KiB a turn read and discarded, and the loop serves everything else in between.
const STDIN_READS: usize = 16;
const STDIN_CHUNK: usize = 16 * 1024;

/// Standard input under `--stdin-exit`, read (and discarded) without ever blocking the loop.
///
/// No `O_NONBLOCK` is set on the standard input we were given: that flag belongs to the open file
/// description, which the shell or harness shares (a shell would find its terminal non-blocking after
/// we exit), and setting or restoring it needs `fcntl`, outside `device::tap` the crate has no
/// `unsafe`. Instead:
/// - a pipe, FIFO or terminal is opened again through `/proc/self/fd/0` with `O_NONBLOCK`: a new
///   open file description of our own on the same pipe or terminal, whose reads return `WouldBlock`
///   instead of waiting;
/// - where that cannot be done (a socket: ENXIO; no /proc), a duplicate of the descriptor, unchanged;
/// - either way each read is preceded by poll(2) with a zero timeout ([`fd_readable`], level-triggered,
///   so it can be asked before every read), so even the blocking duplicate is read only when a read
///   returns at once (data or end of file).
///
/// [`fd_readable`]: crate::device::tap::fd_readable
pub(super) struct StdinWatch {
    pub(super) file: File,
    /// Readable and not known to be drained: edge-triggered readiness will not say so again.
    pub(super) ready: bool,
}

/// What one turn's reading of standard input found.
#[derive(Debug)]
pub(super) enum StdinRead {
    /// Nothing more to read now.
    Drained,
    /// The turn's reads are used up and more may be waiting.
    More,
    /// End of file.
    Closed,
    Failed(io::Error),
}

impl StdinWatch {
    /// Opens `fd` for reading as described above and registers it under [`STDIN`].
    pub(super) fn open(fd: BorrowedFd<'_>, registry: &mio::Registry) -> io::Result<StdinWatch> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let file = std::fs::OpenOptions::new()
            .read(true)
            // O_NOCTTY: a terminal opened again must not become our controlling terminal.
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .or_else(|_| fd.try_clone_to_owned().map(File::from))?;
        registry.register(&mut SourceFd(&file.as_raw_fd()), STDIN, Interest::READABLE)?;
        // Input may have arrived before the registration: look once.
        Ok(StdinWatch { file, ready: true })
    }

    pub(super) fn read(&mut self) -> StdinRead {
        let mut buf = [0u8; STDIN_CHUNK];
        for _ in 0..STDIN_READS {
            if !crate::device::tap::fd_readable(self.file.as_raw_fd()) {
                return StdinRead::Drained;
            }
            match self.file.read(&mut buf) {
                Ok(0) => return StdinRead::Closed,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return StdinRead::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return StdinRead::Failed(e),
            }
        }
        StdinRead::More
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::Poll;
    use std::io::Write;
    use std::os::fd::AsFd;

    /// The open file's flags, from /proc/self/fdinfo (no `fcntl`, no `unsafe`).
    fn nonblocking(fd: &impl AsRawFd) -> bool {
        let info =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|f| i32::from_str_radix(f.trim(), 8).unwrap())
            .unwrap();
        flags & libc::O_NONBLOCK != 0
    }

    /// A pipe (a harness's stdin): opened again, non-blocking, with the given descriptor's flags
    /// untouched; what is there is read, an empty pipe is `Drained` instead of a wait, its end `Closed`.
    #[test]
    fn test_stdin_watch_on_a_pipe_never_waits_and_sees_the_end() {
        let poll = Poll::new().unwrap();
        let (r, mut w) = std::io::pipe().unwrap();
        let mut watch = StdinWatch::open(r.as_fd(), poll.registry()).unwrap();
        assert!(watch.ready, "input before the registration is looked for");
        assert!(nonblocking(&watch.file));
        assert!(
            !nonblocking(&r),
            "the shared descriptor's flags must not change"
        );
        assert!(matches!(watch.read(), StdinRead::Drained));
        w.write_all(&[b'x'; 5000]).unwrap();
        assert!(matches!(watch.read(), StdinRead::Drained));
        drop(w);
        assert!(matches!(watch.read(), StdinRead::Closed));
    }

    /// A socket cannot be opened through /proc: a duplicate, unchanged (still blocking), read only when
    /// poll(2) says a read returns at once.
    #[test]
    fn test_stdin_watch_on_a_socket_never_waits_and_sees_the_end() {
        let poll = Poll::new().unwrap();
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut watch = StdinWatch::open(a.as_fd(), poll.registry()).unwrap();
        assert!(!nonblocking(&watch.file));
        assert!(matches!(watch.read(), StdinRead::Drained));
        b.write_all(b"a line\n").unwrap();
        assert!(matches!(watch.read(), StdinRead::Drained));
        drop(b);
        assert!(matches!(watch.read(), StdinRead::Closed));
    }
}
