//! The `/fhir` endpoint (axum): answers as a FHIR R4 server answers.
//!
//! Every request is authenticated by a partner's bearer token; every
//! refusal is an OperationOutcome, and every body that arrived is stored
//! (with its reason when refused) before the answer goes out.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use hub_core::{Decoded, Hub, Outcome};
use serde_json::{json, Value};

use crate::codes::SUPPORTED_TYPES;
use crate::connector::{new_resource_id, FhirConnector};
use crate::intake::{self, BundleKind, Interaction, Known, Target, Unit};
use crate::outcome::{self, codes, status_line, FhirError};

const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
/// What is kept of a body too large to take.
const KEEP_OF_OVERSIZE: usize = 4096;

#[derive(Clone)]
struct St {
    hub: Hub,
    conn: Arc<FhirConnector>,
}

/// The routes, to be nested under `/fhir`.
pub fn router(hub: Hub, conn: Arc<FhirConnector>) -> Router {
    Router::new()
        .route("/metadata", get(metadata))
        .route("/", post(system))
        .route("/{ty}", post(create))
        .route("/{ty}/{id}", get(read).put(update))
        .method_not_allowed_fallback(|| async {
            error_response(&FhirError::new(
                405,
                "not-supported",
                codes::UNSUPPORTED_INTERACTION,
                "this interaction is not supported here: create (POST), update (PUT), read (GET), \
                 transaction and batch (see /fhir/metadata)",
                None,
            ))
        })
        .fallback(|| async {
            error_response(&FhirError::new(
                404,
                "not-supported",
                codes::UNSUPPORTED_INTERACTION,
                "no such FHIR interaction here (see /fhir/metadata)",
                None,
            ))
        })
        .with_state(St { hub, conn })
}

fn fhir_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, FHIR_JSON)],
        body.to_string(),
    )
        .into_response()
}

fn error_response(e: &FhirError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
    let mut r = fhir_json(status, &e.outcome());
    if e.status == 401 {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

async fn metadata(State(st): State<St>) -> Response {
    let resources: Vec<Value> = SUPPORTED_TYPES
        .iter()
        .map(|t| {
            json!({
                "type": t,
                "interaction": [{"code": "create"}, {"code": "update"}, {"code": "read"}],
                "versioning": "versioned-update",
                "updateCreate": true,
                "conditionalCreate": true,
                "searchParam": [{"name": "identifier", "type": "token",
                    "documentation": "Only in If-None-Exist: identifier=[system|]value"}],
            })
        })
        .collect();
    let body = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        "kind": "instance",
        "software": {"name": "cgthub", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "cgthub: cell and gene therapy integration hub"},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": format!(
                "Creates and updates of the listed types and transaction or batch Bundles \
                 are mapped to therapy events. Bodies up to {} bytes.",
                st.conn.config().max_body_bytes
            ),
            "security": {"description": "A bearer token per partner (Authorization: Bearer …)."},
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
        }],
    });
    fhir_json(StatusCode::OK, &body)
}

/// How the partner wants a write answered (`Prefer: return=…`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

fn prefer(headers: &HeaderMap) -> Return {
    let p = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if p.contains("return=minimal") {
        Return::Minimal
    } else if p.contains("return=OperationOutcome") {
        Return::OperationOutcome
    } else {
        Return::Representation
    }
}

/// The partner a request's bearer token belongs to.
fn authenticate(st: &St, headers: &HeaderMap) -> Result<String, FhirError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let denied = |why: &str| FhirError::new(401, "login", "unauthorized", why.to_string(), None);
    match token {
        None => Err(denied(
            "a bearer token is required (Authorization: Bearer …)",
        )),
        Some(t) => st
            .conn
            .partner_for_token(t)
            .map(str::to_string)
            .ok_or_else(|| denied("the bearer token is not one this hub knows")),
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), FhirError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mime = ct.split(';').next().unwrap_or_default().trim();
    if mime.eq_ignore_ascii_case("application/fhir+json")
        || mime.eq_ignore_ascii_case("application/json")
    {
        Ok(())
    } else {
        Err(FhirError::new(
            415,
            "not-supported",
            codes::UNSUPPORTED_INTERACTION,
            format!("Content-Type {ct:?}: send application/fhir+json"),
            None,
        ))
    }
}

fn origin(headers: &HeaderMap) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| "http".to_string(), |f| format!("http {f}"))
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}/fhir")
}

async fn system(State(st): State<St>, headers: HeaderMap, body: Body) -> Response {
    write(st, headers, body, Target::System).await
}

async fn create(
    State(st): State<St>,
    Path(ty): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    write(st, headers, body, Target::Create(ty)).await
}

