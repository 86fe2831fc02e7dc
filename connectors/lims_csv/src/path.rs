//! The mapping path language of `format = "lims_csv"`: a path is a column
//! name, as the mapping's dialect names it (after `columns` renaming).
//!
//! | path        | selects                                                         |
//! |-------------|-----------------------------------------------------------------|
//! | `result`    | the row's `result` cell (surrounding spaces trimmed)            |
//! | `Zellzahl (10^6)` | any text is a column name                                 |
//! | `$row`      | the row's line number in the file (what a spreadsheet shows)    |
//!
//! `foreach = "$row"` selects the row itself, once: it is how a mapping
//! writes a list of one result (`[events.data.results] foreach = "$row"`).
//! Names starting with `$` are reserved; rename such a column.

use hub_core::mapping::Format;

use crate::dialect::Dialect;

/// Path of the row number, and the one `foreach` a CSV record has.
pub const ROW: &str = "$row";

/// The LIMS CSV format: `format = "lims_csv"` in mapping files.
#[derive(Debug, Clone, Copy, Default)]
pub struct LimsCsv;

/// A compiled path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnPath {
    /// A column, by its (renamed) name.
    Column(Box<str>),
    /// `$row`.
    Row,
}

impl ColumnPath {
    /// The column name, if it is one.
    pub fn column(&self) -> Option<&str> {
        match self {
            ColumnPath::Column(c) => Some(c),
            ColumnPath::Row => None,
        }
    }
}

impl Format for LimsCsv {
    const NAME: &'static str = "lims_csv";
    type Path = ColumnPath;
    type Dialect = Dialect;

    fn parse_path(text: &str) -> Result<ColumnPath, String> {
        if text == ROW {
            return Ok(ColumnPath::Row);
        }
        if text.trim().is_empty() {
            return Err("a column name cannot be empty".into());
        }
        if text.starts_with('$') {
            return Err(format!(
                "{text:?}: names starting with '$' are reserved (only {ROW} exists); rename the column in [dialect] columns"
            ));
        }
        if text.trim() != text {
            return Err(format!(
                "{text:?}: a column name has no surrounding spaces (header names are trimmed)"
            ));
        }
        Ok(ColumnPath::Column(text.into()))
    }

    fn check_foreach(path: &ColumnPath) -> Result<(), String> {
        match path {
            ColumnPath::Row => Ok(()),
            ColumnPath::Column(c) => Err(format!(
                "a CSV row has no repeated groups: foreach = {ROW:?} (one item per row), not {c:?}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_column_names() {
        assert_eq!(
            LimsCsv::parse_path("Zellzahl (10^6)").unwrap(),
            ColumnPath::Column("Zellzahl (10^6)".into())
        );
        assert_eq!(LimsCsv::parse_path("$row").unwrap(), ColumnPath::Row);
        assert!(LimsCsv::parse_path("$line")
            .unwrap_err()
            .contains("reserved"));
        assert!(LimsCsv::parse_path(" ").is_err());
        assert!(LimsCsv::parse_path(" a").is_err());
        assert!(LimsCsv::check_foreach(&ColumnPath::Row).is_ok());
        assert!(LimsCsv::check_foreach(&ColumnPath::Column("a".into())).is_err());
    }
}
