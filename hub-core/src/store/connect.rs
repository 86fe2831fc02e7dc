//! Opening the database: one write connection, a pool for reads (and on
//! PostgreSQL outbox claims), on SQLite one checkpoint connection, and the
//! schema migrations.
//!
//! Each sqlx-sqlite connection runs on its own thread (named here, so `top
//! -H` shows `store-writer`, `store-checkpoint`, `store-reader-N`).
//! PostgreSQL connections are sockets on the runtime; each is named
//! `cgthub <instance>` in `pg_stat_activity`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::ConnectOptions;

use super::db::{Conn, Db, Pool};
use super::{StoreError, StoreOptions};

/// The schemas, embedded at compile time.
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The newest schema version this program knows, for `store`.
pub(crate) fn schema_version(postgres: bool) -> i64 {
    let m = if postgres {
        &PG_MIGRATOR
    } else {
        &SQLITE_MIGRATOR
    };
    m.iter().map(|m| m.version).max().unwrap_or(0)
}

/// How long a connection waits for a lock held by another process (e.g. a
/// `cgthub` CLI command) before the operation fails as transient.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer's own WAL auto-checkpoint threshold, in pages (32 MiB with
/// 4 KiB pages): a backstop behind the background checkpointer, and what
/// lets the WAL restart from its beginning under sustained load.
const WRITER_AUTOCHECKPOINT_PAGES: &str = "8192";

/// A WAL file that grew beyond this is truncated back to it when it
/// restarts (bytes).
const WAL_SIZE_LIMIT: &str = "67108864";

/// The store's connections, migrated and ready.
pub(crate) struct Connections {
    /// The group-commit writer's connections: one on SQLite.
    pub writers: Vec<Conn>,
    /// SQLite only: the background checkpointer's.
    pub checkpoint: Option<SqliteConnection>,
    pub readers: Pool,
    /// PostgreSQL: the writer's options, to reconnect after a failover.
    pub reconnect: Option<PgConnectOptions>,
}

/// Which database a store URL names.
fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

pub(crate) async fn open(opts: &StoreOptions) -> Result<Connections, StoreError> {
    if is_postgres(&opts.url) {
        return open_pg(opts).await;
    }
    let base = parse_url(&opts.url)?;
    if let Some(dir) = base
        .get_filename()
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source: e.into(),
            })?;
    }
    let open_err = |e: sqlx::Error| StoreError::Open {
        url: opts.url.clone(),
        source: e.into(),
    };
    let sync = if opts.synchronous_full {
        SqliteSynchronous::Full
    } else {
        SqliteSynchronous::Normal
    };
    let base = base.busy_timeout(BUSY_TIMEOUT);
    let mut writer = base
        .clone()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sync)
        .foreign_keys(true)
        // The default page cache (2 MiB) on purpose: SQLite scans the whole
        // cache's hash table at the end of every write transaction, which
        // with a 64 MiB cache cost a tenth of the writer's time.
        //
        // Statement journals of multi-row INSERTs stay off the disk.
        .pragma("temp_store", "memory")
        .pragma("wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)
        .pragma("journal_size_limit", WAL_SIZE_LIMIT)
        // Batch statements are long; their text is noise in the logs.
        .disable_statement_logging()
        .thread_name(|_| "store-writer".into())
        .connect()
        .await
        .map_err(open_err)?;
    SQLITE_MIGRATOR
        .run(&mut writer)
        .await
        .map_err(|e| StoreError::Migrate { source: e.into() })?;
    let checkpoint = base
        .clone()
        .synchronous(sync)
        .thread_name(|_| "store-checkpoint".into())
        .connect()
        .await
        .map_err(open_err)?;
    let readers = SqlitePoolOptions::new()
        .max_connections(opts.read_connections.max(1))
        .connect_with(
            base.read_only(true)
                .thread_name(|id| format!("store-reader-{id}")),
        )
        .await
        .map_err(open_err)?;
    Ok(Connections {
        writers: vec![Db::Lite(writer)],
        checkpoint: Some(checkpoint),
        readers: Db::Lite(readers),
        reconnect: None,
    })
}

/// PostgreSQL: the database must exist; the schema is created or brought
/// up to date here (sqlx's migrator holds an advisory lock meanwhile, so
/// instances starting together migrate once).
async fn open_pg(opts: &StoreOptions) -> Result<Connections, StoreError> {
    let base = parse_pg_url(opts)?;
    let open_err = |e: sqlx::Error| StoreError::Open {
        url: redact(&opts.url),
        source: e.into(),
    };
    let writer_opts = base.clone().disable_statement_logging();
    let mut writer = writer_opts.connect().await.map_err(open_err)?;
    PG_MIGRATOR
        .run(&mut writer)
        .await
        .map_err(|e| StoreError::Migrate { source: e.into() })?;
    let mut writers = vec![Db::Pg(writer)];
    for _ in 1..opts.write_connections.max(1) {
        writers.push(Db::Pg(writer_opts.connect().await.map_err(open_err)?));
    }
    let readers = pg_pool(opts, base).await?;
    Ok(Connections {
        writers,
        checkpoint: None,
        readers: Db::Pg(readers),
        reconnect: Some(writer_opts),
    })
}

