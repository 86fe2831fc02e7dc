//! The dead-letter API: list, show, replay and purge.
//!
//! - `GET /api/dead-letters?status=open|replayed|purged|all&stage=&code=&limit=`
//!   (newest first; `status` defaults to `open`; `reason` is taken for `code`)
//! - `GET /api/dead-letters/{id}`: the dead letter, its message with the
//!   payload, its error chain and the audit records about it
//! - `POST /api/dead-letters/replay`: `{"ids": [1, 2], "actor": "…"}` or
//!   `{"all": true, "code": "CODE", "actor": "…"}` (`reason` is taken for
//!   `code` here)
//! - `POST /api/dead-letters/purge`: `{"ids": [..]}` or `{"all": true,
//!   "code": "CODE"}`, with `"reason": "why"` (required) and `"actor"`
//!
//! Replay and purge answer 200 with one result per dead letter
//! (`{"results": [{"id", "outcome", "detail"}]}`), whatever each outcome;
//! a request that is wrong gets a 400 problem body and changes nothing.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hub_core::dead_letters::DeadLetterSelection;
use hub_core::store::{
    AuditRecord, DeadLetter, DeadLetterFilter, DeadLetterStatus, DlqOutcome, DlqResult,
    HistoryEntry, StoreError,
};
use hub_core::Hub;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{problem, store_problem};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    status: Option<String>,
    stage: Option<String>,
    code: Option<String>,
    reason: Option<String>,
    limit: Option<u32>,
}

/// `all` → every status; absent → open.
pub fn parse_status(s: Option<&str>) -> Result<Option<DeadLetterStatus>, String> {
    match s {
        None => Ok(Some(DeadLetterStatus::Open)),
        Some("all") => Ok(None),
        Some(s) => DeadLetterStatus::parse(s)
            .map(Some)
            .ok_or_else(|| format!("unknown status {s:?}: open, replayed, purged or all")),
    }
}

pub(super) async fn list(
    State(hub): State<Hub>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let status = match parse_status(q.status.as_deref()) {
        Ok(s) => s,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e),
    };
    let filter = DeadLetterFilter {
        status,
        stage: q.stage,
        code: q.code.or(q.reason),
        limit: q.limit.unwrap_or(100).min(10_000),
    };
    match hub.store().list_dead_letters(&filter).await {
        Ok(rows) => Json(json!({
            "dead_letters": rows.iter().map(dead_letter_json).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => store_problem(e),
    }
}

pub(super) async fn show(State(hub): State<Hub>, id: Result<Path<i64>, PathRejection>) -> Response {
    let Path(id) = match id {
        Ok(id) => id,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match hub.store().dead_letter_detail(id).await {
        Ok(Some(d)) => {
            let m = &d.message;
            Json(json!({
                "dead_letter": dead_letter_json(&d.dead_letter),
                "message": {
                    "id": m.id,
                    "connector": m.connector,
                    "partner": m.partner,
                    "message_id": m.message_id,
                    "content_type": m.content_type,
                    "sha256": m.sha256,
                    "status": m.status.as_str(),
                    "received_at": m.received_at,
                    "origin": m.origin,
                    "size": m.payload.len(),
                    "payload": String::from_utf8_lossy(&m.payload),
                },
                "history": d.history.iter().map(history_json).collect::<Vec<_>>(),
                "audit": d.audit.iter().map(audit_json).collect::<Vec<_>>(),
            }))
            .into_response()
        }
        Ok(None) => problem(StatusCode::NOT_FOUND, format!("no dead letter {id}")),
        Err(e) => store_problem(e),
    }
}

/// What an operator asks to replay or purge.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ActionBody {
    #[serde(default)]
    ids: Vec<i64>,
    #[serde(default)]
    all: bool,
    /// With `all`: the reason code.
    code: Option<String>,
    /// Replay: taken for `code`. Purge: why (required).
    reason: Option<String>,
    /// Who asks (recorded in the audit log).
    actor: Option<String>,
}

fn selection(
    ids: Vec<i64>,
    all: bool,
    code: Option<String>,
) -> Result<DeadLetterSelection, String> {
    match (all, ids.is_empty(), code) {
        (true, true, Some(code)) if !code.trim().is_empty() => {
            Ok(DeadLetterSelection::OpenWithCode(code))
        }
        (true, true, _) => Err("\"all\" needs the reason \"code\" of the dead letters".into()),
        (true, false, _) => Err("give either \"ids\" or \"all\", not both".into()),
        (false, false, _) => Ok(DeadLetterSelection::Ids(ids)),
        (false, true, _) => {
            Err("name the dead letters: \"ids\", or \"all\" with a \"code\"".into())
        }
    }
}

fn actor(body: &ActionBody) -> Option<String> {
    body.actor
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
}

fn no_actor() -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        "\"actor\" is required: who asks is recorded in the audit log",
    )
}

