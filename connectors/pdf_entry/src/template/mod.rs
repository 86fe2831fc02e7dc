//! Per-partner templates, `mappings/pdf/{partner}.toml`: how a lab's
//! certificate reads (the label printed before each value, the tests it
//! reports) and how a second person verifies what was keyed in.
//!
//! A template only pre-fills suggestions and the test rows of a blank form;
//! nothing read off a PDF reaches an event unless a person keys or confirms it.

mod suggest;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use suggest::{Suggestion, Suggestions};

use crate::values::{TestValues, Values, MAX_TESTS};

/// How a second person verifies the first entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Keyed in again without seeing the first entry; the two are compared.
    #[default]
    DoubleEntry,
    /// Checked field by field beside the PDF.
    Review,
}

impl Policy {
    /// The name in templates and in `source.entry.verification`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Policy::DoubleEntry => "double_entry",
            Policy::Review => "review",
        }
    }
}

/// A document-level field: the label printed before its value.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    pub label: String,
}

/// One test the lab reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestRule {
    /// The test code put on events (`test.code`).
    pub code: String,
    /// The test's name (`test.display`).
    pub name: String,
    /// What the test's row starts with on the certificate.
    pub label: String,
    /// Default unit; empty in the file means none.
    #[serde(default)]
    pub unit: Option<String>,
    /// The specification printed for the test; empty means none.
    #[serde(default)]
    pub specification: Option<String>,
}

/// What a piece of a test's row holds, in the order the lab prints them
/// after the test's label (pieces are separated by two or more spaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Column {
    Result,
    Unit,
    Specification,
    PassFail,
    /// A column the form has no field for (method, reference…).
    Skip,
}

/// A partner's template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The file stem: `coa_lab` for `coa_lab.toml`.
    pub partner: String,
    pub description: String,
    pub policy: Policy,
    /// Product code put on events.
    pub product: Option<String>,
    /// Document-level fields by form name (`coi`, `specimen_id`, …).
    pub fields: BTreeMap<String, FieldRule>,
    pub tests: Vec<TestRule>,
    /// The columns of a test row after its label; `[result, unit]` unless
    /// the template says otherwise.
    pub columns: Vec<Column>,
}

/// Why a template cannot be loaded; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} line {line}: {message}", path.display())]
    Toml {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    template: Header,
    #[serde(default)]
    fields: Fields,
    #[serde(default)]
    tests: Vec<TestRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    description: String,
    #[serde(default)]
    policy: Policy,
    #[serde(default)]
    product: Option<String>,
    #[serde(default)]
    columns: Option<Vec<Column>>,
}

/// The document-level form fields a template may label; any other name is
/// refused (with its line) by `deny_unknown_fields`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    coi: Option<FieldRule>,
    specimen_id: Option<FieldRule>,
    batch_id: Option<FieldRule>,
    report_id: Option<FieldRule>,
    analyst: Option<FieldRule>,
    tested_at: Option<FieldRule>,
}

impl Fields {
    fn into_map(self) -> BTreeMap<String, FieldRule> {
        [
            ("coi", self.coi),
            ("specimen_id", self.specimen_id),
            ("batch_id", self.batch_id),
            ("report_id", self.report_id),
            ("analyst", self.analyst),
            ("tested_at", self.tested_at),
        ]
        .into_iter()
        .filter_map(|(name, rule)| Some((name.to_string(), rule?)))
        .collect()
    }
}

