//! The Task itself: which Task an event updates, the body the EHR is sent,
//! and reading what a FHIR server answers (versions, OperationOutcome).
//! Pure: no I/O.

use chrono::{DateTime, SecondsFormat};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::event::EventKind;
use crate::sink::SinkError;

/// `Task.businessStatus.coding.system`: the therapy step, as the event's kind.
pub const BUSINESS_STATUS_SYSTEM: &str = "https://cgthub.org/fhir/CodeSystem/therapy-step";
/// `Task.identifier.system` of the chain of identity identifier.
pub const COI_SYSTEM: &str = "https://cgthub.org/fhir/coi";
/// `Task.extension.url` of the cgthub event that last updated the Task.
pub const EVENT_ID_EXTENSION: &str = "https://cgthub.org/fhir/StructureDefinition/event-id";

/// The longest FHIR id.
const MAX_ID_LEN: usize = 64;
/// Hex digits of SHA-256 appended to an id that had to be changed.
const HASH_HEX: usize = 16;

/// The FHIR id (`[A-Za-z0-9\-\.]{1,64}`) of the Task for an order number or COI.
///
/// A value that is already a legal id is the id, unchanged (`ORD-1001`).
/// Any other value becomes its legal characters, every other character
/// replaced by `-`, cut to 47 characters, then `-` and the first 16 hex
/// digits of the SHA-256 of the value as given (`ORD/1001` →
/// `ORD-1001-<16 hex>`). The hash keeps two values that differ only in
/// replaced characters (`ORD/1001`, `ORD_1001`) on two Tasks: two
/// patients' therapies must never share one. Stable across restarts and
/// hubs.
pub fn task_id(value: &str) -> String {
    let legal = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if !value.is_empty() && value.len() <= MAX_ID_LEN && value.chars().all(legal) {
        return value.to_string();
    }
    let keep = MAX_ID_LEN - 1 - HASH_HEX;
    let mut id: String = value
        .chars()
        .map(|c| if legal(c) { c } else { '-' })
        .take(keep)
        .collect();
    let digest = hex::encode(Sha256::digest(value.as_bytes()));
    if !id.is_empty() {
        id.push('-');
    }
    id.push_str(&digest[..HASH_HEX]);
    id
}

/// `Task.status` for an event kind. The second value is true for the
/// milestones that set the status (order placed, updated, cancelled,
/// infusion completed); every other step says `in-progress`.
pub fn task_status(kind: &str) -> (&'static str, bool) {
    match kind {
        "order.placed" => ("requested", true),
        "order.updated" => ("accepted", true),
        "order.cancelled" => ("cancelled", true),
        "infusion.completed" => ("completed", true),
        _ => ("in-progress", false),
    }
}

/// Statuses a step that is not a milestone never takes a Task out of.
fn is_terminal(status: &str) -> bool {
    matches!(
        status,
        "completed" | "cancelled" | "failed" | "rejected" | "entered-in-error"
    )
}

/// `Task.businessStatus.coding.display`: the step in a few words.
pub fn step_display(kind: &str) -> &str {
    let Some(k) = EventKind::parse(kind) else {
        return kind;
    };
    match k {
        EventKind::OrderPlaced => "Therapy order placed",
        EventKind::OrderUpdated => "Therapy order updated",
        EventKind::OrderCancelled => "Therapy order cancelled",
        EventKind::CollectionScheduled => "Collection scheduled",
        EventKind::CollectionCompleted => "Starting material collected",
        EventKind::CustodyTransferred => "Custody transferred",
        EventKind::ShipmentCreated => "Shipment booked",
        EventKind::ShipmentStatus => "Shipment status reported",
        EventKind::ShipmentDelivered => "Shipment delivered",
        EventKind::TemperatureReading => "Temperature reading",
        EventKind::TemperatureExcursion => "Temperature excursion",
        EventKind::MaterialReceived => "Material received",
        EventKind::ManufacturingScheduled => "Manufacturing scheduled",
        EventKind::ManufacturingStepCompleted => "Manufacturing step completed",
        EventKind::BatchRecordUpdated => "Batch record updated",
        EventKind::QcResultReported => "QC result reported",
        EventKind::DeviationRaised => "Deviation raised",
        EventKind::BatchDispositioned => "Batch dispositioned",
        EventKind::IdentityVerified => "Chain of identity verified",
        EventKind::InfusionCompleted => "Infusion completed",
        EventKind::AlertRaised => "Alert raised",
        EventKind::PatientUpdated => "Patient details updated",
    }
}

