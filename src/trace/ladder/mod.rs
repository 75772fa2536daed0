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

mod svg;
mod text;
pub(crate) use svg::render_svg;
pub(crate) use text::render_text;

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
