//! Parsing of request and response heads with `httparse`, into owned values, plus the header
//! semantics the server needs (connection tokens, body framing). Usable by a client too:
//! [`parse_response_head`] reads a response's status line and headers.

/// Most header lines accepted in one head; more is answered with 431.
pub(crate) const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub name: String,
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestHead {
    pub method: String,
    /// The request target as sent (origin form `/path?query`, or absolute form).
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Vec<Header>,
    /// Length of the head in bytes, including the blank line: the body starts here.
    pub len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    pub minor_version: u8,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<Header>,
    /// Length of the head in bytes, including the blank line: the body starts here.
    pub len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// More than [`MAX_HEADERS`] header lines.
    TooManyHeaders,
    Malformed(httparse::Error),
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::TooManyHeaders => write!(f, "more than {MAX_HEADERS} header lines"),
            HeadError::Malformed(e) => write!(f, "malformed head: {e}"),
        }
    }
}

impl std::error::Error for HeadError {}

impl From<httparse::Error> for HeadError {
    fn from(e: httparse::Error) -> Self {
        match e {
            httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
            e => HeadError::Malformed(e),
        }
    }
}

fn owned(headers: &[httparse::Header]) -> Vec<Header> {
    headers
        .iter()
        .map(|h| Header {
            name: h.name.to_string(),
            value: h.value.to_vec(),
        })
        .collect()
}

/// Parses a request head from the start of `buf`: `Ok(None)` while it is incomplete.
pub(crate) fn parse_request_head(buf: &[u8]) -> Result<Option<RequestHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf)? {
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(len) => Ok(Some(RequestHead {
            method: req.method.unwrap_or_default().to_string(),
            target: req.path.unwrap_or_default().to_string(),
            minor_version: req.version.unwrap_or(1),
            headers: owned(req.headers),
            len,
        })),
    }
}

/// Parses a response head from the start of `buf`: `Ok(None)` while it is incomplete.
pub(crate) fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf)? {
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(len) => Ok(Some(ResponseHead {
            minor_version: resp.version.unwrap_or(1),
            status: resp.code.unwrap_or_default(),
            reason: resp.reason.unwrap_or_default().to_string(),
            headers: owned(resp.headers),
            len,
        })),
    }
}

/// The value of the first header called `name` (case-insensitive).
pub(crate) fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_slice())
}

/// The comma-separated elements of every header called `name`, trimmed, empty ones skipped.
pub(crate) fn header_list<'a>(
    headers: &'a [Header],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(|v| v.trim_ascii())
        .filter(|v| !v.is_empty())
}

/// Whether a list header (`Connection`, `Expect`, ...) holds `token` (case-insensitive).
pub(crate) fn has_token(headers: &[Header], name: &str, token: &str) -> bool {
    header_list(headers, name).any(|v| v.eq_ignore_ascii_case(token.as_bytes()))
}

/// How a message's body is delimited (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (a request with neither `Content-Length` nor `Transfer-Encoding`).
    None,
    Length(u64),
    Chunked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FramingError {
    /// Unparsable or conflicting `Content-Length` values, or both `Content-Length` and
    /// `Transfer-Encoding` (refused outright: the classic request smuggling vector).
    Invalid,
    /// A transfer coding other than plain `chunked`.
    UnsupportedCoding,
}

impl std::fmt::Display for FramingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FramingError::Invalid => f.write_str("invalid or conflicting body length"),
            FramingError::UnsupportedCoding => {
                f.write_str("only chunked transfer coding is supported")
            }
        }
    }
}

impl std::error::Error for FramingError {}

/// The framing of a request body, from its headers.
pub(crate) fn request_framing(headers: &[Header]) -> Result<Framing, FramingError> {
    let has_te = headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    let mut lengths = header_list(headers, "content-length").peekable();
    if has_te {
        if lengths.peek().is_some() {
            return Err(FramingError::Invalid);
        }
        let mut codings = header_list(headers, "transfer-encoding");
        return match (codings.next(), codings.next()) {
            (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
            _ => Err(FramingError::UnsupportedCoding),
        };
    }
    let mut length = None;
    for v in lengths {
        if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
            return Err(FramingError::Invalid);
        }
        // At most 19 digits: always fits.
        let n: u64 = std::str::from_utf8(v).unwrap().parse().unwrap();
        if length.is_some_and(|l| l != n) {
            return Err(FramingError::Invalid);
        }
        length = Some(n);
    }
    Ok(length.map_or(Framing::None, Framing::Length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<Header> {
        pairs
            .iter()
            .map(|(n, v)| Header {
                name: n.to_string(),
                value: v.as_bytes().to_vec(),
            })
            .collect()
    }

    #[test]
    fn test_request_head_partial_then_complete() {
        let raw = b"GET /x?y HTTP/1.0\r\nHost: a\r\nX: 1\r\n\r\nBODY";
        assert_eq!(parse_request_head(&raw[..20]), Ok(None));
        let head = parse_request_head(raw).unwrap().unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/x?y");
        assert_eq!(head.minor_version, 0);
        assert_eq!(header(&head.headers, "host"), Some(&b"a"[..]));
        assert_eq!(&raw[head.len..], b"BODY");
    }

    #[test]
    fn test_request_head_errors() {
        assert!(matches!(
            parse_request_head(b"GET / HTTP/2.0\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            parse_request_head(b"G E T\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_request_head(&many), Err(HeadError::TooManyHeaders));
    }

    #[test]
    fn test_response_head_for_clients() {
        let raw = b"HTTP/1.1 206 Partial Content\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(parse_response_head(&raw[..10]), Ok(None));
        let head = parse_response_head(raw).unwrap().unwrap();
        assert_eq!((head.minor_version, head.status), (1, 206));
        assert_eq!(head.reason, "Partial Content");
        assert_eq!(header(&head.headers, "CONTENT-LENGTH"), Some(&b"3"[..]));
        assert_eq!(&raw[head.len..], b"abc");
    }

    #[test]
    fn test_connection_tokens() {
        let hs = h(&[
            ("Connection", "Upgrade, Keep-Alive"),
            ("connection", "close"),
        ]);
        assert!(has_token(&hs, "connection", "keep-alive"));
        assert!(has_token(&hs, "Connection", "CLOSE"));
        assert!(!has_token(&hs, "connection", "upgrade2"));
    }

    #[test]
    fn test_framing_rules() {
        assert_eq!(request_framing(&h(&[])), Ok(Framing::None));
        assert_eq!(
            request_framing(&h(&[("Content-Length", "12")])),
            Ok(Framing::Length(12))
        );
        assert_eq!(
            request_framing(&h(&[("Content-Length", "5, 5"), ("content-length", "5")])),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            request_framing(&h(&[("Content-Length", "5"), ("content-length", "6")])),
            Err(FramingError::Invalid)
        );
        assert_eq!(
            request_framing(&h(&[("Content-Length", "-1")])),
            Err(FramingError::Invalid)
        );
        assert_eq!(
            request_framing(&h(&[("Content-Length", "99999999999999999999")])),
            Err(FramingError::Invalid)
        );
        assert_eq!(
            request_framing(&h(&[("Transfer-Encoding", "Chunked")])),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            request_framing(&h(&[
                ("Transfer-Encoding", "chunked"),
                ("Content-Length", "3")
            ])),
            Err(FramingError::Invalid)
        );
        assert_eq!(
            request_framing(&h(&[("Transfer-Encoding", "gzip, chunked")])),
            Err(FramingError::UnsupportedCoding)
        );
    }
}
