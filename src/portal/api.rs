//! `/pdf-entry`: the portal's JSON API. Sign in with `POST /pdf-entry/login`
//! (a session cookie and a CSRF token), then upload, enter, verify and
//! resolve; every POST carries the token in `X-CSRF-Token`. Errors are
//! problem bodies (RFC 9457) with the hub's `code` where there is one.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cgthub_pdf_entry::Values;
use hub_core::error::Stage;
use hub_core::Problem;
use serde::Deserialize;
use serde_json::{json, Map};

use super::auth::{LoginError, Session};
use super::workflow::{Portal, PortalError, Resolved, CT_PDF};
use super::{session_cookie, session_of};
use crate::http::{problem, problem_with};
use crate::intake::http as h;

type St = Arc<Portal>;

pub fn router(portal: St) -> Router {
    Router::new()
        .route("/pdf-entry/login", post(login))
        .route("/pdf-entry/logout", post(logout))
        .route("/pdf-entry/{partner}/documents", post(upload))
        .route("/pdf-entry/documents", get(list))
        .route("/pdf-entry/documents/{id}", get(document))
        .route("/pdf-entry/documents/{id}/pdf", get(pdf))
        .route("/pdf-entry/documents/{id}/values", get(values))
        .route("/pdf-entry/documents/{id}/mismatches", get(mismatches))
        .route("/pdf-entry/documents/{id}/entry", post(enter))
        .route("/pdf-entry/documents/{id}/verification", post(verify))
        .route("/pdf-entry/documents/{id}/resolution", post(resolve))
        .with_state(portal)
}

/// The answer to a refused portal action.
pub fn error_response(e: &PortalError) -> Response {
    let mut ext = Map::new();
    let status = match e {
        PortalError::NotFound(_) | PortalError::UnknownPartner(_) => StatusCode::NOT_FOUND,
        PortalError::Forbidden(_) => StatusCode::FORBIDDEN,
        PortalError::Conflict(_) => StatusCode::CONFLICT,
        PortalError::Invalid(errors) => {
            ext.insert("errors".into(), json!(errors));
            StatusCode::UNPROCESSABLE_ENTITY
        }
        PortalError::BadSignature => {
            ext.insert("code".into(), json!("signature_refused"));
            StatusCode::UNAUTHORIZED
        }
        PortalError::Refused { code, message, .. } => {
            ext.insert("code".into(), json!(code));
            ext.insert("message".into(), json!(message));
            StatusCode::UNPROCESSABLE_ENTITY
        }
        PortalError::Store(err) => {
            tracing::error!(error = %err, "portal: store unavailable");
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    problem_with(status, e.to_string(), ext)
}

/// The signed-in user, or 401; for a POST also the CSRF token, or 403.
#[allow(clippy::result_large_err)]
fn signed_in(p: &Portal, headers: &HeaderMap, posting: bool) -> Result<Session, Response> {
    let Some(s) = session_of(p, headers) else {
        return Err(problem(
            StatusCode::UNAUTHORIZED,
            "sign in first (POST /pdf-entry/login); the session is missing or expired",
        ));
    };
    if posting {
        let token = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !p.auth.csrf_ok(&s, token) {
            return Err(problem(
                StatusCode::FORBIDDEN,
                "the X-CSRF-Token header is missing or not this session's",
            ));
        }
    }
    Ok(s)
}

#[derive(Deserialize)]
struct Login {
    user: String,
    password: String,
}

/// What signing in with a password does, for both fronts: the session
/// and its cookie, or why not (audited either way).
pub(crate) async fn sign_in(
    p: &Portal,
    user: &str,
    password: &str,
) -> Result<(Session, String), LoginError> {
    match p.auth.check_password(user, password).await {
        Ok(()) => {
            let (s, cookie) = p.auth.open(user).ok_or(LoginError::BadCredentials)?;
            p.audit(user, "portal.login", "portal", json!({})).await;
            Ok((s, cookie))
        }
        Err(e) => {
            p.audit(
                user,
                "portal.login_refused",
                "portal",
                json!({"reason": e.to_string()}),
            )
            .await;
            Err(e)
        }
    }
}

async fn login(State(p): State<St>, headers: HeaderMap, raw: bytes::Bytes) -> Response {
    let l: Login = match body(&headers, &raw) {
        Ok(l) => l,
        Err(r) => return r,
    };
    match sign_in(&p, &l.user, &l.password).await {
        Ok((s, cookie)) => {
            let max_age = (s.expires - chrono::Utc::now()).num_seconds();
            (
                [(header::SET_COOKIE, session_cookie(&cookie, max_age))],
                Json(json!({
                    "user": s.user,
                    "display_name": s.display_name,
                    "roles": s.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                    "csrf": p.auth.csrf(&s),
                    "expires_at": s.expires,
                })),
            )
                .into_response()
        }
        Err(e @ LoginError::LockedOut(_)) => problem(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
        Err(e) => problem(StatusCode::UNAUTHORIZED, e.to_string()),
    }
}

async fn logout(State(p): State<St>, headers: HeaderMap) -> Response {
    let s = match signed_in(&p, &headers, true) {
        Ok(s) => s,
        Err(r) => return r,
    };
    p.auth.close(&s);
    p.audit(&s.user, "portal.logout", "portal", json!({})).await;
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, super::expired_cookie())],
    )
        .into_response()
}

