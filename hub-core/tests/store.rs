//! The store on a real SQLite file and on a PostgreSQL database (each test
//! body runs on both, see `on_both!`): intake and read back, dedup (also
//! within one batch, and across two hubs on one PostgreSQL), failed and
//! rejected messages, group commit.

mod store_fixtures;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use hub_core::error::{ErrorClass, Stage};
use hub_core::store::{
    BatchStats, EventFilter, IntakeOutcome, IntakeRecord, MessageStatus, PreparedEvent, Routing,
    Store, StoreOptions,
};
use hub_core::{Outcome, Problem, TherapyEvent};
use store_fixtures::*;

on_both!(
    intake_of_events_reads_back,
    intake_of_events_reads_back_sqlite,
    intake_of_events_reads_back_postgres
);

async fn intake_of_events_reads_back(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
    assert_eq!(store.backend(), db.backend());
    let (a, b) = (event("COI-1"), event("COI-2"));
    let rec = IntakeRecord {
        inbound: inbound("ACME", Some("M1"), "{\"scan\":1}"),
        outcome: IntakeOutcome::Events(vec![
            PreparedEvent::new(&a, vec![dest("amqp"), dest("jsonl")]),
            PreparedEvent::new(&b, vec![dest("jsonl")]),
        ]),
    };
    let receipt = store.intake(rec).await.unwrap();
    assert_eq!(receipt.outcome, Outcome::Accepted { events: 2 });
    assert!(!receipt.duplicate);

    let msg = store.message(receipt.message_row).await.unwrap().unwrap();
    assert_eq!(
        (msg.connector.as_str(), msg.partner.as_str()),
        ("courier", "ACME")
    );
    assert_eq!(msg.message_id.as_deref(), Some("M1"));
    assert_eq!(msg.status, MessageStatus::Routed);
    assert_eq!(msg.payload, b"{\"scan\":1}");
    assert_eq!(msg.sha256.len(), 64);
    assert_eq!(msg.error, None);
    let ids: Vec<&str> = msg.events.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, [a.event_id.to_string(), b.event_id.to_string()]);
    assert_eq!(msg.events[0].1, "temperature.reading");

    let by_coi = store
        .events(&EventFilter {
            coi: Some("COI-1".into()),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(by_coi.len(), 1);
    assert_eq!(by_coi[0].body, serde_json::to_string(&a).unwrap());
    assert_eq!(by_coi[0].routing, Routing::Routed);
    let back: TherapyEvent = serde_json::from_str(&by_coi[0].body).unwrap();
    assert_eq!(back, a);
    let all = store.events(&EventFilter::default()).await.unwrap();
    assert_eq!(all[0].event_id, b.event_id.to_string(), "newest first");

    let now = Utc::now() + chrono::Duration::seconds(1);
    let jsonl = store.pending("jsonl", 10, now).await.unwrap();
    assert_eq!(jsonl.len(), 2);
    assert_eq!(jsonl[0].event_id, a.event_id.to_string());
    assert_eq!(jsonl[1].body, serde_json::to_string(&b).unwrap());
    assert_eq!(
        (jsonl[0].route.as_str(), jsonl[0].attempts),
        ("to-jsonl", 0)
    );
    assert_eq!(store.pending("amqp", 10, now).await.unwrap().len(), 1);
    assert_eq!(
        store.pending("jsonl", 1, now).await.unwrap().len(),
        1,
        "limit"
    );
    let before = Utc::now() - chrono::Duration::hours(1);
    assert!(
        store.pending("jsonl", 10, before).await.unwrap().is_empty(),
        "not due yet"
    );
    store.close().await;
}

on_both!(
    a_repeat_is_acknowledged_with_the_original_outcome_and_not_stored,
    a_repeat_is_acknowledged_with_the_original_outcome_and_not_stored_sqlite,
    a_repeat_is_acknowledged_with_the_original_outcome_and_not_stored_postgres
);

async fn a_repeat_is_acknowledged_with_the_original_outcome_and_not_stored(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
    let first = store
        .intake(routed("ACME", "M1", &["jsonl"]))
        .await
        .unwrap();
    let again = store
        .intake(routed("ACME", "M1", &["jsonl"]))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message_row, first.message_row);
    assert_eq!(again.outcome, Outcome::Accepted { events: 1 });

    let other_partner = store
        .intake(routed("GLOBEX", "M1", &["jsonl"]))
        .await
        .unwrap();
    assert!(!other_partner.duplicate);
    assert_ne!(other_partner.message_row, first.message_row);

    let failed = IntakeRecord {
        inbound: inbound("ACME", Some("M2"), "garbage"),
        outcome: IntakeOutcome::Failed(Problem::new(
            Stage::Map,
            "bad_value",
            "OBX-5 is not a number",
        )),
    };
    // A failed message does not hold its id: the partner may resend it,
    // fixed, under the same id, and that copy is processed.
    let first_failure = store.intake(failed.clone()).await.unwrap();
    let again = store.intake(failed).await.unwrap();
    assert!(!again.duplicate, "a failure is not a dedup original");
    assert_ne!(
        again.message_row, first_failure.message_row,
        "both failures are kept"
    );
    assert_eq!(
        again.outcome,
        Outcome::Failed("OBX-5 is not a number".into())
    );
    let fixed = store
        .intake(routed("ACME", "M2", &["jsonl"]))
        .await
        .unwrap();
    assert!(!fixed.duplicate);
    assert_eq!(fixed.outcome, Outcome::Accepted { events: 1 });
    let repeat = store
        .intake(routed("ACME", "M2", &["jsonl"]))
        .await
        .unwrap();
    assert!(repeat.duplicate, "once accepted, the id is taken");
    assert_eq!(repeat.message_row, fixed.message_row);

    // No message id: never a duplicate.
    let anon = || IntakeRecord {
        inbound: inbound("ACME", None, "same bytes"),
        outcome: IntakeOutcome::Events(vec![]),
    };
    assert!(!store.intake(anon()).await.unwrap().duplicate);
    assert!(!store.intake(anon()).await.unwrap().duplicate);

    let counts = store.counts().await.unwrap();
    assert_eq!(counts.total_messages(), 7);
    assert_eq!(counts.events, 3, "the repeats stored no events");
    assert_eq!(
        store
            .pending("jsonl", 10, Utc::now() + chrono::Duration::seconds(1))
            .await
            .unwrap()
            .len(),
        3
    );
    store.close().await;
}

