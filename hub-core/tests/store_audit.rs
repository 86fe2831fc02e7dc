//! The audit log on real SQLite files: serial ids, a verifiable hash chain,
//! triggers that refuse changes, and tampering found when they are dropped.

mod store_fixtures;

use hub_core::store::{Store, GENESIS};
use serde_json::json;
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use store_fixtures::*;

async fn raw(dir: &std::path::Path) -> SqliteConnection {
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.join("cgthub.db"))
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_verifies_refuses_changes_and_shows_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).await.unwrap();
    let empty = store.verify_audit().await.unwrap();
    assert_eq!((empty.records, empty.first_bad), (0, None));
    for n in 1..=5 {
        let id = store
            .audit(
                "ops@site",
                "route.reload",
                "routes/qc.toml",
                json!({"n": n}),
            )
            .await
            .unwrap();
        assert_eq!(id, n);
    }
    let check = store.verify_audit().await.unwrap();
    assert_eq!((check.records, check.first_bad), (5, None));
    assert!(check.is_ok());

    let mut conn = raw(dir.path()).await;
    let (prev, detail): (String, String) =
        sqlx::query_as("SELECT prev_hash, detail FROM audit_log WHERE id = 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(prev, GENESIS);
    assert_eq!(detail, r#"{"n":1}"#);
    for sql in [
        "UPDATE audit_log SET detail = '{}' WHERE id = 3",
        "DELETE FROM audit_log WHERE id = 5",
    ] {
        let err = sqlx::query(sql).execute(&mut conn).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert!(store.verify_audit().await.unwrap().is_ok());

    for sql in [
        "DROP TRIGGER audit_log_no_update",
        "UPDATE audit_log SET detail = '{\"n\":33}' WHERE id = 3",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    let check = store.verify_audit().await.unwrap();
    assert_eq!((check.records, check.first_bad), (5, Some(3)));
    conn.close().await.unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_record_breaks_the_link_of_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).await.unwrap();
    for n in 0..4 {
        store.audit("system", "test", "x", json!(n)).await.unwrap();
    }
    let mut conn = raw(dir.path()).await;
    for sql in [
        "DROP TRIGGER audit_log_no_delete",
        "DELETE FROM audit_log WHERE id = 2",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    let check = store.verify_audit().await.unwrap();
    assert_eq!((check.records, check.first_bad), (3, Some(3)));
    conn.close().await.unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_form_one_serial_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).await.unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|n| {
            let s = store.clone();
            tokio::spawn(async move {
                s.audit(
                    "ops",
                    "dlq.replay",
                    &format!("dead_letter:{n}"),
                    json!({"n": n}),
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=100).collect::<Vec<i64>>());
    let check = store.verify_audit().await.unwrap();
    assert_eq!((check.records, check.first_bad), (100, None));
    store.close().await;
}

/// A CLI command's store beside the server's: each has its own writer and
/// chain head; a stale head is reloaded after the conflict it causes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Store::open(options(dir.path())).await.unwrap();
    let cli = Store::open(options(dir.path())).await.unwrap();
    assert_eq!(serve.audit("system", "a", "x", json!(1)).await.unwrap(), 1);
    assert_eq!(
        cli.audit("ops", "dlq.replay", "dead_letter:1", json!(2))
            .await
            .unwrap(),
        2
    );
    assert_eq!(serve.audit("system", "b", "x", json!(3)).await.unwrap(), 3);
    let a = serve
        .intake(routed("ACME", "M1", &["jsonl"]))
        .await
        .unwrap();
    let b = cli.intake(routed("ACME", "M2", &["jsonl"])).await.unwrap();
    let c = serve
        .intake(routed("ACME", "M2", &["jsonl"]))
        .await
        .unwrap();
    assert_ne!(a.message_row, b.message_row);
    assert!(c.duplicate && c.message_row == b.message_row);
    let check = cli.verify_audit().await.unwrap();
    assert_eq!((check.records, check.first_bad), (3, None));
    cli.close().await;
    serve.close().await;
}
