//! Held events and journeys: what operators see and do about the identity
//! registry's holds (release with a reason, reject with a reason; the
//! clock expires the ones whose identity never became known), and a
//! therapy's whole chain for `cgthub trace`.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use sqlx::QueryBuilder;

use super::audit::AuditDraft;
use super::batch::{Answered, Batch};
use super::db::{on_db, Conn, Pool};
use super::insert::EventRow;
use super::ops::Answer;
use super::records::PreparedEvent;
use super::registry::{
    alert_for, dead_letter_hold, set_hold_state, set_message_routed_if_done, RegistryContext,
    StoredHold, HOLD_COLUMNS, HOLD_EXPIRED,
};
use super::StoreError;
use crate::event::TherapyEvent;

/// What an operator's action on a hold did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum HoldAction {
    /// Its event went on (stored and routed).
    Released,
    /// Its event will never go on.
    Rejected,
    /// Judged again, it contradicts the registry now: quarantined, alert raised.
    Quarantined,
    /// Its identity is still not settled; nothing changed.
    StillHeld {
        reason: String,
    },
    /// Not open (released, rejected, expired or quarantined already).
    Refused {
        reason: String,
    },
    NotFound,
}

impl HoldAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            HoldAction::Released => "released",
            HoldAction::Rejected => "rejected",
            HoldAction::Quarantined => "quarantined",
            HoldAction::StillHeld { .. } => "still_held",
            HoldAction::Refused { .. } => "refused",
            HoldAction::NotFound => "not_found",
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self, HoldAction::Released | HoldAction::Rejected)
    }
}

/// A held (or quarantined, or settled) event, as operators list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct HoldInfo {
    pub id: i64,
    pub event_id: String,
    pub message_row: i64,
    pub connector: String,
    pub partner: String,
    pub message_id: Option<String>,
    pub kind: String,
    pub coi: Option<String>,
    pub order_id: Option<String>,
    pub product: Option<String>,
    /// `unknown_identifiers`, `out_of_sequence` or `identity_conflict`.
    pub reason: String,
    pub detail: String,
    /// `held`, `released`, `rejected`, `expired` or `quarantined`.
    pub state: String,
    pub deadline: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub resolved_by: Option<String>,
    pub resolution: Option<String>,
}

/// One hold with its event and the identifiers it waits on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HoldDetail {
    #[serde(flatten)]
    pub hold: HoldInfo,
    /// The event as mapped (its JSON).
    pub event: serde_json::Value,
    /// The identifiers it names (an MRN without its value).
    pub identifiers: Vec<String>,
}

/// Which holds to list.
#[derive(Debug, Clone)]
pub struct HoldFilter {
    /// `None`: every state.
    pub state: Option<String>,
    pub coi: Option<String>,
    pub limit: u32,
}

impl Default for HoldFilter {
    fn default() -> Self {
        HoldFilter {
            state: Some("held".into()),
            coi: None,
            limit: 100,
        }
    }
}

/// One therapy's chain of identity, as `cgthub trace` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Journey {
    pub coi: String,
    pub product: Option<String>,
    pub order_id: Option<String>,
    pub state: String,
    /// Patient data is sealed in the registry and never shown here.
    pub demographics: &'static str,
    pub registered_at: String,
    pub registered_by_message: i64,
    pub identifiers: Vec<JourneyIdentifier>,
    /// Every event that went on for it, in the order they happened.
    pub events: Vec<JourneyEvent>,
    /// The custody handoffs among them.
    pub custody: Vec<JourneyEvent>,
    /// Holds and quarantined events that name it.
    pub holds: Vec<HoldInfo>,
    /// Identity alerts that name it.
    pub alerts: Vec<JourneyEvent>,
}

/// An identifier linked to a COI, and where the link came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct JourneyIdentifier {
    pub kind: String,
    pub authority: String,
    /// Empty for an MRN (kept only as a keyed hash).
    pub value: String,
    pub asserted_by: String,
    pub message_id: Option<String>,
    pub message_row: i64,
    pub linked_at: String,
}

/// An event of a journey, with its source message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JourneyEvent {
    pub event_id: String,
    pub kind: String,
    pub occurred_at: String,
    pub message_row: i64,
    pub connector: String,
    pub partner: String,
    pub message_id: Option<String>,
    pub event: serde_json::Value,
}

