//! A partner's CSV dialect: the `[dialect]` table of a `mappings/lims_csv/*.toml`
//! mapping, checked when the mapping loads.
//!
//! ```toml
//! [dialect]
//! encoding = "windows-1252"        # default "utf-8" (a BOM is always honoured and removed)
//! delimiter = ";"                  # default ","
//! quote = '"'                      # default '"'
//! header = true                    # default true: the first row after the preamble names the columns
//! skip_rows = 2                    # preamble lines before the header (default 0)
//! columns = { "Probe" = "sample_id", "Messzeit" = "result_time" }  # partner name → mapping name
//! decimal_comma = true             # in `numbers`, "1,5" reads 1.5 (and "1.234,5" 1234.5)
//! numbers = ["result"]
//! date_formats = ["%d.%m.%Y %H:%M", "%d.%m.%Y"]   # strftime, tried in order
//! dates = ["result_time"]          # converted to RFC 3339 UTC
//! timezone = "Europe/Berlin"       # for `dates` (default: the mapping's `timezone`, else UTC)
//! layout = "results_per_column"    # default "row_per_result"
//! result_columns = ["CD3", "VIAB"] # wide layout: each is one result (test_code, result)
//! ```
//!
//! Every column name in the dialect other than the keys of `columns` is a
//! name *after* renaming, the name the mapping's paths use. Without a
//! header row, columns are named by position (`"1"`, `"2"`, …) and `columns`
//! renames those.

use std::collections::{BTreeMap, BTreeSet};

use chrono::format::{Item, StrftimeItems};
use hub_core::mapping::convert::Zone;
use serde::Deserialize;

/// Synthesized column of the wide layout: the result column's name.
pub const TEST_CODE: &str = "test_code";
/// Synthesized column of the wide layout: the result cell.
pub const RESULT: &str = "result";

/// How results are laid out in rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// One row is one result (`test_code`, `result`, … columns).
    #[default]
    RowPerResult,
    /// One row holds several results, one per `result_columns` column.
    ResultsPerColumn,
}

/// A partner's CSV dialect, checked (see the module docs for the keys).
/// `Default` is the plain dialect: UTF-8, comma, `"`, a header row.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawDialect")]
pub struct Dialect {
    /// `encoding`: the character set of the file ("utf-8", "windows-1252",
    /// any WHATWG label); a byte-order mark wins over it.
    pub encoding: &'static encoding_rs::Encoding,
    /// `delimiter`: one ASCII character (default `,`; `"\t"` for tabs).
    pub delimiter: u8,
    /// `quote`: one ASCII character (default `"`), doubled inside a quoted cell.
    pub quote: u8,
    /// `header`: the first row after the preamble names the columns (default true).
    pub header: bool,
    /// `skip_rows`: preamble lines before the header (or the first record).
    pub skip_rows: u64,
    /// `columns`: partner column name (or 1-based position without a
    /// header) → the name the mapping's paths use.
    pub columns: BTreeMap<String, String>,
    /// `decimal_comma`: cells of `numbers` use a decimal comma.
    pub decimal_comma: bool,
    /// `numbers`: columns whose "1,5" reads 1.5 (needs `decimal_comma`).
    pub numbers: Vec<String>,
    /// `date_formats`: strftime formats for `dates`, tried in order.
    pub date_formats: Vec<DateFormat>,
    /// `dates`: columns converted to RFC 3339 UTC with `date_formats`.
    pub dates: Vec<String>,
    /// `timezone`: the zone of `dates` without an offset, when the dialect
    /// names one (else the mapping's `timezone`, else UTC).
    pub timezone: Option<Zone>,
    /// `layout`: "row_per_result" (default) or "results_per_column".
    pub layout: Layout,
    /// `result_columns`: in the wide layout, the columns that are results;
    /// the name is the test code (`test_code`), the cell the value (`result`).
    pub result_columns: Vec<String>,
}

/// A `date_formats` entry and what it contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateFormat {
    pub format: String,
    /// It reads an offset (`%z`): the time zone is not needed.
    pub has_offset: bool,
}

impl Default for Dialect {
    fn default() -> Self {
        Dialect::try_from(RawDialect::default()).expect("the plain dialect is valid")
    }
}

/// The table as written, before it is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDialect {
    encoding: String,
    delimiter: String,
    quote: String,
    header: bool,
    skip_rows: u64,
    columns: BTreeMap<String, String>,
    decimal_comma: bool,
    numbers: Vec<String>,
    date_formats: Vec<String>,
    dates: Vec<String>,
    timezone: Option<String>,
    layout: Layout,
    result_columns: Vec<String>,
}

impl Default for RawDialect {
    fn default() -> Self {
        RawDialect {
            encoding: "utf-8".into(),
            delimiter: ",".into(),
            quote: "\"".into(),
            header: true,
            skip_rows: 0,
            columns: BTreeMap::new(),
            decimal_comma: false,
            numbers: Vec::new(),
            date_formats: Vec::new(),
            dates: Vec::new(),
            timezone: None,
            layout: Layout::RowPerResult,
            result_columns: Vec::new(),
        }
    }
}

