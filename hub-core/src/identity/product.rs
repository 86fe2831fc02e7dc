//! A therapy product's own COI format: a pattern and, optionally, an
//! ISO/IEC 7064 MOD 37-2 check character.
//!
//! Manufacturers that do not (yet) use the ISBT 128 COI Identifier assign
//! their own, e.g. `R240-12345678-K`. The pattern fixes the shape; the check
//! character, when configured, is the **last character of the value** and is
//! computed over the characters before it, letters and digits only:
//! separators (neither letter nor digit, such as `-` or a space) are skipped
//! as ISO/IEC 7064 §1.1 says, and are protected by the pattern instead, which
//! pins them in place. Lowercase and non-ASCII letters cannot be protected by
//! MOD 37-2 and are refused when a check character is configured.
//!
//! ```toml
//! [identity]
//! coi_formats = [
//!     { product = "R240", pattern = "R240-[0-9]{8}-[0-9A-Z*]", check = "mod37_2" },
//! ]
//! ```

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::mod37_2::{self, Mod37Error};

/// One product's COI format, as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductCoiFormatConfig {
    /// The therapy product the format applies to, as events name it in
    /// `product` (e.g. `R240`).
    pub product: String,
    /// A regular expression (Rust `regex` syntax) that the whole COI must
    /// match, check character included. It is anchored at both ends whether
    /// or not it says so: a pattern never matches part of a value.
    pub pattern: String,
    /// The check character the COI carries in its last position, if any.
    #[serde(default)]
    pub check: Option<CheckSystem>,
}

/// A check character system a product COI may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CheckSystem {
    /// ISO/IEC 7064 MOD 37-2 (`0–9`, `A–Z`, `*`), as ISBT 128 DINs use it.
    #[serde(rename = "mod37_2")]
    Mod37_2,
}

/// A product COI format that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProductFormatError {
    /// The product is empty or padded.
    #[error(
        "COI format: product {product:?} must be a non-empty code without surrounding whitespace"
    )]
    Product { product: String },

    /// Two formats for one product: which one would apply is unclear.
    #[error("COI format: product {product:?} has more than one format")]
    Duplicate { product: String },

    /// The pattern is not a valid regular expression.
    #[error("COI format of product {product:?}: invalid pattern: {source}")]
    Pattern {
        product: String,
        #[source]
        source: regex::Error,
    },
}

/// Why a value does not match a product's COI format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProductCoiError {
    /// The value does not match the pattern.
    #[error("does not match the COI format of product {product} (pattern {pattern})")]
    Pattern { product: String, pattern: String },

    /// The value matches the pattern but its check character is wrong.
    #[error("fails the check of the COI format of product {product}: {source}")]
    Check {
        product: String,
        #[source]
        source: Mod37Error,
    },
}

/// A product's COI format, compiled once.
#[derive(Debug, Clone)]
pub struct ProductCoiFormat {
    product: String,
    pattern: String,
    regex: Regex,
    check: Option<CheckSystem>,
}

impl ProductCoiFormat {
    /// Compiles `config`.
    pub fn new(config: &ProductCoiFormatConfig) -> Result<Self, ProductFormatError> {
        let product = &config.product;
        if product.is_empty() || product.trim() != product {
            return Err(ProductFormatError::Product {
                product: product.clone(),
            });
        }
        let regex = Regex::new(&format!(r"\A(?:{})\z", config.pattern)).map_err(|source| {
            ProductFormatError::Pattern {
                product: product.clone(),
                source,
            }
        })?;
        Ok(ProductCoiFormat {
            product: product.clone(),
            pattern: config.pattern.clone(),
            regex,
            check: config.check,
        })
    }

    /// The product this format belongs to.
    pub fn product(&self) -> &str {
        &self.product
    }

    /// The pattern as configured.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The check character system, if any.
    pub fn check(&self) -> Option<CheckSystem> {
        self.check
    }

