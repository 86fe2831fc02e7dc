//! From a request's bytes to what the hub stores: parse, check against the
//! R4 model and the required codes, give resources ids, rewrite the
//! Bundle's `urn:uuid:` references, map every resource to events.
//!
//! A transaction is one stored message: one bad entry fails it whole and
//! nothing it holds is kept as a resource. A batch is one message per
//! entry, each answered on its own. Everything here is pure; what the
//! store knows (conditional creates, relative references) is looked up by
//! the HTTP layer and handed in as [`Known`].

use std::collections::HashMap;

use bytes::Bytes;
use hub_core::error::Stage;
use hub_core::event::Source;
use hub_core::mapping::{MapContext, MappingSet};
use hub_core::{Decoded, Inbound, Problem, ResourceWrite, TherapyEvent};
use serde_json::{Map, Value};

use crate::codes::{check_codes, SUPPORTED_TYPES};
use crate::document::{type_and_id, Refs, Resource};
use crate::model;
use crate::outcome::{codes, FhirError};
use crate::path::Fhir;

/// Connector kind, as in `mappings/fhir/` and `source.connector`.
pub const KIND: &str = "fhir";
/// MIME type stored with raw messages.
pub const CONTENT_TYPE: &str = "application/fhir+json";

/// Where a request was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `POST /fhir`: a transaction or batch Bundle.
    System,
    /// `POST /fhir/{type}`: create.
    Create(String),
    /// `PUT /fhir/{type}/{id}`: update (or create with that id).
    Update(String, String),
}

/// How a Bundle is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    Transaction,
    Batch,
}

/// What an entry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interaction {
    Create,
    Update(String),
}

/// One resource to write.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its index in the Bundle (none for a plain create or update).
    pub index: Option<usize>,
    pub full_url: Option<String>,
    pub resource: Value,
    pub interaction: Interaction,
    /// `If-None-Exist` (`identifier=system|value`).
    pub if_none_exist: Option<String>,
    /// `If-Match` (`W/"3"`): an update only of that version.
    pub if_match: Option<String>,
}

/// One message to store: a transaction, one batch entry, one resource.
#[derive(Debug, Clone)]
pub struct Unit {
    /// The bytes kept as the message.
    pub payload: Bytes,
    /// The partner's id for the message (a Bundle's identifier).
    pub message_id: Option<String>,
    pub entries: Vec<Entry>,
}

/// A parsed request: its units, each usable or refused on its own (a
/// transaction has exactly one).
#[derive(Debug)]
pub struct Parsed {
    pub bundle: Option<BundleKind>,
    pub units: Vec<Result<Unit, FhirError>>,
}

/// Parses and checks a request's body.
pub fn parse(bytes: &Bytes, target: &Target) -> Result<Parsed, FhirError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        FhirError::new(
            400,
            "structure",
            codes::MALFORMED_JSON,
            format!("the body is not JSON: {e}"),
            None,
        )
    })?;
    let ty = value
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            FhirError::new(
                400,
                "structure",
                codes::NOT_A_RESOURCE,
                "the body is not a FHIR resource: it has no resourceType",
                None,
            )
        })?
        .to_string();
    match target {
        Target::System => {
            if ty != "Bundle" {
                return Err(FhirError::new(
                    422,
                    "invalid",
                    codes::WRONG_RESOURCE_TYPE,
                    format!("POST /fhir takes a transaction or batch Bundle, not a {ty}"),
                    Some(ty),
                ));
            }
            parse_bundle(bytes, value)
        }
        Target::Create(t) | Target::Update(t, _) => {
            supported(t).map_err(|e| e.with_expression(None))?;
            if &ty != t {
                return Err(FhirError::new(
                    422,
                    "invalid",
                    codes::WRONG_RESOURCE_TYPE,
                    format!("the body is a {ty}, the URL names {t}"),
                    Some(ty.clone()),
                ));
            }
            let interaction = match target {
                Target::Update(_, id) => {
                    check_update_id(&value, t, id)?;
                    Interaction::Update(id.clone())
                }
                _ => Interaction::Create,
            };
            check_resource(&value)?;
            Ok(Parsed {
                bundle: None,
                units: vec![Ok(Unit {
                    payload: bytes.clone(),
                    message_id: None,
                    entries: vec![Entry {
                        index: None,
                        full_url: None,
                        resource: value,
                        interaction,
                        if_none_exist: None,
                        if_match: None,
                    }],
                })],
            })
        }
    }
}

