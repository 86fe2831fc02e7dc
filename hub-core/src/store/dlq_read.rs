//! Reads of dead letters, their error chains and audit records, on the
//! read pool.

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row};

use super::db::{on_db, Pool};
use super::dlq_records::{
    AuditRecord, DeadLetter, DeadLetterDetail, DeadLetterFilter, DeadLetterStatus, HistoryEntry,
    ReplayTarget,
};
use super::query::{count, message};
use super::records::{parse_class, MessageRecord};
use super::{time, StoreError};

const COLUMNS: &str = "SELECT d.id, d.message_row, m.connector, m.partner, d.event_id, \
     d.outbox_id, d.route, d.sink, d.routing_key, d.coi, d.stage, d.class, d.code, d.reason, \
     d.attempts, d.created_at, COALESCE(d.first_attempt_at, d.created_at) AS first_attempt_at, \
     COALESCE(d.last_attempt_at, d.created_at) AS last_attempt_at, d.status, d.replayed_at, \
     d.replayed_by, d.purged_at, d.purged_by, d.purge_reason \
     FROM dead_letters d JOIN messages m ON m.id = d.message_row";

/// A dead letter row's columns by name, on either database.
trait Cols {
    fn text(&self, col: &str) -> Result<String, StoreError>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
}

macro_rules! cols_for {
    ($row:ty) => {
        impl Cols for $row {
            fn text(&self, col: &str) -> Result<String, StoreError> {
                self.try_get(col).map_err(StoreError::read("dead letter"))
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
                self.try_get(col).map_err(StoreError::read("dead letter"))
            }
            fn int(&self, col: &str) -> Result<i64, StoreError> {
                self.try_get(col).map_err(StoreError::read("dead letter"))
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
                self.try_get(col).map_err(StoreError::read("dead letter"))
            }
        }
    };
}
cols_for!(SqliteRow);
cols_for!(PgRow);

fn opt_time(
    row: &impl Cols,
    col: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
    row.opt_text(col)?
        .map(|s| time::parse("dead_letters", &s))
        .transpose()
}

fn from_row(row: &impl Cols) -> Result<DeadLetter, StoreError> {
    let at = |col: &str| -> Result<_, StoreError> { time::parse("dead_letters", &row.text(col)?) };
    Ok(DeadLetter {
        id: row.int("id")?,
        message_row: row.int("message_row")?,
        connector: row.text("connector")?,
        partner: row.text("partner")?,
        event_id: row.opt_text("event_id")?,
        outbox_id: row.opt_int("outbox_id")?,
        route: row.opt_text("route")?,
        sink: row.opt_text("sink")?,
        routing_key: row.opt_text("routing_key")?,
        coi: row.opt_text("coi")?,
        stage: row.text("stage")?,
        class: parse_class(&row.text("class")?)?,
        code: row.text("code")?,
        reason: row.text("reason")?,
        attempts: count("dead_letters", row.int("attempts")?)?,
        created_at: at("created_at")?,
        first_attempt_at: at("first_attempt_at")?,
        last_attempt_at: at("last_attempt_at")?,
        status: DeadLetterStatus::from_db(&row.text("status")?)?,
        replayed_at: opt_time(row, "replayed_at")?,
        replayed_by: row.opt_text("replayed_by")?,
        purged_at: opt_time(row, "purged_at")?,
        purged_by: row.opt_text("purged_by")?,
        purge_reason: row.opt_text("purge_reason")?,
    })
}

