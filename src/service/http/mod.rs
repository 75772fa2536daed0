//! A small HTTP/1.1 server (port 80, TCP only).
//!
//! The session here is the protocol: request heads, body framing, persistence, pipelining, the output
//! queue and timeouts. What each path answers is in [`routes`].
//!
//! Connections: keep-alive by default for HTTP/1.1, only on `Connection: keep-alive` for HTTP/1.0;
//! `Connection: close` closes after that response. Pipelined requests are answered in order. Every
//! response has `Date`, `Server` and `Content-Length`, except the echo of a chunked body longer than
//! [`ECHO_HOLD`], which is sent chunked as it arrives. The answer to a request whose body is read
//! only to be thrown away is sent once that body is in.
//!
//! Errors: 400 malformed head or framing, 404 unknown path, 405 wrong method (with `Allow`),
//! 408 a request body too slow (below), 413 `Content-Length` over [`MAX_BODY`], 431 head over
//! [`MAX_HEAD`] bytes or [`MAX_HEADERS`] lines, 501 a transfer coding other than `chunked`. After
//! 400, 408, 413, 431 and 501 the connection closes.
//!
//! Deadlines, all on the clock the caller passes in:
//! - Idle: a connection with neither input nor output progress for `Settings::idle_timeout` is
//!   closed silently (what was not yet handed to the transport is dropped).
//! - Head: a request head must arrive whole within one idle timeout of its first byte: bytes
//!   trickling in (slowloris) do not count as progress.
//! - Body: a request body must be taken within one idle timeout of its head plus 1 s per
//!   `Settings::body_min_rate` bytes (500 by default): a minimum average rate after a grace, as
//!   Apache's mod_reqtimeout `body=20,MinRate=500` (with our idle timeout as the grace). A total
//!   deadline fixed from `Content-Length` would not cover chunked bodies, and nginx's
//!   `client_body_timeout` (time between two reads) is what a byte-a-second client (`slowhttptest -B`)
//!   defeats; the rate rule lets a body of any length through at any honest speed, and cuts a
//!   trickle off one grace after its head whatever it keeps sending. A body that misses it is answered
//!   408 and the connection closes; if its answer has begun (a streaming echo), the connection just
//!   closes, which is how a client learns that a response is cut short. The clock counts bytes the
//!   session took, so an echo whose client does not read its answer is held to the same rate.
//!
//! Memory and backpressure: no new request is parsed, and no echo body taken, while more than
//! [`PENDING_CAP`] bytes (or [`MAX_QUEUED_PARTS`] response parts) wait to be sent; the rest stays in
//! the transport's buffer, whose window then closes. A session holds at most about
//! `PENDING_CAP + ECHO_HOLD + MAX_HEAD` bytes (under 180 KiB of capacity at worst, 89 KiB measured
//! for a 4 MiB echo) whatever the body's length, and gives its queue back as it drains.

mod bytes;
mod chunked;
mod head;
mod page;
pub(crate) mod routes;
#[cfg(test)]
mod testing;

pub use bytes::bytes_pattern;
pub(crate) use bytes::{fill_bytes_pattern, resolve_range, RangeAnswer, BYTES_MAX};
pub(crate) use chunked::{ChunkedDecoder, Step as ChunkedStep};
pub(crate) use head::{
    has_token, header, parse_request_head, parse_response_head, request_framing, Framing,
    FramingError, HeadError, RequestHead, ResponseHead, MAX_HEADERS,
};
pub(crate) use page::{status_html, status_json, LIVE_HTML};
pub(crate) use routes::Route;

use super::daytime::UtcDateTime;
use super::{Context, StreamSession};
use smoltcp::time::Instant;
use std::collections::VecDeque;
use std::time::SystemTime;

/// The `Server` header value.
pub(crate) const SERVER: &str = concat!("tapstack/", env!("CARGO_PKG_VERSION"));
/// Largest request head (request line and headers) accepted; more is answered with 431.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// Largest `Content-Length` accepted; more is answered with 413 before the body is read. (A chunked
/// body has no such limit: it is streamed or thrown away, never held.)
pub const MAX_BODY: u64 = 1024 * 1024;
/// No new request is read while this many response bytes wait to be sent.
pub const PENDING_CAP: usize = 64 * 1024;
/// A chunked `POST /echo` body up to this long is held and answered with `Content-Length`; a longer
/// one is answered chunked as it arrives.
pub(crate) const ECHO_HOLD: usize = 16 * 1024;
/// No new request is read while this many response parts wait (bounds the queue of generated bodies,
/// whose bytes are not counted in [`PENDING_CAP`]).
pub(crate) const MAX_QUEUED_PARTS: usize = 64;

/// An IMF-fixdate (RFC 9110 section 5.6.7): `Mon, 01 Jan 2024 00:00:00 GMT`.
pub(crate) fn http_date(wall: SystemTime) -> String {
    let t = UtcDateTime::from_system_time(wall);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        &t.weekday_name()[..3],
        t.day,
        &t.month_name()[..3],
        t.year,
        t.hour,
        t.minute,
        t.second
    )
}

pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        _ => "Unknown",
    }
}

/// Whether the connection stays open after a response, and what `Connection` header says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persist {
    /// HTTP/1.1 default: stays open, no header.
    KeepAlive,
    /// HTTP/1.0 with `Connection: keep-alive`: stays open, echoed back.
    KeepAlive10,
    /// `Connection: close`, HTTP/1.0 by default, or after an error that loses framing.
    Close,
}

impl Persist {
    fn of(req: &RequestHead) -> Persist {
        let close = has_token(&req.headers, "connection", "close");
        let keep = has_token(&req.headers, "connection", "keep-alive");
        match (req.minor_version, close, keep) {
            (_, true, _) => Persist::Close,
            (0, false, true) => Persist::KeepAlive10,
            (0, false, false) => Persist::Close,
            _ => Persist::KeepAlive,
        }
    }
}

enum Body {
    Bytes(Vec<u8>),
    /// `len` bytes of [`bytes_pattern`] from offset `first`.
    Pattern {
        first: u64,
        len: u64,
    },
    /// `len` bytes that the request body delivers (streaming echo).
    FromInput(u64),
    /// What a chunked request body delivers, of a length nobody knows yet: sent chunked.
    Chunked,
}