on_both!(
    two_copies_in_one_batch_store_one_message,
    two_copies_in_one_batch_store_one_message_sqlite,
    two_copies_in_one_batch_store_one_message_postgres
);

async fn two_copies_in_one_batch_store_one_message(db: &TestDb) {
    let batches: Arc<Mutex<Vec<BatchStats>>> = Arc::default();
    let seen = Arc::clone(&batches);
    let store = Store::open(StoreOptions {
        on_batch: Some(Arc::new(move |s| seen.lock().unwrap().push(s))),
        // One write connection, so that what queues joins one transaction
        // (with two, PostgreSQL's second connection would take the copies;
        // copies on two connections are the two-instance tests' case).
        write_connections: 1,
        ..db.options()
    })
    .await
    .unwrap();
    let lock = db.hold_write_lock().await;
    // The writer takes the filler and waits for the lock; both copies queue.
    let filler = tokio::spawn({
        let s = store.clone();
        async move { s.intake(routed("ACME", "FILL", &["jsonl"])).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let copies: Vec<_> = (0..2)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.intake(routed("ACME", "TWIN", &["jsonl"])).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    lock.release().await;
    filler.await.unwrap().unwrap();
    let mut receipts = Vec::new();
    for c in copies {
        receipts.push(c.await.unwrap().unwrap());
    }
    receipts.sort_by_key(|r| r.duplicate);
    assert!(!receipts[0].duplicate && receipts[1].duplicate);
    assert_eq!(receipts[0].message_row, receipts[1].message_row);
    assert_eq!(receipts[1].outcome, Outcome::Accepted { events: 1 });
    // The copies queued while the filler's transaction waited for the lock,
    // and joined it: one transaction, one INSERT holding both copies.
    let sizes: Vec<usize> = batches.lock().unwrap().iter().map(|b| b.messages).collect();
    assert_eq!(sizes, [3]);
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.total_messages(), counts.events), (2, 2));
    store.close().await;
}

on_both!(
    failed_and_rejected_keep_the_error_and_the_payload,
    failed_and_rejected_keep_the_error_and_the_payload_sqlite,
    failed_and_rejected_keep_the_error_and_the_payload_postgres
);

async fn failed_and_rejected_keep_the_error_and_the_payload(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
    let failed = store
        .intake(IntakeRecord {
            inbound: inbound("LAB", Some("F1"), "MSH|bad"),
            outcome: IntakeOutcome::Failed(Problem::new(
                Stage::Map,
                "bad_value",
                "OBX-5 is not a number",
            )),
        })
        .await
        .unwrap();
    assert_eq!(
        failed.outcome,
        Outcome::Failed("OBX-5 is not a number".into())
    );
    let rejected = store
        .intake(IntakeRecord {
            inbound: inbound("LAB", Some("R1"), "not hl7"),
            outcome: IntakeOutcome::Rejected(Problem::new(
                Stage::Decode,
                "not_hl7",
                "no MSH segment",
            )),
        })
        .await
        .unwrap();
    assert_eq!(rejected.outcome, Outcome::Rejected("no MSH segment".into()));

    let msg = store.message(failed.message_row).await.unwrap().unwrap();
    assert_eq!(msg.status, MessageStatus::Dead);
    assert_eq!(msg.error.as_deref(), Some("OBX-5 is not a number"));
    assert_eq!(msg.error_code.as_deref(), Some("bad_value"));
    assert_eq!(msg.stage.as_deref(), Some("map"));
    assert!(msg.events.is_empty());
    let msg = store.message(rejected.message_row).await.unwrap().unwrap();
    assert_eq!(msg.status, MessageStatus::Rejected);

    let dls = store.dead_letters(10).await.unwrap();
    assert_eq!(dls.len(), 2);
    assert_eq!(dls[0].message_row, rejected.message_row, "newest first");
    let (dl, original) = store.dead_letter(dls[1].id).await.unwrap().unwrap();
    assert_eq!(
        (dl.stage.as_str(), dl.class, dl.code.as_str()),
        ("map", ErrorClass::Permanent, "bad_value")
    );
    assert_eq!((dl.status.as_str(), dl.event_id.as_deref()), ("open", None));
    assert_eq!(original.payload, b"MSH|bad");
    assert!(store.dead_letter(999).await.unwrap().is_none());

    let counts = store.counts().await.unwrap();
    assert_eq!(counts.messages(MessageStatus::Dead), 1);
    assert_eq!(counts.messages(MessageStatus::Rejected), 1);
    assert_eq!(counts.dead_letters, 2);
    let check = store.verify_audit().await.unwrap();
    assert_eq!(
        (check.records, check.first_bad),
        (2, None),
        "one audit record each"
    );
    store.close().await;
}

on_both!(
    concurrent_intakes_share_commits_and_are_readable_after_their_receipt,
    concurrent_intakes_share_commits_and_are_readable_after_their_receipt_sqlite,
    concurrent_intakes_share_commits_and_are_readable_after_their_receipt_postgres
);

async fn concurrent_intakes_share_commits_and_are_readable_after_their_receipt(db: &TestDb) {
    let commits = Arc::new(AtomicUsize::new(0));
    let messages = Arc::new(AtomicUsize::new(0));
    let (c, m) = (Arc::clone(&commits), Arc::clone(&messages));
    let store = Store::open(StoreOptions {
        on_batch: Some(Arc::new(move |s: BatchStats| {
            c.fetch_add(1, Ordering::SeqCst);
            m.fetch_add(s.messages, Ordering::SeqCst);
        })),
        ..db.options()
    })
    .await
    .unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                let r = s
                    .intake(routed("ACME", &format!("M{i}"), &["jsonl"]))
                    .await
                    .unwrap();
                // Durable means visible to a fresh read right away.
                let msg = s
                    .message(r.message_row)
                    .await
                    .unwrap()
                    .expect("readable after receipt");
                assert_eq!(msg.message_id, Some(format!("M{i}")));
                r.message_row
            })
        })
        .collect();
    let mut rows = Vec::new();
    for t in tasks {
        rows.push(t.await.unwrap());
    }
    rows.sort_unstable();
    rows.dedup();
    assert_eq!(rows.len(), 200);
    let commits = commits.load(Ordering::SeqCst);
    assert!(commits < 200, "{commits} commits for 200 intakes");
    assert_eq!(messages.load(Ordering::SeqCst), 200);
    store.close().await;
}

