//! The status page (`GET /`) and its JSON twin (`GET /netstat.json`), rendered from [`Status`].

use crate::status::{ConnRow, Counters, Status};
use std::fmt::Write;

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape_html(s: &str) -> String {
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
/// endpoints, and the counters. `generated` is shown as the time of the snapshot. `ladders` (id and
/// title, from [`crate::service::TraceView::ladder_links`]) are linked to `/conn/ID`, from their row
/// in the connection table and from a list of their own.
pub(crate) fn status_html(status: &Status, generated: &str, ladders: &[(u64, String)]) -> String {
    let mut html = String::with_capacity(4096);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>tapstack status</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>tapstack</h1>\n<p>Snapshot of {}. Also as <a href=\"/netstat.json\">/netstat.json</a>. \
         Watch packets arrive: <a href=\"/live\">/live</a>.</p>\n",
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
    let drawn: std::collections::HashSet<u64> = ladders.iter().map(|(id, _)| *id).collect();
    for c in status.conns.values() {
        let cells = conn_cells(c);
        if drawn.contains(&c.id) {
            let _ = write!(
                html,
                "<tr><td><a href=\"/conn/{id}\">{}</a></td>",
                escape_html(&cells[0]),
                id = c.id
            );
            for cell in &cells[1..] {
                let _ = write!(html, "<td>{}</td>", escape_html(cell));
            }
            html.push_str("</tr>\n");
        } else {
            row(&mut html, &cells.each_ref().map(String::as_str));
        }
    }
    html.push_str("</table>\n");

    let _ = writeln!(
        html,
        "<h2>Ladder diagrams ({})</h2>\n<p>Live and recently closed flows of the userspace stack, \
         drawn from their packets.</p>\n<ul class=\"ladders\">",
        ladders.len()
    );
    for (id, title) in ladders {
        let _ = writeln!(
            html,
            "<li><a href=\"/conn/{id}\">{}</a></li>",
            escape_html(title)
        );
    }
    html.push_str("</ul>\n");

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

/// The `/live` page: self-contained (inline CSS and script, nothing fetched from elsewhere). It polls
/// `/live.json?since=N` every 300 ms, appends the packets to a table (the last 500 rows kept), and
/// keeps the ladder diagrams of the 8 newest flows seen (newest first, in a stable order), each
/// fetched from `/conn/ID` (as inline SVG) again when its segment count changed: one fetch at a time,
/// at most once a second per flow, and less often for long flows (10 ms more per segment, up to 10 s)
/// so that a busy flow (this page's own polling, a download) does not bury the stack in diagram
/// traffic. Every text goes in through
/// `textContent`; the SVGs are parsed as XML and imported, never run.
pub(crate) const LIVE_HTML: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tapstack live</title>
<style>
body{font-family:monospace;margin:1em 2em;color:#111827;background:#fff}
h1{margin:0 0 .2em}
#status{color:#6b7280;margin:.3em 0 .8em}
#box{max-height:220px;overflow:auto;border:1px solid #d1d5db;border-radius:6px}
table{border-collapse:collapse;font-size:12px;width:100%}
th{position:sticky;top:0;background:#f3f4f6;text-align:left;padding:2px 6px}
td{padding:1px 6px;white-space:nowrap;text-align:left}
td.n{text-align:right;color:#6b7280}
tr.in td.dir{color:#1d4ed8}
tr.out td.dir{color:#047857}
tr.dropped td{color:#dc2626}
#diagrams{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:12px;margin-top:12px}
section.conn{border:1px solid #d1d5db;border-radius:6px;padding:6px;max-height:600px;overflow:auto}
section.conn h2{font-size:13px;margin:0 0 4px}
section.conn svg{max-width:100%;height:auto;display:block}
button{font-family:inherit}
</style>
</head>
<body>
<h1>tapstack live</h1>
<p>Packets of the userspace stack as they arrive, and the ladder diagrams of the 8 newest flows
(try <code>curl</code> or <code>nc</code> against the stack; this page's own polling shows up too).
<a href="/">status page</a> &middot; <a href="/live.json">/live.json</a>
<button id="pause" type="button">pause</button></p>
<p id="status">connecting&hellip;</p>
<div id="box"><table><thead><tr><th>#</th><th>time</th><th>dir</th><th>conn</th><th>packet</th></tr></thead>
<tbody id="packets"></tbody></table></div>
<div id="diagrams"></div>
<script>
"use strict";
(function () {
  const MAX_ROWS = 500, MAX_DIAGRAMS = 8, POLL_MS = 300, REFRESH_MS = 1000;
  const tbody = document.getElementById("packets");
  const box = document.getElementById("box");
  const diagrams = document.getElementById("diagrams");
  const status = document.getElementById("status");
  const pause = document.getElementById("pause");
  let since = 0, seen = 0, skipped = 0, paused = false;
  const conns = new Map();

  pause.addEventListener("click", function () {
    paused = !paused;
    pause.textContent = paused ? "resume" : "pause";
  });

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function row(p) {
    const tr = document.createElement("tr");
    tr.className = "pkt " + p.dir + (p.dropped ? " dropped" : "");
    tr.dataset.seq = String(p.seq);
    if (p.conn != null) tr.dataset.conn = String(p.conn);
    if (p.label) tr.dataset.label = p.label;
    cell(tr, String(p.seq), "n");
    cell(tr, "+" + (p.t_us / 1e6).toFixed(6) + "s", "n");
    cell(tr, p.dir, "dir");
    const c = cell(tr, "");
    if (p.conn != null) {
      const a = document.createElement("a");
      a.href = "/conn/" + p.conn;
      a.textContent = "c" + p.conn;
      c.appendChild(a);
    }
    cell(tr, p.summary + (p.dropped ? " DROPPED: " + (p.drop_reason || "") : ""));
    return tr;
  }

  function touch(c) {
    let d = conns.get(c.id);
    if (!d) {
      let oldest = Infinity;
      for (const id of conns.keys()) oldest = Math.min(oldest, id);
      if (conns.size >= MAX_DIAGRAMS && c.id < oldest) return;
      const sec = document.createElement("section");
      sec.className = "conn";
      sec.id = "conn-" + c.id;
      sec.dataset.conn = String(c.id);
      const h = document.createElement("h2");
      const a = document.createElement("a");
      a.href = "/conn/" + c.id;
      h.appendChild(a);
      const svg = document.createElement("div");
      svg.className = "svg";
      sec.append(h, svg);
      d = { sec: sec, a: a, svg: svg, shown: -1, wanted: 0, at: 0 };
      let before = null;
      for (const el of diagrams.children) {
        if (Number(el.dataset.conn) < c.id) { before = el; break; }
      }
      diagrams.insertBefore(sec, before);
      conns.set(c.id, d);
      while (conns.size > MAX_DIAGRAMS) {
        let min = Infinity;
        for (const id of conns.keys()) min = Math.min(min, id);
        conns.get(min).sec.remove();
        conns.delete(min);
      }
    }
    d.a.textContent = c.title + (c.closed ? " (closed by " + c.closed + ")" : "");
    d.wanted = c.segments;
  }

  let loading = false;
  async function load(id, d) {
    loading = true;
    d.at = Date.now();
    const want = d.wanted;
    try {
      const r = await fetch("/conn/" + id, { cache: "no-store" });
      if (r.ok) {
        const doc = new DOMParser().parseFromString(await r.text(), "image/svg+xml");
        const svg = doc.documentElement;
        if (svg && svg.localName === "svg") {
          d.svg.replaceChildren(document.importNode(svg, true));
          d.shown = want;
          d.sec.dataset.segments = String(want);
        }
      } else if (r.status === 404) {
        d.shown = want;
      }
    } catch (e) {
      /* tried again later */
    }
    loading = false;
    refresh();
  }

  /* One diagram fetch at a time, newest flow first: the browser keeps to one or two connections. */
  function refresh() {
    if (loading) return;
    const now = Date.now();
    for (const id of [...conns.keys()].sort(function (a, b) { return b - a; })) {
      const d = conns.get(id);
      const every = d.shown < 0 ? 0 : Math.min(REFRESH_MS + 10 * d.wanted, 10000);
      if (d.shown !== d.wanted && now - d.at >= every) {
        load(id, d);
        return;
      }
    }
  }

  async function poll() {
    if (!paused) {
      try {
        const r = await fetch("/live.json?since=" + since, { cache: "no-store" });
        if (!r.ok) throw new Error("HTTP " + r.status);
        const j = await r.json();
        if (j.last < since) {
          since = 0;
          tbody.replaceChildren();
        } else {
          const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
          const frag = document.createDocumentFragment();
          for (const p of j.packets) frag.appendChild(row(p));
          tbody.appendChild(frag);
          while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(0);
          if (atEnd) box.scrollTop = box.scrollHeight;
          seen += j.packets.length;
          skipped += j.skipped;
          since = j.last;
        }
        for (const c of j.conns) touch(c);
        refresh();
        status.textContent = seen + " packets shown since this page opened" +
          (skipped ? " (" + skipped + " skipped to keep up)" : "") +
          "; newest #" + j.last + (j.device ? " on " + j.device : "") + (paused ? "; paused" : "");
      } catch (e) {
        status.textContent = "cannot reach tapstack (" + e.message + "); trying again";
      }
    }
    setTimeout(poll, POLL_MS);
  }
  poll();
})();
</script>
</body>
</html>
"#;

/// `{"endpoints":[...],"connections":[...],"counters":{"stack":{...},"host":{...}}}`, pretty-printed,
/// with a final newline. Connections are in id order.
pub(crate) fn status_json(status: &Status) -> Vec<u8> {
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
