//! Opening the database: one write connection, one checkpoint connection,
//! a pool of read-only connections, and the schema migrations.
//!
//! Each sqlx-sqlite connection runs on its own thread (named here, so `top
//! -H` shows `store-writer`, `store-checkpoint`, `store-reader-N`).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::ConnectOptions;

use super::{StoreError, StoreOptions};

/// The schema, embedded at compile time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

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
    pub writer: SqliteConnection,
    pub checkpoint: SqliteConnection,
    pub readers: SqlitePool,
}

pub(crate) async fn open(opts: &StoreOptions) -> Result<Connections, StoreError> {
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
    MIGRATOR
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
        writer,
        checkpoint,
        readers,
    })
}

/// A pool of read-only connections on an existing database, for commands
/// that only look (`cgthub dlq list`) beside a running hub. It neither
/// creates nor migrates: a database whose schema is behind this program's
/// is refused with [`StoreError::SchemaBehind`].
pub(crate) async fn open_readers(opts: &StoreOptions) -> Result<SqlitePool, StoreError> {
    let base = parse_url(&opts.url)?.busy_timeout(BUSY_TIMEOUT);
    let open_err = |e: sqlx::Error| StoreError::Open {
        url: opts.url.clone(),
        source: e.into(),
    };
    let readers = SqlitePoolOptions::new()
        .max_connections(opts.read_connections.max(1))
        .connect_with(
            base.read_only(true)
                .thread_name(|id| format!("store-reader-{id}")),
        )
        .await
        .map_err(open_err)?;
    let needed = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let found: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&readers)
            .await
            .map_err(open_err)?;
    let found = found.unwrap_or(0);
    if found < needed {
        readers.close().await;
        return Err(StoreError::SchemaBehind { found, needed });
    }
    Ok(readers)
}

/// Parses a `sqlite:` URL, refusing in-memory databases (each connection
/// would get its own: the readers would never see the writer's data).
fn parse_url(url: &str) -> Result<SqliteConnectOptions, StoreError> {
    // sqlx would take anything else for a file name.
    if !url.starts_with("sqlite:") {
        return Err(StoreError::Config {
            url: url.into(),
            reason: "only sqlite: URLs are supported".into(),
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
