//! SKELETON: to be written by the services helper.
use super::{Context, DatagramService, StreamSession};
use smoltcp::time::Instant;
use std::net::SocketAddr;

pub struct HttpSession;
impl HttpSession {
    #[allow(clippy::new_without_default)]
    pub fn new(_cx: &Context) -> Self {
        HttpSession
    }
}
impl StreamSession for HttpSession {
    fn handle_input(&mut self, _cx: &Context, input: &[u8]) -> usize {
        input.len()
    }
    fn handle_eof(&mut self, _cx: &Context) {}
    fn poll_output(&mut self, _cx: &Context, _out: &mut [u8]) -> usize {
        0
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn handle_timeout(&mut self, _cx: &Context) {}
    fn is_finished(&self) -> bool {
        true
    }
}
fn _unused(_: SocketAddr) -> Option<&'static dyn DatagramService> {
    None
}