/// What one event does to its Task.
#[derive(Debug, Clone)]
pub struct TaskUpdate {
    /// The Task's FHIR id.
    pub id: String,
    pub event_id: String,
    pub kind: String,
    status: &'static str,
    milestone: bool,
    coi: Option<String>,
    order_id: Option<String>,
    /// `occurred_at`, as a FHIR instant.
    last_modified: String,
}

/// The parts of a `cgt.event/v1` body the Task needs.
#[derive(serde::Deserialize)]
struct EventHead {
    event_id: String,
    kind: String,
    #[serde(default)]
    coi: Option<String>,
    #[serde(default)]
    order_id: Option<String>,
    occurred_at: String,
}

impl TaskUpdate {
    /// Reads an event's JSON. An event that is not valid JSON, or names no
    /// order and no COI, can never update a Task: a permanent error.
    pub fn from_event(body: &str) -> Result<Self, SinkError> {
        let head: EventHead = serde_json::from_str(body)
            .map_err(|e| SinkError::permanent(format!("not a cgt.event/v1 event: {e}")))?;
        let present = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let coi = present(head.coi);
        let order_id = present(head.order_id);
        let Some(key) = order_id.as_deref().or(coi.as_deref()) else {
            return Err(SinkError::permanent(
                "the event names no order or COI; no Task to update",
            ));
        };
        let at = DateTime::parse_from_rfc3339(&head.occurred_at).map_err(|e| {
            SinkError::permanent(format!(
                "occurred_at {:?} is not RFC 3339: {e}",
                head.occurred_at
            ))
        })?;
        let (status, milestone) = task_status(&head.kind);
        Ok(TaskUpdate {
            id: task_id(key),
            event_id: head.event_id,
            status,
            milestone,
            last_modified: at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            kind: head.kind,
            coi,
            order_id,
        })
    }

    /// The status this update gives a Task whose status is `current` (when
    /// known): a step that is not a milestone never reopens a completed or
    /// cancelled Task.
    pub fn status<'a>(&'a self, current: Option<&'a str>) -> &'a str {
        match current {
            Some(c) if !self.milestone && is_terminal(c) => c,
            _ => self.status,
        }
    }

    /// The Task as cgthub writes it: no patient data, no notes.
    pub fn body(&self, current_status: Option<&str>) -> Value {
        let mut task = json!({
            "resourceType": "Task",
            "id": self.id,
            "extension": [self.extension()],
            "status": self.status(current_status),
            "businessStatus": {
                "coding": [{
                    "system": BUSINESS_STATUS_SYSTEM,
                    "code": self.kind,
                    "display": step_display(&self.kind),
                }],
                "text": self.kind,
            },
            "intent": "order",
            "lastModified": self.last_modified,
        });
        let t = task.as_object_mut().expect("an object");
        if let Some(coi) = &self.coi {
            t.insert("identifier".into(), json!([self.coi_identifier(coi)]));
        }
        if let Some(order) = &self.order_id {
            t.insert("basedOn".into(), json!([self.based_on(order)]));
        }
        task
    }

