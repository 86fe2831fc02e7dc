//! Multi-row INSERTs and UPDATEs for one batch.
//!
//! sqlx-sqlite hands each statement to its worker thread over a channel, so
//! the cost that matters is statements per batch, not rows: each table gets
//! one `INSERT … VALUES (…), (…)` per chunk, and chunks stay under SQLite's
//! 32,766 bind variables.

use std::borrow::Cow;

use sqlx::QueryBuilder;

use super::db::{on_db, Conn};

use super::records::{
    Destination, IntakeOutcome, IntakeRecord, MessageStatus, PreparedEvent, Routing,
};
use super::time;
use crate::error::ErrorClass;

/// Most rows per statement: a power of two, and `rows × columns` under
/// SQLite's 32,766 bind variables.
fn chunk_rows(columns: usize) -> usize {
    let cap = (32_766 / columns).min(256);
    1 << cap.ilog2()
}

/// Splits `rows` into chunks whose lengths are powers of two (208 → 128, 64,
/// 16). A statement's SQL depends only on its row count, so a handful of
/// distinct statements exist and sqlx's statement cache keeps them prepared.
/// With a chunk per batch size instead, every batch compiled a new multi-row
/// INSERT (a VDBE program as long as its row count): 4.5% of the hub's CPU
/// under `cgthub bench mllp` was `sqlite3_prepare`.
fn pow2_chunks<T>(rows: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = rest.len().min(max);
        let (head, tail) = rest.split_at(1 << n.ilog2());
        rest = tail;
        Some(head)
    })
}

/// An event to insert, under the message row it belongs to.
pub(crate) struct EventRow<'a> {
    /// Borrowed from the request, or made in the batch (a COI the
    /// registry filled in, an alert, a released hold).
    pub ev: Cow<'a, PreparedEvent>,
    /// Hyphenated lowercase UUID.
    pub id: String,
    pub message_row: i64,
}

/// A dead letter to insert, its id already assigned.
pub(crate) struct DeadRow<'a> {
    pub id: i64,
    pub message_row: i64,
    pub event_id: Option<String>,
    pub outbox_id: Option<i64>,
    pub route: Option<String>,
    pub sink: Option<String>,
    pub routing_key: Option<String>,
    pub coi: Option<String>,
    pub stage: &'a str,
    pub class: ErrorClass,
    pub code: &'a str,
    pub reason: Cow<'a, str>,
    pub attempts: i64,
    /// Stored timestamp text.
    pub first_attempt_at: String,
    /// Idempotency key of a broker dead letter.
    pub broker_key: Option<String>,
}

/// Inserts the batch's messages with the given ids (one per intake, new,
/// ascending), skipping repeats of a dedup key. Returns, per intake, whether
/// its row was inserted.
pub(crate) async fn insert_messages(
    conn: &mut Conn,
    intakes: &[(usize, &IntakeRecord)],
    ids: &[i64],
    now: &str,
) -> Result<Vec<bool>, sqlx::Error> {
    on_db!(conn, |c| {
        let mut inserted = vec![false; intakes.len()];
        let mut offset = 0usize;
        for chunk in pow2_chunks(intakes, chunk_rows(14)) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO messages (id, connector, partner, message_id, content_type, payload, \
             sha256, status, error_code, error, stage, received_at, origin, updated_at) ",
            );
            let chunk_ids = &ids[offset..offset + chunk.len()];
            qb.push_values(chunk.iter().zip(chunk_ids), |mut b, ((_, rec), id)| {
                let i = &rec.inbound;
                let (status, problem) = match &rec.outcome {
                    IntakeOutcome::Events(_) => (MessageStatus::Routed, None),
                    IntakeOutcome::Failed(p) => (MessageStatus::Dead, Some(p)),
                    IntakeOutcome::Rejected(p) => (MessageStatus::Rejected, Some(p)),
                };
                b.push_bind(*id)
                    .push_bind(i.connector)
                    .push_bind(i.partner.as_str())
                    .push_bind(i.message_id.as_deref())
                    .push_bind(i.content_type)
                    .push_bind(i.payload.as_ref())
                    .push_bind(i.sha256.as_str())
                    .push_bind(status.as_str())
                    .push_bind(problem.map(|p| p.code))
                    .push_bind(problem.map(|p| p.reason.as_str()))
                    .push_bind(problem.map(|p| p.stage.as_str()))
                    .push_bind(time::fmt(i.received_at))
                    .push_bind(i.origin.as_str())
                    .push_bind(now);
            });
            // Only the partial dedup index can conflict (ids are new).
            qb.push(" ON CONFLICT DO NOTHING");
            let done = qb.build().execute(&mut *c).await?;
            let slots = &mut inserted[offset..offset + chunk.len()];
            if done.rows_affected() == chunk.len() as u64 {
                slots.fill(true);
            } else {
                // Some were repeats. The ids of this chunk were new before it,
                // so the ones that exist now are the ones it inserted. (Not
                // RETURNING: sqlx-sqlite streams every returned row to the
                // caller through a channel, a thread wake-up each; repeats are
                // rare.)
                let found: Vec<i64> =
                    sqlx::query_scalar("SELECT id FROM messages WHERE id BETWEEN $1 AND $2")
                        .bind(chunk_ids[0])
                        .bind(chunk_ids[chunk_ids.len() - 1])
                        .fetch_all(&mut *c)
                        .await?;
                for id in found {
                    if let Ok(k) = chunk_ids.binary_search(&id) {
                        slots[k] = true;
                    }
                }
            }
            offset += chunk.len();
        }
        Ok(inserted)
    })
}