const INFO_COLUMNS: &str =
    "h.id, h.event_id, h.message_row, m.connector, m.partner, m.message_id, \
    h.kind, h.coi, h.order_id, h.product, h.reason, h.detail, h.state, h.deadline, h.created_at, \
    h.updated_at, h.resolved_by, h.resolution";

pub(crate) async fn list(pool: &Pool, f: &HoldFilter) -> Result<Vec<HoldInfo>, StoreError> {
    on_db!(pool, |p| {
        let mut qb = QueryBuilder::new(format!(
            "SELECT {INFO_COLUMNS} FROM holds h JOIN messages m ON m.id = h.message_row WHERE 1 = 1"
        ));
        if let Some(s) = &f.state {
            qb.push(" AND h.state = ").push_bind(s.as_str());
        }
        if let Some(c) = &f.coi {
            qb.push(" AND h.coi = ").push_bind(c.as_str());
        }
        qb.push(" ORDER BY h.id DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        qb.build_query_as()
            .fetch_all(p)
            .await
            .map_err(StoreError::read("holds"))
    })
}

pub(crate) async fn show(pool: &Pool, id: i64) -> Result<Option<HoldDetail>, StoreError> {
    let row: Option<(String, String)> = on_db!(pool, |p| {
        sqlx::query_as("SELECT body, keys FROM holds WHERE id = $1")
            .bind(id)
            .fetch_optional(p)
            .await
            .map_err(StoreError::read("holds"))?
    });
    let Some((body, keys)) = row else {
        return Ok(None);
    };
    let info: Option<HoldInfo> = on_db!(pool, |p| {
        sqlx::query_as(&format!(
            "SELECT {INFO_COLUMNS} FROM holds h JOIN messages m ON m.id = h.message_row WHERE h.id = $1"
        ))
        .bind(id)
        .fetch_optional(p)
        .await
        .map_err(StoreError::read("holds"))?
    });
    let Some(hold) = info else {
        return Ok(None);
    };
    let keys: Vec<String> = serde_json::from_str(&keys).unwrap_or_default();
    Ok(Some(HoldDetail {
        hold,
        event: serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
        identifiers: keys.iter().map(|k| shown_key(k)).collect(),
    }))
}

/// A registry key as operators may see it: an MRN's hash is not shown.
fn shown_key(key: &str) -> String {
    let mut parts = key.splitn(3, '|');
    let (kind, authority, value) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if kind == "coi" {
        // Not an identifier: the hold waits for this COI's order.
        return format!("the order of COI {value}");
    }
    let value = if kind == "mrn" { "…" } else { value };
    if authority.is_empty() {
        format!("{kind} {value}")
    } else {
        format!("{kind} {value} ({authority})")
    }
}

pub(crate) async fn journey(pool: &Pool, coi: &str) -> Result<Option<Journey>, StoreError> {
    type TherapyRow = (String, Option<String>, Option<String>, String, String, i64);
    let therapy: Option<TherapyRow> = on_db!(pool, |p| {
        sqlx::query_as(
            "SELECT coi, product, order_id, state, created_at, message_row FROM therapies WHERE coi = $1",
        )
        .bind(coi)
        .fetch_optional(p)
        .await
        .map_err(StoreError::read("therapies"))?
    });
    let Some((coi, product, order_id, state, registered_at, registered_by_message)) = therapy
    else {
        return Ok(None);
    };
    let identifiers: Vec<JourneyIdentifier> = on_db!(pool, |p| {
        sqlx::query_as(
            "SELECT kind, authority, value, asserted_by, message_id, message_row, created_at AS linked_at \
             FROM identifiers WHERE coi = $1 ORDER BY created_at, key",
        )
        .bind(&coi)
        .fetch_all(p)
        .await
        .map_err(StoreError::read("identifiers"))?
    });
    type EventRowT = (
        String,
        String,
        String,
        i64,
        String,
        String,
        Option<String>,
        String,
    );
    let to_events = |rows: Vec<EventRowT>| -> Vec<JourneyEvent> {
        rows.into_iter()
            .map(
                |(
                    event_id,
                    kind,
                    occurred_at,
                    message_row,
                    connector,
                    partner,
                    message_id,
                    body,
                )| {
                    JourneyEvent {
                        event_id,
                        kind,
                        occurred_at,
                        message_row,
                        connector,
                        partner,
                        message_id,
                        event: serde_json::from_str(&body)
                            .unwrap_or(serde_json::Value::String(body)),
                    }
                },
            )
            .collect()
    };
    let rows: Vec<EventRowT> = on_db!(pool, |p| {
        sqlx::query_as(
            "SELECT e.event_id, e.kind, e.occurred_at, e.message_row, m.connector, m.partner, m.message_id, e.body \
             FROM events e JOIN messages m ON m.id = e.message_row WHERE e.coi = $1 \
             ORDER BY e.occurred_at, e.recorded_at, e.event_id",
        )
        .bind(&coi)
        .fetch_all(p)
        .await
        .map_err(StoreError::read("events"))?
    });
    let events = to_events(rows);
    let custody = events
        .iter()
        .filter(|e| e.kind == "custody.transferred")
        .cloned()
        .collect();
    // Alerts about two chains carry no COI of their own: found by content.
    let alert_rows: Vec<EventRowT> = on_db!(pool, |p| {
        sqlx::query_as(
            "SELECT e.event_id, e.kind, e.occurred_at, e.message_row, m.connector, m.partner, m.message_id, e.body \
             FROM events e JOIN messages m ON m.id = e.message_row \
             WHERE e.kind = 'alert.raised' AND (e.coi = $1 OR e.body LIKE $2) \
             ORDER BY e.occurred_at, e.event_id",
        )
        .bind(&coi)
        .bind(format!("%\"coi\":\"{coi}\"%"))
        .fetch_all(p)
        .await
        .map_err(StoreError::read("events"))?
    });
    let holds: Vec<HoldInfo> = on_db!(pool, |p| {
        sqlx::query_as(&format!(
            "SELECT {INFO_COLUMNS} FROM holds h JOIN messages m ON m.id = h.message_row \
             WHERE h.coi = $1 ORDER BY h.id"
        ))
        .bind(&coi)
        .fetch_all(p)
        .await
        .map_err(StoreError::read("holds"))?
    });
    let alerts = to_events(alert_rows);
    // Quarantined events of a conflict may carry no COI: the alert names them.
    let mut holds = holds;
    for a in &alerts {
        if let Some(related) = a
            .event
            .pointer("/data/related_event_id")
            .and_then(|v| v.as_str())
        {
            if holds.iter().any(|h| h.event_id == related) {
                continue;
            }
            let more: Vec<HoldInfo> = on_db!(pool, |p| {
                sqlx::query_as(&format!(
                    "SELECT {INFO_COLUMNS} FROM holds h JOIN messages m ON m.id = h.message_row \
                     WHERE h.event_id = $1"
                ))
                .bind(related)
                .fetch_all(p)
                .await
                .map_err(StoreError::read("holds"))?
            });
            holds.extend(more);
        }
    }
    Ok(Some(Journey {
        coi,
        product,
        order_id,
        state,
        demographics: "sealed",
        registered_at,
        registered_by_message,
        identifiers,
        events,
        custody,
        holds,
        alerts,
    }))
}

/// Reads one hold for an action, locking it on PostgreSQL.
async fn stored(conn: &mut Conn, id: i64) -> Result<Option<StoredHold>, sqlx::Error> {
    let lock = if conn.is_postgres() {
        " FOR UPDATE"
    } else {
        ""
    };
    on_db!(&mut *conn, |c| {
        sqlx::query_as(&format!(
            "SELECT {HOLD_COLUMNS} FROM holds h WHERE h.id = $1{lock}"
        ))
        .bind(id)
        .fetch_optional(c)
        .await
    })
}

fn not_open(h: &StoredHold) -> HoldAction {
    HoldAction::Refused {
        reason: format!("hold {} is {}, not held", h.id, h.state),
    }
}

/// An operator releases a hold: judged again, an out-of-sequence event goes
/// on (the operator's reason overrides the sequence); identity is never
/// overridden.
pub(crate) async fn release<'a>(
    conn: &mut Conn,
    b: &mut Batch<'a>,
    id: i64,
    actor: &str,
    reason: &str,
    cx: &Arc<RegistryContext>,
) -> Answered {
    let Some(h) = stored(conn, id).await? else {
        return Ok(Ok(Answer::Hold(HoldAction::NotFound)));
    };
    if h.state != "held" {
        return Ok(Ok(Answer::Hold(not_open(&h))));
    }
    let mut reg = std::mem::take(&mut b.registry);
    let done = reg.reevaluate(conn, b, cx, h, actor, Some(reason)).await;
    b.registry = reg;
    Ok(Ok(Answer::Hold(match done? {
        "released" => HoldAction::Released,
        "quarantined" => HoldAction::Quarantined,
        "settled" => HoldAction::Refused {
            reason: "it was settled meanwhile".into(),
        },
        _ => HoldAction::StillHeld {
            reason: "its identifiers are still not linked to a registered therapy".into(),
        },
    })))
}

