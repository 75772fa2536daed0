//! Log output buffered per loop turn. env_logger writes each record with its own system call (and
//! its `flush` is a no-op); at thousands of connections a second, with a few narration lines each,
//! that is a large share of the loop. Records land in this buffer instead, and the loop writes it out
//! at most every [`FLUSH_EVERY`], waking up for it if need be, so a line appears within that time.

use std::io::{self, Write};
use std::sync::Mutex;

static BUF: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// How long a line may wait in the buffer.
pub(crate) const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// Past this much, a record writes the buffer out at once (a turn that logs a lot).
const HIGH_WATER: usize = 64 * 1024;

/// The writer to give env_logger (`Target::Pipe`).
pub struct Buffered;

impl Write for Buffered {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let mut g = BUF.lock().unwrap_or_else(|p| p.into_inner());
        g.extend_from_slice(b);
        if g.len() >= HIGH_WATER {
            write_out(&mut g);
        }
        Ok(b.len())
    }

    /// Does nothing: env_logger flushes its pipe target after every record, and writing out then
    /// would make one system call per line again (measured: a tenth of the loop's time at 10,000
    /// connections a second). The loop calls [`flush`] instead.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn write_out(buf: &mut Vec<u8>) {
    // Standard error gone (a closed pipe): there is no one left to tell.
    let _ = io::stderr().lock().write_all(buf);
    buf.clear();
}

/// Whether anything waits to be written.
pub(crate) fn is_empty() -> bool {
    BUF.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
}

/// Writes out what is buffered.
pub fn flush() {
    let mut g = BUF.lock().unwrap_or_else(|p| p.into_inner());
    if !g.is_empty() {
        write_out(&mut g);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_buffered_until_flushed() {
        let mut w = Buffered;
        w.write_all(b"x").unwrap();
        w.flush().unwrap();
        assert!(
            BUF.lock().unwrap().ends_with(b"x"),
            "the writer's flush (env_logger's, after each record) keeps it"
        );
        flush();
        assert!(BUF.lock().unwrap().is_empty());
    }
}
