//! Which shipments a courier poller asks about: tracking numbers the
//! identity registry links to a therapy for one carrier, linked recently
//! enough, and not delivered yet.

use chrono::{DateTime, Utc};

use super::db::Db;
use super::db::Pool;
use super::{time, StoreError};

/// A carrier's name as tracking keys hold it: lowercase ASCII letters and
/// digits only ("DHL Express" → `dhlexpress`), as
/// [`crate::registry::EventKey::new`] writes it.
pub fn normalise_authority(carrier: &str) -> String {
    carrier
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Tracking numbers of `authority` (normalised, see
/// [`normalise_authority`]) linked to a therapy at or after `linked_since`,
/// less those the hub already took a `shipment.delivered` event for (an
/// event that went on, routed or unmatched; a held one is not placed yet).
/// Oldest link first.
pub(crate) async fn to_poll(
    pool: &Pool,
    authority: &str,
    linked_since: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    // The key is `tracking|{authority}|{value}`: an exact match on it uses
    // the primary key's text, no LIKE (whose case rules differ).
    let prefix = format!("tracking|{authority}|");
    let since = time::fmt(linked_since);
    let rows: Vec<(String,)> = match pool {
        Db::Lite(p) => {
            sqlx::query_as(
                "SELECT i.value FROM identifiers i \
             WHERE i.kind = 'tracking' AND i.key = $1 || i.value AND i.created_at >= $2 \
             AND NOT EXISTS (SELECT 1 FROM events e WHERE e.kind = 'shipment.delivered' \
                 AND json_extract(e.body, '$.data.tracking_number') = i.value) \
             ORDER BY i.created_at, i.value",
            )
            .bind(&prefix)
            .bind(&since)
            .fetch_all(p)
            .await
        }
        Db::Pg(p) => {
            sqlx::query_as(
                "SELECT i.value FROM identifiers i \
             WHERE i.kind = 'tracking' AND i.key = $1 || i.value AND i.created_at >= $2 \
             AND NOT EXISTS (SELECT 1 FROM events e WHERE e.kind = 'shipment.delivered' \
                 AND (e.body::jsonb -> 'data' ->> 'tracking_number') = i.value) \
             ORDER BY i.created_at, i.value",
            )
            .bind(&prefix)
            .bind(&since)
            .fetch_all(p)
            .await
        }
    }
    .map_err(StoreError::read("tracking_to_poll"))?;
    Ok(rows.into_iter().map(|(v,)| v).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_are_compared_as_lowercase_letters_and_digits() {
        assert_eq!(normalise_authority("DHL"), "dhl");
        assert_eq!(normalise_authority("DHL Express-2"), "dhlexpress2");
        assert_eq!(normalise_authority("dhl"), "dhl");
    }
}
