//! Ladder (sequence) diagrams of one flow, as in textbooks and Wireshark's flow graph: the two
//! endpoints as columns with a vertical lifeline under each, and one arrow per segment between them,
//! in time order, labelled, with the time since the first segment in the left margin.
//!
//! This module is pure: it turns a [`Ladder`] (built by the producer from decoded segments) into
//! text ([`render_text`], ASCII or Unicode box drawing) or a standalone SVG ([`render_svg`]). TCP,
//! UDP exchanges and pings are all drawn the same way; only the labels differ.
//!
//! # Text layout
//!
//! ```text
//! c3 tcp 192.168.69.100:49152 -> 192.168.69.1:7
//!
//!  +----------------------+                            +----------------+
//!  | 192.168.69.100:49152 |                            | 192.168.69.1:7 |
//!  +----------+-----------+                            +-------+--------+
//!             |                -- handshake --                 |
//! +0.000000s  |--------- SYN seq=0 win=64240 mss=1460 -------->|
//! +0.000048s  |<--- SYN,ACK seq=0 ack=1 win=64240 mss=1460 ----|
//! ```
//!
//! - Column 0: the time of each segment (`+S.uuuuuus`), right-aligned to the widest time.
//! - The left lifeline stands two columns after the time column (further right only if the left
//!   endpoint's name box needs it); the right lifeline stands `span + 1` columns after it.
//! - The **span** (cells strictly between the two lifelines) is the longest label plus
//!   [`ARROW_RESERVE`], clamped to [`MIN_SPAN`]`..=`[`MAX_SPAN`] (and widened only if the two name
//!   boxes would otherwise overlap). Labels are centred on their arrow; a label longer than
//!   `span - ARROW_RESERVE` chars is cut and ends in `...` (Unicode: `…`). Widths count `char`s.
//! - Arrows: `|------ label ------>|` and `|<------ label ------|`. A retransmission is drawn with
//!   `=` (Unicode `═`) and noted `(retransmission)` right of the right lifeline. A dropped segment
//!   stops in `x` (Unicode `✕`) two cells after its label, short of the other lifeline, noted
//!   `(dropped)`.
//! - When any segment is in a group other than [`Group::Other`], a header row such as
//!   `-- handshake --` opens each run of segments of one group (a pure UDP or ping ladder has none).
//! - Folded segments are one row, `... 1234 segments folded ...`, between dotted lifelines (`:`).
//! - No line has trailing whitespace, and there are no colour codes. Control and bidi-override
//!   characters in labels and names are shown as `?`.

use serde::Serialize;

/// Who sent a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Side {
    Left,
    Right,
}

/// Which phase of the flow a segment belongs to; runs of one group are drawn together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Group {
    Handshake,
    Data,
    Close,
    Other,
}

impl Group {
    /// The name shown in group headers (`handshake`, `data`, `close`, `other`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Group::Handshake => "handshake",
            Group::Data => "data",
            Group::Close => "close",
            Group::Other => "other",
        }
    }
}

/// One arrow of the ladder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Segment {
    /// Time since the first segment of the flow, in microseconds.
    pub t_us: i64,
    /// Who sent it.
    pub from: Side,
    /// E.g. `SYN seq=0 win=64240 mss=1460`, `UDP len=5`, `echo request id=1 seq=1`.
    pub label: String,
    pub retransmission: bool,
    /// Lost on the way (fault injector): the arrow stops short of the other side.
    pub dropped: bool,
    pub group: Group,
    /// Wireshark-style analysis labels (`fast retransmission`, `duplicate ACK #2 of frame 7`...),
    /// written as the note right of the arrow; empty: none (a retransmission is still noted).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub analysis: String,
}

/// One flow to draw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Ladder {
    /// E.g. `c3 tcp 192.168.69.100:49152 -> 192.168.69.1:7`; omitted when empty.
    pub title: String,
    /// A line under the title in the SVG: the stack's TCP figures for the connection, when it told
    /// any (the terminal's ladder follows the narration's own figures line, so it leaves it out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// Left endpoint, e.g. `192.168.69.100:49152`.
    pub left: String,
    /// Right endpoint, e.g. `192.168.69.1:7`.
    pub right: String,
    /// In time order; may already be folded (see [`fold`]).
    pub segments: Vec<Segment>,
    /// Segments omitted between `segments[fold_at - 1]` and `segments[fold_at]` (0: none).
    pub folded: u64,
    /// Where the fold note goes; clamped to `segments.len()`. Ignored when `folded == 0`.
    pub fold_at: usize,
}

/// Character set of [`render_text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextStyle {
    /// Only printable ASCII (plus whatever the labels contain).
    Ascii,
    /// Box drawing: `│ ─ ═ ▶ ◀ ✕ ┌ ┐ └ ┘ ┬ ┆ …`.
    Unicode,
}

