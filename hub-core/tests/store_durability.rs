//! The store across reopen and close, on a real SQLite file and on a
//! PostgreSQL database (each test body runs on both, see `on_both!`), and
//! one bad write that must not take its batch down with it.

mod store_fixtures;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use hub_core::error::{ErrorClass, Stage};
use hub_core::store::{
    BatchStats, EventFilter, IntakeOutcome, IntakeRecord, MessageStatus, PreparedEvent, Store,
    StoreError, StoreOptions,
};
use hub_core::{Outcome, Problem};
use serde_json::json;
use store_fixtures::*;

on_both!(
    everything_is_there_after_reopen,
    everything_is_there_after_reopen_sqlite,
    everything_is_there_after_reopen_postgres
);

async fn everything_is_there_after_reopen(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
    let routed_row = store
        .intake(routed("ACME", "M1", &["jsonl"]))
        .await
        .unwrap();
    let failed = IntakeRecord {
        inbound: inbound("ACME", Some("M2"), "bad"),
        outcome: IntakeOutcome::Failed(Problem::new(Stage::Map, "bad_value", "no COI")),
    };
    let failed_row = store.intake(failed.clone()).await.unwrap();
    store
        .audit("ops", "route.reload", "routes", json!({}))
        .await
        .unwrap();
    let far = Utc::now() + chrono::Duration::seconds(60);
    let events_before = store.events(&EventFilter::default()).await.unwrap();
    store.close().await;
    drop(store);

    let store = Store::open(db.options()).await.unwrap();
    let msg = store
        .message(routed_row.message_row)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(msg.status, MessageStatus::Routed);
    assert_eq!(msg.payload, b"{\"id\":\"M1\"}");
    assert_eq!(
        store.events(&EventFilter::default()).await.unwrap(),
        events_before
    );
    assert_eq!(store.pending("jsonl", 10, far).await.unwrap().len(), 1);
    let dls = store.dead_letters(10).await.unwrap();
    assert_eq!(dls.len(), 1);
    assert_eq!(dls[0].message_row, failed_row.message_row);
    // Dedup survives the reopen too (an accepted id stays taken; a failed
    // one does not, so a resend of it is processed anew).
    let again = store
        .intake(routed("ACME", "M1", &["jsonl"]))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message_row, routed_row.message_row);
    let retried = store.intake(failed).await.unwrap();
    assert!(!retried.duplicate);
    assert_eq!(retried.outcome, Outcome::Failed("no COI".into()));
    // The chain head was reloaded: new records extend the old chain (the
    // retried failure added its own dead-letter record).
    assert_eq!(store.audit("ops", "x", "y", json!(null)).await.unwrap(), 4);
    let check = store.verify_audit().await.unwrap();
    assert_eq!((check.records, check.first_bad), (4, None));
    store.close().await;
}

on_both!(
    a_closed_store_refuses_work,
    a_closed_store_refuses_work_sqlite,
    a_closed_store_refuses_work_postgres
);

async fn a_closed_store_refuses_work(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
    store
        .intake(routed("ACME", "M0", &["jsonl"]))
        .await
        .unwrap();
    let clone = store.clone();
    store.close().await;
    store.close().await;
    let err = clone
        .intake(routed("ACME", "M1", &["jsonl"]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Closed), "{err}");
    assert_eq!(err.class(), ErrorClass::Fatal);
    let err = clone.counts().await.unwrap_err();
    assert!(matches!(err, StoreError::Closed), "{err}");
    let err = clone.delivered(vec![1]).await.unwrap_err();
    assert!(matches!(err, StoreError::Closed), "{err}");
}

/// SQLite-only: about SQLite URLs and files (parent directories made, an
/// in-memory database refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_gets_its_directories_and_memory_is_refused_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions {
        url: format!("sqlite://{}", dir.path().join("a/b/cgthub.db").display()),
        ..StoreOptions::default()
    })
    .await
    .unwrap();
    assert!(
        dir.path().join("a/b/cgthub.db").exists(),
        "parent dirs created"
    );
    store.close().await;

    let err = Store::open(StoreOptions {
        url: "sqlite::memory:".into(),
        ..StoreOptions::default()
    })
    .await
    .err()
    .unwrap();
    assert!(matches!(err, StoreError::Config { .. }), "{err}");
}

/// PostgreSQL-only: the database must exist (the store creates the schema,
/// not the database), and the error names it without the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_that_does_not_exist_is_refused_postgres() {
    let db = TestDb::postgres().await;
    let missing = db.missing();
    let err = Store::open(missing.clone()).await.err().unwrap();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(!TestDb::exists(&missing).await, "nothing created");
    let with_password = StoreOptions {
        url: missing.url.replace("postgres@", "postgres:s3cret@"),
        ..missing
    };
    let err = Store::open(with_password).await.err().unwrap();
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

on_both!(
    one_bad_write_does_not_fail_its_batch,
    one_bad_write_does_not_fail_its_batch_sqlite,
    one_bad_write_does_not_fail_its_batch_postgres
);

/// One write that violates a constraint (an event id already stored) is
/// refused on its own; the writes that shared its transaction are retried
/// and committed.
async fn one_bad_write_does_not_fail_its_batch(db: &TestDb) {
    let batches: Arc<Mutex<Vec<BatchStats>>> = Arc::default();
    let seen = Arc::clone(&batches);
    let store = Store::open(StoreOptions {
        on_batch: Some(Arc::new(move |s| seen.lock().unwrap().push(s))),
        ..db.options()
    })
    .await
    .unwrap();
    let first = event("COI-1");
    let clash = IntakeRecord {
        inbound: inbound("ACME", Some("CLASH"), "{}"),
        outcome: IntakeOutcome::Events(vec![PreparedEvent::new(&first, vec![dest("jsonl")])]),
    };
    let original = IntakeRecord {
        inbound: inbound("ACME", Some("FIRST"), "{}"),
        outcome: clash.outcome.clone(),
    };
    let lock = db.hold_write_lock().await;
    let spawn = |rec: IntakeRecord| {
        let s = store.clone();
        tokio::spawn(async move { s.intake(rec).await })
    };
    let original = spawn(original);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let good = spawn(routed("ACME", "GOOD", &["jsonl"]));
    let bad = spawn(clash);
    tokio::time::sleep(Duration::from_millis(200)).await;
    lock.release().await;

    assert!(!original.await.unwrap().unwrap().duplicate);
    assert!(!good.await.unwrap().unwrap().duplicate);
    let err = bad.await.unwrap().unwrap_err();
    assert!(err.is_constraint(), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(err.to_string().contains("courier/ACME/CLASH"), "{err}");

    let counts = store.counts().await.unwrap();
    assert_eq!((counts.total_messages(), counts.events), (2, 2));
    let sizes: Vec<usize> = batches.lock().unwrap().iter().map(|b| b.messages).collect();
    assert_eq!(
        sizes,
        [1, 1],
        "the failed batch of 3 was retried one by one"
    );
    store.close().await;
}
