//! What the HTTP tests share: a session fed by hand, and its output split into responses.

use super::head::Header;
use super::{
    bytes_pattern, has_token, header, parse_response_head, ChunkedDecoder, ChunkedStep, HttpSession,
};
use crate::service::testing::{cx, drain, settings};
use crate::service::{Context, StreamSession};
use crate::status::{ConnRow, Endpoint, Proto, StackKind, Status};

/// One parsed response: status, headers, body (`Content-Length` bytes or decoded chunks; none for
/// 1xx).
#[derive(Debug)]
pub(super) struct Resp {
    pub(super) status: u16,
    pub(super) headers: Vec<Header>,
    pub(super) body: Vec<u8>,
}

impl Resp {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name).map(|v| std::str::from_utf8(v).unwrap())
    }
}

/// Splits a byte stream into responses; `head_only[i]` marks answers to HEAD.
pub(super) fn split(mut bytes: &[u8], head_only: &[bool]) -> Vec<Resp> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let head = parse_response_head(bytes)
            .unwrap()
            .unwrap_or_else(|| panic!("incomplete head: {:?}", String::from_utf8_lossy(bytes)));
        let no_body = (100..=199).contains(&head.status)
            || head_only.get(out.len()).copied().unwrap_or(false);
        let (body, used) = if no_body {
            (Vec::new(), 0)
        } else if has_token(&head.headers, "transfer-encoding", "chunked") {
            dechunk(&bytes[head.len..])
        } else {
            let len: usize = std::str::from_utf8(header(&head.headers, "content-length").unwrap())
                .unwrap()
                .parse()
                .unwrap();
            (bytes[head.len..head.len + len].to_vec(), len)
        };
        bytes = &bytes[head.len + used..];
        out.push(Resp {
            status: head.status,
            headers: head.headers,
            body,
        });
    }
    out
}

/// Decodes a whole chunked body from the front of `bytes`: the body and the bytes it took.
pub(super) fn dechunk(bytes: &[u8]) -> (Vec<u8>, usize) {
    let mut d = ChunkedDecoder::new();
    let (mut body, mut used) = (Vec::new(), 0);
    loop {
        assert!(used < bytes.len(), "chunked response cut short");
        match d
            .step(&bytes[used..])
            .expect("a well-formed chunked response")
        {
            ChunkedStep::Framing(n) => used += n,
            ChunkedStep::Data(n) => {
                body.extend_from_slice(&bytes[used..used + n]);
                used += n;
            }
            ChunkedStep::Done(n) => return (body, used + n),
        }
    }
}

/// Feeds all of `input` (it must be consumed) and collects all output.
pub(super) fn exchange(s: &mut HttpSession, c: &Context, input: &[u8]) -> Vec<u8> {
    assert_eq!(s.handle_input(c, input), input.len(), "all input consumed");
    drain(s, c, 1500, usize::MAX)
}

pub(super) fn one(input: &str) -> (Resp, HttpSession) {
    let (st, se) = (Status::default(), settings());
    let c = cx(0, &st, &se);
    let mut s = HttpSession::new(&c);
    let out = exchange(&mut s, &c, input.as_bytes());
    let head_only = input.starts_with("HEAD");
    let mut rs = split(&out, &[head_only]);
    assert_eq!(rs.len(), 1, "exactly one response");
    (rs.remove(0), s)
}

pub(super) fn get(path: &str, extra: &str) -> Resp {
    one(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n")).0
}

pub(super) fn sample_status() -> Status {
    let mut st = Status::default();
    st.endpoints.push(Endpoint {
        stack: StackKind::Stack,
        proto: Proto::Tcp,
        addr: "192.168.69.1:80".parse().unwrap(),
        service: "http",
    });
    st.conns.insert(
        12,
        ConnRow {
            id: 12,
            stack: StackKind::Stack,
            proto: Proto::Tcp,
            local: "192.168.69.1:80".parse().unwrap(),
            remote: Some("192.168.69.100:40000".parse().unwrap()),
            state: "ESTABLISHED",
            service: "http",
        },
    );
    st.conns.insert(
        13,
        ConnRow {
            id: 13,
            stack: StackKind::Host,
            proto: Proto::Udp,
            local: "127.0.0.1:7".parse().unwrap(),
            remote: None,
            state: "-",
            service: "echo",
        },
    );
    st.stack.packets_in = 4242;
    st.host.bytes_out = 777;
    st.stack.drop("malformed: <bad> & \"worse\"");
    st
}

pub(super) fn full_body(n: u64) -> Vec<u8> {
    (0..n).map(bytes_pattern).collect()
}
