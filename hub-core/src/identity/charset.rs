//! The character classes of ISBT 128 data content (ICCBBA ST-001 v6.2.2,
//! §2.4), checked position by position, and the error that names the one
//! character that broke them.
//!
//! ISBT 128 character sets are uppercase: ST-001 writes every class out
//! (`{A–N; P–Z; 1–9}`, `{A–Z; 0–9}`) and, where lowercase is meant, says so
//! (`{a–z}` in the Product Code, §2.4.3). So a lowercase letter is refused,
//! not upper-cased: a case change is a change of data.

use std::fmt;

/// What one position of an identifier may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CharClass {
    /// First character of a Facility Identification Number: `A–N`, `P–Z`,
    /// `1–9` (no `O`, no `0`: they read alike).
    FinLead,
    /// Second and third characters of a FIN: `A–N`, `P–Z`, `0–9`.
    FinAlphanumeric,
    /// `0–9`.
    Digit,
    /// `A–Z`, `0–9`.
    Alphanumeric,
    /// DIN flag characters: `0–9`, `A–H`, `J–N`, `P`, `R–Y` (§2.4.1).
    DinFlag,
    /// A MOD 37-2 check character: `0–9`, `A–Z`, `*`.
    CheckCharacter,
    /// Exactly this character (the literal `CH` of a COI Identifier).
    Exactly(char),
}

impl CharClass {
    pub const fn contains(self, c: char) -> bool {
        match self {
            CharClass::FinLead => matches!(c, 'A'..='N' | 'P'..='Z' | '1'..='9'),
            CharClass::FinAlphanumeric => matches!(c, 'A'..='N' | 'P'..='Z' | '0'..='9'),
            CharClass::Digit => c.is_ascii_digit(),
            CharClass::Alphanumeric => matches!(c, 'A'..='Z' | '0'..='9'),
            CharClass::DinFlag => {
                matches!(c, '0'..='9' | 'A'..='H' | 'J'..='N' | 'P' | 'R'..='Y')
            }
            CharClass::CheckCharacter => matches!(c, '0'..='9' | 'A'..='Z' | '*'),
            CharClass::Exactly(x) => c == x,
        }
    }
}

impl fmt::Display for CharClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CharClass::FinLead => f.write_str("A–N, P–Z or 1–9"),
            CharClass::FinAlphanumeric => f.write_str("A–N, P–Z or 0–9"),
            CharClass::Digit => f.write_str("0–9"),
            CharClass::Alphanumeric => f.write_str("A–Z or 0–9"),
            CharClass::DinFlag => f.write_str("0–9, A–H, J–N, P or R–Y"),
            CharClass::CheckCharacter => f.write_str("0–9, A–Z or *"),
            CharClass::Exactly(c) => write!(f, "{c:?}"),
        }
    }
}

/// The part of an identifier a position belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part {
    /// The literal `CH` that opens a COI Identifier's data content.
    ChLiteral,
    /// The Facility Identification Number `αpppp`.
    Facility,
    /// The two-digit nominal year.
    Year,
    /// The sequence number.
    Sequence,
    /// A DIN's flag characters `ff`.
    Flags,
    /// A keyboard entry check character.
    CheckCharacter,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::ChLiteral => "literal \"CH\"",
            Part::Facility => "facility identification number",
            Part::Year => "year",
            Part::Sequence => "sequence number",
            Part::Flags => "flag characters",
            Part::CheckCharacter => "check character",
        })
    }
}

/// One character its position does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "position {position} ({part}): {found:?} is not allowed, expected {allowed}{}",
    case_hint(*found, *allowed)
)]
pub struct CharError {
    /// 1-based, counted in characters from the first one after any data
    /// identifier (for a DIN, `α` is position 1; its flags are 14–15, or a
    /// keyboard entry check character 14).
    pub position: usize,
    pub found: char,
    pub part: Part,
    pub allowed: CharClass,
}

fn case_hint(found: char, allowed: CharClass) -> &'static str {
    if found.is_ascii_lowercase() && allowed.contains(found.to_ascii_uppercase()) {
        " (ISBT 128 is uppercase: lowercase is refused, not corrected)"
    } else {
        ""
    }
}

/// Checks `content` against `layout`, one entry per character. The caller
/// has checked that `content` has exactly `layout.len()` characters.
pub(crate) fn check_layout(content: &str, layout: &[(Part, CharClass)]) -> Result<(), CharError> {
    for (i, (found, &(part, allowed))) in content.chars().zip(layout).enumerate() {
        if !allowed.contains(found) {
            return Err(CharError {
                position: i + 1,
                found,
                part,
                allowed,
            });
        }
    }
    Ok(())
}

/// A Facility Identification Number `αpppp` (ST-001 §2.4.1, §2.4.40): `α`
/// from `A–N, P–Z, 1–9`; then two of `A–N, P–Z, 0–9`; then two digits.
pub(crate) const FIN: [(Part, CharClass); 5] = [
    (Part::Facility, CharClass::FinLead),
    (Part::Facility, CharClass::FinAlphanumeric),
    (Part::Facility, CharClass::FinAlphanumeric),
    (Part::Facility, CharClass::Digit),
    (Part::Facility, CharClass::Digit),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fin_classes_exclude_o_and_zero_as_the_standard_states() {
        // ST-001 §2.4.1/§2.4.40: α ∈ {A–N; P–Z; 1–9}, pp ∈ {A–N; P–Z; 0–9}.
        for c in ['A', 'I', 'N', 'P', 'Z', '1', '9'] {
            assert!(CharClass::FinLead.contains(c), "{c}");
        }
        for c in ['O', '0', 'a', ' ', '*', 'É'] {
            assert!(!CharClass::FinLead.contains(c), "{c}");
        }
        for c in ['A', 'I', 'N', 'P', 'Z', '0', '9'] {
            assert!(CharClass::FinAlphanumeric.contains(c), "{c}");
        }
        for c in ['O', 'o', '-'] {
            assert!(!CharClass::FinAlphanumeric.contains(c), "{c}");
        }
    }

    #[test]
    fn flag_class_excludes_i_o_q_z() {
        for c in ['0', '9', 'A', 'H', 'J', 'N', 'P', 'R', 'Y'] {
            assert!(CharClass::DinFlag.contains(c), "{c}");
        }
        for c in ['I', 'O', 'Q', 'Z', 'a'] {
            assert!(!CharClass::DinFlag.contains(c), "{c}");
        }
    }

    #[test]
    fn error_names_position_part_character_and_class() {
        let err = check_layout("AO012", &FIN).unwrap_err();
        assert_eq!(
            err,
            CharError {
                position: 2,
                found: 'O',
                part: Part::Facility,
                allowed: CharClass::FinAlphanumeric
            }
        );
        assert_eq!(
            err.to_string(),
            "position 2 (facility identification number): 'O' is not allowed, expected A–N, P–Z or 0–9"
        );
        let lower = check_layout("a9999", &FIN).unwrap_err().to_string();
        assert!(lower.contains("lowercase is refused"), "{lower}");
        // A control character is escaped, never written raw into a log line.
        let control = check_layout("\u{7}9999", &FIN).unwrap_err().to_string();
        assert!(control.contains("'\\u{7}'"), "{control}");
    }
}