pub(super) async fn replay(
    State(hub): State<Hub>,
    body: Result<Json<ActionBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return problem(e.status(), e.body_text()),
    };
    let Some(actor) = actor(&body) else {
        return no_actor();
    };
    let which = match selection(body.ids, body.all, body.code.or(body.reason)) {
        Ok(w) => w,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e),
    };
    results(hub.replay_dead_letters(which, &actor).await)
}

pub(super) async fn purge(
    State(hub): State<Hub>,
    body: Result<Json<ActionBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return problem(e.status(), e.body_text()),
    };
    let Some(actor) = actor(&body) else {
        return no_actor();
    };
    let Some(reason) = body.reason.filter(|r| !r.trim().is_empty()) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "\"reason\" is required: say why these dead letters are given up",
        );
    };
    let which = match selection(body.ids, body.all, body.code) {
        Ok(w) => w,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e),
    };
    results(hub.purge_dead_letters(which, &actor, &reason).await)
}

fn results(r: Result<Vec<DlqResult>, StoreError>) -> Response {
    match r {
        Ok(results) => Json(json!({
            "results": results.iter().map(result_json).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(StoreError::Invalid { reason, .. }) => problem(StatusCode::BAD_REQUEST, reason),
        Err(e) => store_problem(e),
    }
}

fn result_json(r: &DlqResult) -> Value {
    let mut v = json!({
        "id": r.id,
        "outcome": r.outcome.as_str(),
        "detail": r.outcome.detail(),
    });
    if let DlqOutcome::Failed { code, reason } = &r.outcome {
        v["code"] = json!(code);
        v["reason"] = json!(reason);
    }
    v
}

pub fn dead_letter_json(d: &DeadLetter) -> Value {
    json!({
        "id": d.id,
        "status": d.status.as_str(),
        "stage": d.stage,
        "class": d.class.as_str(),
        "code": d.code,
        "reason": d.reason,
        "partner": d.partner,
        "connector": d.connector,
        "coi": d.coi,
        "message_row": d.message_row,
        "event_id": d.event_id,
        "outbox_id": d.outbox_id,
        "route": d.route,
        "sink": d.sink,
        "routing_key": d.routing_key,
        "attempts": d.attempts,
        "created_at": d.created_at,
        "first_attempt_at": d.first_attempt_at,
        "last_attempt_at": d.last_attempt_at,
        "replayed_at": d.replayed_at,
        "replayed_by": d.replayed_by,
        "purged_at": d.purged_at,
        "purged_by": d.purged_by,
        "purge_reason": d.purge_reason,
    })
}

pub fn history_json(h: &HistoryEntry) -> Value {
    json!({
        "at": h.at,
        "actor": h.actor,
        "action": h.action,
        "code": h.code,
        "note": h.note,
    })
}

pub fn audit_json(a: &AuditRecord) -> Value {
    json!({
        "id": a.id,
        "at": a.at,
        "actor": a.actor,
        "action": a.action,
        "subject": a.subject,
        "detail": serde_json::from_str::<Value>(&a.detail).unwrap_or(Value::String(a.detail.clone())),
        "hash": a.hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_default_to_open_and_all_means_any() {
        assert_eq!(parse_status(None), Ok(Some(DeadLetterStatus::Open)));
        assert_eq!(parse_status(Some("all")), Ok(None));
        assert_eq!(
            parse_status(Some("purged")),
            Ok(Some(DeadLetterStatus::Purged))
        );
        assert!(parse_status(Some("closed")).is_err());
    }

    #[test]
    fn a_selection_is_ids_or_all_with_a_code() {
        assert_eq!(
            selection(vec![3, 1], false, None),
            Ok(DeadLetterSelection::Ids(vec![3, 1]))
        );
        assert_eq!(
            selection(vec![], true, Some("unroutable".into())),
            Ok(DeadLetterSelection::OpenWithCode("unroutable".into()))
        );
        assert!(selection(vec![], true, None).is_err());
        assert!(selection(vec![], true, Some(" ".into())).is_err());
        assert!(selection(vec![1], true, Some("x".into())).is_err());
        assert!(selection(vec![], false, Some("x".into())).is_err());
    }
}
