//! The SVG rendering of a ladder: one standalone document, no external assets.

use super::*;

/// `s` with `& < > " '` escaped, for XML text and attribute values.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Left => "left",
        Side::Right => "right",
    }
}

const SVG_STYLE: &str = "\
.title{font-weight:bold;font-size:13px;fill:#111827}
.caption{font-size:12px;fill:#374151}
.endpoint rect{fill:#f3f4f6;stroke:#374151}
.endpoint text{fill:#111827}
.lifeline{stroke:#374151;stroke-width:1.5}
.lifeline.folded{stroke-dasharray:2 4}
.seg{stroke:#1f2937;stroke-width:1.5}
.seg[data-retransmission=\"true\"]{stroke:#c2410c;stroke-dasharray:6 3}
.seg-label{fill:#111827}
.time{fill:#6b7280}
.note{fill:#c2410c}
.drop-mark{stroke:#dc2626;stroke-width:2;fill:none}
.group-bg{fill:#f9fafb;stroke:#e5e7eb}
.group-bg[data-group=\"handshake\"]{fill:#eff6ff;stroke:#bfdbfe}
.group-bg[data-group=\"close\"]{fill:#fef2f2;stroke:#fecaca}
.group-label{fill:#6b7280;font-style:italic}
.fold{fill:#6b7280}
";

/// The ladder as a standalone SVG document (no external assets, no script): two labelled
/// lifelines, and per segment one `<line class="seg">` with an arrowhead (none when dropped: a red
/// ✕ marks where it was lost), its label above it, its time at the left and any
/// `(retransmission)`/`(dropped)` note at the right. Retransmissions are orange and dashed; runs of
/// handshake, data and close segments sit on a shaded band with the group's name; folded segments
/// are one note between dotted lifelines.
///
/// Each `line.seg` carries `data-seq-index` (its index in `l.segments`), `data-from`
/// (`left`/`right`), `data-label` (the whole label), `data-dropped` and `data-retransmission`
/// (`true`/`false`), and a `<title>` tooltip.
pub(crate) fn render_svg(l: &Ladder) -> String {
    use std::fmt::Write as _;

    /// Estimated advance of one char of the 12px monospace font, rounded up.
    const CH: i64 = 8;
    const PAD: i64 = 16;
    const ROW: i64 = 30;
    const BOX_H: i64 = 28;
    const TITLE_H: i64 = 28;

    let rows = rows(l);
    let labels: Vec<String> = l.segments.iter().map(|s| clean(&s.label)).collect();
    let times: Vec<String> = l.segments.iter().map(|s| format_time(s.t_us)).collect();
    const CAPTION_H: i64 = 20;
    let (left, right, title) = (clean(&l.left), clean(&l.right), clean(&l.title));
    let caption = l.caption.as_deref().map(clean).unwrap_or_default();
    let chars = |s: &str| width(s) as i64;

    let time_w = times.iter().map(|t| chars(t)).max().unwrap_or(0) * CH;
    let longest = labels.iter().map(|s| chars(s)).max().unwrap_or(0);
    let note_w = l
        .segments
        .iter()
        .map(|s| chars(&notes(s)))
        .max()
        .unwrap_or(0)
        * CH;
    let (left_w, right_w) = (chars(&left) * CH + 24, chars(&right) * CH + 24);
    let fold_w = chars(&fold_text(l.folded, "…")) * CH + 40;
    let span = (longest * CH + 48)
        .clamp(400, 960)
        .max(left_w / 2 + right_w / 2 + 24)
        .max(fold_w);
    let max_label = ((span - 40) / CH) as usize;
    let lx = (PAD + time_w + 20).max(PAD + left_w / 2);
    let rx = lx + span;
    let mid = (lx + rx) / 2;
    let notes_w = if note_w > 0 { note_w + 16 } else { 0 };
    let w = (rx + (right_w / 2).max(notes_w) + PAD)
        .max(2 * PAD + chars(&title) * CH)
        .max(2 * PAD + chars(&caption) * CH);
    let caption_y = PAD + if title.is_empty() { 0 } else { TITLE_H };
    let box_y = caption_y + if caption.is_empty() { 0 } else { CAPTION_H };
    let life_top = box_y + BOX_H;
    let rows_top = life_top + 8;
    let row_top = |r: usize| rows_top + r as i64 * ROW;
    let life_bottom = row_top(rows.len()) + 8;
    let h = life_bottom + PAD;

    let mut o = String::new();
    let _ = writeln!(o, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="monospace" font-size="12" role="img" aria-label="{}">"#,
        xml_escape(&title)
    );
    let _ = writeln!(o, "<title>{}</title>", xml_escape(&title));
    let _ = writeln!(o, "<style>\n{SVG_STYLE}</style>");
    let _ = writeln!(o, "<defs>");
    for (id, colour) in [
        ("ladder-arrow", "#1f2937"),
        ("ladder-arrow-retx", "#c2410c"),
    ] {
        let _ = writeln!(
            o,
            r#"<marker id="{id}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>"#
        );
    }
    let _ = writeln!(o, "</defs>");
    let _ = writeln!(o, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    if !title.is_empty() {
        let _ = writeln!(
            o,
            r#"<text class="title" x="{PAD}" y="{}">{}</text>"#,
            PAD + 14,
            xml_escape(&title)
        );
    }

    if !caption.is_empty() {
        let _ = writeln!(
            o,
            r#"<text class="caption" x="{PAD}" y="{}">{}</text>"#,
            caption_y + 8,
            xml_escape(&caption)
        );
    }

    // Group bands, behind everything else.
    let _ = writeln!(o, r#"<g class="groups">"#);
    for (r, row) in rows.iter().enumerate() {
        if let Row::Group(group) = *row {
            let end = rows[r + 1..]
                .iter()
                .position(|x| matches!(x, Row::Group(_)))
                .map_or(rows.len(), |k| r + 1 + k);
            let (y, height) = (row_top(r) + 2, row_top(end) - row_top(r) - 4);
            let _ = writeln!(
                o,
                r#"<rect class="group-bg" data-group="{name}" x="{}" y="{y}" width="{}" height="{height}" rx="4"/>"#,
                PAD / 2,
                rx + 12 - PAD / 2,
                name = group.name()
            );
            let _ = writeln!(
                o,
                r#"<text class="group-label" x="{mid}" y="{}" text-anchor="middle">{}</text>"#,
                row_top(r) + 18,
                group.name()
            );
        }
    }
    let _ = writeln!(o, "</g>");

    // Endpoints and lifelines (dotted across fold rows).
    for (side, x, name, bw) in [
        (Side::Left, lx, &left, left_w),
        (Side::Right, rx, &right, right_w),
    ] {
        let _ = writeln!(
            o,
            r#"<g class="endpoint" data-side="{}"><rect x="{}" y="{box_y}" width="{bw}" height="{BOX_H}" rx="4"/><text x="{x}" y="{}" text-anchor="middle">{}</text></g>"#,
            side_name(side),
            x - bw / 2,
            box_y + 18,
            xml_escape(name)
        );
    }
    let _ = writeln!(o, r#"<g class="lifelines">"#);
    let mut pieces = Vec::new();
    let mut y = life_top;
    for (r, row) in rows.iter().enumerate() {
        if matches!(row, Row::Fold(_)) {
            pieces.push((y, row_top(r), ""));
            pieces.push((row_top(r), row_top(r + 1), " folded"));
            y = row_top(r + 1);
        }
    }
    pieces.push((y, life_bottom, ""));
    for x in [lx, rx] {
        for &(y1, y2, class) in pieces.iter().filter(|p| p.0 < p.1) {
            let _ = writeln!(
                o,
                r#"<line class="lifeline{class}" x1="{x}" y1="{y1}" x2="{x}" y2="{y2}"/>"#
            );
        }
    }
    let _ = writeln!(o, "</g>");

    let _ = writeln!(o, r#"<g class="segments">"#);
    for (r, row) in rows.iter().enumerate() {
        match *row {
            Row::Group(_) => {}
            Row::Fold(n) => {
                let _ = writeln!(
                    o,
                    r#"<text class="fold" x="{mid}" y="{}" text-anchor="middle">{}</text>"#,
                    row_top(r) + 18,
                    xml_escape(&fold_text(n, "…"))
                );
            }
            Row::Seg(i) => {
                let s = &l.segments[i];
                let y = row_top(r) + 18;
                let (x1, dir) = match s.from {
                    Side::Left => (lx, 1),
                    Side::Right => (rx, -1),
                };
                let shown = truncate(&labels[i], max_label, "…");
                let (x2, marker) = if s.dropped {
                    // Past the middle and past the label, but short of the other lifeline.
                    let reach = (span * 3 / 5).max(span / 2 + chars(&shown) * CH / 2 + 12);
                    (x1 + dir * reach.min(span - 24), String::new())
                } else {
                    let id = if s.retransmission {
                        "ladder-arrow-retx"
                    } else {
                        "ladder-arrow"
                    };
                    (x1 + dir * span, format!(r#" marker-end="url(#{id})""#))
                };
                let label = xml_escape(&labels[i]);
                let raw_note = notes(s);
                let tooltip = format!(
                    "{} {}{}{raw_note}",
                    times[i],
                    labels[i],
                    if raw_note.is_empty() { "" } else { " " }
                );
                let note = xml_escape(&raw_note);
                let _ = writeln!(o, r#"<g class="row">"#);
                let _ = writeln!(
                    o,
                    r#"<text class="time" x="{}" y="{}" text-anchor="end">{}</text>"#,
                    lx - 12,
                    y + 4,
                    times[i]
                );
                let _ = writeln!(
                    o,
                    r#"<line class="seg" data-seq-index="{i}" data-from="{}" data-label="{label}" data-dropped="{}" data-retransmission="{}" x1="{x1}" y1="{y}" x2="{x2}" y2="{y}"{marker}><title>{}</title></line>"#,
                    side_name(s.from),
                    s.dropped,
                    s.retransmission,
                    xml_escape(&tooltip)
                );
                let _ = writeln!(
                    o,
                    r#"<text class="seg-label" x="{mid}" y="{}" text-anchor="middle">{}</text>"#,
                    y - 7,
                    xml_escape(&shown)
                );
                if s.dropped {
                    let _ = writeln!(
                        o,
                        r#"<path class="drop-mark" d="M{},{} L{},{} M{},{} L{},{}"/>"#,
                        x2 - 5,
                        y - 5,
                        x2 + 5,
                        y + 5,
                        x2 - 5,
                        y + 5,
                        x2 + 5,
                        y - 5
                    );
                }
                if !note.is_empty() {
                    let _ = writeln!(
                        o,
                        r#"<text class="note" x="{}" y="{}">{note}</text>"#,
                        rx + 12,
                        y + 4
                    );
                }
                let _ = writeln!(o, "</g>");
            }
        }
    }
    let _ = writeln!(o, "</g>");
    let _ = writeln!(o, "</svg>");
    o
}
