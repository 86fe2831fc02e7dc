//! Dead letters on a real SQLite file and on a PostgreSQL database (each
//! test body runs on both, see `on_both!`): what an operator lists, broker
//! dead letters kept once however often they come, purges (with a reason,
//! kept, final), the schema's guards, a read-only store beside the writer,
//! a schema behind reported and migrated; and, on SQLite only, the
//! migration of rows written before the dead-letter lifecycle.

mod dead_letters_support;
mod store_fixtures;

use chrono::{TimeZone, Utc};
use dead_letters_support::*;
use hub_core::dead_letters::DeadLetterSelection;
use hub_core::error::ErrorClass;
use hub_core::store::{
    BrokerDeadLetter, DeadLetterFilter, DeadLetterStatus, DlqOutcome, MessageStatus, Store,
    StoreError,
};
use store_fixtures::{on_both, TestDb};

const ACTOR: &str = "bob@ops-2";

fn broker_dead(message_id: Option<&str>, count: u32) -> BrokerDeadLetter {
    BrokerDeadLetter {
        body: b"opaque \x00 bytes".to_vec(),
        message_id: message_id.map(str::to_owned),
        kind: None,
        routing_key: "car-t.qc.result_reported".into(),
        coi: Some("COI-B".into()),
        product: None,
        partner: Some("LIMS".into()),
        reason: "expired".into(),
        queue: Some("q.results".into()),
        death_count: count,
        first_death_at: Some(Utc.with_ymd_and_hms(2026, 11, 21, 9, 0, 0).unwrap()),
    }
}

on_both!(
    the_list_shows_what_an_operator_needs_and_filters_newest_first,
    the_list_shows_what_an_operator_needs_and_filters_newest_first_sqlite,
    the_list_shows_what_an_operator_needs_and_filters_newest_first_postgres
);

async fn the_list_shows_what_an_operator_needs_and_filters_newest_first(db: &TestDb) {
    let s = setup(db).await;
    let failed = s.send("L1;COI-1").await;
    s.connector.fix();
    s.send("L2;COI-2").await;
    let item = s
        .store
        .pending(SINK, 10, Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap()
        .remove(0);
    s.store
        .dead_letter_delivery(
            item.id,
            3,
            ErrorClass::Permanent,
            "unroutable",
            "NO_ROUTE".into(),
        )
        .await
        .unwrap();
    s.store
        .dead_from_broker(broker_dead(Some("x"), 2))
        .await
        .unwrap();

    let all = s
        .store
        .list_dead_letters(&Default::default())
        .await
        .unwrap();
    let stages: Vec<&str> = all.iter().map(|d| d.stage.as_str()).collect();
    assert_eq!(stages, ["consume", "deliver", "map"], "newest first");
    let (broker, deliver, map) = (&all[0], &all[1], &all[2]);
    assert_eq!(
        (
            map.partner.as_str(),
            map.code.as_str(),
            map.coi.as_deref(),
            map.attempts
        ),
        ("ACME", "required_field_missing", None, 1)
    );
    assert_eq!(map.message_row, failed.message_row);
    assert!(map.reason.contains("required value missing"));
    assert_eq!(
        (
            deliver.code.as_str(),
            deliver.coi.as_deref(),
            deliver.attempts
        ),
        ("unroutable", Some("COI-2"), 3)
    );
    assert!(deliver.first_attempt_at <= deliver.last_attempt_at);
    assert_eq!(
        (
            broker.partner.as_str(),
            broker.code.as_str(),
            broker.coi.as_deref()
        ),
        ("LIMS", "expired", Some("COI-B"))
    );
    assert_eq!(broker.attempts, 2);
    assert_eq!(
        broker.first_attempt_at,
        Utc.with_ymd_and_hms(2026, 11, 21, 9, 0, 0).unwrap()
    );
    assert!(all.iter().all(|d| d.status == DeadLetterStatus::Open));

    let only = |stage: Option<&str>, code: Option<&str>, limit| DeadLetterFilter {
        stage: stage.map(str::to_owned),
        code: code.map(str::to_owned),
        limit,
        ..DeadLetterFilter::default()
    };
    let by_stage = s
        .store
        .list_dead_letters(&only(Some("deliver"), None, 10))
        .await
        .unwrap();
    assert_eq!(by_stage.len(), 1);
    assert_eq!(by_stage[0].id, deliver.id);
    let by_code = s
        .store
        .list_dead_letters(&only(None, Some("expired"), 10))
        .await
        .unwrap();
    assert_eq!(by_code.len(), 1);
    assert_eq!(by_code[0].id, broker.id);
    let limited = s
        .store
        .list_dead_letters(&only(None, None, 2))
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);
    s.store.close().await;
}