impl FhirError {
    fn with_expression(mut self, e: Option<String>) -> Self {
        self.expression = e;
        self
    }
}

fn supported(ty: &str) -> Result<(), FhirError> {
    if SUPPORTED_TYPES.contains(&ty) {
        Ok(())
    } else {
        Err(FhirError::new(
            404,
            "not-supported",
            codes::UNSUPPORTED_RESOURCE_TYPE,
            format!(
                "resource type {ty} is not supported here (supported: {})",
                SUPPORTED_TYPES.join(", ")
            ),
            Some(ty.to_string()),
        ))
    }
}

fn check_update_id(value: &Value, ty: &str, id: &str) -> Result<(), FhirError> {
    match value.get("id").and_then(Value::as_str) {
        Some(i) if i == id => Ok(()),
        Some(i) => Err(FhirError::new(
            400,
            "invalid",
            codes::INVALID_RESOURCE,
            format!("the resource's id {i:?} is not the id in the URL ({id:?})"),
            Some(format!("{ty}.id")),
        )),
        None => Err(FhirError::new(
            400,
            "required",
            codes::INVALID_RESOURCE,
            "an update must carry the resource's id",
            Some(format!("{ty}.id")),
        )),
    }
}

/// The R4 model and the required codes.
fn check_resource(value: &Value) -> Result<(), FhirError> {
    model::check(value).map_err(|e| {
        let issue = if e.message.contains("missing field") {
            "required"
        } else {
            "structure"
        };
        FhirError::new(
            422,
            issue,
            codes::INVALID_RESOURCE,
            e.message,
            Some(e.expression),
        )
    })?;
    check_required_codes(value)
}

/// The required codes alone (the model already checked).
fn check_required_codes(value: &Value) -> Result<(), FhirError> {
    check_codes(value).map_err(|e| {
        FhirError::new(
            422,
            "code-invalid",
            codes::INVALID_CODE,
            e.message,
            Some(e.expression),
        )
    })
}

