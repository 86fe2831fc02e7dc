//! PostgreSQL as the tests see it: a throw-away database per test, and
//! `psql` to look at what the hubs stored. Synchronous, like the rest of the
//! harness, and through the stock client on purpose: what an operator runs.
//!
//! The server is the one `.ci/run` starts: 127.0.0.1:5432, user `postgres`,
//! trust authentication.

use std::process::Command;

/// The server the tests use.
pub const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

const HOST: &str = "127.0.0.1";
const PORT: &str = "5432";
const USER: &str = "postgres";

/// Runs one SQL text with `psql` against `db`: the rows, one `Vec` of
/// fields each (unaligned, tab-separated; NULL is the empty string).
/// Panics with psql's message when it fails.
pub fn psql(db: &str, sql: &str) -> Vec<Vec<String>> {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-F",
            "\t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            HOST,
            "-p",
            PORT,
            "-U",
            USER,
            "-d",
            db,
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("psql (is the PostgreSQL client installed?)");
    assert!(
        out.status.success(),
        "psql -d {db} -c {sql:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// A database of its own, `cgthub_ct_<hex>`, dropped on drop (with every
/// session still on it: a killed hub's connections may linger).
pub struct Database {
    pub name: String,
}

impl Database {
    pub fn new() -> Database {
        let name = format!("cgthub_ct_{}", uuid::Uuid::now_v7().simple());
        psql("postgres", &format!("CREATE DATABASE {name}"));
        Database { name }
    }

    /// The URL a hub's `store.url` takes.
    pub fn url(&self) -> String {
        format!("{SERVER}/{}", self.name)
    }

    /// Rows of a query on this database (see [`psql`]).
    pub fn query(&self, sql: &str) -> Vec<Vec<String>> {
        psql(&self.name, sql)
    }

    /// The single value a query returns (e.g. a `count(*)`).
    pub fn scalar(&self, sql: &str) -> String {
        let rows = self.query(sql);
        assert_eq!(rows.len(), 1, "{sql}: one row expected, got {rows:?}");
        rows[0][0].clone()
    }

    /// A `count(*)` or other integer.
    pub fn count(&self, sql: &str) -> i64 {
        let v = self.scalar(sql);
        v.parse()
            .unwrap_or_else(|_| panic!("{sql}: not an integer: {v:?}"))
    }
}

impl Default for Database {
    fn default() -> Self {
        Database::new()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-h",
                HOST,
                "-p",
                PORT,
                "-U",
                USER,
                "-d",
                "postgres",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}
