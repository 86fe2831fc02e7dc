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
//!
//! [courier.partners.dhl.poll]     # a courier that only answers GETs
//! url = "https://api-eu.dhl.com/track/shipments?trackingNumber={tracking}"
//! api_key_env = "CGTHUB_DHL_API_KEY"
//! api_key_header = "DHL-API-Key"
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[courier]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CourierConfig {
    /// Take webhooks at all (`POST /webhooks/courier/{partner}`) and poll
    /// the partners that have a `poll` section.
    pub enabled: bool,
    /// Larger bodies are refused with 413 (their first 4 KiB are kept with
    /// the reason); a larger poll response is skipped with a warning.
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
    /// How its webhooks are authenticated: `hmac` (default) or `bearer`.
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
    /// With `timestamp_header`: the most a signing time may be off the
    /// hub's clock, either way.
    pub max_skew_secs: u64,
    /// `auth = "bearer"`: SHA-256 (hex) of each token the partner may use.
    pub tokens_sha256: Vec<String>,
    /// `[courier.partners.NAME.poll]`: ask the partner's tracking API for
    /// each shipment too (for couriers that offer no webhooks, or as a
    /// safety net beside them). Absent: no polling.
    pub poll: Option<PollConfig>,
}

/// `[courier.partners.NAME.poll]`: the hub asks the partner's tracking API
/// about every tracking number the identity registry links to a therapy
/// for this carrier, every `interval_secs`, until the shipment is delivered
/// or `track_for_hours` have passed since the link. A response goes through
/// the partner's mapping like a webhook: a scan already taken (pushed, or
/// polled before) is a duplicate, never routed twice.
///
/// `ETag` and `Last-Modified` are kept in memory per tracking number and
/// sent back (`If-None-Match`, `If-Modified-Since`); after a restart the
/// first poll of each shipment fetches it whole (its scans are duplicates).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollConfig {
    /// The URL to GET for one shipment; `{tracking}` is replaced by the
    /// tracking number (percent-encoded), e.g.
    /// `https://api-eu.dhl.com/track/shipments?trackingNumber={tracking}`.
    /// Put secrets in headers (`api_key_env`), not here: the URL is kept
    /// as the origin of each message.
    pub url: String,
    /// Seconds from the start of one round of requests to the next.
    /// Default 300. At least 1; below 10 is meant for tests and local
    /// partners (`cgthub check` warns).
    #[serde(default = "PollConfig::default_interval")]
    pub interval_secs: u64,
    /// Static headers sent with every request (`Accept`, an account id…).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The environment variable holding the API key, read at start and sent
    /// in `api_key_header`. Unset or empty: requests go without it and
    /// `cgthub check` warns.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The header the API key goes in, e.g. `DHL-API-Key`; required with
    /// `api_key_env`.
    #[serde(default)]
    pub api_key_header: Option<String>,
    /// Per request, from connecting to the last byte. Default 10000.
    #[serde(default = "PollConfig::default_timeout")]
    pub timeout_ms: u64,
    /// A tracking number linked longer ago than this is no longer polled.
    /// Default 120 (five days).
    #[serde(default = "PollConfig::default_track_for")]
    pub track_for_hours: u64,
    /// Failed requests (errors, timeouts, 5xx, 429 without `Retry-After`)
    /// pause the partner's polling 1 s, 2 s, 4 s… with jitter, at most this
    /// long. A `Retry-After` on a 429 or 503 is honoured as given (up to a
    /// day). Default 3600.
    #[serde(default = "PollConfig::default_max_backoff")]
    pub max_backoff_secs: u64,
    /// The carrier whose tracking numbers are polled, as the registry links
    /// them (compared as lowercase letters and digits: "DHL" = "dhl").
    /// Default: the partner's name.
    #[serde(default)]
    pub carrier: Option<String>,
}

impl PollConfig {
    /// The lowest `interval_secs` `cgthub check` does not warn about.
    pub const RECOMMENDED_MIN_INTERVAL: u64 = 10;

    fn default_interval() -> u64 {
        300
    }
    fn default_timeout() -> u64 {
        10_000
    }
    fn default_track_for() -> u64 {
        120
    }
    fn default_max_backoff() -> u64 {
        3600
    }

    /// The carrier polled, normalised as registry keys hold it.
    pub fn authority(&self, partner: &str) -> String {
        hub_core::store::normalise_authority(self.carrier.as_deref().unwrap_or(partner))
    }

