//! Courier and temperature-logger webhooks: `POST /webhooks/courier/{partner}`.
//!
//! A request is authenticated (HMAC signature or bearer token; see
//! [`auth`]), mapped by the partner's mapping under `mappings/courier/`,
//! and each update it carries (a scan, a custody handoff, a reading) is
//! taken as a message of its own whose id names the update ([`update_id`]):
//! couriers resend their whole scan history with every push and a poll
//! returns it again, and an update the hub already took is answered as a
//! duplicate, not routed twice. Refused requests (bad signature, too
//! large, not JSON) are kept with their reason. Couriers that only answer
//! GETs are polled ([`poll`]); their responses take the same path.

pub mod auth;
pub mod config;
pub mod poll;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use chrono::SecondsFormat;
use hub_core::error::Stage;
use hub_core::event::EventData;
use hub_core::store::StoreError;
use hub_core::{Connector, Decoded, Hub, Outcome, Problem, Receipt, TherapyEvent};
use serde_json::json;
use sha2::{Digest, Sha256};

use self::config::{CourierConfig, CourierPartner};
use super::http as h;
use crate::http::problem;

pub use cgthub_courier::CourierConnector;

/// The connector kind (mappings folder, stored messages).
pub const KIND: &str = "courier";
const JSON: &[&str] = &["application/json"];

#[derive(Clone)]
struct St {
    hub: Hub,
    conn: Arc<CourierConnector>,
    cfg: Arc<CourierConfig>,
    /// HMAC secrets read from the environment at start.
    secrets: Arc<HashMap<String, Vec<u8>>>,
}

/// The HMAC secrets of `cfg`'s partners, from `env`.
pub fn secrets(
    cfg: &CourierConfig,
    env: impl Fn(&str) -> Option<String>,
) -> HashMap<String, Vec<u8>> {
    cfg.partners
        .iter()
        .filter_map(|(name, p)| {
            let v = env(&p.secret_var(name)).filter(|v| !v.is_empty())?;
            Some((name.clone(), v.into_bytes()))
        })
        .collect()
}

/// `POST /webhooks/courier/{partner}`, to merge at the root of the server.
pub fn router(
    hub: Hub,
    conn: Arc<CourierConnector>,
    cfg: CourierConfig,
    secrets: HashMap<String, Vec<u8>>,
) -> Router {
    Router::new()
        .route("/webhooks/courier/{partner}", post(post_update))
        .with_state(St {
            hub,
            conn,
            cfg: Arc::new(cfg),
            secrets: Arc::new(secrets),
        })
}

async fn post_update(
    State(st): State<St>,
    UrlPath(partner): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(pcfg) = st.cfg.partners.get(&partner) else {
        return problem(
            StatusCode::NOT_FOUND,
            format!("no partner {partner:?} in [courier.partners]"),
        );
    };
    let origin = h::origin(&headers, "POST /webhooks/courier");
    let bytes = match h::read_limited(body, st.cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(kept) => {
            let p = Problem::new(
                Stage::Decode,
                "too_large",
                format!(
                    "larger than {} bytes (courier.max_body_bytes); its first {} bytes are kept",
                    st.cfg.max_body_bytes,
                    kept.len()
                ),
            );
            return refuse(&st, kept, &partner, &origin, p, 413).await;
        }
    };
    if let Err(r) = check_auth(&st, &partner, pcfg, &headers, &bytes) {
        tracing::warn!(connector = KIND, partner = %partner, code = r.code, "webhook refused");
        let p = Problem::new(Stage::Decode, r.code, r.reason);
        return refuse(&st, bytes, &partner, &origin, p, 401).await;
    }
    if !h::content_type_is(&headers, JSON) {
        let p = Problem::new(
            Stage::Decode,
            "unsupported_media_type",
            "webhooks are taken as application/json",
        );
        return refuse(&st, bytes, &partner, &origin, p, 415).await;
    }
    take(&st.hub, &st.conn, bytes, &origin, &partner).await
}

fn check_auth(
    st: &St,
    partner: &str,
    pcfg: &CourierPartner,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), auth::Refusal> {
    let secret = st.secrets.get(partner).map(Vec::as_slice);
    auth::verify(
        partner,
        pcfg,
        secret,
        headers,
        body,
        chrono::Utc::now().timestamp(),
    )
}

/// Maps one authenticated payload and takes each update in it; the HTTP
/// answer to a webhook.
pub async fn take(
    hub: &Hub,
    conn: &CourierConnector,
    bytes: Bytes,
    origin: &str,
    partner: &str,
) -> Response {
    match take_updates(hub, conn, bytes, origin, partner).await {
        Ok(Taken::Whole { receipt, problem }) => h::answer(&receipt, problem.as_ref(), http_status),
        Ok(Taken::Updates(t)) => t.response(),
        Err(e) => h::unavailable(&e),
    }
}

/// What [`take_updates`] did with one payload.
#[derive(Debug)]
pub enum Taken {
    /// Nothing to split (it did not map, or mapped to nothing): one
    /// message, known by its content.
    Whole {
        receipt: Receipt,
        problem: Option<Problem>,
    },
    /// Each update taken as a message of its own.
    Updates(Updates),
}