/// An operator rejects a hold: its event never goes on.
pub(crate) async fn reject<'a>(
    conn: &mut Conn,
    b: &mut Batch<'a>,
    id: i64,
    actor: &str,
    reason: &str,
) -> Answered {
    let Some(h) = stored(conn, id).await? else {
        return Ok(Ok(Answer::Hold(HoldAction::NotFound)));
    };
    if h.state != "held" {
        return Ok(Ok(Answer::Hold(not_open(&h))));
    }
    if !close(conn, &h, "rejected", actor, reason, &b.now).await? {
        return Ok(Ok(Answer::Hold(HoldAction::Refused {
            reason: format!("hold {} was settled meanwhile", h.id),
        })));
    }
    b.append_audit(AuditDraft::new(
        actor,
        "hold.rejected",
        format!("hold:{}", h.id),
        &json!({"event_id": h.event_id, "coi": h.coi, "held_for": h.reason, "reason": reason}),
    ));
    Ok(Ok(Answer::Hold(HoldAction::Rejected)))
}

/// Ends a hold without releasing it; its message is done when it has no
/// other held event.
async fn close(
    conn: &mut Conn,
    h: &StoredHold,
    state: &str,
    actor: &str,
    resolution: &str,
    now: &str,
) -> Result<bool, sqlx::Error> {
    if !set_hold_state(conn, h.id, state, actor, Some(resolution), now).await? {
        return Ok(false);
    }
    set_message_routed_if_done(conn, h.message_row, now).await?;
    Ok(true)
}

