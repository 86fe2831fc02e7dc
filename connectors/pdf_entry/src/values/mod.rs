//! The values a person keys in from a certificate: the form's model, its
//! field names, validation and the comparison of two entries.
//!
//! Every value is kept as the text typed (trimmed): what was entered is what
//! is compared, signed and audited. Field names are the form's:
//! `coi`, `specimen_id`, `batch_id`, `report_id`, `analyst`, `tested_at`,
//! and `test.{i}.{code|name|result|unit|specification|pass_fail|analyst|tested_at}`.

mod diff;
mod validate;

use serde::{Deserialize, Serialize};

pub use diff::{diff, Mismatch};
pub use validate::{parse_decimal, parse_time, FieldError};

/// Test rows a form may hold: a hostile `test.99999999.result` must not
/// allocate a hundred million rows.
pub const MAX_TESTS: usize = 200;

/// Document-level field names, in form order.
pub const DOCUMENT_FIELDS: [&str; 6] = [
    "coi",
    "specimen_id",
    "batch_id",
    "report_id",
    "analyst",
    "tested_at",
];

/// A test row's field names, in form order.
pub const TEST_FIELDS: [&str; 8] = [
    "code",
    "name",
    "result",
    "unit",
    "specification",
    "pass_fail",
    "analyst",
    "tested_at",
];

/// One certificate as keyed in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Values {
    pub coi: String,
    pub specimen_id: String,
    pub batch_id: String,
    pub report_id: String,
    /// Who performed the tests, unless a row names its own.
    pub analyst: String,
    /// When the tests were performed, unless a row says otherwise.
    pub tested_at: String,
    pub tests: Vec<TestValues>,
}

/// One test's row.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TestValues {
    pub code: String,
    pub name: String,
    pub result: String,
    pub unit: String,
    pub specification: String,
    /// `pass` or `fail`.
    pub pass_fail: String,
    pub analyst: String,
    pub tested_at: String,
}

/// A parsed field name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Document(usize),
    Test(usize, usize),
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        if let Some(i) = DOCUMENT_FIELDS.iter().position(|f| *f == name) {
            return Some(Field::Document(i));
        }
        let (index, sub) = name.strip_prefix("test.")?.split_once('.')?;
        // Digits only, no sign or leading zeros: one name per field.
        if index.is_empty()
            || !index.bytes().all(|b| b.is_ascii_digit())
            || (index.len() > 1 && index.starts_with('0'))
        {
            return None;
        }
        let row: usize = index.parse().ok().filter(|i| *i < MAX_TESTS)?;
        Some(Field::Test(
            row,
            TEST_FIELDS.iter().position(|f| *f == sub)?,
        ))
    }
}

impl TestValues {
    fn slot(&self, i: usize) -> &String {
        match i {
            0 => &self.code,
            1 => &self.name,
            2 => &self.result,
            3 => &self.unit,
            4 => &self.specification,
            5 => &self.pass_fail,
            6 => &self.analyst,
            _ => &self.tested_at,
        }
    }

    fn slot_mut(&mut self, i: usize) -> &mut String {
        match i {
            0 => &mut self.code,
            1 => &mut self.name,
            2 => &mut self.result,
            3 => &mut self.unit,
            4 => &mut self.specification,
            5 => &mut self.pass_fail,
            6 => &mut self.analyst,
            _ => &mut self.tested_at,
        }
    }

    /// A row nobody filled in: no code, name or result.
    pub fn is_blank(&self) -> bool {
        self.code.trim().is_empty() && self.name.trim().is_empty() && self.result.trim().is_empty()
    }
}

impl Values {
    /// The values of a submitted form. Names that are not fields (`_csrf`,
    /// `password`) are ignored; values are trimmed.
    pub fn from_form(pairs: &[(String, String)]) -> Values {
        let mut values = Values::default();
        for (name, value) in pairs {
            values.set(name, value.trim().to_string());
        }
        values
    }

    fn slot(&self, i: usize) -> &String {
        match i {
            0 => &self.coi,
            1 => &self.specimen_id,
            2 => &self.batch_id,
            3 => &self.report_id,
            4 => &self.analyst,
            _ => &self.tested_at,
        }
    }

    fn slot_mut(&mut self, i: usize) -> &mut String {
        match i {
            0 => &mut self.coi,
            1 => &mut self.specimen_id,
            2 => &mut self.batch_id,
            3 => &mut self.report_id,
            4 => &mut self.analyst,
            _ => &mut self.tested_at,
        }
    }

    /// A field's value; `None` for an unknown name or a row not present.
    pub fn get(&self, field: &str) -> Option<&str> {
        match Field::parse(field)? {
            Field::Document(i) => Some(self.slot(i)),
            Field::Test(row, i) => self.tests.get(row).map(|t| t.slot(i).as_str()),
        }
    }

