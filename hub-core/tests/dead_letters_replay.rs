//! Replaying dead letters from the stage that failed, through the hub, on
//! a real SQLite file and on a PostgreSQL database (each test body runs on
//! both, see `on_both!`): a message processed again (failing again, then
//! succeeding), a resend that superseded it, a delivery queued again (and
//! reopening its dead letter when it fails again), a broker dead letter of
//! our event published again, replay of all open ones with a code; each
//! with its error chain and audit records, and the audit chain intact.

mod dead_letters_support;
mod store_fixtures;

use std::time::Duration;

use chrono::Utc;
use dead_letters_support::*;
use hub_core::dead_letters::DeadLetterSelection;
use hub_core::error::ErrorClass;
use hub_core::store::{BrokerDeadLetter, DeadLetterStatus, DlqOutcome, EventFilter, MessageStatus};
use hub_core::Outcome;
use store_fixtures::{on_both, TestDb};

const ACTOR: &str = "alice@ops-1";

fn ids(v: &[i64]) -> DeadLetterSelection {
    DeadLetterSelection::Ids(v.to_vec())
}

async fn replay_one(s: &Setup, id: i64) -> DlqOutcome {
    let mut r = s.hub.replay_dead_letters(ids(&[id]), ACTOR).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].id, id);
    r.remove(0).outcome
}

async fn woken(s: &Setup) -> bool {
    let n = s.hub.wake_handle(SINK).unwrap();
    tokio::time::timeout(Duration::from_secs(2), n.notified())
        .await
        .is_ok()
}

on_both!(
    a_failed_message_fails_again_then_is_processed_with_the_fixed_mapping,
    a_failed_message_fails_again_then_is_processed_with_the_fixed_mapping_sqlite,
    a_failed_message_fails_again_then_is_processed_with_the_fixed_mapping_postgres
);

