//! Reads for the PDF entry portal, whose workflow lives in messages of
//! connector `pdf_entry`: an upload, then an entry, a verification and
//! perhaps a resolution, each a message with its own id (see
//! `connectors/pdf_entry`). The partial index of migration 0007 keeps these
//! lists off every other connector's rows; it applies only when the query
//! names the connector as a literal, as these do.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::db::{on_db, Pool};
use super::records::MessageStatus;
use super::{time, StoreError};

/// A stored message without its payload, as lists show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSummary {
    pub id: i64,
    pub partner: String,
    pub message_id: Option<String>,
    pub content_type: String,
    pub sha256: String,
    pub status: MessageStatus,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub received_at: DateTime<Utc>,
    /// Who or what sent it (the portal writes the user here).
    pub origin: String,
    /// How many events it produced.
    pub events: i64,
}

type Row = (
    i64,
    String,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
);

const COLUMNS: &str = "SELECT m.id, m.partner, m.message_id, m.content_type, m.sha256, m.status, \
     m.error_code, m.error, m.received_at, m.origin, \
     (SELECT COUNT(*) FROM events e WHERE e.message_row = m.id) \
     FROM messages m WHERE m.connector = 'pdf_entry'";

fn summary(r: Row) -> Result<MessageSummary, StoreError> {
    Ok(MessageSummary {
        id: r.0,
        partner: r.1,
        message_id: r.2,
        content_type: r.3,
        sha256: r.4,
        status: MessageStatus::parse(&r.5)?,
        error_code: r.6,
        error: r.7,
        received_at: time::parse("messages", &r.8)?,
        origin: r.9,
        events: r.10,
    })
}

/// The newest `limit` messages of connector `pdf_entry`, newest first.
pub(crate) async fn newest(pool: &Pool, limit: u32) -> Result<Vec<MessageSummary>, StoreError> {
    let rows: Vec<Row> = on_db!(pool, |p| {
        sqlx::query_as(&format!("{COLUMNS} ORDER BY m.id DESC LIMIT $1"))
            .bind(i64::from(limit))
            .fetch_all(p)
            .await
            .map_err(StoreError::read("pdf_entry messages"))?
    });
    rows.into_iter().map(summary).collect()
}

/// One `pdf_entry` message by its row, without its payload.
pub(crate) async fn by_row(pool: &Pool, row: i64) -> Result<Option<MessageSummary>, StoreError> {
    let r: Option<Row> = on_db!(pool, |p| {
        sqlx::query_as(&format!("{COLUMNS} AND m.id = $1"))
            .bind(row)
            .fetch_optional(p)
            .await
            .map_err(StoreError::read("pdf_entry message"))?
    });
    r.map(summary).transpose()
}

/// The `pdf_entry` messages of `partner` with one of `ids` as their
/// message id, whatever their status, oldest first.
pub(crate) async fn by_ids(
    pool: &Pool,
    partner: &str,
    ids: &[String],
) -> Result<Vec<MessageSummary>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Row> = on_db!(pool, |p| {
        let mut q = QueryBuilder::new(COLUMNS);
        q.push(" AND m.partner = ").push_bind(partner);
        q.push(" AND m.message_id IN (");
        let mut sep = q.separated(", ");
        for id in ids {
            sep.push_bind(id.as_str());
        }
        q.push(") ORDER BY m.id");
        q.build_query_as()
            .fetch_all(p)
            .await
            .map_err(StoreError::read("pdf_entry messages"))?
    });
    rows.into_iter().map(summary).collect()
}
