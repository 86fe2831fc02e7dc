//! The chain of identity identifier as the hub carries it, and the registry
//! of formats it is parsed with.
//!
//! A [`Coi`] is always in canonical form, so two spellings of one COI (with
//! and without the `&/` data identifier, padded or not) are equal. Its
//! [`CoiKind`] follows from the value: a canonical ISBT 128 COI Identifier is
//! [`CoiKind::Isbt128`], anything else a product-specific COI.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::isbt128_coi::{self, Isbt128Coi, Isbt128CoiError};
use super::product::{
    ProductCoiError, ProductCoiFormat, ProductCoiFormatConfig, ProductFormatError,
};
use crate::error::{ErrorClass, Stage};

/// A chain of identity identifier in canonical form. Serialised as a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Coi(String);

/// What kind of COI a [`Coi`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CoiKind {
    /// An ISBT 128 Chain of Identity Identifier (ST-001 §2.4.40).
    Isbt128,
    /// A COI in a therapy product's own format.
    ProductSpecific,
}

impl Coi {
    /// A COI already checked to be canonical ISBT 128 data content.
    pub(crate) fn from_canonical_isbt128(content: &str) -> Coi {
        Coi(content.to_owned())
    }

    /// Takes a stored COI back, checking only that it is in canonical form
    /// (what [`CoiFormats::parse`] returns): its format may have changed
    /// since it was stored, and a COI once accepted must stay readable.
    pub fn from_canonical(value: String) -> Result<Coi, CoiError> {
        let reason = if value.is_empty() {
            Some("empty")
        } else if value.trim() != value {
            Some("surrounding whitespace")
        } else if value.chars().any(char::is_control) {
            Some("control characters")
        } else if value.starts_with(isbt128_coi::DATA_IDENTIFIER) {
            Some("the ISBT 128 data identifier \"&/\"")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(CoiError::NotCanonical { reason }),
            None => Ok(Coi(value)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// ISBT 128 if the value is a canonical ISBT 128 COI Identifier; a
    /// product format whose values could also be one is parsed as ISBT 128
    /// first, so this agrees with how the COI was accepted.
    pub fn kind(&self) -> CoiKind {
        if isbt128_coi::is_canonical(&self.0) {
            CoiKind::Isbt128
        } else {
            CoiKind::ProductSpecific
        }
    }
}

impl fmt::Display for Coi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Coi {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Coi {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for Coi {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Coi {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Coi::from_canonical(value).map_err(serde::de::Error::custom)
    }
}

/// Why a value is refused as a COI. Always permanent: the same value will
/// be refused the same way, so it is answered negatively at intake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoiError {
    /// Nothing but whitespace.
    #[error("COI is empty")]
    Empty,

    /// Not an ISBT 128 COI Identifier, and no product format applies (no
    /// product given, none configured for it, or the value carries the
    /// `&/` data identifier and so can only be ISBT 128).
    #[error("COI is not an ISBT 128 Chain of Identity Identifier: {0}")]
    Isbt128(Isbt128CoiError),

    /// Neither an ISBT 128 COI Identifier nor in the product's own format.
    #[error(
        "COI {product}, and is not an ISBT 128 Chain of Identity Identifier either ({isbt128})"
    )]
    NoFormat {
        isbt128: Isbt128CoiError,
        product: ProductCoiError,
    },

    /// A stored COI that is not in canonical form.
    #[error("not a canonical COI: {reason}")]
    NotCanonical { reason: &'static str },
}

impl CoiError {
    pub const fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }

    pub const fn stage(&self) -> Stage {
        Stage::Identity
    }
}

/// The COI formats the hub accepts: ISBT 128 always, and each configured
/// product's own format for that product.
#[derive(Debug, Clone, Default)]
pub struct CoiFormats {
    products: HashMap<String, ProductCoiFormat>,
}

impl CoiFormats {
    /// ISBT 128 only.
    pub fn isbt128_only() -> Self {
        Self::default()
    }

    /// ISBT 128 and the given product formats, each compiled once.
    pub fn new<'a>(
        configs: impl IntoIterator<Item = &'a ProductCoiFormatConfig>,
    ) -> Result<Self, ProductFormatError> {
        let mut products = HashMap::new();
        for config in configs {
            let format = ProductCoiFormat::new(config)?;
            if products.insert(config.product.clone(), format).is_some() {
                return Err(ProductFormatError::Duplicate {
                    product: config.product.clone(),
                });
            }
        }
        Ok(CoiFormats { products })
    }

    /// The format configured for `product`, if any.
    pub fn product(&self, product: &str) -> Option<&ProductCoiFormat> {
        self.products.get(product)
    }

    /// Parses `raw` as the COI of a therapy of `product`: as an ISBT 128 COI
    /// Identifier first, then, unless it carries the `&/` data identifier,
    /// in the product's own format if one is configured.
    pub fn parse(&self, product: Option<&str>, raw: &str) -> Result<Coi, CoiError> {
        let value = raw.trim();
        if value.is_empty() {
            return Err(CoiError::Empty);
        }
        let isbt128 = match Isbt128Coi::parse(value) {
            Ok(coi) => return Ok(coi.to_coi()),
            Err(e) => e,
        };
        let format = match product.and_then(|p| self.products.get(p)) {
            Some(format) if !value.starts_with(isbt128_coi::DATA_IDENTIFIER) => format,
            _ => return Err(CoiError::Isbt128(isbt128)),
        };
        match format.validate(value) {
            Ok(canonical) => Ok(Coi(canonical.to_owned())),
            Err(product) => Err(CoiError::NoFormat { isbt128, product }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::mod37_2;
    use crate::identity::product::CheckSystem;
    use proptest::prelude::*;

    const ISBT: &str = "CHA999924AB12C3";

    fn formats() -> CoiFormats {
        CoiFormats::new(&[
            ProductCoiFormatConfig {
                product: "R240".into(),
                pattern: "R240-[0-9]{8}-[0-9A-Z*]".into(),
                check: Some(CheckSystem::Mod37_2),
            },
            ProductCoiFormatConfig {
                product: "K9".into(),
                pattern: "K9[0-9]{6}".into(),
                check: None,
            },
        ])
        .unwrap()
    }

    fn r240(digits: &str) -> String {
        let k = mod37_2::check_character(&format!("R240{digits}")).unwrap();
        format!("R240-{digits}-{k}")
    }

    #[test]
    fn isbt128_is_always_accepted() {
        let formats = formats();
        for product in [None, Some("R240"), Some("K9"), Some("unknown")] {
            for raw in [ISBT, "&/CHA999924AB12C3", " &/CHA999924AB12C3 "] {
                let coi = formats.parse(product, raw).unwrap();
                assert_eq!(coi.as_str(), ISBT);
                assert_eq!(coi.kind(), CoiKind::Isbt128);
            }
        }
        assert!(CoiFormats::isbt128_only().parse(None, ISBT).is_ok());
    }

    #[test]
    fn product_format_applies_to_its_product_only() {
        let formats = formats();
        let value = r240("12345678");
        let coi = formats.parse(Some("R240"), &format!(" {value}\n")).unwrap();
        assert_eq!(coi.as_str(), value);
        assert_eq!(coi.kind(), CoiKind::ProductSpecific);
        assert_eq!(
            formats.parse(Some("K9"), "K9123456").unwrap().as_str(),
            "K9123456"
        );
        // Another product's format, or none, is not consulted.
        assert!(matches!(
            formats.parse(Some("K9"), &value),
            Err(CoiError::NoFormat { .. })
        ));
        assert!(matches!(
            formats.parse(None, &value),
            Err(CoiError::Isbt128(_))
        ));
        assert!(matches!(
            formats.parse(Some("unknown"), &value),
            Err(CoiError::Isbt128(_))
        ));
    }

    #[test]
    fn refusals_explain_themselves() {
        let formats = formats();
        assert_eq!(formats.parse(Some("R240"), " \n"), Err(CoiError::Empty));
        let err = formats.parse(Some("R240"), "R240-12345678").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("product R240"), "{message}");
        assert!(message.contains("13 characters"), "{message}");
        // An explicit ISBT 128 data identifier is judged as ISBT 128 only.
        assert_eq!(
            formats.parse(Some("K9"), "&/K9123456"),
            Err(CoiError::Isbt128(Isbt128CoiError::Length { found: 8 }))
        );
        // R240-12345678's check character is J.
        assert_eq!(r240("12345678"), "R240-12345678-J");
        assert!(formats.parse(Some("R240"), "R240-12345678-J").is_ok());
        let wrong_k = formats.parse(Some("R240"), "R240-12345678-*").unwrap_err();
        assert!(matches!(
            wrong_k,
            CoiError::NoFormat {
                product: ProductCoiError::Check { .. },
                ..
            }
        ));
        assert_eq!(
            wrong_k.to_string(),
            "COI fails the check of the COI format of product R240: check character '*' does not \
             match the characters before it (ISO/IEC 7064 MOD 37-2), and is not an ISBT 128 Chain \
             of Identity Identifier either (position 1 (literal \"CH\"): 'R' is not allowed, \
             expected 'C')"
        );
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert_eq!(err.stage(), Stage::Identity);
    }

    #[test]
    fn duplicate_product_formats_are_refused() {
        let config = ProductCoiFormatConfig {
            product: "R240".into(),
            pattern: "x".into(),
            check: None,
        };
        assert!(matches!(
            CoiFormats::new([&config, &config]),
            Err(ProductFormatError::Duplicate { .. })
        ));
    }

    #[test]
    fn serde_is_a_plain_string() {
        let coi = formats().parse(None, "&/CHA999924AB12C3").unwrap();
        assert_eq!(serde_json::to_string(&coi).unwrap(), "\"CHA999924AB12C3\"");
        let back: Coi = serde_json::from_str("\"CHA999924AB12C3\"").unwrap();
        assert_eq!(back, coi);
        let product: Coi = serde_json::from_str("\"K9123456\"").unwrap();
        assert_eq!(product.kind(), CoiKind::ProductSpecific);
        for bad in [
            "\"\"",
            "\" CHA999924AB12C3\"",
            "\"&/CHA999924AB12C3\"",
            "\"a\\u0000b\"",
        ] {
            assert!(serde_json::from_str::<Coi>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn borrow_lets_maps_be_queried_by_str() {
        let mut seen = std::collections::HashSet::new();
        seen.insert(formats().parse(None, ISBT).unwrap());
        assert!(seen.contains(ISBT));
    }

    proptest! {
        #[test]
        fn generated_coi_parses_and_round_trips(
            content in "CH[A-NP-Z1-9][A-NP-Z0-9]{2}[0-9]{4}[A-Z0-9]{6}",
            digits in "[0-9]{8}",
            prefixed in any::<bool>(),
            pad in "[ \t\r\n]{0,2}",
        ) {
            let formats = formats();
            let isbt_raw = format!("{pad}{}{content}{pad}", if prefixed { "&/" } else { "" });
            let product_raw = format!("{pad}{}{pad}", r240(&digits));
            for (raw, kind) in [(isbt_raw, CoiKind::Isbt128), (product_raw, CoiKind::ProductSpecific)] {
                let coi = formats.parse(Some("R240"), &raw).unwrap();
                prop_assert_eq!(coi.kind(), kind);
                // Normalisation is idempotent.
                prop_assert_eq!(&formats.parse(Some("R240"), coi.as_str()).unwrap(), &coi);
                // And survives serialisation.
                let json = serde_json::to_string(&coi).unwrap();
                let back: Coi = serde_json::from_str(&json).unwrap();
                prop_assert_eq!(back.kind(), kind);
                prop_assert_eq!(back, coi);
            }
        }
    }
}