async fn a_failed_message_fails_again_then_is_processed_with_the_fixed_mapping(db: &TestDb) {
    let s = setup(db).await;
    let receipt = s.send("M1;COI-9").await;
    assert!(matches!(receipt.outcome, Outcome::Failed(_)));
    let id = s.dead_letter_of(receipt.message_row).await;
    let before = s
        .store
        .list_dead_letters(&Default::default())
        .await
        .unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(
        (before[0].partner.as_str(), before[0].code.as_str()),
        ("ACME", "required_field_missing")
    );

    // Still broken: stays open, one attempt more, the new failure on record.
    let again = replay_one(&s, id).await;
    assert!(
        matches!(again, DlqOutcome::Failed { ref code, .. } if code == "required_field_missing")
    );
    let dl = s.store.dead_letter_detail(id).await.unwrap().unwrap();
    assert_eq!(dl.dead_letter.status, DeadLetterStatus::Open);
    assert_eq!(dl.dead_letter.attempts, 2);
    assert!(dl.dead_letter.last_attempt_at > dl.dead_letter.first_attempt_at);
    assert_eq!(dl.dead_letter.first_attempt_at, dl.message.received_at);
    assert_eq!(dl.message.status, MessageStatus::Dead);
    let chain: Vec<(&str, &str)> = dl
        .history
        .iter()
        .map(|h| (h.action.as_str(), h.actor.as_str()))
        .collect();
    assert_eq!(
        chain,
        [("dead_lettered", "system"), ("replay_failed", ACTOR)]
    );

    // Fixed: events stored for the same message row, queued, relay woken.
    s.connector.fix();
    let done = replay_one(&s, id).await;
    let DlqOutcome::Replayed { detail, sinks } = &done else {
        panic!("{done:?}");
    };
    assert_eq!(sinks, &[SINK.to_string()]);
    assert!(detail.contains("1 event(s)"), "{detail}");
    assert!(woken(&s).await, "the sink's relay is woken");
    let msg = s.store.message(receipt.message_row).await.unwrap().unwrap();
    assert_eq!(msg.status, MessageStatus::Routed);
    assert_eq!(
        (msg.error.as_deref(), msg.error_code.as_deref()),
        (None, None)
    );
    assert_eq!(msg.events.len(), 1);
    let pending = s
        .store
        .pending(SINK, 10, Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].event_id, msg.events[0].0);
    assert_eq!(pending[0].routing_key, "car-t.temperature.reading");
    assert_eq!(pending[0].coi.as_deref(), Some("COI-9"));

    let dl = s.store.dead_letter_detail(id).await.unwrap().unwrap();
    let d = &dl.dead_letter;
    assert_eq!(d.status, DeadLetterStatus::Replayed);
    assert_eq!(d.replayed_by.as_deref(), Some(ACTOR));
    assert!(d.replayed_at.is_some());
    assert_eq!(d.attempts, 3);
    assert_eq!(dl.history.last().unwrap().action, "replayed");
    let outcomes: Vec<(String, String)> = dl
        .audit
        .iter()
        .map(|a| {
            let v: serde_json::Value = serde_json::from_str(&a.detail).unwrap();
            (a.action.clone(), v["outcome"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("dead_letter.replayed".to_string(), "failed".to_string()),
            ("dead_letter.replayed".to_string(), "replayed".to_string())
        ]
    );
    assert!(dl.audit.iter().all(|a| a.actor == ACTOR));
    // Hidden from the default (open) list, shown with its status.
    assert!(s
        .store
        .list_dead_letters(&Default::default())
        .await
        .unwrap()
        .is_empty());

    // Replaying twice does nothing; a resend is now a duplicate of it.
    assert!(matches!(
        replay_one(&s, id).await,
        DlqOutcome::Refused { .. }
    ));
    let resend = s.send("M1;COI-9").await;
    assert!(resend.duplicate);
    assert_eq!(resend.message_row, receipt.message_row);
    assert_eq!(resend.outcome, Outcome::Accepted { events: 1 });

    let check = s.store.verify_audit().await.unwrap();
    assert!(check.is_ok(), "{check:?}");
    s.store.close().await;
}

on_both!(
    a_message_resent_and_accepted_meanwhile_supersedes_the_replay,
    a_message_resent_and_accepted_meanwhile_supersedes_the_replay_sqlite,
    a_message_resent_and_accepted_meanwhile_supersedes_the_replay_postgres
);

async fn a_message_resent_and_accepted_meanwhile_supersedes_the_replay(db: &TestDb) {
    let s = setup(db).await;
    let first = s.send("M2;COI-1").await;
    let id = s.dead_letter_of(first.message_row).await;
    s.connector.fix();
    let resend = s.send("M2;COI-1").await;
    assert!(!resend.duplicate, "a failed message does not hold its id");
    assert_eq!(resend.outcome, Outcome::Accepted { events: 1 });

    let refused = replay_one(&s, id).await;
    let DlqOutcome::Refused { reason } = &refused else {
        panic!("{refused:?}");
    };
    assert!(
        reason.contains(&format!("superseded by message {}", resend.message_row)),
        "{reason}"
    );
    let d = s.store.dead_letter_detail(id).await.unwrap().unwrap();
    assert_eq!(d.dead_letter.status, DeadLetterStatus::Open);
    assert_eq!(d.dead_letter.attempts, 1, "a refusal is not an attempt");
    assert_eq!(d.message.status, MessageStatus::Dead);
    assert!(d.audit.is_empty(), "nothing changed, nothing audited");
    let events = s.store.events(&EventFilter::default()).await.unwrap();
    assert_eq!(events.len(), 1, "only the resend's event");
    s.store.close().await;
}

on_both!(
    a_failed_delivery_is_queued_again_and_reopens_when_it_fails_again,
    a_failed_delivery_is_queued_again_and_reopens_when_it_fails_again_sqlite,
    a_failed_delivery_is_queued_again_and_reopens_when_it_fails_again_postgres
);

async fn a_failed_delivery_is_queued_again_and_reopens_when_it_fails_again(db: &TestDb) {
    let s = setup(db).await;
    s.connector.fix();
    s.send("D1;COI-3").await;
    let now = Utc::now() + chrono::Duration::seconds(1);
    let item = s.store.pending(SINK, 10, now).await.unwrap().remove(0);
    let id = s
        .store
        .dead_letter_delivery(
            item.id,
            4,
            ErrorClass::Permanent,
            "unroutable",
            "NO_ROUTE".into(),
        )
        .await
        .unwrap();
    let d = s
        .store
        .dead_letter_detail(id)
        .await
        .unwrap()
        .unwrap()
        .dead_letter;
    assert_eq!(
        (
            d.stage.as_str(),
            d.code.as_str(),
            d.outbox_id,
            d.coi.as_deref()
        ),
        ("deliver", "unroutable", Some(item.id), Some("COI-3"))
    );
    assert_eq!(d.routing_key.as_deref(), Some("car-t.temperature.reading"));
    assert!(s.store.pending(SINK, 10, now).await.unwrap().is_empty());
    // Drain a wake-up left by the intake.
    let _ = woken(&s).await;

    let out = s
        .hub
        .replay_dead_letters(
            DeadLetterSelection::OpenWithCode("unroutable".into()),
            ACTOR,
        )
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
    assert!(out[0].outcome.is_success(), "{out:?}");
    assert!(woken(&s).await);
    let again = s.store.pending(SINK, 10, Utc::now()).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].id, again[0].attempts),
        (item.id, 0),
        "due now, attempts reset"
    );

    // Fails again: the same dead letter reopens, its chain goes on.
    let reopened = s
        .store
        .dead_letter_delivery(
            item.id,
            2,
            ErrorClass::Transient,
            "delivery_failed",
            "EIO".into(),
        )
        .await
        .unwrap();
    assert_eq!(reopened, id);
    let detail = s.store.dead_letter_detail(id).await.unwrap().unwrap();
    let d = &detail.dead_letter;
    assert_eq!(d.status, DeadLetterStatus::Open);
    assert_eq!(
        (d.code.as_str(), d.reason.as_str(), d.attempts),
        ("delivery_failed", "EIO", 6)
    );
    assert_eq!(
        d.replayed_by.as_deref(),
        Some(ACTOR),
        "the last replay stays on record"
    );
    let chain: Vec<&str> = detail.history.iter().map(|h| h.action.as_str()).collect();
    assert_eq!(chain, ["dead_lettered", "replayed", "dead_lettered"]);
    assert_eq!(s.store.counts().await.unwrap().dead_letters, 1);
    assert!(s.store.verify_audit().await.unwrap().is_ok());
    s.store.close().await;
}

