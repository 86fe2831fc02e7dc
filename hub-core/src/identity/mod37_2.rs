//! ISO/IEC 7064 MOD 37-2: the check character ISBT 128 uses for Donation
//! Identification Numbers (ICCBBA ST-001 v6.2.2, Appendix A) and that a
//! product-specific COI format may carry.
//!
//! A pure system with modulus 37 and radix 2 over the 36 data characters
//! `0–9` (values 0–9) and `A–Z` (10–35); the check character is one of those
//! or `*` (value 36). With `aᵢ` the value of the character at position `i`
//! counted from the right, the check character at `i = 1`, a protected
//! string satisfies
//!
//! ```text
//! Σ aᵢ · 2^(i−1) ≡ 1 (mod 37)
//! ```
//!
//! which ST-001 Appendix A.1 spells out as: weight each data character by
//! 2ⁿ (n its position from the right of the data), sum, take the sum mod 37,
//! subtract from 38, take mod 37 again. We compute it with the "pure system
//! recursive method" (ISO/IEC 7064 §7.1, quoted in ST-001 Appendix A.3).
//!
//! Why it catches every single substitution: 37 is prime, so every weight
//! 2^k mod 37 is non-zero, and two different characters differ by 1–36, also
//! non-zero mod 37; their product cannot be 0 mod 37, so the congruence
//! breaks. ISO/IEC 7064:2003 §1.3 a) claims exactly that ("all single
//! substitution errors"); transpositions are only "all or nearly all".

/// Characters by ISO/IEC 7064 value: `0–9`, `A–Z`, then `*` (ST-001 Table 35).
pub const ALPHABET: &[u8; 37] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*";

const MODULUS: u32 = 37;

/// Why a value does not carry a valid MOD 37-2 check character.
///
/// A mismatch never says which check character was expected: whoever reads
/// it could "fix" the check character instead of the typo it caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Mod37Error {
    /// There is no character before the check character to protect.
    #[error("a MOD 37-2 check character needs at least one character before it")]
    TooShort,

    /// A character that the check character cannot cover.
    #[error(
        "character {found:?} at position {position} is not in the MOD 37-2 alphabet (0–9, A–Z){}",
        lowercase_hint(*found)
    )]
    DataCharacter {
        /// 1-based, counted in characters from the start of the value.
        position: usize,
        found: char,
    },

    /// The last character cannot be a check character at all.
    #[error("{found:?} is not a MOD 37-2 check character (0–9, A–Z or *){}", lowercase_hint(*found))]
    CheckCharacter { found: char },

    /// The check character does not match the characters before it: one of
    /// them (or the check character) was mistyped or altered.
    #[error(
        "check character {found:?} does not match the characters before it (ISO/IEC 7064 MOD 37-2)"
    )]
    Mismatch { found: char },
}

fn lowercase_hint(c: char) -> &'static str {
    if c.is_ascii_lowercase() {
        "; lowercase letters are not in the alphabet"
    } else {
        ""
    }
}

/// ISO/IEC 7064 value of a data character: `0–9` → 0–9, `A–Z` → 10–35.
/// `*` is a check character only, never data.
pub const fn data_value(c: char) -> Option<u32> {
    match c {
        '0'..='9' => Some(c as u32 - '0' as u32),
        'A'..='Z' => Some(c as u32 - 'A' as u32 + 10),
        _ => None,
    }
}

/// ISO/IEC 7064 value of a check character: a data character or `*` (36).
pub const fn check_value(c: char) -> Option<u32> {
    match c {
        '*' => Some(36),
        _ => data_value(c),
    }
}

/// The check character for checksum `value` (0–36).
fn char_of(value: u32) -> char {
    char::from(ALPHABET[(value % MODULUS) as usize])
}

/// How characters outside `0–9`/`A–Z` are treated before the check character.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Others {
    /// Refused: ISBT 128 data content (a DIN) is alphanumeric by definition.
    Refuse,
    /// Skipped when they are neither letters nor digits (separators such as
    /// `-` or a space), as ISO/IEC 7064 §1.1 has it ("embedded spaces and
    /// special characters are ignored"); other letters and digits (lowercase,
    /// non-ASCII) are refused because the check character could not protect
    /// them.
    SkipSeparators,
}