    /// Validates `raw`, surrounding whitespace ignored, and returns it
    /// trimmed: that is the canonical form, the format defining the rest.
    pub fn validate<'a>(&self, raw: &'a str) -> Result<&'a str, ProductCoiError> {
        let value = raw.trim();
        if !self.regex.is_match(value) {
            return Err(ProductCoiError::Pattern {
                product: self.product.clone(),
                pattern: self.pattern.clone(),
            });
        }
        match self.check {
            None => {}
            Some(CheckSystem::Mod37_2) => {
                mod37_2::verify_skipping_separators(value).map_err(|source| {
                    ProductCoiError::Check {
                        product: self.product.clone(),
                        source,
                    }
                })?;
            }
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn format(pattern: &str, check: Option<CheckSystem>) -> ProductCoiFormat {
        ProductCoiFormat::new(&ProductCoiFormatConfig {
            product: "R240".into(),
            pattern: pattern.into(),
            check,
        })
        .unwrap()
    }

    #[test]
    fn example_config_parses() {
        #[derive(Deserialize)]
        struct File {
            coi_format: Vec<ProductCoiFormatConfig>,
        }
        let file: File = toml::from_str(
            r#"
            [[coi_format]]
            product = "R240"
            pattern = "R240-[0-9]{8}-[0-9A-Z*]"
            check = "mod37_2"

            [[coi_format]]
            product = "K9"
            pattern = "^K9[0-9]{6}$"
            "#,
        )
        .unwrap();
        assert_eq!(file.coi_format[0].check, Some(CheckSystem::Mod37_2));
        assert_eq!(file.coi_format[1].check, None);
        for config in &file.coi_format {
            ProductCoiFormat::new(config).unwrap();
        }
        let unknown = toml::from_str::<File>(
            "[[coi_format]]\nproduct = \"R240\"\npattern = \"x\"\nchecks = \"mod37_2\"\n",
        );
        assert!(unknown.is_err());
        let bad_check = toml::from_str::<File>(
            "[[coi_format]]\nproduct = \"R240\"\npattern = \"x\"\ncheck = \"luhn\"\n",
        );
        assert!(bad_check.is_err());
    }

    #[test]
    fn pattern_is_anchored_whatever_it_says() {
        let unanchored = format("R240-[0-9]{8}", None);
        assert_eq!(unanchored.validate("R240-12345678"), Ok("R240-12345678"));
        assert!(unanchored.validate("XR240-12345678").is_err());
        assert!(unanchored.validate("R240-123456789").is_err());
        let anchored = format("^R240-[0-9]{8}$", None);
        assert_eq!(anchored.validate(" R240-12345678\t"), Ok("R240-12345678"));
        // Alternation stays inside the anchors.
        let alternation = format("A|B", None);
        assert!(alternation.validate("AB").is_err());
        assert!(alternation.validate("B").is_ok());
    }

    #[test]
    fn check_character_is_the_last_character_over_the_rest() {
        let f = format("R240-[0-9]{8}-[0-9A-Z*]", Some(CheckSystem::Mod37_2));
        let k = mod37_2::check_character("R24012345678").unwrap();
        let valid = format!("R240-12345678-{k}");
        assert_eq!(f.validate(&valid), Ok(valid.as_str()));
        let wrong = if k == '0' { '1' } else { '0' };
        assert_eq!(
            f.validate(&format!("R240-12345678-{wrong}")),
            Err(ProductCoiError::Check {
                product: "R240".into(),
                source: Mod37Error::Mismatch { found: wrong }
            })
        );
        assert_eq!(
            f.validate("R240-1234567-0"),
            Err(ProductCoiError::Pattern {
                product: "R240".into(),
                pattern: "R240-[0-9]{8}-[0-9A-Z*]".into()
            })
        );
    }

    #[test]
    fn a_lowercase_letter_the_pattern_lets_through_is_refused_by_the_check() {
        let f = format("[a-zA-Z0-9]{6}", Some(CheckSystem::Mod37_2));
        let k = mod37_2::check_character("ABCDE").unwrap();
        assert!(f.validate(&format!("ABCDE{k}")).is_ok());
        assert!(matches!(
            f.validate(&format!("aBCDE{k}")),
            Err(ProductCoiError::Check {
                source: Mod37Error::DataCharacter {
                    position: 1,
                    found: 'a'
                },
                ..
            })
        ));
    }

    #[test]
    fn refuses_unusable_configuration() {
        let config = |product: &str, pattern: &str| ProductCoiFormatConfig {
            product: product.into(),
            pattern: pattern.into(),
            check: None,
        };
        assert!(matches!(
            ProductCoiFormat::new(&config("", "x")),
            Err(ProductFormatError::Product { .. })
        ));
        assert!(matches!(
            ProductCoiFormat::new(&config(" R240", "x")),
            Err(ProductFormatError::Product { .. })
        ));
        let err = ProductCoiFormat::new(&config("R240", "R240-[0-9")).unwrap_err();
        assert!(matches!(err, ProductFormatError::Pattern { .. }));
        assert!(err.to_string().contains("R240"), "{err}");
    }

    proptest! {
        /// With a MOD 37-2 check character, a single changed character is
        /// always refused: by the pattern (separators, the fixed prefix) or
        /// by the check character (everything it covers, itself included).
        #[test]
        fn single_substitution_is_always_refused(
            digits in "[0-9]{8}",
            at in 0usize..15,
            with in prop::sample::select(
                "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*-_ ab".chars().collect::<Vec<_>>()
            ),
        ) {
            let f = format("R240-[0-9]{8}-[0-9A-Z*]", Some(CheckSystem::Mod37_2));
            let k = mod37_2::check_character(&format!("R240{digits}")).unwrap();
            let valid = format!("R240-{digits}-{k}");
            prop_assert!(f.validate(&valid).is_ok());
            let mut chars: Vec<char> = valid.chars().collect();
            prop_assume!(chars[at] != with);
            chars[at] = with;
            let altered: String = chars.into_iter().collect();
            prop_assert!(f.validate(&altered).is_err(), "{} passed", altered);
        }
    }
}