impl Body {
    /// The `Content-Length`, or `None` for a chunked body.
    fn len(&self) -> Option<u64> {
        match self {
            Body::Bytes(b) => Some(b.len() as u64),
            Body::Pattern { len, .. } | Body::FromInput(len) => Some(*len),
            Body::Chunked => None,
        }
    }
}

struct Response {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Body,
    /// Close after this response whatever the request asked.
    close: bool,
}

impl Response {
    fn new(status: u16, content_type: &'static str, body: Body) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body,
            close: false,
        }
    }

    fn text(status: u16, detail: &str) -> Self {
        let body = format!("{status} {}\n{detail}\n", reason_phrase(status));
        Response::new(
            status,
            "text/plain; charset=utf-8",
            Body::Bytes(body.into_bytes()),
        )
    }

    fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    fn closing(mut self) -> Self {
        self.close = true;
        self
    }
}

/// A part of the output queue.
enum Part {
    Data { bytes: Vec<u8>, pos: usize },
    Pattern { next: u64, end: u64 },
}

/// What the session does with input bytes.
enum Reading {
    /// Collecting a request head in `HttpSession::head`.
    Head,
    /// A `Content-Length` body: streamed into the output (echo) or thrown away.
    Body { remaining: u64, echo: bool },
    /// A chunked body: echoed (`Some`) or thrown away.
    Chunked {
        decoder: ChunkedDecoder,
        echo: Option<ChunkedEcho>,
    },
    /// No more requests: input is discarded, the session finishes when its output is handed out.
    Closed,
}

/// The echo of a chunked request body. A short one is held and answered with `Content-Length`, like
/// every other response (Go's net/http does the same below its 2 KiB); once more than [`ECHO_HOLD`]
/// bytes came, the response starts, chunked, and the body streams through the output queue.
enum ChunkedEcho {
    Holding(Vec<u8>),
    Streaming,
}

/// The clock of the request body being read (see [`BODY_MIN_RATE`]).
#[derive(Debug, Clone, Copy)]
struct BodyClock {
    /// The end of the grace: one idle timeout after the head.
    grace_end: Instant,
    /// Bytes of the body taken so far, chunked framing included.
    taken: u64,
    /// Bytes per second it must average (0: no rate bound).
    min_rate: u64,
}

impl BodyClock {
    fn deadline(&self) -> Option<Instant> {
        if self.min_rate == 0 {
            return None;
        }
        let micros = self.taken.saturating_mul(1_000_000) / self.min_rate;
        Some(self.grace_end + smoltcp::time::Duration::from_micros(micros))
    }
}

/// One HTTP connection.
pub struct HttpSession {
    reading: Reading,
    /// The request head read so far (at most [`MAX_HEAD`] bytes).
    head: Vec<u8>,
    /// How the request whose body is being read wants the connection treated afterwards.
    persist: Persist,
    /// The answer to the request whose body is being read and thrown away, held until the body is in,
    /// so that a body that misses its deadline can still be answered 408 (and `head_only`).
    deferred: Option<(Response, bool)>,
    /// Set while a request body is being read.
    body_clock: Option<BodyClock>,
    out: VecDeque<Part>,
    /// Bytes held in `Part::Data` parts.
    queued: usize,
    /// The idle deadline: input (but not the rest of a head) and output progress push it.
    deadline: Instant,
    eof: bool,
    /// The last `handle_input` left bytes unconsumed: the transport still holds input for us.
    input_blocked: bool,
}

impl HttpSession {
    /// A session for a new connection.
    pub fn new(cx: &Context) -> Self {
        HttpSession {
            reading: Reading::Head,
            head: Vec::new(),
            persist: Persist::KeepAlive,
            deferred: None,
            body_clock: None,
            out: VecDeque::new(),
            queued: 0,
            deadline: cx.now + cx.settings.idle_timeout,
            eof: false,
            input_blocked: false,
        }
    }

    /// Response bytes waiting to be sent (generated bodies not counted).
    pub fn pending(&self) -> usize {
        self.queued
    }

    /// Heap bytes the session holds (capacities: head, output queue, held echo, chunk line, deferred
    /// answer), for the tests of the memory bound.
    #[cfg(test)]
    fn buffered_capacity(&self) -> usize {
        let out: usize = self
            .out
            .iter()
            .map(|p| match p {
                Part::Data { bytes, .. } => bytes.capacity(),
                Part::Pattern { .. } => 0,
            })
            .sum();
        let reading = match &self.reading {
            Reading::Chunked { decoder, echo } => {
                decoder.line_capacity()
                    + match echo {
                        Some(ChunkedEcho::Holding(held)) => held.capacity(),
                        _ => 0,
                    }
            }
            _ => 0,
        };
        let deferred = match &self.deferred {
            Some((
                Response {
                    body: Body::Bytes(b),
                    ..
                },
                _,
            )) => b.capacity(),
            _ => 0,
        };
        self.head.capacity() + out + reading + deferred
    }

    fn output_full(&self) -> bool {
        self.queued >= PENDING_CAP || self.out.len() >= MAX_QUEUED_PARTS
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.queued += bytes.len();
        if let Some(Part::Data { bytes: b, pos }) = self.out.back_mut() {
            // Sent bytes are dropped before the vector would grow: its capacity follows what waits,
            // not what went through it.
            if *pos > 0 && (*pos >= b.len() / 2 || b.len() + bytes.len() > b.capacity()) {
                b.drain(..*pos);
                *pos = 0;
            }
            b.extend_from_slice(bytes);
        } else {
            self.out.push_back(Part::Data {
                bytes: bytes.to_vec(),
                pos: 0,
            });
        }
    }

    /// Queues one chunk of a chunked response body.
    fn push_chunk(&mut self, data: &[u8]) {
        if data.is_empty() {
            return; // a zero-size chunk would end the body
        }
        self.push_bytes(format!("{:x}\r\n", data.len()).as_bytes());
        self.push_bytes(data);
        self.push_bytes(b"\r\n");
    }