    /// Sets a field, adding test rows up to its row; `false` for an unknown
    /// name (or a row past [`MAX_TESTS`]).
    pub fn set(&mut self, field: &str, value: String) -> bool {
        match Field::parse(field) {
            Some(Field::Document(i)) => *self.slot_mut(i) = value,
            Some(Field::Test(row, i)) => {
                if self.tests.len() <= row {
                    self.tests.resize_with(row + 1, TestValues::default);
                }
                *self.tests[row].slot_mut(i) = value;
            }
            None => return false,
        }
        true
    }

    /// Every field in form order: name, human label, value.
    pub fn fields(&self) -> Vec<(String, String, String)> {
        let mut out: Vec<_> = DOCUMENT_FIELDS
            .iter()
            .enumerate()
            .map(|(i, name)| (name.to_string(), label(name, None), self.slot(i).clone()))
            .collect();
        for (row, test) in self.tests.iter().enumerate() {
            for (i, sub) in TEST_FIELDS.iter().enumerate() {
                let name = format!("test.{row}.{sub}");
                let label = label(&name, Some(&test.code));
                out.push((name, label, test.slot(i).clone()));
            }
        }
        out
    }

    /// Without the rows nobody filled in (see [`TestValues::is_blank`]).
    pub fn without_blank_rows(mut self) -> Values {
        self.tests.retain(|t| !t.is_blank());
        self
    }

    /// Non-blank rows with their index in the form.
    fn rows(&self) -> impl Iterator<Item = (usize, &TestValues)> {
        self.tests.iter().enumerate().filter(|(_, t)| !t.is_blank())
    }
}

/// How a field is named to people: `Chain of Identity (COI)`,
/// `Test 1 (STERILITY): result`. `code` is the row's test code, if known.
pub fn label(field: &str, code: Option<&str>) -> String {
    const DOCUMENT: [&str; 6] = [
        "Chain of Identity (COI)",
        "Specimen ID",
        "Batch",
        "Report / certificate number",
        "Analyst",
        "Date tested",
    ];
    const TEST: [&str; 8] = [
        "code",
        "name",
        "result",
        "unit",
        "specification",
        "pass/fail",
        "analyst",
        "date tested",
    ];
    match Field::parse(field) {
        Some(Field::Document(i)) => DOCUMENT[i].to_string(),
        Some(Field::Test(row, i)) => match code.map(str::trim).filter(|c| !c.is_empty()) {
            Some(code) => format!("Test {} ({code}): {}", row + 1, TEST[i]),
            None => format!("Test {}: {}", row + 1, TEST[i]),
        },
        None => field.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn from_form_trims_orders_rows_and_ignores_other_names() {
        let v = Values::from_form(&pairs(&[
            ("_csrf", "tok"),
            ("password", "secret"),
            ("test.1.code", " VIAB "),
            ("coi", "  CHW000126000001\n"),
            ("test.0.code", "STER"),
            ("test.x.code", "no"),
            ("test.01.code", "no"),
            ("test.0.colour", "no"),
            ("test.999999999.result", "no"),
        ]));
        assert_eq!(v.coi, "CHW000126000001");
        assert_eq!(v.tests.len(), 2);
        assert_eq!(v.tests[0].code, "STER");
        assert_eq!(v.tests[1].code, "VIAB");
        assert_eq!(v.get("test.1.code"), Some("VIAB"));
        assert_eq!(v.get("test.2.code"), None);
        assert_eq!(v.get("password"), None);
    }

    #[test]
    fn set_get_and_labels() {
        let mut v = Values::default();
        assert!(v.set("test.2.pass_fail", "pass".into()));
        assert!(!v.set("_csrf", "x".into()));
        assert_eq!(v.tests.len(), 3);
        assert_eq!(v.get("test.2.pass_fail"), Some("pass"));
        assert!(v.set("test.0.code", "STERILITY".into()));
        let fields = v.fields();
        assert_eq!(fields.len(), 6 + 3 * 8);
        assert_eq!(fields[0].0, "coi");
        assert_eq!(fields[6].0, "test.0.code");
        assert_eq!(fields[8].1, "Test 1 (STERILITY): result");
        assert_eq!(fields[6 + 8 + 2].1, "Test 2: result");
        assert_eq!(fields.last().unwrap().0, "test.2.tested_at");
    }

    #[test]
    fn blank_rows_are_those_without_code_name_or_result() {
        let mut v = Values::default();
        v.set("test.0.code", "STER".into());
        v.set("test.1.unit", "%".into());
        v.set("test.1.pass_fail", "pass".into());
        v.set("test.2.result", "5".into());
        let v = v.without_blank_rows();
        assert_eq!(v.tests.len(), 2);
        assert_eq!(v.tests[1].result, "5");
    }
}
