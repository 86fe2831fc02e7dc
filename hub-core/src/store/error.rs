//! What can go wrong in the store, classified by what the caller can do about it.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::ErrorClass;

/// A store failure, with the operation (and, for writes, the message or row)
/// it concerns.
///
/// Clone because one failed group commit answers every op of the batch with
/// the same underlying error; the sources are behind `Arc` for that reason.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store URL cannot be used.
    #[error("invalid store url {url:?}: {reason}")]
    Config { url: String, reason: String },

    /// The database's directory could not be created.
    #[error("cannot create store directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },

    /// The database could not be opened (file, permissions, pragmas).
    #[error("cannot open store {url:?}: {source}")]
    Open {
        url: String,
        #[source]
        source: Arc<sqlx::Error>,
    },

    /// The schema migrations failed; the store must not be used.
    #[error("store schema migration failed: {source}")]
    Migrate {
        #[source]
        source: Arc<sqlx::migrate::MigrateError>,
    },

    /// A write failed. Nothing of the batch that held it was committed.
    #[error("store {op} failed for {subject}: {source}")]
    Write {
        /// The operation, e.g. `intake`, `delivered`.
        op: &'static str,
        /// What it was about, e.g. `hl7v2/LAB/MSG00001` or `outbox 17`.
        subject: String,
        #[source]
        source: Arc<sqlx::Error>,
    },

    /// A read failed.
    #[error("store {op} failed: {source}")]
    Read {
        op: &'static str,
        #[source]
        source: Arc<sqlx::Error>,
    },

    /// The row an operation names does not exist (or is not in the state the
    /// operation needs, e.g. a delivered outbox row cannot be retried).
    #[error("store {op}: {what} not found")]
    NotFound { op: &'static str, what: String },

    /// The request itself is wrong (a purge without a reason, no actor):
    /// nothing was written.
    #[error("store {op}: {reason}")]
    Invalid { op: &'static str, reason: String },

    /// The database's schema is older than this program's (a read-only
    /// open does not migrate): the hub migrates it when it starts.
    #[error("store schema is at version {found}, this cgthub needs {needed}: start `cgthub serve` once to migrate it")]
    SchemaBehind { found: i64, needed: i64 },

    /// A stored value does not decode (unknown status, bad timestamp): the
    /// database was changed behind the store's back.
    #[error("corrupt value in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },

    /// An event or audit detail could not be serialised.
    #[error("cannot serialise {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: Arc<serde_json::Error>,
    },

    /// The store was closed (or its writer stopped); nothing was written.
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    /// What can be done about it: busy, locked, I/O and disk-full errors may
    /// pass (retry), constraint and corruption errors will not (dead-letter),
    /// a closed or unopenable store stops the component.
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Config { .. } | StoreError::Migrate { .. } | StoreError::Closed => {
                ErrorClass::Fatal
            }
            StoreError::CreateDir { .. } => ErrorClass::Fatal,
            StoreError::Open { source, .. } => match sqlx_class(source) {
                ErrorClass::Transient => ErrorClass::Transient,
                _ => ErrorClass::Fatal,
            },
            StoreError::Write { source, .. } | StoreError::Read { source, .. } => {
                sqlx_class(source)
            }
            StoreError::NotFound { .. }
            | StoreError::Invalid { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Encode { .. } => ErrorClass::Permanent,
            StoreError::SchemaBehind { .. } => ErrorClass::Fatal,
        }
    }

    /// True when the database refused the write because of a constraint
    /// (unique, foreign key, check, not null, trigger abort).
    pub fn is_constraint(&self) -> bool {
        match self {
            StoreError::Write { source, .. } | StoreError::Read { source, .. } => {
                sqlite_code(source).is_some_and(|c| c & 0xff == SQLITE_CONSTRAINT)
                    || pg_state(source).is_some_and(|s| s.starts_with("23") || s == "P0001")
            }
            _ => false,
        }
    }

    pub(crate) fn read(op: &'static str) -> impl Fn(sqlx::Error) -> StoreError + Copy {
        move |e| match e {
            sqlx::Error::PoolClosed => StoreError::Closed,
            e => StoreError::Read {
                op,
                source: Arc::new(e),
            },
        }
    }
}

// Primary SQLite result codes (https://www.sqlite.org/rescode.html).
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_NOMEM: i32 = 7;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_PROTOCOL: i32 = 15;
const SQLITE_CONSTRAINT: i32 = 19;
const SQLITE_NOTADB: i32 = 26;

/// The extended SQLite result code of a database error, if it is one.
fn sqlite_code(e: &sqlx::Error) -> Option<i32> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::sqlite::SqliteError>()
            .and_then(sqlx::error::DatabaseError::code)
            .and_then(|c| c.parse::<i32>().ok()),
        _ => None,
    }
}

/// The SQLSTATE of a PostgreSQL error, if it is one.
fn pg_state(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .map(|db| db.code()),
        _ => None,
    }
}

/// A PostgreSQL transaction that lost a race with another writer: a
/// deadlock, a serialization failure, or a unique key another transaction
/// committed while this one waited. Running it again is the cure (it then
/// sees the other's row); a unique violation that repeats is a real one.
pub(crate) fn is_pg_conflict(e: &sqlx::Error) -> bool {
    pg_state(e).is_some_and(|s| s == "40P01" || s == "40001" || s == "23505")
}

/// Classifies a sqlx error by its SQLite result code, PostgreSQL SQLSTATE
/// class or its kind.
pub(crate) fn sqlx_class(e: &sqlx::Error) -> ErrorClass {
    if let Some(state) = pg_state(e) {
        // 08 connection, 40 rolled back (deadlock, serialization), 53
        // resources, 57 operator intervention (shutdown, failover), 55P03
        // lock not available.
        let transient = ["08", "40", "53", "57"]
            .iter()
            .any(|c| state.starts_with(c))
            || state == "55P03";
        return if transient {
            ErrorClass::Transient
        } else {
            ErrorClass::Permanent
        };
    }
    if let Some(code) = sqlite_code(e) {
        return match code & 0xff {
            SQLITE_BUSY | SQLITE_LOCKED | SQLITE_NOMEM | SQLITE_IOERR | SQLITE_FULL
            | SQLITE_CANTOPEN | SQLITE_PROTOCOL => ErrorClass::Transient,
            SQLITE_CONSTRAINT | SQLITE_CORRUPT | SQLITE_NOTADB => ErrorClass::Permanent,
            _ => ErrorClass::Permanent,
        };
    }
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => ErrorClass::Transient,
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => ErrorClass::Fatal,
        _ => ErrorClass::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_transient_and_missing_rows_permanent() {
        let io = StoreError::Read {
            op: "pending",
            source: Arc::new(sqlx::Error::Io(std::io::Error::other("disk"))),
        };
        assert_eq!(io.class(), ErrorClass::Transient);
        let nf = StoreError::NotFound {
            op: "retry_later",
            what: "outbox 1".into(),
        };
        assert_eq!(nf.class(), ErrorClass::Permanent);
        assert_eq!(StoreError::Closed.class(), ErrorClass::Fatal);
        assert!(!io.is_constraint());
    }
}
