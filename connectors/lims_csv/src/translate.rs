//! A chunk's rows → events, each row on its own ([`RowOutcome`]).
//!
//! Per row: the field count is checked against the header, the dialect's
//! `dates` and `numbers` cells are converted, and the mapping runs on the
//! row (or, in the wide layout, on each non-empty result column of it). A
//! row that fails says which row, which column and why; the other rows
//! are not affected.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use hub_core::error::Stage;
use hub_core::event::Source;
use hub_core::mapping::convert::Zone;
use hub_core::mapping::{MapContext, MapError, Mapping};
use hub_core::{Problem, TherapyEvent};

use crate::chunker::parse_header;
use crate::dialect::{DateFormat, Dialect, Layout, RESULT};
use crate::document::{Columns, Record};
use crate::error::{codes, FileError};
use crate::path::LimsCsv;
use crate::profile::Profile;

/// What became of one row.
#[derive(Debug, Clone)]
pub struct RowOutcome {
    /// The row's line number in the file.
    pub row: u64,
    /// Its events (none for a wide row with no result), or why it failed.
    pub result: Result<Vec<TherapyEvent>, Problem>,
}

/// Translates a chunk payload (see [`crate::chunker`]) whose first record
/// is on line `first_row`. A header that lacks the mapping's columns
/// (its line taken as `first_row - 1`) fails the whole chunk.
pub(crate) fn translate(
    mapping: &Mapping<LimsCsv>,
    profile: &Profile,
    payload: &[u8],
    first_row: u64,
    source: &Source,
    recorded_at: DateTime<Utc>,
) -> Result<Vec<RowOutcome>, FileError> {
    let dialect = &mapping.dialect;
    let payload = payload.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(payload);
    let header_line = first_row.saturating_sub(1);
    let (body, mut columns) = if dialect.header {
        // The header is the payload's first record: find where it ends.
        let end = header_end(payload, dialect);
        let cols =
            parse_header(dialect, &payload[..end]).map_err(|reason| FileError::BadHeader {
                line: header_line,
                reason,
            })?;
        profile.needs.check(&cols, header_line)?;
        (&payload[end..], Some(cols))
    } else {
        (payload, None)
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(dialect.delimiter)
        .quote(dialect.quote)
        .from_reader(body);
    let mut record = csv::ByteRecord::new();
    let mut out = Vec::new();
    // Rows are counted by the line breaks between records, blank lines
    // included (csv's own line count skips them).
    let (mut scanned, mut lines) = (0usize, 0u64);
    let mut new_id = TherapyEvent::new_id;
    let mut cx = MapContext {
        source,
        recorded_at,
        new_id: &mut new_id,
    };
    let mut plan: Option<Plan> = None;
    loop {
        let read = reader.read_byte_record(&mut record);
        let at = match &read {
            Ok(_) => record.position(),
            Err(e) => e.position(),
        };
        let mut byte = at
            .map_or(scanned, |p| p.byte() as usize)
            .clamp(scanned, body.len());
        // csv places a record after blank lines at their start.
        while matches!(body.get(byte), Some(b'\r' | b'\n')) && matches!(read, Ok(true)) {
            byte += 1;
        }
        lines += body[scanned..byte].iter().filter(|&&b| b == b'\n').count() as u64;
        scanned = byte;
        let row = first_row + lines;
        match read {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                out.push(RowOutcome {
                    row,
                    result: Err(Problem::new(
                        Stage::Decode,
                        codes::BAD_ROW,
                        format!("row {row}: {e}"),
                    )),
                });
                break;
            }
        }
        if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            continue; // a blank row (spaces, or delimiters only), as the chunker skips it
        }
        if columns.is_none() {
            let cols = Columns::positional(dialect, record.len());
            profile.needs.check(&cols, 0)?;
            columns = Some(cols);
        }
        let cols = columns.as_ref().expect("set above");
        let plan = plan.get_or_insert_with(|| Plan::new(dialect, cols));
        let (result, back) = translate_row(
            mapping,
            profile,
            plan,
            cols,
            std::mem::take(&mut record),
            row,
            &mut cx,
        );
        record = back;
        out.push(RowOutcome { row, result });
    }
    Ok(out)
}

/// Where the header record ends in `payload` (after its line break).
fn header_end(payload: &[u8], dialect: &Dialect) -> usize {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(dialect.delimiter)
        .quote(dialect.quote)
        .from_reader(payload);
    let mut record = csv::ByteRecord::new();
    // The position after the header: where the next record starts.
    let _ = reader.read_byte_record(&mut record);
    let mut end = (reader.position().byte() as usize).min(payload.len());
    // csv stops between the CR and LF of a CRLF.
    if end > 0 && payload[end - 1] == b'\r' && payload.get(end) == Some(&b'\n') {
        end += 1;
    }
    end
}