async fn update(
    State(st): State<St>,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    write(st, headers, body, Target::Update(ty, id)).await
}

async fn read(
    State(st): State<St>,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authenticate(&st, &headers) {
        return error_response(&e);
    }
    match st.hub.store().resource(&ty, &id).await {
        Ok(Some(k)) => {
            let mut r = with_meta(&k.body, k.version, &k.updated_at);
            let mut resp = fhir_json(StatusCode::OK, &r.take());
            set_version_headers(&mut resp, k.version, &k.updated_at);
            resp
        }
        Ok(None) => error_response(&FhirError::new(
            404,
            "not-found",
            "not_found",
            format!("{ty}/{id} is not known here"),
            None,
        )),
        Err(e) => unavailable(&e),
    }
}

fn unavailable(e: &hub_core::store::StoreError) -> Response {
    tracing::error!(error = %e, "FHIR: store unavailable");
    error_response(&FhirError::new(
        503,
        "transient",
        "store_unavailable",
        "the store is unavailable; nothing was taken, send again",
        None,
    ))
}

fn with_meta(body: &str, version: i64, updated: &str) -> Value {
    with_meta_value(
        serde_json::from_str(body).unwrap_or(Value::Null),
        version,
        updated,
    )
}

fn with_meta_value(mut v: Value, version: i64, updated: &str) -> Value {
    if let Value::Object(m) = &mut v {
        let meta = m.entry("meta").or_insert_with(|| json!({}));
        if let Value::Object(mm) = meta {
            mm.insert("versionId".into(), json!(version.to_string()));
            mm.insert("lastUpdated".into(), json!(updated));
        }
    }
    v
}

fn set_version_headers(resp: &mut Response, version: i64, updated: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!("W/\"{version}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(updated) {
        if let Ok(v) =
            HeaderValue::from_str(&d.to_utc().format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        {
            resp.headers_mut().insert(header::LAST_MODIFIED, v);
        }
    }
}

/// One entry's answer.
struct Answered {
    status: u16,
    resource_type: String,
    id: String,
    version: i64,
    updated: String,
    resource: Option<Value>,
}

impl Answered {
    fn location(&self) -> String {
        format!(
            "{}/{}/_history/{}",
            self.resource_type, self.id, self.version
        )
    }
}

async fn write(st: St, headers: HeaderMap, body: Body, target: Target) -> Response {
    let partner = match authenticate(&st, &headers) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(target = ?target, "FHIR: request without a valid bearer token refused");
            return error_response(&e);
        }
    };
    let origin = origin(&headers);
    let max = st.conn.config().max_body_bytes;
    let bytes = match read_limited(body, max).await {
        Ok(b) => b,
        Err(kept) => {
            let e = FhirError::new(
                413,
                "too-costly",
                codes::TOO_LARGE,
                format!(
                    "the body is larger than {max} bytes; its first {} bytes are kept",
                    kept.len()
                ),
                None,
            );
            return refuse(&st, kept, &partner, &origin, e).await;
        }
    };
    if let Err(e) = check_content_type(&headers) {
        return refuse(&st, bytes, &partner, &origin, e).await;
    }
    let parsed = match intake::parse(&bytes, &target) {
        Ok(p) => p,
        Err(e) => return refuse(&st, bytes, &partner, &origin, e).await,
    };
    let ret = prefer(&headers);
    let header_if_none_exist = headers
        .get("if-none-exist")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let header_if_match = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut answers: Vec<Result<Vec<Answered>, FhirError>> = Vec::with_capacity(parsed.units.len());
    for unit in parsed.units {
        let answer = match unit {
            Ok(mut unit) => {
                if let (Some(q), Some(e)) = (&header_if_none_exist, unit.entries.first_mut()) {
                    if e.interaction == Interaction::Create && e.if_none_exist.is_none() {
                        e.if_none_exist = Some(q.clone());
                    }
                }
                if let (Some(m), Some(e), None) =
                    (&header_if_match, unit.entries.first_mut(), parsed.bundle)
                {
                    if matches!(e.interaction, Interaction::Update(_)) {
                        e.if_match = Some(m.clone());
                    }
                }
                take_unit(&st, unit, &partner, &origin, ret == Return::Representation).await
            }
            Err(e) => {
                let kept = refuse_keep(&st, bytes.clone(), &partner, &origin, &e).await;
                match kept {
                    Ok(()) => Err(e),
                    Err(resp_err) => Err(resp_err),
                }
            }
        };
        answers.push(answer);
    }
    match parsed.bundle {
        None => single(
            answers.pop().unwrap_or_else(|| Err(internal())),
            ret,
            &headers,
        ),
        Some(kind) => bundle_response(kind, answers, ret),
    }
}

