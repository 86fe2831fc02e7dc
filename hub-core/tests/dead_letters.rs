//! Dead letters on real SQLite files: what an operator lists, broker dead
//! letters kept once however often they come, purges (with a reason, kept,
//! final), the schema's guards, the migration of rows written before, and
//! a read-only store beside the writer.

mod dead_letters_support;

use chrono::{TimeZone, Utc};
use dead_letters_support::*;
use hub_core::dead_letters::DeadLetterSelection;
use hub_core::error::ErrorClass;
use hub_core::store::{
    BrokerDeadLetter, DeadLetterFilter, DeadLetterStatus, DlqOutcome, MessageStatus, Store,
    StoreError,
};
use sqlx::{ConnectOptions, Connection};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_shows_what_an_operator_needs_and_filters_newest_first() {
    let s = setup().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_dead_letter_delivered_twice_is_kept_once() {
    let s = setup().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_needs_a_reason_keeps_everything_and_is_final() {
    let s = setup().await;
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
    let mut raw = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(s.dir.path().join("cgthub.db"))
        .connect()
        .await
        .unwrap();
    for sql in [
        format!("DELETE FROM dead_letters WHERE id = {id}"),
        format!("UPDATE dead_letters SET status = 'open' WHERE id = {id}"),
        "UPDATE dead_letters SET status = 'gone'".to_string(),
        "DELETE FROM dead_letter_history".to_string(),
    ] {
        assert!(sqlx::query(&sql).execute(&mut raw).await.is_err(), "{sql}");
    }
    raw.close().await.unwrap();
    assert!(s.store.verify_audit().await.unwrap().is_ok());
    s.store.close().await;
}

/// Applies only the shipped migrations before 0003, as a hub of the
/// previous release would have.
async fn old_schema(db: &std::path::Path) -> sqlx::SqliteConnection {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let old = tempfile::tempdir().unwrap();
    for f in ["0001_store.sql", "0002_outbox_routing_key.sql"] {
        std::fs::copy(src.join(f), old.path().join(f)).unwrap();
    }
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(old.path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_before_the_migration_are_filled_in() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cgthub.db");
    let mut conn = old_schema(&db).await;
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
        sqlx::query(&sql).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();

    let store = Store::open(options(dir.path())).await.unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_store_reads_beside_the_writer_and_refuses_writes() {
    let s = setup().await;
    s.send("R1;COI-1").await;
    let ro = Store::open_read_only(options(s.dir.path())).await.unwrap();
    let rows = ro.list_dead_letters(&Default::default()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(ro.dead_letter_detail(rows[0].id).await.unwrap().is_some());
    let err = ro
        .purge_dead_letter(rows[0].id, ACTOR, "no")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Closed), "{err:?}");
    ro.close().await;

    let nowhere = tempfile::tempdir().unwrap();
    assert!(Store::open_read_only(options(nowhere.path()))
        .await
        .is_err());
    assert!(
        !nowhere.path().join("cgthub.db").exists(),
        "nothing created"
    );
    let old = tempfile::tempdir().unwrap();
    old_schema(&old.path().join("cgthub.db"))
        .await
        .close()
        .await
        .unwrap();
    let err = Store::open_read_only(options(old.path()))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, StoreError::SchemaBehind { found: 2, .. }),
        "{err:?}"
    );
    s.store.close().await;
}