on_both!(
    a_broker_dead_letter_delivered_twice_is_kept_once,
    a_broker_dead_letter_delivered_twice_is_kept_once_sqlite,
    a_broker_dead_letter_delivered_twice_is_kept_once_postgres
);

async fn a_broker_dead_letter_delivered_twice_is_kept_once(db: &TestDb) {
    let s = setup(db).await;
    let first = s
        .store
        .dead_from_broker(broker_dead(Some("e-1"), 1))
        .await
        .unwrap();
    // The ack was lost: the same dead message again, also two at once.
    let again = s
        .store
        .dead_from_broker(broker_dead(Some("e-1"), 1))
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        s.store.dead_from_broker(broker_dead(Some("e-2"), 1)),
        s.store.dead_from_broker(broker_dead(Some("e-2"), 1)),
    );
    assert_eq!(first, again);
    assert_eq!(a.unwrap(), b.unwrap());
    // Without a message id the body's hash names it.
    let c = s
        .store
        .dead_from_broker(broker_dead(None, 1))
        .await
        .unwrap();
    let d = s
        .store
        .dead_from_broker(broker_dead(None, 1))
        .await
        .unwrap();
    assert_eq!(c, d);
    // Dying again later (after a replay) is a new dead letter.
    let later = BrokerDeadLetter {
        first_death_at: Some(Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap()),
        ..broker_dead(Some("e-1"), 1)
    };
    let new = s.store.dead_from_broker(later).await.unwrap();
    assert_ne!(new, first);

    let counts = s.store.counts().await.unwrap();
    assert_eq!(counts.dead_letters, 4);
    assert_eq!(counts.messages(MessageStatus::Dead), 4, "one body row each");
    let (dl, msg) = s.store.dead_letter(first).await.unwrap().unwrap();
    assert_eq!(msg.payload, b"opaque \x00 bytes", "kept byte for byte");
    assert_eq!(msg.content_type, "application/octet-stream");
    assert_eq!(msg.message_id.as_deref(), Some("e-1"));
    assert_eq!(dl.event_id, None, "e-1 is no event of ours");
    let audit = s
        .store
        .audit_records(&format!("dead_letter:{first}"))
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "broker.dead_lettered");
    assert!(s.store.verify_audit().await.unwrap().is_ok());
    s.store.close().await;
}

on_both!(
    a_purge_needs_a_reason_keeps_everything_and_is_final,
    a_purge_needs_a_reason_keeps_everything_and_is_final_sqlite,
    a_purge_needs_a_reason_keeps_everything_and_is_final_postgres
);

