//! Dead letters from broker consumers: a message the broker dead-lettered
//! (RabbitMQ `cgt.dead`) is kept as a `messages` row (connector `amqp`,
//! status `dead`, the body byte for byte) and a dead letter of stage
//! `consume` whose code is the broker's reason, linked to our event when
//! the message names one.
//!
//! Idempotent: the consumer acks the broker only after this commits, so a
//! lost ack redelivers the same dead message. Its key (message id, or the
//! body's hash without one; queue; reason; death count; first death time)
//! finds the dead letter kept the first time. The first death time is what
//! tells a redelivery from the same event dying again after a replay (a
//! fresh publish starts its count at 1 again).

use std::borrow::Cow;

use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::audit::AuditDraft;
use super::batch::{Answered, Batch, SYSTEM};
use super::db::{on_db, Conn};
use super::dlq_records::{BrokerDeadLetter, BROKER_CONNECTOR, STAGE_CONSUME};
use super::insert::DeadRow;
use super::ops::Answer;
use super::time;
use crate::error::ErrorClass;

/// The unknown partner of a dead message that names none.
const UNKNOWN_PARTNER: &str = "unknown";

/// The idempotency key of a broker dead letter.
pub(crate) fn key(d: &BrokerDeadLetter, sha256: &str) -> String {
    let id = match d.message_id.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => format!("id:{m}"),
        None => format!("sha256:{sha256}"),
    };
    format!(
        "{id}|{}|{}|{}|{}",
        d.queue.as_deref().unwrap_or(""),
        d.reason,
        d.death_count,
        d.first_death_at.map(time::fmt).unwrap_or_default()
    )
}

/// Our event the dead message names: its id, COI and partner.
async fn our_event(
    conn: &mut Conn,
    message_id: Option<&str>,
) -> Result<Option<(String, Option<String>, String)>, sqlx::Error> {
    let Some(id) = message_id.and_then(|m| Uuid::parse_str(m.trim()).ok()) else {
        return Ok(None);
    };
    on_db!(conn, |c| sqlx::query_as(
        "SELECT e.event_id, e.coi, m.partner FROM events e \
         JOIN messages m ON m.id = e.message_row WHERE e.event_id = $1",
    )
    .bind(id.hyphenated().to_string())
    .fetch_optional(c)
    .await)
}

pub(crate) async fn ingest<'a>(
    conn: &mut Conn,
    b: &mut Batch<'a>,
    d: &'a BrokerDeadLetter,
) -> Answered {
    let sha256 = hex::encode(Sha256::digest(&d.body));
    let key = key(d, &sha256);
    if let Some(id) = b.broker_keys.get(&key) {
        return Ok(Ok(Answer::Id(*id)));
    }
    let kept: Option<i64> = on_db!(&mut *conn, |c| sqlx::query_scalar(
        "SELECT id FROM dead_letters WHERE broker_key = $1"
    )
    .bind(&key)
    .fetch_optional(c)
    .await)?;
    if let Some(id) = kept {
        tracing::debug!(dead_letter = id, "broker dead letter already kept");
        return Ok(Ok(Answer::Id(id)));
    }
    let event = our_event(conn, d.message_id.as_deref()).await?;
    let partner = d
        .partner
        .clone()
        .or_else(|| event.as_ref().map(|e| e.2.clone()))
        .unwrap_or_else(|| UNKNOWN_PARTNER.to_string());
    let content_type = if serde_json::from_slice::<serde::de::IgnoredAny>(&d.body).is_ok() {
        "application/json"
    } else {
        "application/octet-stream"
    };
    let queue = d.queue.as_deref().unwrap_or("?");
    let reason = format!(
        "dead-lettered by the broker from queue {queue}: {} ({} time(s)); routing key {}",
        d.reason, d.death_count, d.routing_key
    );
    let message_row: i64 = on_db!(&mut *conn, |c| sqlx::query_scalar(
        "INSERT INTO messages (connector, partner, message_id, content_type, payload, sha256, \
         status, error_code, error, stage, received_at, origin, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'dead', $7, $8, $9, $10, $11, $12) RETURNING id",
    )
    .bind(BROKER_CONNECTOR)
    .bind(&partner)
    .bind(d.message_id.as_deref())
    .bind(content_type)
    .bind(d.body.as_slice())
    .bind(&sha256)
    .bind(&d.reason)
    .bind(&reason)
    .bind(STAGE_CONSUME)
    .bind(&b.now)
    .bind(format!("amqp queue {queue}"))
    .bind(&b.now)
    .fetch_one(c)
    .await)?;
    let id = b.dead_letter_id(conn).await?;
    let (event_id, event_coi) = match event {
        Some((id, coi, _)) => (Some(id), coi),
        None => (None, None),
    };
    let detail = json!({
        "queue": d.queue, "reason": d.reason, "death_count": d.death_count,
        "routing_key": d.routing_key, "kind": d.kind, "event_id": event_id,
        "message": message_row, "partner": partner,
    });
    b.append_audit(AuditDraft::new(
        SYSTEM,
        "broker.dead_lettered",
        format!("dead_letter:{id}"),
        &detail,
    ));
    b.dead.push(DeadRow {
        id,
        message_row,
        event_id,
        outbox_id: None,
        route: None,
        sink: None,
        routing_key: Some(d.routing_key.clone()),
        coi: event_coi.or_else(|| d.coi.clone()),
        stage: STAGE_CONSUME,
        class: ErrorClass::Permanent,
        code: &d.reason,
        reason: Cow::Owned(reason),
        attempts: i64::from(d.death_count.max(1)),
        first_attempt_at: time::fmt(d.first_death_at.unwrap_or_else(chrono::Utc::now)),
        broker_key: Some(key.clone()),
    });
    b.broker_keys.insert(key, id);
    Ok(Ok(Answer::Id(id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn dead(message_id: Option<&str>) -> BrokerDeadLetter {
        BrokerDeadLetter {
            body: b"{}".to_vec(),
            message_id: message_id.map(str::to_owned),
            kind: None,
            routing_key: "car-t.qc.result_reported".into(),
            coi: None,
            product: None,
            partner: None,
            reason: "rejected".into(),
            queue: Some("qc".into()),
            death_count: 1,
            first_death_at: Some(chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()),
        }
    }

    #[test]
    fn the_key_names_the_message_and_its_death() {
        let a = dead(Some("e1"));
        assert_eq!(
            key(&a, "ab"),
            "id:e1|qc|rejected|1|2026-01-02T03:04:05.000Z"
        );
        assert_eq!(
            key(&dead(None), "ab"),
            "sha256:ab|qc|rejected|1|2026-01-02T03:04:05.000Z"
        );
        let later = BrokerDeadLetter {
            first_death_at: Some(chrono::Utc.with_ymd_and_hms(2026, 1, 3, 0, 0, 0).unwrap()),
            ..a.clone()
        };
        assert_ne!(
            key(&a, "ab"),
            key(&later, "ab"),
            "a new death after a replay"
        );
    }
}