/// The updates of one payload, counted.
#[derive(Debug, Default)]
pub struct Updates {
    /// Updates in the payload.
    pub updates: usize,
    /// Taken now (not duplicates, not failed).
    pub new: usize,
    /// Taken before (pushed or polled already).
    pub duplicates: usize,
    /// Of the new ones, events held by the identity registry.
    pub held: usize,
    /// The message row of each update.
    pub messages: Vec<i64>,
    /// Updates that failed: message, code, reason.
    pub failed: Vec<serde_json::Value>,
    /// 200, or the status of the failures (409 for an identity conflict
    /// wins over 422).
    pub status: StatusCode,
}

impl Updates {
    /// The webhook's answer.
    pub fn response(&self) -> Response {
        let body = json!({
            "outcome": if self.failed.is_empty() { "accepted" } else { "failed" },
            "updates": self.updates,
            "new": self.new,
            "duplicates": self.duplicates,
            "held": self.held,
            "messages": self.messages,
            "failed": self.failed,
        });
        (self.status, axum::Json(body)).into_response()
    }
}

/// Maps one payload (a webhook's body, a poll's response) and takes each
/// update in it as a message of its own ([`update_id`]). An error: the
/// store is unavailable; some updates may be kept already, and taking the
/// payload again is safe (each update is taken once).
pub async fn take_updates(
    hub: &Hub,
    conn: &CourierConnector,
    bytes: Bytes,
    origin: &str,
    partner: &str,
) -> Result<Taken, StoreError> {
    let (mut inbound, decoded) = conn.translate(bytes, origin, Some(partner));
    let events = match decoded {
        Decoded::Events(events) if !events.is_empty() => events,
        other => {
            // Nothing to split: one message, known by its content.
            inbound.message_id = Some(format!("sha256:{}", inbound.sha256));
            let (receipt, problem) = hub.submit_explained(inbound, other).await?;
            return Ok(Taken::Whole { receipt, problem });
        }
    };
    let mut t = Updates {
        updates: events.len(),
        messages: Vec::with_capacity(events.len()),
        status: StatusCode::OK,
        ..Updates::default()
    };
    let submits = events.into_iter().map(|ev| {
        let mut one = inbound.clone();
        one.message_id = Some(update_id(&ev));
        hub.submit_explained(one, Decoded::Events(vec![ev]))
    });
    // Concurrent: the updates share the store's group commits.
    let results = futures_util::future::join_all(submits).await;
    for r in results {
        let (receipt, problem) = r?;
        t.messages.push(receipt.message_row);
        if receipt.duplicate {
            t.duplicates += 1;
        } else if let (Outcome::Accepted { .. }, None) = (&receipt.outcome, &problem) {
            t.new += 1;
            t.held += receipt.held;
        } else if let Some(p) = problem.or(receipt.problem) {
            // 409 for an identity conflict wins over 422.
            let s =
                StatusCode::from_u16(http_status(&p)).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            if t.status != StatusCode::CONFLICT {
                t.status = s;
            }
            t.failed
                .push(json!({"message": receipt.message_row, "code": p.code, "reason": p.reason}));
        }
    }
    Ok(Taken::Updates(t))
}

/// The HTTP status of a payload that failed or was refused.
pub fn http_status(p: &Problem) -> u16 {
    match p.code {
        "malformed_json" | "unexpected_json" => 400,
        _ => p.http_status(),
    }
}

async fn refuse(
    st: &St,
    bytes: Bytes,
    partner: &str,
    origin: &str,
    p: Problem,
    status: u16,
) -> Response {
    h::refuse(
        &st.hub,
        (KIND, "application/json"),
        bytes,
        (partner, origin),
        p,
        status,
    )
    .await
}

/// The id of one update, the same however it arrives (pushed again, polled):
/// what it is about (tracking number, logger), when it happened, and what
/// the courier said (status code, who handed to whom).
pub fn update_id(ev: &TherapyEvent) -> String {
    let kind = ev.kind().as_str();
    let at = ev.occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true);
    match &ev.data {
        EventData::ShipmentCreated(s) => format!("{kind}/{}", s.tracking_number),
        EventData::ShipmentStatus(s) => format!(
            "{kind}/{}/{at}/{}",
            s.tracking_number,
            s.status_code.as_deref().unwrap_or(&s.status)
        ),
        EventData::ShipmentDelivered(s) => format!("{kind}/{}/{at}", s.tracking_number),
        EventData::CustodyTransferred(c) => format!(
            "{kind}/{}/{at}/{}>{}",
            c.tracking_number.as_deref().unwrap_or("-"),
            c.from,
            c.to
        ),
        EventData::TemperatureReading(r) => format!("{kind}/{}/{at}", r.logger_id),
        other => {
            let data = serde_json::to_vec(other).unwrap_or_default();
            format!("{kind}/{at}/sha256:{}", hex::encode(Sha256::digest(data)))
        }
    }
}