    /// Queues a response; `head_only` for HEAD requests (headers as for GET, no body).
    fn queue(&mut self, cx: &Context, resp: Response, head_only: bool, persist: Persist) {
        let persist = if resp.close { Persist::Close } else { persist };
        let length = match resp.body.len() {
            Some(n) => format!("Content-Length: {n}"),
            None => "Transfer-Encoding: chunked".to_string(),
        };
        let mut h = format!(
            "HTTP/1.1 {} {}\r\nDate: {}\r\nServer: {SERVER}\r\nContent-Type: {}\r\n{length}\r\n",
            resp.status,
            reason_phrase(resp.status),
            http_date(cx.wall),
            resp.content_type,
        );
        for (name, value) in &resp.headers {
            h.push_str(name);
            h.push_str(": ");
            h.push_str(value);
            h.push_str("\r\n");
        }
        match persist {
            Persist::KeepAlive => {}
            Persist::KeepAlive10 => h.push_str("Connection: keep-alive\r\n"),
            Persist::Close => h.push_str("Connection: close\r\n"),
        }
        h.push_str("\r\n");
        self.push_bytes(h.as_bytes());
        if head_only {
            return;
        }
        match resp.body {
            Body::Bytes(b) => self.push_bytes(&b),
            Body::Pattern { first, len } if len > 0 => self.out.push_back(Part::Pattern {
                next: first,
                end: first + len,
            }),
            Body::Pattern { .. } | Body::FromInput(_) | Body::Chunked => {}
        }
    }

    /// Answers with an error that loses track of the request stream, and stops reading.
    fn fail(&mut self, cx: &Context, resp: Response) {
        self.deferred = None;
        self.body_clock = None;
        self.queue(cx, resp.closing(), false, Persist::Close);
        self.reading = Reading::Closed;
    }

    /// A request body starts: its clock runs from now.
    fn start_body(&mut self, cx: &Context) {
        self.body_clock = Some(BodyClock {
            grace_end: cx.now + cx.settings.idle_timeout,
            taken: 0,
            min_rate: cx.settings.body_min_rate,
        });
    }

    fn body_taken(&mut self, n: usize) {
        if let Some(c) = &mut self.body_clock {
            c.taken = c.taken.saturating_add(n as u64);
        }
    }

    /// After a request and its body: its held answer, then the next request, or the end.
    fn request_done(&mut self, cx: &Context) {
        self.body_clock = None;
        if let Some((resp, head_only)) = self.deferred.take() {
            self.queue(cx, resp, head_only, self.persist);
        }
        self.reading = match self.persist {
            Persist::Close => Reading::Closed,
            _ => Reading::Head,
        };
    }

