//! HTTP: health, Prometheus metrics and the operator API (reads, the dead
//! letters' replay and purge: see `dead_letters.rs`; held events' release
//! and reject, and journeys: see `holds.rs`).
//!
//! Errors are JSON problem bodies (RFC 9457) with a status, never an HTML
//! page or an empty 500.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use hub_core::store::{EventFilter, StoreError};
use hub_core::Hub;
use serde::Deserialize;
use serde_json::{json, Value};

pub mod dead_letters;
pub mod holds;

/// The HTTP routes.
pub fn router(hub: Hub) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/events", get(events))
        .route("/api/messages/{id}", get(message))
        .route("/api/dead-letters", get(dead_letters::list))
        .route("/api/dead-letters/replay", post(dead_letters::replay))
        .route("/api/dead-letters/purge", post(dead_letters::purge))
        .route("/api/dead-letters/{id}", get(dead_letters::show))
        .route("/api/holds", get(holds::list))
        .route("/api/holds/{id}", get(holds::show))
        .route("/api/holds/{id}/release", post(holds::release))
        .route("/api/holds/{id}/reject", post(holds::reject))
        .route("/api/journeys/{coi}", get(holds::journey))
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(hub)
}

/// A JSON problem response.
pub fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    problem_with(status, detail, serde_json::Map::new())
}

/// A JSON problem response with extension members (RFC 9457 §3.2); the
/// standard members win over an extension of the same name.
pub fn problem_with(
    status: StatusCode,
    detail: impl Into<String>,
    extensions: serde_json::Map<String, Value>,
) -> Response {
    let mut body = extensions;
    body.insert("type".into(), json!("about:blank"));
    body.insert(
        "title".into(),
        json!(status.canonical_reason().unwrap_or("error")),
    );
    body.insert("status".into(), json!(status.as_u16()));
    body.insert("detail".into(), json!(detail.into()));
    let body = Value::Object(body);
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn store_problem(e: StoreError) -> Response {
    tracing::error!(error = %e, "store error in the API");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("store unavailable: {e}"),
    )
}

/// 200 while the store answers: partners are acknowledged. `status` is
/// `degraded` while a linked system (a broker) is down; events wait in the
/// outbox meanwhile.
async fn healthz(State(hub): State<Hub>) -> Response {
    if !hub.store().writer_running() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "store": "the store's writer stopped: nothing can be stored; restart the hub"})),
        )
            .into_response();
    }
    match hub.store().outbox_depth(Utc::now()).await {
        Ok(stats) => {
            let components = hub.component_health();
            let degraded = components.iter().any(|(_, c)| !c.up);
            let components: serde_json::Map<String, Value> = components
                .into_iter()
                .map(|(n, c)| (n, serde_json::to_value(c).unwrap_or_default()))
                .collect();
            Json(json!({
                "status": if degraded { "degraded" } else { "ok" },
                "store": "ok",
                "store_backend": hub.store().backend(),
                "instance": hub.store().instance_id(),
                "components": components,
                "outbox_pending": stats.pending,
                "outbox_oldest_age_secs": stats.oldest_pending_age_secs,
                "outbox_claimed": stats.claimed,
            }))
            .into_response()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "store": e.to_string()})),
        )
            .into_response(),
    }
}

async fn metrics(State(hub): State<Hub>) -> Response {
    if let Ok(stats) = hub.store().outbox_depth(Utc::now()).await {
        let m = hub.metrics();
        m.outbox_pending.set(stats.pending as i64);
        m.outbox_oldest_age.set(stats.oldest_pending_age_secs);
        m.outbox_claimed.set(stats.claimed as i64);
    }
    hub.metrics()
        .instance
        .get_or_create(&hub_core::metrics::InstanceLabels {
            instance: hub.store().instance_id().to_string(),
            store: hub.store().backend().to_string(),
        })
        .set(1);
    for (component, c) in hub.component_health() {
        hub.metrics()
            .component_up
            .get_or_create(&hub_core::metrics::ComponentLabels { component })
            .set(i64::from(c.up));
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        hub.metrics().encode(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventQuery {
    coi: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    unmatched: bool,
    limit: Option<u32>,
}

async fn events(State(hub): State<Hub>, Query(q): Query<EventQuery>) -> Response {
    if let Some(k) = &q.kind {
        if hub_core::EventKind::parse(k).is_none() {
            return problem(StatusCode::BAD_REQUEST, format!("unknown event kind {k:?}"));
        }
    }
    let filter = EventFilter {
        coi: q.coi,
        kind: q.kind,
        message_row: None,
        unmatched_only: q.unmatched,
        limit: q.limit.unwrap_or(100).min(10_000),
    };
    match hub.store().events(&filter).await {
        Ok(rows) => {
            let events: Vec<Value> = rows
                .iter()
                .filter_map(|r| serde_json::from_str(&r.body).ok())
                .collect();
            Json(json!({ "events": events })).into_response()
        }
        Err(e) => store_problem(e),
    }
}

async fn message(State(hub): State<Hub>, Path(id): Path<i64>) -> Response {
    match hub.store().message(id).await {
        Ok(Some(m)) => Json(json!({
            "id": m.id,
            "connector": m.connector,
            "partner": m.partner,
            "message_id": m.message_id,
            "content_type": m.content_type,
            "sha256": m.sha256,
            "status": m.status.as_str(),
            "stage": m.stage,
            "error_code": m.error_code,
            "error": m.error,
            "received_at": m.received_at,
            "origin": m.origin,
            "size": m.payload.len(),
            "events": m.events.iter().map(|(id, kind)| json!({"event_id": id, "kind": kind})).collect::<Vec<_>>(),
        }))
        .into_response(),
        Ok(None) => problem(StatusCode::NOT_FOUND, format!("no message {id}")),
        Err(e) => store_problem(e),
    }
}
