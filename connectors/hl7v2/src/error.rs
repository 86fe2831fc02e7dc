//! Why bytes could not be read as an HL7 v2 message.
//!
//! Every variant carries the facts a partner needs to fix the message (which
//! segment, which character, what was expected). All of them are permanent:
//! the same bytes fail the same way, so the message is NAKed (`AR`) and
//! dead-lettered, never retried.

use hub_core::error::{ErrorClass, Stage};

/// A message that is not well-formed HL7 v2 (ER7, "pipe and hat").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// There was nothing to parse (no bytes, or only a BOM).
    #[error("message is empty")]
    Empty,

    /// The first segment is not `MSH` (batch headers `FHS`/`BHS` included).
    #[error("message must start with MSH, found {found:?}")]
    NotMsh {
        /// The first characters of the message (at most 10).
        found: String,
    },

    /// The field separator (MSH-1) or the encoding characters (MSH-2) are unusable.
    #[error("bad MSH-1/MSH-2 delimiters: {reason}")]
    BadEncodingCharacters {
        /// What exactly is wrong, naming the character and its position.
        reason: String,
    },

    /// A segment does not start with a segment id followed by the field separator.
    #[error("segment {line}: {found:?} is not a segment id")]
    BadSegment {
        /// 1-based segment number (empty lines are not counted).
        line: usize,
        /// The start of the segment, up to the first field separator (at most 10 characters).
        found: String,
    },

    /// MSH-18 names a character set this crate does not decode.
    #[error("unsupported character set {charset:?} in MSH-18")]
    UnsupportedCharset {
        /// MSH-18 as received.
        charset: String,
    },

    /// The bytes are not valid in the character set MSH-18 declares.
    #[error("message is not valid {charset}{}", at_offset(*.offset))]
    InvalidText {
        /// The declared character set (MSH-18, or `UTF-8` when absent).
        charset: String,
        /// Byte offset of the first invalid byte, when known.
        offset: Option<usize>,
    },
}

fn at_offset(offset: Option<usize>) -> String {
    offset.map_or_else(String::new, |o| format!(" at byte {o}"))
}

impl ParseError {
    /// Parse errors never go away on retry.
    pub const fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }

    /// Parsing is the decode stage.
    pub const fn stage(&self) -> Stage {
        Stage::Decode
    }
}

/// The first `max` characters of `s`, for error messages.
pub(crate) fn prefix(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_facts() {
        let e = ParseError::BadSegment {
            line: 7,
            found: "8866".into(),
        };
        assert_eq!(e.to_string(), r#"segment 7: "8866" is not a segment id"#);
        let e = ParseError::InvalidText {
            charset: "UTF-8".into(),
            offset: Some(12),
        };
        assert_eq!(e.to_string(), "message is not valid UTF-8 at byte 12");
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert_eq!(prefix("ééééé", 2), "éé");
    }
}