    /// This update applied to the Task the server holds (`current`, as read
    /// after a version conflict): what the EHR added (owner, notes, other
    /// identifiers, security labels) is kept; the fields cgthub owns are
    /// replaced; cgthub's identifier, reference and extension are added
    /// where missing. The narrative is dropped (it described the old
    /// status) and `meta.versionId`/`lastUpdated` too (the server's to set).
    pub fn merged_into(&self, current: &Value) -> Value {
        let Some(cur) = current
            .as_object()
            .filter(|o| o.get("resourceType").and_then(Value::as_str) == Some("Task"))
        else {
            return self.body(None);
        };
        let status = cur.get("status").and_then(Value::as_str);
        let ours = self.body(status);
        let mut t = cur.clone();
        t.remove("text");
        if let Some(Value::Object(meta)) = t.get_mut("meta") {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            if meta.is_empty() {
                // FHIR JSON has no empty objects: a strict server refuses them.
                t.remove("meta");
            }
        }
        for (key, value) in ours.as_object().expect("an object") {
            match key.as_str() {
                "identifier" | "basedOn" => add_missing(&mut t, key, value),
                "extension" => {
                    let mut kept = take_array(&mut t, key);
                    kept.retain(|e| {
                        e.get("url").and_then(Value::as_str) != Some(EVENT_ID_EXTENSION)
                    });
                    kept.extend(value.as_array().into_iter().flatten().cloned());
                    t.insert(key.clone(), Value::Array(kept));
                }
                _ => {
                    t.insert(key.clone(), value.clone());
                }
            }
        }
        Value::Object(t)
    }

    fn extension(&self) -> Value {
        json!({ "url": EVENT_ID_EXTENSION, "valueString": self.event_id })
    }

    fn coi_identifier(&self, coi: &str) -> Value {
        json!({ "system": COI_SYSTEM, "value": coi })
    }

    fn based_on(&self, order: &str) -> Value {
        json!({ "identifier": { "value": order } })
    }
}

fn take_array(t: &mut Map<String, Value>, key: &str) -> Vec<Value> {
    match t.remove(key) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    }
}

/// Adds each of `ours` (an array) to `t[key]` unless an equal entry is there.
fn add_missing(t: &mut Map<String, Value>, key: &str, ours: &Value) {
    let mut all = take_array(t, key);
    for v in ours.as_array().into_iter().flatten() {
        if !all.contains(v) {
            all.push(v.clone());
        }
    }
    t.insert(key.to_string(), Value::Array(all));
}

/// The version in an `ETag` (`W/"3"` or `"3"`).
pub fn version_from_etag(etag: &str) -> Option<String> {
    let v = etag.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    let v = v.trim_matches('"');
    (!v.is_empty()).then(|| v.to_string())
}

/// The `If-Match` value for a version.
pub fn if_match(version: &str) -> String {
    format!("W/\"{version}\"")
}

