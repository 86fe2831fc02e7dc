//! The HL7 mapping path language ([`Hl7`], [`Hl7Path`]).
//!
//! ```text
//! path     := SEG [ "[" segsel "]" ] [ ("-" | ".") FIELD [ "[" repsel "]" ] [ "." COMP [ "." SUB ] ] ]
//! SEG      := [A-Z][A-Z0-9]{2}
//! segsel   := N (1-based occurrence within the scope) | "*"
//! repsel   := N (1-based repetition) | "*" | COMPNO "=" VALUE
//! ```
//!
//! Numbers start at 1. Examples:
//!
//! | path            | selects                                                        |
//! |-----------------|----------------------------------------------------------------|
//! | `PID-3.1`       | PID-3, first repetition, component 1                           |
//! | `OBR-2`         | the whole of OBR-2 (first repetition)                          |
//! | `MSH-9.2`       | the trigger event (`R01`)                                      |
//! | `OBX[*].5`      | OBX-5 of every OBX in the scope (`-` and `.` are equivalent)   |
//! | `PID-3[*].1`    | component 1 of every repetition of PID-3                       |
//! | `PID-3[5=MR].1` | component 1 of the first PID-3 repetition whose CX-5 is `MR`   |
//! | `PID-3[2].4.1`  | second repetition, component 4, subcomponent 1                 |
//! | `NTE[2]-3`      | NTE-3 of the second NTE in the scope                           |
//! | `OBX`           | the segment itself: only for `foreach`                         |
//!
//! A `*` anywhere makes the path *multi* (it maps to an array). How values
//! and scopes are resolved is described in [`crate::document`].

use hub_core::mapping::Format;

/// The HL7 v2 format: `format = "hl7v2"` in mapping files.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hl7;

impl Format for Hl7 {
    const NAME: &'static str = "hl7v2";
    type Dialect = hub_core::mapping::NoDialect;
    type Path = Hl7Path;

    fn parse_path(text: &str) -> Result<Hl7Path, String> {
        Hl7Path::parse(text)
    }

    fn check_foreach(path: &Hl7Path) -> Result<(), String> {
        match &path.field {
            Some(f) if f.component.is_some() => Err(format!(
                "foreach needs a segment (OBX) or a field's repetitions (PID-3[*]), not a component: {}",
                path.as_str()
            )),
            _ => Ok(()),
        }
    }
}

/// A compiled path. Build it with [`Hl7Path::parse`] (or [`Format::parse_path`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7Path {
    pub(crate) text: Box<str>,
    pub(crate) segment: [u8; 3],
    pub(crate) occurrence: Occurrence,
    pub(crate) field: Option<FieldSel>,
}

