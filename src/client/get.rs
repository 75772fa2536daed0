//! `tapstack get`: one HTTP/1.1 GET over the userspace stack, and the URLs it accepts.

use smoltcp::time::Instant;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use crate::reactor::App;
use crate::reactor::TracedStack;
use crate::service::http::{self, ChunkedDecoder, ChunkedStep};

use super::exchange::{Phase, TcpExchange};

/// Why a URL cannot be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    NotHttp(String),
    NeedsIp(String),
    Malformed(String),
}

impl std::fmt::Display for UrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UrlError::NotHttp(u) => {
                write!(f, "'{u}' is not an http:// URL (https is not supported)")
            }
            UrlError::NeedsIp(h) => write!(
                f,
                "'{h}' is a host name; the userspace stack has no DNS: give an IP address"
            ),
            UrlError::Malformed(u) => write!(
                f,
                "'{u}' is not a valid URL: expected http://ADDRESS[:PORT]/PATH"
            ),
        }
    }
}

/// Splits `http://192.168.69.100:8000/path` into the address and the request target.
pub(crate) fn parse_url(url: &str) -> Result<(SocketAddr, String, String), UrlError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| UrlError::NotHttp(url.to_string()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(UrlError::Malformed(url.to_string()));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, tail) = v6
            .split_once(']')
            .ok_or_else(|| UrlError::Malformed(url.to_string()))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| UrlError::Malformed(url.to_string()))?,
            None if tail.is_empty() => 80,
            None => return Err(UrlError::Malformed(url.to_string())),
        };
        (h, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| UrlError::Malformed(url.to_string()))?,
            ),
            None => (authority, 80),
        }
    };
    if port == 0 {
        return Err(UrlError::Malformed(url.to_string()));
    }
    let ip: IpAddr = host.parse().map_err(|_| {
        if host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            UrlError::NeedsIp(host.to_string())
        } else {
            UrlError::Malformed(url.to_string())
        }
    })?;
    Ok((
        SocketAddr::new(ip, port),
        authority.to_string(),
        path.to_string(),
    ))
}

#[derive(Debug)]
enum Body {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// `tapstack get URL`: one HTTP/1.1 GET over the userspace stack. Status line and headers to standard
/// error, the body to standard output; Content-Length and chunked bodies; redirects reported, not
/// followed.
pub(crate) struct Get {
    ex: TcpExchange,
    buf: Vec<u8>,
    head: Option<http::ResponseHead>,
    body: Option<Body>,
    body_bytes: u64,
    outcome: Option<Result<(), String>>,
}

impl Get {
    pub(crate) fn new(url: &str) -> Result<Get, UrlError> {
        let (addr, authority, path) = parse_url(url)?;
        let mut ex = TcpExchange::new(addr);
        ex.send(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: tapstack/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            )
            .as_bytes(),
        );
        Ok(Get {
            ex,
            buf: Vec::new(),
            head: None,
            body: None,
            body_bytes: 0,
            outcome: None,
        })
    }

    fn emit_body(&mut self, data: &[u8]) -> Result<(), String> {
        self.body_bytes += data.len() as u64;
        let mut out = std::io::stdout().lock();
        out.write_all(data)
            .and_then(|_| out.flush())
            .map_err(|e| format!("cannot write the body: {e}"))
    }