fn parse_bundle(bytes: &Bytes, mut bundle: Value) -> Result<Parsed, FhirError> {
    let kind = match bundle.get("type").and_then(Value::as_str) {
        Some("transaction") => BundleKind::Transaction,
        Some("batch") => BundleKind::Batch,
        Some(t) if crate::codes::BUNDLE_TYPES.contains(&t) => {
            return Err(FhirError::new(
                422,
                "not-supported",
                codes::UNSUPPORTED_INTERACTION,
                format!("a {t} Bundle cannot be posted here: send a transaction or a batch"),
                Some("Bundle.type".into()),
            ))
        }
        Some(t) => {
            return Err(FhirError::new(
                422,
                "code-invalid",
                codes::INVALID_CODE,
                format!("Bundle.type {t:?} is not a bundle type"),
                Some("Bundle.type".into()),
            ))
        }
        None => {
            return Err(FhirError::new(
                422,
                "required",
                codes::INVALID_RESOURCE,
                "a Bundle needs a type (transaction or batch)",
                Some("Bundle.type".into()),
            ))
        }
    };
    model::no_empty_lists(&bundle, "Bundle").map_err(|e| {
        FhirError::new(
            422,
            "structure",
            codes::INVALID_RESOURCE,
            e.message,
            Some(e.expression),
        )
    })?;
    let whole_fits = model::fits(bytes);
    let message_id = bundle_id(&bundle);
    let entries = match bundle.get_mut("entry") {
        Some(Value::Array(a)) => std::mem::take(a),
        None => Vec::new(),
        Some(_) => {
            return Err(FhirError::new(
                422,
                "structure",
                codes::INVALID_RESOURCE,
                "Bundle.entry must be a list",
                Some("Bundle.entry".into()),
            ))
        }
    };
    if !whole_fits {
        // Find the entry that does not fit; else it is the Bundle itself.
        let mut shell = bundle.clone();
        if let Value::Object(m) = &mut shell {
            m.remove("entry");
        }
        check_resource(&shell)?;
    }
    let mut checked = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        checked.push(entry_of(i, entry, !whole_fits).map_err(|e| e.in_entry(Some(i))));
    }
    let units = match kind {
        BundleKind::Transaction => {
            let mut out = Vec::with_capacity(checked.len());
            for c in checked {
                out.push(c?);
            }
            check_internal_references(&out)?;
            vec![Ok(Unit {
                payload: bytes.clone(),
                message_id,
                entries: out,
            })]
        }
        BundleKind::Batch => checked
            .into_iter()
            .map(|c| {
                c.and_then(|e| {
                    check_internal_references(std::slice::from_ref(&e))?;
                    Ok(Unit {
                        payload: Bytes::from(serde_json::to_vec(&e.resource).unwrap_or_default()),
                        message_id: None,
                        entries: vec![e],
                    })
                })
            })
            .collect(),
    };
    Ok(Parsed {
        bundle: Some(kind),
        units,
    })
}

/// `Bundle.identifier` as `system|value` (or the value alone).
fn bundle_id(bundle: &Value) -> Option<String> {
    let id = bundle.get("identifier")?;
    let value = id.get("value")?.as_str()?;
    Some(match id.get("system").and_then(Value::as_str) {
        Some(s) => format!("{s}|{value}"),
        None => value.to_string(),
    })
}