async fn a_purge_needs_a_reason_keeps_everything_and_is_final(db: &TestDb) {
    let s = setup(db).await;
    let r = s.send("P1;COI-1").await;
    let id = s.dead_letter_of(r.message_row).await;

    for reason in ["", "   "] {
        let err = s
            .store
            .purge_dead_letter(id, ACTOR, reason)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
        assert!(s
            .hub
            .purge_dead_letters(DeadLetterSelection::Ids(vec![id]), ACTOR, reason)
            .await
            .is_err());
    }
    assert!(
        s.store.purge_dead_letter(id, "", "dup").await.is_err(),
        "an actor is required"
    );
    let d = s.store.dead_letter_detail(id).await.unwrap().unwrap();
    assert_eq!(
        d.dead_letter.status,
        DeadLetterStatus::Open,
        "nothing changed"
    );

    let out = s
        .hub
        .purge_dead_letters(
            DeadLetterSelection::Ids(vec![id, 777]),
            ACTOR,
            "partner confirmed the order was cancelled",
        )
        .await
        .unwrap();
    assert_eq!(out[0].outcome, DlqOutcome::Purged);
    assert_eq!(out[1].outcome, DlqOutcome::NotFound);

    let d = s.store.dead_letter_detail(id).await.unwrap().unwrap();
    assert_eq!(d.dead_letter.status, DeadLetterStatus::Purged);
    assert_eq!(d.dead_letter.purged_by.as_deref(), Some(ACTOR));
    assert_eq!(
        d.dead_letter.purge_reason.as_deref(),
        Some("partner confirmed the order was cancelled")
    );
    assert_eq!(d.message.payload, b"P1;COI-1", "the payload is kept");
    assert_eq!(d.history.last().unwrap().action, "purged");
    let purge = d.audit.last().unwrap();
    assert_eq!(
        (purge.action.as_str(), purge.actor.as_str()),
        ("dead_letter.purged", ACTOR)
    );
    let detail: serde_json::Value = serde_json::from_str(&purge.detail).unwrap();
    assert_eq!(
        detail["reason"],
        "partner confirmed the order was cancelled"
    );

    // Hidden from the open list, shown with its status or all.
    assert!(s
        .store
        .list_dead_letters(&Default::default())
        .await
        .unwrap()
        .is_empty());
    for status in [Some(DeadLetterStatus::Purged), None] {
        let f = DeadLetterFilter {
            status,
            ..DeadLetterFilter::default()
        };
        assert_eq!(s.store.list_dead_letters(&f).await.unwrap().len(), 1);
    }

    // Final: neither replayed nor purged again, and the database agrees.
    s.connector.fix();
    let again = s
        .hub
        .replay_dead_letters(DeadLetterSelection::Ids(vec![id]), ACTOR)
        .await
        .unwrap();
    assert!(matches!(again[0].outcome, DlqOutcome::Refused { .. }));
    let twice = s.store.purge_dead_letter(id, ACTOR, "again").await.unwrap();
    assert!(matches!(twice, DlqOutcome::Refused { .. }));
    let mut raw = db.raw().await;
    for sql in [
        format!("DELETE FROM dead_letters WHERE id = {id}"),
        format!("UPDATE dead_letters SET status = 'open' WHERE id = {id}"),
        "UPDATE dead_letters SET status = 'gone'".to_string(),
        "DELETE FROM dead_letter_history".to_string(),
    ] {
        assert!(raw.execute(&sql).await.is_err(), "{sql}");
    }
    raw.close().await;
    assert!(s.store.verify_audit().await.unwrap().is_ok());
    s.store.close().await;
}

