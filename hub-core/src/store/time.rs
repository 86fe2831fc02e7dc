//! Timestamps as stored: RFC 3339, UTC, millisecond precision, `Z` suffix.
//!
//! One fixed width format, so that text comparison in SQL (`next_attempt_at
//! <= ?`) is time comparison, in SQLite today and PostgreSQL later.

use chrono::{DateTime, SecondsFormat, Utc};

use super::StoreError;

/// `2026-11-21T09:14:02.311Z`.
pub(crate) fn fmt(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses a stored timestamp; `table` names where it came from for the error.
pub(crate) fn parse(table: &'static str, s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt {
            table,
            detail: format!("timestamp {s:?}: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn fixed_width_millis_round_trip() {
        let t = Utc.with_ymd_and_hms(2026, 11, 21, 9, 14, 2).unwrap();
        let s = fmt(t);
        assert_eq!(s, "2026-11-21T09:14:02.000Z");
        assert_eq!(parse("t", &s).unwrap(), t);
        assert!(parse("t", "yesterday").is_err());
    }
}
