//! A page's text laid out by position: runs on one baseline form a line,
//! lines run top to bottom, runs far apart on a line (table cells, a label
//! and its value) are separated by two spaces.
//!
//! lopdf's own `extract_text` ends a line only at `ET` and joins everything
//! in between with nothing, so a page written as one text object becomes one
//! line, a table written cell by cell puts every cell on its own line, and
//! text shown with `'` or `"` is lost. Here the content stream is walked with
//! lopdf's parser and each run placed with the text and graphics matrices;
//! widths come from the font's `/Widths`, else Helvetica's metrics (the
//! standard fonts carry none), which is close enough to tell a word space
//! from a column gap. Text in form XObjects is not read.

use std::collections::BTreeMap;

use lopdf::{Dictionary, Document, Encoding, Object, ObjectId};

/// A gap of at least this many ems between runs is a column break.
const COLUMN_GAP_EM: f64 = 0.8;
/// A gap of at least this many ems is a word space.
const WORD_GAP_EM: f64 = 0.15;
/// Runs whose baselines differ by at most this many ems share a line.
const SAME_LINE_EM: f64 = 0.4;

/// An affine matrix `[a b c d e f]`, PDF's row-vector convention.
#[derive(Debug, Clone, Copy)]
struct Matrix([f64; 6]);

impl Matrix {
    const IDENTITY: Matrix = Matrix([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);

    fn translate(x: f64, y: f64) -> Matrix {
        Matrix([1.0, 0.0, 0.0, 1.0, x, y])
    }

    /// `self × other`: apply `self`, then `other`.
    fn then(self, other: Matrix) -> Matrix {
        let [a, b, c, d, e, f] = self.0;
        let [a2, b2, c2, d2, e2, f2] = other.0;
        Matrix([
            a * a2 + b * c2,
            a * b2 + b * d2,
            c * a2 + d * c2,
            c * b2 + d * d2,
            e * a2 + f * c2 + e2,
            e * b2 + f * d2 + f2,
        ])
    }
}

/// A font as far as layout needs it.
struct Font<'a> {
    encoding: Option<Encoding<'a>>,
    /// `/FirstChar` and `/Widths` (thousandths of an em), simple fonts only.
    widths: Option<(i64, Vec<f64>)>,
    /// Type0 fonts use multi-byte codes: no per-byte widths or word spacing.
    simple: bool,
}

impl<'a> Font<'a> {
    fn new(doc: &'a Document, dict: &'a Dictionary) -> Font<'a> {
        let simple = dict.get(b"Subtype").and_then(Object::as_name).ok() != Some(b"Type0");
        let widths = (|| {
            let first = doc
                .dereference(dict.get(b"FirstChar").ok()?)
                .ok()?
                .1
                .as_i64()
                .ok()?;
            let list = doc
                .dereference(dict.get(b"Widths").ok()?)
                .ok()?
                .1
                .as_array()
                .ok()?;
            let list = list
                .iter()
                .map(|w| w.as_float().map_or(0.0, f64::from))
                .collect();
            Some((first, list))
        })();
        Font {
            encoding: dict.get_font_encoding(doc).ok(),
            widths: widths.filter(|_| simple),
            simple,
        }
    }

    fn decode(&self, bytes: &[u8]) -> String {
        match &self.encoding {
            Some(e) => e.bytes_to_string(bytes).unwrap_or_default(),
            // Unknown encoding: Latin-1 is right for the ASCII most labels use.
            None => bytes.iter().map(|&b| char::from(b)).collect(),
        }
    }

    /// Width in thousandths of an em of each glyph: byte codes for simple
    /// fonts, decoded characters otherwise.
    fn glyph_widths(&self, bytes: &[u8], text: &str) -> Vec<f64> {
        match (&self.widths, self.simple) {
            (Some((first, list)), true) => bytes
                .iter()
                .map(|&b| {
                    usize::try_from(i64::from(b) - first)
                        .ok()
                        .and_then(|i| list.get(i).copied())
                        .unwrap_or(500.0)
                })
                .collect(),
            _ => text.chars().map(helvetica_width).collect(),
        }
    }
}

/// One shown string, placed on the page.
#[derive(Debug)]
struct Run {
    x: f64,
    end: f64,
    y: f64,
    /// Font size in page units (the em).
    size: f64,
    text: String,
}

/// Text state (ISO 32000-1 §9.3) and the matrices that place glyphs.
struct State {
    ctm: Matrix,
    stack: Vec<Matrix>,
    tm: Matrix,
    tlm: Matrix,
    leading: f64,
    char_spacing: f64,
    word_spacing: f64,
    hscale: f64,
    size: f64,
    font: Option<Vec<u8>>,
}

