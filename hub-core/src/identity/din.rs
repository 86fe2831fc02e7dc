//! The ISBT 128 Donation Identification Number (DIN), Data Structure 001
//! (ICCBBA ST-001 v6.2.2, §2.4.1, Table 3 and Appendix A).
//!
//! ```text
//! = αpppp yy nnnnnn ff   (+ K, printed only)
//! │ │     │  │      └ flag characters: process control, or a check (Type 3)
//! │ │     │  └ sequence number within the year, six digits
//! │ │     └ nominal year, two digits
//! │ └ Facility Identification Number; α doubles as the data identifier's
//! │   second character
//! └ data identifier
//! ```
//!
//! The 13-character DIN `αppppyynnnnnn` is the identity (unique for a
//! hundred years, §2.4.1); flags and the keyboard entry check character `K`
//! are not part of it. So the canonical form is the 13-character DIN, and a
//! value is accepted as the data structure (`=` and 15 characters), as its
//! data content (15), as the DIN alone (13) or as the DIN followed by `K`
//! (14, as keyed from the eye-readable label). Any check given, `K` or Type 3
//! flags (60 + the MOD 37-2 checksum, Appendix A.2), is verified.

use super::charset::{check_layout, CharClass, CharError, Part, FIN};
use super::mod37_2;

/// The first character of Data Structure 001's data identifier; the second
/// is the DIN's first character.
pub const DATA_IDENTIFIER: char = '=';

/// Characters in a DIN (without flags or check character).
pub const DIN_LEN: usize = 13;

const LAYOUT: [(Part, CharClass); DIN_LEN] = [
    FIN[0],
    FIN[1],
    FIN[2],
    FIN[3],
    FIN[4],
    (Part::Year, CharClass::Digit),
    (Part::Year, CharClass::Digit),
    (Part::Sequence, CharClass::Digit),
    (Part::Sequence, CharClass::Digit),
    (Part::Sequence, CharClass::Digit),
    (Part::Sequence, CharClass::Digit),
    (Part::Sequence, CharClass::Digit),
    (Part::Sequence, CharClass::Digit),
];

const WITH_FLAGS: [(Part, CharClass); 2] = [
    (Part::Flags, CharClass::DinFlag),
    (Part::Flags, CharClass::DinFlag),
];

const WITH_CHECK: [(Part, CharClass); 1] = [(Part::CheckCharacter, CharClass::CheckCharacter)];

/// Why a value is not a valid DIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DinError {
    /// Nothing but whitespace.
    #[error("empty")]
    Empty,

    /// The data structure (`=` first) whose data content is not 15
    /// characters: it always carries its flags.
    #[error("{found} characters after \"=\"; Data Structure 001 has 15 (13-character DIN and 2 flag characters)")]
    DataStructureLength { found: usize },

    /// The wrong number of characters for any accepted form.
    #[error("{found} characters; a DIN has 13, 14 with its keyboard entry check character, 15 with its flag characters")]
    Length { found: usize },

    /// A character its position does not allow.
    #[error(transparent)]
    Character(#[from] CharError),

    /// The keyboard entry check character `K` does not match the DIN.
    #[error("keyboard entry check character {found:?} does not match the DIN: it was mistyped or altered (ISO/IEC 7064 MOD 37-2, ST-001 Appendix A)")]
    CheckMismatch { found: char },

    /// Type 3 flag characters (60–96) that do not match the DIN.
    #[error("flag characters {found} are a check (Type 3, 60–96) that does not match the DIN: it was mistyped or altered (ST-001 Table 3, Appendix A.2)")]
    FlagMismatch { found: u32 },
}

/// What a DIN's flag characters convey (ST-001 §2.4.1, Table 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlagType {
    /// Type 1, `00`–`19`: process control defined by ICCBBA (`00`: not used).
    Iccbba,
    /// Type 2, `20`–`59`: process control defined by the facility; only it
    /// may interpret them.
    Local,
    /// Type 3, `60`–`96`: 60 plus the DIN's MOD 37-2 checksum.
    Check,
    /// `97`–`99` and alphanumeric values: reserved for future assignment.
    Reserved,
}

/// A valid DIN, borrowed from the input it was parsed from. Two parses of
/// one DIN with different flags are different values: the identity is
/// [`Din::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Din<'a> {
    din: &'a str,
    flags: Option<&'a str>,
    checksum: u32,
}

