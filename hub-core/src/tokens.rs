//! Partners' bearer tokens for HTTP intake (`/fhir`, `/b2mml`, `/lims`).
//!
//! Config keeps a token only as its SHA-256: a leaked config file does not
//! let anyone post. Each token is one partner's, and that partner is the
//! provenance of what it sends.

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// `{ partner = "EHR_A", sha256 = "…" }`: one partner's bearer token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub partner: String,
    /// `printf %s "$TOKEN" | sha256sum`.
    pub sha256: String,
}

/// The partner `token` belongs to. Compared as SHA-256 digests, every
/// configured one in constant time, so neither the tokens nor which one
/// nearly matched can be learnt from the timing.
pub fn partner_for_token<'a>(tokens: &'a [TokenConfig], token: &str) -> Option<&'a str> {
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    let mut found = None;
    for t in tokens {
        let same = t
            .sha256
            .to_ascii_lowercase()
            .bytes()
            .zip(digest.bytes())
            .fold(t.sha256.len() ^ digest.len(), |acc, (a, b)| {
                acc | usize::from(a ^ b)
            })
            == 0;
        if same && found.is_none() {
            found = Some(t.partner.as_str());
        }
    }
    found
}

/// What is wrong with `section.tokens`, for `cgthub check` and start-up.
pub fn check(section: &str, tokens: &[TokenConfig]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.push(format!(
                "{section}.tokens[{i}] (partner {:?}): sha256 must be 64 hex digits, the SHA-256 of the token",
                t.partner
            ));
        }
        if t.partner.trim().is_empty() {
            out.push(format!("{section}.tokens[{i}]: partner is empty"));
        }
    }
    out
}

/// The token of an `Authorization: Bearer …` header value.
pub fn bearer(header: &str) -> Option<&str> {
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_finds_its_partner_by_digest_and_bad_entries_are_named() {
        let tokens = vec![
            TokenConfig {
                partner: "MES_A".into(),
                // printf %s secret-a | sha256sum
                sha256: "FC5C2A3F4E6B2A6A8F1C5B5E2F5F4B1E5C8F1F7D2C3B4A5968778695A4B3C2D1".into(),
            },
            TokenConfig {
                partner: "LAB".into(),
                sha256: hex::encode(Sha256::digest(b"lab-token")),
            },
        ];
        assert_eq!(partner_for_token(&tokens, "lab-token"), Some("LAB"));
        assert_eq!(partner_for_token(&tokens, "lab-token "), None);
        assert_eq!(partner_for_token(&tokens, ""), None);
        assert!(check("b2mml", &tokens).is_empty());
        let bad = vec![TokenConfig {
            partner: " ".into(),
            sha256: "abc".into(),
        }];
        let errs = check("lims", &bad);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("lims.tokens[0]"), "{errs:?}");
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
