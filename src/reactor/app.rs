//! What runs on the loop beside the services (the demo's tour, `connect`, `get`), and how a run ends
//! badly.

use smoltcp::time::Instant;
use std::fmt;
use std::io;

use super::TracedStack;
use crate::device::tap::TapError;
use crate::host::BindError;

/// Something that runs on the loop beside the services: the demo's tour, `connect`, `get`.
pub(crate) trait App {
    /// Does what it can now on `stack` (the stack it was given: the TAP stack for `connect`, the
    /// client stack on the wire in the demo). Returns whether it made progress.
    fn poll(&mut self, now: Instant, stack: &mut TracedStack) -> bool;
    /// When it wants to be polled again at the latest.
    fn poll_at(&self) -> Option<Instant>;
    /// `Some` once finished: `Err` with a one-line reason when it failed.
    fn outcome(&self) -> Option<Result<(), String>>;
    /// Called once after it finished (the demo prints its summary here).
    fn finish(&mut self, _stack: &mut TracedStack) {}
}

/// Why a run ended badly (exit status 1).
#[derive(Debug)]
pub enum RunError {
    Tap(TapError),
    Bind(BindError),
    /// The link died under us (TAP device deleted).
    LinkGone(io::Error),
    Io(&'static str, io::Error),
    /// A client mode failed (connection refused, timed out, HTTP error status).
    App(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Tap(e) => e.fmt(f),
            RunError::Bind(e) => e.fmt(f),
            RunError::LinkGone(e) => write!(f, "{e}"),
            RunError::Io(what, e) => write!(f, "{what}: {e}"),
            RunError::App(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for RunError {}

impl From<TapError> for RunError {
    fn from(e: TapError) -> Self {
        RunError::Tap(e)
    }
}

impl From<BindError> for RunError {
    fn from(e: BindError) -> Self {
        RunError::Bind(e)
    }
}

/// Polls an app on the stack it runs on; records its outcome once it has one.
pub(super) fn poll_app(
    app: &mut Box<dyn App>,
    now: Instant,
    stack: &mut TracedStack,
    done: &mut Option<Result<(), String>>,
) -> bool {
    let mut progress = app.poll(now, stack);
    if let Some(r) = app.outcome() {
        app.finish(stack);
        *done = Some(r);
        progress = true;
    }
    progress
}
