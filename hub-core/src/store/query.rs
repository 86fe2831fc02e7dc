//! Reads, on the read-only pool. WAL lets them run beside the writer and
//! see only committed data.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::records::{
    EventFilter, MessageRecord, MessageStatus, OutboxItem, OutboxStats, Routing, StoreCounts,
    StoredEvent,
};
use super::{time, StoreError};

pub(crate) fn count(table: &'static str, n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt {
        table,
        detail: format!("attempts {n} out of range"),
    })
}

pub(crate) async fn pending(
    pool: &SqlitePool,
    sink: &str,
    limit: u32,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxItem>, StoreError> {
    type Row = (
        i64,
        String,
        String,
        String,
        i64,
        String,
        String,
        Option<String>,
        Option<String>,
        String,
        String,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT o.id, o.event_id, o.route, o.sink, o.attempts, o.routing_key, e.kind, e.coi, \
         e.product, m.partner, e.body FROM outbox o \
         JOIN events e ON e.event_id = o.event_id \
         JOIN messages m ON m.id = e.message_row \
         WHERE o.state = 'pending' AND o.sink = ? AND o.next_attempt_at <= ? \
         ORDER BY o.next_attempt_at, o.id LIMIT ?",
    )
    .bind(sink)
    .bind(time::fmt(now))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(StoreError::read("pending"))?;
    rows.into_iter()
        .map(
            |(
                id,
                event_id,
                route,
                sink,
                attempts,
                routing_key,
                kind,
                coi,
                product,
                partner,
                body,
            )| {
                Ok(OutboxItem {
                    id,
                    event_id,
                    route,
                    sink,
                    attempts: count("outbox", attempts)?,
                    // Rows routed before keys were stored: the kind.
                    routing_key: if routing_key.is_empty() {
                        kind.clone()
                    } else {
                        routing_key
                    },
                    kind,
                    coi,
                    product,
                    partner,
                    body,
                })
            },
        )
        .collect()
}

pub(crate) async fn events(
    pool: &SqlitePool,
    f: &EventFilter,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut qb = QueryBuilder::<Sqlite>::new(
        "SELECT event_id, kind, coi, message_row, routing, body FROM events WHERE 1 = 1",
    );
    if let Some(coi) = &f.coi {
        qb.push(" AND coi = ").push_bind(coi.as_str());
    }
    if let Some(kind) = &f.kind {
        qb.push(" AND kind = ").push_bind(kind.as_str());
    }
    if let Some(row) = f.message_row {
        qb.push(" AND message_row = ").push_bind(row);
    }
    if f.unmatched_only {
        qb.push(" AND routing = 'unmatched'");
    }
    // Insertion order is the newest-first order, and every index on events
    // ends in the rowid, so this needs no sort.
    qb.push(" ORDER BY rowid DESC LIMIT ")
        .push_bind(i64::from(f.limit));
    let rows: Vec<(String, String, Option<String>, i64, String, String)> = qb
        .build_query_as()
        .fetch_all(pool)
        .await
        .map_err(StoreError::read("events"))?;
    rows.into_iter()
        .map(|(event_id, kind, coi, message_row, routing, body)| {
            Ok(StoredEvent {
                event_id,
                kind,
                coi,
                message_row,
                routing: Routing::parse(&routing)?,
                body,
            })
        })
        .collect()
}

pub(crate) async fn message(
    pool: &SqlitePool,
    id: i64,
) -> Result<Option<MessageRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT id, connector, partner, message_id, content_type, sha256, status, error_code, \
         error, stage, received_at, origin, payload FROM messages WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(StoreError::read("message"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let events: Vec<(String, String)> =
        sqlx::query_as("SELECT event_id, kind FROM events WHERE message_row = ? ORDER BY rowid")
            .bind(id)
            .fetch_all(pool)
            .await
            .map_err(StoreError::read("message events"))?;
    message_from_row(&row, events).map(Some)
}

fn message_from_row(
    row: &SqliteRow,
    events: Vec<(String, String)>,
) -> Result<MessageRecord, StoreError> {
    let get = StoreError::read("message");
    let status: String = row.try_get("status").map_err(&get)?;
    let received_at: String = row.try_get("received_at").map_err(&get)?;
    Ok(MessageRecord {
        id: row.try_get("id").map_err(&get)?,
        connector: row.try_get("connector").map_err(&get)?,
        partner: row.try_get("partner").map_err(&get)?,
        message_id: row.try_get("message_id").map_err(&get)?,
        content_type: row.try_get("content_type").map_err(&get)?,
        sha256: row.try_get("sha256").map_err(&get)?,
        status: MessageStatus::parse(&status)?,
        error_code: row.try_get("error_code").map_err(&get)?,
        error: row.try_get("error").map_err(&get)?,
        stage: row.try_get("stage").map_err(&get)?,
        received_at: time::parse("messages", &received_at)?,
        origin: row.try_get("origin").map_err(&get)?,
        payload: row.try_get("payload").map_err(&get)?,
        events,
    })
}

pub(crate) async fn outbox_stats(
    pool: &SqlitePool,
    now: DateTime<Utc>,
) -> Result<OutboxStats, StoreError> {
    let by_state: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM outbox GROUP BY state")
            .fetch_all(pool)
            .await
            .map_err(StoreError::read("outbox_stats"))?;
    let mut stats = OutboxStats::default();
    for (state, n) in by_state {
        let n = u64::try_from(n).unwrap_or(0);
        match state.as_str() {
            "pending" => stats.pending = n,
            "delivered" => stats.delivered = n,
            "dead" => stats.dead = n,
            _ => {}
        }
    }
    // Ids grow with created_at, so the smallest pending id is the oldest;
    // MIN(id) reads only the pending part of the (state, …, id) index.
    let oldest: Option<String> = sqlx::query_scalar(
        "SELECT created_at FROM outbox WHERE id = (SELECT MIN(id) FROM outbox WHERE state = 'pending')",
    )
    .fetch_optional(pool)
    .await
    .map_err(StoreError::read("outbox_stats"))?;
    if let Some(created) = oldest {
        let age = now - time::parse("outbox", &created)?;
        stats.oldest_pending_age_secs = (age.num_milliseconds() as f64 / 1000.0).max(0.0);
    }
    Ok(stats)
}

pub(crate) async fn counts(pool: &SqlitePool) -> Result<StoreCounts, StoreError> {
    let read = StoreError::read("counts");
    let by_status: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM messages GROUP BY status")
            .fetch_all(pool)
            .await
            .map_err(&read)?;
    let mut counts = StoreCounts::default();
    for (status, n) in by_status {
        counts.by_status.insert(
            MessageStatus::parse(&status)?,
            u64::try_from(n).unwrap_or(0),
        );
    }
    let (events, unmatched, dead): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM events), \
         (SELECT COUNT(*) FROM events WHERE routing = 'unmatched'), \
         (SELECT COUNT(*) FROM dead_letters)",
    )
    .fetch_one(pool)
    .await
    .map_err(&read)?;
    counts.events = u64::try_from(events).unwrap_or(0);
    counts.unmatched = u64::try_from(unmatched).unwrap_or(0);
    counts.dead_letters = u64::try_from(dead).unwrap_or(0);
    Ok(counts)
}
