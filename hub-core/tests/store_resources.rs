//! Resources a message writes (a FHIR create or update) are kept with it,
//! in the same commit, on SQLite and PostgreSQL: found by type and id, by
//! identifier, by the message; replaced by a later write; never kept for a
//! message that failed.

mod store_fixtures;

use hub_core::error::Stage;
use hub_core::store::{IntakeOutcome, IntakeRecord, PreparedEvent, Store};
use hub_core::{Outcome, Problem, ResourceWrite};
use store_fixtures::*;

fn order(id: &str, status: &str) -> ResourceWrite {
    ResourceWrite {
        resource_type: "ServiceRequest".into(),
        id: id.into(),
        identifiers: vec![("urn:oid:1.2.3.4".into(), "ORD-1001".into())],
        body: format!(r#"{{"resourceType":"ServiceRequest","id":"{id}","status":"{status}"}}"#),
    }
}

on_both!(
    resources_are_kept_with_their_message,
    resources_are_kept_with_their_message_sqlite,
    resources_are_kept_with_their_message_postgres
);

async fn resources_are_kept_with_their_message(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
    let mut first = inbound("EHR_A", Some("B-1"), "{}");
    first.resources.push(order("sr-1", "active"));
    let ev = event("COI-1");
    let r1 = store
        .intake(IntakeRecord {
            inbound: first,
            outcome: IntakeOutcome::Events(vec![PreparedEvent::new(&ev, vec![dest("jsonl")])]),
        })
        .await
        .unwrap();
    assert_eq!(r1.outcome, Outcome::Accepted { events: 1 });

    let kept = store
        .resource("ServiceRequest", "sr-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.version, r1.message_row);
    assert!(kept.body.contains(r#""status":"active""#));
    let found = store
        .resource_by_identifier("ServiceRequest", "urn:oid:1.2.3.4", "ORD-1001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, "sr-1");
    assert!(store
        .resource_by_identifier("ServiceRequest", "", "ORD-1001")
        .await
        .unwrap()
        .is_none());
    assert!(store.resource("Patient", "sr-1").await.unwrap().is_none());

    // An update replaces it: a new version, the message that wrote it.
    let mut second = inbound("EHR_A", Some("B-2"), "{}");
    second.resources.push(order("sr-1", "revoked"));
    let r2 = store
        .intake(IntakeRecord {
            inbound: second,
            outcome: IntakeOutcome::Events(Vec::new()),
        })
        .await
        .unwrap();
    let kept = store
        .resource("ServiceRequest", "sr-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.version, r2.message_row);
    assert!(kept.body.contains("revoked"));
    let of_first = store.resources_of_message(r1.message_row).await.unwrap();
    assert!(of_first.is_empty(), "the row now belongs to the update");
    let of_second = store.resources_of_message(r2.message_row).await.unwrap();
    assert_eq!(of_second.len(), 1);

    // A message that failed keeps nothing.
    let mut failed = inbound("EHR_A", Some("B-3"), "{}");
    failed.resources.push(ResourceWrite {
        id: "sr-2".into(),
        identifiers: vec![("urn:oid:1.2.3.4".into(), "ORD-2002".into())],
        ..order("sr-2", "active")
    });
    let r3 = store
        .intake(IntakeRecord {
            inbound: failed,
            outcome: IntakeOutcome::Failed(Problem::new(Stage::Map, "bad_value", "x")),
        })
        .await
        .unwrap();
    assert!(matches!(r3.outcome, Outcome::Failed(_)));
    assert!(store
        .resource("ServiceRequest", "sr-2")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .resource_by_identifier("ServiceRequest", "urn:oid:1.2.3.4", "ORD-2002")
        .await
        .unwrap()
        .is_none());
}

on_both!(
    two_writes_of_one_resource_in_one_commit,
    two_writes_of_one_resource_in_one_commit_sqlite,
    two_writes_of_one_resource_in_one_commit_postgres
);

/// Two messages of one group commit that write the same resource (and
/// identifier): both are taken and the resource is the later one's
/// (PostgreSQL refuses a statement that updates one row twice).
async fn two_writes_of_one_resource_in_one_commit(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
    let lock = db.hold_write_lock().await;
    let send = |id: &'static str, status: &'static str| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut i = inbound("EHR_A", Some(id), id);
            i.resources.push(order("sr-9", status));
            store
                .intake(IntakeRecord {
                    inbound: i,
                    outcome: IntakeOutcome::Events(Vec::new()),
                })
                .await
                .unwrap()
        })
    };
    let a = send("W-1", "active");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let b = send("W-2", "revoked");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    lock.release().await;
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(a.outcome, Outcome::Accepted { events: 0 });
    assert_eq!(b.outcome, Outcome::Accepted { events: 0 });
    let kept = store
        .resource("ServiceRequest", "sr-9")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.version, a.message_row.max(b.message_row));
    let found = store
        .resource_by_identifier("ServiceRequest", "urn:oid:1.2.3.4", "ORD-1001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, "sr-9");
}