/// Column indexes a chunk converts and reads, resolved once.
struct Plan {
    dates: Vec<usize>,
    numbers: Vec<usize>,
    /// Wide layout: (test code, column).
    results: Vec<(String, usize)>,
    converted: Vec<Option<String>>,
}

impl Plan {
    fn new(dialect: &Dialect, cols: &Columns) -> Plan {
        let idx = |names: &[String]| names.iter().filter_map(|n| cols.get(n)).collect();
        Plan {
            dates: idx(&dialect.dates),
            numbers: idx(&dialect.numbers),
            results: dialect
                .result_columns
                .iter()
                .filter_map(|n| cols.get(n).map(|i| (n.clone(), i)))
                .collect(),
            converted: vec![None; cols.len()],
        }
    }
}

/// `column "Messzeit" (result_time)` or `column result_time`.
fn column_label(cols: &Columns, i: usize) -> String {
    let name = cols.names().get(i).map_or("?", String::as_str);
    match cols.partner_names().get(i) {
        Some(p) if p != name => format!("column {p:?} ({name})"),
        _ => format!("column {name}"),
    }
}

fn translate_row(
    mapping: &Mapping<LimsCsv>,
    profile: &Profile,
    plan: &mut Plan,
    cols: &Columns,
    record: csv::ByteRecord,
    row: u64,
    cx: &mut MapContext,
) -> (Result<Vec<TherapyEvent>, Problem>, csv::ByteRecord) {
    let bad_row = |reason: String| Problem::new(Stage::Decode, codes::BAD_ROW, reason);
    let n = record.len();
    let width = cols.len();
    if n < width
        || record
            .iter()
            .skip(width)
            .any(|f| !f.iter().all(u8::is_ascii_whitespace))
    {
        let reason = format!("row {row}: {n} fields, the header has {width}");
        return (Err(bad_row(reason)), record);
    }
    let fields = match csv::StringRecord::from_byte_record(record) {
        Ok(f) => f,
        Err(e) => {
            let col = e.utf8_error().field();
            let reason = format!("row {row}, {}: not UTF-8", column_label(cols, col));
            return (Err(bad_row(reason)), e.into_byte_record());
        }
    };
    let result = map_row(mapping, profile, plan, cols, &fields, row, cx);
    for c in plan.converted.iter_mut() {
        *c = None;
    }
    (result, fields.into_byte_record())
}

