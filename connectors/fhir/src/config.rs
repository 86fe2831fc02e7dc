//! `[fhir]`: the FHIR R4 endpoint's settings.

use serde::Deserialize;

/// `[fhir]` in the hub's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FhirConfig {
    /// Serve `/fhir` on the HTTP address.
    pub enabled: bool,
    /// Larger bodies are refused with 413 (their first 4 KiB are kept).
    pub max_body_bytes: usize,
    /// Who may post: each token (kept as its SHA-256, lowercase hex) is one
    /// partner's, and that partner is the provenance of what it sends.
    /// Empty: `/fhir` refuses every write (401); `metadata` stays open.
    pub tokens: Vec<TokenConfig>,
}

impl Default for FhirConfig {
    fn default() -> Self {
        FhirConfig {
            enabled: true,
            max_body_bytes: 4 * 1024 * 1024,
            tokens: Vec::new(),
        }
    }
}

pub use hub_core::tokens::TokenConfig;

impl FhirConfig {
    /// Problems an operator must fix before the hub starts.
    pub fn check(&self) -> Vec<String> {
        let mut out = hub_core::tokens::check("fhir", &self.tokens);
        if self.max_body_bytes < 1024 {
            out.push("fhir.max_body_bytes: at least 1024".into());
        }
        out
    }
}