    fn on_head(&mut self, cx: &Context, raw: &[u8]) {
        let req = match parse_request_head(raw) {
            Ok(Some(req)) if req.len == raw.len() => req,
            Ok(_) => return self.fail(cx, Response::text(400, "malformed request head")),
            Err(HeadError::TooManyHeaders) => {
                let detail = format!("more than {MAX_HEADERS} header lines");
                return self.fail(cx, Response::text(431, &detail));
            }
            Err(e) => return self.fail(cx, Response::text(400, &e.to_string())),
        };
        let framing = match request_framing(&req.headers) {
            Ok(f) => f,
            Err(e @ FramingError::UnsupportedCoding) => {
                return self.fail(cx, Response::text(501, &e.to_string()))
            }
            Err(e) => return self.fail(cx, Response::text(400, &e.to_string())),
        };
        if let Framing::Length(n) = framing {
            if n > MAX_BODY {
                let detail = format!("request bodies are limited to {MAX_BODY} bytes");
                return self.fail(cx, Response::text(413, &detail));
            }
        }
        self.persist = Persist::of(&req);
        let head_only = req.method == "HEAD";
        let route = Route::resolve(routes::target_path(&req.target));
        if route == Some(Route::Echo) && req.method == "POST" {
            return self.start_echo(cx, &req, framing);
        }
        let resp = routes::respond(cx, &req, route);
        let close = resp.close || self.persist == Persist::Close;
        let reading = match framing {
            // A connection that closes anyway does not read the body.
            _ if close => Reading::Closed,
            Framing::None | Framing::Length(0) => Reading::Head,
            // A body nobody wants is still read (and dropped) to find the next request.
            Framing::Length(n) => Reading::Body {
                remaining: n,
                echo: false,
            },
            Framing::Chunked => Reading::Chunked {
                decoder: ChunkedDecoder::new(),
                echo: None,
            },
        };
        if matches!(reading, Reading::Head | Reading::Closed) {
            self.queue(cx, resp, head_only, self.persist);
        } else {
            // The answer waits for the body, which has a deadline: a body too slow gets 408 instead.
            // Since the body will be read, a client that waits for leave to send it gets it.
            if req.minor_version == 1 && has_token(&req.headers, "expect", "100-continue") {
                self.push_bytes(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            self.deferred = Some((resp, head_only));
            self.start_body(cx);
        }
        self.reading = reading;
    }

    fn start_echo(&mut self, cx: &Context, req: &RequestHead, framing: Framing) {
        let octets = "application/octet-stream";
        if framing == Framing::Chunked && req.minor_version == 0 {
            // RFC 9112 section 6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing (and a
            // long echo could not be answered chunked).
            let detail = "Transfer-Encoding in an HTTP/1.0 request";
            return self.fail(cx, Response::text(400, detail));
        }
        if framing != Framing::None
            && req.minor_version == 1
            && has_token(&req.headers, "expect", "100-continue")
        {
            self.push_bytes(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        match framing {
            Framing::None => {
                self.queue(
                    cx,
                    Response::new(200, octets, Body::Bytes(Vec::new())),
                    false,
                    self.persist,
                );
                self.request_done(cx);
            }
            Framing::Length(n) => {
                self.queue(
                    cx,
                    Response::new(200, octets, Body::FromInput(n)),
                    false,
                    self.persist,
                );
                self.reading = Reading::Body {
                    remaining: n,
                    echo: true,
                };
                self.start_body(cx);
                if n == 0 {
                    self.request_done(cx);
                }
            }
            Framing::Chunked => {
                self.reading = Reading::Chunked {
                    decoder: ChunkedDecoder::new(),
                    echo: Some(ChunkedEcho::Holding(Vec::new())),
                };
                self.start_body(cx);
            }
        }
    }

    /// Echoes decoded chunked body data: held while short, streamed once long.
    fn echo_chunk(&mut self, cx: &Context, data: &[u8]) {
        let Reading::Chunked { echo: Some(e), .. } = &mut self.reading else {
            return;
        };
        match e {
            ChunkedEcho::Holding(held) if held.len() + data.len() <= ECHO_HOLD => {
                held.extend_from_slice(data);
            }
            ChunkedEcho::Holding(held) => {
                let held = std::mem::take(held);
                *e = ChunkedEcho::Streaming;
                let octets = "application/octet-stream";
                let resp = Response::new(200, octets, Body::Chunked);
                self.queue(cx, resp, false, self.persist);
                self.push_chunk(&held);
                self.push_chunk(data);
            }
            ChunkedEcho::Streaming => self.push_chunk(data),
        }
    }

    /// The chunked body is complete: its echo ends (or, when short, is answered whole).
    fn finish_chunked_echo(&mut self, cx: &Context) {
        let Reading::Chunked { echo, .. } = &mut self.reading else {
            return;
        };
        match echo.take() {
            Some(ChunkedEcho::Holding(body)) => {
                let resp = Response::new(200, "application/octet-stream", Body::Bytes(body));
                self.queue(cx, resp, false, self.persist);
            }
            Some(ChunkedEcho::Streaming) => self.push_bytes(b"0\r\n\r\n"),
            None => {}
        }
    }

    /// Reads from the front of `input` in the current state; returns bytes consumed (0 = blocked).
    fn read_some(&mut self, cx: &Context, input: &[u8]) -> usize {
        match &mut self.reading {
            Reading::Closed => input.len(),
            Reading::Head => {
                if self.output_full() {
                    return 0;
                }
                if self.head.is_empty() {
                    // Blank lines before a request line are ignored (RFC 9112 section 2.2).
                    let blank = input
                        .iter()
                        .take_while(|&&b| b == b'\r' || b == b'\n')
                        .count();
                    if blank > 0 {
                        return blank;
                    }
                }
                let before = self.head.len();
                let take = input.len().min(MAX_HEAD - before);
                self.head.extend_from_slice(&input[..take]);
                match head_end(&self.head, before) {
                    Some(end) => {
                        let raw = std::mem::take(&mut self.head);
                        self.on_head(cx, &raw[..end]);
                        self.head = raw;
                        self.head.clear();
                        end - before
                    }
                    None if self.head.len() >= MAX_HEAD => {
                        let detail = format!("request heads are limited to {MAX_HEAD} bytes");
                        self.fail(cx, Response::text(431, &detail));
                        take
                    }
                    None => take,
                }
            }
            Reading::Body { remaining, echo } => {
                let mut n = (*remaining).min(input.len() as u64) as usize;
                if *echo {
                    n = n.min(PENDING_CAP.saturating_sub(self.queued));
                }
                *remaining -= n as u64;
                let (done, echo) = (*remaining == 0, *echo);
                if echo {
                    self.push_bytes(&input[..n]);
                }
                self.body_taken(n);
                if done {
                    self.request_done(cx);
                }
                n
            }
            Reading::Chunked { decoder, echo } => {
                // A streaming echo takes no more than the output queue has room for, and the decoder
                // sees only that: the rest stays in the transport (backpressure).
                // While held, it takes at most one byte past ECHO_HOLD: the byte that starts the
                // stream, so the switch queues no more than ECHO_HOLD + 1 bytes of body at once.
                let limit = match echo {
                    Some(ChunkedEcho::Streaming) => {
                        let room = PENDING_CAP.saturating_sub(self.queued);
                        if room == 0 {
                            return 0;
                        }
                        input.len().min(room)
                    }
                    Some(ChunkedEcho::Holding(held)) => input.len().min(ECHO_HOLD + 1 - held.len()),
                    None => input.len(),
                };
                match decoder.step(&input[..limit]) {
                    Err(e) => {
                        self.fail(cx, Response::text(400, &e.to_string()));
                        0
                    }
                    Ok(ChunkedStep::Framing(n)) => {
                        self.body_taken(n);
                        n
                    }
                    Ok(ChunkedStep::Data(n)) => {
                        self.echo_chunk(cx, &input[..n]);
                        self.body_taken(n);
                        n
                    }
                    Ok(ChunkedStep::Done(n)) => {
                        self.finish_chunked_echo(cx);
                        self.request_done(cx);
                        n
                    }
                }
            }
        }
    }

    /// The body being read missed its deadline (too slow, or silent for an idle timeout). If its
    /// answer has not begun, it is 408 and the connection closes once that is handed out; a streaming
    /// echo has already sent `200`, so only closing can say the response is cut short.
    fn body_timed_out(&mut self, cx: &Context) {
        let begun = matches!(
            self.reading,
            Reading::Body { echo: true, .. }
                | Reading::Chunked {
                    echo: Some(ChunkedEcho::Streaming),
                    ..
                }
        );
        if begun {
            return self.close_now();
        }
        let detail = format!(
            "the request body must arrive within {} s of its head plus 1 s per {} bytes",
            cx.settings.idle_timeout.secs(),
            cx.settings.body_min_rate
        );
        self.fail(cx, Response::text(408, &detail));
        // One more idle timeout to hand the 408 out; what the peer still sends does not extend it.
        self.deadline = cx.now + cx.settings.idle_timeout;
    }

    /// Closes without another word, dropping what was not handed out and giving memory back.
    fn close_now(&mut self) {
        self.reading = Reading::Closed;
        self.out = VecDeque::new();
        self.queued = 0;
        self.deferred = None;
        self.body_clock = None;
        self.head = Vec::new();
    }

    /// The earlier of the idle deadline and the body's.
    fn next_deadline(&self) -> Instant {
        match self.body_clock.and_then(|c| c.deadline()) {
            Some(b) => b.min(self.deadline),
            None => self.deadline,
        }
    }
}

/// The end of a request head (just past its blank line), looking at line ends from `from` on.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| {
        let blank = buf[i] == b'\n'
            && ((i >= 1 && buf[i - 1] == b'\n')
                || (i >= 2 && buf[i - 1] == b'\r' && buf[i - 2] == b'\n'));
        blank.then_some(i + 1)
    })
}

impl StreamSession for HttpSession {
    fn handle_input(&mut self, cx: &Context, input: &[u8]) -> usize {
        // Part of a head is in: the rest of it does not push the deadline (slowloris). Body bytes
        // do, but the body's own deadline caps that.
        let mid_head = matches!(self.reading, Reading::Head) && !self.head.is_empty();
        if !input.is_empty() && !matches!(self.reading, Reading::Closed) && !mid_head {
            self.deadline = cx.now + cx.settings.idle_timeout;
        }
        let mut used = 0;
        while used < input.len() {
            let n = self.read_some(cx, &input[used..]);
            if n == 0 && !matches!(self.reading, Reading::Closed) {
                break;
            }
            used += n;
        }
        self.input_blocked = used < input.len();
        used
    }

