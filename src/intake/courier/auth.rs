//! Is a webhook request really the partner's? HMAC-SHA256 signatures over
//! the raw body (optionally with a signed timestamp against replays), or a
//! bearer token. Pure: the caller passes the secret and the clock.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::config::{AuthKind, CourierPartner};

/// Why a request was refused (answered 401, kept with `code` and `reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub reason: String,
}

fn refuse(code: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal {
        code,
        reason: reason.into(),
    }
}

/// Checks one request. `secret` is the partner's HMAC secret (None when its
/// environment variable is not set); `now` is Unix seconds.
pub fn verify(
    partner: &str,
    cfg: &CourierPartner,
    secret: Option<&[u8]>,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), Refusal> {
    match cfg.auth {
        AuthKind::Bearer => bearer(cfg, headers),
        AuthKind::Hmac => {
            let Some(secret) = secret.filter(|s| !s.is_empty()) else {
                return Err(refuse(
                    "no_secret",
                    format!(
                        "this hub has no secret for {partner} (${} is not set): every request is refused",
                        cfg.secret_var(partner)
                    ),
                ));
            };
            let timestamp = match &cfg.timestamp_header {
                None => None,
                Some(h) => Some(timestamp(h, cfg.max_skew_secs, headers, now)?),
            };
            signature(cfg, secret, timestamp, headers, body)
        }
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The signed timestamp, within `skew` seconds of `now`.
fn timestamp<'h>(
    name: &str,
    skew: u64,
    headers: &'h HeaderMap,
    now: i64,
) -> Result<&'h str, Refusal> {
    let Some(text) = header(headers, name) else {
        return Err(refuse(
            "missing_timestamp",
            format!("header {name} is required"),
        ));
    };
    let Ok(t) = text.parse::<i64>() else {
        return Err(refuse(
            "bad_timestamp",
            format!("header {name} must be Unix seconds, not {text:?}"),
        ));
    };
    let off = now.saturating_sub(t);
    if off.unsigned_abs() > skew {
        return Err(refuse(
            "stale_timestamp",
            format!(
                "{name} is {} s {} the hub's clock (at most {skew} s): a replay or a wrong clock",
                off.unsigned_abs(),
                if off > 0 { "behind" } else { "ahead of" }
            ),
        ));
    }
    Ok(text)
}

