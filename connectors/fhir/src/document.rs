//! How one resource answers [`FhirPath`]s, following references to the
//! resources around it (the same Bundle, what cgthub already holds).
//!
//! A scope is an index into the document's list of JSON nodes a `foreach`
//! selected (0 is the resource itself).

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

use hub_core::mapping::Document;
use serde_json::Value;

use crate::path::{Fhir, FhirPath, Step};

/// Resources a reference may name, by `urn:uuid:…` full URL or `Type/id`.
#[derive(Debug, Default)]
pub struct Refs<'a> {
    by_key: HashMap<String, &'a Value>,
}

impl<'a> Refs<'a> {
    /// Adds a resource under its full URL (if any) and its `Type/id`.
    pub fn add(&mut self, full_url: Option<&str>, resource: &'a Value) {
        if let Some(u) = full_url {
            self.by_key.insert(u.to_string(), resource);
        }
        if let Some(key) = type_and_id(resource) {
            self.by_key.entry(key).or_insert(resource);
        }
    }

    /// The resource `reference` names: exactly (`urn:uuid:…`, `Type/id`),
    /// or by the `Type/id` at the end of an absolute URL
    /// (`https://ehr/fhir/Patient/1`, `…/Patient/1/_history/2`).
    pub fn find(&self, reference: &str) -> Option<&'a Value> {
        if let Some(v) = self.by_key.get(reference) {
            return Some(v);
        }
        let trimmed = match reference.find("/_history/") {
            Some(i) => &reference[..i],
            None => reference,
        };
        let mut parts = trimmed.rsplit('/');
        let id = parts.next()?;
        let ty = parts.next()?;
        self.by_key.get(&format!("{ty}/{id}")).copied()
    }
}

/// `Type/id` of a resource that has an id.
pub fn type_and_id(resource: &Value) -> Option<String> {
    let ty = resource.get("resourceType")?.as_str()?;
    let id = resource.get("id")?.as_str()?;
    Some(format!("{ty}/{id}"))
}

/// One resource, as the mapping engine reads it.
pub struct Resource<'a> {
    root: &'a Value,
    refs: &'a Refs<'a>,
    scopes: RefCell<Vec<&'a Value>>,
}

impl<'a> Resource<'a> {
    pub fn new(root: &'a Value, refs: &'a Refs<'a>) -> Self {
        Resource {
            root,
            refs,
            scopes: RefCell::new(vec![root]),
        }
    }

    /// The resource's type (`resourceType`).
    pub fn resource_type(&self) -> &'a str {
        self.root
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Every node `path` selects from `from`, in document order.
    fn select(&self, path: &FhirPath, from: &'a Value) -> Vec<&'a Value> {
        if let Some(t) = &path.resource_type {
            if from.get("resourceType").and_then(Value::as_str) != Some(t) {
                return Vec::new();
            }
        }
        let mut items = vec![from];
        for step in &path.steps {
            items = match step {
                Step::Child(name) => {
                    let mut next = Vec::with_capacity(items.len());
                    for it in &items {
                        match it.get(name.as_str()) {
                            Some(Value::Array(a)) => next.extend(a.iter()),
                            Some(Value::Null) | None => {}
                            Some(v) => next.push(v),
                        }
                    }
                    next
                }
                Step::Index(n) => items.get(*n).map(|v| vec![*v]).unwrap_or_default(),
                Step::All => items,
                Step::Where(sub, want, negate) => items
                    .into_iter()
                    .filter(|it| {
                        let found = self
                            .select(sub, it)
                            .iter()
                            .any(|v| text(v).as_deref() == Some(want.as_str()));
                        found != *negate
                    })
                    .collect(),
                Step::Resolve => items
                    .iter()
                    .filter_map(|it| it.get("reference").and_then(Value::as_str))
                    .filter_map(|r| self.refs.find(r))
                    .collect(),
            };
            if items.is_empty() {
                break;
            }
        }
        items
    }
}

/// A primitive's text: strings as they are, numbers as written, booleans
/// as `true`/`false`. A Quantity reads as comparator and value (`<5`).
/// A HumanName reads as HL7's XPN (`family^given^middle`),
/// so names from FHIR and HL7 compare in the identity registry. None for
/// other objects, arrays and null.
fn text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Object(m) if m.contains_key("family") || m.contains_key("given") => {
            let mut parts = vec![m.get("family").and_then(Value::as_str).unwrap_or_default()];
            if let Some(Value::Array(given)) = m.get("given") {
                parts.extend(given.iter().filter_map(Value::as_str));
            }
            Some(Cow::Owned(parts.join("^")))
        }
        // A Quantity reads as its comparator and value (`<13700`): a bound
        // must not become an exact result.
        Value::Object(m) if m.get("value").is_some_and(Value::is_number) => {
            let cmp = m
                .get("comparator")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Some(Cow::Owned(format!("{cmp}{}", m["value"])))
        }
        _ => None,
    }
}

