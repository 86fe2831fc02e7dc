//! A shipment as its partners report it, for the courier contract tests:
//! the EHR's order and shipping Task over FHIR (built from the FHIR mapping
//! fixtures), and DHL's signed tracking pushes (built from DHL's own
//! Unified Tracking sample, a copy of the corpus file).

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::{http_request, repo, HttpAnswer, Hub};

/// The EHR's bearer token; its SHA-256 is in [`FHIR_TOKENS`].
pub const EHR_TOKEN: &str = "ehr-a-secret-token";
/// `[fhir]` with the EHR's token (`printf %s ehr-a-secret-token | sha256sum`).
pub const FHIR_TOKENS: &str = "[fhir]\ntokens = [{ partner = \"EHR_A\", sha256 = \"8389795806740c45b455568cac6fd33954603353d47f956f31ddcf7dca300479\" }]\n";
/// The therapy of the FHIR order fixture.
pub const COI: &str = "CHW000126000007";

/// RFC 3339 to the second, as the hub writes times.
pub fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `sha256=<hex HMAC-SHA256>` of `body` (after `{timestamp}.` when given).
pub fn sign(secret: &str, timestamp: Option<&str>, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    if let Some(t) = timestamp {
        mac.update(format!("{t}.").as_bytes());
    }
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// POST that must get an HTTP answer (else fails with the hub's log).
pub fn post(hub: &Hub, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpAnswer {
    let a = http_request(hub.http, "POST", path, headers, body)
        .unwrap_or_else(|e| panic!("POST {path}: {e}\n{}", hub.log()));
    assert_ne!(a.0, 0, "POST {path}: no answer\n{}", hub.log());
    a
}

/// A webhook as a courier sends it: JSON, signed with `secret`; the
/// status and the JSON answer.
pub fn webhook(hub: &Hub, partner: &str, secret: &str, body: &Value) -> (u16, Value) {
    let raw = body.to_string();
    let sig = sign(secret, None, raw.as_bytes());
    let (status, _, text) = post(
        hub,
        &format!("/webhooks/courier/{partner}"),
        &[
            ("Content-Type", "application/json"),
            ("X-Hub-Signature-256", &sig),
        ],
        raw.as_bytes(),
    );
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {text}: {e}"));
    (status, v)
}

/// A FHIR POST with the EHR's token.
pub fn fhir(hub: &Hub, path: &str, body: &Value) -> (u16, String) {
    let auth = format!("Bearer {EHR_TOKEN}");
    let (status, _, text) = post(
        hub,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/fhir+json"),
        ],
        body.to_string().as_bytes(),
    );
    (status, text)
}

/// A JSON fixture under `mappings/` (corpus copies, with their SOURCES.md).
pub fn mapping_fixture(rel: &str) -> Value {
    let p = repo().join("mappings").join(rel);
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The order bundle of the FHIR mapping fixtures (therapy [`COI`]),
/// collected at `collected`.
pub fn order_bundle(collected: DateTime<Utc>) -> Value {
    let mut b = mapping_fixture("fhir/fixtures/transaction_order_specimen.json");
    b["entry"][2]["resource"]["collection"]["collectedDateTime"] = json!(at(collected));
    b
}

/// The shipping Task of the FHIR mapping fixtures for [`COI`], carrier
/// "DHL": links `tracking` to the therapy, and is the pickup handoff.
pub fn shipped_task(tracking: &str, start: DateTime<Utc>) -> Value {
    let mut t = mapping_fixture("fhir/fixtures/task_shipped.json");
    t["identifier"][0]["value"] = json!(COI);
    t["executionPeriod"]["start"] = json!(at(start));
    t["lastModified"] = json!(at(start));
    t["output"][0]["valueString"] = json!(tracking);
    t["output"][1]["valueString"] = json!("DHL");
    t
}

/// DHL's Unified Tracking sample with shipment id `tracking` (a number,
/// as in DHL's sample), `events` as `(status code, time)` (newest first,
/// as DHL lists them; times without offset, UTC) and an ETA.
pub fn dhl(tracking: &str, events: &[(&str, DateTime<Utc>)], eta: DateTime<Utc>) -> Value {
    let mut d = mapping_fixture(
        "courier/fixtures/dhl_unified_track_shipments_response_spec_sample_purplship.json",
    );
    let s = &mut d["shipments"][0];
    s["id"] = json!(tracking.parse::<u64>().expect("a numeric DHL id"));
    s["estimatedTimeOfDelivery"] = json!(at(eta));
    let template = s["events"][0].clone();
    s["events"] = events
        .iter()
        .map(|(code, t)| {
            let mut e = template.clone();
            e["statusCode"] = json!(code);
            e["status"] = json!(code.to_uppercase());
            e["description"] = json!(format!("{code} scan"));
            e["timestamp"] = json!(t.format("%Y-%m-%dT%H:%M:%S").to_string());
            e
        })
        .collect();
    d
}