    fn handle_eof(&mut self, _cx: &Context) {
        self.eof = true;
    }

    fn poll_output(&mut self, cx: &Context, out: &mut [u8]) -> usize {
        let mut n = 0;
        while n < out.len() {
            let Some(part) = self.out.front_mut() else {
                break;
            };
            let finished = match part {
                Part::Data { bytes, pos } => {
                    let k = (bytes.len() - *pos).min(out.len() - n);
                    out[n..n + k].copy_from_slice(&bytes[*pos..*pos + k]);
                    *pos += k;
                    n += k;
                    self.queued -= k;
                    *pos == bytes.len()
                }
                Part::Pattern { next, end } => {
                    let k = (*end - *next).min((out.len() - n) as u64) as usize;
                    fill_bytes_pattern(*next, &mut out[n..n + k]);
                    *next += k as u64;
                    n += k;
                    *next == *end
                }
            };
            if finished {
                self.out.pop_front();
            }
        }
        if n > 0 {
            self.deadline = cx.now + cx.settings.idle_timeout;
        }
        n
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (!self.is_finished()).then(|| self.next_deadline())
    }

    fn handle_timeout(&mut self, cx: &Context) {
        if cx.now < self.next_deadline() {
            return;
        }
        if self.body_clock.is_some() {
            self.body_timed_out(cx);
        } else {
            self.close_now();
        }
    }

    fn is_finished(&self) -> bool {
        self.out.is_empty()
            && (matches!(self.reading, Reading::Closed) || (self.eof && !self.input_blocked))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::service::testing::{cx, drain, settings};
    use crate::status::Status;

    #[test]
    fn test_http_date_is_imf_fixdate() {
        let wall = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_709_251_199);
        assert_eq!(http_date(wall), "Thu, 29 Feb 2024 23:59:59 GMT");
        assert_eq!(
            http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(784_111_777)),
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "the RFC's own example"
        );
    }

    #[test]
    fn test_every_response_has_date_server_content_length() {
        for r in [
            get("/", ""),
            get("/nope", ""),
            get("/bytes/3", "Range: bytes=9-\r\n"),
        ] {
            assert_eq!(r.header("date"), Some("Mon, 01 Jan 2024 00:00:00 GMT"));
            assert_eq!(r.header("server"), Some(SERVER));
            assert_eq!(r.header("content-length"), Some(&*r.body.len().to_string()));
        }
        assert!(SERVER.starts_with("tapstack/"));
    }