/// The MOD 37-2 checksum (0–36) of data character values (0–35), by the
/// recursive method: `sum = (sum + a) · 2 mod 37` from the left, then
/// `(38 − sum) mod 37`.
pub(crate) fn checksum_of_values(values: impl IntoIterator<Item = u32>) -> u32 {
    let sum = values
        .into_iter()
        .fold(0, |sum, value| ((sum + value) * 2) % MODULUS);
    (MODULUS + 1 - sum) % MODULUS
}

/// The check character for a checksum from [`checksum`] (0–36).
pub fn character_of(checksum: u32) -> char {
    char_of(checksum)
}

/// The MOD 37-2 checksum (0–36) of `data`, refusing or skipping what is not
/// a data character.
fn checksum_of(data: &str, others: Others) -> Result<u32, Mod37Error> {
    let mut counted = 0usize;
    for (i, c) in data.chars().enumerate() {
        if data_value(c).is_some() {
            counted += 1;
        } else if others == Others::Refuse || c.is_alphanumeric() {
            return Err(Mod37Error::DataCharacter {
                position: i + 1,
                found: c,
            });
        }
    }
    if counted == 0 {
        return Err(Mod37Error::TooShort);
    }
    Ok(checksum_of_values(data.chars().filter_map(data_value)))
}

/// The MOD 37-2 checksum (0–36) of `data`, every character of which must be
/// `0–9` or `A–Z`. ISBT 128 Type 3 DIN flag characters are 60 plus this.
pub fn checksum(data: &str) -> Result<u32, Mod37Error> {
    checksum_of(data, Others::Refuse)
}

/// The MOD 37-2 check character of `data` (`0–9`, `A–Z` only).
pub fn check_character(data: &str) -> Result<char, Mod37Error> {
    checksum(data).map(char_of)
}

/// Verifies `data` against a check character carried separately (as the
/// keyboard entry check character `K` of a DIN is).
pub fn verify_parts(data: &str, check: char) -> Result<(), Mod37Error> {
    verify_with(data, check, Others::Refuse)
}

/// Verifies `value`, whose last character is its check character and every
/// other character `0–9` or `A–Z`.
pub fn verify(value: &str) -> Result<(), Mod37Error> {
    let (data, check) = split_last(value)?;
    verify_with(data, check, Others::Refuse)
}

/// Verifies `value`, whose last character is its check character, skipping
/// separators (characters that are neither letters nor digits) before it, as
/// ISO/IEC 7064 §1.1 does. Used for product-specific formats such as
/// `R240-12345678-K`, whose separators the format's pattern pins in place.
pub fn verify_skipping_separators(value: &str) -> Result<(), Mod37Error> {
    let (data, check) = split_last(value)?;
    verify_with(data, check, Others::SkipSeparators)
}

fn split_last(value: &str) -> Result<(&str, char), Mod37Error> {
    let mut chars = value.chars();
    let check = chars.next_back().ok_or(Mod37Error::TooShort)?;
    Ok((chars.as_str(), check))
}