/// SQLite-only: 0003 filled in the dead-letter lifecycle columns of rows
/// SQLite hubs of the previous release wrote; PostgreSQL stores began with
/// those columns (their first schema is SQLite's 0001 to 0003), so no
/// PostgreSQL database holds such rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_before_the_migration_are_filled_in_sqlite() {
    let db = TestDb::sqlite().await;
    assert_eq!(db.old_schema().await, 2, "before 0003");
    let mut conn = db.raw().await;
    let t0 = "2026-11-20T10:00:00.000Z";
    let t1 = "2026-11-20T10:00:05.000Z";
    let t2 = "2026-11-20T11:00:00.000Z";
    for sql in [
        format!(
            "INSERT INTO messages (id, connector, partner, message_id, content_type, payload, \
             sha256, status, received_at, origin, updated_at) VALUES \
             (1, 'hl7v2', 'LAB', 'A', 't', x'00', 'h', 'routed', '{t0}', 'o', '{t0}'), \
             (2, 'hl7v2', 'LAB', 'B', 't', x'00', 'h', 'dead', '{t0}', 'o', '{t0}')"
        ),
        format!(
            "INSERT INTO events (event_id, message_row, kind, coi, occurred_at, recorded_at, \
             body, routing) VALUES ('e1', 1, 'qc.result_reported', 'COI-OLD', '{t0}', '{t0}', \
             '{{}}', 'routed')"
        ),
        format!(
            "INSERT INTO outbox (id, event_id, route, sink, state, attempts, next_attempt_at, \
             created_at, routing_key) VALUES (5, 'e1', 'r', 'file', 'dead', 10, '{t1}', '{t1}', \
             'k.qc')"
        ),
        format!(
            "INSERT INTO dead_letters (id, message_row, event_id, route, sink, stage, class, \
             code, reason, attempts, created_at) VALUES \
             (1, 2, NULL, NULL, NULL, 'map', 'permanent', 'bad_value', 'no', 1, '{t0}'), \
             (2, 1, 'e1', 'r', 'file', 'deliver', 'transient', 'delivery_failed', 'EIO', 10, '{t2}')"
        ),
    ] {
        conn.execute(&sql).await.unwrap();
    }
    conn.close().await;

    let store = Store::open(db.options()).await.unwrap();
    let f = DeadLetterFilter {
        status: None,
        ..DeadLetterFilter::default()
    };
    let rows = store.list_dead_letters(&f).await.unwrap();
    let (deliver, map) = (&rows[0], &rows[1]);
    assert_eq!(deliver.outbox_id, Some(5));
    assert_eq!(deliver.coi.as_deref(), Some("COI-OLD"));
    assert_eq!(deliver.routing_key.as_deref(), Some("k.qc"));
    assert_eq!(
        deliver.first_attempt_at.to_rfc3339(),
        "2026-11-20T10:00:05+00:00"
    );
    assert_eq!(
        deliver.last_attempt_at.to_rfc3339(),
        "2026-11-20T11:00:00+00:00"
    );
    assert_eq!(
        map.first_attempt_at.to_rfc3339(),
        "2026-11-20T10:00:00+00:00"
    );
    assert!(rows.iter().all(|d| d.status == DeadLetterStatus::Open));
    for d in &rows {
        let detail = store.dead_letter_detail(d.id).await.unwrap().unwrap();
        assert_eq!(detail.history.len(), 1);
        assert_eq!(detail.history[0].note, d.reason);
    }
    // The migrated delivery dead letter replays like a new one.
    let out = store.replay_delivery(2, ACTOR).await.unwrap();
    assert!(out.is_success(), "{out:?}");
    store.close().await;
}

on_both!(
    a_read_only_store_reads_beside_the_writer_and_refuses_writes,
    a_read_only_store_reads_beside_the_writer_and_refuses_writes_sqlite,
    a_read_only_store_reads_beside_the_writer_and_refuses_writes_postgres
);

async fn a_read_only_store_reads_beside_the_writer_and_refuses_writes(db: &TestDb) {
    let s = setup(db).await;
    s.send("R1;COI-1").await;
    let ro = Store::open_read_only(db.options()).await.unwrap();
    let rows = ro.list_dead_letters(&Default::default()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(ro.dead_letter_detail(rows[0].id).await.unwrap().is_some());
    let err = ro
        .purge_dead_letter(rows[0].id, ACTOR, "no")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Closed), "{err:?}");
    ro.close().await;

    let nowhere = db.missing();
    assert!(Store::open_read_only(nowhere.clone()).await.is_err());
    assert!(!TestDb::exists(&nowhere).await, "nothing created");
    let old = db.another().await;
    let found = old.old_schema().await;
    let err = Store::open_read_only(old.options()).await.err().unwrap();
    assert!(
        matches!(err, StoreError::SchemaBehind { found: f, .. } if f == found),
        "{err:?}"
    );
    s.store.close().await;
}