    #[test]
    fn test_head_has_content_length_but_no_body() {
        let (st, se) = (sample_status(), settings());
        let c = cx(0, &st, &se);
        let mut s = HttpSession::new(&c);
        let get = exchange(&mut s, &c, b"GET / HTTP/1.1\r\n\r\n");
        let head = exchange(&mut s, &c, b"HEAD / HTTP/1.1\r\n\r\n");
        let g = &split(&get, &[])[0];
        let h = parse_response_head(&head).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.len, head.len(), "nothing after the head");
        assert_eq!(
            header(&h.headers, "content-length"),
            Some(g.body.len().to_string().as_bytes())
        );
        let (r, _) = one("HEAD /bytes/1000 HTTP/1.1\r\nRange: bytes=0-9\r\n\r\n");
        assert_eq!((r.status, r.header("content-length")), (206, Some("10")));
        assert!(r.body.is_empty());
    }

    #[test]
    fn test_one_gib_is_streamed_not_buffered() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = HttpSession::new(&c);
        let req = b"GET /bytes/1073741824 HTTP/1.1\r\n\r\n";
        assert_eq!(s.handle_input(&c, req), req.len());
        assert!(s.pending() < 512, "only the head is held");
        let mut buf = vec![0u8; 65536];
        let n = s.poll_output(&c, &mut buf);
        let head = parse_response_head(&buf[..n]).unwrap().unwrap();
        assert_eq!(
            header(&head.headers, "content-length"),
            Some(&b"1073741824"[..])
        );
        assert_eq!(buf[head.len..n], full_body((n - head.len) as u64)[..]);
        // Far into the body, the bytes are still the pattern at their offset.
        let mut offset = (n - head.len) as u64;
        for _ in 0..100 {
            offset += s.poll_output(&c, &mut buf) as u64;
        }
        let k = s.poll_output(&c, &mut buf[..1000]);
        for (i, b) in buf[..k].iter().enumerate() {
            assert_eq!(*b, bytes_pattern(offset + i as u64));
        }
        assert!(!s.is_finished());
    }

    #[test]
    fn test_post_echo_content_length() {
        let (r, s) = one("POST /echo HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello world");
        assert!(!s.is_finished());
        let (r, _) = one("POST /echo HTTP/1.1\r\n\r\n");
        assert_eq!((r.status, r.body.len()), (200, 0));
    }

    #[test]
    fn test_post_echo_chunked() {
        let (r, _) = one("POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("11"));
        assert_eq!(r.body, b"hello world");
    }

    #[test]
    fn test_post_echo_answers_expect_100_continue() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = HttpSession::new(&c);
        let out = exchange(
            &mut s,
            &c,
            b"POST /echo HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
        );
        assert!(out.starts_with(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"));
        let out = [out, exchange(&mut s, &c, b"ok")].concat();
        let rs = split(&out, &[]);
        assert_eq!((rs[0].status, rs[1].status), (100, 200));
        assert_eq!(rs[1].body, b"ok");
    }

    #[test]
    fn test_echo_body_streams_under_backpressure() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = HttpSession::new(&c);
        let body = vec![b'z'; MAX_BODY as usize];
        let req = [
            format!(
                "POST /echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes(),
            body.clone(),
        ]
        .concat();
        let mut used = s.handle_input(&c, &req);
        assert!(used < req.len(), "stops at the output cap");
        assert!(s.pending() <= PENDING_CAP);
        let mut out = Vec::new();
        while used < req.len() {
            out.extend(drain(&mut s, &c, 1500, usize::MAX));
            used += s.handle_input(&c, &req[used..]);
            assert!(s.pending() <= PENDING_CAP);
        }
        out.extend(drain(&mut s, &c, 1500, usize::MAX));
        assert_eq!(split(&out, &[])[0].body, body);
    }

    #[test]
    fn test_declared_body_over_one_mib_is_413_and_closes() {
        // A chunked echo body has no such limit any more: it streams through (see
        // test_echo_4mib_chunked_streams_within_the_bound).
        let (r, s) = one("POST /echo HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n");
        assert_eq!(r.status, 413);
        assert!(s.is_finished());
    }

    #[test]
    fn test_pipelined_requests_answered_in_order() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = HttpSession::new(&c);
        let out = exchange(
            &mut s,
            &c,
            b"GET /bytes/3 HTTP/1.1\r\n\r\nPOST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /nope HTTP/1.1\r\n\r\n",
        );
        let rs = split(&out, &[]);
        assert_eq!(
            rs.iter().map(|r| r.status).collect::<Vec<_>>(),
            [200, 200, 404]
        );
        assert_eq!(rs[0].body, [0, 1, 2]);
        assert_eq!(rs[1].body, b"hi");
        assert!(!s.is_finished());
    }

    #[test]
    fn test_keep_alive_then_connection_close() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = HttpSession::new(&c);
        let r = &split(&exchange(&mut s, &c, b"GET /bytes/1 HTTP/1.1\r\n\r\n"), &[])[0];
        assert_eq!(r.header("connection"), None);
        assert!(!s.is_finished(), "HTTP/1.1 keeps the connection");
        let out = exchange(
            &mut s,
            &c,
            b"GET /bytes/2 HTTP/1.1\r\nConnection: close\r\n\r\nGET /bytes/3 HTTP/1.1\r\n\r\n",
        );
        let rs = split(&out, &[]);
        assert_eq!(rs.len(), 1, "nothing is answered after Connection: close");
        assert_eq!(rs[0].header("connection"), Some("close"));
        assert!(s.is_finished());
    }

    #[test]
    fn test_http10_closes_unless_keep_alive() {
        let (r, s) = one("GET /bytes/1 HTTP/1.0\r\n\r\n");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(s.is_finished());
        let (r, s) = one("GET /bytes/1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert!(!s.is_finished());
    }

    #[test]
    fn test_malformed_is_400_and_closes() {
        for req in [
            "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            "GET / HTTP/9.9\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            let (r, s) = one(req);
            assert_eq!(r.status, 400, "{req:?}");
            assert_eq!(r.header("connection"), Some("close"));
            assert!(s.is_finished(), "{req:?}");
        }
        let (r, s) = one("POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!(r.status, 501);
        assert!(s.is_finished());
    }

    #[test]
    fn test_headers_over_8k_is_431_and_closes() {
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        let (r, s) = one(&big);
        assert_eq!(r.status, 431);
        assert!(s.is_finished());
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: {i}\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(one(&many).0.status, 431);
    }

    #[test]
    fn test_idle_timeout_fires_after_30s_and_not_before() {
        let (st, se) = (Status::default(), settings());
        let c0 = cx(0, &st, &se);
        let mut s = HttpSession::new(&c0);
        assert_eq!(s.poll_timeout(), Some(Instant::from_secs(30)));
        // Input at 10 s resets the clock.
        let c10 = cx(10_000, &st, &se);
        exchange(&mut s, &c10, b"GET /bytes/1 HTTP/1.1\r\n\r\n");
        assert_eq!(s.poll_timeout(), Some(Instant::from_secs(40)));
        s.handle_timeout(&cx(39_999, &st, &se));
        assert!(!s.is_finished(), "a spurious early wake-up changes nothing");
        s.handle_timeout(&cx(40_000, &st, &se));
        assert!(s.is_finished());
        assert_eq!(s.poll_timeout(), None);
        assert!(
            drain(&mut s, &c0, 100, usize::MAX).is_empty(),
            "closed silently"
        );
    }

    #[test]
    fn test_slowloris_head_must_arrive_within_one_idle_timeout() {
        let (st, se) = (Status::default(), settings());
        let mut s = HttpSession::new(&cx(0, &st, &se));
        let req = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n";
        // One byte every second: each used to push the deadline 30 s further, forever.
        for (i, b) in req.iter().enumerate() {
            let c = cx(1000 * (i as i64 + 1), &st, &se);
            assert_eq!(s.handle_input(&c, std::slice::from_ref(b)), 1);
        }
        assert_eq!(s.poll_timeout(), Some(Instant::from_secs(31)));
        s.handle_timeout(&cx(31_000, &st, &se));
        assert!(s.is_finished(), "a head trickling in is cut off");
        // A whole head in one go still resets the clock, and so does the next request's first byte.
        let mut s = HttpSession::new(&cx(0, &st, &se));
        exchange(
            &mut s,
            &cx(10_000, &st, &se),
            b"GET /bytes/1 HTTP/1.1\r\n\r\n",
        );
        assert_eq!(s.poll_timeout(), Some(Instant::from_secs(40)));
        s.handle_input(&cx(20_000, &st, &se), b"G");
        assert_eq!(s.poll_timeout(), Some(Instant::from_secs(50)));
        s.handle_input(&cx(25_000, &st, &se), b"ET");
        assert_eq!(s.poll_timeout(), Some(Instant::from_secs(50)));
    }

    #[test]
    fn test_idle_timeout_drops_output_a_stalled_reader_never_took() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = HttpSession::new(&c);
        s.handle_input(&c, b"GET /bytes/1000000 HTTP/1.1\r\n\r\n");
        let mut buf = [0u8; 100];
        s.poll_output(&cx(20_000, &st, &se), &mut buf);
        assert_eq!(
            s.poll_timeout(),
            Some(Instant::from_secs(50)),
            "output progress counts"
        );
        s.handle_timeout(&cx(50_000, &st, &se));
        assert!(s.is_finished());
    }

    #[test]
    fn test_byte_by_byte_input_still_parses() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = HttpSession::new(&c);
        let req = b"\r\nGET /bytes/5 HTTP/1.1\r\nHost: t\r\n\r\n\
                    POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
                    POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz";
        let mut out = Vec::new();
        for b in req.iter() {
            assert_eq!(s.handle_input(&c, std::slice::from_ref(b)), 1);
            out.extend(drain(&mut s, &c, 7, usize::MAX));
        }
        let rs = split(&out, &[]);
        assert_eq!(rs.len(), 3);
        assert_eq!(rs[0].body, full_body(5));
        assert_eq!(rs[1].body, b"abc");
        assert_eq!(rs[2].body, b"xyz");
    }

    #[test]
    fn test_backpressure_stops_parsing_while_output_waits() {
        let (st, se) = (sample_status(), settings());
        let c = cx(0, &st, &se);
        let mut s = HttpSession::new(&c);
        let req = b"GET / HTTP/1.1\r\n\r\n".repeat(1000);
        let used = s.handle_input(&c, &req);
        assert!(used < req.len(), "stops consuming");
        assert!(
            s.pending() < PENDING_CAP + 16 * 1024,
            "one response past the cap at most"
        );
        assert_eq!(s.handle_input(&c, &req[used..]), 0);
        // Draining lets it go on, to the last request.
        let mut done = used;
        let mut responses = 0;
        loop {
            let out = drain(&mut s, &c, 1500, usize::MAX);
            responses += split(&out, &[]).len();
            if done == req.len() {
                break;
            }
            done += s.handle_input(&c, &req[done..]);
        }
        assert_eq!(responses, 1000);
    }

    #[test]
    fn test_pipelined_generated_bodies_are_bounded_in_count() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = HttpSession::new(&c);
        let req = b"GET /bytes/1073741824 HTTP/1.1\r\n\r\n".repeat(1000);
        let used = s.handle_input(&c, &req);
        assert!(used < req.len());
        assert!(s.out.len() <= MAX_QUEUED_PARTS);
    }

    #[test]
    fn test_eof_flushes_pending_responses_then_finishes() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = HttpSession::new(&c);
        let req = b"GET /bytes/100000 HTTP/1.1\r\n\r\n".repeat(3);
        let used = s.handle_input(&c, &req);
        s.handle_eof(&c);
        assert!(!s.is_finished());
        let mut out = drain(&mut s, &c, 1500, usize::MAX);
        if used < req.len() {
            assert!(!s.is_finished(), "input still waits in the transport");
            out.extend(exchange(&mut s, &c, &req[used..]));
        }
        assert_eq!(split(&out, &[]).len(), 3);
        assert!(s.is_finished());
    }

    /// Offers `head` at 0 s, then one body byte a second while the session lets it; returns the
    /// second its first output appeared (if any), the second it finished, and all output.
    fn trickle(
        head: &str,
        st: &Status,
        se: &crate::service::Settings,
    ) -> (Option<i64>, i64, Vec<u8>) {
        let mut s = HttpSession::new(&cx(0, st, se));
        assert_eq!(s.handle_input(&cx(0, st, se), head.as_bytes()), head.len());
        let mut out = drain(&mut s, &cx(0, st, se), 1500, usize::MAX);
        let mut answered = (!out.is_empty()).then_some(0);
        for sec in 1..=600 {
            let c = cx(sec * 1000, st, se);
            if s.poll_timeout().is_some_and(|t| t <= c.now) {
                s.handle_timeout(&c);
            }
            if s.is_finished() {
                return (answered, sec, out);
            }
            // Whatever it keeps sending is taken.
            assert_eq!(s.handle_input(&c, b"a"), 1);
            let more = drain(&mut s, &c, 1500, usize::MAX);
            if !more.is_empty() && answered.is_none() {
                answered = Some(sec);
            }
            out.extend(more);
        }
        panic!("still open after 600 s of a byte a second");
    }

    #[test]
    fn test_slow_body_is_cut_off_with_408_at_the_deadline() {
        let (st, se) = (Status::default(), settings());
        // A body nobody wants (its 405 waits for it), and a chunked echo too short to have started
        // its answer: both are answered 408 when the deadline passes, 30 s + 30 bytes / 500 B/s =
        // 30.06 s after the head, seen at the first wake-up after it (31 s).
        for head in [
            "POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n",
            "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n",
        ] {
            let (answered, finished, out) = trickle(head, &st, &se);
            assert_eq!(answered, Some(31), "{head:?}: nothing before the deadline");
            assert_eq!(finished, 32, "{head:?}: closed once the 408 is handed out");
            let rs = split(&out, &[]);
            assert_eq!(rs.len(), 1, "{head:?}: only the 408, never the held answer");
            assert_eq!(rs[0].status, 408);
            assert_eq!(rs[0].header("connection"), Some("close"));
        }
        // The deadline itself: grace end plus 2 ms per byte taken.
        let mut s = HttpSession::new(&cx(0, &st, &se));
        s.handle_input(
            &cx(0, &st, &se),
            b"POST / HTTP/1.1\r\nContent-Length: 99\r\n\r\n",
        );
        s.handle_input(&cx(5_000, &st, &se), b"0123456789");
        assert_eq!(s.poll_timeout(), Some(Instant::from_millis(30_020)));
    }

    #[test]
    fn test_answer_to_a_thrown_away_body_waits_for_it() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = HttpSession::new(&c);
        let head = b"POST / HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n";
        // The body will be read, so a client waiting for leave to send it is told to go on.
        assert_eq!(exchange(&mut s, &c, head), b"HTTP/1.1 100 Continue\r\n\r\n");
        let rs = split(
            &exchange(&mut s, &c, b"abGET /bytes/1 HTTP/1.1\r\n\r\n"),
            &[],
        );
        assert_eq!(rs.iter().map(|r| r.status).collect::<Vec<_>>(), [405, 200]);
    }

    #[test]
    fn test_slow_echo_body_is_cut_short_at_the_deadline() {
        // A Content-Length echo has sent its 200 with the first byte: the deadline can only close
        // it, which tells the client the body is short.
        let (st, se) = (Status::default(), settings());
        let (answered, finished, out) = trickle(
            "POST /echo HTTP/1.1\r\nContent-Length: 100000\r\n\r\n",
            &st,
            &se,
        );
        assert_eq!((answered, finished), (Some(0), 31));
        let head = parse_response_head(&out).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(out[head.len..], [b'a'; 30], "the 30 bytes that came");
    }

    #[test]
    fn test_body_at_a_steady_rate_is_not_cut_off() {
        // 600 bytes a second (above the 500 B/s minimum) for 100 s, a whole minute past the grace.
        let (st, se) = (Status::default(), settings());
        let mut s = HttpSession::new(&cx(0, &st, &se));
        let head = b"POST /echo HTTP/1.1\r\nContent-Length: 60000\r\n\r\n";
        assert_eq!(s.handle_input(&cx(0, &st, &se), head), head.len());
        let mut out = Vec::new();
        for sec in 1..=100 {
            let c = cx(sec * 1000, &st, &se);
            if s.poll_timeout().is_some_and(|t| t <= c.now) {
                s.handle_timeout(&c);
            }
            assert_eq!(s.handle_input(&c, &[b'r'; 600]), 600, "at {sec} s");
            out.extend(drain(&mut s, &c, 1500, usize::MAX));
        }
        assert!(!s.is_finished());
        assert_eq!(split(&out, &[])[0].body, [b'r'; 60_000]);
    }

    /// What a session may hold for one connection at most: the output queue past its cap by one held
    /// chunked echo, a partial head, a chunk-size line, each at most twice its size in capacity.
    const MEMORY_BOUND: usize =
        2 * (PENDING_CAP + ECHO_HOLD + 64) + MAX_HEAD + 2 * chunked::MAX_LINE;

    /// `body` as a chunked request to `/echo`, in chunks of `chunk` bytes.
    fn chunked_echo_request(body: &[u8], chunk: usize) -> Vec<u8> {
        let mut req = b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for c in body.chunks(chunk) {
            req.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            req.extend_from_slice(c);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        req
    }

    fn noise(n: usize) -> Vec<u8> {
        (0..n as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    #[test]
    fn test_echo_4mib_chunked_streams_within_the_bound() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = HttpSession::new(&c);
        let body = noise(4 << 20);
        let req = chunked_echo_request(&body, 10_000);
        // The transport offers what its 64 KiB receive buffer holds; the reader takes 1,500 bytes
        // at a time, so the output is what holds the input back.
        let (mut used, mut out, mut peak) = (0, Vec::new(), 0);
        let mut buf = [0u8; 1500];
        for _ in 0..100_000 {
            if used == req.len() && s.out.is_empty() {
                break;
            }
            used += s.handle_input(&c, &req[used..req.len().min(used + 65_536)]);
            peak = peak.max(s.buffered_capacity());
            assert!(s.pending() <= PENDING_CAP + 64, "{}", s.pending());
            let n = s.poll_output(&c, &mut buf);
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(used, req.len(), "all of it taken");
        let rs = split(&out, &[]);
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].status, 200);
        assert_eq!(rs[0].header("transfer-encoding"), Some("chunked"));
        assert_eq!(rs[0].header("content-length"), None);
        assert!(rs[0].body == body, "echoed bytes differ");
        eprintln!("FIGURE http echo of 4 MiB chunked, drained 1500 B at a time: peak {peak} B held (bound {MEMORY_BOUND} B)");
        assert!(peak <= MEMORY_BOUND, "peak {peak} > {MEMORY_BOUND}");
        assert!(!s.is_finished(), "keep-alive: the next request may come");
    }

    #[test]
    fn test_chunked_echo_behind_a_full_queue_stays_within_the_bound() {
        // An echo nobody reads nearly fills the queue (a new request is still parsed); a chunked
        // echo pipelined behind it may add its held 16 KiB (and the byte that starts it streaming).
        let first_len = PENDING_CAP - 4096;
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = HttpSession::new(&c);
        let first = [
            format!("POST /echo HTTP/1.1\r\nContent-Length: {first_len}\r\n\r\n").into_bytes(),
            vec![b'f'; first_len],
        ]
        .concat();
        let req = [first, chunked_echo_request(&noise(1 << 20), 65_536)].concat();
        let mut used = 0;
        while used < req.len() {
            let n = s.handle_input(&c, &req[used..req.len().min(used + 65_536)]);
            if n == 0 {
                break;
            }
            used += n;
        }
        assert!(
            s.pending() <= PENDING_CAP + ECHO_HOLD + 512,
            "{}",
            s.pending()
        );
        assert!(
            s.buffered_capacity() <= MEMORY_BOUND,
            "{}",
            s.buffered_capacity()
        );
        let mut out = Vec::new();
        while used < req.len() || !s.out.is_empty() {
            out.extend(drain(&mut s, &c, 1500, usize::MAX));
            used += s.handle_input(&c, &req[used..req.len().min(used + 65_536)]);
            assert!(
                s.pending() <= PENDING_CAP + ECHO_HOLD + 512,
                "{}",
                s.pending()
            );
        }
        let rs = split(&out, &[]);
        assert_eq!(rs[0].body, vec![b'f'; first_len]);
        assert!(rs[1].body == noise(1 << 20));
    }

    #[test]
    fn test_echo_memory_is_bounded_and_given_back() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let mut s = HttpSession::new(&c);
        // A client that sends a whole 1 MiB chunked body before reading anything: the session takes
        // what its bound allows and leaves the rest in the transport.
        let body = noise(1 << 20);
        let req = chunked_echo_request(&body, 65_536);
        let mut used = 0;
        loop {
            let n = s.handle_input(&c, &req[used..req.len().min(used + 65_536)]);
            if n == 0 {
                break;
            }
            used += n;
        }
        eprintln!(
            "FIGURE http echo of 1 MiB chunked, nothing read: {used} B taken, {} B held",
            s.buffered_capacity()
        );
        assert!(
            used < req.len() / 4,
            "took {used} bytes without sending any"
        );
        assert!(
            s.buffered_capacity() <= MEMORY_BOUND,
            "{}",
            s.buffered_capacity()
        );
        // It reads at last; afterwards the session holds no large allocation.
        let mut out = Vec::new();
        while used < req.len() || !s.out.is_empty() {
            out.extend(drain(&mut s, &c, 1500, usize::MAX));
            used += s.handle_input(&c, &req[used..req.len().min(used + 65_536)]);
        }
        assert!(split(&out, &[])[0].body == body);
        assert!(
            s.buffered_capacity() <= MAX_HEAD,
            "{}",
            s.buffered_capacity()
        );
        // A second echo stalls after 300 KiB (the reader keeps up): when its deadline closes the
        // connection, nothing is held any more.
        let req = chunked_echo_request(&noise(1 << 20), 65_536);
        let mut used = 0;
        while used < 300 * 1024 {
            used += s.handle_input(&c, &req[used..used + 1000]);
            drain(&mut s, &c, 1500, usize::MAX);
        }
        let t = s.poll_timeout().unwrap();
        s.handle_timeout(&cx(t.total_millis(), &st, &se));
        assert!(s.is_finished());
        assert_eq!(s.buffered_capacity(), 0);
    }
}