fn internal() -> FhirError {
    FhirError::new(500, "exception", "internal", "nothing to answer", None)
}

/// Reads at most `max` bytes; `Err` holds the first bytes of a body too large.
async fn read_limited(body: Body, max: usize) -> Result<Bytes, Bytes> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > max {
                buf.truncate(KEEP_OF_OVERSIZE.min(max));
                return Err(buf.freeze());
            }
        }
    }
    let _ = to_bytes; // (axum's helper refuses with an opaque error; we keep the head)
    Ok(buf.freeze())
}

/// Stores a refused body with its reason, then answers the error.
async fn refuse(st: &St, bytes: Bytes, partner: &str, origin: &str, e: FhirError) -> Response {
    match refuse_keep(st, bytes, partner, origin, &e).await {
        Ok(()) => error_response(&e),
        Err(unavail) => error_response(&unavail),
    }
}

async fn refuse_keep(
    st: &St,
    bytes: Bytes,
    partner: &str,
    origin: &str,
    e: &FhirError,
) -> Result<(), FhirError> {
    let (inbound, decoded) = intake::refused(bytes, partner, origin, e);
    tracing::info!(
        partner,
        code = e.code,
        status = e.status,
        "FHIR: request refused"
    );
    match st.hub.submit(inbound, decoded).await {
        Ok(_) => Ok(()),
        Err(err) => {
            tracing::error!(error = %err, "FHIR: store unavailable");
            Err(FhirError::new(
                503,
                "transient",
                "store_unavailable",
                "the store is unavailable; nothing was taken, send again",
                None,
            ))
        }
    }
}

/// Looks up what the unit needs, maps it, stores it. `bodies`: whether the
/// answer shows the resources (else only where they are).
async fn take_unit(
    st: &St,
    unit: Unit,
    partner: &str,
    origin: &str,
    bodies: bool,
) -> Result<Vec<Answered>, FhirError> {
    let store = st.hub.store();
    let unavailable = |e: hub_core::store::StoreError| {
        tracing::error!(error = %e, "FHIR: store unavailable");
        FhirError::new(
            503,
            "transient",
            "store_unavailable",
            "the store is unavailable; send again",
            None,
        )
    };
    let mut known = Known::default();
    for (n, e) in unit.entries.iter().enumerate() {
        let ty = e.resource["resourceType"].as_str().unwrap_or_default();
        match &e.interaction {
            Interaction::Create => {
                if let Some(q) = &e.if_none_exist {
                    let (system, value) =
                        intake::parse_if_none_exist(q).map_err(|err| err.in_entry(e.index))?;
                    if let Some(k) = store
                        .resource_by_identifier(ty, &system, &value)
                        .await
                        .map_err(unavailable)?
                    {
                        known.existing.insert(n, (k.id, k.version));
                    }
                }
            }
            Interaction::Update(id) => {
                let current = store.resource(ty, id).await.map_err(unavailable)?;
                if let Some(tag) = &e.if_match {
                    let want = tag.trim().trim_start_matches("W/").trim_matches('"');
                    let have = current.as_ref().map(|k| k.version.to_string());
                    if have.as_deref() != Some(want) {
                        let err = FhirError::new(
                            412,
                            "conflict",
                            "version_conflict",
                            match have {
                                Some(v) => {
                                    format!("{ty}/{id} is at version {v}, not {want} (If-Match)")
                                }
                                None => format!("{ty}/{id} does not exist here (If-Match {want})"),
                            },
                            None,
                        )
                        .in_entry(e.index);
                        refuse_keep(st, unit.payload.clone(), partner, origin, &err).await?;
                        return Err(err);
                    }
                }
                known.updates_existing.insert(n, current.is_some());
            }
        }
    }
    for (ty, id) in intake::outside_references(&unit) {
        if let Some(k) = store.resource(&ty, &id).await.map_err(unavailable)? {
            if let Ok(v) = serde_json::from_str(&k.body) {
                known.resources.push(v);
            }
        }
    }
    let prepared = intake::prepare(
        unit,
        &known,
        partner,
        origin,
        &st.conn.mappings,
        &mut new_resource_id,
    );
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    if prepared.nothing_new {
        return Ok(prepared
            .planned
            .into_iter()
            .map(|p| Answered {
                status: 200,
                resource_type: p.resource_type,
                id: p.id,
                version: p.version.unwrap_or_default(),
                updated: now.clone(),
                resource: None,
            })
            .collect());
    }
    let failure_expression = prepared.failure_expression.clone();
    let mapped_ok = matches!(prepared.decoded, Decoded::Events(_));
    let (receipt, problem) = st
        .hub
        .submit_explained(prepared.inbound, prepared.decoded)
        .await
        .map_err(unavailable)?;
    if receipt.duplicate {
        let kept = store
            .resources_of_message(receipt.message_row)
            .await
            .map_err(unavailable)?;
        if let Outcome::Accepted { .. } = receipt.outcome {
            return Ok(kept
                .into_iter()
                .map(|k| Answered {
                    status: 200,
                    resource: Some(with_meta(&k.body, k.version, &k.updated_at)),
                    resource_type: k.resource_type,
                    id: k.id,
                    version: k.version,
                    updated: k.updated_at,
                })
                .collect());
        }
    }
    match (&receipt.outcome, problem) {
        (Outcome::Accepted { .. }, _) => {
            tracing::info!(
                partner,
                message = receipt.message_row,
                held = receipt.held,
                "FHIR: taken"
            );
            Ok(prepared
                .planned
                .into_iter()
                .map(|p| {
                    let version = p.version.unwrap_or(receipt.message_row);
                    Answered {
                        status: p.status,
                        resource: p
                            .resource
                            .filter(|_| bodies)
                            .map(|r| with_meta_value(r, version, &now)),
                        resource_type: p.resource_type,
                        id: p.id,
                        version,
                        updated: now.clone(),
                    }
                })
                .collect())
        }
        (outcome, problem) => {
            let (code, reason) = match (&problem, outcome) {
                (Some(p), _) => (p.code, p.reason.clone()),
                (None, Outcome::Failed(r) | Outcome::Rejected(r)) => ("failed", r.clone()),
                (None, Outcome::Accepted { .. }) => ("failed", String::new()),
            };
            let status = problem.as_ref().map_or(422, |p| p.http_status());
            let issue = if status == 409 {
                "conflict"
            } else if mapped_ok {
                "business-rule"
            } else {
                "processing"
            };
            tracing::info!(
                partner,
                message = receipt.message_row,
                code,
                status,
                "FHIR: failed"
            );
            Err(FhirError::new(
                status,
                issue,
                code,
                reason,
                failure_expression,
            ))
        }
    }
}

