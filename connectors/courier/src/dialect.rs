//! A courier mapping's `[dialect]`: which payloads it is for.
//!
//! ```toml
//! [dialect]
//! when = "/output/completeTrackResults"   # must exist in the payload
//! ```
//!
//! Courier payloads carry no message type: a FedEx track response, a UPS
//! one and a logger's webhook are told apart by their shape. `when` is an
//! absolute path (wildcards and filters allowed) that must select something
//! (even `null`) for the mapping to apply. A mapping without `when` applies
//! to every payload of its partners.

use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::path::{parse, CourierPath};

/// Format-specific settings of a courier mapping.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourierDialect {
    /// A path that must exist in the payload for the mapping to apply.
    #[serde(default)]
    pub when: Option<When>,
}

/// A compiled `when`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct When {
    /// As written, for messages.
    pub text: String,
    pub path: CourierPath,
}

impl<'de> Deserialize<'de> for When {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let path = parse(&text).map_err(|e| de::Error::custom(format!("when: {e}")))?;
        if !path.is_absolute() || path.key_of {
            return Err(de::Error::custom(format!(
                "when = {text:?}: needs a path from the document root (\"/…\")"
            )));
        }
        Ok(When { text, path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialect(t: &str) -> Result<CourierDialect, String> {
        toml::from_str::<CourierDialect>(t).map_err(|e| e.message().to_string())
    }

    #[test]
    fn when_is_an_absolute_path_checked_when_loaded() {
        let d = dialect("when = \"/output/completeTrackResults\"").unwrap();
        assert_eq!(d.when.unwrap().text, "/output/completeTrackResults");
        assert!(dialect("").unwrap().when.is_none());
        let e = dialect("when = \"0/output\"").unwrap_err();
        assert!(e.contains("from the document root"), "{e}");
        let e = dialect("when = \"/a/*[b=]\"").unwrap_err();
        assert!(e.contains("when: ") && e.contains("needs a value"), "{e}");
        let e = dialect("wen = \"/a\"").unwrap_err();
        assert!(e.contains("wen"), "{e}");
    }
}