fn map_row(
    mapping: &Mapping<LimsCsv>,
    profile: &Profile,
    plan: &mut Plan,
    cols: &Columns,
    fields: &csv::StringRecord,
    row: u64,
    cx: &mut MapContext,
) -> Result<Vec<TherapyEvent>, Problem> {
    let dialect = &mapping.dialect;
    for &i in &plan.dates {
        let cell = fields.get(i).unwrap_or("").trim();
        if cell.is_empty() {
            continue;
        }
        let time = parse_date(cell, &dialect.date_formats, &profile.zone).map_err(|why| {
            let reason = match why {
                DateError::NoFormat => format!(
                    "row {row}, {}: {cell:?} is not a date in any of the formats {}",
                    column_label(cols, i),
                    dialect.format_list()
                ),
                DateError::NoSuchTime => format!(
                    "row {row}, {}: {cell:?} does not exist in the time zone (a daylight saving gap)",
                    column_label(cols, i)
                ),
            };
            Problem::new(Stage::Decode, codes::BAD_VALUE, reason)
        })?;
        plan.converted[i] = Some(time.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    }
    if dialect.decimal_comma {
        for &i in &plan.numbers {
            if let Some(n) = decimal_comma(fields.get(i).unwrap_or("").trim()) {
                plan.converted[i] = Some(n);
            }
        }
    }
    let base = Record {
        columns: cols,
        fields,
        converted: &plan.converted,
        row,
        wide: None,
    };
    let problem = |e: MapError, result_col: Option<usize>| {
        let col = match (e.location.as_deref(), result_col) {
            (Some(RESULT), Some(i)) => Some(i),
            (Some(name), _) => cols.get(name),
            (None, _) => None,
        };
        let at = match (col, e.location.as_deref()) {
            (Some(i), _) => format!("row {row}, {}", column_label(cols, i)),
            (None, Some(path)) if !path.starts_with('$') => format!("row {row}, column {path}"),
            _ => format!("row {row}"),
        };
        Problem::new(Stage::Map, e.kind.code(), format!("{at}: {e}"))
    };
    match dialect.layout {
        Layout::RowPerResult => mapping.run(&base, cx).map_err(|e| problem(e, None)),
        Layout::ResultsPerColumn => {
            let mut events = Vec::new();
            for (code, i) in &plan.results {
                let cell = base.cell(*i);
                if cell.is_empty() {
                    continue;
                }
                let rec = Record {
                    wide: Some((code, cell)),
                    ..base
                };
                events.extend(mapping.run(&rec, cx).map_err(|e| problem(e, Some(*i)))?);
            }
            Ok(events)
        }
    }
}

enum DateError {
    NoFormat,
    NoSuchTime,
}

/// Reads `text` with the first format that fits, in `zone` unless the
/// format has an offset.
fn parse_date(text: &str, formats: &[DateFormat], zone: &Zone) -> Result<DateTime<Utc>, DateError> {
    for f in formats {
        if f.has_offset {
            if let Ok(d) = DateTime::parse_from_str(text, &f.format) {
                return Ok(d.with_timezone(&Utc));
            }
            continue;
        }
        let local = match NaiveDateTime::parse_from_str(text, &f.format) {
            Ok(t) => t,
            Err(_) => match NaiveDate::parse_from_str(text, &f.format) {
                Ok(d) => d.and_hms_opt(0, 0, 0).ok_or(DateError::NoFormat)?,
                Err(_) => continue,
            },
        };
        let resolved = match zone {
            Zone::Fixed(o) => o.from_local_datetime(&local).map(|d| d.with_timezone(&Utc)),
            Zone::Named(z) => z.from_local_datetime(&local).map(|d| d.with_timezone(&Utc)),
        };
        return match resolved {
            LocalResult::Single(d) => Ok(d),
            // The repeated hour when daylight saving ends: the earlier one.
            LocalResult::Ambiguous(d, _) => Ok(d),
            LocalResult::None => Err(DateError::NoSuchTime),
        };
    }
    Err(DateError::NoFormat)
}

/// `"1,5"` → `"1.5"`, `"1.234,5"` → `"1234.5"`, `"< 0,5"` → `"<0.5"`;
/// `None` when there is no comma or the cell is not a number (text stays).
fn decimal_comma(cell: &str) -> Option<String> {
    if !cell.contains(',') {
        return None;
    }
    let body_at = cell
        .find(|c: char| c.is_ascii_digit() || c == ',' || c == '.')
        .unwrap_or(cell.len());
    let (prefix, body) = cell.split_at(body_at);
    let prefix_ok = prefix
        .chars()
        .all(|c| matches!(c, '<' | '>' | '≤' | '≥' | '=' | '+' | '-' | '~' | ' '));
    let body_ok = body
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ',' | '.' | ' ' | '\u{a0}' | '\u{202f}'))
        && body.matches(',').count() == 1
        && body.chars().any(|c| c.is_ascii_digit());
    if !prefix_ok || !body_ok {
        return None;
    }
    let mut out = String::with_capacity(cell.len());
    out.push_str(&prefix.replace(' ', ""));
    for c in body.chars() {
        match c {
            ',' => out.push('.'),
            '.' | ' ' | '\u{a0}' | '\u{202f}' => {}
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_ends_after_its_line_break() {
        let d = Dialect::default();
        assert_eq!(header_end(b"a,b\r\n1,2\r\n", &d), 5);
        assert_eq!(header_end(b"a,b\n1,2\n", &d), 4);
        assert_eq!(header_end(b"a,\"b\nc\"\n1,2\n", &d), 8);
        assert_eq!(header_end(b"a,b", &d), 3);
    }

    #[test]
    fn decimal_commas() {
        assert_eq!(decimal_comma("1,5").as_deref(), Some("1.5"));
        assert_eq!(decimal_comma("1.234,5").as_deref(), Some("1234.5"));
        assert_eq!(decimal_comma("< 0,5").as_deref(), Some("<0.5"));
        assert_eq!(decimal_comma("-2,25").as_deref(), Some("-2.25"));
        assert_eq!(decimal_comma("1.5"), None);
        assert_eq!(decimal_comma("n.d., see note"), None);
        assert_eq!(decimal_comma("1,2,3"), None);
    }

    #[test]
    fn dates_in_formats_and_zones() {
        let fmts = |f: &[&str]| -> Vec<DateFormat> {
            f.iter()
                .map(|f| DateFormat {
                    format: f.to_string(),
                    has_offset: f.contains("%z"),
                })
                .collect()
        };
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        let f = fmts(&["%d.%m.%Y %H:%M", "%d.%m.%Y"]);
        let s = |t: &str| {
            parse_date(t, &f, &berlin)
                .ok()
                .map(|d| d.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        };
        assert_eq!(
            s("03.03.2026 09:15").as_deref(),
            Some("2026-03-03T08:15:00Z")
        );
        assert_eq!(
            s("03.07.2026 09:15").as_deref(),
            Some("2026-07-03T07:15:00Z")
        );
        assert_eq!(s("03.07.2026").as_deref(), Some("2026-07-02T22:00:00Z"));
        assert_eq!(s("31.02.2026 09:15"), None);
        assert!(matches!(
            parse_date("29.03.2026 02:30", &f, &berlin),
            Err(DateError::NoSuchTime)
        ));
        let z = fmts(&["%Y-%m-%d %H:%M %z"]);
        let d = parse_date("2026-03-03 09:15 +0100", &z, &Zone::default())
            .ok()
            .unwrap();
        assert_eq!(
            d.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            "2026-03-03T08:15:00Z"
        );
    }
}
