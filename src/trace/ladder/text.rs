//! The text rendering of a ladder: ASCII or Unicode box drawing, laid out as the module above
//! describes.

use super::*;

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