    /// The URL for one tracking number, percent-encoded.
    pub fn url_for(&self, tracking: &str) -> String {
        self.url.replace("{tracking}", &percent_encode(tracking))
    }

    /// Mistakes in this section, each starting with `at`.
    fn check(&self, at: &str, partner: &str, out: &mut Vec<String>) {
        if !self.url.contains("{tracking}") {
            out.push(format!(
                "{at}.url: no {{tracking}} in {:?} (where the tracking number goes)",
                self.url
            ));
        }
        match reqwest::Url::parse(&self.url_for("0")) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(u) => out.push(format!(
                "{at}.url: {:?} is not an http(s) URL with a host (scheme {:?})",
                self.url,
                u.scheme()
            )),
            Err(e) => out.push(format!("{at}.url: {:?} is not a URL: {e}", self.url)),
        }
        if self.interval_secs == 0 {
            out.push(format!(
                "{at}.interval_secs: at least 1 (10 or more outside tests)"
            ));
        }
        if self.timeout_ms < 100 {
            out.push(format!("{at}.timeout_ms: at least 100"));
        }
        if self.track_for_hours == 0 {
            out.push(format!("{at}.track_for_hours: at least 1"));
        }
        if self.max_backoff_secs == 0 {
            out.push(format!("{at}.max_backoff_secs: at least 1"));
        }
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                out.push(format!("{at}.headers: {name:?} is not a header name"));
            } else if reqwest::header::HeaderValue::from_str(value).is_err() {
                out.push(format!(
                    "{at}.headers.{name}: not a header value (visible ASCII)"
                ));
            }
        }
        match (&self.api_key_env, &self.api_key_header) {
            (Some(_), None) => out.push(format!(
                "{at}: api_key_env needs api_key_header (the header the key goes in)"
            )),
            (None, Some(_)) => out.push(format!(
                "{at}: api_key_header needs api_key_env (the variable holding the key)"
            )),
            (Some(var), Some(h)) => {
                if var.trim().is_empty() {
                    out.push(format!("{at}.api_key_env is empty"));
                }
                if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    out.push(format!("{at}.api_key_header: {h:?} is not a header name"));
                }
            }
            (None, None) => {}
        }
        if self.authority(partner).is_empty() {
            out.push(format!(
                "{at}.carrier: no letters or digits (the carrier as tracking numbers are linked)"
            ));
        }
    }

    fn warnings(&self, at: &str, env: &dyn Fn(&str) -> Option<String>, out: &mut Vec<String>) {
        if self.interval_secs > 0 && self.interval_secs < Self::RECOMMENDED_MIN_INTERVAL {
            out.push(format!(
                "{at}.interval_secs = {}: below {} is meant for tests and local partners",
                self.interval_secs,
                Self::RECOMMENDED_MIN_INTERVAL
            ));
        }
        if let Some(var) = &self.api_key_env {
            if env(var).is_none_or(|v| v.is_empty()) {
                out.push(format!(
                    "{at}: ${var} is not set: polls go without an API key (the partner will likely answer 401)"
                ));
            }
        }
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
            poll: None,
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
            if let Some(poll) = &p.poll {
                poll.check(&format!("{at}.poll"), name, &mut out);
            }
        }
        out
    }

    /// What an operator should know but the hub can start with: partners
    /// whose HMAC secret is not in the environment refuse every request;
    /// polls without their API key, or more often than every 10 s.
    pub fn warnings(&self, env: impl Fn(&str) -> Option<String>) -> Vec<String> {
        let mut out = Vec::new();
        for (name, p) in &self.partners {
            if let Some(poll) = &p.poll {
                poll.warnings(&format!("courier.partners.{name}.poll"), &env, &mut out);
            }
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

    const DHL_POLL: &str = r#"
[partners.dhl.poll]
url = "https://api-eu.dhl.com/track/shipments?trackingNumber={tracking}"
api_key_env = "CGTHUB_DHL_API_KEY"
api_key_header = "DHL-API-Key"
headers = { Accept = "application/json" }
"#;

    #[test]
    fn a_poll_section_with_its_defaults() {
        let c: CourierConfig = toml::from_str(DHL_POLL).unwrap();
        assert!(c.check().is_empty(), "{:?}", c.check());
        let p = c.partners["dhl"].poll.as_ref().unwrap();
        assert_eq!(p.interval_secs, 300);
        assert_eq!(p.timeout_ms, 10_000);
        assert_eq!(p.track_for_hours, 120);
        assert_eq!(p.max_backoff_secs, 3600);
        assert_eq!(p.headers["Accept"], "application/json");
        assert_eq!(p.authority("dhl"), "dhl");
        assert_eq!(
            p.url_for("JD 01/2"),
            "https://api-eu.dhl.com/track/shipments?trackingNumber=JD%2001%2F2"
        );
        // The key's variable unset: a warning, not an error.
        let w = c.warnings(|_| None);
        assert!(
            w.iter().any(|w| w
                == "courier.partners.dhl.poll: $CGTHUB_DHL_API_KEY is not set: polls go without an API key (the partner will likely answer 401)"),
            "{w:?}"
        );
        let w = c.warnings(|v| (v == "CGTHUB_DHL_API_KEY").then(|| "k".into()));
        assert!(!w.iter().any(|w| w.contains(".poll")), "{w:?}");
        // The default config polls nobody.
        assert!(CourierConfig::default()
            .partners
            .values()
            .all(|p| p.poll.is_none()));
        // A carrier other than the partner's name.
        let c: CourierConfig =
            toml::from_str("[partners.dhl-eu.poll]\nurl = \"http://127.0.0.1:9/t/{tracking}\"\ncarrier = \"DHL Express\"\n")
                .unwrap();
        assert!(c.check().is_empty(), "{:?}", c.check());
        assert_eq!(
            c.partners["dhl-eu"]
                .poll
                .as_ref()
                .unwrap()
                .authority("dhl-eu"),
            "dhlexpress"
        );
    }

    #[test]
    fn poll_mistakes_are_named() {
        let errors = |extra: &str| {
            let text = format!("[partners.dhl.poll]\n{extra}");
            toml::from_str::<CourierConfig>(&text)
                .unwrap_or_else(|e| panic!("{text}: {e}"))
                .check()
        };
        let url = "url = \"https://x.example/t/{tracking}\"\n";
        assert_eq!(
            errors("url = \"https://x.example/track\""),
            ["courier.partners.dhl.poll.url: no {tracking} in \"https://x.example/track\" (where the tracking number goes)"]
        );
        let e = errors("url = \"not a url {tracking}\"");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(
                "courier.partners.dhl.poll.url: \"not a url {tracking}\" is not a URL"
            ),
            "{e:?}"
        );
        assert_eq!(
            errors("url = \"ftp://x.example/{tracking}\""),
            ["courier.partners.dhl.poll.url: \"ftp://x.example/{tracking}\" is not an http(s) URL with a host (scheme \"ftp\")"]
        );
        assert_eq!(
            errors(&format!("{url}interval_secs = 0")),
            ["courier.partners.dhl.poll.interval_secs: at least 1 (10 or more outside tests)"]
        );
        assert_eq!(
            errors(&format!("{url}api_key_env = \"K\"")),
            ["courier.partners.dhl.poll: api_key_env needs api_key_header (the header the key goes in)"]
        );
        assert_eq!(
            errors(&format!("{url}headers = {{ \"a b\" = \"x\" }}")),
            ["courier.partners.dhl.poll.headers: \"a b\" is not a header name"]
        );
        assert_eq!(
            errors(&format!(
                "{url}timeout_ms = 0\ntrack_for_hours = 0\nmax_backoff_secs = 0"
            )),
            [
                "courier.partners.dhl.poll.timeout_ms: at least 100",
                "courier.partners.dhl.poll.track_for_hours: at least 1",
                "courier.partners.dhl.poll.max_backoff_secs: at least 1",
            ]
        );
        // A short interval is allowed (tests, local partners) with a warning.
        let c: CourierConfig =
            toml::from_str(&format!("[partners.dhl.poll]\n{url}interval_secs = 1")).unwrap();
        assert!(c.check().is_empty());
        assert!(
            c.warnings(|_| None).iter().any(|w| w
                == "courier.partners.dhl.poll.interval_secs = 1: below 10 is meant for tests and local partners"),
            "{:?}",
            c.warnings(|_| None)
        );
        // No url, an unknown key: the config does not parse.
        assert!(
            toml::from_str::<CourierConfig>("[partners.dhl.poll]\ninterval_secs = 60").is_err()
        );
        assert!(
            toml::from_str::<CourierConfig>(&format!("[partners.dhl.poll]\n{url}every = 1"))
                .is_err()
        );
    }
}