/// Two hubs on one PostgreSQL (a partner may connect to either): the same
/// message id given to both at once is one message row, stored once; both
/// answer with that row and its outcome, one of them as a duplicate.
/// PostgreSQL only: SQLite is one hub's embedded store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_at_two_hubs_at_once_is_stored_once_postgres() {
    let db = TestDb::postgres().await;
    let lease = Duration::from_millis(300);
    let a = Store::open(db.instance("a", lease)).await.unwrap();
    // b commits on three connections at once: its own batches race too.
    let b = Store::open(StoreOptions {
        write_connections: 3,
        ..db.instance("b", lease)
    })
    .await
    .unwrap();
    const N: usize = 40;
    let mut tasks = Vec::new();
    for i in 0..N {
        let id = format!("TWICE-{i}");
        for s in [&a, &b] {
            let (s, id) = (s.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                s.intake(routed("ACME", &id, &["amqp"])).await
            }));
        }
    }
    let mut receipts = Vec::new();
    for t in tasks {
        receipts.push(t.await.unwrap().unwrap());
    }
    for (i, pair) in receipts.chunks(2).enumerate() {
        let (x, y) = (&pair[0], &pair[1]);
        assert_eq!(x.message_row, y.message_row, "TWICE-{i}: one message row");
        assert!(
            x.duplicate != y.duplicate,
            "TWICE-{i}: one duplicate: {pair:?}"
        );
        assert_eq!(x.outcome, Outcome::Accepted { events: 1 }, "TWICE-{i}");
        assert_eq!(y.outcome, Outcome::Accepted { events: 1 }, "TWICE-{i}");
        let msg = a.message(x.message_row).await.unwrap().unwrap();
        assert_eq!(msg.message_id, Some(format!("TWICE-{i}")));
        assert_eq!(msg.events.len(), 1, "TWICE-{i}: the events of one copy");
    }
    for s in [&a, &b] {
        let counts = s.counts().await.unwrap();
        assert_eq!(
            (counts.total_messages(), counts.events),
            (N as u64, N as u64)
        );
        let stats = s.outbox_stats(Utc::now()).await.unwrap();
        assert_eq!(stats.pending, N as u64, "one outbox row per message");
    }
    // And once more, after the fact: either hub answers with the original.
    for s in [&a, &b] {
        let again = s
            .intake(routed("ACME", "TWICE-0", &["amqp"]))
            .await
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(again.message_row, receipts[0].message_row);
    }
    assert!(a.verify_audit().await.unwrap().is_ok());
    a.close().await;
    b.close().await;
}

