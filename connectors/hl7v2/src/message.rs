//! A zero-copy HL7 v2 (ER7) message: segments and fields borrowed from the text.
//!
//! Parsing splits segments (CR, LF or CRLF, mixed; empty lines skipped) and
//! fields (one flat `Vec<&str>` for the whole message) with `memchr`;
//! components, repetitions and subcomponents are split on demand by
//! [`crate::path`]. MSH fields are numbered as the standard says: MSH-1 is the
//! field separator itself, MSH-2 the encoding characters, MSH-3 the sending
//! application.

use std::borrow::Cow;

use memchr::{memchr, memchr2};

use crate::delimiters::Delimiters;
use crate::error::{prefix, ParseError};
use crate::escape::unescape;

/// One segment: its line and its fields' range in [`Message::fields`].
#[derive(Debug, Clone, Copy)]
struct Seg<'a> {
    line: &'a str,
    name: [u8; 3],
    /// Index of the segment id in the flat field list; field n is at `first + n`.
    first: u32,
    /// One past the last field.
    end: u32,
}

/// A parsed message borrowing from its text.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    text: &'a str,
    delims: Delimiters,
    segments: Vec<Seg<'a>>,
    fields: Vec<&'a str>,
}

impl<'a> Message<'a> {
    /// Parses `text` (already decoded, see [`crate::charset::decode_text`]).
    ///
    /// A UTF-8 byte order mark is skipped; anything else before `MSH` is an
    /// error. Every segment must start with `[A-Z][A-Z0-9]{2}` followed by the
    /// field separator or the end of the line.
    pub fn parse(text: &'a str) -> Result<Message<'a>, ParseError> {
        let body = text.strip_prefix('\u{feff}').unwrap_or(text);
        if body.is_empty() {
            return Err(ParseError::Empty);
        }
        if !body.starts_with("MSH") {
            return Err(ParseError::NotMsh {
                found: prefix(body, 10),
            });
        }
        let delims = read_delimiters(body)?;
        let fs = delims.field();
        let mut msg = Message {
            text,
            delims,
            segments: Vec::with_capacity(16),
            fields: Vec::with_capacity(body.len() / 4),
        };
        let bytes = body.as_bytes();
        let mut pos = 0;
        while pos < bytes.len() {
            let end = memchr2(b'\r', b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
            // CR and LF are ASCII: `pos` and `end` are char boundaries.
            let line = &body[pos..end];
            pos = end + 1;
            if line.is_empty() {
                continue;
            }
            msg.push_segment(line, fs)?;
        }
        Ok(msg)
    }

    fn push_segment(&mut self, line: &'a str, fs: u8) -> Result<(), ParseError> {
        let b = line.as_bytes();
        let name = match (b.get(..3), b.get(3)) {
            (Some(&[a, b1, c]), next)
                if is_segment_id(a, b1, c) && next.is_none_or(|&n| n == fs) =>
            {
                [a, b1, c]
            }
            _ => {
                let upto = memchr(fs, b).unwrap_or(b.len());
                return Err(ParseError::BadSegment {
                    line: self.segments.len() + 1,
                    found: prefix(line.get(..upto).unwrap_or(line), 10),
                });
            }
        };
        let first = self.fields.len();
        let mut start = 0;
        // A plain loop: fields are a few bytes apart, where memchr's per-call
        // setup costs more than it saves.
        for i in (0..b.len()).filter(|&i| b.get(i) == Some(&fs)) {
            self.fields.push(&line[start..i]);
            if start == 0 && &name == b"MSH" {
                self.fields.push(&line[i..=i]); // MSH-1: the separator itself
            }
            start = i + 1;
        }
        self.fields.push(&line[start..]);
        self.segments.push(Seg {
            line,
            name,
            first: u32::try_from(first).unwrap_or(u32::MAX),
            end: u32::try_from(self.fields.len()).unwrap_or(u32::MAX),
        });
        Ok(())
    }

    /// The text this message was parsed from.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The delimiters MSH-1 and MSH-2 declare.
    pub fn delimiters(&self) -> &Delimiters {
        &self.delims
    }

    /// Number of segments (at least 1: MSH).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Segment ids in order (`MSH`, `PID`, …).
    pub fn segments(&self) -> impl ExactSizeIterator<Item = &'a str> + '_ {
        self.segments.iter().map(|s| seg_name(s))
    }

    /// The id of segment `i` (0-based; 0 is MSH).
    pub fn segment_name(&self, i: usize) -> Option<&'a str> {
        self.segments.get(i).map(seg_name)
    }

    /// The whole text of segment `i`, without its terminator.
    pub fn segment_text(&self, i: usize) -> Option<&'a str> {
        self.segments.get(i).map(|s| s.line)
    }

