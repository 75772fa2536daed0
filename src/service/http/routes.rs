//! The pages the HTTP server serves: which path is which [`Route`], and the response each one gets.
//!
//! Adding a route is a variant, an arm in `Route::resolve`, `Route::allow` and `respond`:
//! - `GET`/`HEAD /`: the status page ([`status_html`]): both stacks' connections, endpoints, counters.
//! - `GET`/`HEAD /netstat.json`: the same as JSON ([`status_json`]).
//! - `GET`/`HEAD /bytes/N`: `N` bytes of [`bytes_pattern`](super::bytes_pattern) (`N` at most
//!   [`BYTES_MAX`], else 400), with single `Range` support as [`resolve_range`] documents (206 / 416;
//!   several ranges get the full 200).
//!   The body is generated in `poll_output` from a position, never materialised.
//! - `GET`/`HEAD /conn/ID` (also `/conn/cID`): the SVG ladder diagram of a live or recently closed
//!   connection (`image/svg+xml`; 404 for an unknown id, 400 for one that is not a number).
//! - `GET`/`HEAD /live`: a self-contained page (inline CSS and script, no external assets) that polls
//!   `/live.json` and shows packets as they arrive and the diagrams of the last connections.
//! - `GET`/`HEAD /live.json?since=N`: packets recorded after packet number `N` (see
//!   [`crate::trace::pictures`]); 400 when `N` is not a number. `/conn`, `/live` and `/live.json` are
//!   sent with `Cache-Control: no-store`.
//! - `POST /echo`: the request body back, streamed as it arrives (never held whole). A
//!   `Content-Length` body (at most [`MAX_BODY`](super::MAX_BODY)) comes back with the same length;
//!   a `Transfer-Encoding: chunked` one of any length is decoded, held while it is at most
//!   [`ECHO_HOLD`](super::ECHO_HOLD) bytes and then answered with `Content-Length`, else answered
//!   chunked from that point on. A `POST` without either has an empty body and gets one back.
//!

use super::{
    header, http_date, resolve_range, status_html, status_json, Body, RangeAnswer, RequestHead,
    Response, BYTES_MAX, LIVE_HTML,
};
use crate::service::Context;

/// The resources the server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    StatusPage,
    NetstatJson,
    /// `/bytes/N`; `u64::MAX` when the number does not fit.
    Bytes(u64),
    Echo,
    /// `/conn/ID` (or `/conn/cID`): the SVG ladder diagram of a live or recently closed connection.
    Conn(u64),
    /// `/conn/...` with something that is not a connection id (answered 400).
    BadConn,
    /// `/live`: packets as they arrive, and the diagrams of the last connections.
    Live,
    /// `/live.json?since=N`: what `/live` polls.
    LiveJson,
}

impl Route {
    /// The route for a path (without query), or `None` for 404.
    pub(crate) fn resolve(path: &str) -> Option<Route> {
        match path {
            "/" => Some(Route::StatusPage),
            "/netstat.json" => Some(Route::NetstatJson),
            "/echo" => Some(Route::Echo),
            "/live" => Some(Route::Live),
            "/live.json" => Some(Route::LiveJson),
            _ => {
                if let Some(id) = path.strip_prefix("/conn/") {
                    return Some(parse_conn_id(id).map_or(Route::BadConn, Route::Conn));
                }
                if let Some(n) = path.strip_prefix("/bytes/") {
                    if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                        return Some(Route::Bytes(n.parse().unwrap_or(u64::MAX)));
                    }
                }
                None
            }
        }
    }

    /// The methods the route answers, as the `Allow` header lists them.
    pub(crate) fn allow(self) -> &'static str {
        match self {
            Route::Echo => "POST",
            Route::StatusPage
            | Route::NetstatJson
            | Route::Bytes(_)
            | Route::Conn(_)
            | Route::BadConn
            | Route::Live
            | Route::LiveJson => "GET, HEAD",
        }
    }

    fn allows(self, method: &str) -> bool {
        self.allow().split(", ").any(|m| m == method)
    }
}

/// A connection id as in `/conn/12` or `/conn/c12` (decimal, no sign, no leading zeros, fits u64).
fn parse_conn_id(s: &str) -> Option<u64> {
    let digits = s.strip_prefix('c').unwrap_or(s);
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !(digits.len() > 1 && digits.starts_with('0'));
    ok.then(|| digits.parse().ok()).flatten()
}

/// The value of `name` in the query of a request target (`None` when absent).
fn query_param<'a>(target: &'a str, name: &str) -> Option<&'a str> {
    let query = target.split('#').next()?.split_once('?')?.1;
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `/live.json` without a tracer: no packets.
const LIVE_JSON_EMPTY: &str =
    "{\"last\":0,\"skipped\":0,\"device\":\"\",\"packets\":[],\"conns\":[]}\n";

