//! The courier connector: JSON → the mapping for its shape → events (pure).
//! The webhook endpoint belongs to the hub's binary; it calls
//! [`Connector::translate`] and answers with [`crate::http_status`].

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use hub_core::error::Stage;
use hub_core::event::Source;
use hub_core::mapping::{LoadError, MapContext, Mapping, MappingSet};
use hub_core::sink::BoxFuture;
use hub_core::{Connector, ConnectorError, Decoded, Hub, Inbound, Problem, TherapyEvent};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::document::CourierDocument;
use crate::error::codes;
use crate::path::Courier;

/// Connector kind, as in `mappings/courier/` and `source.connector`.
pub const KIND: &str = "courier";
/// MIME type stored with raw payloads.
pub const CONTENT_TYPE: &str = "application/json";
/// Partner name when the caller does not say who sent the payload.
pub const UNKNOWN_PARTNER: &str = "unknown";

/// How many top-level keys a `no_mapping` reason lists.
const KEYS_SHOWN: usize = 12;

/// Courier tracking responses and temperature-logger webhooks.
#[derive(Debug)]
pub struct CourierConnector {
    mappings: MappingSet<Courier>,
}

impl CourierConnector {
    /// Loads the mappings under `dir` (`mappings/courier`), refusing
    /// mappings whose choice would depend on file order.
    pub fn load(dir: &Path) -> Result<Self, Vec<LoadError>> {
        let mappings = MappingSet::load_dir(dir)?;
        let errors = ambiguities(&mappings);
        if errors.is_empty() {
            Ok(CourierConnector { mappings })
        } else {
            Err(errors)
        }
    }

    pub fn mappings(&self) -> &MappingSet<Courier> {
        &self.mappings
    }

    /// The mapping for a partner's payload: those naming the partner, then
    /// those for `"*"`, in file-name order; the first whose `when` exists.
    pub fn select<'m>(
        &'m self,
        partner: &str,
        doc: &CourierDocument<'_>,
    ) -> Option<&'m Mapping<Courier>> {
        let named = self
            .mappings
            .iter()
            .filter(|m| m.partners.iter().any(|p| p == partner));
        let any = self
            .mappings
            .iter()
            .filter(|m| m.partners.iter().any(|p| p == "*"));
        named
            .chain(any)
            .find(|m| m.dialect.when.as_ref().is_none_or(|w| doc.exists(&w.path)))
    }

    /// Parses, picks the mapping and runs it.
    fn decode(&self, inbound: &Inbound) -> Decoded {
        let value: Value = match serde_json::from_slice(&inbound.payload) {
            Ok(v) => v,
            Err(e) => {
                return Decoded::Rejected(Problem::new(
                    Stage::Decode,
                    codes::MALFORMED_JSON,
                    format!(
                        "not valid JSON at line {}, column {}: {}",
                        e.line(),
                        e.column(),
                        serde_reason(&e)
                    ),
                ))
            }
        };
        if !(value.is_object() || value.is_array()) {
            return Decoded::Rejected(Problem::new(
                Stage::Decode,
                codes::UNEXPECTED_JSON,
                format!(
                    "the payload is a JSON {}, not an object or array",
                    json_type(&value)
                ),
            ));
        }
        let doc = CourierDocument::new(&value);
        let Some(mapping) = self.select(&inbound.partner, &doc) else {
            return Decoded::Rejected(Problem::new(
                Stage::Map,
                codes::NO_MAPPING,
                self.no_mapping(&inbound.partner, &value),
            ));
        };
        let doc = doc.with_message_type(mapping.message_types.first().map(String::as_str));
        let source = Source {
            connector: KIND.to_string(),
            partner: inbound.partner.clone(),
            message_id: inbound.message_id.clone(),
            payload_sha256: inbound.sha256.clone(),
            entry: None,
        };
        let mut cx = MapContext {
            source: &source,
            recorded_at: inbound.received_at,
            new_id: &mut TherapyEvent::new_id,
        };
        match mapping.run(&doc, &mut cx) {
            Ok(events) => Decoded::Events(events),
            Err(e) => Decoded::Failed(Problem::new(Stage::Map, e.kind.code(), e.to_string())),
        }
    }

    /// Why nothing applies: the partner, what the payload looks like, and
    /// the shapes its mappings expect.
    fn no_mapping(&self, partner: &str, value: &Value) -> String {
        let shape = match value {
            Value::Object(m) if m.is_empty() => "an empty object".to_string(),
            Value::Object(m) => {
                // Sorted: the same text whether or not serde_json keeps
                // document order (`preserve_order` is on in the binary).
                let mut names: Vec<&String> = m.keys().collect();
                names.sort();
                let mut keys: Vec<String> = names
                    .into_iter()
                    .take(KEYS_SHOWN)
                    .map(|k| format!("{k:?}"))
                    .collect();
                if m.len() > KEYS_SHOWN {
                    keys.push(format!("… ({} in all)", m.len()));
                }
                format!("top-level keys {}", keys.join(", "))
            }
            Value::Array(a) => format!("a top-level array of {} item(s)", a.len()),
            other => format!("a JSON {}", json_type(other)),
        };
        let tried: Vec<String> = self
            .mappings
            .iter()
            .filter(|m| m.partners.iter().any(|p| p == partner || p == "*"))
            .map(|m| match &m.dialect.when {
                Some(w) => format!("{} (when {})", m.name, w.text),
                None => m.name.clone(),
            })
            .collect();
        let tried = if tried.is_empty() {
            "there is none for this partner".to_string()
        } else {
            format!("tried {}", tried.join(", "))
        };
        format!(
            "no courier mapping for partner {partner:?} matches a payload with {shape}; {tried}"
        )
    }
}

