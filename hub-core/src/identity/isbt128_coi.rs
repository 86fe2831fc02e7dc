//! The ISBT 128 Chain of Identity Identifier, Data Structure 040 (ICCBBA
//! ST-001 v6.2.2, §2.4.40; electronic element `ChainOfIdentityIdentifier`).
//!
//! ```text
//! &/ CH αpppp yy nnnnnn
//! │  │  │     │  └ sequence number, A–Z or 0–9, assigned by the issuer
//! │  │  │     └ nominal year of issue, two digits
//! │  │  └ Facility Identification Number of the issuing organisation
//! │  └ literal "CH"
//! └ data identifier (not part of the 15-character data content)
//! ```
//!
//! Canonical form: the 15-character data content, without `&/`. ST-001's
//! glossary lets the data identifier be omitted where the data structure's
//! identity is explicit, as it is in a field typed `COI`; keeping one form
//! makes the same COI compare equal whichever way a partner sent it.
//! Surrounding whitespace is ignored; anything else outside the standard's
//! character sets (lowercase included) is refused with its position.

use super::charset::{check_layout, CharClass, CharError, Part, FIN};
use super::coi::Coi;

/// The data identifier of Data Structure 040.
pub const DATA_IDENTIFIER: &str = "&/";

/// Characters of data content.
pub const CONTENT_LEN: usize = 15;

const LAYOUT: [(Part, CharClass); CONTENT_LEN] = [
    (Part::ChLiteral, CharClass::Exactly('C')),
    (Part::ChLiteral, CharClass::Exactly('H')),
    FIN[0],
    FIN[1],
    FIN[2],
    FIN[3],
    FIN[4],
    (Part::Year, CharClass::Digit),
    (Part::Year, CharClass::Digit),
    (Part::Sequence, CharClass::Alphanumeric),
    (Part::Sequence, CharClass::Alphanumeric),
    (Part::Sequence, CharClass::Alphanumeric),
    (Part::Sequence, CharClass::Alphanumeric),
    (Part::Sequence, CharClass::Alphanumeric),
    (Part::Sequence, CharClass::Alphanumeric),
];

/// Why a value is not an ISBT 128 Chain of Identity Identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Isbt128CoiError {
    /// Nothing but whitespace.
    #[error("empty")]
    Empty,

    /// An ISBT 128 data identifier, but another data structure's.
    #[error("data identifier {first}{second} is not that of a Chain of Identity Identifier (\"&/\", ST-001 §2.4.40)")]
    DataIdentifier { first: char, second: char },

    /// The data content has the wrong number of characters.
    #[error("data content has {found} characters; a Chain of Identity Identifier has 15 (\"CH\", 5-character facility identification number, 2-digit year, 6-character sequence number), 17 with the \"&/\" data identifier")]
    Length { found: usize },

    /// A character its position does not allow.
    #[error(transparent)]
    Character(#[from] CharError),
}

/// A valid ISBT 128 COI Identifier, borrowed from the input it was parsed
/// from: parsing trims and strips the data identifier, nothing more, so it
/// never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Isbt128Coi<'a> {
    content: &'a str,
}

impl<'a> Isbt128Coi<'a> {
    /// Parses `raw`: with or without the `&/` data identifier, surrounding
    /// whitespace ignored.
    pub fn parse(raw: &'a str) -> Result<Self, Isbt128CoiError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(Isbt128CoiError::Empty);
        }
        let content = match trimmed.strip_prefix(DATA_IDENTIFIER) {
            Some(content) => content,
            None => {
                let mut chars = trimmed.chars();
                if let (Some(first @ ('&' | '=')), Some(second)) = (chars.next(), chars.next()) {
                    if !second.is_ascii_alphanumeric() {
                        return Err(Isbt128CoiError::DataIdentifier { first, second });
                    }
                }
                trimmed
            }
        };
        let found = content.chars().count();
        if found != CONTENT_LEN {
            return Err(Isbt128CoiError::Length { found });
        }
        check_layout(content, &LAYOUT)?;
        Ok(Isbt128Coi { content })
    }

    /// The canonical form: the 15-character data content, without `&/`.
    pub fn as_str(&self) -> &'a str {
        self.content
    }

    /// The Facility Identification Number of the issuing organisation.
    pub fn facility(&self) -> &'a str {
        &self.content[2..7]
    }

    /// The two-digit nominal year of issue.
    pub fn year(&self) -> &'a str {
        &self.content[7..9]
    }

    /// The issuer's sequence number.
    pub fn sequence(&self) -> &'a str {
        &self.content[9..]
    }

    /// The owned, canonical [`Coi`].
    pub fn to_coi(&self) -> Coi {
        Coi::from_canonical_isbt128(self.content)
    }
}

