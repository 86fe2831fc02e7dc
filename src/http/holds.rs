//! The identity registry's operator API: held events and journeys.
//!
//! - `GET /api/holds?state=held|released|rejected|expired|quarantined|all&coi=&limit=`
//!   (newest first; `state` defaults to `held`) → `{"holds": [..]}`
//! - `GET /api/holds/{id}`: the hold, its event and the identifiers it
//!   names (an MRN without its value) → 404 when there is none
//! - `POST /api/holds/{id}/release` and `POST /api/holds/{id}/reject`:
//!   `{"actor": "…", "reason": "why"}` (both required, as for
//!   `/api/dead-letters/purge`) → 200 `{"hold", "outcome", "actor",
//!   "detail"}` when released or rejected; a problem body with the same
//!   `hold` and `outcome` (and `reason`) otherwise: 409 when it is still
//!   held, quarantined or not open any more, 404 when there is no such hold;
//!   400 when the request is wrong (no actor, no reason, the registry off)
//! - `GET /api/journeys/{coi}`: a therapy's chain of identity → 404 when no
//!   therapy has this COI
//!
//! Releases and rejects go through the hub's single writer and are audited.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hub_core::store::{HoldAction, HoldFilter, StoreError};
use hub_core::Hub;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{problem, problem_with, store_problem};

/// The states a hold can be in.
pub const HOLD_STATES: [&str; 5] = ["held", "released", "rejected", "expired", "quarantined"];

