//! The COI check at intake, through the hub, on SQLite and PostgreSQL: an
//! accepted COI is stored and routed in canonical form; a malformed one
//! fails the whole message (nothing stored or queued for a sink) with a dead
//! letter `invalid_coi` of stage `identity` whose reason names the rule
//! broken; a replayed message is checked the same way.

mod dead_letters_support;
mod store_fixtures;

use chrono::Utc;
use dead_letters_support::*;
use hub_core::coi_check::INVALID_COI;
use hub_core::dead_letters::DeadLetterSelection;
use hub_core::error::ErrorClass;
use hub_core::store::{DlqOutcome, EventFilter, MessageStatus};
use hub_core::Outcome;
use store_fixtures::{on_both, TestDb};

async fn queued(s: &Setup) -> Vec<Option<String>> {
    s.store
        .pending(SINK, 100, Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.coi)
        .collect()
}

on_both!(
    cois_are_normalised_or_the_message_fails,
    cois_are_normalised_or_the_message_fails_sqlite,
    cois_are_normalised_or_the_message_fails_postgres
);

async fn cois_are_normalised_or_the_message_fails(db: &TestDb) {
    let s = setup(db).await;
    s.connector.fix();

    // ISBT 128 with its data identifier: carried without it.
    let ok = s.send("C1; &/CHW000126000001").await;
    assert_eq!(ok.outcome, Outcome::Accepted { events: 1 });
    let stored = s
        .store
        .events(&EventFilter {
            coi: Some("CHW000126000001".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].body.contains(r#""coi":"CHW000126000001""#));
    // The product's own format, for that product's events.
    let own = s.send("C2;COI-7").await;
    assert_eq!(own.outcome, Outcome::Accepted { events: 1 });
    assert_eq!(
        queued(&s).await,
        [Some("CHW000126000001".into()), Some("COI-7".into())]
    );

    // 14 characters of data content: failed, kept, nothing routed.
    let bad = s.send("C3;&/CHW00012600000").await;
    let Outcome::Failed(reason) = &bad.outcome else {
        panic!("{bad:?}");
    };
    assert!(
        reason.starts_with(
            "COI is not an ISBT 128 Chain of Identity Identifier: data content has 14 characters"
        ),
        "{reason}"
    );
    let msg = s.store.message(bad.message_row).await.unwrap().unwrap();
    assert_eq!(msg.status, MessageStatus::Dead);
    assert_eq!(msg.error_code.as_deref(), Some(INVALID_COI));
    assert!(msg.events.is_empty());
    // Lowercase is outside the product's pattern (and ISBT 128's).
    let lower = s.send("C4;coi-7").await;
    let Outcome::Failed(reason) = &lower.outcome else {
        panic!("{lower:?}");
    };
    assert!(reason.contains("COI format of product car-t"), "{reason}");
    assert_eq!(queued(&s).await.len(), 2, "nothing more for the sink");

    let dead = s
        .store
        .list_dead_letters(&Default::default())
        .await
        .unwrap();
    assert_eq!(dead.len(), 2);
    for d in &dead {
        assert_eq!(
            (d.stage.as_str(), d.code.as_str(), d.class),
            ("identity", INVALID_COI, ErrorClass::Permanent)
        );
    }

    // A message that failed mapping is checked too when processed again.
    s.connector.brake();
    let mapped_later = s.send("C5;CH").await;
    assert!(matches!(mapped_later.outcome, Outcome::Failed(_)));
    let id = s.dead_letter_of(mapped_later.message_row).await;
    s.connector.fix();
    let r = s
        .hub
        .replay_dead_letters(DeadLetterSelection::Ids(vec![id]), "alice@ops-1")
        .await
        .unwrap();
    assert!(
        matches!(&r[0].outcome, DlqOutcome::Failed { code, reason }
            if code == INVALID_COI && reason.contains("data content has 2 characters")),
        "{:?}",
        r[0].outcome
    );
    // An identity dead letter is replayed by processing its message again
    // (after an operator added a product's format, say), not refused for
    // its stage: still malformed here, so it fails the same way.
    let r = s
        .hub
        .replay_dead_letters(DeadLetterSelection::Ids(vec![dead[0].id]), "alice@ops-1")
        .await
        .unwrap();
    assert!(
        matches!(&r[0].outcome, DlqOutcome::Failed { code, .. } if code == INVALID_COI),
        "{:?}",
        r[0].outcome
    );
    assert_eq!(queued(&s).await.len(), 2);
}
