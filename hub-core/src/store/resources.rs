//! Reads of the resources partners wrote at the hub (FHIR create and
//! update; see migration 0006): by type and id, by identifier, by the
//! message that wrote them.

use super::db::{on_db, Pool};
use super::StoreError;

/// A kept resource: where it is and which version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptResource {
    pub resource_type: String,
    pub id: String,
    /// The row of the message that last wrote it.
    pub version: i64,
    /// When that message was committed (RFC 3339).
    pub updated_at: String,
    pub body: String,
}

type Row = (String, String, i64, String, String);

fn kept((resource_type, id, version, updated_at, body): Row) -> KeptResource {
    KeptResource {
        resource_type,
        id,
        version,
        updated_at,
        body,
    }
}

pub(crate) async fn by_id(
    pool: &Pool,
    resource_type: &str,
    id: &str,
) -> Result<Option<KeptResource>, StoreError> {
    let row: Option<Row> = on_db!(pool, |p| sqlx::query_as(
        "SELECT resource_type, id, version, updated_at, body FROM fhir_resources \
         WHERE resource_type = $1 AND id = $2",
    )
    .bind(resource_type)
    .bind(id)
    .fetch_optional(p)
    .await)
    .map_err(StoreError::read("fhir_resource"))?;
    Ok(row.map(kept))
}

pub(crate) async fn by_identifier(
    pool: &Pool,
    resource_type: &str,
    system: &str,
    value: &str,
) -> Result<Option<KeptResource>, StoreError> {
    let row: Option<Row> = on_db!(pool, |p| {
        sqlx::query_as(
        "SELECT r.resource_type, r.id, r.version, r.updated_at, r.body FROM fhir_identifiers i \
         JOIN fhir_resources r ON r.resource_type = i.resource_type AND r.id = i.id \
         WHERE i.resource_type = $1 AND i.system = $2 AND i.value = $3",
    )
    .bind(resource_type)
    .bind(system)
    .bind(value)
    .fetch_optional(p)
    .await
    })
    .map_err(StoreError::read("fhir_identifier"))?;
    Ok(row.map(kept))
}

pub(crate) async fn of_message(
    pool: &Pool,
    message_row: i64,
) -> Result<Vec<KeptResource>, StoreError> {
    let rows: Vec<Row> = on_db!(pool, |p| sqlx::query_as(
        "SELECT resource_type, id, version, updated_at, body FROM fhir_resources \
         WHERE message_row = $1",
    )
    .bind(message_row)
    .fetch_all(p)
    .await)
    .map_err(StoreError::read("fhir_resources"))?;
    Ok(rows.into_iter().map(kept).collect())
}