/// Narrowest span (cells between the two lifelines) of the text rendering.
pub(crate) const MIN_SPAN: usize = 48;
/// Widest span of the text rendering; longer labels are truncated.
pub(crate) const MAX_SPAN: usize = 88;
/// Cells of the span an arrow keeps for itself (shaft, head, blanks): a label may be at most
/// `span - ARROW_RESERVE` chars long.
pub(crate) const ARROW_RESERVE: usize = 10;

/// Keeps the first `head` and the last `tail` segments of a long flow. Returns the kept segments,
/// how many were left out, and where they were (the `folded` and `fold_at` of a [`Ladder`]).
/// When nothing needs leaving out, returns all segments, `0` and `segments.len()`.
pub(crate) fn fold(
    mut segments: Vec<Segment>,
    head: usize,
    tail: usize,
) -> (Vec<Segment>, u64, usize) {
    let n = segments.len();
    if n <= head.saturating_add(tail) {
        return (segments, 0, n);
    }
    let folded = n - head - tail;
    segments.drain(head..n - tail);
    (segments, folded as u64, head)
}

/// `+S.uuuuuus`: a time offset in seconds with microsecond digits, e.g. `+0.000123s`.
pub(crate) fn format_time(t_us: i64) -> String {
    let sign = if t_us < 0 { '-' } else { '+' };
    let a = t_us.unsigned_abs();
    format!("{sign}{}.{:06}s", a / 1_000_000, a % 1_000_000)
}

/// One row of the drawing, shared by both renderers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    /// A run of segments of this group starts.
    Group(Group),
    /// `segments[i]`.
    Seg(usize),
    /// This many segments are not shown.
    Fold(u64),
}

fn rows(l: &Ladder) -> Vec<Row> {
    let n = l.segments.len();
    let show_groups = l.segments.iter().any(|s| s.group != Group::Other);
    let fold_at = (l.folded > 0).then(|| l.fold_at.min(n));
    let mut rows = Vec::with_capacity(n + 8);
    let mut prev = None;
    for (i, s) in l.segments.iter().enumerate() {
        if fold_at == Some(i) {
            rows.push(Row::Fold(l.folded));
        }
        if show_groups && prev != Some(s.group) {
            rows.push(Row::Group(s.group));
        }
        prev = Some(s.group);
        rows.push(Row::Seg(i));
    }
    if fold_at == Some(n) {
        rows.push(Row::Fold(l.folded));
    }
    rows
}

/// Replaces control characters (which could move a terminal's cursor or colour it) and bidi
/// overrides (which could reorder the drawing) by `?`.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                '?'
            } else {
                c
            }
        })
        .collect()
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// `s` cut to at most `max` chars, ending in `ellipsis` when cut.
fn truncate(s: &str, max: usize, ellipsis: &str) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(width(ellipsis));
    let mut out: String = s.chars().take(keep).collect();
    out.truncate(out.trim_end().len());
    out.push_str(ellipsis);
    out
}

fn notes(s: &Segment) -> String {
    let what = if !s.analysis.is_empty() {
        s.analysis.as_str()
    } else if s.retransmission {
        "retransmission"
    } else {
        ""
    };
    match (what.is_empty(), s.dropped) {
        (true, false) => String::new(),
        (false, false) => format!("({what})"),
        (true, true) => "(dropped)".to_string(),
        (false, true) => format!("({what}, dropped)"),
    }
}

fn fold_text(n: u64, ellipsis: &str) -> String {
    let noun = if n == 1 { "segment" } else { "segments" };
    format!("{ellipsis} {n} {noun} folded {ellipsis}")
}

struct Glyphs {
    life: char,
    fold_life: char,
    shaft: char,
    retx_shaft: char,
    head_right: char,
    head_left: char,
    drop: char,
    ellipsis: &'static str,
    group_dash: &'static str,
    /// Box corners top-left, top-right, bottom-left, bottom-right; horizontal; vertical; the tee
    /// where the lifeline leaves the box.
    corners: [char; 4],
    horizontal: char,
    vertical: char,
    tee: char,
}

const ASCII: Glyphs = Glyphs {
    life: '|',
    fold_life: ':',
    shaft: '-',
    retx_shaft: '=',
    head_right: '>',
    head_left: '<',
    drop: 'x',
    ellipsis: "...",
    group_dash: "--",
    corners: ['+', '+', '+', '+'],
    horizontal: '-',
    vertical: '|',
    tee: '+',
};

const UNICODE: Glyphs = Glyphs {
    life: '│',
    fold_life: '┆',
    shaft: '─',
    retx_shaft: '═',
    head_right: '▶',
    head_left: '◀',
    drop: '✕',
    ellipsis: "…",
    group_dash: "┄┄",
    corners: ['┌', '┐', '└', '┘'],
    horizontal: '─',
    vertical: '│',
    tee: '┬',
};

/// One text line being drawn, cell by cell.
#[derive(Default)]
struct Line(Vec<char>);

impl Line {
    fn put(&mut self, col: usize, s: &str) {
        for (k, ch) in s.chars().enumerate() {
            let c = col + k;
            if self.0.len() <= c {
                self.0.resize(c + 1, ' ');
            }
            self.0[c] = ch;
        }
    }

