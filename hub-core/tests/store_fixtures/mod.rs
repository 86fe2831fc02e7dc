//! Fixtures shared by the store's integration tests (`mod store_fixtures;`):
//! a database per test on SQLite or PostgreSQL ([`TestDb`]), the macro that
//! runs one test body on both ([`on_both!`]), raw connections for reading
//! and tampering behind the store's back, and records to store.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use hub_core::event::{Source, TemperatureReading};
use hub_core::store::{Destination, IntakeOutcome, IntakeRecord, PreparedEvent, StoreOptions};
use hub_core::{EventData, Inbound, TherapyEvent};
use sqlx::{ConnectOptions, Connection, PgConnection, SqliteConnection};

/// Runs the test body `async fn $body(db: &TestDb)` once per database:
/// `$sqlite` on a SQLite file in a temporary directory, `$postgres` on a
/// PostgreSQL database of its own (created for the test, dropped after it),
/// so that a failure names the database.
macro_rules! on_both {
    ($body:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let db = $crate::store_fixtures::TestDb::sqlite().await;
            $body(&db).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let db = $crate::store_fixtures::TestDb::postgres().await;
            $body(&db).await;
        }
    };
}
pub(crate) use on_both;

/// The PostgreSQL server the tests use, without a database name:
/// `CGTHUB_TEST_PG`, or the local one (`.ci/run` starts it).
pub fn pg_server() -> String {
    std::env::var("CGTHUB_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
        .trim_end_matches('/')
        .to_string()
}

/// A connection to the server's `postgres` database, to create and drop
/// the tests' databases.
async fn pg_admin() -> PgConnection {
    let url = format!("{}/postgres", pg_server());
    PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} (start it, or set CGTHUB_TEST_PG): {e}"))
}

/// A new, unused database name.
fn pg_name() -> String {
    format!("cgthub_t_{}", uuid::Uuid::now_v7().simple())
}

/// One test's database, gone when this is dropped: a SQLite file in a
/// temporary directory, or a PostgreSQL database created for the test and
/// dropped (`WITH (FORCE)`, whatever still holds it open) afterwards.
pub struct TestDb {
    /// SQLite: holds the file. PostgreSQL: scratch space.
    dir: tempfile::TempDir,
    /// PostgreSQL: the database's name.
    pg: Option<String>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        TestDb {
            dir: tempfile::tempdir().unwrap(),
            pg: None,
        }
    }

    pub async fn postgres() -> TestDb {
        let name = pg_name();
        let mut admin = pg_admin().await;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        admin.close().await.unwrap();
        TestDb {
            dir: tempfile::tempdir().unwrap(),
            pg: Some(name),
        }
    }

    /// Another new, empty database on the same kind of server.
    pub async fn another(&self) -> TestDb {
        if self.is_postgres() {
            TestDb::postgres().await
        } else {
            TestDb::sqlite().await
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.pg.is_some()
    }

    /// `sqlite` or `postgres`, as [`hub_core::store::Store::backend`] says.
    pub fn backend(&self) -> &'static str {
        if self.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    /// A directory for the test's other files (routes…), removed with it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SQLite: the database file.
    pub fn sqlite_file(&self) -> std::path::PathBuf {
        assert!(!self.is_postgres(), "a PostgreSQL database has no file");
        self.dir.path().join("cgthub.db")
    }

    pub fn url(&self) -> String {
        match &self.pg {
            Some(name) => format!("{}/{name}", pg_server()),
            None => format!("sqlite://{}", self.sqlite_file().display()),
        }
    }

    /// The store's options on this database (instance `cgthub`).
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            url: self.url(),
            ..StoreOptions::default()
        }
    }

    /// The options of one of several hubs sharing this database.
    pub fn instance(&self, instance_id: &str, claim_lease: Duration) -> StoreOptions {
        StoreOptions {
            instance_id: instance_id.into(),
            claim_lease,
            ..self.options()
        }
    }

    /// Options naming a database of this kind that does not exist.
    pub fn missing(&self) -> StoreOptions {
        let url = match &self.pg {
            Some(_) => format!("{}/{}", pg_server(), pg_name()),
            None => format!(
                "sqlite://{}",
                self.dir.path().join("missing/cgthub.db").display()
            ),
        };
        StoreOptions {
            url,
            ..StoreOptions::default()
        }
    }

    /// Whether the database `missing()` names has been created meanwhile.
    pub async fn exists(opts: &StoreOptions) -> bool {
        match opts.url.strip_prefix("sqlite://") {
            Some(file) => Path::new(file).exists(),
            None => {
                let name = opts.url.rsplit('/').next().unwrap().to_string();
                let mut admin = pg_admin().await;
                let n: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
                        .bind(name)
                        .fetch_one(&mut admin)
                        .await
                        .unwrap();
                admin.close().await.unwrap();
                n > 0
            }
        }
    }

    /// A connection of its own to the database, beside the store's.
    pub async fn raw(&self) -> Raw {
        match &self.pg {
            Some(_) => Raw::Pg(PgConnection::connect(&self.url()).await.unwrap()),
            None => Raw::Lite(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.sqlite_file())
                    .create_if_missing(true)
                    .connect()
                    .await
                    .unwrap(),
            ),
        }
    }

    /// Holds what the store's writer needs to insert messages, from a
    /// second connection, until [`Raw::release`]: everything submitted
    /// meanwhile lands in one group commit. SQLite: the file's write lock
    /// (`BEGIN IMMEDIATE`; the writer's BEGIN waits). PostgreSQL: a lock on
    /// the `messages` table that INSERTs wait for (reads do not).
    pub async fn hold_write_lock(&self) -> Raw {
        let mut raw = self.raw().await;
        match &mut raw {
            Raw::Lite(c) => {
                sqlx::query("BEGIN IMMEDIATE").execute(c).await.unwrap();
            }
            Raw::Pg(c) => {
                sqlx::query("BEGIN").execute(&mut *c).await.unwrap();
                sqlx::query("LOCK TABLE messages IN EXCLUSIVE MODE")
                    .execute(&mut *c)
                    .await
                    .unwrap();
            }
        }
        raw
    }

    /// Applies only the migrations of an older release, as a hub of that
    /// release would have, to this (empty) database; returns its schema
    /// version. SQLite: 0001 and 0002, before the dead-letter lifecycle
    /// (0003). PostgreSQL: 0001, before the outbox claims (0004).
    pub async fn old_schema(&self) -> i64 {
        let (folder, files): (&str, &[&str]) = if self.is_postgres() {
            ("postgres", &["0001_store.sql"])
        } else {
            ("sqlite", &["0001_store.sql", "0002_outbox_routing_key.sql"])
        };
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(folder);
        let old = tempfile::tempdir().unwrap();
        for f in files {
            std::fs::copy(src.join(f), old.path().join(f)).unwrap();
        }
        let migrator = sqlx::migrate::Migrator::new(old.path()).await.unwrap();
        let mut raw = self.raw().await;
        match &mut raw {
            Raw::Lite(c) => migrator.run(c).await.unwrap(),
            Raw::Pg(c) => migrator.run(c).await.unwrap(),
        }
        raw.close().await;
        migrator.iter().map(|m| m.version).max().unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg.take() else {
            return;
        };
        // Drop cannot wait for async work; a thread with a runtime of its
        // own can, wherever this runs (also inside a test's runtime, also
        // while a failed test unwinds: so it must not panic).
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let url = format!("{}/postgres", pg_server());
                let mut admin = PgConnection::connect(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .map_err(|e| format!("DROP DATABASE {name}: {e}"))?;
                let _ = admin.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("test database not dropped: {e}"),
            Err(_) => eprintln!("test database not dropped: the dropping thread panicked"),
        }
    }
}

