//! The delimiters a message declares in MSH-1 and MSH-2.

use crate::error::ParseError;

/// Field, component, repetition, escape, subcomponent and (v2.7) truncation
/// characters.
///
/// Always ASCII punctuation and pairwise distinct: [`Delimiters::from_msh`]
/// refuses anything else, so byte-level splitting of UTF-8 text on them is
/// always on character boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    field: u8,
    component: u8,
    repetition: u8,
    escape: u8,
    subcomponent: u8,
    truncation: Option<u8>,
}

impl Default for Delimiters {
    /// `|^~\&`, the delimiters nearly every sender uses.
    fn default() -> Self {
        Delimiters {
            field: b'|',
            component: b'^',
            repetition: b'~',
            escape: b'\\',
            subcomponent: b'&',
            truncation: None,
        }
    }
}

const NAMES: [&str; 6] = [
    "field separator (MSH-1)",
    "component separator (MSH-2.1)",
    "repetition separator (MSH-2.2)",
    "escape character (MSH-2.3)",
    "subcomponent separator (MSH-2.4)",
    "truncation character (MSH-2.5)",
];

impl Delimiters {
    /// Validates the field separator and the MSH-2 encoding characters
    /// (4 of them, or 5 with the v2.7 truncation character).
    pub fn from_msh(field: char, encoding: &str) -> Result<Self, ParseError> {
        let mut all = [0u8; 6];
        let mut count = 0;
        for (i, c) in std::iter::once(field).chain(encoding.chars()).enumerate() {
            if i >= all.len() {
                return Err(bad(format!(
                    "MSH-2 {encoding:?} has more than 5 encoding characters"
                )));
            }
            let name = NAMES.get(i).copied().unwrap_or("delimiter");
            if !c.is_ascii_punctuation() {
                return Err(bad(format!(
                    "{name} is {c:?}; expected an ASCII punctuation character"
                )));
            }
            let b = c as u8; // ASCII, checked above
            if let Some(j) = all.get(..i).and_then(|s| s.iter().position(|&o| o == b)) {
                let other = NAMES.get(j).copied().unwrap_or("delimiter");
                return Err(bad(format!("{name} {c:?} is also the {other}")));
            }
            if let Some(slot) = all.get_mut(i) {
                *slot = b;
            }
            count = i + 1;
        }
        if count < 5 {
            return Err(bad(format!(
                "MSH-2 {encoding:?} has {} encoding characters; expected 4 (^~\\&) or 5",
                count.saturating_sub(1)
            )));
        }
        let [field, component, repetition, escape, subcomponent, t] = all;
        Ok(Delimiters {
            field,
            component,
            repetition,
            escape,
            subcomponent,
            truncation: (count == 6).then_some(t),
        })
    }

    /// MSH-1.
    pub const fn field(&self) -> u8 {
        self.field
    }
    /// MSH-2.1.
    pub const fn component(&self) -> u8 {
        self.component
    }
    /// MSH-2.2.
    pub const fn repetition(&self) -> u8 {
        self.repetition
    }
    /// MSH-2.3.
    pub const fn escape(&self) -> u8 {
        self.escape
    }
    /// MSH-2.4.
    pub const fn subcomponent(&self) -> u8 {
        self.subcomponent
    }
    /// MSH-2.5 (v2.7+), if declared.
    pub const fn truncation(&self) -> Option<u8> {
        self.truncation
    }

    /// The MSH-2 text these delimiters are written as, e.g. `^~\&`.
    pub fn encoding_characters(&self) -> String {
        let mut s = String::with_capacity(5);
        for b in [
            self.component,
            self.repetition,
            self.escape,
            self.subcomponent,
        ] {
            s.push(char::from(b));
        }
        if let Some(t) = self.truncation {
            s.push(char::from(t));
        }
        s
    }
}

fn bad(reason: String) -> ParseError {
    ParseError::BadEncodingCharacters { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(field: char, enc: &str) -> String {
        match Delimiters::from_msh(field, enc) {
            Err(ParseError::BadEncodingCharacters { reason }) => reason,
            other => panic!("expected BadEncodingCharacters, got {other:?}"),
        }
    }

    #[test]
    fn standard_and_truncation() {
        let d = Delimiters::from_msh('|', "^~\\&").unwrap();
        assert_eq!(d, Delimiters::default());
        assert_eq!(d.encoding_characters(), "^~\\&");
        let d = Delimiters::from_msh('|', "^~\\&#").unwrap();
        assert_eq!(d.truncation(), Some(b'#'));
        assert_eq!(d.encoding_characters(), "^~\\&#");
    }

    #[test]
    fn precise_refusals() {
        assert_eq!(
            reason('|', "^~\\"),
            "MSH-2 \"^~\\\\\" has 3 encoding characters; expected 4 (^~\\&) or 5"
        );
        assert_eq!(
            reason('|', "^~^&"),
            "escape character (MSH-2.3) '^' is also the component separator (MSH-2.1)"
        );
        assert_eq!(
            reason('|', "^~\\|"),
            "subcomponent separator (MSH-2.4) '|' is also the field separator (MSH-1)"
        );
        assert_eq!(
            reason('A', "^~\\&"),
            "field separator (MSH-1) is 'A'; expected an ASCII punctuation character"
        );
        assert_eq!(
            reason('|', "^~\\\r"),
            "subcomponent separator (MSH-2.4) is '\\r'; expected an ASCII punctuation character"
        );
        assert!(reason('|', "^~\\&#!").contains("more than 5"));
        assert!(reason('|', "^é\\&").contains("'é'"));
    }
}
