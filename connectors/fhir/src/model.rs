//! The FHIR R4 model (fhirbolt), behind non-generic functions.
//!
//! fhirbolt's generated serde code is large and generic: every crate that
//! calls it compiles it again. Only this module touches it, and only
//! through these functions. Resources are checked against the R4 model in
//! strict mode (unknown elements, wrong types, missing required elements
//! are errors) and then read as JSON by the mappings.

use fhirbolt::model::r4::Resource;
use fhirbolt::serde::{DeserializationConfig, DeserializationMode};
use serde_json::Value;

const STRICT: Option<DeserializationConfig> = Some(DeserializationConfig {
    mode: DeserializationMode::Strict,
});

/// A resource that does not fit the R4 model: what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError {
    /// FHIRPath of the offending element (`ServiceRequest.identifier`), as
    /// close as can be told.
    pub expression: String,
    pub message: String,
}

/// Whether `bytes` are an R4 resource of any type (fast path: one pass
/// over the bytes). Call [`no_empty_lists`] first: fhirbolt 0.4 panics on
/// an empty JSON array; a panic here is caught and counts as not fitting.
pub fn fits(bytes: &[u8]) -> bool {
    guarded(|| fhirbolt::json::from_slice::<Resource>(bytes, STRICT).map(|_| ())).is_ok()
}

/// Runs a fhirbolt call, turning a panic inside it into an error.
fn guarded(f: impl FnOnce() -> Result<(), fhirbolt::json::Error>) -> Result<(), String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("the R4 model could not read this resource".to_string()),
    }
}

/// FHIR JSON has no empty lists (R4 §2.6.2: "arrays must not be empty"):
/// the FHIRPath of the first one, after `root` (`Bundle`, `Patient`).
pub fn no_empty_lists(value: &Value, root: &str) -> Result<(), ModelError> {
    fn walk(v: &Value, at: &mut String) -> bool {
        match v {
            Value::Array(a) if a.is_empty() => true,
            Value::Array(a) => a.iter().enumerate().any(|(i, c)| {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                let found = walk(c, at);
                if !found {
                    at.truncate(len);
                }
                found
            }),
            Value::Object(m) => m.iter().any(|(k, c)| {
                let len = at.len();
                at.push('.');
                at.push_str(k);
                let found = walk(c, at);
                if !found {
                    at.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let mut at = root.to_string();
    if walk(value, &mut at) {
        return Err(ModelError {
            message: format!(
                "{at} is an empty list: FHIR JSON leaves out an element that has no values"
            ),
            expression: at,
        });
    }
    Ok(())
}

/// Checks one resource against the R4 model.
pub fn check(resource: &Value) -> Result<(), ModelError> {
    let ty = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("Resource");
    no_empty_lists(resource, ty)?;
    let Err(message) = try_model(resource) else {
        return Ok(());
    };
    let ty = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("Resource");
    Err(ModelError {
        expression: locate(resource, ty, &message),
        message,
    })
}

fn try_model(resource: &Value) -> Result<(), String> {
    let ty = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("Resource");
    if let Err(e) = no_empty_lists(resource, ty) {
        return Err(e.message);
    }
    guarded(|| fhirbolt::json::from_json_value::<Resource>(resource.clone(), STRICT).map(|_| ()))
}

/// Finds the top-level element whose removal changes the error, then,
/// for an unknown element, the element itself inside it. fhirbolt's errors
/// name what is wrong but not where; this runs only on the error path.
fn locate(resource: &Value, ty: &str, message: &str) -> String {
    let Value::Object(map) = resource else {
        return ty.to_string();
    };
    let unknown = quoted_after(message, "unknown field `");
    if let Some(name) = unknown {
        if map.contains_key(name) {
            return format!("{ty}.{name}");
        }
    }
    if let Some(name) = quoted_after(message, "missing field `") {
        if !map.contains_key(name) {
            return format!("{ty}.{name}");
        }
    }
    for key in map.keys().filter(|k| *k != "resourceType") {
        let mut without = map.clone();
        without.remove(key);
        match try_model(&Value::Object(without)) {
            Err(m) if m == message => continue,
            _ => {}
        }
        let mut at = format!("{ty}.{key}");
        if let Some(name) = unknown {
            if let Some(inner) = find_key(&map[key], name) {
                at.push_str(&inner);
            }
        }
        return at;
    }
    ty.to_string()
}

/// The text between `prefix` and the next backtick.
fn quoted_after<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let start = message.find(prefix)? + prefix.len();
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// The FHIRPath suffix (`[0].foo`) of the first object key `name` in `v`.
fn find_key(v: &Value, name: &str) -> Option<String> {
    match v {
        Value::Object(m) => {
            if m.contains_key(name) {
                return Some(format!(".{name}"));
            }
            m.iter()
                .find_map(|(k, c)| find_key(c, name).map(|s| format!(".{k}{s}")))
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, c)| find_key(c, name).map(|s| format!("[{i}]{s}"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_name_the_element() {
        let unknown = json!({"resourceType": "ServiceRequest", "status": "active",
            "intent": "order", "subject": {"reference": "Patient/1"},
            "identifier": [{"value": "1", "sytem": "urn:x"}]});
        let e = check(&unknown).unwrap_err();
        assert_eq!(e.expression, "ServiceRequest.identifier[0].sytem");
        assert!(e.message.contains("unknown field `sytem`"), "{}", e.message);

        let missing = json!({"resourceType": "ServiceRequest", "intent": "order",
            "subject": {"reference": "Patient/1"}});
        let e = check(&missing).unwrap_err();
        assert_eq!(e.expression, "ServiceRequest.status");

        let wrong_type = json!({"resourceType": "ServiceRequest", "status": "active",
            "intent": "order", "subject": {"reference": "Patient/1"},
            "identifier": [{"value": 3}]});
        let e = check(&wrong_type).unwrap_err();
        assert_eq!(e.expression, "ServiceRequest.identifier");
        assert!(e.message.contains("invalid type"), "{}", e.message);

        let empty = json!({"resourceType": "Patient", "name": [{"given": []}]});
        let e = check(&empty).unwrap_err();
        assert_eq!(e.expression, "Patient.name[0].given");
        // fhirbolt 0.4 panics on empty lists; the guard turns that into "does not fit".
        assert!(!fits(
            br#"{"resourceType":"Bundle","type":"batch","entry":[]}"#
        ));

        let ok = json!({"resourceType": "Patient", "gender": "female"});
        assert!(check(&ok).is_ok());
        assert!(fits(ok.to_string().as_bytes()));
    }
}
