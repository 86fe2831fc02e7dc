//! How a CSV record answers [`ColumnPath`]s.
//!
//! A [`Record`] is one row (or, in the wide layout, one result column of a
//! row, with `test_code` and `result` synthesized). Cells are trimmed; an
//! empty cell has no value. Cells in the dialect's `dates` and `numbers`
//! columns are read as converted (RFC 3339, `1.5`) when the row is read.

use std::borrow::Cow;
use std::collections::HashMap;

use hub_core::mapping::Document;

use crate::dialect::{Dialect, Layout, RESULT, TEST_CODE};
use crate::path::{ColumnPath, LimsCsv};

/// Message type every record reports: mappings select by partner
/// (`partners = […]`) with `message_types = ["csv"]`.
pub const MESSAGE_TYPE: &str = "csv";

/// A file's columns, by their names after renaming.
#[derive(Debug, Clone)]
pub struct Columns {
    names: Vec<String>,
    index: HashMap<String, usize>,
    /// The names the partner used (the header as written, or positions).
    partner_names: Vec<String>,
}

impl Columns {
    /// Names a header (as the partner wrote it, cells trimmed) with the
    /// dialect's renaming. A name given twice is an error.
    pub fn from_header<'a>(
        dialect: &Dialect,
        header: impl IntoIterator<Item = &'a str>,
    ) -> Result<Columns, String> {
        let partner_names: Vec<String> = header.into_iter().map(|h| h.trim().to_string()).collect();
        Self::build(dialect, partner_names)
    }

    /// Columns of a file without a header row: `"1"`, `"2"`, … renamed.
    pub fn positional(dialect: &Dialect, width: usize) -> Columns {
        let width = dialect
            .columns
            .keys()
            .filter_map(|k| k.parse::<usize>().ok())
            .fold(width, usize::max);
        let names = (1..=width).map(|i| i.to_string()).collect();
        Self::build(dialect, names).expect("positions are distinct")
    }

    fn build(dialect: &Dialect, partner_names: Vec<String>) -> Result<Columns, String> {
        let mut index = HashMap::with_capacity(partner_names.len());
        let mut names = Vec::with_capacity(partner_names.len());
        for (i, p) in partner_names.iter().enumerate() {
            let name = dialect.rename(p).to_string();
            if dialect.layout == Layout::ResultsPerColumn && (name == TEST_CODE || name == RESULT) {
                return Err(format!(
                    "column {} is named {name:?}, which the wide layout synthesizes: rename it in [dialect] columns",
                    i + 1
                ));
            }
            if !name.is_empty() {
                if let Some(first) = index.insert(name.clone(), i) {
                    return Err(format!(
                        "columns {} and {} are both named {name:?}",
                        first + 1,
                        i + 1
                    ));
                }
            }
            names.push(name);
        }
        Ok(Columns {
            names,
            index,
            partner_names,
        })
    }

    /// Index of a column by its (renamed) name.
    pub fn get(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Column names after renaming, in file order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Column names as the partner wrote them.
    pub fn partner_names(&self) -> &[String] {
        &self.partner_names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// One record, as the mapping engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub(crate) columns: &'a Columns,
    pub(crate) fields: &'a csv::StringRecord,
    /// Per column: the converted cell (dates, decimal commas), if any.
    pub(crate) converted: &'a [Option<String>],
    /// The line number in the file.
    pub(crate) row: u64,
    /// Wide layout: (test code, result cell).
    pub(crate) wide: Option<(&'a str, &'a str)>,
}

impl<'a> Record<'a> {
    /// The cell of column `i`: converted if it was, trimmed.
    pub(crate) fn cell(&self, i: usize) -> &'a str {
        match self.converted.get(i) {
            Some(Some(c)) => c.as_str(),
            _ => self.fields.get(i).unwrap_or("").trim(),
        }
    }
}

impl Document for Record<'_> {
    type Format = LimsCsv;
    type Scope = ();

    fn root(&self) {}

    fn message_type(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(MESSAGE_TYPE))
    }

    fn values<'b>(&'b self, path: &ColumnPath, _scope: (), out: &mut Vec<Cow<'b, str>>) {
        let value = match path {
            ColumnPath::Row => {
                out.push(Cow::Owned(self.row.to_string()));
                return;
            }
            ColumnPath::Column(name) => match (self.wide, &**name) {
                (Some((code, _)), TEST_CODE) => code,
                (Some((_, result)), RESULT) => result,
                (_, name) => match self.columns.get(name) {
                    Some(i) => self.cell(i),
                    None => return,
                },
            },
        };
        if !value.is_empty() {
            out.push(Cow::Borrowed(value));
        }
    }

    fn scopes(&self, path: &ColumnPath, _scope: ()) -> Vec<()> {
        match path {
            ColumnPath::Row => vec![()],
            ColumnPath::Column(_) => Vec::new(),
        }
    }

    fn is_multi(_path: &ColumnPath) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_core::mapping::Format;

    fn vals(r: &Record<'_>, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        r.values(&LimsCsv::parse_path(path).unwrap(), (), &mut out);
        out.into_iter().map(Cow::into_owned).collect()
    }

    #[test]
    fn cells_by_renamed_name_trimmed_and_converted() {
        let mut d = Dialect::default();
        d.columns.insert("Probe".into(), "sample_id".into());
        let cols = Columns::from_header(&d, ["Probe", " result ", "when", "empty"]).unwrap();
        let fields = csv::StringRecord::from(vec!["S1", " 7.2 ", "01.02.2026", ""]);
        let converted = [None, None, Some("2026-02-01T00:00:00Z".to_string()), None];
        let r = Record {
            columns: &cols,
            fields: &fields,
            converted: &converted,
            row: 17,
            wide: None,
        };
        assert_eq!(vals(&r, "sample_id"), ["S1"]);
        assert_eq!(vals(&r, "Probe"), Vec::<String>::new(), "renamed away");
        assert_eq!(vals(&r, "result"), ["7.2"]);
        assert_eq!(vals(&r, "when"), ["2026-02-01T00:00:00Z"]);
        assert_eq!(vals(&r, "empty"), Vec::<String>::new());
        assert_eq!(vals(&r, "nope"), Vec::<String>::new());
        assert_eq!(vals(&r, "$row"), ["17"]);
        assert_eq!(r.scopes(&ColumnPath::Row, ()).len(), 1);
        assert_eq!(Document::message_type(&r).as_deref(), Some("csv"));
        let wide = Record {
            wide: Some(("CD3", "98,5")),
            ..r
        };
        assert_eq!(vals(&wide, "test_code"), ["CD3"]);
        assert_eq!(vals(&wide, "result"), ["98,5"]);
    }

    #[test]
    fn duplicate_names_are_refused() {
        let mut d = Dialect::default();
        d.columns.insert("A".into(), "x".into());
        let e = Columns::from_header(&d, ["A", "x"]).unwrap_err();
        assert_eq!(e, "columns 1 and 2 are both named \"x\"");
        let p = Columns::positional(&Dialect::default(), 3);
        assert_eq!(p.names(), ["1", "2", "3"]);
    }
}
