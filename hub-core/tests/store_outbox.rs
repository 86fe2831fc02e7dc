//! The outbox on real SQLite files: delivered, retry later, dead-lettered,
//! the stats, and unmatched events that never enter it.

mod store_fixtures;

use chrono::{Duration, Utc};
use hub_core::error::ErrorClass;
use hub_core::store::{
    EventFilter, IntakeOutcome, IntakeRecord, PreparedEvent, Routing, Store, StoreError,
};
use store_fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_state_transitions_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).await.unwrap();
    let receipt = store
        .intake(routed("ACME", "M1", &["amqp", "amqp", "amqp"]))
        .await
        .unwrap();
    let now = Utc::now() + Duration::seconds(1);
    let due = store.pending("amqp", 10, now).await.unwrap();
    let ids: Vec<i64> = due.iter().map(|i| i.id).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first");
    // What a broker sink needs to publish, without parsing the body.
    let first = &due[0];
    assert_eq!(first.routing_key, "none.qc.result_reported");
    assert_eq!(first.kind, "temperature.reading");
    assert_eq!(first.coi.as_deref(), Some("COI-1"));
    assert_eq!(first.partner, "ACME");
    assert!(first.body.contains(&first.event_id));
    let stats = store.outbox_stats(now).await.unwrap();
    assert_eq!((stats.pending, stats.delivered, stats.dead), (3, 0, 0));
    assert!(stats.oldest_pending_age_secs > 0.0 && stats.oldest_pending_age_secs < 60.0);

    store.delivered(vec![ids[0]]).await.unwrap();
    store
        .retry_later(ids[1], 1, now + Duration::seconds(60), "timeout".into())
        .await
        .unwrap();
    let due: Vec<i64> = store
        .pending("amqp", 10, now)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(due, [ids[2]], "delivered is gone, the retry is not due yet");
    let later = store
        .pending("amqp", 10, now + Duration::seconds(61))
        .await
        .unwrap();
    assert_eq!(later.len(), 2);
    // Earliest due first: the row due since the start, then the retry.
    assert_eq!((later[0].id, later[0].attempts), (ids[2], 0));
    assert_eq!((later[1].id, later[1].attempts), (ids[1], 1));

    let dl = store
        .dead_letter_delivery(
            ids[2],
            5,
            ErrorClass::Transient,
            "delivery_failed",
            "broker nack".into(),
        )
        .await
        .unwrap();
    let (letter, message) = store.dead_letter(dl).await.unwrap().unwrap();
    assert_eq!(letter.message_row, receipt.message_row);
    assert_eq!(letter.event_id.as_deref(), Some(later[0].event_id.as_str()));
    assert_eq!(
        (letter.route.as_deref(), letter.sink.as_deref()),
        (Some("to-amqp"), Some("amqp"))
    );
    assert_eq!(
        (letter.stage.as_str(), letter.class),
        ("deliver", ErrorClass::Transient)
    );
    assert_eq!(
        (letter.attempts, letter.reason.as_str()),
        (5, "broker nack")
    );
    assert_eq!(
        message.payload, b"{\"id\":\"M1\"}",
        "the original payload comes along"
    );

    let stats = store.outbox_stats(now).await.unwrap();
    assert_eq!((stats.pending, stats.delivered, stats.dead), (1, 1, 1));
    let far = now + Duration::seconds(3600);
    let pending: Vec<i64> = store
        .pending("amqp", 10, far)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(pending, [ids[1]]);

    // Rows that are no longer pending are not resurrected.
    let err = store
        .retry_later(ids[0], 2, now, "late".into())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    let err = store
        .dead_letter_delivery(
            ids[2],
            6,
            ErrorClass::Permanent,
            "unroutable",
            "again".into(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    store.delivered(vec![ids[2]]).await.unwrap();
    let stats = store.outbox_stats(now).await.unwrap();
    assert_eq!(
        (stats.delivered, stats.dead),
        (1, 1),
        "a dead row stays dead"
    );
    store.delivered(vec![]).await.unwrap();

    let check = store.verify_audit().await.unwrap();
    assert_eq!(
        (check.records, check.first_bad),
        (1, None),
        "the dead letter was audited"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_events_are_kept_visible_and_not_queued() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(options(dir.path())).await.unwrap();
    let (lost, found) = (event("COI-9"), event("COI-9"));
    let receipt = store
        .intake(IntakeRecord {
            inbound: inbound("ACME", Some("U1"), "{}"),
            outcome: IntakeOutcome::Events(vec![
                PreparedEvent::new(&lost, vec![]),
                PreparedEvent::new(&found, vec![dest("jsonl")]),
            ]),
        })
        .await
        .unwrap();
    let unmatched = store
        .events(&EventFilter {
            unmatched_only: true,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(unmatched.len(), 1);
    assert_eq!(unmatched[0].event_id, lost.event_id.to_string());
    assert_eq!(unmatched[0].routing, Routing::Unmatched);
    assert_eq!(unmatched[0].message_row, receipt.message_row);

    let all = store
        .events(&EventFilter {
            message_row: Some(receipt.message_row),
            kind: Some("temperature.reading".into()),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    let far = Utc::now() + Duration::seconds(60);
    let queued = store.pending("jsonl", 10, far).await.unwrap();
    assert_eq!(queued.len(), 1, "no outbox row for the unmatched event");
    assert_eq!(queued[0].event_id, found.event_id.to_string());
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.events, counts.unmatched), (2, 1));
    store.close().await;
}