/// serde_json's message without its trailing " at line L column C".
fn serde_reason(e: &serde_json::Error) -> String {
    let full = e.to_string();
    match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Mappings whose turn would depend on file order: for one partner, two
/// with the same `when`, or any after one without `when` (it takes every
/// payload first).
fn ambiguities(set: &MappingSet<Courier>) -> Vec<LoadError> {
    let all: Vec<&Mapping<Courier>> = set.iter().collect();
    let mut errors = Vec::new();
    for (i, later) in all.iter().enumerate() {
        'earlier: for earlier in &all[..i] {
            for p in &later.partners {
                if !earlier.partners.contains(p) {
                    continue;
                }
                let when = |m: &Mapping<Courier>| m.dialect.when.as_ref().map(|w| w.text.clone());
                let message = match (when(earlier), when(later)) {
                    (None, _) => format!(
                        "never applies to partner {p:?}: {} has no `when` and takes every \
                         payload of that partner first",
                        earlier.file.display()
                    ),
                    (Some(a), Some(b)) if a == b => format!(
                        "partner {p:?} already has a mapping for when = {a:?} ({}): which \
                         one applies must never depend on file order",
                        earlier.file.display()
                    ),
                    _ => continue,
                };
                errors.push(LoadError::file(&later.file, message));
                break 'earlier;
            }
        }
    }
    errors
}

impl Connector for CourierConnector {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// The partner's own message id is none: a track response holds many
    /// scans, and the intake assigns their ids itself.
    fn translate(&self, payload: Bytes, origin: &str, partner: Option<&str>) -> (Inbound, Decoded) {
        let name = partner.unwrap_or(UNKNOWN_PARTNER);
        let inbound = Inbound::new(KIND, name, CONTENT_TYPE, None, payload, origin);
        let decoded = self.decode(&inbound);
        (inbound, decoded)
    }