/// Dead letters matching `f`, newest first.
pub(crate) async fn list(pool: &Pool, f: &DeadLetterFilter) -> Result<Vec<DeadLetter>, StoreError> {
    on_db!(pool, |p| {
        let mut qb = QueryBuilder::new(COLUMNS);
        qb.push(" WHERE 1 = 1");
        if let Some(st) = f.status {
            qb.push(" AND d.status = ").push_bind(st.as_str());
        }
        if let Some(stage) = &f.stage {
            qb.push(" AND d.stage = ").push_bind(stage.as_str());
        }
        if let Some(code) = &f.code {
            qb.push(" AND d.code = ").push_bind(code.as_str());
        }
        qb.push(" ORDER BY d.id DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        let rows = qb
            .build()
            .fetch_all(p)
            .await
            .map_err(StoreError::read("dead_letters"))?;
        rows.iter().map(from_row).collect()
    })
}

/// One dead letter, without its message.
pub(crate) async fn one(pool: &Pool, id: i64) -> Result<Option<DeadLetter>, StoreError> {
    let sql = format!("{COLUMNS} WHERE d.id = $1");
    on_db!(pool, |p| {
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(p)
            .await
            .map_err(StoreError::read("dead_letter"))?;
        row.as_ref().map(from_row).transpose()
    })
}

/// One dead letter with the message (and payload) it came from.
pub(crate) async fn with_message(
    pool: &Pool,
    id: i64,
) -> Result<Option<(DeadLetter, MessageRecord)>, StoreError> {
    let Some(dl) = one(pool, id).await? else {
        return Ok(None);
    };
    let msg = message(pool, dl.message_row)
        .await?
        .ok_or_else(|| StoreError::Corrupt {
            table: "dead_letters",
            detail: format!("dead letter {id} names missing message {}", dl.message_row),
        })?;
    Ok(Some((dl, msg)))
}

/// A dead letter with its message, error chain and audit records.
pub(crate) async fn detail(pool: &Pool, id: i64) -> Result<Option<DeadLetterDetail>, StoreError> {
    let Some((dead_letter, message)) = with_message(pool, id).await? else {
        return Ok(None);
    };
    let read = StoreError::read("dead_letter_history");
    let rows: Vec<(String, String, String, Option<String>, String)> = on_db!(pool, |p| {
        sqlx::query_as(
            "SELECT at, actor, action, code, note FROM dead_letter_history \
             WHERE dead_letter = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(p)
        .await
        .map_err(read)?
    });
    let history = rows
        .into_iter()
        .map(|(at, actor, action, code, note)| {
            Ok(HistoryEntry {
                at: time::parse("dead_letter_history", &at)?,
                actor,
                action,
                code,
                note,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    let audit = audit_for(pool, &format!("dead_letter:{id}")).await?;
    Ok(Some(DeadLetterDetail {
        dead_letter,
        message,
        history,
        audit,
    }))
}

/// Audit records about `subject`, oldest first.
pub(crate) async fn audit_for(pool: &Pool, subject: &str) -> Result<Vec<AuditRecord>, StoreError> {
    type Row = (i64, String, String, String, String, String, String);
    let rows: Vec<Row> = on_db!(pool, |p| sqlx::query_as(
        "SELECT id, at, actor, action, subject, detail, hash FROM audit_log \
         WHERE subject = $1 ORDER BY id",
    )
    .bind(subject)
    .fetch_all(p)
    .await
    .map_err(StoreError::read("audit_for"))?);
    rows.into_iter()
        .map(|(id, at, actor, action, subject, detail, hash)| {
            Ok(AuditRecord {
                id,
                at: time::parse("audit_log", &at)?,
                actor,
                action,
                subject,
                detail,
                hash,
            })
        })
        .collect()
}

/// Ids of the open dead letters with reason code `code`, oldest first.
pub(crate) async fn open_ids(pool: &Pool, code: &str) -> Result<Vec<i64>, StoreError> {
    on_db!(pool, |p| sqlx::query_scalar(
        "SELECT id FROM dead_letters WHERE status = 'open' AND code = $1 ORDER BY id"
    )
    .bind(code)
    .fetch_all(p)
    .await
    .map_err(StoreError::read("open_dead_letter_ids")))
}

/// Ids of the open dead letters of message `row`, oldest first.
pub(crate) async fn open_ids_of_message(pool: &Pool, row: i64) -> Result<Vec<i64>, StoreError> {
    on_db!(pool, |p| sqlx::query_scalar(
        "SELECT id FROM dead_letters WHERE status = 'open' AND message_row = $1 ORDER BY id"
    )
    .bind(row)
    .fetch_all(p)
    .await
    .map_err(StoreError::read("open_dead_letters_of_message")))
}

/// Where a broker dead letter of one of our events goes again: the
/// delivered outbox row of its event with the same routing key, else the
/// event's only delivered row. `None` when it names no event of ours or
/// that cannot be told.
pub(crate) async fn replay_target(
    pool: &Pool,
    dl: &DeadLetter,
) -> Result<Option<ReplayTarget>, StoreError> {
    let Some(event_id) = &dl.event_id else {
        return Ok(None);
    };
    // Rows routed before routing keys were stored carry '' and were
    // published with the event's kind.
    let rows: Vec<(i64, String, String, String)> = on_db!(pool, |p| sqlx::query_as(
        "SELECT o.id, o.route, o.sink, \
         CASE WHEN o.routing_key = '' THEN e.kind ELSE o.routing_key END \
         FROM outbox o JOIN events e ON e.event_id = o.event_id \
         WHERE o.event_id = $1 AND o.state = 'delivered' ORDER BY o.id",
    )
    .bind(event_id)
    .fetch_all(p)
    .await
    .map_err(StoreError::read("replay_target"))?);
    let same_key = rows
        .iter()
        .find(|r| dl.routing_key.as_deref() == Some(r.3.as_str()));
    let pick = match (same_key, rows.as_slice()) {
        (Some(r), _) => Some(r),
        (None, [only]) => Some(only),
        _ => None,
    };
    Ok(
        pick.map(|(outbox_id, route, sink, routing_key)| ReplayTarget {
            outbox_id: *outbox_id,
            route: route.clone(),
            sink: sink.clone(),
            routing_key: routing_key.clone(),
        }),
    )
}
