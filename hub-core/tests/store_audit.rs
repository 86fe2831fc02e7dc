//! The audit log on a real SQLite file and on a PostgreSQL database (each
//! test body runs on both, see `on_both!`): serial ids, a verifiable hash
//! chain, triggers that refuse changes, and tampering found when they are
//! dropped.

mod store_fixtures;

use hub_core::store::{Store, GENESIS};
use serde_json::json;
use store_fixtures::*;

/// Removes a trigger (SQLite names triggers per database, PostgreSQL per
/// table).
fn drop_trigger(db: &TestDb, trigger: &str) -> String {
    if db.is_postgres() {
        format!("DROP TRIGGER {trigger} ON audit_log")
    } else {
        format!("DROP TRIGGER {trigger}")
    }
}

on_both!(
    the_chain_verifies_refuses_changes_and_shows_tampering,
    the_chain_verifies_refuses_changes_and_shows_tampering_sqlite,
    the_chain_verifies_refuses_changes_and_shows_tampering_postgres
);

async fn the_chain_verifies_refuses_changes_and_shows_tampering(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
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

    let mut conn = db.raw().await;
    let (prev, detail): (String, String) = conn
        .fetch_one("SELECT prev_hash, detail FROM audit_log WHERE id = 1")
        .await;
    assert_eq!(prev, GENESIS);
    assert_eq!(detail, r#"{"n":1}"#);
    for sql in [
        "UPDATE audit_log SET detail = '{}' WHERE id = 3",
        "DELETE FROM audit_log WHERE id = 5",
    ] {
        let err = conn.execute(sql).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert!(store.verify_audit().await.unwrap().is_ok());

    for sql in [
        drop_trigger(db, "audit_log_no_update"),
        "UPDATE audit_log SET detail = '{\"n\":33}' WHERE id = 3".into(),
    ] {
        conn.execute(&sql).await.unwrap();
    }
    let check = store.verify_audit().await.unwrap();
    assert_eq!((check.records, check.first_bad), (5, Some(3)));
    conn.close().await;
    store.close().await;
}

on_both!(
    a_removed_record_breaks_the_link_of_the_next,
    a_removed_record_breaks_the_link_of_the_next_sqlite,
    a_removed_record_breaks_the_link_of_the_next_postgres
);

async fn a_removed_record_breaks_the_link_of_the_next(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
    for n in 0..4 {
        store.audit("system", "test", "x", json!(n)).await.unwrap();
    }
    let mut conn = db.raw().await;
    for sql in [
        drop_trigger(db, "audit_log_no_delete"),
        "DELETE FROM audit_log WHERE id = 2".into(),
    ] {
        conn.execute(&sql).await.unwrap();
    }
    let check = store.verify_audit().await.unwrap();
    assert_eq!((check.records, check.first_bad), (3, Some(3)));
    conn.close().await;
    store.close().await;
}

on_both!(
    concurrent_appends_form_one_serial_chain,
    concurrent_appends_form_one_serial_chain_sqlite,
    concurrent_appends_form_one_serial_chain_postgres
);

async fn concurrent_appends_form_one_serial_chain(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
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

on_both!(
    two_stores_on_one_file_keep_one_chain,
    two_stores_on_one_file_keep_one_chain_sqlite,
    two_stores_on_one_file_keep_one_chain_postgres
);

/// A CLI command's store beside the server's (or, on PostgreSQL, two hubs):
/// each has its own writer and chain head; a stale head is reloaded after
/// the conflict it causes (PostgreSQL: re-chained under the advisory lock).
async fn two_stores_on_one_file_keep_one_chain(db: &TestDb) {
    let serve = Store::open(db.options()).await.unwrap();
    let cli = Store::open(db.options()).await.unwrap();
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

/// Two hubs on one PostgreSQL appending at once (their own records and the
/// ones their dead letters bring): one chain, ids without gaps, verified
/// from either. PostgreSQL only: on SQLite the file's write lock already
/// serialises writers (see `two_stores_on_one_file_keep_one_chain`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_appending_at_once_keep_one_chain_postgres() {
    let db = TestDb::postgres().await;
    let lease = std::time::Duration::from_millis(300);
    let a = Store::open(db.instance("a", lease)).await.unwrap();
    let b = Store::open(db.instance("b", lease)).await.unwrap();
    let mut tasks = Vec::new();
    for n in 0..40 {
        for (name, s) in [("a", &a), ("b", &b)] {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                if n % 4 == 0 {
                    // A failed message: a dead letter and its audit record.
                    let rec = hub_core::store::IntakeRecord {
                        inbound: inbound("ACME", Some(&format!("F-{name}-{n}")), "bad"),
                        outcome: hub_core::store::IntakeOutcome::Failed(hub_core::Problem::new(
                            hub_core::error::Stage::Map,
                            "bad_value",
                            "no COI",
                        )),
                    };
                    s.intake(rec).await.unwrap();
                } else {
                    s.audit(name, "test", &format!("x:{n}"), json!({ "n": n }))
                        .await
                        .unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    for s in [&a, &b] {
        let check = s.verify_audit().await.unwrap();
        assert_eq!((check.records, check.first_bad), (80, None));
    }
    let mut raw = db.raw().await;
    let (min, max, n): (i64, i64, i64) = raw
        .fetch_one("SELECT MIN(id), MAX(id), COUNT(*) FROM audit_log")
        .await;
    assert_eq!((min, max, n), (1, 80, 80));
    raw.close().await;
    a.close().await;
    b.close().await;
}