/// `all` → every state; absent → held.
pub fn parse_state(s: Option<&str>) -> Result<Option<String>, String> {
    match s.map(str::trim) {
        None => Ok(Some("held".into())),
        Some("all") => Ok(None),
        Some(s) if HOLD_STATES.contains(&s) => Ok(Some(s.to_string())),
        Some(s) => Err(format!(
            "unknown state {s:?}: held, released, rejected, expired, quarantined or all"
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    state: Option<String>,
    coi: Option<String>,
    limit: Option<u32>,
}

pub(super) async fn list(
    State(hub): State<Hub>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let state = match parse_state(q.state.as_deref()) {
        Ok(s) => s,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e),
    };
    let filter = HoldFilter {
        state,
        coi: q.coi.filter(|c| !c.trim().is_empty()),
        limit: q.limit.unwrap_or(100).min(10_000),
    };
    match hub.store().holds(&filter).await {
        Ok(rows) => Json(json!({ "holds": rows })).into_response(),
        Err(e) => store_problem(e),
    }
}

pub(super) async fn show(State(hub): State<Hub>, id: Result<Path<i64>, PathRejection>) -> Response {
    let Path(id) = match id {
        Ok(id) => id,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match hub.store().hold(id).await {
        Ok(Some(d)) => Json(d).into_response(),
        Ok(None) => problem(StatusCode::NOT_FOUND, format!("no hold {id}")),
        Err(e) => store_problem(e),
    }
}

pub(super) async fn journey(
    State(hub): State<Hub>,
    coi: Result<Path<String>, PathRejection>,
) -> Response {
    let Path(coi) = match coi {
        Ok(c) => c,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match hub.store().journey(&coi).await {
        Ok(Some(j)) => Json(j).into_response(),
        Ok(None) => problem(StatusCode::NOT_FOUND, format!("no therapy with COI {coi}")),
        Err(e) => store_problem(e),
    }
}

/// What an operator asks of a hold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ActionBody {
    /// Why (required; kept in the audit log).
    reason: Option<String>,
    /// Who asks (required; kept in the audit log).
    actor: Option<String>,
}

/// Release or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Release,
    Reject,
}

pub(super) async fn release(
    State(hub): State<Hub>,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<ActionBody>, JsonRejection>,
) -> Response {
    act(hub, Verb::Release, id, body).await
}

pub(super) async fn reject(
    State(hub): State<Hub>,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<ActionBody>, JsonRejection>,
) -> Response {
    act(hub, Verb::Reject, id, body).await
}

async fn act(
    hub: Hub,
    verb: Verb,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<ActionBody>, JsonRejection>,
) -> Response {
    let Path(id) = match id {
        Ok(id) => id,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return problem(e.status(), e.body_text()),
    };
    let Some(actor) = non_empty(body.actor) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "\"actor\" is required: who asks is recorded in the audit log",
        );
    };
    let Some(reason) = non_empty(body.reason) else {
        return problem(
            StatusCode::BAD_REQUEST,
            format!(
                "\"reason\" is required: say why hold {id} is to be {}",
                done(verb)
            ),
        );
    };
    let answer = match verb {
        Verb::Release => hub.release_hold(id, &actor, &reason).await,
        Verb::Reject => hub.reject_hold(id, &actor, &reason).await,
    };
    match answer {
        Ok(outcome) => outcome_response(id, verb, &actor, &outcome),
        Err(StoreError::Invalid { reason, .. }) => problem(StatusCode::BAD_REQUEST, reason),
        Err(e) => store_problem(e),
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn done(verb: Verb) -> &'static str {
    match verb {
        Verb::Release => "released",
        Verb::Reject => "rejected",
    }
}

/// 200 when the hold was released or rejected; a problem body naming the
/// outcome otherwise.
fn outcome_response(id: i64, verb: Verb, actor: &str, outcome: &HoldAction) -> Response {
    let detail = outcome_detail(id, verb, outcome);
    let mut fields = match serde_json::to_value(outcome) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    fields.insert("hold".into(), json!(id));
    fields.insert("outcome".into(), json!(outcome.as_str()));
    fields.insert("actor".into(), json!(actor));
    if outcome.is_success() {
        fields.insert("detail".into(), json!(detail));
        return Json(Value::Object(fields)).into_response();
    }
    let status = match outcome {
        HoldAction::NotFound => StatusCode::NOT_FOUND,
        _ => StatusCode::CONFLICT,
    };
    problem_with(status, detail, fields)
}

/// One sentence about what became of the hold.
fn outcome_detail(id: i64, verb: Verb, outcome: &HoldAction) -> String {
    match outcome {
        HoldAction::Released => format!("hold {id} released: its event went on"),
        HoldAction::Rejected => format!("hold {id} rejected: its event will not go on"),
        HoldAction::Quarantined => format!(
            "hold {id} not released: judged again it contradicts the registry; quarantined, alert raised"
        ),
        HoldAction::StillHeld { reason } => {
            format!("hold {id} not {}: still held: {reason}", done(verb))
        }
        HoldAction::Refused { reason } => format!("hold {id} not {}: {reason}", done(verb)),
        HoldAction::NotFound => format!("no hold {id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_default_to_held_and_all_means_any() {
        assert_eq!(parse_state(None), Ok(Some("held".into())));
        assert_eq!(parse_state(Some("all")), Ok(None));
        assert_eq!(
            parse_state(Some("quarantined")),
            Ok(Some("quarantined".into()))
        );
        assert!(parse_state(Some("open")).is_err());
    }

    #[test]
    fn outcomes_map_to_statuses() {
        let ok = outcome_response(1, Verb::Release, "a@b", &HoldAction::Released);
        assert_eq!(ok.status(), StatusCode::OK);
        let ok = outcome_response(1, Verb::Reject, "a@b", &HoldAction::Rejected);
        assert_eq!(ok.status(), StatusCode::OK);
        for o in [
            HoldAction::Quarantined,
            HoldAction::StillHeld { reason: "x".into() },
            HoldAction::Refused { reason: "x".into() },
        ] {
            let r = outcome_response(1, Verb::Release, "a@b", &o);
            assert_eq!(r.status(), StatusCode::CONFLICT, "{o:?}");
        }
        let r = outcome_response(1, Verb::Reject, "a@b", &HoldAction::NotFound);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
}