    /// Consumes buffered bytes; `Some` when the response is complete or broken.
    fn process(&mut self, eof: bool) -> Option<Result<(), String>> {
        if self.head.is_none() {
            match http::parse_response_head(&self.buf) {
                Ok(None) if eof => {
                    return Some(Err(
                        "the server closed before a complete response head".into()
                    ))
                }
                Ok(None) => return None,
                Err(e) => return Some(Err(format!("malformed response: {e}"))),
                Ok(Some(head)) => {
                    let mut err = std::io::stderr().lock();
                    let _ = writeln!(
                        err,
                        "HTTP/1.{} {} {}",
                        head.minor_version, head.status, head.reason
                    );
                    for h in &head.headers {
                        let _ = writeln!(err, "{}: {}", h.name, String::from_utf8_lossy(&h.value));
                    }
                    let chunked =
                        http::header(&head.headers, "transfer-encoding").is_some_and(|v| {
                            String::from_utf8_lossy(v)
                                .to_ascii_lowercase()
                                .contains("chunked")
                        });
                    let length = http::header(&head.headers, "content-length")
                        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
                    self.body = Some(if chunked {
                        Body::Chunked(ChunkedDecoder::new())
                    } else if let Some(n) = length {
                        Body::Length(n)
                    } else {
                        Body::UntilClose
                    });
                    self.buf.drain(..head.len);
                    self.head = Some(head);
                }
            }
        }
        loop {
            match self.body.as_mut()? {
                Body::Length(left) => {
                    let take = (*left).min(self.buf.len() as u64) as usize;
                    *left -= take as u64;
                    let data: Vec<u8> = self.buf.drain(..take).collect();
                    if let Err(e) = self.emit_body(&data) {
                        return Some(Err(e));
                    }
                    if matches!(self.body, Some(Body::Length(0))) {
                        return Some(self.verdict());
                    }
                    if eof {
                        return Some(Err("the server closed before the whole body arrived".into()));
                    }
                    return None;
                }
                Body::UntilClose => {
                    let data = std::mem::take(&mut self.buf);
                    if let Err(e) = self.emit_body(&data) {
                        return Some(Err(e));
                    }
                    return eof.then(|| self.verdict());
                }
                Body::Chunked(dec) => {
                    if dec.is_done() {
                        return Some(self.verdict());
                    }
                    if self.buf.is_empty() {
                        return eof.then(|| Err("the server closed inside a chunked body".into()));
                    }
                    match dec.step(&self.buf) {
                        Err(e) => return Some(Err(format!("bad chunked body: {e}"))),
                        Ok(ChunkedStep::Framing(n)) | Ok(ChunkedStep::Done(n)) => {
                            if n == 0 && !dec.is_done() {
                                return eof.then(|| {
                                    Err("the server closed inside a chunked body".into())
                                });
                            }
                            self.buf.drain(..n);
                        }
                        Ok(ChunkedStep::Data(n)) => {
                            let data: Vec<u8> = self.buf.drain(..n).collect();
                            if let Err(e) = self.emit_body(&data) {
                                return Some(Err(e));
                            }
                        }
                    }
                }
            }
        }
    }

    fn verdict(&self) -> Result<(), String> {
        let Some(head) = &self.head else {
            return Err("no response".into());
        };
        match head.status {
            200..=299 => Ok(()),
            300..=399 => {
                let loc = http::header(&head.headers, "location")
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                Err(format!(
                    "HTTP {} {}: redirect to {} (not followed)",
                    head.status,
                    head.reason,
                    loc.as_deref().unwrap_or("an unnamed location")
                ))
            }
            s => Err(format!("HTTP {s} {}", head.reason)),
        }
    }
}

impl App for Get {
    fn poll(&mut self, now: Instant, stack: &mut TracedStack) -> bool {
        if self.outcome.is_some() {
            return false;
        }
        let progress = self.ex.poll(now, stack);
        self.buf.extend_from_slice(&self.ex.take_received());
        let eof = self.ex.phase == Phase::Done;
        if let Phase::Failed(e) = &self.ex.phase {
            self.outcome = Some(Err(e.clone()));
            return true;
        }
        if let Some(r) = self.process(eof) {
            self.outcome = Some(r);
            return true;
        }
        if eof {
            self.outcome = Some(Err(
                "the server closed before the response was complete".into()
            ));
        }
        progress
    }

    fn poll_at(&self) -> Option<Instant> {
        self.ex.poll_at()
    }

    fn outcome(&self) -> Option<Result<(), String>> {
        self.outcome.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_url_forms() {
        let (a, host, path) = parse_url("http://192.168.69.100:8000/x/y?z=1").unwrap();
        assert_eq!(a, "192.168.69.100:8000".parse().unwrap());
        assert_eq!(host, "192.168.69.100:8000");
        assert_eq!(path, "/x/y?z=1");
        let (a, _, path) = parse_url("http://10.0.0.1").unwrap();
        assert_eq!(a.port(), 80);
        assert_eq!(path, "/");
        let (a, host, _) = parse_url("http://[fdaa::100]:81/").unwrap();
        assert_eq!(a, "[fdaa::100]:81".parse().unwrap());
        assert_eq!(host, "[fdaa::100]:81");
    }

    #[test]
    fn test_parse_url_errors() {
        for (url, want) in [
            ("https://1.2.3.4/", "NotHttp"),
            ("http://example.com/", "NeedsIp"),
            ("http://1.2.3.4:99999/", "Malformed"),
            ("http://1.2.3.4:0/", "Malformed"),
            ("http:///x", "Malformed"),
            ("http://[fe80::1/", "Malformed"),
        ] {
            let got = format!("{:?}", parse_url(url).unwrap_err());
            assert!(got.starts_with(want), "{url}: {got}");
        }
    }
}