impl<'a> Din<'a> {
    /// Parses `raw` in any accepted form (see the module documentation),
    /// surrounding whitespace ignored, verifying any check it carries.
    pub fn parse(raw: &'a str) -> Result<Self, DinError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(DinError::Empty);
        }
        let (din, rest) = match trimmed.strip_prefix(DATA_IDENTIFIER) {
            Some(content) => {
                let found = content.chars().count();
                if found != DIN_LEN + 2 {
                    return Err(DinError::DataStructureLength { found });
                }
                check_layout(content, &LAYOUT)?;
                content.split_at(DIN_LEN)
            }
            None => {
                let found = trimmed.chars().count();
                if !(DIN_LEN..=DIN_LEN + 2).contains(&found) {
                    return Err(DinError::Length { found });
                }
                check_layout(trimmed, &LAYOUT)?;
                trimmed.split_at(DIN_LEN)
            }
        };
        // The layout is ASCII: every character counted above is one byte.
        let checksum = mod37_2::checksum_of_values(din.chars().filter_map(mod37_2::data_value));
        let mut parsed = Din {
            din,
            flags: None,
            checksum,
        };
        match rest.chars().count() {
            0 => {}
            1 => {
                check_layout(rest, &WITH_CHECK).map_err(|e| at(e, DIN_LEN))?;
                let found = rest.chars().next().unwrap_or_default();
                if Some(checksum) != mod37_2::check_value(found) {
                    return Err(DinError::CheckMismatch { found });
                }
            }
            _ => {
                check_layout(rest, &WITH_FLAGS).map_err(|e| at(e, DIN_LEN))?;
                parsed.flags = Some(rest);
                if let Some(found) = type3(rest) {
                    if found != 60 + checksum {
                        return Err(DinError::FlagMismatch { found });
                    }
                }
            }
        }
        Ok(parsed)
    }

    /// The canonical form: the 13-character DIN, without flags.
    pub fn as_str(&self) -> &'a str {
        self.din
    }

    /// The Facility Identification Number that assigned the DIN.
    pub fn facility(&self) -> &'a str {
        &self.din[..5]
    }

    /// The two-digit nominal year.
    pub fn year(&self) -> &'a str {
        &self.din[5..7]
    }

    /// The sequence number within the year.
    pub fn sequence(&self) -> &'a str {
        &self.din[7..]
    }

    /// The flag characters, when the value carried them.
    pub fn flags(&self) -> Option<&'a str> {
        self.flags
    }

    /// What the flag characters convey, when the value carried them.
    pub fn flag_type(&self) -> Option<FlagType> {
        let flags = self.flags?;
        Some(match flags.parse::<u32>() {
            Ok(0..=19) => FlagType::Iccbba,
            Ok(20..=59) => FlagType::Local,
            Ok(60..=96) => FlagType::Check,
            _ => FlagType::Reserved,
        })
    }

    /// The keyboard entry check character `K` (ST-001 Appendix A.1), as
    /// printed after the DIN on a label.
    pub fn check_character(&self) -> char {
        mod37_2::character_of(self.checksum)
    }

    /// The Type 3 flag characters for this DIN (ST-001 Appendix A.2).
    pub fn check_flags(&self) -> u32 {
        60 + self.checksum
    }
}

impl std::fmt::Display for Din<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.din)
    }
}

/// Type 3 flags are two digits from 60 to 96.
fn type3(flags: &str) -> Option<u32> {
    flags
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| flags.parse().ok())
        .flatten()
        .filter(|v| (60..=96).contains(v))
}