/// Loads every `*.toml` template in `dir` (not `*.cases.toml`, not
/// subdirectories such as `fixtures/`), keyed by partner. A missing
/// directory has no templates.
pub fn load_dir(dir: &Path) -> Result<BTreeMap<String, Template>, TemplateError> {
    let io = |source| TemplateError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(io(e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(io)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_file() && name.ends_with(".toml") && !name.ends_with(".cases.toml") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut templates = BTreeMap::new();
    for path in paths {
        let template = load_file(&path)?;
        templates.insert(template.partner.clone(), template);
    }
    Ok(templates)
}

/// Loads one template; its partner is the file stem.
pub fn load_file(path: &Path) -> Result<Template, TemplateError> {
    let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let partner = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    parse(&partner, &text).map_err(|e| match e {
        Problem::Toml { line, message } => TemplateError::Toml {
            path: path.to_path_buf(),
            line,
            message,
        },
        Problem::Invalid(message) => TemplateError::Invalid {
            path: path.to_path_buf(),
            message,
        },
    })
}

/// A template's problem before the path is known.
#[derive(Debug)]
enum Problem {
    Toml { line: usize, message: String },
    Invalid(String),
}

fn parse(partner: &str, text: &str) -> Result<Template, Problem> {
    let file: File = toml::from_str(text).map_err(|e| Problem::Toml {
        line: e.span().map_or(1, |s| {
            text[..s.start.min(text.len())].matches('\n').count() + 1
        }),
        message: e.message().trim_end().to_string(),
    })?;
    let invalid = |m: String| Err(Problem::Invalid(m));
    if partner.is_empty()
        || !partner
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return invalid(format!(
            "partner name {partner:?} (the file name) may hold only a-z, 0-9, '_' and '-'"
        ));
    }
    if file.tests.is_empty() {
        return invalid("no [[tests]]: a template lists the tests its lab reports".into());
    }
    if file.tests.len() > MAX_TESTS {
        return invalid(format!("more than {MAX_TESTS} [[tests]]"));
    }
    let mut tests = file.tests;
    for (i, t) in tests.iter_mut().enumerate() {
        for (key, value) in [("code", &t.code), ("name", &t.name), ("label", &t.label)] {
            if value.trim().is_empty() {
                return invalid(format!("[[tests]] number {}: `{key}` is empty", i + 1));
            }
        }
        t.unit = non_empty(t.unit.take());
        t.specification = non_empty(t.specification.take());
    }
    for (i, t) in tests.iter().enumerate() {
        if tests[..i]
            .iter()
            .any(|u| u.code.eq_ignore_ascii_case(&t.code))
        {
            return invalid(format!("test code {:?} is listed twice", t.code));
        }
    }
    let fields = file.fields.into_map();
    if let Some((name, _)) = fields.iter().find(|(_, f)| f.label.trim().is_empty()) {
        return invalid(format!("[fields] {name}: `label` is empty"));
    }
    let columns = file
        .template
        .columns
        .unwrap_or_else(|| vec![Column::Result, Column::Unit]);
    if columns.iter().filter(|c| **c == Column::Result).count() != 1 {
        return invalid("[template] columns: name \"result\" exactly once".into());
    }
    for c in [Column::Unit, Column::Specification, Column::PassFail] {
        if columns.iter().filter(|x| **x == c).count() > 1 {
            return invalid(format!("[template] columns: {c:?} is named twice"));
        }
    }
    Ok(Template {
        partner: partner.to_string(),
        description: file.template.description,
        policy: file.template.policy,
        product: non_empty(file.template.product),
        fields,
        tests,
        columns,
    })
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

impl Template {
    /// A form with one row per test the template lists, code, name, unit
    /// and specification filled in; everything else empty.
    pub fn blank(&self) -> Values {
        Values {
            tests: self
                .tests
                .iter()
                .map(|t| TestValues {
                    code: t.code.clone(),
                    name: t.name.clone(),
                    unit: t.unit.clone().unwrap_or_default(),
                    specification: t.specification.clone().unwrap_or_default(),
                    ..TestValues::default()
                })
                .collect(),
            ..Values::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[template]
description = "x"

[fields]
coi = { label = "COI" }

[[tests]]
code = "STER"
name = "Sterility"
label = "Sterility"
unit = ""
"#;

    #[test]
    fn defaults_policy_columns_and_empty_unit() {
        let t = parse("lab_1", MINIMAL).unwrap();
        assert_eq!(t.policy, Policy::DoubleEntry);
        assert_eq!(t.columns, [Column::Result, Column::Unit]);
        assert_eq!(t.tests[0].unit, None);
        assert_eq!(t.fields.keys().collect::<Vec<_>>(), ["coi"]);
        assert_eq!(Policy::Review.as_str(), "review");
    }

    #[test]
    fn refuses_unknown_field_names_with_their_line() {
        let text = MINIMAL.replace("coi = {", "lot = {");
        match parse("lab", &text).unwrap_err() {
            Problem::Toml { line, message } => {
                assert_eq!(line, 6, "{message}");
                assert!(message.contains("unknown field `lot`"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_what_would_mislead() {
        let cases = [
            (MINIMAL.replace("[[tests]]\ncode = \"STER\"\nname = \"Sterility\"\nlabel = \"Sterility\"\nunit = \"\"\n", ""), "no [[tests]]"),
            (MINIMAL.replace("label = \"Sterility\"", "label = \" \""), "`label` is empty"),
            (MINIMAL.replace("description = \"x\"", "description = \"x\"\ncolumns = [\"unit\"]"), "\"result\" exactly once"),
            (format!("{MINIMAL}\n[[tests]]\ncode = \"ster\"\nname = \"n\"\nlabel = \"l\"\n"), "listed twice"),
        ];
        for (text, expected) in cases {
            match parse("lab", &text) {
                Err(Problem::Invalid(m)) => assert!(m.contains(expected), "{m}"),
                other => panic!("{expected}: {other:?}"),
            }
        }
        match parse("Coa Lab", MINIMAL) {
            Err(Problem::Invalid(m)) => assert!(m.contains("partner name"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