/// Holds whose identity never became known by their deadline: each one
/// expires into a dead letter (stage identity, `hold_expired`) and an
/// `identity_unresolved` alert. Returns how many expired.
pub(crate) async fn expire<'a>(
    conn: &mut Conn,
    b: &mut Batch<'a>,
    cx: &Arc<RegistryContext>,
    limit: i64,
) -> Answered {
    let lock = if conn.is_postgres() {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let due: Vec<(i64, String)> = on_db!(&mut *conn, |c| {
        sqlx::query_as(&format!(
            "SELECT id, detail FROM holds WHERE state = 'held' AND deadline IS NOT NULL AND deadline <= $1 \
             ORDER BY deadline, id LIMIT $2{lock}"
        ))
        .bind(&b.now)
        .bind(limit)
        .fetch_all(c)
        .await
    })?;
    let mut n = 0;
    for (id, detail) in due {
        let Some(h) = stored(conn, id).await? else {
            continue;
        };
        let reason = format!("identity not settled in time: {detail}");
        if !set_hold_state(
            conn,
            h.id,
            "expired",
            super::batch::SYSTEM,
            Some(&reason),
            &b.now,
        )
        .await?
        {
            continue;
        }
        let first = h.created_at.clone();
        let dl = dead_letter_hold(conn, b, &h, HOLD_EXPIRED, &reason, first).await?;
        if let Ok(event) = serde_json::from_str::<TherapyEvent>(&h.body) {
            let alert = alert_for(&event, "identity_unresolved", &reason, &[], &b.now);
            let mut alert = alert;
            alert.coi = h.coi.clone();
            b.events.push(EventRow {
                id: alert.event_id.hyphenated().to_string(),
                ev: Cow::Owned(PreparedEvent::new(&alert, cx.router.route(&alert))),
                message_row: h.message_row,
            });
        }
        b.append_audit(AuditDraft::new(
            super::batch::SYSTEM,
            "hold.expired",
            format!("hold:{}", h.id),
            &json!({"event_id": h.event_id, "coi": h.coi, "dead_letter": dl}),
        ));
        n += 1;
    }
    Ok(Ok(Answer::Id(n)))
}

#[cfg(test)]
mod tests {
    use super::shown_key;

    #[test]
    fn operators_see_identifiers_never_an_mrn_hash() {
        assert_eq!(shown_key("specimen|LAB|S-1"), "specimen S-1 (LAB)");
        assert_eq!(shown_key("order||O-1"), "order O-1");
        assert_eq!(shown_key("mrn|HOSP|9f86d081884c7d65"), "mrn … (HOSP)");
        assert_eq!(
            shown_key("coi||CHW000126000001"),
            "the order of COI CHW000126000001"
        );
    }
}