async fn pg_pool(opts: &StoreOptions, base: PgConnectOptions) -> Result<sqlx::PgPool, StoreError> {
    PgPoolOptions::new()
        .max_connections(opts.read_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(base.disable_statement_logging())
        .await
        .map_err(|e| StoreError::Open {
            url: redact(&opts.url),
            source: e.into(),
        })
}

fn parse_pg_url(opts: &StoreOptions) -> Result<PgConnectOptions, StoreError> {
    let o = PgConnectOptions::from_str(&opts.url).map_err(|e| StoreError::Config {
        url: redact(&opts.url),
        reason: e.to_string(),
    })?;
    Ok(o.application_name(&format!("cgthub {}", opts.instance_id)))
}

/// The URL without its password, for errors and logs.
pub fn redact(url: &str) -> String {
    crate::sink::amqp::RedactedUrl(url).to_string()
}

/// A pool of read-only connections on an existing database, for commands
/// that only look (`cgthub dlq list`) beside a running hub. It neither
/// creates nor migrates: a database whose schema is behind this program's
/// is refused with [`StoreError::SchemaBehind`].
pub(crate) async fn open_readers(opts: &StoreOptions) -> Result<Pool, StoreError> {
    let readers = if is_postgres(&opts.url) {
        Db::Pg(pg_pool(opts, parse_pg_url(opts)?).await?)
    } else {
        let base = parse_url(&opts.url)?.busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(opts.read_connections.max(1))
            .connect_with(
                base.read_only(true)
                    .thread_name(|id| format!("store-reader-{id}")),
            )
            .await
            .map_err(|e| StoreError::Open {
                url: opts.url.clone(),
                source: e.into(),
            })?;
        Db::Lite(pool)
    };
    let needed = schema_version(readers.is_postgres());
    let found = match applied_version(&readers).await {
        Ok(v) => v,
        Err(e) => {
            readers.close().await;
            return Err(StoreError::Open {
                url: redact(&opts.url),
                source: e.into(),
            });
        }
    };
    if found < needed {
        readers.close().await;
        return Err(StoreError::SchemaBehind { found, needed });
    }
    Ok(readers)
}

/// The newest migration applied to the database (0 for an empty one).
pub(crate) async fn applied_version(pool: &Pool) -> Result<i64, sqlx::Error> {
    super::db::on_db!(pool, |p| {
        let exists: Option<i64> = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = '_sqlx_migrations'",
        )
        .fetch_optional(p)
        .await
        .or_else(|_| Ok::<_, sqlx::Error>(Some(1)))?;
        if exists == Some(0) {
            return Ok(0);
        }
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(p)
                .await?;
        Ok(v.unwrap_or(0))
    })
}

/// Applies the migrations to the database `opts` names (creating a SQLite
/// file if needed) and returns the schema version before and after.
pub(crate) async fn migrate(opts: &StoreOptions) -> Result<(i64, i64), StoreError> {
    let before = match open_readers(opts).await {
        Ok(p) => {
            p.close().await;
            schema_version(is_postgres(&opts.url))
        }
        Err(StoreError::SchemaBehind { found, .. }) => found,
        Err(_) => 0,
    };
    let conns = open(opts).await?;
    conns.readers.close().await;
    let after = schema_version(conns.readers.is_postgres());
    drop(conns);
    Ok((before, after))
}

/// Parses a `sqlite:` URL, refusing in-memory databases (each connection
/// would get its own: the readers would never see the writer's data).
fn parse_url(url: &str) -> Result<SqliteConnectOptions, StoreError> {
    // sqlx would take anything else for a file name.
    if !url.starts_with("sqlite:") {
        return Err(StoreError::Config {
            url: url.into(),
            reason: "use sqlite://FILE or postgres://USER@HOST:PORT/DATABASE".into(),
        });
    }
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Err(StoreError::Config {
            url: url.into(),
            reason: "in-memory databases are not supported; use a file".into(),
        });
    }
    let opts = SqliteConnectOptions::from_str(url).map_err(|e| StoreError::Config {
        url: url.into(),
        reason: e.to_string(),
    })?;
    if opts.get_filename() == Path::new("") {
        return Err(StoreError::Config {
            url: url.into(),
            reason: "no database file named".into(),
        });
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_malformed_urls_are_refused() {
        assert!(matches!(
            parse_url("sqlite::memory:"),
            Err(StoreError::Config { .. })
        ));
        assert!(matches!(
            parse_url("sqlite://x.db?mode=memory"),
            Err(StoreError::Config { .. })
        ));
        assert!(matches!(
            parse_url("postgres://x"),
            Err(StoreError::Config { .. })
        ));
        let ok = parse_url("sqlite://data/cgthub.db").unwrap();
        assert_eq!(ok.get_filename(), Path::new("data/cgthub.db"));
    }
}