/// The page's text, one `'\n'`-ended line per visual line.
pub(super) fn page_text(doc: &Document, page: ObjectId) -> Result<String, lopdf::Error> {
    let fonts: BTreeMap<Vec<u8>, Font> = doc
        .get_page_fonts(page)?
        .into_iter()
        .map(|(name, dict)| (name, Font::new(doc, dict)))
        .collect();
    let bytes = doc.get_page_content(page)?;
    let depth = super::guard::nesting(&bytes);
    if depth > super::guard::MAX_NESTING {
        return Err(lopdf::Error::Syntax(format!(
            "arrays or dictionaries nested {depth} levels deep (at most {})",
            super::guard::MAX_NESTING
        )));
    }
    let content = lopdf::content::Content::decode(&bytes)?;
    let mut s = State {
        ctm: Matrix::IDENTITY,
        stack: Vec::new(),
        tm: Matrix::IDENTITY,
        tlm: Matrix::IDENTITY,
        leading: 0.0,
        char_spacing: 0.0,
        word_spacing: 0.0,
        hscale: 1.0,
        size: 0.0,
        font: None,
    };
    let mut runs = Vec::new();
    for op in &content.operations {
        let num = |i: usize| {
            op.operands
                .get(i)
                .and_then(|o| o.as_float().ok())
                .map_or(0.0, f64::from)
        };
        match op.operator.as_str() {
            "q" => s.stack.push(s.ctm),
            "Q" => s.ctm = s.stack.pop().unwrap_or(Matrix::IDENTITY),
            "cm" => s.ctm = Matrix(std::array::from_fn(num)).then(s.ctm),
            "BT" => {
                s.tm = Matrix::IDENTITY;
                s.tlm = Matrix::IDENTITY;
            }
            "Tf" => {
                s.font = op
                    .operands
                    .first()
                    .and_then(|o| o.as_name().ok())
                    .map(<[u8]>::to_vec);
                s.size = num(1);
            }
            "TL" => s.leading = num(0),
            "Tc" => s.char_spacing = num(0),
            "Tw" => s.word_spacing = num(0),
            "Tz" => s.hscale = num(0) / 100.0,
            "Td" => s.next_line(num(0), num(1)),
            "TD" => {
                s.leading = -num(1);
                s.next_line(num(0), num(1));
            }
            "Tm" => {
                s.tm = Matrix(std::array::from_fn(num));
                s.tlm = s.tm;
            }
            "T*" => s.next_line(0.0, -s.leading),
            "Tj" => s.show_operand(&fonts, op.operands.first(), &mut runs),
            "'" => {
                s.next_line(0.0, -s.leading);
                s.show_operand(&fonts, op.operands.first(), &mut runs);
            }
            "\"" => {
                s.word_spacing = num(0);
                s.char_spacing = num(1);
                s.next_line(0.0, -s.leading);
                s.show_operand(&fonts, op.operands.get(2), &mut runs);
            }
            "TJ" => {
                let items = op.operands.first().and_then(|o| o.as_array().ok());
                for item in items.into_iter().flatten() {
                    match item.as_float() {
                        Ok(adjust) => {
                            let tx = -f64::from(adjust) / 1000.0 * s.size * s.hscale;
                            s.tm = Matrix::translate(tx, 0.0).then(s.tm);
                        }
                        Err(_) => s.show_operand(&fonts, Some(item), &mut runs),
                    }
                }
            }
            _ => {}
        }
    }
    Ok(lay_out(runs))
}

impl State {
    fn next_line(&mut self, tx: f64, ty: f64) {
        self.tlm = Matrix::translate(tx, ty).then(self.tlm);
        self.tm = self.tlm;
    }

    fn show_operand(
        &mut self,
        fonts: &BTreeMap<Vec<u8>, Font>,
        o: Option<&Object>,
        runs: &mut Vec<Run>,
    ) {
        let Some(bytes) = o.and_then(|o| o.as_str().ok()) else {
            return;
        };
        let font = self.font.as_ref().and_then(|f| fonts.get(f));
        let text = match font {
            Some(font) => font.decode(bytes),
            None => bytes.iter().map(|&b| char::from(b)).collect(),
        };
        let widths = match font {
            Some(font) => font.glyph_widths(bytes, &text),
            None => text.chars().map(helvetica_width).collect(),
        };
        let word_spaced = font.is_none_or(|f| f.simple);
        let spaces = if word_spaced {
            bytes.iter().filter(|&&b| b == b' ').count()
        } else {
            0
        };
        let advance = (widths.iter().sum::<f64>() / 1000.0 * self.size
            + self.char_spacing * widths.len() as f64
            + self.word_spacing * spaces as f64)
            * self.hscale;
        let place = self.tm.then(self.ctm);
        let [_, _, _, d, x, y] = place.0;
        self.tm = Matrix::translate(advance, 0.0).then(self.tm);
        let end = self.tm.then(self.ctm).0[4];
        let size = (self.size * d.abs())
            .max(place.0[0].abs() * self.size)
            .max(1.0);
        if !text.is_empty() {
            runs.push(Run {
                x,
                end,
                y,
                size,
                text,
            });
        }
    }
}