/// One hub committing on several PostgreSQL connections at once
/// (`store.write_connections`): copies of a message in concurrent batches
/// are one row, every caller is answered after its commit, and audit
/// records appended from all of them form one unbroken chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_write_connections_keep_dedup_and_the_audit_chain_postgres() {
    let db = TestDb::postgres().await;
    let store = Store::open(StoreOptions {
        write_connections: 3,
        ..db.options()
    })
    .await
    .unwrap();
    const N: usize = 60;
    let mut intakes = Vec::new();
    let mut audits = Vec::new();
    for i in 0..N {
        for _ in 0..2 {
            let s = store.clone();
            intakes.push(tokio::spawn(async move {
                s.intake(routed("ACME", &format!("PAR-{i}"), &["amqp"]))
                    .await
            }));
        }
        let s = store.clone();
        audits.push(tokio::spawn(async move {
            s.audit(
                "ops",
                "test.note",
                &format!("note:{i}"),
                serde_json::json!({ "i": i }),
            )
            .await
        }));
    }
    let mut rows = std::collections::HashMap::new();
    for t in intakes {
        let r = t.await.unwrap().unwrap();
        assert_eq!(r.outcome, Outcome::Accepted { events: 1 });
        rows.entry(r.message_row)
            .or_insert_with(Vec::new)
            .push(r.duplicate);
    }
    assert_eq!(rows.len(), N, "one row per message id");
    for (row, dups) in &rows {
        let mut dups = dups.clone();
        dups.sort();
        assert_eq!(dups, [false, true], "row {row}: one original, one repeat");
    }
    let mut ids: Vec<i64> = Vec::new();
    for t in audits {
        ids.push(t.await.unwrap().unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), N, "every audit record got an id of its own");
    let counts = store.counts().await.unwrap();
    assert_eq!(
        (counts.total_messages(), counts.events),
        (N as u64, N as u64)
    );
    let check = store.verify_audit().await.unwrap();
    assert_eq!(check.first_bad, None);
    assert_eq!(check.records, N as u64);
    store.close().await;
}

on_both!(
    the_writer_reports_itself_stopped_once_closed,
    the_writer_reports_itself_stopped_once_closed_sqlite,
    the_writer_reports_itself_stopped_once_closed_postgres
);

/// What `/healthz` reads: a writer that ended (a close here; a bug in
/// production) is reported, and writes are refused rather than lost.
async fn the_writer_reports_itself_stopped_once_closed(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
    assert!(store.writer_running());
    store.close().await;
    assert!(!store.writer_running());
    let err = store.intake(routed("ACME", "M-late", &["jsonl"])).await;
    assert!(err.is_err(), "no write after the writer stopped: {err:?}");
}
