//! The two databases the store runs on, SQLite (the embedded default) and
//! PostgreSQL (several hubs sharing one store), and how one piece of sqlx
//! code runs on either.
//!
//! The store's SQL is written once, portably: `$1`-style parameters (which
//! sqlx-sqlite accepts too), BIGINT-compatible integers, TEXT timestamps.
//! [`on_db!`] expands a body once per database, so each copy is compiled
//! against that database's own connection type: no `Any` driver converting
//! every value, no trait-bound soup, and SQLite keeps its native speed. What
//! differs — opening, BEGIN, id allocation, outbox claims — lives in the few
//! functions below and in `connect.rs`.

use sqlx::{PgConnection, PgPool, SqliteConnection, SqlitePool};

/// One value per database.
#[derive(Debug, Clone)]
pub(crate) enum Db<L, P> {
    Lite(L),
    Pg(P),
}

/// The writer's connection.
pub(crate) type Conn = Db<SqliteConnection, PgConnection>;
/// The pool reads (and, on PostgreSQL, outbox claims) go through.
pub(crate) type Pool = Db<SqlitePool, PgPool>;

/// Runs `$body` with `$c` bound to the database-specific value inside
/// `$db` (a `&mut Conn` gives `&mut SqliteConnection` or `&mut
/// PgConnection`; a `&Pool` gives `&SqlitePool` or `&PgPool`).
macro_rules! on_db {
    ($db:expr, |$c:ident| $body:expr) => {
        match $db {
            $crate::store::db::Db::Lite($c) => $body,
            $crate::store::db::Db::Pg($c) => $body,
        }
    };
}
pub(crate) use on_db;

impl<L, P> Db<L, P> {
    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Db::Pg(_))
    }
}

impl Pool {
    pub(crate) async fn close(&self) {
        on_db!(self, |p| p.close().await)
    }
}

/// Opens the writer's transaction. SQLite: `BEGIN IMMEDIATE`, taking the
/// write lock now, so that ids allocated as `MAX(id) + 1` are ours until
/// COMMIT. PostgreSQL: a plain READ COMMITTED transaction; ids come from
/// sequences and the dedup key is a unique index, so instances write side
/// by side.
pub(crate) async fn begin(conn: &mut Conn) -> Result<(), sqlx::Error> {
    match conn {
        Db::Lite(c) => sqlx::query("BEGIN IMMEDIATE").execute(c).await.map(drop),
        Db::Pg(c) => sqlx::query("BEGIN").execute(c).await.map(drop),
    }
}

pub(crate) async fn commit(conn: &mut Conn) -> Result<(), sqlx::Error> {
    on_db!(conn, |c| sqlx::query("COMMIT").execute(c).await.map(drop))
}

pub(crate) async fn rollback(conn: &mut Conn) -> Result<(), sqlx::Error> {
    on_db!(conn, |c| sqlx::query("ROLLBACK").execute(c).await.map(drop))
}

/// `n` new ids for `table` (`messages` or `dead_letters`), in ascending
/// order. SQLite: `MAX(id) + 1…`, free because the writer holds the write
/// lock. PostgreSQL: from the table's sequence, so concurrent instances
/// never take the same id (the ids need not be contiguous).
pub(crate) async fn new_ids(
    conn: &mut Conn,
    table: &'static str,
    n: usize,
) -> Result<Vec<i64>, sqlx::Error> {
    if n == 0 {
        return Ok(Vec::new());
    }
    match conn {
        Db::Lite(c) => {
            let sql = format!("SELECT COALESCE(MAX(id), 0) + 1 FROM {table}");
            let first: i64 = sqlx::query_scalar(&sql).fetch_one(c).await?;
            Ok((first..first + n as i64).collect())
        }
        Db::Pg(c) => {
            let sql = format!(
                "SELECT nextval('{table}_id_seq') FROM generate_series(1, $1::BIGINT) ORDER BY 1"
            );
            sqlx::query_scalar(&sql).bind(n as i64).fetch_all(c).await
        }
    }
}

/// Makes this transaction the only one appending to the audit chain until
/// it ends (PostgreSQL: a transaction-scoped advisory lock; SQLite: the
/// write lock already is).
pub(crate) async fn lock_audit_chain(conn: &mut Conn) -> Result<(), sqlx::Error> {
    match conn {
        Db::Lite(_) => Ok(()),
        Db::Pg(c) => sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(AUDIT_LOCK)
            .execute(c)
            .await
            .map(drop),
    }
}

/// The advisory lock key of the audit chain ("cgtaudit" in ASCII).
const AUDIT_LOCK: i64 = 0x6367_7461_7564_6974;