/// A connection of the test's own to its database.
pub enum Raw {
    Lite(SqliteConnection),
    Pg(PgConnection),
}

impl Raw {
    /// Runs one statement; returns the rows it changed.
    pub async fn execute(&mut self, sql: &str) -> Result<u64, sqlx::Error> {
        match self {
            Raw::Lite(c) => sqlx::query(sql).execute(c).await.map(|r| r.rows_affected()),
            Raw::Pg(c) => sqlx::query(sql).execute(c).await.map(|r| r.rows_affected()),
        }
    }

    /// The one row a query returns (`$1`-style SQL, no parameters).
    pub async fn fetch_one<T>(&mut self, sql: &str) -> T
    where
        T: Send
            + Unpin
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        match self {
            Raw::Lite(c) => sqlx::query_as(sql).fetch_one(c).await,
            Raw::Pg(c) => sqlx::query_as(sql).fetch_one(c).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Ends what this connection holds (rolls back) and closes it.
    pub async fn release(mut self) {
        self.execute("ROLLBACK").await.unwrap();
        self.close().await;
    }

    pub async fn close(self) {
        match self {
            Raw::Lite(c) => c.close().await.unwrap(),
            Raw::Pg(c) => c.close().await.unwrap(),
        }
    }
}

/// A `temperature.reading` event for `coi`, with a fresh id.
pub fn event(coi: &str) -> TherapyEvent {
    TherapyEvent {
        schema: (),
        event_id: TherapyEvent::new_id(),
        data: EventData::TemperatureReading(TemperatureReading {
            logger_id: "LOG-7".into(),
            celsius: -150.5,
            tracking_number: None,
            profile: None,
        }),
        coi: Some(coi.into()),
        order_id: Some("ORD-1".into()),
        product: None,
        occurred_at: Utc.with_ymd_and_hms(2026, 11, 21, 9, 14, 0).unwrap(),
        recorded_at: Utc.with_ymd_and_hms(2026, 11, 21, 9, 14, 2).unwrap(),
        source: Source {
            connector: "courier".into(),
            partner: "ACME".into(),
            message_id: None,
            payload_sha256: "00".repeat(32),
            entry: None,
        },
        claims: Default::default(),
    }
}

pub fn inbound(partner: &str, message_id: Option<&str>, payload: &str) -> Inbound {
    Inbound::new(
        "courier",
        partner,
        "application/json",
        message_id.map(str::to_owned),
        Bytes::copy_from_slice(payload.as_bytes()),
        "127.0.0.1:5000",
    )
}

pub fn dest(sink: &str) -> Destination {
    Destination {
        route: format!("to-{sink}"),
        sink: sink.into(),
        routing_key: "none.qc.result_reported".into(),
    }
}

pub fn routed(partner: &str, message_id: &str, sinks: &[&str]) -> IntakeRecord {
    let ev = event("COI-1");
    IntakeRecord {
        inbound: inbound(
            partner,
            Some(message_id),
            &format!("{{\"id\":\"{message_id}\"}}"),
        ),
        outcome: IntakeOutcome::Events(vec![PreparedEvent::new(
            &ev,
            sinks.iter().map(|s| dest(s)).collect(),
        )]),
    }
}
