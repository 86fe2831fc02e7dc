//! Suggestions read off a PDF's text with a template's labels. They are
//! offered to the person keying in, marked as such; wrong or missing ones
//! cost a keystroke, so the rules stay simple and predictable.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use super::{Column, Template};

/// A value the form may be pre-filled with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suggestion {
    /// The form field name (`coi`, `test.0.result`).
    pub field: String,
    pub value: String,
}

/// What [`Template::suggest`] returns.
pub type Suggestions = Vec<Suggestion>;

/// Two or more spaces, or a tab: the gap between columns.
static COLUMN_GAP: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s*(?:\t|  )\s*").unwrap());
/// A number with its unit in one cell: `0.12 EU/mL`, `<0.05 EU/mL`, `87.5 %`.
static NUMBER_UNIT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^((?:[<>]=?\s?)?[+-]?(?:\d+(?:[.,]\d+)?|[.,]\d+))\s+(\S{1,16})$").unwrap()
});
static FAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(?:fail|fails|failed|does\s+not\s+conform)\b").unwrap());
static PASS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(?:pass|passes|passed|conforms)\b").unwrap());

impl Template {
    /// Suggestions for the form from a PDF's text: document fields in form
    /// order, then each test's result, unit, specification and pass/fail.
    ///
    /// A document field's value is the rest of the first line holding its
    /// label (up to a column gap), after a `:`; a test's values are the
    /// columns after the label that starts its row. When the label ends its
    /// line, the next non-empty line is read instead.
    pub fn suggest(&self, text: &str) -> Suggestions {
        let lines: Vec<&str> = text.lines().collect();
        let mut out = Vec::new();
        let mut push = |field: String, value: &str| {
            let value = value.trim();
            if !value.is_empty() {
                out.push(Suggestion {
                    field,
                    value: value.to_string(),
                });
            }
        };
        for name in crate::values::DOCUMENT_FIELDS {
            let Some(rule) = self.fields.get(name) else {
                continue;
            };
            let rest = find(&lines, |line| {
                find_word(line, &rule.label).map(|end| &line[end..])
            });
            if let Some(rest) = rest {
                push(
                    name.to_string(),
                    columns(rest).first().copied().unwrap_or(""),
                );
            }
        }
        for (i, test) in self.tests.iter().enumerate() {
            let Some(rest) = find(&lines, |line| {
                let line = line.trim_start();
                starts_with_word(line, &test.label).then(|| &line[test.label.len()..])
            }) else {
                continue;
            };
            let pieces = columns(rest);
            let piece = |c: Column| {
                self.columns
                    .iter()
                    .position(|x| *x == c)
                    .and_then(|i| pieces.get(i).copied())
            };
            let mut unit = piece(Column::Unit);
            let mut result = piece(Column::Result);
            if let Some(caps) = result.and_then(|r| NUMBER_UNIT.captures(r)) {
                if unit.is_none() {
                    unit = caps.get(2).map(|m| m.as_str());
                }
                result = caps.get(1).map(|m| m.as_str());
            }
            let pass_fail = if self.columns.contains(&Column::PassFail) {
                piece(Column::PassFail).and_then(conformance)
            } else {
                conformance(rest)
            };
            push(format!("test.{i}.result"), result.unwrap_or(""));
            push(format!("test.{i}.unit"), unit.unwrap_or(""));
            push(
                format!("test.{i}.specification"),
                piece(Column::Specification).unwrap_or(""),
            );
            push(format!("test.{i}.pass_fail"), pass_fail.unwrap_or(""));
        }
        out
    }
}

/// The rest of the first line `rest_of` accepts; the next non-empty line
/// when that rest is empty (the value printed under its label).
fn find<'a>(lines: &[&'a str], rest_of: impl Fn(&'a str) -> Option<&'a str>) -> Option<&'a str> {
    let at = lines.iter().position(|l| rest_of(l).is_some())?;
    let rest = rest_of(lines[at])?.trim_start_matches([' ', '\t', ':']);
    if !rest.trim().is_empty() {
        return Some(rest);
    }
    lines[at + 1..]
        .iter()
        .find(|l| !l.trim().is_empty())
        .copied()
}

/// The pieces of a line's rest, split at column gaps.
fn columns(rest: &str) -> Vec<&str> {
    COLUMN_GAP
        .split(rest.trim())
        .filter(|p| !p.is_empty())
        .collect()
}

/// `pass` or `fail` when the text says so (a failure wording wins).
fn conformance(text: &str) -> Option<&'static str> {
    if FAIL.is_match(text) {
        Some("fail")
    } else if PASS.is_match(text) {
        Some("pass")
    } else {
        None
    }
}

/// The end of the first whole-word, ASCII-case-insensitive occurrence of
/// `label` in `line`.
fn find_word(line: &str, label: &str) -> Option<usize> {
    let label = label.trim();
    if label.is_empty() {
        return None;
    }
    let hay = line.to_ascii_lowercase();
    let needle = label.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = hay[from..].find(&needle) {
        let start = from + at;
        let end = start + needle.len();
        let before = line[..start].chars().next_back();
        let after = line[end..].chars().next();
        if !is_word_char(before) && !is_word_char(after) {
            return Some(end);
        }
        from = start + needle.chars().next().map_or(1, char::len_utf8);
    }
    None
}

fn starts_with_word(line: &str, label: &str) -> bool {
    let label = label.trim();
    !label.is_empty()
        && line
            .get(..label.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(label))
        && !is_word_char(line[label.len()..].chars().next())
}

/// Whether a neighbouring character would make the label part of a longer word.
fn is_word_char(c: Option<char>) -> bool {
    c.is_some_and(char::is_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_match_whole_words_only() {
        assert_eq!(find_word("Batch: B1", "batch"), Some(5));
        assert_eq!(find_word("Batches: 3  Batch: B1", "Batch"), Some(17));
        assert_eq!(find_word("Sub-batch: x", "batch"), Some(9));
        assert!(starts_with_word("CD3 T cells  60", "CD3"));
        assert!(!starts_with_word("CD34 cells  60", "CD3"));
        assert!(!starts_with_word("Ster", "Sterility"));
    }

    #[test]
    fn conformance_words() {
        assert_eq!(conformance("Sterility  No growth  PASS"), Some("pass"));
        assert_eq!(conformance("Conforms"), Some("pass"));
        assert_eq!(conformance("Does not conform"), Some("fail"));
        assert_eq!(conformance("fails"), Some("fail"));
        assert_eq!(conformance("Passage 3"), None);
        assert_eq!(conformance("No growth"), None);
    }

    #[test]
    fn number_unit_cells_split_but_words_do_not() {
        let caps = NUMBER_UNIT.captures("<0.05 EU/mL").unwrap();
        assert_eq!((&caps[1], &caps[2]), ("<0.05", "EU/mL"));
        let caps = NUMBER_UNIT.captures("87.5 %").unwrap();
        assert_eq!((&caps[1], &caps[2]), ("87.5", "%"));
        assert!(NUMBER_UNIT.captures("No growth").is_none());
        assert!(NUMBER_UNIT.captures("0.5").is_none());
    }

    #[test]
    fn value_on_the_next_line_when_the_label_ends_its_line() {
        let lines = ["Batch:", "", "LOT-1", "Other"];
        let rest = find(&lines, |l| find_word(l, "Batch").map(|e| &l[e..]));
        assert_eq!(rest, Some("LOT-1"));
    }
}