on_both!(
    a_schema_behind_is_reported_and_migrated,
    a_schema_behind_is_reported_and_migrated_sqlite,
    a_schema_behind_is_reported_and_migrated_postgres
);

/// `cgthub check` and `cgthub migrate` on a database of an older release.
async fn a_schema_behind_is_reported_and_migrated(db: &TestDb) {
    let found = db.old_schema().await;
    let (applied, known) = Store::schema_status(&db.options()).await.unwrap();
    assert_eq!(applied, found);
    assert!(known > found, "{found} {known}");
    let err = Store::open_read_only(db.options()).await.err().unwrap();
    assert!(
        matches!(err, StoreError::SchemaBehind { found: f, needed } if f == found && needed == known),
        "{err:?}"
    );
    assert_eq!(Store::migrate(&db.options()).await.unwrap(), (found, known));
    assert_eq!(
        Store::schema_status(&db.options()).await.unwrap(),
        (known, known)
    );
    assert_eq!(
        Store::migrate(&db.options()).await.unwrap(),
        (known, known),
        "nothing left to do"
    );
    let ro = Store::open_read_only(db.options()).await.unwrap();
    assert_eq!(ro.backend(), db.backend());
    assert_eq!(ro.counts().await.unwrap().total_messages(), 0);
    ro.close().await;
    let store = Store::open(db.options()).await.unwrap();
    store
        .intake(hub_core::store::IntakeRecord {
            inbound: hub_core::Inbound::new(
                KIND,
                "ACME",
                "text/plain",
                Some("AFTER".into()),
                bytes::Bytes::from_static(b"x"),
                "127.0.0.1:9",
            ),
            outcome: hub_core::store::IntakeOutcome::Events(vec![]),
        })
        .await
        .unwrap();
    store.close().await;
}

/// PostgreSQL: a database no hub has opened yet is at version 0, and
/// opening the store there creates the schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_database_is_at_version_zero_postgres() {
    let db = TestDb::postgres().await;
    let (applied, known) = Store::schema_status(&db.options()).await.unwrap();
    assert_eq!(applied, 0);
    let store = Store::open(db.options()).await.unwrap();
    store.close().await;
    assert_eq!(
        Store::schema_status(&db.options()).await.unwrap(),
        (known, known)
    );
}

/// Two hubs consuming the broker's dead-letter queue on one PostgreSQL: a
/// dead message redelivered to the other hub while the first keeps it is
/// still kept once. PostgreSQL only (one SQLite hub consumes alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_dead_letter_at_two_hubs_at_once_is_kept_once_postgres() {
    let db = TestDb::postgres().await;
    let lease = std::time::Duration::from_millis(300);
    let a = Store::open(db.instance("a", lease)).await.unwrap();
    let b = Store::open(db.instance("b", lease)).await.unwrap();
    const N: usize = 20;
    let mut tasks = Vec::new();
    for i in 0..N {
        for s in [&a, &b] {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.dead_from_broker(broker_dead(Some(&format!("e-{i}")), 1))
                    .await
            }));
        }
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().unwrap());
    }
    for (i, pair) in ids.chunks(2).enumerate() {
        assert_eq!(pair[0], pair[1], "e-{i}: one dead letter");
    }
    let counts = a.counts().await.unwrap();
    assert_eq!(counts.dead_letters, N as u64);
    assert_eq!(
        counts.messages(MessageStatus::Dead),
        N as u64,
        "one body row each"
    );
    let check = b.verify_audit().await.unwrap();
    assert_eq!((check.records, check.first_bad), (N as u64, None));
    a.close().await;
    b.close().await;
}