fn signature(
    cfg: &CourierPartner,
    secret: &[u8],
    timestamp: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Refusal> {
    let name = &cfg.signature_header;
    let Some(text) = header(headers, name) else {
        return Err(refuse(
            "missing_signature",
            format!("header {name}: sha256=<hex HMAC-SHA256 of the body> is required"),
        ));
    };
    let hex_sig = text.strip_prefix("sha256=").unwrap_or(text);
    let Ok(given) = hex::decode(hex_sig) else {
        return Err(refuse(
            "bad_signature",
            format!("header {name} is not sha256=<hex>"),
        ));
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    if let Some(t) = timestamp {
        mac.update(t.as_bytes());
        mac.update(b".");
    }
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&given).map_err(|_| {
        refuse(
            "bad_signature",
            format!(
                "the {name} signature does not match the body{}",
                if timestamp.is_some() {
                    " and timestamp"
                } else {
                    ""
                }
            ),
        )
    })
}

fn bearer(cfg: &CourierPartner, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(token) = header(headers, "authorization").and_then(hub_core::tokens::bearer) else {
        return Err(refuse(
            "missing_token",
            "a bearer token is required (Authorization: Bearer …)",
        ));
    };
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    // Every configured digest is compared, each in constant time.
    let known = cfg.tokens_sha256.iter().fold(false, |hit, t| {
        let t = t.to_ascii_lowercase();
        let same = t.len() == digest.len()
            && t.bytes()
                .zip(digest.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        hit | same
    });
    if known {
        Ok(())
    } else {
        Err(refuse(
            "bad_token",
            "the bearer token is not this partner's",
        ))
    }
}

/// `sha256=<hex>` of `body` under `secret`, as a partner signs (tests, bench).
pub fn sign(secret: &[u8], timestamp: Option<&str>, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    if let Some(t) = timestamp {
        mac.update(t.as_bytes());
        mac.update(b".");
    }
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const BODY: &[u8] = br#"{"trackResponse":{}}"#;

    #[test]
    fn a_github_style_signature_is_checked_against_the_raw_body() {
        let cfg = CourierPartner::default();
        // `printf %s '{"trackResponse":{}}' | openssl dgst -sha256 -hmac s3cret`
        let computed = "sha256=f80030e456f219e3adde27aebe51cafbcb70174a911faf4f17cf1116f23cc1a4";
        assert_eq!(sign(b"s3cret", None, BODY), computed);
        let ok = headers(&[("x-hub-signature-256", computed)]);
        assert_eq!(verify("ups", &cfg, Some(b"s3cret"), &ok, BODY, 0), Ok(()));

        let tampered = verify("ups", &cfg, Some(b"s3cret"), &ok, b"{}", 0).unwrap_err();
        assert_eq!(tampered.code, "bad_signature");
        let other_key = verify("ups", &cfg, Some(b"other"), &ok, BODY, 0).unwrap_err();
        assert_eq!(other_key.code, "bad_signature");
        let none = verify("ups", &cfg, Some(b"s3cret"), &HeaderMap::new(), BODY, 0).unwrap_err();
        assert_eq!(none.code, "missing_signature");
        let garbage = headers(&[("x-hub-signature-256", "sha256=zz")]);
        assert_eq!(
            verify("ups", &cfg, Some(b"s3cret"), &garbage, BODY, 0)
                .unwrap_err()
                .code,
            "bad_signature"
        );
        let unset = verify("ups", &cfg, None, &ok, BODY, 0).unwrap_err();
        assert_eq!(unset.code, "no_secret");
        assert!(
            unset.reason.contains("$CGTHUB_SECRET_UPS"),
            "{}",
            unset.reason
        );
    }

    #[test]
    fn openssl_agrees_with_our_signature() {
        // `printf %s 'hello' | openssl dgst -sha256 -hmac key`
        assert_eq!(
            sign(b"key", None, b"hello"),
            "sha256=9307b3b915efb5171ff14d8cb55fbcc798c6c0ef1456d66ded1a6aa723a58b7b"
        );
    }

    #[test]
    fn a_signed_timestamp_outside_the_window_is_a_replay() {
        let cfg = CourierPartner {
            timestamp_header: Some("X-Hub-Timestamp".into()),
            ..CourierPartner::default()
        };
        let now = 1_800_000_000;
        let signed = |t: i64| {
            let ts = t.to_string();
            headers(&[
                ("x-hub-timestamp", &ts),
                ("x-hub-signature-256", &sign(b"k", Some(&ts), BODY)),
            ])
        };
        assert_eq!(
            verify("dhl", &cfg, Some(b"k"), &signed(now - 30), BODY, now),
            Ok(())
        );
        let old = verify("dhl", &cfg, Some(b"k"), &signed(now - 301), BODY, now).unwrap_err();
        assert_eq!(old.code, "stale_timestamp");
        assert!(old.reason.contains("301 s behind"), "{}", old.reason);
        let ahead = verify("dhl", &cfg, Some(b"k"), &signed(now + 900), BODY, now).unwrap_err();
        assert_eq!(ahead.code, "stale_timestamp");

        // The timestamp is signed: moving it forward breaks the signature.
        let mut moved = signed(now - 1000);
        moved.insert("x-hub-timestamp", HeaderValue::from(now));
        let e = verify("dhl", &cfg, Some(b"k"), &moved, BODY, now).unwrap_err();
        assert_eq!(e.code, "bad_signature");
        let e = verify("dhl", &cfg, Some(b"k"), &headers(&[]), BODY, now).unwrap_err();
        assert_eq!(e.code, "missing_timestamp");
    }

    #[test]
    fn bearer_tokens_are_known_by_their_digest() {
        let cfg = CourierPartner {
            auth: AuthKind::Bearer,
            // printf %s 'logger-token' | sha256sum
            tokens_sha256: vec![hex::encode(Sha256::digest(b"logger-token"))],
            ..CourierPartner::default()
        };
        let ok = headers(&[("authorization", "Bearer logger-token")]);
        assert_eq!(verify("tive", &cfg, None, &ok, BODY, 0), Ok(()));
        let bad = headers(&[("authorization", "Bearer nope")]);
        assert_eq!(
            verify("tive", &cfg, None, &bad, BODY, 0).unwrap_err().code,
            "bad_token"
        );
        assert_eq!(
            verify("tive", &cfg, None, &HeaderMap::new(), BODY, 0)
                .unwrap_err()
                .code,
            "missing_token"
        );
    }
}