fn one_ascii(key: &str, s: &str) -> Result<u8, String> {
    match s.as_bytes() {
        [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' => Ok(*b),
        _ => Err(format!(
            "{key}: must be one ASCII character (not a line break), got {s:?}"
        )),
    }
}

impl TryFrom<RawDialect> for Dialect {
    type Error = String;

    fn try_from(r: RawDialect) -> Result<Self, String> {
        let encoding =
            encoding_rs::Encoding::for_label(r.encoding.trim().as_bytes()).ok_or_else(|| {
                format!(
                    "encoding: unknown encoding {:?} (use \"utf-8\" or \"windows-1252\")",
                    r.encoding
                )
            })?;
        let delimiter = one_ascii("delimiter", &r.delimiter)?;
        let quote = one_ascii("quote", &r.quote)?;
        if delimiter == quote {
            return Err(format!(
                "quote: {:?} is also the delimiter",
                char::from(quote)
            ));
        }
        let mut targets = BTreeMap::new();
        for (from, to) in &r.columns {
            if to.trim().is_empty() {
                return Err(format!("columns: {from:?} is renamed to an empty name"));
            }
            if let Some(other) = targets.insert(to.as_str(), from.as_str()) {
                return Err(format!(
                    "columns: {other:?} and {from:?} are both renamed to {to:?}"
                ));
            }
            if !r.header && from.parse::<u32>().map_or(true, |n| n == 0) {
                return Err(format!(
                    "columns: without a header row, columns are renamed by position (\"1\", \"2\", …), not {from:?}"
                ));
            }
        }
        if !r.numbers.is_empty() && !r.decimal_comma {
            return Err(
                "numbers: lists columns, but decimal_comma is false (numbers only says where decimal commas are)"
                    .into(),
            );
        }
        if r.decimal_comma && r.numbers.is_empty() {
            return Err("decimal_comma: true, but numbers lists no column".into());
        }
        let mut date_formats = Vec::with_capacity(r.date_formats.len());
        for f in &r.date_formats {
            if f.trim().is_empty() || StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
                return Err(format!("date_formats: {f:?} is not a strftime format"));
            }
            date_formats.push(DateFormat {
                format: f.clone(),
                has_offset: f.contains("%z") || f.contains("%:z") || f.contains("%#z"),
            });
        }
        if !r.dates.is_empty() && date_formats.is_empty() {
            return Err("dates: lists columns, but date_formats is empty".into());
        }
        if r.dates.is_empty() && !date_formats.is_empty() {
            return Err("date_formats: given, but dates lists no column".into());
        }
        let timezone = match &r.timezone {
            Some(tz) => Some(Zone::parse(tz).map_err(|e| format!("timezone: {e}"))?),
            None => None,
        };
        match (r.layout, r.result_columns.is_empty()) {
            (Layout::ResultsPerColumn, true) => {
                return Err(
                    "result_columns: layout \"results_per_column\" needs the result columns".into(),
                )
            }
            (Layout::RowPerResult, false) => {
                return Err("result_columns: only for layout = \"results_per_column\"".into())
            }
            _ => {}
        }
        let mut seen = BTreeSet::new();
        for c in &r.result_columns {
            if !seen.insert(c) {
                return Err(format!("result_columns: {c:?} is listed twice"));
            }
            if c == TEST_CODE || c == RESULT {
                return Err(format!(
                    "result_columns: {c:?} is the name of a synthesized column"
                ));
            }
        }
        Ok(Dialect {
            encoding,
            delimiter,
            quote,
            header: r.header,
            skip_rows: r.skip_rows,
            columns: r.columns,
            decimal_comma: r.decimal_comma,
            numbers: r.numbers,
            date_formats,
            dates: r.dates,
            timezone,
            layout: r.layout,
            result_columns: r.result_columns,
        })
    }
}

impl Dialect {
    /// The name a partner's column goes by in the mapping.
    pub fn rename<'a>(&'a self, partner_name: &'a str) -> &'a str {
        self.columns
            .get(partner_name)
            .map_or(partner_name, String::as_str)
    }

    /// The formats as the mapping lists them, for error messages.
    pub fn format_list(&self) -> String {
        let list: Vec<&str> = self
            .date_formats
            .iter()
            .map(|f| f.format.as_str())
            .collect();
        format!("{list:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Dialect, String> {
        let table: toml::Table = toml::from_str(text).unwrap();
        Dialect::deserialize(toml::Value::Table(table)).map_err(|e| e.to_string())
    }

    #[test]
    fn the_default_is_the_plain_dialect() {
        let d = Dialect::default();
        assert_eq!(d.encoding, encoding_rs::UTF_8);
        assert_eq!(
            (d.delimiter, d.quote, d.header, d.skip_rows),
            (b',', b'"', true, 0)
        );
        assert_eq!(d.layout, Layout::RowPerResult);
        assert!(parse("").is_ok());
    }

    #[test]
    fn the_module_example_parses() {
        let doc = include_str!("dialect.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! [dialect]"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        let d = parse(&doc).unwrap();
        assert_eq!(d.encoding, encoding_rs::WINDOWS_1252);
        assert_eq!(d.delimiter, b';');
        assert_eq!(d.rename("Probe"), "sample_id");
        assert_eq!(d.layout, Layout::ResultsPerColumn);
        assert!(d.timezone.is_some());
    }

    #[test]
    fn each_mistake_names_its_key() {
        for (text, key) in [
            ("delimeter = ';'", "delimeter"),
            ("encoding = 'klingon'", "encoding"),
            ("delimiter = ';;'", "delimiter"),
            ("quote = ','", "quote"),
            ("numbers = ['x']", "numbers"),
            ("decimal_comma = true", "decimal_comma"),
            ("dates = ['t']", "dates"),
            ("dates = ['t']\ndate_formats = ['%Q']", "date_formats"),
            ("timezone = 'Mars/Olympus'", "timezone"),
            ("layout = 'results_per_column'", "result_columns"),
            ("result_columns = ['a']", "result_columns"),
            ("layout = 'sideways'", "sideways"),
            ("columns = { a = 'x', b = 'x' }", "columns"),
            ("header = false\ncolumns = { a = 'x' }", "columns"),
            ("skip_rows = -1", "skip_rows"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
