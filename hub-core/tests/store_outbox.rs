//! The outbox on a real SQLite file and on a PostgreSQL database (each test
//! body runs on both, see `on_both!`): delivered, retry later,
//! dead-lettered, the stats, and unmatched events that never enter it; and,
//! on PostgreSQL only, two hubs claiming rows from one outbox.

mod store_fixtures;

use std::collections::BTreeSet;
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use hub_core::error::ErrorClass;
use hub_core::store::{
    EventFilter, IntakeOutcome, IntakeRecord, OutboxItem, PreparedEvent, Routing, Store, StoreError,
};
use store_fixtures::*;

on_both!(
    delivery_state_transitions_and_stats,
    delivery_state_transitions_and_stats_sqlite,
    delivery_state_transitions_and_stats_postgres
);

async fn delivery_state_transitions_and_stats(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
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
    // PostgreSQL: the poll claimed them for this hub; SQLite claims nothing.
    let claimed = if db.is_postgres() { 3 } else { 0 };
    assert_eq!(stats.claimed, claimed);
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

on_both!(
    unmatched_events_are_kept_visible_and_not_queued,
    unmatched_events_are_kept_visible_and_not_queued_sqlite,
    unmatched_events_are_kept_visible_and_not_queued_postgres
);

async fn unmatched_events_are_kept_visible_and_not_queued(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
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

// Several hubs on one PostgreSQL: each poll claims the rows it returns for
// the claim lease. PostgreSQL only: a SQLite store is one hub's own and
// claims nothing.

const LEASE: StdDuration = StdDuration::from_millis(300);

/// Hubs `a` and `b` on one database, with short leases.
async fn two_hubs(db: &TestDb) -> (Store, Store) {
    let a = Store::open(db.instance("a", LEASE)).await.unwrap();
    let b = Store::open(db.instance("b", LEASE)).await.unwrap();
    (a, b)
}

/// `n` messages with one `amqp` outbox row each, taken in by `a` and `b`
/// in turn.
async fn fill(a: &Store, b: &Store, n: usize) {
    for i in 0..n {
        let s = if i % 2 == 0 { a } else { b };
        s.intake(routed("ACME", &format!("C{i}"), &["amqp"]))
            .await
            .unwrap();
    }
}

fn row_ids(items: &[OutboxItem]) -> BTreeSet<i64> {
    items.iter().map(|i| i.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimed_rows_are_the_claimants_until_the_lease_runs_out_postgres() {
    let db = TestDb::postgres().await;
    let (a, b) = two_hubs(&db).await;
    fill(&a, &b, 6).await;
    let t0 = Utc::now();
    let mine = row_ids(&a.pending("amqp", 4, t0).await.unwrap());
    assert_eq!(mine.len(), 4);
    // Right after (the same instant, so no lease can have run out): b gets
    // only what a did not claim.
    let theirs = row_ids(&b.pending("amqp", 10, t0).await.unwrap());
    assert_eq!(theirs.len(), 2, "{mine:?} {theirs:?}");
    assert!(mine.is_disjoint(&theirs), "{mine:?} {theirs:?}");
    // Each hub's next poll returns what it holds, and nothing of the other's.
    assert_eq!(row_ids(&a.pending("amqp", 10, t0).await.unwrap()), mine);
    assert_eq!(row_ids(&b.pending("amqp", 10, t0).await.unwrap()), theirs);

    // a hangs (it published one row, X, but did not confirm it); its lease
    // runs out and b takes a's rows too.
    let x = *mine.iter().next().unwrap();
    tokio::time::sleep(LEASE + StdDuration::from_millis(100)).await;
    let now = Utc::now();
    let all = row_ids(&b.pending("amqp", 10, now).await.unwrap());
    assert_eq!(all, &mine | &theirs, "b takes the rows whose lease ran out");
    assert!(
        a.pending("amqp", 10, now).await.unwrap().is_empty(),
        "a's rows are b's now"
    );

    // Both published X; both confirm it: delivered once, the first
    // confirmation's record kept.
    b.delivered(vec![x]).await.unwrap();
    let mut raw = db.raw().await;
    let sql = format!("SELECT state, delivered_at FROM outbox WHERE id = {x}");
    let first: (String, Option<String>) = raw.fetch_one(&sql).await;
    assert_eq!(first.0, "delivered");
    assert!(first.1.is_some());
    tokio::time::sleep(StdDuration::from_millis(5)).await;
    a.delivered(vec![x]).await.unwrap();
    let second: (String, Option<String>) = raw.fetch_one(&sql).await;
    assert_eq!(second, first, "the late confirmation changes nothing");
    raw.close().await;
    let later = Utc::now() + Duration::seconds(10);
    for s in [&a, &b] {
        let left = row_ids(&s.pending("amqp", 10, later).await.unwrap());
        assert!(!left.contains(&x), "a delivered row is nobody's to publish");
        let stats = s.outbox_stats(later).await.unwrap();
        assert_eq!((stats.pending, stats.delivered), (5, 1));
    }
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_hub_releases_its_claims_at_once_postgres() {
    let db = TestDb::postgres().await;
    let a = Store::open(db.instance("a", StdDuration::from_secs(600)))
        .await
        .unwrap();
    let b = Store::open(db.instance("b", StdDuration::from_secs(600)))
        .await
        .unwrap();
    fill(&a, &b, 4).await;
    let now = Utc::now();
    let mine = row_ids(&a.pending("amqp", 10, now).await.unwrap());
    assert_eq!(mine.len(), 4);
    assert!(b.pending("amqp", 10, now).await.unwrap().is_empty());
    a.close().await;
    // Without waiting for the (ten-minute) lease.
    let taken = row_ids(&b.pending("amqp", 10, now).await.unwrap());
    assert_eq!(taken, mine);
    assert_eq!(b.outbox_stats(now).await.unwrap().claimed, 4);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_count_this_hubs_live_claims_postgres() {
    let db = TestDb::postgres().await;
    let (a, b) = two_hubs(&db).await;
    fill(&a, &b, 6).await;
    let t0 = Utc::now();
    let stats = a.outbox_stats(t0).await.unwrap();
    assert_eq!((stats.pending, stats.claimed), (6, 0));
    let mine: Vec<i64> = row_ids(&a.pending("amqp", 4, t0).await.unwrap())
        .into_iter()
        .collect();
    let claimed = |s: &Store, at| {
        let s = s.clone();
        async move { s.outbox_stats(at).await.unwrap().claimed }
    };
    assert_eq!(claimed(&a, t0).await, 4);
    assert_eq!(claimed(&b, t0).await, 0, "a's claims are not b's");
    assert_eq!(b.pending("amqp", 10, t0).await.unwrap().len(), 2);
    assert_eq!(claimed(&b, t0).await, 2);
    // Delivered and retried rows are claimed no more.
    a.delivered(vec![mine[0]]).await.unwrap();
    a.retry_later(mine[1], 1, t0 + Duration::seconds(60), "nack".into())
        .await
        .unwrap();
    assert_eq!(claimed(&a, t0).await, 2);
    let stats = a.outbox_stats(t0).await.unwrap();
    assert_eq!((stats.pending, stats.delivered), (5, 1));
    // A lease that ran out is no claim.
    let after = t0 + Duration::milliseconds(LEASE.as_millis() as i64 + 1);
    assert_eq!(claimed(&a, after).await, 0);
    assert_eq!(claimed(&b, after).await, 0);
    a.close().await;
    b.close().await;
}

/// Two relays polling at once: every row goes to one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_polls_of_two_hubs_split_the_rows_postgres() {
    let db = TestDb::postgres().await;
    let a = Store::open(db.instance("a", StdDuration::from_secs(30)))
        .await
        .unwrap();
    let b = Store::open(db.instance("b", StdDuration::from_secs(30)))
        .await
        .unwrap();
    const N: usize = 200;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                s.intake(routed("ACME", &format!("S{i}"), &["amqp"]))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let relay = |s: &Store| {
        let s = s.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let items = s.pending("amqp", 16, Utc::now()).await.unwrap();
                if items.is_empty() {
                    return got;
                }
                let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
                got.extend_from_slice(&ids);
                s.delivered(ids).await.unwrap();
            }
        })
    };
    let (ra, rb) = (relay(&a), relay(&b));
    let (got_a, got_b) = (ra.await.unwrap(), rb.await.unwrap());
    let (set_a, set_b): (BTreeSet<i64>, BTreeSet<i64>) = (
        got_a.iter().copied().collect(),
        got_b.iter().copied().collect(),
    );
    assert_eq!(set_a.len(), got_a.len(), "a got no row twice");
    assert_eq!(set_b.len(), got_b.len(), "b got no row twice");
    assert!(set_a.is_disjoint(&set_b), "no row went to both");
    assert_eq!(set_a.len() + set_b.len(), N);
    let stats = a.outbox_stats(Utc::now()).await.unwrap();
    assert_eq!((stats.pending, stats.delivered), (0, N as u64));
    a.close().await;
    b.close().await;
}

/// A delivery dead letter replayed on another hub than the one whose
/// attempt failed: the row is due for any hub at once (the failed
/// attempt's claim ended with it, as a retry's does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_delivery_is_due_for_the_hub_that_replayed_it_postgres() {
    let db = TestDb::postgres().await;
    let a = Store::open(db.instance("a", StdDuration::from_secs(600)))
        .await
        .unwrap();
    let b = Store::open(db.instance("b", StdDuration::from_secs(600)))
        .await
        .unwrap();
    fill(&a, &b, 1).await;
    let item = a.pending("amqp", 10, Utc::now()).await.unwrap().remove(0);
    let dl = a
        .dead_letter_delivery(
            item.id,
            5,
            ErrorClass::Transient,
            "delivery_failed",
            "nack".into(),
        )
        .await
        .unwrap();
    let out = b.replay_delivery(dl, "ops").await.unwrap();
    assert!(out.is_success(), "{out:?}");
    let due = b.pending("amqp", 10, Utc::now()).await.unwrap();
    assert_eq!(
        row_ids(&due),
        BTreeSet::from([item.id]),
        "b replayed it and woke its own relay: b must be able to take it"
    );
    a.close().await;
    b.close().await;
}