on_both!(
    a_delivery_to_a_sink_this_hub_does_not_run_is_refused,
    a_delivery_to_a_sink_this_hub_does_not_run_is_refused_sqlite,
    a_delivery_to_a_sink_this_hub_does_not_run_is_refused_postgres
);

async fn a_delivery_to_a_sink_this_hub_does_not_run_is_refused(db: &TestDb) {
    let s = setup_with(db, true).await;
    s.connector.fix();
    s.send("G1;COI-3").await;
    let now = Utc::now() + chrono::Duration::seconds(1);
    let item = s.store.pending(GONE_SINK, 10, now).await.unwrap().remove(0);
    let id = s
        .store
        .dead_letter_delivery(
            item.id,
            1,
            ErrorClass::Permanent,
            "delivery_failed",
            "x".into(),
        )
        .await
        .unwrap();
    let out = replay_one(&s, id).await;
    assert!(
        matches!(&out, DlqOutcome::Refused { reason } if reason.contains("not configured")),
        "{out:?}"
    );
    assert!(s
        .store
        .pending(GONE_SINK, 10, now)
        .await
        .unwrap()
        .is_empty());
    s.store.close().await;
}

fn broker_dead(message_id: Option<String>, routing_key: &str) -> BrokerDeadLetter {
    BrokerDeadLetter {
        body: br#"{"schema":"cgt.event/v1"}"#.to_vec(),
        message_id,
        kind: Some("temperature.reading".into()),
        routing_key: routing_key.into(),
        coi: None,
        product: Some("car-t".into()),
        partner: None,
        reason: "rejected".into(),
        queue: Some("q.temps".into()),
        death_count: 1,
        first_death_at: Some(Utc::now()),
    }
}

