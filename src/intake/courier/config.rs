//! `[courier]`: which couriers and logger vendors may post webhooks, and how
//! each one proves a request is its own.
//!
//! ```toml
//! [courier]
//! max_body_bytes = 1048576
//!
//! [courier.partners.ups]          # HMAC-SHA256 in X-Hub-Signature-256,
//!                                 # secret from $CGTHUB_SECRET_UPS
//! [courier.partners.tive]
//! auth = "bearer"
//! tokens_sha256 = ["…"]           # printf %s "$TOKEN" | sha256sum
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[courier]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CourierConfig {
    /// Take webhooks at all (`POST /webhooks/courier/{partner}`).
    pub enabled: bool,
    /// Larger bodies are refused with 413 (their first 4 KiB are kept with
    /// the reason).
    pub max_body_bytes: u64,
    /// The partners that may post, by the name in the URL.
    pub partners: BTreeMap<String, CourierPartner>,
}

impl Default for CourierConfig {
    fn default() -> Self {
        CourierConfig {
            enabled: true,
            max_body_bytes: 1024 * 1024,
            partners: ["fedex", "ups", "dhl"]
                .into_iter()
                .map(|p| (p.to_string(), CourierPartner::default()))
                .collect(),
        }
    }
}

/// How a partner's requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// HMAC-SHA256 over the raw body (or `{timestamp}.{body}` when a
    /// timestamp header is configured), hex, in `signature_header`.
    Hmac,
    /// `Authorization: Bearer …`, one of `tokens_sha256`.
    Bearer,
}

/// `[courier.partners.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CourierPartner {
    pub auth: AuthKind,
    /// Where the signature is: `sha256=<hex>` (the prefix is optional).
    pub signature_header: String,
    /// The environment variable holding the HMAC secret. Default:
    /// `CGTHUB_SECRET_<PARTNER>` (upper case, `-` and `.` as `_`). Unset:
    /// every request is refused with 401 and `cgthub check` warns.
    pub secret_env: Option<String>,
    /// A header with the time the partner signed the request (Unix
    /// seconds). When set it is required, the signature covers
    /// `{timestamp}.{body}`, and a time further than `max_skew_secs` from
    /// the hub's clock is refused (a replayed request).
    pub timestamp_header: Option<String>,
    pub max_skew_secs: u64,
    /// `auth = "bearer"`: SHA-256 (hex) of each token the partner may use.
    pub tokens_sha256: Vec<String>,
}

impl Default for CourierPartner {
    fn default() -> Self {
        CourierPartner {
            auth: AuthKind::Hmac,
            signature_header: "X-Hub-Signature-256".into(),
            secret_env: None,
            timestamp_header: None,
            max_skew_secs: 300,
            tokens_sha256: Vec::new(),
        }
    }
}

impl CourierPartner {
    /// The environment variable the partner's HMAC secret is read from.
    pub fn secret_var(&self, partner: &str) -> String {
        self.secret_env.clone().unwrap_or_else(|| {
            let p: String = partner
                .chars()
                .map(|c| match c {
                    '-' | '.' => '_',
                    c => c.to_ascii_uppercase(),
                })
                .collect();
            format!("CGTHUB_SECRET_{p}")
        })
    }
}

impl CourierConfig {
    /// Mistakes that stop the hub from starting.
    pub fn check(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_body_bytes < 1024 {
            out.push("courier.max_body_bytes: at least 1024".into());
        }
        for (name, p) in &self.partners {
            let at = format!("courier.partners.{name}");
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            {
                out.push(format!(
                    "{at}: the name is used in the URL: letters, digits, '_', '-', '.'"
                ));
            }
            match p.auth {
                AuthKind::Hmac => {
                    if p.signature_header.trim().is_empty() {
                        out.push(format!("{at}.signature_header is empty"));
                    }
                    if !p.tokens_sha256.is_empty() {
                        out.push(format!(
                            "{at}.tokens_sha256 is set but auth = \"hmac\" (set auth = \"bearer\")"
                        ));
                    }
                }
                AuthKind::Bearer => {
                    if p.tokens_sha256.is_empty() {
                        out.push(format!(
                            "{at}: auth = \"bearer\" needs tokens_sha256 (SHA-256 of each token)"
                        ));
                    }
                    for (i, t) in p.tokens_sha256.iter().enumerate() {
                        if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                            out.push(format!("{at}.tokens_sha256[{i}]: 64 hex digits"));
                        }
                    }
                }
            }
            if p.timestamp_header.is_some() && p.max_skew_secs == 0 {
                out.push(format!("{at}.max_skew_secs: at least 1"));
            }
        }
        out
    }

    /// What an operator should know but the hub can start with: partners
    /// whose HMAC secret is not in the environment refuse every request.
    pub fn warnings(&self, env: impl Fn(&str) -> Option<String>) -> Vec<String> {
        let mut out = Vec::new();
        for (name, p) in &self.partners {
            if p.auth == AuthKind::Hmac {
                let var = p.secret_var(name);
                if env(&var).is_none_or(|v| v.is_empty()) {
                    out.push(format!(
                        "courier.partners.{name}: ${var} is not set: every webhook from {name} will be refused (401)"
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_ships_fedex_ups_dhl_on_hmac_with_secrets_from_the_environment() {
        let c = CourierConfig::default();
        assert_eq!(
            c.partners.keys().map(String::as_str).collect::<Vec<_>>(),
            ["dhl", "fedex", "ups"]
        );
        assert!(c.check().is_empty());
        let ups = &c.partners["ups"];
        assert_eq!(ups.auth, AuthKind::Hmac);
        assert_eq!(ups.signature_header, "X-Hub-Signature-256");
        assert_eq!(ups.secret_var("ups"), "CGTHUB_SECRET_UPS");
        assert_eq!(ups.secret_var("cold-box.eu"), "CGTHUB_SECRET_COLD_BOX_EU");

        let w = c.warnings(|v| (v == "CGTHUB_SECRET_UPS").then(|| "s".to_string()));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("$CGTHUB_SECRET_DHL is not set"), "{w:?}");
    }

    #[test]
    fn mistakes_are_named() {
        let c: CourierConfig = toml::from_str(
            "[partners.tive]\nauth = \"bearer\"\n[partners.\"a b\"]\ntokens_sha256 = [\"00\"]\n",
        )
        .unwrap();
        let errs = c.check();
        assert!(
            errs.iter()
                .any(|e| e.contains("tive: auth = \"bearer\" needs tokens_sha256")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("\"a b\"") || e.contains("a b: the name")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("tokens_sha256 is set but auth = \"hmac\"")),
            "{errs:?}"
        );
        assert!(toml::from_str::<CourierConfig>("[partners.x]\nsecret = \"no\"").is_err());
    }
}
