//! What the file intakes' HTTP endpoints share: the partner check, the
//! bearer token, reading a body with a cap, and answering from a receipt.
//!
//! Answers are JSON; errors are problem bodies (RFC 9457) with the hub's
//! stable `code` and the precise `reason`, as `cgthub dlq show` has them.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hub_core::tokens::{bearer, partner_for_token};
use hub_core::{Outcome, Problem, Receipt};
use serde_json::{json, Map, Value};

use super::config::{FileIntakeConfig, Section};
use crate::http::{problem, problem_with};

/// What is kept of a body too large to take.
pub const KEEP_OF_OVERSIZE: usize = 4096;

/// Refuses a request for a partner the config does not name, or whose
/// token is missing, unknown, or another partner's.
#[allow(clippy::result_large_err)]
pub fn admit<S: Section>(
    cfg: &FileIntakeConfig<S>,
    partner: &str,
    headers: &HeaderMap,
) -> Result<(), Response> {
    if !cfg.partners.iter().any(|p| p == partner) {
        return Err(problem(
            StatusCode::NOT_FOUND,
            format!("no partner {partner:?} in [{}] partners", S::NAME),
        ));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    let Some(token) = token else {
        return Err(problem(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required (Authorization: Bearer …)",
        ));
    };
    match partner_for_token(&cfg.tokens, token) {
        None => Err(problem(
            StatusCode::UNAUTHORIZED,
            "the bearer token is not one this hub knows",
        )),
        Some(p) if p != partner => Err(problem(
            StatusCode::FORBIDDEN,
            format!("the bearer token is partner {p:?}'s, not {partner:?}'s"),
        )),
        Some(_) => Ok(()),
    }
}

/// Whether the request's content type is one of `accepted` (parameters
/// such as `charset` ignored). A missing content type is accepted.
pub fn content_type_is(headers: &HeaderMap, accepted: &[&str]) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let ct = ct.to_str().unwrap_or("").split(';').next().unwrap_or("");
    accepted.iter().any(|a| ct.trim().eq_ignore_ascii_case(a))
}

/// Reads at most `max` bytes; `Err` holds the first bytes of a body too
/// large (axum's own limit answers with an opaque error and keeps nothing).
pub async fn read_limited(body: Body, max: u64) -> Result<Bytes, Bytes> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() as u64 > max {
                buf.truncate(KEEP_OF_OVERSIZE);
                return Err(buf.freeze());
            }
        }
    }
    Ok(buf.freeze())
}

/// The peer, for the stored message's origin.
pub fn origin(headers: &HeaderMap, via: &str) -> String {
    let peer = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    format!("{via} {peer}")
}

/// The JSON a receipt is reported as (HTTP body, drop-folder report).
pub fn receipt_json(receipt: &Receipt, problem: Option<&Problem>) -> Map<String, Value> {
    let (outcome, events) = match &receipt.outcome {
        Outcome::Accepted { events } => ("accepted", Some(*events)),
        Outcome::Failed(_) => ("failed", None),
        Outcome::Rejected(_) => ("rejected", None),
    };
    let mut m = Map::new();
    m.insert("message".into(), json!(receipt.message_row));
    m.insert("outcome".into(), json!(outcome));
    if let Some(n) = events {
        m.insert("events".into(), json!(n));
        m.insert("held".into(), json!(receipt.held));
    }
    m.insert("duplicate".into(), json!(receipt.duplicate));
    if let Some(p) = problem.or(receipt.problem.as_ref()) {
        m.insert("code".into(), json!(p.code));
        m.insert("reason".into(), json!(p.reason));
    }
    m
}

/// The answer to one message: 200 with the receipt when it was taken (or
/// was a repeat of one taken), else a problem with `status_of(problem)`.
pub fn answer(
    receipt: &Receipt,
    problem: Option<&Problem>,
    status_of: fn(&Problem) -> u16,
) -> Response {
    let body = receipt_json(receipt, problem);
    match (&receipt.outcome, problem.or(receipt.problem.as_ref())) {
        (Outcome::Accepted { .. }, _) | (_, None) => {
            (StatusCode::OK, axum::Json(Value::Object(body))).into_response()
        }
        (_, Some(p)) => {
            let status = if p.code == hub_core::store::IDENTITY_CONFLICT {
                409
            } else {
                status_of(p)
            };
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            problem_with(status, p.reason.clone(), body)
        }
    }
}

/// The answer to a request refused before its connector saw it (too
/// large, wrong content type): kept with its reason, answered `status`.
pub fn refused(receipt: &Receipt, p: &Problem, status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    problem_with(status, p.reason.clone(), receipt_json(receipt, Some(p)))
}

/// Keeps a body refused before its connector saw it (too large, wrong
/// content type) with its reason, as a rejected message of connector
/// `kind`, and answers `status`.
pub async fn refuse(
    hub: &hub_core::Hub,
    (kind, content_type): (&'static str, &'static str),
    bytes: Bytes,
    (partner, origin): (&str, &str),
    p: Problem,
    status: u16,
) -> Response {
    let inbound = hub_core::Inbound::new(kind, partner, content_type, None, bytes, origin);
    match hub
        .submit_explained(inbound, hub_core::Decoded::Rejected(p.clone()))
        .await
    {
        Ok((receipt, _)) => refused(&receipt, &p, status),
        Err(e) => unavailable(&e),
    }
}

/// The store could not take the message: nothing was kept, send again.
pub fn unavailable(e: &hub_core::store::StoreError) -> Response {
    tracing::error!(error = %e, "store unavailable; request refused");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "the store is unavailable; nothing was taken, send again",
    )
}
