//! The status page (`GET /`) and its JSON twin (`GET /netstat.json`), rendered from [`Status`].

use crate::status::{ConnRow, Counters, Status};
use std::fmt::Write;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:monospace;margin:1em 2em}\
table{border-collapse:collapse;margin-bottom:1.5em}\
th,td{border:1px solid #aaa;padding:2px 8px;text-align:left}\
th{background:#eee}td.n{text-align:right}";

fn row(html: &mut String, cells: &[&str]) {
    html.push_str("<tr>");
    for c in cells {
        let _ = write!(html, "<td>{}</td>", escape_html(c));
    }
    html.push_str("</tr>\n");
}

fn header_row(html: &mut String, cells: &[&str]) {
    html.push_str("<tr>");
    for c in cells {
        let _ = write!(html, "<th>{}</th>", escape_html(c));
    }
    html.push_str("</tr>\n");
}

fn conn_cells(c: &ConnRow) -> [String; 7] {
    [
        format!("c{}", c.id),
        c.stack.as_str().to_string(),
        c.proto.as_str().to_string(),
        c.local.to_string(),
        c.remote
            .map_or_else(|| "*:*".to_string(), |r| r.to_string()),
        c.state.to_string(),
        c.service.to_string(),
    ]
}

/// A self-contained HTML page: the connection tables of both stacks (like `netstat -an`), the served
/// endpoints, and the counters. `generated` is shown as the time of the snapshot.
pub fn status_html(status: &Status, generated: &str) -> String {
    let mut html = String::with_capacity(4096);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>tapstack status</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>tapstack</h1>\n<p>Snapshot of {}. Also as <a href=\"/netstat.json\">/netstat.json</a>.</p>\n",
        escape_html(generated)
    );

    let _ = writeln!(html, "<h2>Connections ({})</h2>", status.conns.len());
    html.push_str("<table>\n");
    header_row(
        &mut html,
        &[
            "Id",
            "Stack",
            "Proto",
            "Local Address",
            "Foreign Address",
            "State",
            "Service",
        ],
    );
    for c in status.conns.values() {
        let cells = conn_cells(c);
        row(&mut html, &cells.each_ref().map(String::as_str));
    }
    html.push_str("</table>\n");

    let _ = writeln!(html, "<h2>Endpoints ({})</h2>", status.endpoints.len());
    html.push_str("<table>\n");
    header_row(&mut html, &["Stack", "Proto", "Address", "Service"]);
    for e in &status.endpoints {
        let addr = e.addr.to_string();
        row(
            &mut html,
            &[e.stack.as_str(), e.proto.as_str(), &addr, e.service],
        );
    }
    html.push_str("</table>\n");

    html.push_str("<h2>Counters</h2>\n<table>\n");
    header_row(&mut html, &["", "stack", "host"]);
    let (s, h) = (&status.stack, &status.host);
    type Count = fn(&Counters) -> u64;
    let numbers: [(&str, Count); 8] = [
        ("packets in", |c| c.packets_in),
        ("packets out", |c| c.packets_out),
        ("bytes in", |c| c.bytes_in),
        ("bytes out", |c| c.bytes_out),
        ("connections accepted", |c| c.conns_accepted),
        ("connections refused", |c| c.conns_refused),
        ("connections closed", |c| c.conns_closed),
        ("drops", Counters::drops_total),
    ];
    for (name, get) in numbers {
        let _ = writeln!(
            html,
            "<tr><th>{}</th><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape_html(name),
            get(s),
            get(h)
        );
    }
    let reasons: std::collections::BTreeSet<&String> =
        s.drops.keys().chain(h.drops.keys()).collect();
    for reason in reasons {
        let _ = writeln!(
            html,
            "<tr><th>drop: {}</th><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape_html(reason),
            s.drops.get(reason).copied().unwrap_or(0),
            h.drops.get(reason).copied().unwrap_or(0)
        );
    }
    html.push_str("</table>\n</body>\n</html>\n");
    html
}

/// `{"endpoints":[...],"connections":[...],"counters":{"stack":{...},"host":{...}}}`, pretty-printed,
/// with a final newline. Connections are in id order.
pub fn status_json(status: &Status) -> Vec<u8> {
    let value = serde_json::json!({
        "endpoints": status.endpoints,
        "connections": status.conns.values().collect::<Vec<_>>(),
        "counters": { "stack": status.stack, "host": status.host },
        "resources": status.resources,
    });
    let mut out = serde_json::to_vec_pretty(&value).expect("status serializes");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_escape_html() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape_html("plain 1.2.3.4:80"), "plain 1.2.3.4:80");
    }
}