fn entry_of(index: usize, mut entry: Value, check_model: bool) -> Result<Entry, FhirError> {
    let request = entry.get("request");
    let method = request
        .and_then(|r| r.get("method"))
        .and_then(Value::as_str);
    let url = request
        .and_then(|r| r.get("url"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let if_match = request
        .and_then(|r| r.get("ifMatch"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let if_none_exist = request
        .and_then(|r| r.get("ifNoneExist"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let entry_expr = |what: &str| Some(format!("Bundle.entry[{index}].{what}"));
    let interaction = match method {
        Some("POST") => Interaction::Create,
        Some("PUT") => {
            let id = match url.split_once('/') {
                Some((_, id)) if !id.is_empty() && !id.contains(['?', '/']) => id.to_string(),
                _ => {
                    return Err(FhirError {
                        expression: entry_expr("request.url"),
                        ..FhirError::new(
                            422,
                            "not-supported",
                            codes::UNSUPPORTED_INTERACTION,
                            format!(
                                "request.url {url:?}: an update here names its resource as Type/id \
                                 (conditional update is not supported)"
                            ),
                            None,
                        )
                    })
                }
            };
            Interaction::Update(id)
        }
        Some(m) => {
            return Err(FhirError {
                expression: entry_expr("request.method"),
                ..FhirError::new(
                    422,
                    "not-supported",
                    codes::UNSUPPORTED_INTERACTION,
                    format!(
                    "request.method {m} is not supported here: only POST (create) and PUT (update)"
                ),
                    None,
                )
            })
        }
        None => {
            return Err(FhirError {
                expression: entry_expr("request.method"),
                ..FhirError::new(
                    422,
                    "required",
                    codes::INVALID_RESOURCE,
                    "a transaction or batch entry needs request.method",
                    None,
                )
            })
        }
    };
    let resource = entry.get_mut("resource").map(Value::take).ok_or_else(|| {
        FhirError::new(
            422,
            "required",
            codes::INVALID_RESOURCE,
            "a transaction or batch entry needs a resource",
            None,
        )
    })?;
    let ty = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("Resource")
        .to_string();
    supported(&ty)?;
    let url_type = url.split(['/', '?']).next().unwrap_or_default();
    if url_type != ty {
        return Err(FhirError {
            expression: entry_expr("request.url"),
            ..FhirError::new(
                422,
                "invalid",
                codes::WRONG_RESOURCE_TYPE,
                format!("request.url {url:?} does not name the entry's resource type {ty}"),
                None,
            )
        });
    }
    if let Interaction::Update(id) = &interaction {
        check_update_id(&resource, &ty, id)?;
    }
    if check_model {
        check_resource(&resource)?;
    } else {
        check_required_codes(&resource)?;
    }
    Ok(Entry {
        index: Some(index),
        full_url: entry
            .get("fullUrl")
            .and_then(Value::as_str)
            .map(str::to_string),
        if_none_exist,
        if_match,
        resource,
        interaction,
    })
}

/// Every `urn:uuid:` reference must name an entry of the same Bundle.
fn check_internal_references(entries: &[Entry]) -> Result<(), FhirError> {
    let urls: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.full_url.as_deref())
        .collect();
    for e in entries {
        let mut bad = None;
        for_each_reference(&e.resource, &mut |r| {
            if bad.is_none() && r.starts_with("urn:") && !urls.contains(&r) {
                bad = Some(r.to_string());
            }
        });
        if let Some(r) = bad {
            let ty = e.resource["resourceType"].as_str().unwrap_or("Resource");
            let at = reference_path(&e.resource, &r).unwrap_or_default();
            return Err(FhirError::new(
                422,
                "not-found",
                codes::UNRESOLVED_REFERENCE,
                format!("reference {r:?} names no entry of this Bundle"),
                Some(format!("{ty}{at}")),
            )
            .in_entry(e.index));
        }
    }
    Ok(())
}

/// Calls `f` with every `reference` string in `v`.
fn for_each_reference<'v>(v: &'v Value, f: &mut impl FnMut(&'v str)) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                match c {
                    Value::String(r) if k == "reference" => f(r),
                    Value::Object(_) | Value::Array(_) => for_each_reference(c, f),
                    _ => {}
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|c| for_each_reference(c, f)),
        _ => {}
    }
}

/// The FHIRPath suffix (`.subject.reference`) of the first `reference`
/// that is `target` (built only for an error's expression).
fn reference_path(v: &Value, target: &str) -> Option<String> {
    match v {
        Value::Object(m) => m.iter().find_map(|(k, c)| {
            if k == "reference" && c.as_str() == Some(target) {
                Some(".reference".to_string())
            } else {
                reference_path(c, target).map(|s| format!(".{k}{s}"))
            }
        }),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, c)| reference_path(c, target).map(|s| format!("[{i}]{s}"))),
        _ => None,
    }
}

fn rewrite_references(v: &mut Value, map: &HashMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m.iter_mut() {
                match c {
                    Value::String(s) if k == "reference" => {
                        if let Some(new) = map.get(s.as_str()) {
                            *s = new.clone();
                        }
                    }
                    _ => rewrite_references(c, map),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| rewrite_references(c, map)),
        _ => {}
    }
}

/// What the store already holds that a unit needs.
#[derive(Debug, Default)]
pub struct Known {
    /// Per entry (by position in the unit): the resource its
    /// `If-None-Exist` found, as (id, version).
    pub existing: HashMap<usize, (String, i64)>,
    /// Resources relative references name, by `Type/id`.
    pub resources: Vec<Value>,
    /// Per entry: whether an update replaces a resource cgthub holds.
    pub updates_existing: HashMap<usize, bool>,
}

/// What the answer to one entry will say.
#[derive(Debug, Clone)]
pub struct Planned {
    pub resource_type: String,
    pub id: String,
    /// 201 (created) or 200 (updated; or found by If-None-Exist).
    pub status: u16,
    /// The version when it is known before storing (a conditional hit).
    pub version: Option<i64>,
    /// The resource as kept (with its id, references rewritten).
    pub resource: Option<Value>,
}

/// A unit ready to submit.
#[derive(Debug)]
pub struct Prepared {
    pub inbound: Inbound,
    pub decoded: Decoded,
    pub planned: Vec<Planned>,
    /// Where a mapping failure points (for the OperationOutcome).
    pub failure_expression: Option<String>,
    /// Nothing to store: every entry was found by If-None-Exist.
    pub nothing_new: bool,
}

/// Gives ids, rewrites references, maps. `new_id` names created resources.
pub fn prepare(
    unit: Unit,
    known: &Known,
    partner: &str,
    origin: &str,
    mappings: &MappingSet<Fhir>,
    new_id: &mut dyn FnMut() -> String,
) -> Prepared {
    let mut inbound = Inbound::new(
        KIND,
        partner,
        CONTENT_TYPE,
        unit.message_id.clone(),
        unit.payload.clone(),
        origin,
    );
    let mut planned = Vec::with_capacity(unit.entries.len());
    let mut urls = HashMap::new();
    let mut entries = unit.entries;
    for (n, e) in entries.iter_mut().enumerate() {
        let ty = e.resource["resourceType"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (id, status, version) = match (&e.interaction, known.existing.get(&n)) {
            (Interaction::Create, Some((id, v))) => (id.clone(), 200, Some(*v)),
            (Interaction::Create, None) => (new_id(), 201, None),
            (Interaction::Update(id), _) => {
                let existed = known.updates_existing.get(&n).copied().unwrap_or(false);
                (id.clone(), if existed { 200 } else { 201 }, None)
            }
        };
        if let Some(u) = &e.full_url {
            urls.insert(u.clone(), format!("{ty}/{id}"));
        }
        if let Value::Object(m) = &mut e.resource {
            // A conditional hit keeps the id it was found under, so that
            // references to it in this Bundle resolve.
            m.insert("id".into(), Value::String(id.clone()));
            if version.is_none() {
                if let Some(meta) = m.remove("meta") {
                    keep_meta(m, meta);
                }
            }
        }
        planned.push(Planned {
            resource_type: ty,
            id,
            status,
            version,
            resource: None,
        });
    }
    for e in &mut entries {
        rewrite_references(&mut e.resource, &urls);
    }
    let mut refs = Refs::default();
    for e in &entries {
        refs.add(e.full_url.as_deref(), &e.resource);
    }
    for r in &known.resources {
        refs.add(None, r);
    }
    let source = Source {
        connector: KIND.to_string(),
        partner: inbound.partner.clone(),
        message_id: inbound.message_id.clone(),
        payload_sha256: inbound.sha256.clone(),
        entry: None,
    };
    let mut events: Vec<TherapyEvent> = Vec::new();
    let mut failure = None;
    for (e, p) in entries.iter().zip(planned.iter()) {
        if p.version.is_some() {
            continue; // found by If-None-Exist: nothing new
        }
        let doc = Resource::new(&e.resource, &refs);
        let Some(mapping) = mappings.select(partner, &p.resource_type) else {
            continue; // kept, referenced, not an event by itself (Patient)
        };
        let mut cx = MapContext {
            source: &source,
            recorded_at: inbound.received_at,
            new_id: &mut TherapyEvent::new_id,
        };
        match mapping.run(&doc, &mut cx) {
            Ok(evs) => events.extend(evs),
            Err(err) => {
                let location = err.location.as_deref().map(|l| {
                    if l.starts_with(&p.resource_type) {
                        l.to_string()
                    } else {
                        format!("{}.{l}", p.resource_type)
                    }
                });
                let expression = match e.index {
                    Some(i) => Some(crate::outcome::in_entry(i, location.as_deref())),
                    None => location,
                };
                failure = Some((
                    Problem::new(Stage::Map, err.kind.code(), err.to_string()),
                    expression,
                ));
                break;
            }
        }
    }
    let nothing_new = planned.iter().all(|p| p.version.is_some());
    for (e, p) in entries.into_iter().zip(planned.iter_mut()) {
        if p.version.is_none() {
            inbound.resources.push(ResourceWrite {
                resource_type: p.resource_type.clone(),
                id: p.id.clone(),
                identifiers: identifiers(&e.resource),
                body: e.resource.to_string(),
            });
            p.resource = Some(e.resource);
        }
    }
    let (decoded, failure_expression) = match failure {
        Some((problem, expr)) => (Decoded::Failed(problem), expr),
        None => (Decoded::Events(events), None),
    };
    Prepared {
        inbound,
        decoded,
        planned,
        failure_expression,
        nothing_new,
    }
}

/// A partner's `meta` is kept but for the server-owned versionId and
/// lastUpdated, which cgthub sets when it answers.
fn keep_meta(m: &mut Map<String, Value>, mut meta: Value) {
    if let Value::Object(mm) = &mut meta {
        mm.remove("versionId");
        mm.remove("lastUpdated");
        if !mm.is_empty() {
            m.insert("meta".into(), meta);
        }
    }
}

/// A resource's identifiers as (system, value).
pub fn identifiers(resource: &Value) -> Vec<(String, String)> {
    let list = match resource.get("identifier") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        _ => Vec::new(),
    };
    list.into_iter()
        .filter_map(|i| {
            let value = i.get("value")?.as_str()?;
            let system = i.get("system").and_then(Value::as_str).unwrap_or_default();
            Some((system.to_string(), value.to_string()))
        })
        .collect()
}

/// Parses `If-None-Exist`: `identifier=system|value` or `identifier=value`.
pub fn parse_if_none_exist(query: &str) -> Result<(String, String), FhirError> {
    let q = query.trim_start_matches('?');
    let Some(v) = q.strip_prefix("identifier=").filter(|v| !v.contains('&')) else {
        return Err(FhirError::new(
            400,
            "not-supported",
            codes::UNSUPPORTED_INTERACTION,
            format!("If-None-Exist {query:?}: only identifier=[system|]value is supported"),
            None,
        ));
    };
    let v = percent_decode(v);
    Ok(match v.split_once('|') {
        Some((s, val)) => (s.to_string(), val.to_string()),
        None => (String::new(), v),
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(x) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `Type/id` relative references of a unit that no entry of it holds.
pub fn outside_references(unit: &Unit) -> Vec<(String, String)> {
    let inside: Vec<String> = unit
        .entries
        .iter()
        .filter_map(|e| type_and_id(&e.resource))
        .collect();
    let mut out = Vec::new();
    for e in &unit.entries {
        for_each_reference(&e.resource, &mut |r| {
            if r.starts_with("urn:") || r.starts_with('#') || inside.iter().any(|i| i == r) {
                return;
            }
            let mut parts = r.trim_end_matches('/').rsplit('/');
            if let (Some(id), Some(ty)) = (parts.next(), parts.next()) {
                let pair = (ty.to_string(), id.to_string());
                if ty.starts_with(|c: char| c.is_ascii_uppercase()) && !out.contains(&pair) {
                    out.push(pair);
                }
            }
        });
    }
    out
}

/// A refused request as a stored message: the bytes, the reason.
pub fn refused(payload: Bytes, partner: &str, origin: &str, e: &FhirError) -> (Inbound, Decoded) {
    let inbound = Inbound::new(KIND, partner, CONTENT_TYPE, None, payload, origin);
    let stage = Stage::Decode;
    (
        inbound,
        Decoded::Rejected(Problem::new(stage, e.code, e.reason())),
    )
}