/// Which occurrences of the segment a path selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Occurrence {
    /// No `[..]`: the scope's own segment, else the first in the scope, else
    /// the nearest one before the scope.
    Scoped,
    /// `[N]`: the N-th (1-based) within the scope.
    Nth(u32),
    /// `[*]`: all within the scope.
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldSel {
    pub(crate) field: u32,
    pub(crate) rep: RepSel,
    pub(crate) component: Option<u32>,
    pub(crate) sub: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RepSel {
    /// No `[..]`: the first repetition.
    First,
    Nth(u32),
    All,
    /// `[C=V]`: the first repetition whose component C (unescaped) is V.
    Where {
        component: u32,
        value: Box<str>,
    },
}

/// Whether a path names a bare segment (`OBX`, `OBR[2]`): what `foreach` needs.
pub fn is_segment_only(path: &Hl7Path) -> bool {
    path.field.is_none()
}

impl Hl7Path {
    /// Compiles `text`, or says what was expected where (1-based column).
    pub fn parse(text: &str) -> Result<Hl7Path, String> {
        let mut p = Parser { text, pos: 0 };
        let segment = p.segment_id()?;
        let occurrence = match p.eat(b'[') {
            false => Occurrence::Scoped,
            true if p.eat(b'*') => p.close(Occurrence::All)?,
            true => {
                let n = p.number("a segment occurrence number or '*' after '['")?;
                p.close(Occurrence::Nth(n))?
            }
        };
        let mut field = None;
        if let Some(sep) = p.peek().filter(|&b| b == b'-' || b == b'.') {
            p.pos += 1;
            let f = p.number(&format!("a field number after '{}'", char::from(sep)))?;
            let rep = match p.eat(b'[') {
                false => RepSel::First,
                true if p.eat(b'*') => p.close(RepSel::All)?,
                true => {
                    let n = p.number("a repetition number, '*' or COMPONENT=VALUE after '['")?;
                    if p.eat(b'=') {
                        let value = p.until_bracket()?;
                        p.close(RepSel::Where {
                            component: n,
                            value: value.into(),
                        })?
                    } else {
                        p.close(RepSel::Nth(n))?
                    }
                }
            };
            let component = match p.eat(b'.') {
                true => Some(p.number("a component number after '.'")?),
                false => None,
            };
            let sub = match component.is_some() && p.eat(b'.') {
                true => Some(p.number("a subcomponent number after '.'")?),
                false => None,
            };
            field = Some(FieldSel {
                field: f,
                rep,
                component,
                sub,
            });
        }
        if p.peek().is_some() {
            let what = match field {
                None => "'[', '-' or '.' after the segment id, or the end of the path",
                Some(_) => "'.' and a number, or the end of the path",
            };
            return Err(p.error(what));
        }
        Ok(Hl7Path {
            text: text.into(),
            segment,
            occurrence,
            field,
        })
    }

    /// The segment id (`PID`).
    pub fn segment(&self) -> &str {
        std::str::from_utf8(&self.segment).unwrap_or("")
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the path has a `*` (maps to an array).
    pub fn is_multi(&self) -> bool {
        self.occurrence == Occurrence::All
            || self.field.as_ref().is_some_and(|f| f.rep == RepSel::All)
    }
}

impl std::fmt::Display for Hl7Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

struct Parser<'t> {
    text: &'t str,
    pos: usize,
}

impl<'t> Parser<'t> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.pos += usize::from(hit);
        hit
    }

    fn error(&self, expected: &str) -> String {
        let column = self
            .text
            .get(..self.pos)
            .map_or(self.pos, |s| s.chars().count())
            + 1;
        format!("{:?}: expected {expected} at column {column}", self.text)
    }

    fn segment_id(&mut self) -> Result<[u8; 3], String> {
        let b = self.text.as_bytes();
        let ok = |i: usize, first: bool| {
            b.get(i)
                .is_some_and(|c| c.is_ascii_uppercase() || (!first && c.is_ascii_digit()))
        };
        for i in 0..3 {
            if !ok(i, i == 0) {
                self.pos = i;
                return Err(self.error(
                    "a segment id (an upper-case letter, then two upper-case letters or digits)",
                ));
            }
        }
        self.pos = 3;
        match b.get(..3) {
            Some(&[x, y, z]) => Ok([x, y, z]),
            _ => Err(self.error("a segment id")),
        }
    }

    fn number(&mut self, expected: &str) -> Result<u32, String> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits = self.text.get(start..self.pos).unwrap_or("");
        match digits.parse::<u32>() {
            Ok(n) if (1..=99_999).contains(&n) => Ok(n),
            Ok(_) | Err(_) if !digits.is_empty() => {
                self.pos = start;
                Err(self.error(&format!("{expected} (1 to 99999, not {digits})")))
            }
            _ => Err(self.error(expected)),
        }
    }

    fn close<T>(&mut self, value: T) -> Result<T, String> {
        match self.eat(b']') {
            true => Ok(value),
            false => Err(self.error("']'")),
        }
    }

    fn until_bracket(&mut self) -> Result<&'t str, String> {
        let text: &'t str = self.text;
        let rest = text.get(self.pos..).unwrap_or("");
        match rest.find(']') {
            Some(0) => Err(self.error("a value after '='")),
            Some(n) => {
                self.pos += n;
                Ok(rest.get(..n).unwrap_or(""))
            }
            None => {
                self.pos = self.text.len();
                Err(self.error("']' after the value"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Hl7Path {
        Hl7Path::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn field(s: &str) -> FieldSel {
        p(s).field.expect("field part")
    }

    #[test]
    fn examples_compile() {
        let f = field("PID-3[5=MR].1");
        assert_eq!(f.field, 3);
        assert_eq!(
            f.rep,
            RepSel::Where {
                component: 5,
                value: "MR".into()
            }
        );
        assert_eq!(f.component, Some(1));
        let f = field("PID-3[2].4.1");
        assert_eq!(
            (f.rep, f.component, f.sub),
            (RepSel::Nth(2), Some(4), Some(1))
        );
        assert_eq!(
            p("OBX[*].5"),
            Hl7Path {
                text: "OBX[*].5".into(),
                ..p("OBX[*]-5")
            }
        );
        assert_eq!(p("NTE[2]-3").occurrence, Occurrence::Nth(2));
        assert!(is_segment_only(&p("OBX")));
        assert!(!is_segment_only(&p("MSH-10")));
        assert_eq!(p("SPM-2.1.1").segment(), "SPM");
        assert_eq!(p("Z01-1").to_string(), "Z01-1");
        for multi in ["OBX[*].5", "OBX[*]-5", "PID-3[*].1", "NTE[*]-3", "OBX[*]"] {
            assert!(p(multi).is_multi(), "{multi}");
        }
        for single in [
            "PID-3.1",
            "OBX-5",
            "PID-3[5=MR].1",
            "OBX",
            "MSH-9.2",
            "OBR-2.1",
        ] {
            assert!(!p(single).is_multi(), "{single}");
        }
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = |s: &str| Hl7Path::parse(s).unwrap_err();
        assert_eq!(
            e("PID-x"),
            r#""PID-x": expected a field number after '-' at column 5"#
        );
        assert_eq!(
            e("pid-3"),
            r#""pid-3": expected a segment id (an upper-case letter, then two upper-case letters or digits) at column 1"#
        );
        assert_eq!(
            e("1ID"),
            r#""1ID": expected a segment id (an upper-case letter, then two upper-case letters or digits) at column 1"#
        );
        assert_eq!(
            e("PI"),
            r#""PI": expected a segment id (an upper-case letter, then two upper-case letters or digits) at column 3"#
        );
        assert_eq!(
            e("PID-0"),
            r#""PID-0": expected a field number after '-' (1 to 99999, not 0) at column 5"#
        );
        assert_eq!(
            e("PID-3.0"),
            r#""PID-3.0": expected a component number after '.' (1 to 99999, not 0) at column 7"#
        );
        assert_eq!(e("PID-3[2"), r#""PID-3[2": expected ']' at column 8"#);
        assert_eq!(
            e("PID-3[5=]"),
            r#""PID-3[5=]": expected a value after '=' at column 9"#
        );
        assert_eq!(
            e("PID-3[5=MR"),
            r#""PID-3[5=MR": expected ']' after the value at column 11"#
        );
        assert_eq!(
            e("OBX[x]-5"),
            r#""OBX[x]-5": expected a segment occurrence number or '*' after '[' at column 5"#
        );
        assert_eq!(
            e("PIDX"),
            r#""PIDX": expected '[', '-' or '.' after the segment id, or the end of the path at column 4"#
        );
        assert_eq!(
            e("PID-3.1.2.3"),
            r#""PID-3.1.2.3": expected '.' and a number, or the end of the path at column 10"#
        );
        assert_eq!(
            e("PID-3 "),
            r#""PID-3 ": expected '.' and a number, or the end of the path at column 6"#
        );
        assert_eq!(
            e("PID-99999999999"),
            r#""PID-99999999999": expected a field number after '-' (1 to 99999, not 99999999999) at column 5"#
        );
        assert!(e("").contains("column 1"));
        assert!(e("PID-é").contains("column 5"));
    }
}