    fn put_char(&mut self, col: usize, ch: char) {
        self.put(col, ch.encode_utf8(&mut [0; 4]));
    }

    fn finish(self, out: &mut String) {
        let s: String = self.0.into_iter().collect();
        out.push_str(s.trim_end());
        out.push('\n');
    }
}

/// `text` centred in `span` cells (the extra cell, if any, on the right).
fn centred(text: &str, span: usize) -> String {
    let pad = span.saturating_sub(width(text)) / 2;
    format!("{}{text}", " ".repeat(pad))
}

/// The `span` cells between the lifelines for one segment; `label` already fits
/// (`width(label) + ARROW_RESERVE <= span`).
fn arrow(label: &str, s: &Segment, span: usize, g: &Glyphs) -> String {
    let shaft = if s.retransmission {
        g.retx_shaft
    } else {
        g.shaft
    };
    let body: Vec<char> = format!(" {label} ").chars().collect();
    let start = (span - body.len()) / 2;
    let end = start + body.len();
    let mut cells = vec![shaft; span];
    cells[start..end].copy_from_slice(&body);
    match (s.from, s.dropped) {
        (Side::Left, false) => cells[span - 1] = g.head_right,
        (Side::Right, false) => cells[0] = g.head_left,
        (Side::Left, true) => {
            cells[end + 2] = g.drop;
            cells[end + 3..].fill(' ');
        }
        (Side::Right, true) => {
            cells[start - 3] = g.drop;
            cells[..start - 3].fill(' ');
        }
    }
    cells.into_iter().collect()
}

/// Draws a name box centred on column `centre` onto three lines.
fn name_box(lines: &mut [Line; 3], centre: usize, name: &str, g: &Glyphs) {
    let w = width(name) + 4;
    let start = centre - (w - 1) / 2;
    let h = g.horizontal.to_string().repeat(w - 2);
    let [tl, tr, bl, br] = g.corners;
    lines[0].put(start, &format!("{tl}{h}{tr}"));
    lines[1].put(start, &format!("{v} {name} {v}", v = g.vertical));
    lines[2].put(start, &format!("{bl}{h}{br}"));
    lines[2].put_char(centre, g.tee);
}

