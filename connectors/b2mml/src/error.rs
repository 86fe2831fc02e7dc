//! Why bytes are not a B2MML document cgthub understands ([`DecodeError`]),
//! with stable codes and the HTTP status an intake answers.

use hub_core::error::Stage;
use hub_core::Problem;

/// Stable problem codes (stored with dead letters, counted in metrics).
pub mod codes {
    /// Not well-formed XML (or not namespace-well-formed).
    pub const NOT_WELL_FORMED: &str = "not_well_formed";
    /// A namespace prefix is used but never declared.
    pub const UNDECLARED_PREFIX: &str = "undeclared_prefix";
    /// The payload has a `<!DOCTYPE …>`: refused, never expanded.
    pub const DOCTYPE_REFUSED: &str = "doctype_refused";
    /// Not UTF-8 (or declares an encoding cgthub does not read).
    pub const UNSUPPORTED_ENCODING: &str = "unsupported_encoding";
    /// Well-formed XML, but the root is not in a B2MML namespace.
    pub const NOT_B2MML: &str = "not_b2mml";
    /// A B2MML document cgthub does not understand.
    pub const UNKNOWN_DOCUMENT: &str = "unknown_document";
    /// A document cgthub understands, but no mapping for it from this partner.
    pub const NO_MAPPING: &str = "no_mapping";
}

/// Why a payload could not be read as a B2MML document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("not well-formed XML at line {line}, column {column}: {message}")]
    NotWellFormed {
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "not namespace-well-formed XML at line {line}, column {column}: the prefix \
         {prefix:?} of <{element}> is never declared (no xmlns:{prefix}=\"…\" in scope)"
    )]
    UndeclaredPrefix {
        line: usize,
        column: usize,
        prefix: String,
        element: String,
    },
    #[error(
        "a DOCTYPE declaration at line {line}, column {column} is refused: B2MML \
         documents have no DTD, and entities are never expanded"
    )]
    Doctype { line: usize, column: usize },
    #[error("{0}")]
    Encoding(String),
    #[error(
        "the root element <{root}> is {}, not a B2MML namespace (accepted: {})",
        namespace.as_deref().map_or_else(|| "in no namespace".to_string(), |n| format!("in namespace {n:?}")),
        crate::kind::NAMESPACES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    )]
    NotB2mml {
        root: String,
        namespace: Option<String>,
    },
    #[error("unknown B2MML document <{root}> (namespace {namespace:?}){detail}; cgthub reads {}",
        crate::kind::DocumentKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "))]
    UnknownDocument {
        root: String,
        namespace: String,
        /// What else was found (the noun of a BOD), starting with `: ` or empty.
        detail: String,
    },
}

impl DecodeError {
    /// The stable code of this error.
    pub const fn code(&self) -> &'static str {
        match self {
            DecodeError::NotWellFormed { .. } => codes::NOT_WELL_FORMED,
            DecodeError::UndeclaredPrefix { .. } => codes::UNDECLARED_PREFIX,
            DecodeError::Doctype { .. } => codes::DOCTYPE_REFUSED,
            DecodeError::Encoding(_) => codes::UNSUPPORTED_ENCODING,
            DecodeError::NotB2mml { .. } => codes::NOT_B2MML,
            DecodeError::UnknownDocument { .. } => codes::UNKNOWN_DOCUMENT,
        }
    }

    /// The problem the hub stores: every decode error refuses the bytes
    /// ([`hub_core::Decoded::Rejected`]).
    pub fn problem(&self) -> Problem {
        Problem::new(Stage::Decode, self.code(), self.to_string())
    }
}

/// The HTTP status an intake answers a message that ended with `problem`:
/// 400 for bytes that are not acceptable XML (not well-formed, DOCTYPE,
/// undeclared prefix, encoding), 422 for XML that is not a document cgthub
/// maps or that failed mapping, 409 for an identity conflict (the hub's).
/// 413 (too large) is the HTTP layer's own.
pub fn http_status(problem: &Problem) -> u16 {
    match problem.code {
        codes::NOT_WELL_FORMED
        | codes::UNDECLARED_PREFIX
        | codes::DOCTYPE_REFUSED
        | codes::UNSUPPORTED_ENCODING => 400,
        codes::NOT_B2MML | codes::UNKNOWN_DOCUMENT | codes::NO_MAPPING => 422,
        _ => problem.http_status(),
    }
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
pub fn line_col(text: &[u8], offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let t = "ab\ncdé\nf".as_bytes();
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 2), (1, 3));
        assert_eq!(line_col(t, 3), (2, 1));
        // é is two bytes but one column.
        assert_eq!(line_col(t, 7), (2, 4));
        assert_eq!(line_col(t, 8), (3, 1));
    }

    #[test]
    fn statuses_follow_the_class_of_problem() {
        let p = |code| Problem::new(Stage::Decode, code, "x");
        assert_eq!(http_status(&p(codes::NOT_WELL_FORMED)), 400);
        assert_eq!(http_status(&p(codes::DOCTYPE_REFUSED)), 400);
        assert_eq!(http_status(&p(codes::UNDECLARED_PREFIX)), 400);
        assert_eq!(http_status(&p(codes::UNKNOWN_DOCUMENT)), 422);
        assert_eq!(http_status(&p(codes::NOT_B2MML)), 422);
        assert_eq!(http_status(&p("required_field_missing")), 422);
        assert_eq!(http_status(&p("bad_value")), 422);
    }
}