/// Takes an upload's body: the checks before the bytes are kept (partner,
/// role, content type, size) and then the upload itself. Shared with the
/// HTML form, which hands over the file's bytes.
pub(crate) async fn take_upload(
    p: &Portal,
    s: &Session,
    partner: &str,
    content_type_ok: bool,
    body: Result<bytes::Bytes, bytes::Bytes>,
) -> Result<super::workflow::Uploaded, PortalError> {
    p.template(partner)?;
    if !s.has(super::config::Role::DataEntry) {
        return Err(PortalError::Forbidden(format!(
            "{} may not upload documents: that needs role data_entry",
            s.user
        )));
    }
    let origin = format!("portal {}", s.user);
    let refuse = |code: &'static str, reason: String| Problem::new(Stage::Decode, code, reason);
    let (bytes, problem) = match body {
        Err(kept) => (
            kept.clone(),
            Some((
                refuse(
                    "too_large",
                    format!(
                        "larger than {} bytes (pdf_entry.max_body_bytes); its first {} bytes are kept",
                        p.cfg.max_body_bytes,
                        kept.len()
                    ),
                ),
                413,
            )),
        ),
        Ok(b) if !content_type_ok => (
            b,
            Some((
                refuse(
                    "unsupported_media_type",
                    "documents are uploaded as application/pdf".into(),
                ),
                415,
            )),
        ),
        Ok(b) => (b, None),
    };
    if let Some((pr, status)) = problem {
        let inbound =
            hub_core::Inbound::new(cgthub_pdf_entry::KIND, partner, CT_PDF, None, bytes, origin);
        let (receipt, _) = p
            .hub
            .submit_explained(inbound, hub_core::Decoded::Rejected(pr.clone()))
            .await?;
        return Err(PortalError::Refused {
            code: if status == 413 {
                "too_large"
            } else {
                "unsupported_media_type"
            },
            reason: pr.reason,
            message: receipt.message_row,
        });
    }
    p.upload(s, partner, bytes).await
}

async fn upload(
    State(p): State<St>,
    Path(partner): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let s = match signed_in(&p, &headers, true) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Err(e) = p.template(&partner) {
        return error_response(&e);
    }
    let body = h::read_limited(body, p.cfg.max_body_bytes).await;
    let ct_ok = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|_| h::content_type_is(&headers, &[CT_PDF]));
    match take_upload(&p, &s, &partner, ct_ok, body).await {
        Ok(u) => {
            let status = if u.duplicate {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            let location = format!("/pdf-entry/documents/{}", u.document.id);
            (status, [(header::LOCATION, location)], Json(u)).into_response()
        }
        Err(PortalError::Refused {
            code: c @ ("too_large" | "unsupported_media_type"),
            reason,
            message,
        }) => {
            let status = if c == "too_large" {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            };
            let mut ext = Map::new();
            ext.insert("code".into(), json!(c));
            ext.insert("message".into(), json!(message));
            problem_with(status, reason, ext)
        }
        Err(e) => error_response(&e),
    }
}