    /// The webhook endpoint is served by the hub; nothing to run.
    fn run(
        self: Arc<Self>,
        _hub: Hub,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ConnectorError>> {
        Box::pin(async move {
            shutdown.cancelled().await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_status;

    fn dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/courier")
    }

    fn connector() -> CourierConnector {
        CourierConnector::load(&dir()).expect("shipped mappings load")
    }

    fn translate(payload: &[u8], partner: Option<&str>) -> (Inbound, Decoded) {
        connector().translate(Bytes::copy_from_slice(payload), "test", partner)
    }

    fn refused(payload: &[u8], partner: Option<&str>) -> Problem {
        match translate(payload, partner).1 {
            Decoded::Rejected(p) => p,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn not_json_is_refused_with_line_and_column() {
        let p = refused(b"{\n  \"output\": {\n    \"x\": 1,,\n}", Some("fedex"));
        assert_eq!(p.code, codes::MALFORMED_JSON);
        assert_eq!(p.stage, Stage::Decode);
        assert!(p.reason.contains("line 3, column"), "{}", p.reason);
        assert_eq!(http_status(&p), 400);
        let p = refused(b"", None);
        assert_eq!(p.code, codes::MALFORMED_JSON);
        assert!(p.reason.contains("EOF"), "{}", p.reason);
        let p = refused(b"<xml/>", None);
        assert!(p.reason.contains("line 1, column 1"), "{}", p.reason);
        for scalar in [&b"\"text\""[..], b"42", b"null", b"true"] {
            let p = refused(scalar, Some("fedex"));
            assert_eq!(p.code, codes::UNEXPECTED_JSON, "{p:?}");
            assert_eq!(http_status(&p), 422);
        }
    }

    #[test]
    fn the_dhl_problem_json_has_no_mapping_and_says_why() {
        let bytes = std::fs::read(
            dir().join("fixtures/dhl_unified_track_error_404_problem_json_purplship.json"),
        )
        .unwrap();
        let (inbound, decoded) = translate(&bytes, Some("dhl"));
        assert_eq!(inbound.partner, "dhl");
        assert_eq!(inbound.message_id, None);
        assert_eq!(inbound.content_type, CONTENT_TYPE);
        let Decoded::Rejected(p) = decoded else {
            panic!("expected a refusal, got {decoded:?}")
        };
        assert_eq!(p.code, codes::NO_MAPPING);
        assert_eq!(http_status(&p), 422);
        for part in [
            "partner \"dhl\"",
            "top-level keys \"detail\", \"instance\", \"status\", \"title\"",
            "dhl_track (when /shipments)",
            "logger (when /logData)",
        ] {
            assert!(p.reason.contains(part), "{part}: {}", p.reason);
        }
        // An array, and an unknown partner.
        let p = refused(b"[1, 2]", None);
        assert!(
            p.reason.contains("partner \"unknown\"") && p.reason.contains("array of 2 item(s)"),
            "{}",
            p.reason
        );
    }

    #[test]
    fn the_partner_picks_the_mapping_and_the_shape_must_match() {
        let fedex = std::fs::read(
            dir().join("fixtures/fedex_track_v1_trackingnumbers_response_omniship_mock.json"),
        )
        .unwrap();
        let Decoded::Events(ev) = translate(&fedex, Some("fedex")).1 else {
            panic!("fedex maps")
        };
        assert!(!ev.is_empty());
        assert_eq!(ev[0].source.connector, KIND);
        assert_eq!(ev[0].source.partner, "fedex");
        assert_eq!(ev[0].source.message_id, None);
        // The same payload from UPS: UPS's mapping wants another shape.
        let p = refused(&fedex, Some("ups"));
        assert_eq!(p.code, codes::NO_MAPPING);
        assert!(
            p.reason.contains("ups_track (when /trackResponse)"),
            "{}",
            p.reason
        );
        // The logger mapping is for every partner.
        let logger = br#"{"deviceId": "L-1", "logData": [{"timestamp": "2026-01-01T00:00:00Z", "temperature": -150.5}]}"#;
        for partner in [None, Some("fedex"), Some("acme-logistics")] {
            let Decoded::Events(ev) = translate(logger, partner).1 else {
                panic!("logger maps for {partner:?}")
            };
            assert_eq!(ev[0].kind().as_str(), "temperature.reading");
        }
    }

    #[test]
    fn a_mapping_error_fails_the_payload() {
        let bad = br#"{"output": {"completeTrackResults": [{"trackResults": [{
            "trackingNumberInfo": {"trackingNumber": "1"},
            "scanEvents": [{"date": "12/08/2024 15:18", "derivedStatusCode": "IT"}]}]}]}}"#;
        let Decoded::Failed(p) = translate(bad, Some("fedex")).1 else {
            panic!("expected a failure")
        };
        assert_eq!(p.code, "bad_value");
        assert_eq!(p.stage, Stage::Map);
        assert!(p.reason.contains("time_format"), "{}", p.reason);
        assert_eq!(http_status(&p), 422);
    }

    fn write(dir: &Path, name: &str, partners: &str, when: Option<&str>, mtype: &str) {
        let dialect = when.map_or(String::new(), |w| format!("[dialect]\nwhen = \"{w}\"\n"));
        std::fs::write(
            dir.join(name),
            format!(
                "format = \"courier\"\nmessage_types = [\"{mtype}\"]\npartners = {partners}\n{dialect}\
                 [[events]]\nkind = \"shipment.status\"\noccurred_at = \"/t\"\n\
                 [events.data]\ntracking_number = \"/n\"\ncarrier = {{ value = \"{mtype}\" }}\nstatus = {{ value = \"x\" }}\n"
            ),
        )
        .unwrap();
    }

    #[test]
    fn order_dependent_mappings_are_refused_at_load() {
        let holder = tempfile::tempdir().unwrap();
        let tmp = holder.path().to_path_buf();
        write(&tmp, "a.toml", "[\"fedex\"]", Some("/a"), "a");
        write(&tmp, "b.toml", "[\"fedex\", \"ups\"]", Some("/b"), "b");
        write(&tmp, "c.toml", "[\"*\"]", Some("/a"), "c");
        let conn = CourierConnector::load(&tmp).expect("distinct shapes, * apart");
        let doc_a = serde_json::json!({"a": 1, "t": "2026-01-01T00:00:00Z", "n": "1"});
        let doc = CourierDocument::new(&doc_a);
        assert_eq!(conn.select("fedex", &doc).unwrap().name, "a");
        assert_eq!(
            conn.select("ups", &doc).unwrap().name,
            "c",
            "* after the named"
        );
        write(&tmp, "d.toml", "[\"ups\"]", Some("/b"), "d");
        let errs = CourierConnector::load(&tmp).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].file.ends_with("d.toml"));
        assert!(
            errs[0]
                .message
                .contains("partner \"ups\" already has a mapping for when = \"/b\""),
            "{}",
            errs[0]
        );
        std::fs::remove_file(tmp.join("d.toml")).unwrap();
        write(&tmp, "0_catch_all.toml", "[\"fedex\"]", None, "z");
        let errs = CourierConnector::load(&tmp).unwrap_err();
        assert_eq!(errs.len(), 2, "a and b come after it: {errs:?}");
        assert!(
            errs[0]
                .message
                .contains("never applies to partner \"fedex\""),
            "{}",
            errs[0]
        );
    }
}