/// Moves a character error found in the tail after the DIN to its place.
fn at(mut e: CharError, offset: usize) -> CharError {
    e.position += offset;
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn st001_appendix_a_example() {
        // ST-001 v6.2.2 Appendix A.1: DIN G1234 17 654321, K = A;
        // Appendix A.2: Type 3 flags 70, data content G12341765432170.
        let din = Din::parse("=G12341765432170").unwrap();
        assert_eq!(din.as_str(), "G123417654321");
        assert_eq!(din.facility(), "G1234");
        assert_eq!(din.year(), "17");
        assert_eq!(din.sequence(), "654321");
        assert_eq!(din.flags(), Some("70"));
        assert_eq!(din.flag_type(), Some(FlagType::Check));
        assert_eq!(din.check_character(), 'A');
        assert_eq!(din.check_flags(), 70);
        assert_eq!(Din::parse("G123417654321A").unwrap(), {
            let mut d = din;
            d.flags = None;
            d
        });
    }

    #[test]
    fn st001_figure_2_example() {
        // ST-001 v6.2.2 §2.4.1 Figure 2: A9999 21 123456, flags 01, K = 3.
        let din = Din::parse("=A99992112345601").unwrap();
        assert_eq!(din.as_str(), "A999921123456");
        assert_eq!(din.flag_type(), Some(FlagType::Iccbba));
        assert_eq!(din.check_character(), '3');
        assert!(Din::parse("A9999211234563").is_ok());
        assert_eq!(
            Din::parse("A9999211234564"),
            Err(DinError::CheckMismatch { found: '4' })
        );
    }

    #[test]
    fn every_accepted_form_normalises_to_the_13_characters() {
        for raw in [
            "G123417654321",
            "G123417654321A",
            "G12341765432100",
            "G12341765432170",
            "=G12341765432100",
            "  =G12341765432170\n",
        ] {
            assert_eq!(
                Din::parse(raw).unwrap().as_str(),
                "G123417654321",
                "{raw:?}"
            );
        }
    }

    #[test]
    fn flags_are_classified_and_type3_checked() {
        let flag = |f: &str| {
            let raw = format!("G123417654321{f}");
            Din::parse(&raw).map(|d| d.flag_type())
        };
        assert_eq!(flag("00"), Ok(Some(FlagType::Iccbba)));
        assert_eq!(flag("19"), Ok(Some(FlagType::Iccbba)));
        assert_eq!(flag("20"), Ok(Some(FlagType::Local)));
        assert_eq!(flag("59"), Ok(Some(FlagType::Local)));
        assert_eq!(flag("70"), Ok(Some(FlagType::Check)));
        assert_eq!(flag("97"), Ok(Some(FlagType::Reserved)));
        assert_eq!(flag("A1"), Ok(Some(FlagType::Reserved)));
        assert_eq!(flag("71"), Err(DinError::FlagMismatch { found: 71 }));
        assert_eq!(flag("60"), Err(DinError::FlagMismatch { found: 60 }));
        // I, O, Q and Z are not flag characters.
        for bad in ["0I", "O0", "0Q", "Z0"] {
            assert!(
                matches!(
                    flag(bad),
                    Err(DinError::Character(CharError {
                        part: Part::Flags,
                        ..
                    }))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn fin_boundaries_and_numeric_sequence() {
        assert!(Din::parse("I123417654321").is_ok());
        assert!(Din::parse("9AB3417654321").is_ok());
        for (raw, position, part) in [
            ("O123417654321", 1, Part::Facility),
            ("0123417654321", 1, Part::Facility),
            ("GO23417654321", 2, Part::Facility),
            ("G12A417654321", 4, Part::Facility),
            ("G1234A7654321", 6, Part::Year),
            // Unlike the COI Identifier's, a DIN's sequence is numeric.
            ("G12341765432A", 13, Part::Sequence),
        ] {
            let err = Din::parse(raw).unwrap_err();
            assert!(
                matches!(err, DinError::Character(CharError { position: p, part: q, .. }) if p == position && q == part),
                "{raw}: {err:?}"
            );
        }
    }

    #[test]
    fn refuses_with_a_precise_reason() {
        assert_eq!(Din::parse(""), Err(DinError::Empty));
        assert_eq!(
            Din::parse("G12341765432"),
            Err(DinError::Length { found: 12 })
        );
        assert_eq!(
            Din::parse("G1234176543210000"),
            Err(DinError::Length { found: 17 })
        );
        // The data structure always carries its flags.
        assert_eq!(
            Din::parse("=G123417654321"),
            Err(DinError::DataStructureLength { found: 13 })
        );
        assert_eq!(
            Din::parse("=G123417654321700"),
            Err(DinError::DataStructureLength { found: 16 })
        );
        assert_eq!(
            Din::parse("g123417654321A"),
            Err(DinError::Character(CharError {
                position: 1,
                found: 'g',
                part: Part::Facility,
                allowed: CharClass::FinLead
            }))
        );
        assert_eq!(
            Din::parse("G123417654321a"),
            Err(DinError::Character(CharError {
                position: 14,
                found: 'a',
                part: Part::CheckCharacter,
                allowed: CharClass::CheckCharacter
            }))
        );
        assert_eq!(
            Din::parse("G123417654321B"),
            Err(DinError::CheckMismatch { found: 'B' })
        );
        // Eye-readable spacing is not accepted.
        assert!(matches!(
            Din::parse("G1234 17 654321"),
            Err(DinError::Length { found: 15 }) | Err(DinError::Character(_))
        ));
        let message = Din::parse("G123417654321B").unwrap_err().to_string();
        assert!(!message.contains("'A'"), "{message}");
    }

    fn valid_din() -> impl Strategy<Value = String> {
        "[A-NP-Z1-9][A-NP-Z0-9]{2}[0-9]{2}[0-9]{2}[0-9]{6}"
    }

    proptest! {
        #[test]
        fn generated_din_parses_in_every_form(din in valid_din(), flags in "[0-5][0-9]") {
            let k = mod37_2::check_character(&din).unwrap();
            let t3 = 60 + mod37_2::checksum(&din).unwrap();
            for raw in [
                din.clone(),
                format!("{din}{k}"),
                format!("{din}{flags}"),
                format!("{din}{t3}"),
                format!("={din}{flags}"),
                format!(" ={din}{t3} "),
            ] {
                let parsed = Din::parse(&raw).unwrap();
                prop_assert_eq!(parsed.as_str(), din.as_str());
                prop_assert_eq!(Din::parse(parsed.as_str()).unwrap().as_str(), din.as_str());
                prop_assert_eq!(parsed.check_character(), k);
            }
        }

        /// With `K` given, any single substitution is refused.
        #[test]
        fn single_substitution_with_k_is_detected(
            din in valid_din(),
            at in 0usize..=DIN_LEN,
            with in 0usize..37,
        ) {
            let mut value: Vec<char> = din.chars().collect();
            value.push(mod37_2::check_character(&din).unwrap());
            let replacement = char::from(mod37_2::ALPHABET[with]);
            prop_assume!(replacement != value[at]);
            value[at] = replacement;
            let altered: String = value.into_iter().collect();
            prop_assert!(Din::parse(&altered).is_err());
        }
    }
}