/// The path of a request target: query dropped, absolute form (`http://host/path`) reduced to its path.
pub(super) fn target_path(target: &str) -> &str {
    let mut path = target.split(['?', '#']).next().unwrap_or("");
    for scheme in ["http://", "https://"] {
        if let Some(rest) = path.strip_prefix(scheme) {
            path = rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    path
}

/// The response to a request for `route` (echo excepted).
pub(super) fn respond(cx: &Context, req: &RequestHead, route: Option<Route>) -> Response {
    let Some(route) = route else {
        return Response::text(404, "no such resource");
    };
    if !route.allows(&req.method) {
        let detail = format!("allowed: {}", route.allow());
        return Response::text(405, &detail).header("Allow", route.allow().to_string());
    }
    match route {
        Route::StatusPage => {
            let links = cx.trace.map(|t| t.ladder_links()).unwrap_or_default();
            let html = status_html(cx.status, &http_date(cx.wall), &links);
            Response::new(
                200,
                "text/html; charset=utf-8",
                Body::Bytes(html.into_bytes()),
            )
        }
        Route::BadConn => Response::text(400, "a connection id is a number, as in /conn/12"),
        Route::Conn(id) => match cx.trace.and_then(|t| t.conn_svg(id)) {
            Some(svg) => Response::new(200, "image/svg+xml", Body::Bytes(svg.into_bytes()))
                .header("Cache-Control", "no-store".to_string())
                .header("X-Content-Type-Options", "nosniff".to_string()),
            None => Response::text(
                404,
                &format!("no connection c{id} is known (live and recently closed ones are on /)"),
            ),
        },
        Route::Live => Response::new(
            200,
            "text/html; charset=utf-8",
            Body::Bytes(LIVE_HTML.as_bytes().to_vec()),
        )
        .header("Cache-Control", "no-store".to_string()),
        Route::LiveJson => {
            let since = match query_param(&req.target, "since") {
                None | Some("") => 0,
                Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => v.parse().unwrap_or(u64::MAX),
                Some(_) => return Response::text(400, "since is a packet number, as in ?since=42"),
            };
            let body = match cx.trace {
                Some(t) => t.live_json(since),
                None => LIVE_JSON_EMPTY.as_bytes().to_vec(),
            };
            Response::new(200, "application/json", Body::Bytes(body))
                .header("Cache-Control", "no-store".to_string())
        }
        Route::NetstatJson => {
            Response::new(200, "application/json", Body::Bytes(status_json(cx.status)))
        }
        Route::Bytes(n) if n > BYTES_MAX => {
            let detail = format!("/bytes/N serves at most {BYTES_MAX} bytes");
            Response::text(400, &detail).closing()
        }
        Route::Bytes(n) => {
            let octets = "application/octet-stream";
            let ranges = ("Accept-Ranges", "bytes".to_string());
            match resolve_range(header(&req.headers, "range"), n) {
                RangeAnswer::Full => Response::new(200, octets, Body::Pattern { first: 0, len: n }),
                RangeAnswer::Partial { first, last } => Response::new(
                    206,
                    octets,
                    Body::Pattern {
                        first,
                        len: last - first + 1,
                    },
                )
                .header("Content-Range", format!("bytes {first}-{last}/{n}")),
                RangeAnswer::Unsatisfiable => {
                    Response::text(416, &format!("the body has {n} bytes"))
                        .header("Content-Range", format!("bytes */{n}"))
                }
            }
            .header(ranges.0, ranges.1)
        }
        Route::Echo => unreachable!("POST /echo is answered by start_echo"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{HttpSession, SERVER};
    use crate::service::testing::{cx, settings};
    use crate::service::StreamSession;

    /// A tracer stand-in: connection 5 has a diagram; `live_json` records what it was asked.
    struct FakeTrace {
        since: std::cell::Cell<Option<u64>>,
    }

    impl crate::service::TraceView for FakeTrace {
        fn conn_svg(&self, id: u64) -> Option<String> {
            (id == 5).then(|| r#"<svg><line class="seg"/></svg>"#.to_string())
        }
        fn live_json(&self, since: u64) -> Vec<u8> {
            self.since.set(Some(since));
            format!("{{\"last\":{since}}}").into_bytes()
        }
        fn ladder_links(&self) -> Vec<(u64, String)> {
            vec![
                (12, "c12 tcp <a&b> -> x".to_string()),
                (5, "c5".to_string()),
            ]
        }
    }

    fn get_traced(path: &str, trace: &FakeTrace) -> Resp {
        let (st, se) = (sample_status(), settings());
        let mut c = cx(0, &st, &se);
        c.trace = Some(trace);
        let mut s = HttpSession::new(&c);
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        let out = exchange(&mut s, &c, req.as_bytes());
        let mut rs = split(&out, &[]);
        assert_eq!(rs.len(), 1);
        assert!(!s.is_finished(), "keep-alive");
        rs.remove(0)
    }

    fn fake() -> FakeTrace {
        FakeTrace {
            since: std::cell::Cell::new(None),
        }
    }

    #[test]
    fn test_status_page_lists_connections_endpoints_counters() {
        let (st, se) = (sample_status(), settings());
        let c = cx(0, &st, &se);
        let mut s = HttpSession::new(&c);
        let out = exchange(&mut s, &c, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = &split(&out, &[])[0];
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        let html = String::from_utf8(r.body.clone()).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        for needle in [
            "<td>c12</td><td>stack</td><td>tcp</td><td>192.168.69.1:80</td>\
             <td>192.168.69.100:40000</td><td>ESTABLISHED</td><td>http</td>",
            "<td>c13</td><td>host</td><td>udp</td><td>127.0.0.1:7</td><td>*:*</td><td>-</td><td>echo</td>",
            "<td>stack</td><td>tcp</td><td>192.168.69.1:80</td><td>http</td>",
            "4242",
            "777",
            "malformed: &lt;bad&gt; &amp; &quot;worse&quot;",
        ] {
            assert!(html.contains(needle), "missing {needle}");
        }
        assert!(!html.contains("<bad>"), "interpolated text is escaped");
        assert!(!html.contains("src="), "no external assets");
    }

    #[test]
    fn test_netstat_json_parses() {
        let (st, se) = (sample_status(), settings());
        let c = cx(0, &st, &se);
        let mut s = HttpSession::new(&c);
        let out = exchange(&mut s, &c, b"GET /netstat.json HTTP/1.1\r\n\r\n");
        let r = &split(&out, &[])[0];
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["endpoints"][0]["addr"], "192.168.69.1:80");
        assert_eq!(v["connections"][0]["id"], 12);
        assert_eq!(v["connections"][0]["state"], "ESTABLISHED");
        assert_eq!(v["connections"][1]["remote"], serde_json::Value::Null);
        assert_eq!(v["counters"]["stack"]["packets_in"], 4242);
        assert_eq!(v["counters"]["host"]["bytes_out"], 777);
        assert_eq!(
            v["counters"]["stack"]["drops"]["malformed: <bad> & \"worse\""],
            1
        );
    }

    #[test]
    fn test_bytes_full_body_is_the_pattern() {
        let r = get("/bytes/1000", "");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(r.body, full_body(1000));
        let r = get("/bytes/0", "");
        assert_eq!((r.status, r.body.len()), (200, 0));
    }

    #[test]
    fn test_bytes_range_forms() {
        let cases = [
            ("bytes=10-19", 206, Some("bytes 10-19/1000"), 10..20),
            ("bytes=990-", 206, Some("bytes 990-999/1000"), 990..1000),
            ("bytes=-5", 206, Some("bytes 995-999/1000"), 995..1000),
            ("bytes=900-5000", 206, Some("bytes 900-999/1000"), 900..1000),
            ("bytes=5-3", 200, None, 0..1000),
            ("bytes=0-1,5-9", 200, None, 0..1000),
        ];
        for (range, status, content_range, body) in cases {
            let r = get("/bytes/1000", &format!("Range: {range}\r\n"));
            assert_eq!(r.status, status, "{range}");
            assert_eq!(r.header("content-range"), content_range, "{range}");
            assert_eq!(r.body, full_body(1000)[body].to_vec(), "{range}");
        }
    }

    #[test]
    fn test_bytes_unsatisfiable_is_416_and_keeps_alive() {
        for (n, range) in [
            (1000, "bytes=1000-"),
            (1000, "bytes=-0"),
            (0, "bytes=0-"),
            (0, "bytes=-1"),
        ] {
            let (r, s) = one(&format!(
                "GET /bytes/{n} HTTP/1.1\r\nRange: {range}\r\n\r\n"
            ));
            assert_eq!(r.status, 416, "{n} {range}");
            assert_eq!(r.header("content-range"), Some(&*format!("bytes */{n}")));
            assert!(!s.is_finished());
        }
    }

    #[test]
    fn test_ranged_downloads_reassemble_byte_exact() {
        let n = 100_003u64;
        let mut whole = Vec::new();
        for range in ["bytes=0-33332", "bytes=33333-66665", "bytes=66666-"] {
            let r = get(&format!("/bytes/{n}"), &format!("Range: {range}\r\n"));
            assert_eq!(r.status, 206);
            whole.extend_from_slice(&r.body);
        }
        assert_eq!(whole, get(&format!("/bytes/{n}"), "").body);
        assert_eq!(whole, full_body(n));
    }

    #[test]
    fn test_bytes_over_one_gib_is_400_and_closes() {
        for n in ["1073741825", "99999999999999999999999999"] {
            let (r, s) = one(&format!("GET /bytes/{n} HTTP/1.1\r\n\r\n"));
            assert_eq!(r.status, 400);
            assert_eq!(r.header("connection"), Some("close"));
            assert!(s.is_finished());
        }
    }

    #[test]
    fn test_unknown_path_is_404_and_keeps_alive() {
        for path in ["/nope", "/bytes/", "/bytes/12x", "/echo/x"] {
            let (r, s) = one(&format!("GET {path} HTTP/1.1\r\n\r\n"));
            assert_eq!(r.status, 404, "{path}");
            assert!(!s.is_finished());
        }
    }

    #[test]
    fn test_wrong_method_is_405_with_allow() {
        let (r, s) = one("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
        assert!(
            !s.is_finished(),
            "the body was skipped; the connection goes on"
        );
        let r = get("/echo", "");
        assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
        let (r, _) = one("DELETE /bytes/5 HTTP/1.1\r\n\r\n");
        assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    }

    #[test]
    fn test_absolute_form_and_query_are_routed_by_path() {
        assert_eq!(get("http://example/bytes/2?x=1", "").body, [0, 1]);
        assert_eq!(get("/bytes/2?x=1", "").body, [0, 1]);
    }

    #[test]
    fn test_conn_svg_404_and_400() {
        let t = fake();
        for path in ["/conn/5", "/conn/c5"] {
            let r = get_traced(path, &t);
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.header("content-type"), Some("image/svg+xml"));
            assert_eq!(r.header("cache-control"), Some("no-store"));
            assert_eq!(r.header("date"), Some("Mon, 01 Jan 2024 00:00:00 GMT"));
            assert_eq!(r.header("server"), Some(SERVER));
            assert_eq!(r.header("content-length"), Some(&*r.body.len().to_string()));
            assert_eq!(r.body, br#"<svg><line class="seg"/></svg>"#);
        }
        for path in ["/conn/6", "/conn/18446744073709551615"] {
            assert_eq!(get_traced(path, &t).status, 404, "{path}");
        }
        for path in [
            "/conn/",
            "/conn/x",
            "/conn/-1",
            "/conn/5x",
            "/conn/05",
            "/conn/c",
            "/conn/5/6",
            "/conn/%35",
            "/conn/18446744073709551616",
        ] {
            let r = get_traced(path, &t);
            assert_eq!(r.status, 400, "{path}");
        }
        // Without a tracer nothing is known.
        assert_eq!(get("/conn/5", "").status, 404);
        let (r, _) = one("HEAD /conn/5 HTTP/1.1\r\n\r\n");
        assert_eq!(r.status, 404);
        let (r, _) = one("POST /conn/5 HTTP/1.1\r\n\r\n");
        assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    }

    #[test]
    fn test_live_json_since_and_no_store() {
        let t = fake();
        for (path, since) in [
            ("/live.json", 0),
            ("/live.json?since=42", 42),
            ("/live.json?x=1&since=7", 7),
            ("/live.json?since=", 0),
            ("/live.json?since=99999999999999999999999", u64::MAX),
        ] {
            let r = get_traced(path, &t);
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert_eq!(r.header("cache-control"), Some("no-store"));
            assert_eq!(t.since.get(), Some(since), "{path}");
        }
        for path in ["/live.json?since=-1", "/live.json?since=abc"] {
            assert_eq!(get_traced(path, &t).status, 400, "{path}");
        }
        // Without a tracer: an empty document.
        let r = get("/live.json", "");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["packets"].as_array().unwrap().len(), 0);
        assert_eq!(v["last"], 0);
    }

    #[test]
    fn test_live_page_is_self_contained() {
        let r = get("/live", "");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let html = String::from_utf8(r.body).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("/live.json?since="));
        assert!(!html.contains("src="), "no external scripts or images");
        assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"));
        assert!(!html.contains("innerHTML"), "text goes in as text");
    }

    #[test]
    fn test_status_page_links_ladders_and_live() {
        let t = fake();
        let r = get_traced("/", &t);
        let html = String::from_utf8(r.body).unwrap();
        assert!(html.contains(r#"<a href="/live">/live</a>"#));
        assert!(
            html.contains(r#"<tr><td><a href="/conn/12">c12</a></td><td>stack</td>"#),
            "{html}"
        );
        assert!(html.contains("<h2>Ladder diagrams (2)</h2>"));
        assert!(html.contains(r#"<li><a href="/conn/12">c12 tcp &lt;a&amp;b&gt; -&gt; x</a></li>"#));
        assert!(!html.contains("<a&b>"));
        // c13 has no diagram: no link.
        assert!(html.contains("<tr><td>c13</td>"));
    }
}