impl Document for Resource<'_> {
    type Format = Fhir;
    type Scope = u32;

    fn root(&self) -> u32 {
        0
    }

    fn message_type(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(self.resource_type()))
    }

    fn values<'s>(&'s self, path: &FhirPath, scope: u32, out: &mut Vec<Cow<'s, str>>) {
        let from = self.scopes.borrow()[scope as usize];
        let found = self.select(path, from);
        let multi = path.is_multi();
        for v in found {
            if let Some(t) = text(v).filter(|t| !t.is_empty()) {
                out.push(t);
                if !multi {
                    break;
                }
            }
        }
    }

    fn scopes(&self, path: &FhirPath, scope: u32) -> Vec<u32> {
        let from = self.scopes.borrow()[scope as usize];
        let found = self.select(path, from);
        let mut arena = self.scopes.borrow_mut();
        found
            .into_iter()
            .filter(|v| v.is_object())
            .map(|v| {
                arena.push(v);
                u32::try_from(arena.len() - 1).unwrap_or(u32::MAX)
            })
            .collect()
    }

    fn is_multi(path: &FhirPath) -> bool {
        path.is_multi()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_core::mapping::Format;
    use serde_json::json;

    fn values(doc: &Resource<'_>, path: &str) -> Vec<String> {
        let p = Fhir::parse_path(path).unwrap();
        let mut out = Vec::new();
        doc.values(&p, doc.root(), &mut out);
        out.into_iter().map(|c| c.into_owned()).collect()
    }

    #[test]
    fn paths_select_filter_and_follow_references() {
        let patient = json!({"resourceType": "Patient", "id": "p1",
            "identifier": [{"system": "urn:mrn", "value": "MRN-1"}], "birthDate": "1970-01-01",
            "name": [{"family": "Chalmers", "given": ["Peter", "James"]}]});
        let sr = json!({"resourceType": "ServiceRequest", "status": "active",
            "identifier": [{"system": "urn:a", "value": "A-1"}, {"system": "urn:b", "value": "B-2"}],
            "subject": {"reference": "urn:uuid:0d5c"},
            "note": [{"text": "one"}, {"text": "two"}],
            "quantityQuantity": {"value": 2.50}});
        let mut refs = Refs::default();
        refs.add(Some("urn:uuid:0d5c"), &patient);
        let doc = Resource::new(&sr, &refs);
        assert_eq!(values(&doc, "ServiceRequest.status"), ["active"]);
        assert_eq!(values(&doc, "Patient.status"), Vec::<String>::new());
        assert_eq!(values(&doc, "identifier.value"), ["A-1"]);
        assert_eq!(values(&doc, "identifier[1].value"), ["B-2"]);
        assert_eq!(
            values(&doc, "identifier.where(system='urn:b').value"),
            ["B-2"]
        );
        assert_eq!(
            values(&doc, "identifier.where(system!='urn:a').value"),
            ["B-2"]
        );
        assert_eq!(values(&doc, "note[*].text"), ["one", "two"]);
        assert_eq!(values(&doc, "quantityQuantity.value"), ["2.5"]);
        assert_eq!(values(&doc, "quantityQuantity"), ["2.5"]);
        assert_eq!(values(&doc, "subject.resolve().birthDate"), ["1970-01-01"]);
        assert_eq!(
            values(&doc, "subject.resolve().name"),
            ["Chalmers^Peter^James"]
        );
        assert_eq!(
            values(
                &doc,
                "subject.resolve().identifier.where(system='urn:mrn').value"
            ),
            ["MRN-1"]
        );
        let foreach = Fhir::parse_path("note").unwrap();
        let scopes = doc.scopes(&foreach, doc.root());
        assert_eq!(scopes.len(), 2);
        let text = Fhir::parse_path("text").unwrap();
        let mut out = Vec::new();
        doc.values(&text, scopes[1], &mut out);
        assert_eq!(out, ["two"]);
    }

    #[test]
    fn references_resolve_by_type_and_id_and_absolute_url() {
        let patient = json!({"resourceType": "Patient", "id": "p1", "gender": "female"});
        let mut refs = Refs::default();
        refs.add(None, &patient);
        assert!(refs.find("Patient/p1").is_some());
        assert!(refs.find("https://ehr.example/fhir/Patient/p1").is_some());
        assert!(refs
            .find("https://ehr.example/fhir/Patient/p1/_history/3")
            .is_some());
        assert!(refs.find("Patient/p2").is_none());
        assert!(refs.find("urn:uuid:nope").is_none());
    }
}