fn verify_with(data: &str, check: char, others: Others) -> Result<(), Mod37Error> {
    // Check the check character's own alphabet first: `ab` should say the
    // check character is wrong, not that the data is.
    let found = check_value(check).ok_or(Mod37Error::CheckCharacter { found: check })?;
    if checksum_of(data, others)? == found {
        Ok(())
    } else {
        Err(Mod37Error::Mismatch { found: check })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Published examples, each with its source.
    const EXAMPLES: &[(&str, char)] = &[
        // ICCBBA ST-001 v6.2.2 (2023), Appendix A.1 "Example of Calculation":
        // DIN G1234 17 654321, checksum 10, K = A.
        // https://www.isbt128.org/tech-spec
        ("G123417654321", 'A'),
        // ICCBBA ST-001 v6.2.2, §2.4.1 Figure 2 "Donation Numbering":
        // A9999 21 123456, check character 3.
        ("A999921123456", '3'),
        // JPAC Red Book, Annex 2 "ISBT 128 check character calculation",
        // Table A2.2: G123 498 654 321, checksum 17, eye-readable check H.
        // https://www.transfusionguidelines.org/red-book/annex-2-isbt-128-check-character-calculation
        ("G123498654321", 'H'),
        // The ISO/IEC 7064 MOD 37-2 example reproduced by implementations,
        // e.g. danieltwagner/iso7064 Mod37_2Test.java and
        // konfirm/node-iso7064 test/source/Instance/Mod37_2.ts:
        // G123489654321 → Y.
        ("G123489654321", 'Y'),
        // konfirm/node-iso7064 and jacoelho/go-iso7064
        // (iso7064/modulo37radix2_test.go): A9999 15 000001 → M.
        ("A999915000001", 'M'),
        // jacoelho/go-iso7064 iso7064/modulo37radix2_test.go: a string whose
        // check character is the supplementary `*` (value 36), and another.
        ("LMOSBYFCTRSSJCB3X6U9DUBLKNIH03FO6X963TGXYAHG", '*'),
        ("G7N286AL39FFQNU6BH8SMJB5VGMBCB6WPGMWJK800VU7K", 'P'),
    ];

    #[test]
    fn published_examples() {
        for &(data, check) in EXAMPLES {
            assert_eq!(check_character(data), Ok(check), "{data}");
            let mut value = data.to_owned();
            value.push(check);
            assert_eq!(verify(&value), Ok(()), "{value}");
            assert_eq!(verify_parts(data, check), Ok(()), "{data}");
        }
    }

    #[test]
    fn st001_appendix_a_intermediate_values() {
        // Appendix A.1: the weighted sum is 146178, 146178 mod 37 = 28,
        // 38 − 28 = 10, 10 mod 37 = 10; Appendix A.2: Type 3 flags "70".
        assert_eq!(weighted_sum("G123417654321"), 146_178);
        assert_eq!(146_178 % 37, 28);
        assert_eq!(checksum("G123417654321"), Ok(10));
        // JPAC Table A2.2: 148354, mod 37 = 21, 38 − 21 = 17.
        assert_eq!(weighted_sum("G123498654321"), 148_354);
        assert_eq!(checksum("G123498654321"), Ok(17));
    }

    /// Σ value · 2ⁿ with n the position from the right (1 for the last
    /// character): the definition in ST-001 Appendix A.1, steps 1–3.
    fn weighted_sum(data: &str) -> u64 {
        let n = data.chars().count() as u32;
        data.chars()
            .enumerate()
            .map(|(i, c)| u64::from(data_value(c).unwrap()) << (n - i as u32))
            .sum()
    }

    /// The same definition without overflow: weights 2ⁿ mod 37.
    fn checksum_by_definition(data: &str) -> u32 {
        let n = data.chars().count();
        let mut sum = 0u32;
        for (i, c) in data.chars().enumerate() {
            let mut weight = 1u32;
            for _ in 0..(n - i) {
                weight = weight * 2 % 37;
            }
            sum = (sum + data_value(c).unwrap() * weight) % 37;
        }
        (38 - sum) % 37
    }

    #[test]
    fn value_fold_agrees() {
        let values = "G123417654321".chars().filter_map(data_value);
        assert_eq!(checksum_of_values(values), 10);
        assert_eq!(character_of(10), 'A');
        assert_eq!(character_of(36), '*');
    }

    #[test]
    fn values_follow_table_35() {
        for (value, &c) in ALPHABET.iter().enumerate() {
            assert_eq!(check_value(char::from(c)), Some(value as u32));
        }
        assert_eq!(data_value('*'), None);
        assert_eq!(data_value('a'), None);
        assert_eq!(check_value('a'), None);
    }

    #[test]
    fn refuses_what_it_cannot_check() {
        assert_eq!(verify(""), Err(Mod37Error::TooShort));
        assert_eq!(verify("A"), Err(Mod37Error::TooShort));
        assert_eq!(check_character(""), Err(Mod37Error::TooShort));
        assert_eq!(
            verify("G12341765432lA"),
            Err(Mod37Error::DataCharacter {
                position: 13,
                found: 'l'
            })
        );
        assert_eq!(
            check_character("G1234-17"),
            Err(Mod37Error::DataCharacter {
                position: 6,
                found: '-'
            })
        );
        assert_eq!(
            verify("G123417654321a"),
            Err(Mod37Error::CheckCharacter { found: 'a' })
        );
        assert_eq!(
            verify("G123417654321B"),
            Err(Mod37Error::Mismatch { found: 'B' })
        );
        assert_eq!(
            verify("G1234*17654321A"),
            Err(Mod37Error::DataCharacter {
                position: 6,
                found: '*'
            })
        );
    }

    #[test]
    fn mismatch_does_not_reveal_the_expected_check_character() {
        let message = verify("G123417654321B").unwrap_err().to_string();
        assert!(!message.contains("'A'"), "{message}");
        assert!(message.contains("'B'"), "{message}");
    }

    #[test]
    fn lowercase_is_named_in_the_reason() {
        let message = verify("g123417654321A").unwrap_err().to_string();
        assert!(message.contains("lowercase"), "{message}");
    }

    #[test]
    fn separators_are_skipped_only_when_asked() {
        // The same digits, separated: the check character is unchanged.
        assert_eq!(verify_skipping_separators("G1234-17-654321-A"), Ok(()));
        assert_eq!(verify_skipping_separators("G1234 17 654321 A"), Ok(()));
        assert!(matches!(
            verify("G1234-17-654321-A"),
            Err(Mod37Error::DataCharacter { position: 6, .. })
        ));
        // Letters and digits it cannot protect are refused, not skipped.
        assert_eq!(
            verify_skipping_separators("g1234-17-654321-A"),
            Err(Mod37Error::DataCharacter {
                position: 1,
                found: 'g'
            })
        );
        assert_eq!(
            verify_skipping_separators("É1234-17-654321-A"),
            Err(Mod37Error::DataCharacter {
                position: 1,
                found: 'É'
            })
        );
        assert_eq!(verify_skipping_separators("--A"), Err(Mod37Error::TooShort));
    }

    /// Every single substitution in the ST-001 example is caught, by the
    /// alphabet or by the checksum.
    #[test]
    fn every_substitution_in_the_st001_example_is_detected() {
        let value: Vec<char> = "G123417654321A".chars().collect();
        for i in 0..value.len() {
            for &b in ALPHABET.iter() {
                let replacement = char::from(b);
                if replacement == value[i] {
                    continue;
                }
                let mut altered = value.clone();
                altered[i] = replacement;
                let altered: String = altered.into_iter().collect();
                assert!(verify(&altered).is_err(), "{altered} passed");
            }
        }
    }

    fn data() -> impl Strategy<Value = String> {
        "[0-9A-Z]{1,40}"
    }

    proptest! {
        #[test]
        fn recursive_method_matches_the_definition(data in data()) {
            prop_assert_eq!(checksum(&data).unwrap(), checksum_by_definition(&data));
        }

        /// Σ aᵢ·2^(i−1) ≡ 1 (mod 37) over the data and its check character.
        #[test]
        fn protected_string_is_congruent_to_one(data in data()) {
            let mut value = data.clone();
            value.push(check_character(&data).unwrap());
            let mut sum = 0u32;
            let mut weight = 1u32;
            for c in value.chars().rev() {
                sum = (sum + check_value(c).unwrap() * weight) % 37;
                weight = weight * 2 % 37;
            }
            prop_assert_eq!(sum, 1);
            prop_assert_eq!(verify(&value), Ok(()));
        }

        /// ISO/IEC 7064 §1.3 a): every single substitution is detected,
        /// including one of the check character itself.
        #[test]
        fn single_substitution_is_always_detected(
            data in data(),
            at in any::<prop::sample::Index>(),
            with in 0usize..37,
        ) {
            let mut value: Vec<char> = data.chars().collect();
            value.push(check_character(&data).unwrap());
            let i = at.index(value.len());
            let replacement = char::from(ALPHABET[with]);
            prop_assume!(replacement != value[i]);
            value[i] = replacement;
            let altered: String = value.into_iter().collect();
            prop_assert!(verify(&altered).is_err());
        }
    }
}