/// Groups runs into lines (top to bottom) and joins each line's runs (left
/// to right) with nothing, a space or two spaces, by the gap between them.
fn lay_out(mut runs: Vec<Run>) -> String {
    runs.retain(|r| r.x.is_finite() && r.y.is_finite() && r.end.is_finite());
    // Stable: runs on one baseline keep their content order until sorted by x.
    runs.sort_by(|a, b| b.y.total_cmp(&a.y));
    let mut lines: Vec<Vec<Run>> = Vec::new();
    for run in runs {
        match lines.last_mut() {
            Some(line)
                if (line[0].y - run.y).abs() <= SAME_LINE_EM * line[0].size.max(run.size) =>
            {
                line.push(run)
            }
            _ => lines.push(vec![run]),
        }
    }
    let mut out = String::new();
    for mut line in lines {
        line.sort_by(|a, b| a.x.total_cmp(&b.x));
        let mut text = String::new();
        let mut prev_end: Option<(f64, f64)> = None;
        for run in &line {
            if let Some((end, size)) = prev_end {
                let gap = (run.x - end) / size.max(run.size);
                if gap >= COLUMN_GAP_EM {
                    text.truncate(text.trim_end().len());
                    text.push_str("  ");
                } else if gap >= WORD_GAP_EM && !text.ends_with(' ') && !run.text.starts_with(' ') {
                    text.push(' ');
                }
            }
            text.push_str(&run.text);
            prev_end = Some((run.end.max(run.x), run.size));
        }
        let text = text.trim_end();
        if !text.trim().is_empty() {
            out.push_str(text);
            out.push('\n');
        }
    }
    out
}

/// Helvetica's advance width (Adobe AFM, thousandths of an em) for ASCII;
/// other characters get a typical lowercase width.
fn helvetica_width(c: char) -> f64 {
    const ASCII: [u16; 95] = [
        278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278,
        278, // ' '../
        556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584,
        556, // 0..?
        1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722,
        778, // @..O
        667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469,
        556, // P.._
        333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556,
        556, // `..o
        556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, // p..~
    ];
    u32::from(c)
        .checked_sub(32)
        .and_then(|i| ASCII.get(i as usize))
        .map_or(556.0, |&w| f64::from(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(x: f64, end: f64, y: f64, text: &str) -> Run {
        Run {
            x,
            end,
            y,
            size: 10.0,
            text: text.into(),
        }
    }

    #[test]
    fn lines_top_to_bottom_and_gaps_by_width() {
        let text = lay_out(vec![
            run(72.0, 100.0, 500.0, "Lower"),
            run(200.0, 240.0, 700.0, "value"),
            run(72.0, 150.0, 700.4, "Label:"),
            run(100.0, 130.0, 500.0, "line"),
            run(132.0, 150.0, 500.0, "here"),
        ]);
        assert_eq!(text, "Label:  value\nLowerline here\n");
    }

    #[test]
    fn matrices_compose_in_pdf_order() {
        // Scale by 2, then translate by (10, 20): the origin lands at (10, 20),
        // the point (1, 1) at (12, 22).
        let m = Matrix([2.0, 0.0, 0.0, 2.0, 0.0, 0.0]).then(Matrix::translate(10.0, 20.0));
        let p = Matrix::translate(1.0, 1.0).then(m).0;
        assert_eq!((p[4], p[5]), (12.0, 22.0));
    }

    #[test]
    fn helvetica_widths() {
        assert_eq!(helvetica_width(' '), 278.0);
        assert_eq!(helvetica_width('0'), 556.0);
        assert_eq!(helvetica_width('@'), 1015.0);
        assert_eq!(helvetica_width('W'), 944.0);
        assert_eq!(helvetica_width('i'), 222.0);
        assert_eq!(helvetica_width('~'), 584.0);
        assert_eq!(helvetica_width('é'), 556.0);
    }
}