    /// Index of the first segment named `name` in `from..to`.
    pub fn find_segment(&self, name: &str, from: usize, to: usize) -> Option<usize> {
        let to = to.min(self.segments.len());
        let from = from.min(to);
        self.segments
            .get(from..to)?
            .iter()
            .position(|s| s.name == name.as_bytes())
            .map(|p| from + p)
    }

    pub(crate) fn segment_is(&self, i: usize, name: &[u8; 3]) -> bool {
        self.segments.get(i).is_some_and(|s| &s.name == name)
    }

    /// Number of fields of segment `i` (MSH counts MSH-1 and MSH-2).
    pub fn field_count(&self, i: usize) -> usize {
        self.segments.get(i).map_or(0, |s| {
            s.end.saturating_sub(s.first).saturating_sub(1) as usize
        })
    }

    /// Raw text of field `n` (1-based) of segment `i`, escapes untouched.
    /// `None` when the segment is shorter; `Some("")` for an empty field.
    pub fn field(&self, i: usize, n: usize) -> Option<&'a str> {
        let s = self.segments.get(i)?;
        if n == 0 || n >= s.end.saturating_sub(s.first) as usize {
            return None;
        }
        self.fields.get(s.first as usize + n).copied()
    }

    /// Raw MSH-`n`.
    pub fn msh(&self, n: usize) -> Option<&'a str> {
        self.field(0, n)
    }

    /// First component of the first repetition of MSH-`n`, raw; `None` when empty.
    fn msh_first(&self, n: usize) -> Option<&'a str> {
        let f = self.msh(n)?;
        let f = first_part(f, self.delims.repetition());
        let c = first_part(f, self.delims.component());
        (!c.is_empty()).then_some(c)
    }

    /// `ORU^R01`: MSH-9.1 and MSH-9.2 unescaped, or just MSH-9.1 (`ACK`).
    pub fn message_type(&self) -> Option<Cow<'a, str>> {
        let f = first_part(self.msh(9)?, self.delims.repetition());
        let mut parts = f.split(char::from(self.delims.component()));
        let code = unescape(parts.next().unwrap_or(""), &self.delims);
        if code.is_empty() {
            return None;
        }
        match parts.next().filter(|t| !t.is_empty()) {
            Some(trigger) => {
                let trigger = unescape(trigger, &self.delims);
                Some(Cow::Owned(format!("{code}^{trigger}")))
            }
            None => Some(code),
        }
    }

    /// MSH-10, raw.
    pub fn control_id(&self) -> Option<&'a str> {
        self.msh(10).filter(|s| !s.is_empty())
    }

    /// MSH-11.1 (`P`, `T`, `D`).
    pub fn processing_id(&self) -> Option<&'a str> {
        self.msh_first(11)
    }

    /// MSH-12.1 (`2.5.1`).
    pub fn version(&self) -> Option<&'a str> {
        self.msh_first(12)
    }

    /// MSH-3.1, unescaped.
    pub fn sending_app(&self) -> Option<Cow<'a, str>> {
        self.msh_first(3).map(|s| unescape(s, &self.delims))
    }

    /// MSH-4.1, unescaped.
    pub fn sending_facility(&self) -> Option<Cow<'a, str>> {
        self.msh_first(4).map(|s| unescape(s, &self.delims))
    }

    /// MSH-18, first repetition (the character set of the message).
    pub fn charset(&self) -> Option<&'a str> {
        self.msh_first(18)
    }

    /// MSH-15 accept acknowledgement type (`AL`, `NE`, `ER`, `SU`).
    pub fn accept_ack_type(&self) -> Option<&'a str> {
        self.msh_first(15)
    }

    /// MSH-16 application acknowledgement type.
    pub fn app_ack_type(&self) -> Option<&'a str> {
        self.msh_first(16)
    }
}

fn seg_name<'a>(s: &Seg<'a>) -> &'a str {
    s.line.get(..3).unwrap_or("")
}

