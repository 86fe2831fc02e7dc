//! Why a file (or a chunk of one) cannot be read at all, and the stable
//! problem codes of this connector.

use hub_core::error::Stage;
use hub_core::Problem;

/// Stable problem codes (stored with dead letters, counted in metrics).
/// Row problems also use the mapping engine's codes
/// (`required_field_missing`, `bad_value`, `value_not_in_map`, `invalid_event`).
pub mod codes {
    /// A row that is not a record of this file: wrong field count, not UTF-8.
    pub const BAD_ROW: &str = "bad_row";
    /// A `dates` or `numbers` cell the dialect cannot read.
    pub const BAD_VALUE: &str = "bad_value";
    /// Several rows failed, for different reasons.
    pub const BAD_ROWS: &str = "bad_rows";
    /// The file is not in the dialect's encoding.
    pub const BAD_ENCODING: &str = "bad_encoding";
    /// The header lacks columns the mapping or dialect reads, or is malformed.
    pub const BAD_HEADER: &str = "bad_header";
    /// No header (or no preamble end) before the end of the file.
    pub const EMPTY_FILE: &str = "empty_file";
    /// One record longer than the limit (an unclosed quote, usually).
    pub const RECORD_TOO_LONG: &str = "record_too_long";
    /// No mapping for the partner.
    pub const NO_MAPPING: &str = "no_mapping";
    /// The file could not be read.
    pub const READ_FAILED: &str = "read_failed";
}

/// A problem with a whole file: nothing after it can be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    #[error("no lims_csv mapping for partner {partner:?} (message type \"csv\")")]
    NoMapping { partner: String },
    #[error("not {encoding}: invalid byte sequence at byte offset {offset} (line {line})")]
    Encoding {
        encoding: &'static str,
        /// 0-based offset in the file as received.
        offset: u64,
        /// 1-based line.
        line: u64,
    },
    #[error("the file ends before its header row (line {line})")]
    NoHeader { line: u64 },
    #[error("the header (line {line}) lacks column(s) {}; it has {}", quoted(.missing), quoted(.found))]
    MissingColumns {
        line: u64,
        /// Names the mapping or dialect reads, after renaming.
        missing: Vec<String>,
        /// The header's names, after renaming.
        found: Vec<String>,
    },
    #[error("the header (line {line}): {reason}")]
    BadHeader { line: u64, reason: String },
    #[error("row {row}: a record longer than {limit} bytes (an unclosed quote?)")]
    RecordTooLong { row: u64, limit: usize },
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
}

fn quoted(names: &[String]) -> String {
    let q: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    q.join(", ")
}

impl FileError {
    /// The stable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            FileError::NoMapping { .. } => codes::NO_MAPPING,
            FileError::Encoding { .. } => codes::BAD_ENCODING,
            FileError::NoHeader { .. } => codes::EMPTY_FILE,
            FileError::MissingColumns { .. } | FileError::BadHeader { .. } => codes::BAD_HEADER,
            FileError::RecordTooLong { .. } => codes::RECORD_TOO_LONG,
            FileError::Io(_) => codes::READ_FAILED,
        }
    }

    /// As a problem to refuse the file with.
    pub fn problem(&self) -> Problem {
        let stage = match self {
            FileError::NoMapping { .. } => Stage::Map,
            FileError::Io(_) => Stage::Receive,
            _ => Stage::Decode,
        };
        Problem::new(stage, self.code(), self.to_string())
    }
}