/// The ladder as text, one line per row, each ending in `\n`; see the [module docs](self) for the
/// layout.
pub(crate) fn render_text(l: &Ladder, style: TextStyle) -> String {
    let g = match style {
        TextStyle::Ascii => &ASCII,
        TextStyle::Unicode => &UNICODE,
    };
    let rows = rows(l);
    let labels: Vec<String> = l.segments.iter().map(|s| clean(&s.label)).collect();
    let times: Vec<String> = l.segments.iter().map(|s| format_time(s.t_us)).collect();
    let (left, right) = (clean(&l.left), clean(&l.right));

    let time_w = times.iter().map(|t| width(t)).max().unwrap_or(0);
    let longest = labels.iter().map(|s| width(s)).max().unwrap_or(0);
    let (left_w, right_w) = (width(&left) + 4, width(&right) + 4);
    let (left_c, right_c) = ((left_w - 1) / 2, (right_w - 1) / 2);
    let fold_w = width(&fold_text(l.folded, g.ellipsis)) + 2;
    let span = (longest + ARROW_RESERVE)
        .clamp(MIN_SPAN, MAX_SPAN)
        .max(left_w - left_c + right_c)
        .max(fold_w);
    let max_label = span - ARROW_RESERVE;
    let lx = (time_w + 2).max(left_c);
    let rx = lx + span + 1;

    let mut out = String::new();
    let title = clean(&l.title);
    if !title.is_empty() {
        out.push_str(&title);
        out.push_str("\n\n");
    }

    let mut boxes: [Line; 3] = Default::default();
    name_box(&mut boxes, lx, &left, g);
    name_box(&mut boxes, rx, &right, g);
    for line in boxes {
        line.finish(&mut out);
    }

    let lifelines = |life: char, middle: &str| {
        let mut line = Line::default();
        line.put_char(lx, life);
        line.put(lx + 1, middle);
        line.put_char(rx, life);
        line
    };
    for (r, row) in rows.iter().enumerate() {
        match *row {
            Row::Group(group) => {
                if r > 0 {
                    lifelines(g.life, "").finish(&mut out);
                }
                let text = format!("{d} {} {d}", group.name(), d = g.group_dash);
                lifelines(g.life, &centred(&text, span)).finish(&mut out);
            }
            Row::Fold(n) => {
                let text = centred(&fold_text(n, g.ellipsis), span);
                lifelines(g.fold_life, &text).finish(&mut out);
            }
            Row::Seg(i) => {
                let s = &l.segments[i];
                let label = truncate(&labels[i], max_label, g.ellipsis);
                let mut line = lifelines(g.life, &arrow(&label, s, span, g));
                line.put(0, &format!("{:>time_w$}", times[i]));
                line.put(rx + 3, &clean(&notes(s)));
                line.finish(&mut out);
            }
        }
    }
    lifelines(g.life, "").finish(&mut out);
    out
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(t_us: i64, from: Side, label: &str, group: Group) -> Segment {
        Segment {
            t_us,
            from,
            label: label.to_string(),
            retransmission: false,
            dropped: false,
            group,
            analysis: String::new(),
        }
    }

    fn ladder(segments: Vec<Segment>) -> Ladder {
        Ladder {
            title: "c3 tcp 192.168.69.100:49152 -> 192.168.69.1:7".to_string(),
            caption: None,
            left: "192.168.69.100:49152".to_string(),
            right: "192.168.69.1:7".to_string(),
            segments,
            folded: 0,
            fold_at: 0,
        }
    }

    fn case_a() -> Ladder {
        use Group::*;
        use Side::*;
        ladder(vec![
            seg(0, Left, "SYN seq=0 win=64240 mss=1460", Handshake),
            seg(
                48,
                Right,
                "SYN,ACK seq=0 ack=1 win=64240 mss=1460",
                Handshake,
            ),
            seg(95, Left, "ACK seq=1 ack=1", Handshake),
            seg(1203, Left, "PSH,ACK seq=1 ack=1 len=5", Data),
            seg(1250, Right, "ACK seq=1 ack=6", Data),
            seg(2410, Left, "FIN,ACK seq=6 ack=1", Close),
            seg(2455, Right, "ACK seq=1 ack=7", Close),
            seg(2470, Right, "FIN,ACK seq=1 ack=7", Close),
            seg(2512, Left, "ACK seq=7 ack=2", Close),
        ])
    }

    fn case_c() -> Ladder {
        use Group::*;
        use Side::*;
        let mut retx = seg(
            1_000_310,
            Right,
            "SYN,ACK seq=0 ack=1 win=64240 mss=1460",
            Handshake,
        );
        retx.retransmission = true;
        ladder(vec![
            seg(0, Left, "SYN seq=0 win=64240 mss=1460", Handshake),
            seg(
                310,
                Right,
                "SYN,ACK seq=0 ack=1 win=64240 mss=1460",
                Handshake,
            ),
            retx,
            seg(1_000_362, Left, "ACK seq=1 ack=1", Handshake),
        ])
    }

    fn case_d() -> Ladder {
        use Group::*;
        use Side::*;
        let mut lost = seg(1203, Left, "PSH,ACK seq=1 ack=1 len=5", Data);
        lost.dropped = true;
        let mut retx = seg(201_530, Left, "PSH,ACK seq=1 ack=1 len=5", Data);
        retx.retransmission = true;
        ladder(vec![
            seg(0, Left, "SYN seq=0 win=64240 mss=1460", Handshake),
            seg(
                48,
                Right,
                "SYN,ACK seq=0 ack=1 win=64240 mss=1460",
                Handshake,
            ),
            seg(95, Left, "ACK seq=1 ack=1", Handshake),
            lost,
            retx,
            seg(201_577, Right, "ACK seq=1 ack=6", Data),
        ])
    }

    /// (a) Handshake, one data segment and its ACK, and a close, in ASCII.
    const A_ASCII: &str = r#"c3 tcp 192.168.69.100:49152 -> 192.168.69.1:7

 +----------------------+                            +----------------+
 | 192.168.69.100:49152 |                            | 192.168.69.1:7 |
 +----------+-----------+                            +-------+--------+
            |                -- handshake --                 |
+0.000000s  |--------- SYN seq=0 win=64240 mss=1460 -------->|
+0.000048s  |<--- SYN,ACK seq=0 ack=1 win=64240 mss=1460 ----|
+0.000095s  |--------------- ACK seq=1 ack=1 --------------->|
            |                                                |
            |                   -- data --                   |
+0.001203s  |---------- PSH,ACK seq=1 ack=1 len=5 ---------->|
+0.001250s  |<-------------- ACK seq=1 ack=6 ----------------|
            |                                                |
            |                  -- close --                   |
+0.002410s  |------------- FIN,ACK seq=6 ack=1 ------------->|
+0.002455s  |<-------------- ACK seq=1 ack=7 ----------------|
+0.002470s  |<------------ FIN,ACK seq=1 ack=7 --------------|
+0.002512s  |--------------- ACK seq=7 ack=2 --------------->|
            |                                                |
"#;

    /// (b) The same in Unicode.
    const A_UNICODE: &str = r#"c3 tcp 192.168.69.100:49152 -> 192.168.69.1:7

 ┌──────────────────────┐                            ┌────────────────┐
 │ 192.168.69.100:49152 │                            │ 192.168.69.1:7 │
 └──────────┬───────────┘                            └───────┬────────┘
            │                ┄┄ handshake ┄┄                 │
+0.000000s  │───────── SYN seq=0 win=64240 mss=1460 ────────▶│
+0.000048s  │◀─── SYN,ACK seq=0 ack=1 win=64240 mss=1460 ────│
+0.000095s  │─────────────── ACK seq=1 ack=1 ───────────────▶│
            │                                                │
            │                   ┄┄ data ┄┄                   │
+0.001203s  │────────── PSH,ACK seq=1 ack=1 len=5 ──────────▶│
+0.001250s  │◀────────────── ACK seq=1 ack=6 ────────────────│
            │                                                │
            │                  ┄┄ close ┄┄                   │
+0.002410s  │───────────── FIN,ACK seq=6 ack=1 ─────────────▶│
+0.002455s  │◀────────────── ACK seq=1 ack=7 ────────────────│
+0.002470s  │◀──────────── FIN,ACK seq=1 ack=7 ──────────────│
+0.002512s  │─────────────── ACK seq=7 ack=2 ───────────────▶│
            │                                                │
"#;

    /// (c) A SYN-ACK retransmitted after a second.
    const C_ASCII: &str = r#"c3 tcp 192.168.69.100:49152 -> 192.168.69.1:7

 +----------------------+                            +----------------+
 | 192.168.69.100:49152 |                            | 192.168.69.1:7 |
 +----------+-----------+                            +-------+--------+
            |                -- handshake --                 |
+0.000000s  |--------- SYN seq=0 win=64240 mss=1460 -------->|
+0.000310s  |<--- SYN,ACK seq=0 ack=1 win=64240 mss=1460 ----|
+1.000310s  |<=== SYN,ACK seq=0 ack=1 win=64240 mss=1460 ====|  (retransmission)
+1.000362s  |--------------- ACK seq=1 ack=1 --------------->|
            |                                                |
"#;

    /// (d) A data segment dropped, then retransmitted.
    const D_ASCII: &str = r#"c3 tcp 192.168.69.100:49152 -> 192.168.69.1:7

 +----------------------+                            +----------------+
 | 192.168.69.100:49152 |                            | 192.168.69.1:7 |
 +----------+-----------+                            +-------+--------+
            |                -- handshake --                 |
+0.000000s  |--------- SYN seq=0 win=64240 mss=1460 -------->|
+0.000048s  |<--- SYN,ACK seq=0 ack=1 win=64240 mss=1460 ----|
+0.000095s  |--------------- ACK seq=1 ack=1 --------------->|
            |                                                |
            |                   -- data --                   |
+0.001203s  |---------- PSH,ACK seq=1 ack=1 len=5 --x        |  (dropped)
+0.201530s  |========== PSH,ACK seq=1 ack=1 len=5 ==========>|  (retransmission)
+0.201577s  |<-------------- ACK seq=1 ack=6 ----------------|
            |                                                |
"#;

    const D_UNICODE: &str = r#"c3 tcp 192.168.69.100:49152 -> 192.168.69.1:7

 ┌──────────────────────┐                            ┌────────────────┐
 │ 192.168.69.100:49152 │                            │ 192.168.69.1:7 │
 └──────────┬───────────┘                            └───────┬────────┘
            │                ┄┄ handshake ┄┄                 │
+0.000000s  │───────── SYN seq=0 win=64240 mss=1460 ────────▶│
+0.000048s  │◀─── SYN,ACK seq=0 ack=1 win=64240 mss=1460 ────│
+0.000095s  │─────────────── ACK seq=1 ack=1 ───────────────▶│
            │                                                │
            │                   ┄┄ data ┄┄                   │
+0.001203s  │────────── PSH,ACK seq=1 ack=1 len=5 ──✕        │  (dropped)
+0.201530s  │══════════ PSH,ACK seq=1 ack=1 len=5 ══════════▶│  (retransmission)
+0.201577s  │◀────────────── ACK seq=1 ack=6 ────────────────│
            │                                                │
"#;

    /// Pings: no groups, a reply dropped right to left, the fold at the end.
    const P_ASCII: &str = r#"p2 icmp 192.168.69.100 -> 192.168.69.1

    +----------------+                                +--------------+
    | 192.168.69.100 |                                | 192.168.69.1 |
    +-------+--------+                                +------+-------+
+0.000000s  |----------- echo request id=1 seq=1 ----------->|
+0.000041s  |<----------- echo reply id=1 seq=1 -------------|
+2.000000s  |----------- echo request id=1 seq=2 ----------->|
+2.000090s  |         x-- echo reply id=1 seq=2 -------------|  (dropped)
            :           ... 7 segments folded ...            :
            |                                                |
"#;

    #[test]
    fn text_handshake_data_close_ascii() {
        assert_eq!(render_text(&case_a(), TextStyle::Ascii), A_ASCII);
    }

    #[test]
    fn text_handshake_data_close_unicode() {
        assert_eq!(render_text(&case_a(), TextStyle::Unicode), A_UNICODE);
    }

    #[test]
    fn text_retransmission() {
        assert_eq!(render_text(&case_c(), TextStyle::Ascii), C_ASCII);
    }

    #[test]
    fn text_drop_then_retransmission() {
        assert_eq!(render_text(&case_d(), TextStyle::Ascii), D_ASCII);
        assert_eq!(render_text(&case_d(), TextStyle::Unicode), D_UNICODE);
    }

    #[test]
    fn text_pings_without_groups() {
        assert_eq!(render_text(&udp(), TextStyle::Ascii), P_ASCII);
    }

    #[test]
    fn text_arrow_rows_have_fixed_width() {
        for style in [TextStyle::Ascii, TextStyle::Unicode] {
            let text = render_text(&case_a(), style);
            for line in text.lines().filter(|l| l.starts_with("+0.")) {
                // 10 time chars, 2 blanks, lifeline, MIN_SPAN cells, lifeline.
                assert_eq!(line.chars().count(), 10 + 2 + 1 + MIN_SPAN + 1, "{line}");
            }
        }
    }

    #[test]
    fn fold_keeps_head_and_tail() {
        let segments: Vec<Segment> = (0..20)
            .map(|i| seg(i * 10, Side::Left, &format!("s{i}"), Group::Data))
            .collect();
        let (kept, folded, at) = fold(segments.clone(), 3, 2);
        assert_eq!(folded, 15);
        assert_eq!(at, 3);
        let labels: Vec<&str> = kept.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["s0", "s1", "s2", "s18", "s19"]);

        // Nothing to fold.
        let (kept, folded, at) = fold(segments.clone(), 15, 5);
        assert_eq!((kept.len(), folded, at), (20, 0, 20));
        let (kept, folded, at) = fold(segments.clone(), usize::MAX, usize::MAX);
        assert_eq!((kept.len(), folded, at), (20, 0, 20));
        // Tail only.
        let (kept, folded, at) = fold(segments.clone(), 0, 1);
        assert_eq!((kept[0].label.as_str(), folded, at), ("s19", 19, 0));

        let mut l = ladder(Vec::new());
        (l.segments, l.folded, l.fold_at) = fold(segments, 3, 2);
        let text = render_text(&l, TextStyle::Ascii);
        let lines: Vec<&str> = text.lines().collect();
        let note = lines
            .iter()
            .position(|l| l.contains("... 15 segments folded ..."))
            .unwrap();
        assert!(lines[note - 1].contains(" s2 "), "{text}");
        assert!(lines[note + 1].contains(" s18 "), "{text}");
        assert!(lines[note].trim_start().starts_with(':'), "{text}");
        let unicode = render_text(&l, TextStyle::Unicode);
        assert!(unicode.contains("┆") && unicode.contains("… 15 segments folded …"));
        assert!(render_svg(&l).contains(">… 15 segments folded …</text>"));

        l.folded = 1;
        assert!(render_text(&l, TextStyle::Ascii).contains("... 1 segment folded ..."));
        l.folded = 0;
        assert!(!render_text(&l, TextStyle::Ascii).contains("folded"));
    }

    #[test]
    fn long_labels_are_truncated_in_text() {
        let long = format!("ACK seq=1 ack=1 {}", "z".repeat(200));
        let mut l = case_a();
        l.segments[4].label = long.clone();
        let ascii = render_text(&l, TextStyle::Ascii);
        let row = ascii.lines().find(|l| l.contains("ack=1 zzz")).unwrap();
        let kept = MAX_SPAN - ARROW_RESERVE - 3;
        assert!(row.contains(&format!(" {}... ", &long[..kept])), "{row}");
        assert!(!row.contains(&long[..kept + 1]));
        // Every arrow row is as wide as the widest span allows.
        for line in ascii.lines().filter(|l| l.starts_with("+0.")) {
            assert_eq!(line.chars().count(), 12 + 1 + MAX_SPAN + 1, "{line}");
        }
        let unicode = render_text(&l, TextStyle::Unicode);
        let row = unicode.lines().find(|l| l.contains("ack=1 zzz")).unwrap();
        assert!(row.contains(&format!(" {}… ", &long[..kept + 2])), "{row}");
        // The SVG keeps the whole label in data-label.
        assert!(render_svg(&l).contains(&format!(r#"data-label="{long}""#)));
    }

    #[test]
    fn no_trailing_whitespace_nor_control_characters() {
        let mut evil = case_d();
        evil.title = "t\x1b[31mred\r".into();
        evil.segments[1].label = "a\tb\nc\x1b[0m\u{202e}d".into();
        evil.folded = 3;
        evil.fold_at = 2;
        let empty = Ladder {
            title: String::new(),
            caption: None,
            left: String::new(),
            right: String::new(),
            segments: Vec::new(),
            folded: 0,
            fold_at: 0,
        };
        for l in [case_a(), case_c(), case_d(), udp(), evil, empty] {
            for style in [TextStyle::Ascii, TextStyle::Unicode] {
                let text = render_text(&l, style);
                assert!(text.ends_with('\n'));
                for line in text.lines() {
                    assert_eq!(line, line.trim_end(), "trailing whitespace in {line:?}");
                    assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
                    assert!(!line.contains('\u{202e}'), "{line:?}");
                }
            }
            assert!(!render_svg(&l).contains('\x1b'));
        }
    }

    /// An element of the SVG: its name and attributes (unescaped).
    #[derive(Debug)]
    struct Elem {
        name: String,
        attrs: Vec<(String, String)>,
    }

    impl Elem {
        fn attr(&self, name: &str) -> Option<&str> {
            self.attrs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    fn unescape(s: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('&') {
            out.push_str(&rest[..i]);
            let end = rest[i..].find(';').ok_or("unterminated entity")? + i;
            out.push(match &rest[i + 1..end] {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                e => return Err(format!("unknown entity &{e};")),
            });
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// A small XML well-formedness check: balanced tags, one root, quoted attributes without `<`,
    /// known entities only. Returns the elements in document order.
    fn parse_xml(doc: &str) -> Result<Vec<Elem>, String> {
        let mut elems = Vec::new();
        let mut stack: Vec<String> = Vec::new();
        let mut roots = 0;
        let mut rest = doc;
        loop {
            let Some(lt) = rest.find('<') else {
                if !rest.trim().is_empty() && stack.is_empty() {
                    return Err("text after the root".into());
                }
                unescape(rest)?;
                break;
            };
            let text = &rest[..lt];
            if !text.trim().is_empty() && stack.is_empty() {
                return Err(format!("text outside the root: {text:?}"));
            }
            unescape(text)?;
            rest = &rest[lt..];
            if let Some(r) = rest.strip_prefix("<?") {
                rest = &r[r.find("?>").ok_or("unterminated <?")? + 2..];
                continue;
            }
            if let Some(r) = rest.strip_prefix("<!--") {
                rest = &r[r.find("-->").ok_or("unterminated comment")? + 3..];
                continue;
            }
            let gt = rest.find('>').ok_or("unterminated tag")?;
            let tag = &rest[1..gt];
            rest = &rest[gt + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(open) if open == name.trim() => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
                continue;
            }
            let (tag, empty) = match tag.strip_suffix('/') {
                Some(t) => (t, true),
                None => (tag, false),
            };
            let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
            let name = &tag[..name_end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("bad element name {name:?}"));
            }
            let mut attrs = Vec::new();
            let mut a = tag[name_end..].trim_start();
            while !a.is_empty() {
                let eq = a
                    .find("=\"")
                    .ok_or_else(|| format!("bad attribute in {tag:?}"))?;
                let key = a[..eq].to_string();
                if key.is_empty() || key.contains(char::is_whitespace) {
                    return Err(format!("bad attribute name {key:?}"));
                }
                if attrs.iter().any(|(k, _)| *k == key) {
                    return Err(format!("duplicate attribute {key}"));
                }
                let v = &a[eq + 2..];
                let close = v.find('"').ok_or("unterminated attribute")?;
                if v[..close].contains('<') {
                    return Err(format!("< in attribute {key}"));
                }
                attrs.push((key, unescape(&v[..close])?));
                a = v[close + 1..].trim_start();
            }
            if stack.is_empty() {
                roots += 1;
            }
            if !empty {
                stack.push(name.to_string());
            }
            elems.push(Elem {
                name: name.to_string(),
                attrs,
            });
        }
        if !stack.is_empty() {
            return Err(format!("unclosed {stack:?}"));
        }
        if roots != 1 {
            return Err(format!("{roots} root elements"));
        }
        Ok(elems)
    }

    fn segs_of(svg: &str) -> Vec<Elem> {
        parse_xml(svg)
            .unwrap_or_else(|e| panic!("{e}\n{svg}"))
            .into_iter()
            .filter(|e| e.attr("class") == Some("seg"))
            .collect()
    }

    #[test]
    fn svg_has_one_seg_element_per_segment() {
        for l in [case_a(), case_c(), case_d(), udp()] {
            let svg = render_svg(&l);
            assert!(!svg.contains("<script"));
            assert!(!svg.contains("href"));
            let segs = segs_of(&svg);
            assert_eq!(segs.len(), l.segments.len());
            assert_eq!(svg.matches(r#"class="seg""#).count(), l.segments.len());
            for (i, (e, s)) in segs.iter().zip(&l.segments).enumerate() {
                assert_eq!(e.name, "line");
                assert_eq!(e.attr("data-seq-index"), Some(i.to_string().as_str()));
                let from = match s.from {
                    Side::Left => "left",
                    Side::Right => "right",
                };
                assert_eq!(e.attr("data-from"), Some(from));
                assert_eq!(e.attr("data-label"), Some(s.label.as_str()));
                assert_eq!(e.attr("data-dropped"), Some(s.dropped.to_string().as_str()));
                let retx = s.retransmission.to_string();
                assert_eq!(e.attr("data-retransmission"), Some(retx.as_str()));
                // Dropped arrows stop short of the other lifeline and have no head.
                let x1: i64 = e.attr("x1").unwrap().parse().unwrap();
                let x2: i64 = e.attr("x2").unwrap().parse().unwrap();
                assert_eq!(s.from == Side::Left, x1 < x2);
                assert_eq!(e.attr("marker-end").is_none(), s.dropped);
            }
            let marks = svg.matches(r#"class="drop-mark""#).count();
            assert_eq!(marks, l.segments.iter().filter(|s| s.dropped).count());
        }
    }

    #[test]
    fn svg_groups_and_notes() {
        let svg = render_svg(&case_d());
        let elems = parse_xml(&svg).unwrap();
        let groups: Vec<&str> = elems
            .iter()
            .filter(|e| e.attr("class") == Some("group-bg"))
            .map(|e| e.attr("data-group").unwrap())
            .collect();
        assert_eq!(groups, ["handshake", "data"]);
        assert!(svg.contains(">(dropped)</text>"));
        assert!(svg.contains(">(retransmission)</text>"));
        assert!(svg.contains(r#"marker-end="url(#ladder-arrow-retx)""#));
        // Pings have no group bands.
        assert!(!render_svg(&udp()).contains(r#"class="group-bg""#));
    }

    #[test]
    fn svg_escapes_text() {
        let mut l = case_a();
        l.title = "<t> & 'q' \"x\"".into();
        l.left = "a<b".into();
        l.segments[0].label = r#"x<y & "z" 'w' >"#.into();
        let svg = render_svg(&l);
        assert!(svg.contains(r#"data-label="x&lt;y &amp; &quot;z&quot; &apos;w&apos; &gt;""#));
        assert!(svg.contains(">x&lt;y &amp; &quot;z&quot; &apos;w&apos; &gt;</text>"));
        assert!(svg.contains("<title>&lt;t&gt; &amp; &apos;q&apos; &quot;x&quot;</title>"));
        assert!(svg.contains(">a&lt;b</text>"));
        assert!(!svg.contains("x<y"));
        let segs = segs_of(&svg);
        assert_eq!(segs[0].attr("data-label"), Some(r#"x<y & "z" 'w' >"#));
    }

    #[test]
    fn serializes_with_lowercase_enums() {
        let json = serde_json::to_value(&case_d().segments[3]).unwrap();
        assert_eq!(json["from"], "left");
        assert_eq!(json["group"], "data");
        assert_eq!(json["dropped"], true);
    }

    #[test]
    fn every_label_length_side_and_mark_fits() {
        for len in 0..=MAX_SPAN + 5 {
            for from in [Side::Left, Side::Right] {
                for (retransmission, dropped) in
                    [(false, false), (true, false), (false, true), (true, true)]
                {
                    let s = Segment {
                        retransmission,
                        dropped,
                        ..seg(7, from, &"y".repeat(len), Group::Other)
                    };
                    let mut l = ladder(vec![s.clone()]);
                    l.left = "l".repeat(len);
                    for style in [TextStyle::Ascii, TextStyle::Unicode] {
                        let text = render_text(&l, style);
                        let row: Vec<char> = text
                            .lines()
                            .find(|r| r.starts_with("+0."))
                            .unwrap()
                            .chars()
                            .collect();
                        let life = if style == TextStyle::Ascii {
                            '|'
                        } else {
                            '│'
                        };
                        let lives: Vec<usize> =
                            (0..row.len()).filter(|&i| row[i] == life).collect();
                        assert_eq!(lives.len(), 2, "{text}");
                        let span = lives[1] - lives[0] - 1;
                        assert!((MIN_SPAN..=MAX_SPAN).contains(&span), "{text}");
                        let drop = if style == TextStyle::Ascii {
                            'x'
                        } else {
                            '✕'
                        };
                        assert_eq!(row.contains(&drop), dropped, "{text}");
                        if dropped {
                            // The mark stops short of the receiving lifeline.
                            let mark = row.iter().rposition(|&c| c == drop).unwrap();
                            match from {
                                Side::Left => assert!(mark + 1 < lives[1]),
                                Side::Right => assert!(mark > lives[0] + 1),
                            }
                        }
                    }
                    assert_eq!(segs_of(&render_svg(&l)).len(), 1);
                }
            }
        }
    }

    #[test]
    fn time_format() {
        assert_eq!(format_time(0), "+0.000000s");
        assert_eq!(format_time(123), "+0.000123s");
        assert_eq!(format_time(61_500_000), "+61.500000s");
        assert_eq!(format_time(-5), "-0.000005s");
        assert_eq!(format_time(i64::MIN), "-9223372036854.775808s");
    }

    fn udp() -> Ladder {
        let mut lost = seg(
            2_000_090,
            Side::Right,
            "echo reply id=1 seq=2",
            Group::Other,
        );
        lost.dropped = true;
        Ladder {
            title: "p2 icmp 192.168.69.100 -> 192.168.69.1".into(),
            caption: None,
            left: "192.168.69.100".into(),
            right: "192.168.69.1".into(),
            segments: vec![
                seg(0, Side::Left, "echo request id=1 seq=1", Group::Other),
                seg(41, Side::Right, "echo reply id=1 seq=1", Group::Other),
                seg(
                    2_000_000,
                    Side::Left,
                    "echo request id=1 seq=2",
                    Group::Other,
                ),
                lost,
            ],
            folded: 7,
            fold_at: 4,
        }
    }
}
