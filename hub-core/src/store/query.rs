//! Reads, on the read pool (SQLite: read-only connections, which WAL lets
//! run beside the writer and see only committed data), and the outbox
//! claims of PostgreSQL.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::db::{on_db, Db, Pool};

use super::records::{
    EventFilter, MessageRecord, MessageStatus, OutboxDepth, OutboxItem, OutboxStats, Routing,
    StoreCounts, StoredEvent,
};
use super::{time, StoreError};

pub(crate) fn count(table: &'static str, n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt {
        table,
        detail: format!("attempts {n} out of range"),
    })
}

/// Who claims outbox rows, for how long (PostgreSQL).
#[derive(Debug)]
pub(crate) struct Claims {
    pub instance: String,
    pub lease: chrono::Duration,
}

impl Claims {
    pub(crate) fn new(opts: &super::StoreOptions) -> Claims {
        Claims {
            instance: opts.instance_id.clone(),
            lease: chrono::Duration::from_std(opts.claim_lease)
                .unwrap_or_else(|_| chrono::Duration::seconds(30)),
        }
    }
}

type PendingRow = (
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
    String,
);

pub(crate) async fn pending(
    pool: &Pool,
    claims: &Claims,
    sink: &str,
    limit: u32,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxItem>, StoreError> {
    let rows: Vec<PendingRow> = match pool {
        Db::Lite(p) => sqlx::query_as(
            "SELECT o.id, o.event_id, o.route, o.sink, o.attempts, o.routing_key, e.kind, e.coi, \
             e.product, m.partner, e.body, o.next_attempt_at FROM outbox o \
             JOIN events e ON e.event_id = o.event_id \
             JOIN messages m ON m.id = e.message_row \
             WHERE o.state = 'pending' AND o.sink = $1 AND o.next_attempt_at <= $2 \
             ORDER BY o.next_attempt_at, o.id LIMIT $3",
        )
        .bind(sink)
        .bind(time::fmt(now))
        .bind(i64::from(limit))
        .fetch_all(p)
        .await
        .map_err(StoreError::read("pending"))?,
        // Claimed in one statement: rows another instance is claiming at
        // this moment are skipped, not waited for; rows it holds under a
        // live lease are not due for us.
        Db::Pg(p) => {
            let mut rows: Vec<PendingRow> = sqlx::query_as(
                "UPDATE outbox o SET lease_owner = $1, lease_until = $2 \
                 FROM events e JOIN messages m ON m.id = e.message_row \
                 WHERE e.event_id = o.event_id AND o.id IN ( \
                   SELECT id FROM outbox \
                   WHERE state = 'pending' AND sink = $3 AND next_attempt_at <= $4 \
                   AND (lease_until IS NULL OR lease_until <= $4 OR lease_owner = $1) \
                   ORDER BY next_attempt_at, id LIMIT $5 FOR UPDATE SKIP LOCKED) \
                 RETURNING o.id, o.event_id, o.route, o.sink, o.attempts, o.routing_key, e.kind, \
                 e.coi, e.product, m.partner, e.body, o.next_attempt_at",
            )
            .bind(claims.instance.as_str())
            .bind(time::fmt(now + claims.lease))
            .bind(sink)
            .bind(time::fmt(now))
            .bind(i64::from(limit))
            .fetch_all(p)
            .await
            .map_err(StoreError::read("pending"))?;
            rows.sort_unstable_by(|a, b| (&a.11, a.0).cmp(&(&b.11, b.0)));
            rows
        }
    };
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
                _due,
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

pub(crate) async fn events(pool: &Pool, f: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
    let rows: Vec<(String, String, Option<String>, i64, String, String)> = on_db!(pool, |p| {
        let mut qb = QueryBuilder::new(
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
        // ends in the rowid (PostgreSQL: a column of that name), so this needs
        // no sort.
        qb.push(" ORDER BY rowid DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        qb.build_query_as()
            .fetch_all(p)
            .await
            .map_err(StoreError::read("events"))?
    });
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

type MessageRow = (
    i64,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    Vec<u8>,
);

pub(crate) async fn message(pool: &Pool, id: i64) -> Result<Option<MessageRecord>, StoreError> {
    let (row, events): (Option<MessageRow>, Vec<(String, String)>) = on_db!(pool, |p| {
        let row: Option<MessageRow> = sqlx::query_as(
            "SELECT id, connector, partner, message_id, content_type, sha256, status, error_code, \
             error, stage, received_at, origin, payload FROM messages WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(p)
        .await
        .map_err(StoreError::read("message"))?;
        let events = sqlx::query_as(
            "SELECT event_id, kind FROM events WHERE message_row = $1 ORDER BY rowid",
        )
        .bind(id)
        .fetch_all(p)
        .await
        .map_err(StoreError::read("message events"))?;
        (row, events)
    });
    let Some(row) = row else {
        return Ok(None);
    };
    message_from_row(row, events).map(Some)
}

pub(crate) fn message_from_row(
    row: MessageRow,
    events: Vec<(String, String)>,
) -> Result<MessageRecord, StoreError> {
    let (
        id,
        connector,
        partner,
        message_id,
        content_type,
        sha256,
        status,
        error_code,
        error,
        stage,
        received_at,
        origin,
        payload,
    ) = row;
    Ok(MessageRecord {
        id,
        connector,
        partner,
        message_id,
        content_type,
        sha256,
        status: MessageStatus::parse(&status)?,
        error_code,
        error,
        stage,
        received_at: time::parse("messages", &received_at)?,
        origin,
        payload,
        events,
    })
}

pub(crate) async fn outbox_depth(
    pool: &Pool,
    claims: &Claims,
    now: DateTime<Utc>,
) -> Result<OutboxDepth, StoreError> {
    let read = StoreError::read("outbox_depth");
    let (pending, oldest): (i64, Option<String>) = on_db!(pool, |p| {
        let pending = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")
            .fetch_one(p)
            .await
            .map_err(&read)?;
        // Ids grow with created_at, so the smallest pending id is the
        // oldest; MIN(id) reads only the pending part of the (state, …, id)
        // index.
        let oldest = sqlx::query_scalar(
            "SELECT created_at FROM outbox \
             WHERE id = (SELECT MIN(id) FROM outbox WHERE state = 'pending')",
        )
        .fetch_optional(p)
        .await
        .map_err(&read)?;
        (pending, oldest)
    });
    // Only PostgreSQL stores claim.
    let claimed: i64 = match pool {
        Db::Lite(_) => 0,
        Db::Pg(p) => sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE state = 'pending' \
             AND lease_owner = $1 AND lease_until > $2",
        )
        .bind(claims.instance.as_str())
        .bind(time::fmt(now))
        .fetch_one(p)
        .await
        .map_err(&read)?,
    };
    let mut depth = OutboxDepth {
        pending: u64::try_from(pending).unwrap_or(0),
        claimed: u64::try_from(claimed).unwrap_or(0),
        ..OutboxDepth::default()
    };
    if let Some(created) = oldest {
        let age = now - time::parse("outbox", &created)?;
        depth.oldest_pending_age_secs = (age.num_milliseconds() as f64 / 1000.0).max(0.0);
    }
    Ok(depth)
}

pub(crate) async fn outbox_stats(
    pool: &Pool,
    claims: &Claims,
    now: DateTime<Utc>,
) -> Result<OutboxStats, StoreError> {
    let depth = outbox_depth(pool, claims, now).await?;
    let by_state: Vec<(String, i64)> = on_db!(pool, |p| sqlx::query_as(
        "SELECT state, COUNT(*) FROM outbox GROUP BY state"
    )
    .fetch_all(p)
    .await
    .map_err(StoreError::read("outbox_stats"))?);
    let mut stats = OutboxStats {
        oldest_pending_age_secs: depth.oldest_pending_age_secs,
        claimed: depth.claimed,
        ..OutboxStats::default()
    };
    for (state, n) in by_state {
        let n = u64::try_from(n).unwrap_or(0);
        match state.as_str() {
            "pending" => stats.pending = n,
            "delivered" => stats.delivered = n,
            "dead" => stats.dead = n,
            _ => {}
        }
    }
    Ok(stats)
}

pub(crate) async fn counts(pool: &Pool) -> Result<StoreCounts, StoreError> {
    let read = StoreError::read("counts");
    let (by_status, (events, unmatched, dead)): (Vec<(String, i64)>, (i64, i64, i64)) =
        on_db!(pool, |p| {
            let by_status = sqlx::query_as("SELECT status, COUNT(*) FROM messages GROUP BY status")
                .fetch_all(p)
                .await
                .map_err(&read)?;
            let totals = sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM events), \
                 (SELECT COUNT(*) FROM events WHERE routing = 'unmatched'), \
                 (SELECT COUNT(*) FROM dead_letters)",
            )
            .fetch_one(p)
            .await
            .map_err(&read)?;
            (by_status, totals)
        });
    let mut counts = StoreCounts::default();
    for (status, n) in by_status {
        counts.by_status.insert(
            MessageStatus::parse(&status)?,
            u64::try_from(n).unwrap_or(0),
        );
    }
    counts.events = u64::try_from(events).unwrap_or(0);
    counts.unmatched = u64::try_from(unmatched).unwrap_or(0);
    counts.dead_letters = u64::try_from(dead).unwrap_or(0);
    Ok(counts)
}

/// Gives this instance's claims up (at shutdown), so that another instance
/// takes the rows at once instead of after the lease. Best effort: a lease
/// not released runs out anyway.
pub(crate) async fn release_claims(pool: &Pool, claims: &Claims) {
    let Db::Pg(p) = pool else {
        return;
    };
    let done = sqlx::query(
        "UPDATE outbox SET lease_until = NULL WHERE state = 'pending' AND lease_owner = $1",
    )
    .bind(claims.instance.as_str())
    .execute(p)
    .await;
    if let Err(e) = done {
        tracing::warn!(error = %e, "could not release the outbox claims; they run out by themselves");
    }
}