/// Inserts events, then one outbox row per destination (due now).
pub(crate) async fn insert_events(
    conn: &mut Conn,
    rows: &[EventRow<'_>],
    now: &str,
) -> Result<(), sqlx::Error> {
    on_db!(conn, |c| {
        for chunk in pow2_chunks(rows, chunk_rows(10)) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO events (event_id, message_row, kind, coi, order_id, product, \
             occurred_at, recorded_at, body, routing) ",
            );
            qb.push_values(chunk, |mut b, r| {
                let routing = if r.ev.destinations.is_empty() {
                    Routing::Unmatched
                } else {
                    Routing::Routed
                };
                b.push_bind(r.id.as_str())
                    .push_bind(r.message_row)
                    .push_bind(r.ev.kind)
                    .push_bind(r.ev.coi.as_deref())
                    .push_bind(r.ev.order_id.as_deref())
                    .push_bind(r.ev.product.as_deref())
                    .push_bind(time::fmt(r.ev.occurred_at))
                    .push_bind(time::fmt(r.ev.recorded_at))
                    .push_bind(r.ev.body.as_str())
                    .push(if routing == Routing::Routed {
                        "'routed'"
                    } else {
                        "'unmatched'"
                    });
            });
            qb.build().execute(&mut *c).await?;
        }
        let outbox: Vec<(&str, &Destination)> = rows
            .iter()
            .flat_map(|r| r.ev.destinations.iter().map(move |d| (r.id.as_str(), d)))
            .collect();
        for chunk in pow2_chunks(&outbox, chunk_rows(6)) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO outbox (event_id, route, sink, routing_key, state, attempts, \
             next_attempt_at, created_at) ",
            );
            qb.push_values(chunk, |mut b, (event_id, d)| {
                b.push_bind(*event_id)
                    .push_bind(d.route.as_str())
                    .push_bind(d.sink.as_str())
                    .push_bind(d.routing_key.as_str())
                    .push("'pending'")
                    .push("0")
                    .push_bind(now)
                    .push_bind(now);
            });
            qb.build().execute(&mut *c).await?;
        }
        Ok(())
    })
}

/// Inserts new dead letters (status open) and the first link of each one's
/// error chain.
pub(crate) async fn insert_dead_letters(
    conn: &mut Conn,
    rows: &[DeadRow<'_>],
    now: &str,
) -> Result<(), sqlx::Error> {
    on_db!(conn, |c| {
        for chunk in pow2_chunks(rows, chunk_rows(18)) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO dead_letters (id, message_row, event_id, outbox_id, route, sink, \
             routing_key, coi, stage, class, code, reason, attempts, created_at, \
             first_attempt_at, last_attempt_at, status, broker_key) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.id)
                    .push_bind(r.message_row)
                    .push_bind(r.event_id.as_deref())
                    .push_bind(r.outbox_id)
                    .push_bind(r.route.as_deref())
                    .push_bind(r.sink.as_deref())
                    .push_bind(r.routing_key.as_deref())
                    .push_bind(r.coi.as_deref())
                    .push_bind(r.stage)
                    .push_bind(r.class.as_str())
                    .push_bind(r.code)
                    .push_bind(r.reason.as_ref())
                    .push_bind(r.attempts)
                    .push_bind(now)
                    .push_bind(r.first_attempt_at.as_str())
                    .push_bind(now)
                    .push("'open'")
                    .push_bind(r.broker_key.as_deref());
            });
            qb.build().execute(&mut *c).await?;
        }
        for chunk in pow2_chunks(rows, chunk_rows(4)) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO dead_letter_history (dead_letter, at, actor, action, code, note) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.id)
                    .push_bind(now)
                    .push("'system'")
                    .push("'dead_lettered'")
                    .push_bind(r.code)
                    .push_bind(r.reason.as_ref());
            });
            qb.build().execute(&mut *c).await?;
        }
        Ok(())
    })
}

/// Pending rows among `ids` become delivered; others are left as they are
/// (a late confirm must not resurrect a dead-lettered row).
pub(crate) async fn mark_delivered(
    conn: &mut Conn,
    ids: &[i64],
    now: &str,
) -> Result<(), sqlx::Error> {
    on_db!(conn, |c| {
        for chunk in pow2_chunks(ids, 512) {
            let mut qb =
                QueryBuilder::new("UPDATE outbox SET state = 'delivered', delivered_at = ");
            // `state NOT IN (…)`, not `state = 'pending'`: a filter on the
            // rows the ids find, never an index range. PostgreSQL otherwise
            // ANDs the id lookups with a scan of every pending entry of
            // `outbox_due`, dead versions included: 100 ms a batch under load.
            qb.push_bind(now)
                .push(" WHERE state NOT IN ('delivered', 'dead') AND id IN (");
            let mut sep = qb.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            qb.push(")");
            qb.build().execute(&mut *c).await?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_and_cover_every_row() {
        let rows: Vec<usize> = (0..208).collect();
        let lens: Vec<usize> = pow2_chunks(&rows, 256).map(<[usize]>::len).collect();
        assert_eq!(lens, [128, 64, 16]);
        let lens: Vec<usize> = pow2_chunks(&rows, 64).map(<[usize]>::len).collect();
        assert_eq!(lens, [64, 64, 64, 16]);
        let back: Vec<usize> = pow2_chunks(&rows, 32).flatten().copied().collect();
        assert_eq!(back, rows);
        assert_eq!(pow2_chunks::<u8>(&[], 8).count(), 0);
        assert_eq!(chunk_rows(14), 256);
    }
}