on_both!(
    a_broker_dead_letter_of_our_event_is_published_again_through_its_route,
    a_broker_dead_letter_of_our_event_is_published_again_through_its_route_sqlite,
    a_broker_dead_letter_of_our_event_is_published_again_through_its_route_postgres
);

async fn a_broker_dead_letter_of_our_event_is_published_again_through_its_route(db: &TestDb) {
    let s = setup(db).await;
    s.connector.fix();
    s.send("B1;COI-5").await;
    let now = Utc::now() + chrono::Duration::seconds(1);
    let item = s.store.pending(SINK, 10, now).await.unwrap().remove(0);
    s.store.delivered(vec![item.id]).await.unwrap();

    let id = s
        .store
        .dead_from_broker(broker_dead(Some(item.event_id.clone()), &item.routing_key))
        .await
        .unwrap();
    let d = s.store.dead_letter_detail(id).await.unwrap().unwrap();
    assert_eq!(
        (d.dead_letter.stage.as_str(), d.dead_letter.code.as_str()),
        ("consume", "rejected")
    );
    assert_eq!(
        d.dead_letter.event_id.as_deref(),
        Some(item.event_id.as_str())
    );
    assert_eq!(
        d.dead_letter.coi.as_deref(),
        Some("COI-5"),
        "from the event"
    );
    assert_eq!(d.dead_letter.partner, "ACME", "from the event's message");
    assert_eq!(d.message.connector, "amqp");
    assert_eq!(d.message.status, MessageStatus::Dead);

    let _ = woken(&s).await;
    let out = replay_one(&s, id).await;
    assert!(out.is_success(), "{out:?}");
    assert!(woken(&s).await);
    let again = s.store.pending(SINK, 10, Utc::now()).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].id, item.id, "a new outbox row");
    assert_eq!(
        (
            again[0].event_id.as_str(),
            again[0].route.as_str(),
            again[0].routing_key.as_str()
        ),
        (item.event_id.as_str(), ROUTE, item.routing_key.as_str())
    );

    // A dead message that names none of our events cannot be published again.
    let stranger = s
        .store
        .dead_from_broker(broker_dead(Some("not-ours".into()), "x.y"))
        .await
        .unwrap();
    let out = replay_one(&s, stranger).await;
    assert!(
        matches!(&out, DlqOutcome::Refused { reason } if reason.contains("none of our events")),
        "{out:?}"
    );
    assert!(s.store.verify_audit().await.unwrap().is_ok());
    s.store.close().await;
}

on_both!(
    replay_of_all_open_ones_with_a_code_and_of_unknown_ids,
    replay_of_all_open_ones_with_a_code_and_of_unknown_ids_sqlite,
    replay_of_all_open_ones_with_a_code_and_of_unknown_ids_postgres
);

async fn replay_of_all_open_ones_with_a_code_and_of_unknown_ids(db: &TestDb) {
    let s = setup(db).await;
    let mut rows = Vec::new();
    for n in 0..5 {
        rows.push(s.send(&format!("A{n};COI-{n}")).await.message_row);
    }
    s.connector.fix();
    let out = s
        .hub
        .replay_dead_letters(
            DeadLetterSelection::OpenWithCode("required_field_missing".into()),
            ACTOR,
        )
        .await
        .unwrap();
    assert_eq!(out.len(), 5);
    assert!(out.iter().all(|r| r.outcome.is_success()), "{out:?}");
    assert!(out.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    assert_eq!(
        s.store.events(&EventFilter::default()).await.unwrap().len(),
        5
    );

    let out = s
        .hub
        .replay_dead_letters(ids(&[9999]), ACTOR)
        .await
        .unwrap();
    assert_eq!(out[0].outcome, DlqOutcome::NotFound);
    assert!(s.hub.replay_dead_letters(ids(&[]), ACTOR).await.is_err());
    assert!(
        s.hub.replay_dead_letters(ids(&[1]), " ").await.is_err(),
        "an actor is required"
    );
    assert!(s.store.verify_audit().await.unwrap().is_ok());
    s.store.close().await;
}