/// `meta.versionId` of a resource.
pub fn version_from_body(resource: &Value) -> Option<String> {
    resource
        .pointer("/meta/versionId")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// What to tell an operator of a refused request: the OperationOutcome's
/// diagnostics (or details), else the body's text, cut to about 500 characters.
pub fn outcome_text(body: &[u8]) -> String {
    const MAX: usize = 500;
    let from_outcome = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        let texts: Vec<String> = v
            .get("issue")?
            .as_array()?
            .iter()
            .filter_map(|i| {
                i.get("diagnostics")
                    .or_else(|| i.pointer("/details/text"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect();
        (!texts.is_empty()).then(|| texts.join("; "))
    });
    let text = from_outcome.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legal(id: &str) -> bool {
        (1..=64).contains(&id.len())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    }

    #[test]
    fn ids_are_legal_stable_and_keep_distinct_values_apart() {
        assert_eq!(task_id("ORD-1001"), "ORD-1001");
        assert_eq!(task_id("CHW000126000001"), "CHW000126000001");
        let a = task_id("ORD/1001");
        let b = task_id("ORD_1001");
        assert!(a.starts_with("ORD-1001-") && legal(&a), "{a}");
        assert_ne!(a, b, "a replaced character must not merge two Tasks");
        assert_eq!(a, task_id("ORD/1001"), "stable");
        let long = "X".repeat(65);
        let l = task_id(&long);
        assert!(legal(&l) && l.len() == 64, "{l}");
        assert_ne!(l, task_id(&"X".repeat(66)));
        assert!(legal(&task_id("&/é")));
        assert!(legal(&task_id("")));
    }

    #[test]
    fn kinds_map_to_statuses_and_steps_never_reopen_a_closed_task() {
        assert_eq!(task_status("order.placed").0, "requested");
        assert_eq!(task_status("order.updated").0, "accepted");
        assert_eq!(task_status("order.cancelled").0, "cancelled");
        assert_eq!(task_status("infusion.completed").0, "completed");
        assert_eq!(task_status("material.received").0, "in-progress");
        for k in EventKind::ALL {
            assert_ne!(step_display(k.as_str()), k.as_str(), "{k} has a display");
        }
        let ev = |kind: &str| {
            TaskUpdate::from_event(&format!(
                r#"{{"event_id":"e","kind":"{kind}","order_id":"O1","occurred_at":"2026-03-01T10:00:00Z"}}"#
            ))
            .unwrap()
        };
        assert_eq!(ev("alert.raised").status(Some("cancelled")), "cancelled");
        assert_eq!(ev("alert.raised").status(Some("accepted")), "in-progress");
        assert_eq!(ev("order.updated").status(Some("cancelled")), "accepted");
    }

    #[test]
    fn a_merge_keeps_what_the_ehr_added() {
        let u = TaskUpdate::from_event(
            r#"{"event_id":"e2","kind":"material.received","coi":"C1","order_id":"O1","occurred_at":"2026-03-01T10:00:00Z"}"#,
        )
        .unwrap();
        let current = json!({
            "resourceType": "Task", "id": "O1", "status": "accepted", "intent": "order",
            "meta": {"versionId": "7", "security": [{"code": "R"}]},
            "text": {"status": "generated", "div": "<div>accepted</div>"},
            "owner": {"reference": "Practitioner/9"},
            "identifier": [{"system": "urn:ehr", "value": "T-9"}, {"system": COI_SYSTEM, "value": "C1"}],
            "extension": [{"url": EVENT_ID_EXTENSION, "valueString": "e1"}, {"url": "urn:x", "valueString": "y"}],
        });
        let m = u.merged_into(&current);
        assert_eq!(m["owner"]["reference"], "Practitioner/9");
        assert_eq!(m["status"], "in-progress");
        assert_eq!(m["identifier"].as_array().unwrap().len(), 2);
        assert_eq!(m["basedOn"][0]["identifier"]["value"], "O1");
        assert_eq!(m["extension"][0]["url"], "urn:x");
        assert_eq!(m["extension"][1]["valueString"], "e2");
        assert!(m.get("text").is_none() && m["meta"].get("versionId").is_none());
        assert_eq!(m["meta"]["security"][0]["code"], "R");
        let bare = json!({"resourceType": "Task", "id": "t", "status": "requested",
            "meta": {"versionId": "7", "lastUpdated": "2026-01-01T00:00:00Z"}});
        let m = u.merged_into(&bare);
        assert!(m.get("meta").is_none(), "an empty meta is left out: {m}");
    }

    #[test]
    fn versions_and_outcomes_are_read() {
        assert_eq!(version_from_etag("W/\"3\"").as_deref(), Some("3"));
        assert_eq!(version_from_etag("\"12\"").as_deref(), Some("12"));
        assert_eq!(version_from_etag("W/\"\""), None);
        let oo = br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"Task.status: unknown code"}]}"#;
        assert_eq!(outcome_text(oo), "Task.status: unknown code");
        let long = "é".repeat(600);
        let t = outcome_text(long.as_bytes());
        assert_eq!(t.chars().count(), 501);
    }
}