fn single(answer: Result<Vec<Answered>, FhirError>, ret: Return, headers: &HeaderMap) -> Response {
    let mut list = match answer {
        Ok(a) => a,
        Err(e) => return error_response(&e),
    };
    let Some(a) = list.pop() else {
        return error_response(&internal());
    };
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
    let mut resp = match ret {
        Return::Minimal => status.into_response(),
        Return::OperationOutcome => fhir_json(
            status,
            &outcome::outcome(
                "information",
                "informational",
                &format!(
                    "{} {}",
                    a.location(),
                    if a.status == 201 { "created" } else { "taken" }
                ),
                None,
            ),
        ),
        Return::Representation => match &a.resource {
            Some(r) => fhir_json(status, r),
            None => status.into_response(),
        },
    };
    if let Ok(v) = HeaderValue::from_str(&format!("{}/{}", base_url(headers), a.location())) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    set_version_headers(&mut resp, a.version, &a.updated);
    resp
}

fn bundle_response(
    kind: BundleKind,
    answers: Vec<Result<Vec<Answered>, FhirError>>,
    ret: Return,
) -> Response {
    let (ty, transaction) = match kind {
        BundleKind::Transaction => ("transaction-response", true),
        BundleKind::Batch => ("batch-response", false),
    };
    if transaction {
        if let Some(Err(e)) = answers.first() {
            return error_response(e);
        }
    }
    let mut entries = Vec::new();
    for a in answers {
        match a {
            Ok(list) => {
                for a in list {
                    let mut response = json!({
                        "status": status_line(a.status),
                        "location": a.location(),
                        "etag": format!("W/\"{}\"", a.version),
                        "lastModified": a.updated,
                    });
                    if ret == Return::OperationOutcome {
                        response["outcome"] =
                            outcome::outcome("information", "informational", "taken", None);
                    }
                    let mut entry = json!({"response": response});
                    if ret == Return::Representation {
                        if let Some(r) = a.resource {
                            entry["resource"] = r;
                        }
                    }
                    entries.push(entry);
                }
            }
            Err(e) => entries.push(json!({
                "response": {"status": status_line(e.status), "outcome": e.outcome()}
            })),
        }
    }
    let body = json!({
        "resourceType": "Bundle",
        "id": new_resource_id(),
        "type": ty,
        "entry": entries,
    });
    fhir_json(StatusCode::OK, &body)
}