/// A JSON body, or a problem answer: 415 when it is not sent as JSON, 400
/// when it is not the JSON this call takes (naming where).
#[allow(clippy::result_large_err)]
fn body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, bytes: &[u8]) -> Result<T, Response> {
    if !h::content_type_is(headers, &["application/json"]) {
        return Err(problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as application/json",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let mut ext = Map::new();
        ext.insert("code".into(), json!("malformed_json"));
        problem_with(
            StatusCode::BAD_REQUEST,
            format!("the body is not the JSON this call takes: {e}"),
            ext,
        )
    })
}

/// A signed-in POST with its JSON body: the session (401, 403 for the
/// CSRF token) is checked before the body is read.
#[allow(clippy::result_large_err)]
fn signed_body<T: serde::de::DeserializeOwned>(
    p: &Portal,
    headers: &HeaderMap,
    raw: &[u8],
) -> Result<(Session, T), Response> {
    let s = signed_in(p, headers, true)?;
    Ok((s, body(headers, raw)?))
}

fn reply<T: serde::Serialize>(r: Result<T, PortalError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn list(State(p): State<St>, headers: HeaderMap) -> Response {
    if let Err(r) = signed_in(&p, &headers, false) {
        return r;
    }
    reply(p.list().await.map(|d| json!({ "documents": d })))
}

async fn document(State(p): State<St>, Path(id): Path<i64>, headers: HeaderMap) -> Response {
    if let Err(r) = signed_in(&p, &headers, false) {
        return r;
    }
    reply(
        p.document(id)
            .await
            .and_then(|d| d.ok_or(PortalError::NotFound(id))),
    )
}

pub(crate) async fn pdf_bytes(p: &Portal, id: i64) -> Response {
    match p.pdf(id).await {
        Ok(b) => (
            [
                (header::CONTENT_TYPE, CT_PDF.to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("inline; filename=\"document-{id}.pdf\""),
                ),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            ],
            b,
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

async fn pdf(State(p): State<St>, Path(id): Path<i64>, headers: HeaderMap) -> Response {
    if let Err(r) = signed_in(&p, &headers, false) {
        return r;
    }
    pdf_bytes(&p, id).await
}

async fn values(State(p): State<St>, Path(id): Path<i64>, headers: HeaderMap) -> Response {
    let s = match signed_in(&p, &headers, false) {
        Ok(s) => s,
        Err(r) => return r,
    };
    reply(p.entered_values(&s, id).await)
}

async fn mismatches(State(p): State<St>, Path(id): Path<i64>, headers: HeaderMap) -> Response {
    let s = match signed_in(&p, &headers, false) {
        Ok(s) => s,
        Err(r) => return r,
    };
    reply(
        p.mismatches(&s, id)
            .await
            .map(|m| json!({ "mismatches": m })),
    )
}

async fn enter(
    State(p): State<St>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    raw: bytes::Bytes,
) -> Response {
    let (s, v): (Session, Values) = match signed_body(&p, &headers, &raw) {
        Ok(x) => x,
        Err(r) => return r,
    };
    reply(p.enter(&s, id, v).await)
}

#[derive(Deserialize)]
struct Verification {
    values: Values,
    password: String,
    #[serde(default)]
    confirmed: Option<Vec<String>>,
}

async fn verify(
    State(p): State<St>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    raw: bytes::Bytes,
) -> Response {
    let (s, v): (Session, Verification) = match signed_body(&p, &headers, &raw) {
        Ok(x) => x,
        Err(r) => return r,
    };
    reply(p.verify(&s, id, v.values, v.confirmed, &v.password).await)
}

#[derive(Deserialize)]
struct Resolution {
    resolved: BTreeMap<String, Resolved>,
    password: String,
}

async fn resolve(
    State(p): State<St>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    raw: bytes::Bytes,
) -> Response {
    let (s, r): (Session, Resolution) = match signed_body(&p, &headers, &raw) {
        Ok(x) => x,
        Err(r) => return r,
    };
    reply(p.resolve(&s, id, r.resolved, &r.password).await)
}
