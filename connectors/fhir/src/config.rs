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

/// `{ partner = "EHR_A", sha256 = "…" }`: one partner's bearer token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub partner: String,
    /// `printf %s "$TOKEN" | sha256sum`.
    pub sha256: String,
}

impl FhirConfig {
    /// Problems an operator must fix before the hub starts.
    pub fn check(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, t) in self.tokens.iter().enumerate() {
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.push(format!(
                    "fhir.tokens[{i}] (partner {:?}): sha256 must be 64 hex digits, the SHA-256 of the token",
                    t.partner
                ));
            }
            if t.partner.trim().is_empty() {
                out.push(format!("fhir.tokens[{i}]: partner is empty"));
            }
        }
        if self.max_body_bytes < 1024 {
            out.push("fhir.max_body_bytes: at least 1024".into());
        }
        out
    }
}