const fn is_segment_id(a: u8, b: u8, c: u8) -> bool {
    a.is_ascii_uppercase()
        && (b.is_ascii_uppercase() || b.is_ascii_digit())
        && (c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// Position of `b` in `s`: memchr for long text, a plain loop for the
/// few bytes of a field or component, where memchr's setup dominates.
#[inline]
pub(crate) fn find_byte(b: u8, s: &[u8]) -> Option<usize> {
    if s.len() < 64 {
        s.iter().position(|&c| c == b)
    } else {
        memchr(b, s)
    }
}

/// The text before the first `sep` byte (ASCII), or all of `s`.
pub(crate) fn first_part(s: &str, sep: u8) -> &str {
    match find_byte(sep, s.as_bytes()) {
        Some(i) => &s[..i],
        None => s,
    }
}

fn read_delimiters(body: &str) -> Result<Delimiters, ParseError> {
    let mut chars = body.get(3..).unwrap_or("").chars();
    let Some(fs) = chars.next().filter(|c| *c != '\r' && *c != '\n') else {
        return Err(ParseError::BadEncodingCharacters {
            reason: "MSH has no field separator (MSH-1)".into(),
        });
    };
    let rest = chars.as_str();
    let end = rest.find([fs, '\r', '\n']).unwrap_or(rest.len());
    Delimiters::from_msh(fs, rest.get(..end).unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORU: &str =
        "MSH|^~\\&|LAB|HOSP|EMR|HOSP|202501021200||ORU^R01|MSG1|P^T|2.5.1^x|||AL|NE||8859/1\r\
        PID|1||789^^^H^MR~55^^^H^PI||SMITH^JANE\n\
        \r\n\
        OBX|1|NM|WBC\r\
        ZPV|\r";

    #[test]
    fn segments_and_fields() {
        let m = Message::parse(ORU).unwrap();
        assert_eq!(
            m.segments().collect::<Vec<_>>(),
            ["MSH", "PID", "OBX", "ZPV"]
        );
        assert_eq!(m.field(0, 1), Some("|"));
        assert_eq!(m.field(0, 2), Some("^~\\&"));
        assert_eq!(m.field(0, 3), Some("LAB"));
        assert_eq!(m.field(1, 3), Some("789^^^H^MR~55^^^H^PI"));
        assert_eq!(m.field(1, 4), Some(""));
        assert_eq!(m.field(1, 6), None);
        assert_eq!(m.field(1, 0), None);
        assert_eq!(m.field(9, 1), None);
        assert_eq!(m.field(3, 1), Some(""));
        assert_eq!(m.field_count(2), 3);
        assert_eq!(m.segment_text(2), Some("OBX|1|NM|WBC"));
        assert_eq!(m.find_segment("OBX", 1, 99), Some(2));
        assert_eq!(m.find_segment("OBX", 3, 99), None);
    }

    #[test]
    fn header_accessors() {
        let m = Message::parse(ORU).unwrap();
        assert_eq!(m.message_type().as_deref(), Some("ORU^R01"));
        assert_eq!(m.control_id(), Some("MSG1"));
        assert_eq!(m.processing_id(), Some("P"));
        assert_eq!(m.version(), Some("2.5.1"));
        assert_eq!(m.sending_app().as_deref(), Some("LAB"));
        assert_eq!(m.sending_facility().as_deref(), Some("HOSP"));
        assert_eq!(m.accept_ack_type(), Some("AL"));
        assert_eq!(m.app_ack_type(), Some("NE"));
        assert_eq!(m.charset(), Some("8859/1"));
        let ack = Message::parse("MSH|^~\\&|||||||ACK|1|P|2.3\rMSA|AA|1").unwrap();
        assert_eq!(ack.message_type().as_deref(), Some("ACK"));
        assert_eq!(ack.charset(), None);
        let esc = Message::parse("MSH|^~\\&|A\\T\\B||||||X\\S\\Y^Z").unwrap();
        assert_eq!(esc.message_type().as_deref(), Some("X^Y^Z"));
        assert_eq!(esc.sending_app().as_deref(), Some("A&B"));
    }

    #[test]
    fn bom_and_short_msh() {
        let m = Message::parse("\u{feff}MSH|^~\\&").unwrap();
        assert_eq!(m.segment_count(), 1);
        assert_eq!(m.field(0, 2), Some("^~\\&"));
        assert_eq!(m.field(0, 3), None);
        assert_eq!(Message::parse("\u{feff}").unwrap_err(), ParseError::Empty);
    }

    #[test]
    fn refusals() {
        let err = |s: &str| Message::parse(s).unwrap_err().to_string();
        assert_eq!(err(""), "message is empty");
        assert_eq!(
            err("\nMSH|^~\\&"),
            "message must start with MSH, found \"\\nMSH|^~\\\\&\""
        );
        assert_eq!(
            err("MSH"),
            "bad MSH-1/MSH-2 delimiters: MSH has no field separator (MSH-1)"
        );
        assert!(err("MSH|^~\\^|").contains("subcomponent separator (MSH-2.4) '^' is also"));
        assert!(err("MSH|^~\\|").contains("has 3 encoding characters"));
        assert_eq!(
            err("MSH|^~\\&|\rPID|1\n8866||x"),
            "segment 3: \"8866\" is not a segment id"
        );
        assert_eq!(
            err("MSH|^~\\&\rpid|1"),
            "segment 2: \"pid\" is not a segment id"
        );
        assert_eq!(
            err("MSH|^~\\&\rPIDX|1"),
            "segment 2: \"PIDX\" is not a segment id"
        );
        assert_eq!(err("MSH|^~\\&\rP"), "segment 2: \"P\" is not a segment id");
        assert_eq!(
            err("MSH|^~\\&\réèêëìíîïðñò|"),
            "segment 2: \"éèêëìíîïðñ\" is not a segment id"
        );
    }
}