impl std::fmt::Display for Isbt128Coi<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.content)
    }
}

/// Whether `s` is already a canonical ISBT 128 COI (no prefix, no padding).
pub(crate) fn is_canonical(s: &str) -> bool {
    s.is_ascii() && s.len() == CONTENT_LEN && check_layout(s, &LAYOUT).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // ST-001 publishes no example COI Identifier; these are made up to the
    // §2.4.40 layout (FIN A9999 is ST-001's own example FIN, Figure 2).
    const VALID: &str = "CHA999924AB12C3";

    #[test]
    fn parses_the_parts() {
        let coi = Isbt128Coi::parse(VALID).unwrap();
        assert_eq!(coi.as_str(), VALID);
        assert_eq!(coi.facility(), "A9999");
        assert_eq!(coi.year(), "24");
        assert_eq!(coi.sequence(), "AB12C3");
        assert_eq!(coi.to_string(), VALID);
    }

    #[test]
    fn prefix_and_surrounding_whitespace_normalise_away() {
        for raw in [
            "CHA999924AB12C3",
            "&/CHA999924AB12C3",
            "  &/CHA999924AB12C3\r\n",
            "\tCHA999924AB12C3 ",
        ] {
            assert_eq!(Isbt128Coi::parse(raw).unwrap().as_str(), VALID, "{raw:?}");
        }
    }

    #[test]
    fn boundary_characters_of_the_fin() {
        // α ∈ {A–N; P–Z; 1–9}: I and N, P and Z, 1 and 9 are in; O and 0 out.
        for alpha in ['A', 'I', 'N', 'P', 'Z', '1', '9'] {
            let raw = format!("CH{alpha}999924AB12C3");
            assert!(Isbt128Coi::parse(&raw).is_ok(), "{raw}");
        }
        for (raw, position, found) in [
            ("CHO999924AB12C3", 3, 'O'),
            ("CH0999924AB12C3", 3, '0'),
            ("CHAO99924AB12C3", 4, 'O'),
            ("CHA9O9924AB12C3", 5, 'O'),
            ("CHA99A924AB12C3", 6, 'A'),
            ("CHA999A24AB12C3", 7, 'A'),
        ] {
            let err = Isbt128Coi::parse(raw).unwrap_err();
            assert!(
                matches!(err, Isbt128CoiError::Character(CharError { position: p, found: f, part: Part::Facility, .. }) if p == position && f == found),
                "{raw}: {err:?}"
            );
        }
        // Positions 2–3 of the FIN may be 0 or a letter (but not O).
        assert!(Isbt128Coi::parse("CHA0012400B12C3").is_ok());
        assert!(Isbt128Coi::parse("CHAB012400B12C3").is_ok());
        assert!(Isbt128Coi::parse("CHAI012400B12C3").is_ok());
    }

    #[test]
    fn sequence_takes_all_of_a_to_z_and_0_to_9() {
        assert!(Isbt128Coi::parse("CHA999924OOIIZ0").is_ok());
        let err = Isbt128Coi::parse("CHA999924AB-2C3").unwrap_err();
        assert_eq!(
            err,
            Isbt128CoiError::Character(CharError {
                position: 12,
                found: '-',
                part: Part::Sequence,
                allowed: CharClass::Alphanumeric
            })
        );
    }

    #[test]
    fn refuses_with_a_precise_reason() {
        assert_eq!(Isbt128Coi::parse(" \t"), Err(Isbt128CoiError::Empty));
        assert_eq!(
            Isbt128Coi::parse("CHA999924AB12C"),
            Err(Isbt128CoiError::Length { found: 14 })
        );
        assert_eq!(
            Isbt128Coi::parse("&/CHA999924AB12C34"),
            Err(Isbt128CoiError::Length { found: 16 })
        );
        assert_eq!(
            Isbt128Coi::parse("&;CHA999924AB12C3"),
            Err(Isbt128CoiError::DataIdentifier {
                first: '&',
                second: ';'
            })
        );
        // A doubled data identifier is not stripped twice.
        assert_eq!(
            Isbt128Coi::parse("&/&/CHA999924AB12C3"),
            Err(Isbt128CoiError::Length { found: 17 })
        );
        // Whitespace inside is a character like any other.
        assert!(matches!(
            Isbt128Coi::parse("&/ CHA999924AB12C3"),
            Err(Isbt128CoiError::Length { found: 16 })
        ));
        assert_eq!(
            Isbt128Coi::parse("CHA9999 4AB12C3"),
            Err(Isbt128CoiError::Character(CharError {
                position: 8,
                found: ' ',
                part: Part::Year,
                allowed: CharClass::Digit
            }))
        );
        assert_eq!(
            Isbt128Coi::parse("CXA999924AB12C3"),
            Err(Isbt128CoiError::Character(CharError {
                position: 2,
                found: 'X',
                part: Part::ChLiteral,
                allowed: CharClass::Exactly('H')
            }))
        );
        // Non-ASCII counts as one character and is named.
        assert!(matches!(
            Isbt128Coi::parse("CHÄ999924AB12C3"),
            Err(Isbt128CoiError::Character(CharError {
                position: 3,
                found: 'Ä',
                ..
            }))
        ));
    }

    #[test]
    fn lowercase_is_refused_not_corrected() {
        for (raw, position) in [
            ("chA999924AB12C3", 1),
            ("CHa999924AB12C3", 3),
            ("CHA999924aB12C3", 10),
            ("&/CHA999924AB12c3", 14),
        ] {
            let err = Isbt128Coi::parse(raw).unwrap_err();
            assert!(
                matches!(err, Isbt128CoiError::Character(CharError { position: p, .. }) if p == position),
                "{raw}: {err:?}"
            );
            assert!(err.to_string().contains("lowercase"), "{err}");
        }
    }

    #[test]
    fn reason_reads_well() {
        let err = Isbt128Coi::parse("&/CHO999924AB12C3").unwrap_err();
        assert_eq!(
            err.to_string(),
            "position 3 (facility identification number): 'O' is not allowed, expected A–N, P–Z or 1–9"
        );
    }

    /// Valid data content, by the §2.4.40 layout.
    pub(crate) fn valid_content() -> impl Strategy<Value = String> {
        "CH[A-NP-Z1-9][A-NP-Z0-9]{2}[0-9]{2}[0-9]{2}[A-Z0-9]{6}"
    }

    proptest! {
        #[test]
        fn generated_coi_parses_and_round_trips(
            content in valid_content(),
            prefixed in any::<bool>(),
            before in "[ \t\r\n]{0,2}",
            after in "[ \t\r\n]{0,2}",
        ) {
            let raw = format!("{before}{}{content}{after}", if prefixed { DATA_IDENTIFIER } else { "" });
            let coi = Isbt128Coi::parse(&raw).unwrap();
            prop_assert_eq!(coi.as_str(), content.as_str());
            // Idempotent: the canonical form parses to itself.
            prop_assert_eq!(Isbt128Coi::parse(coi.as_str()).unwrap(), coi);
            prop_assert!(is_canonical(coi.as_str()));
            let owned = coi.to_coi();
            prop_assert_eq!(owned.as_str(), content.as_str());
        }

        /// A character its position does not allow is reported at that
        /// position, whichever it is.
        #[test]
        fn a_bad_character_is_reported_where_it_is(
            content in valid_content(),
            at in 0usize..CONTENT_LEN,
            // Not whitespace: at either end that is trimmed, by design.
            bad in prop::sample::select(vec!['O', 'o', '-', '_', '*', 'é', '0', '\u{7}']),
        ) {
            let (_, allowed) = LAYOUT[at];
            prop_assume!(!allowed.contains(bad));
            let mut chars: Vec<char> = content.chars().collect();
            chars[at] = bad;
            let raw: String = chars.into_iter().collect();
            let err = Isbt128Coi::parse(&raw).unwrap_err();
            prop_assert!(
                matches!(err, Isbt128CoiError::Character(CharError { position, found, .. }) if position == at + 1 && found == bad),
                "{:?}", err
            );
        }
    }
}
