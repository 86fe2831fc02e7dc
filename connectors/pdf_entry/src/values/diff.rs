//! Comparing two independent entries of one certificate (double entry):
//! every field that differs is a mismatch a verifier resolves, so equality
//! forgives only what cannot change the meaning — surrounding spaces, case
//! in codes and pass/fail, trailing zeros in a number.

use serde::Serialize;

use super::{label, parse_decimal, TestValues, Values, DOCUMENT_FIELDS, TEST_FIELDS};

/// One field the two entries disagree on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Mismatch {
    /// The form field name.
    pub field: String,
    /// How people call it (`Test 2 (ENDOTOXIN): result`).
    pub label: String,
    pub first: String,
    pub second: String,
}

/// The fields `first` and `second` disagree on, in form order.
///
/// Blank rows are ignored. Rows are paired by test code when each entry's
/// codes are distinct, so a row left out of one entry mismatches on its own
/// fields only; otherwise by position. Fields are named as in `first`, so a
/// resolved value can be [`Values::set`] on the first entry: a row only the
/// second has is named as a new row after the first entry's rows.
pub fn diff(first: &Values, second: &Values) -> Vec<Mismatch> {
    let mut out = Vec::new();
    for (i, name) in DOCUMENT_FIELDS.iter().enumerate() {
        let (a, b) = (first.slot(i), second.slot(i));
        if !same(name, a, b) {
            out.push(Mismatch {
                field: name.to_string(),
                label: label(name, None),
                first: a.trim().to_string(),
                second: b.trim().to_string(),
            });
        }
    }
    let empty = TestValues::default();
    for (index, a, b) in pair_rows(first, second) {
        let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
        let code = if a.code.trim().is_empty() {
            &b.code
        } else {
            &a.code
        };
        for (i, sub) in TEST_FIELDS.iter().enumerate() {
            let (x, y) = (a.slot(i), b.slot(i));
            if !same(sub, x, y) {
                let field = format!("test.{index}.{sub}");
                out.push(Mismatch {
                    label: label(&field, Some(code)),
                    field,
                    first: x.trim().to_string(),
                    second: y.trim().to_string(),
                });
            }
        }
    }
    out
}

/// Rows of both entries side by side, with the form index to name them by.
fn pair_rows<'a>(
    first: &'a Values,
    second: &'a Values,
) -> Vec<(usize, Option<&'a TestValues>, Option<&'a TestValues>)> {
    let a: Vec<_> = first.rows().collect();
    let b: Vec<_> = second.rows().collect();
    let by_code = distinct_codes(&a) && distinct_codes(&b);
    let mut pairs = Vec::new();
    // Where rows only the second entry has go in the first.
    let mut next_new = first.tests.len();
    let mut new_row = || {
        next_new += 1;
        next_new - 1
    };
    if by_code {
        let mut taken = vec![false; b.len()];
        for (i, row) in &a {
            let code = row.code.trim();
            let other = b
                .iter()
                .position(|(_, r)| r.code.trim().eq_ignore_ascii_case(code));
            if let Some(j) = other {
                taken[j] = true;
            }
            pairs.push((*i, Some(*row), other.map(|j| b[j].1)));
        }
        for (j, (_, row)) in b.iter().enumerate() {
            if !taken[j] {
                pairs.push((new_row(), None, Some(*row)));
            }
        }
    } else {
        for k in 0..a.len().max(b.len()) {
            let index = match a.get(k) {
                Some((i, _)) => *i,
                None => new_row(),
            };
            pairs.push((index, a.get(k).map(|r| r.1), b.get(k).map(|r| r.1)));
        }
    }
    pairs
}

fn distinct_codes(rows: &[(usize, &TestValues)]) -> bool {
    rows.iter().enumerate().all(|(k, (_, r))| {
        let code = r.code.trim();
        !code.is_empty()
            && !rows[..k]
                .iter()
                .any(|(_, s)| s.code.trim().eq_ignore_ascii_case(code))
    })
}

/// Whether two entries of one field mean the same.
fn same(field: &str, a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    match field {
        "code" | "pass_fail" => a.eq_ignore_ascii_case(b),
        "result" => match (parse_decimal(a), parse_decimal(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(code: &str, result: &str) -> TestValues {
        TestValues {
            code: code.into(),
            result: result.into(),
            pass_fail: "pass".into(),
            ..TestValues::default()
        }
    }

    #[test]
    fn rows_pair_by_position_when_codes_repeat() {
        let first = Values {
            tests: vec![row("A", "1"), row("A", "2")],
            ..Values::default()
        };
        let mut second = first.clone();
        second.tests[1].result = "3".into();
        let m = diff(&first, &second);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].field, "test.1.result");
        assert_eq!((m[0].first.as_str(), m[0].second.as_str()), ("2", "3"));
    }

    #[test]
    fn rows_pair_by_code_wherever_they_are() {
        let first = Values {
            tests: vec![row("A", "1"), row("B", "2")],
            ..Values::default()
        };
        let second = Values {
            tests: vec![row("b", "2.0"), row("a", "1")],
            ..Values::default()
        };
        assert_eq!(diff(&first, &second), []);
    }

    #[test]
    fn a_row_only_the_second_has_is_a_new_row_of_the_first() {
        let first = Values {
            tests: vec![row("A", "1")],
            ..Values::default()
        };
        let second = Values {
            tests: vec![row("B", "No growth"), row("A", "1")],
            ..Values::default()
        };
        let found = diff(&first, &second);
        let fields: Vec<_> = found
            .iter()
            .map(|m| (m.field.as_str(), m.first.as_str(), m.second.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("test.1.code", "", "B"),
                ("test.1.result", "", "No growth"),
                ("test.1.pass_fail", "", "pass"),
            ]
        );
        assert_eq!(found[0].label, "Test 2 (B): code");
        // Resolving each mismatch on the first entry gives the second.
        let mut resolved = first.clone();
        for m in &found {
            assert!(resolved.set(&m.field, m.second.clone()));
        }
        assert_eq!(diff(&resolved, &second), []);
    }
}
