//! What the endpoint accepts: resource types, and the codes of the
//! required value-set bindings it checks (fhirbolt models codes as plain
//! strings, so `status: "bogus"` fits the model; it must not reach a
//! mapping as if it meant something).

use serde_json::Value;

/// The resource types `/fhir` takes (create and update).
pub const SUPPORTED_TYPES: [&str; 8] = [
    "Patient",
    "ServiceRequest",
    "Task",
    "Specimen",
    "BiologicallyDerivedProduct",
    "Observation",
    "DiagnosticReport",
    "Appointment",
];

/// (resource type, element, the R4 value set's codes): required bindings.
const REQUIRED: &[(&str, &str, &[&str])] = &[
    ("Patient", "gender", &["male", "female", "other", "unknown"]),
    (
        "ServiceRequest",
        "status",
        &[
            "draft",
            "active",
            "on-hold",
            "revoked",
            "completed",
            "entered-in-error",
            "unknown",
        ],
    ),
    ("ServiceRequest", "intent", REQUEST_INTENT),
    ("ServiceRequest", "priority", PRIORITY),
    (
        "Task",
        "status",
        &[
            "draft",
            "requested",
            "received",
            "accepted",
            "rejected",
            "ready",
            "cancelled",
            "in-progress",
            "on-hold",
            "failed",
            "completed",
            "entered-in-error",
        ],
    ),
    (
        "Task",
        "intent",
        &[
            "unknown",
            "proposal",
            "plan",
            "order",
            "original-order",
            "reflex-order",
            "filler-order",
            "instance-order",
            "option",
        ],
    ),
    ("Task", "priority", PRIORITY),
    (
        "Specimen",
        "status",
        &[
            "available",
            "unavailable",
            "unsatisfactory",
            "entered-in-error",
        ],
    ),
    (
        "BiologicallyDerivedProduct",
        "status",
        &["available", "unavailable"],
    ),
    (
        "BiologicallyDerivedProduct",
        "productCategory",
        &["organ", "tissue", "fluid", "cells", "biologicalAgent"],
    ),
    (
        "Observation",
        "status",
        &[
            "registered",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "cancelled",
            "entered-in-error",
            "unknown",
        ],
    ),
    (
        "DiagnosticReport",
        "status",
        &[
            "registered",
            "partial",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "appended",
            "cancelled",
            "entered-in-error",
            "unknown",
        ],
    ),
    (
        "Appointment",
        "status",
        &[
            "proposed",
            "pending",
            "booked",
            "arrived",
            "fulfilled",
            "cancelled",
            "noshow",
            "entered-in-error",
            "checked-in",
            "waitlist",
        ],
    ),
];

const REQUEST_INTENT: &[&str] = &[
    "proposal",
    "plan",
    "directive",
    "order",
    "original-order",
    "reflex-order",
    "filler-order",
    "instance-order",
    "option",
];
const PRIORITY: &[&str] = &["routine", "urgent", "asap", "stat"];

/// Bundle.type codes.
pub const BUNDLE_TYPES: &[&str] = &[
    "document",
    "message",
    "transaction",
    "transaction-response",
    "batch",
    "batch-response",
    "history",
    "searchset",
    "collection",
];

/// A code outside its required value set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCode {
    pub expression: String,
    pub message: String,
}

/// The first code of `resource` outside its required value set.
pub fn check_codes(resource: &Value) -> Result<(), BadCode> {
    let ty = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    for (t, element, codes) in REQUIRED.iter().filter(|(t, ..)| *t == ty) {
        if let Some(v) = resource.get(*element).and_then(Value::as_str) {
            if !codes.contains(&v) {
                return Err(BadCode {
                    expression: format!("{t}.{element}"),
                    message: format!(
                        "{t}.{element} {v:?} is not a code of its value set ({})",
                        codes.join(", ")
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codes_outside_required_value_sets_are_named() {
        let bad = json!({"resourceType": "ServiceRequest", "status": "bogus", "intent": "order"});
        let e = check_codes(&bad).unwrap_err();
        assert_eq!(e.expression, "ServiceRequest.status");
        assert!(e.message.contains("\"bogus\""));
        let ok = json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order"});
        assert!(check_codes(&ok).is_ok());
        let gender = json!({"resourceType": "Patient", "gender": "F"});
        assert_eq!(
            check_codes(&gender).unwrap_err().expression,
            "Patient.gender"
        );
    }
}
