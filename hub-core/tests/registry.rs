//! The identity registry in the store, on SQLite and PostgreSQL (each body
//! runs on both): messages submitted through the hub's pipeline as a
//! connector would, in one group commit and from two hubs at once; and
//! what the registry keeps of a patient (sealed, never in clear).

mod store_fixtures;

use hub_core::event::{Order, QcResultReported};
use hub_core::hub::RegistrySettings;
use hub_core::identity::PhiKeys;
use hub_core::registry::{Claimed, Claims, IdKind, Rules};
use hub_core::routing::Router;
use hub_core::store::{HoldFilter, Store, IDENTITY_CONFLICT};
use hub_core::{Decoded, EventData, Hub, Metrics, Outcome, Receipt, TherapyEvent};
use store_fixtures::*;

const COI_A: &str = "CHW000126000001";
const COI_B: &str = "CHW000126000002";

fn hub(store: Store, keys: PhiKeys) -> Hub {
    let hub = Hub::new(
        store,
        Router::default(),
        Metrics::default(),
        Vec::<String>::new(),
    );
    hub.set_registry(RegistrySettings {
        rules: Rules::default(),
        keys,
        hold_timeout: chrono::Duration::hours(4),
    });
    hub
}

fn claims(ids: &[(IdKind, &str, &str)], name: Option<&str>, dob: Option<&str>) -> Claims {
    Claims {
        identifiers: ids
            .iter()
            .map(|(k, a, v)| Claimed::new(*k, *a, *v))
            .collect(),
        name: name.map(str::to_string),
        birth_date: dob.map(str::to_string),
    }
}

fn order(coi: &str, specimen: &str, mrn: &str) -> TherapyEvent {
    let mut ev = event(coi);
    ev.data = EventData::OrderPlaced(Order::default());
    ev.order_id = None;
    ev.claims = claims(
        &[
            (IdKind::Specimen, "LAB", specimen),
            (IdKind::Mrn, "HOSP", mrn),
        ],
        Some("SMITH^JANE"),
        Some("19850317"),
    );
    ev
}

fn result(specimen: &str) -> TherapyEvent {
    let mut ev = event("unused");
    ev.coi = None;
    ev.order_id = None;
    ev.data = EventData::QcResultReported(QcResultReported::default());
    ev.claims = claims(&[(IdKind::Specimen, "LAB", specimen)], None, None);
    ev
}

async fn send(hub: &Hub, id: &str, ev: TherapyEvent) -> Receipt {
    hub.submit(inbound("LAB", Some(id), id), Decoded::Events(vec![ev]))
        .await
        .unwrap()
}

on_both!(
    two_orders_in_one_commit_cannot_link_one_specimen_to_two_patients,
    two_orders_in_one_commit_cannot_link_one_specimen_to_two_patients_sqlite,
    two_orders_in_one_commit_cannot_link_one_specimen_to_two_patients_postgres
);

async fn two_orders_in_one_commit_cannot_link_one_specimen_to_two_patients(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
    let hub = hub(store.clone(), PhiKeys::ephemeral());
    // Hold the write lock so both land in the same group commit.
    let lock = db.hold_write_lock().await;
    let a = tokio::spawn({
        let hub = hub.clone();
        async move { send(&hub, "O-A", order(COI_A, "S-1", "M-A")).await }
    });
    let b = tokio::spawn({
        let hub = hub.clone();
        async move { send(&hub, "O-B", order(COI_B, "S-1", "M-B")).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    lock.release().await;
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let outcomes = [&a.outcome, &b.outcome];
    let accepted = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Accepted { .. }))
        .count();
    assert_eq!(accepted, 1, "exactly one order links S-1: {outcomes:?}");
    let failed = if matches!(a.outcome, Outcome::Failed(_)) {
        &a
    } else {
        &b
    };
    let p = failed.problem.as_ref().expect("the conflict's problem");
    assert_eq!(p.code, IDENTITY_CONFLICT);
    assert!(p.reason.contains("specimen S-1 (LAB)"), "{}", p.reason);

    // A result for S-1 goes to the order that won, never the other.
    let winner = if matches!(a.outcome, Outcome::Accepted { .. }) {
        COI_A
    } else {
        COI_B
    };
    let r = send(&hub, "R-1", result("S-1")).await;
    assert_eq!(r.outcome, Outcome::Accepted { events: 1 });
    let evs = store
        .events(&hub_core::store::EventFilter {
            kind: Some("qc.result_reported".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].coi.as_deref(), Some(winner));
    store.close().await;
}

on_both!(
    a_result_before_its_order_in_one_commit_is_held_then_released,
    a_result_before_its_order_in_one_commit_is_held_then_released_sqlite,
    a_result_before_its_order_in_one_commit_is_held_then_released_postgres
);

async fn a_result_before_its_order_in_one_commit_is_held_then_released(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
    let hub = hub(store.clone(), PhiKeys::ephemeral());
    let lock = db.hold_write_lock().await;
    let r = tokio::spawn({
        let hub = hub.clone();
        async move { send(&hub, "R-1", result("S-9")).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let o = tokio::spawn({
        let hub = hub.clone();
        async move { send(&hub, "O-1", order(COI_A, "S-9", "M-A")).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    lock.release().await;
    let (r, o) = (r.await.unwrap(), o.await.unwrap());
    assert_eq!(
        (r.held, o.held),
        (1, 0),
        "the result waited, the order went on"
    );
    let held = store.holds(&HoldFilter::default()).await.unwrap();
    assert!(held.is_empty(), "released in the same commit: {held:?}");
    let released = store
        .holds(&HoldFilter {
            state: Some("released".into()),
            ..HoldFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].message_id.as_deref(), Some("R-1"));
    let j = store.journey(COI_A).await.unwrap().expect("registered");
    let kinds: Vec<&str> = j.events.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"qc.result_reported"), "{kinds:?}");
    let msg = store.message(r.message_row).await.unwrap().unwrap();
    assert_eq!(msg.status.as_str(), "routed", "its last held event went on");
    store.close().await;
}

on_both!(
    patient_data_is_sealed_and_the_mrn_is_only_a_keyed_hash,
    patient_data_is_sealed_and_the_mrn_is_only_a_keyed_hash_sqlite,
    patient_data_is_sealed_and_the_mrn_is_only_a_keyed_hash_postgres
);

async fn patient_data_is_sealed_and_the_mrn_is_only_a_keyed_hash(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
    let keys = PhiKeys::ephemeral();
    let hub = hub(store.clone(), keys.clone());
    let r = send(&hub, "O-1", order(COI_A, "S-1", "MRN-12345")).await;
    assert_eq!(r.outcome, Outcome::Accepted { events: 1 });
    let mut raw = db.raw().await;
    let (name, dob, mrn): (String, String, String) = raw
        .fetch_one("SELECT name_sealed, birth_date_sealed, mrn_sealed FROM therapies")
        .await;
    for sealed in [&name, &dob, &mrn] {
        assert!(sealed.starts_with("v1:ephemeral:"), "{sealed}");
        assert!(!sealed.contains("SMITH") && !sealed.contains("MRN-12345"));
    }
    assert_eq!(keys.open(&name, COI_A.as_bytes()).unwrap(), "SMITH|JANE");
    assert_eq!(keys.open(&dob, COI_A.as_bytes()).unwrap(), "1985-03-17");
    assert_eq!(keys.open(&mrn, COI_A.as_bytes()).unwrap(), "HOSP|MRN-12345");
    assert!(
        keys.open(&name, COI_B.as_bytes()).is_err(),
        "bound to its COI: copied to another record it does not open"
    );
    let (n,): (i64,) = raw
        .fetch_one("SELECT COUNT(*) FROM identifiers WHERE value LIKE '%MRN-12345%' OR key LIKE '%MRN-12345%'")
        .await;
    assert_eq!(n, 0, "no MRN in clear in the crosswalk");
    raw.close().await;
    // The same MRN from another message still resolves (by its hash).
    let mut ev = result("S-unknown");
    ev.claims
        .identifiers
        .push(Claimed::new(IdKind::Mrn, "HOSP", "MRN-12345"));
    let r = send(&hub, "R-1", ev).await;
    assert_eq!((r.outcome, r.held), (Outcome::Accepted { events: 1 }, 0));
    store.close().await;
}

/// Two hubs on one PostgreSQL race to link the same specimens to different
/// patients: for every specimen exactly one order wins, whichever hub took
/// it; the loser's transaction conflicts, runs again and sees the link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_on_one_postgres_never_link_one_specimen_twice_postgres() {
    let db = TestDb::postgres().await;
    let keys = PhiKeys::ephemeral();
    let lease = std::time::Duration::from_secs(60);
    let a = hub(
        Store::open(db.instance("a", lease)).await.unwrap(),
        keys.clone(),
    );
    let b = hub(Store::open(db.instance("b", lease)).await.unwrap(), keys);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let specimen = format!("S-{i}");
        for (h, coi, tag) in [
            (&a, format!("CHW0001260{i:05}"), "A"),
            (&b, format!("CHW0001261{i:05}"), "B"),
        ] {
            let (h, specimen) = (h.clone(), specimen.clone());
            tasks.push(tokio::spawn(async move {
                let id = format!("O-{tag}-{specimen}");
                let r = send(
                    &h,
                    &id,
                    order(&coi, &specimen, &format!("M-{tag}-{specimen}")),
                )
                .await;
                (specimen, r)
            }));
        }
    }
    let mut won = std::collections::BTreeMap::<String, usize>::new();
    for t in tasks {
        let (specimen, r) = t.await.unwrap();
        match r.outcome {
            Outcome::Accepted { .. } => *won.entry(specimen).or_default() += 1,
            Outcome::Failed(_) => {
                assert_eq!(r.problem.as_ref().map(|p| p.code), Some(IDENTITY_CONFLICT));
                won.entry(specimen).or_default();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won.len(), 40);
    assert!(
        won.values().all(|&n| n == 1),
        "one winner per specimen: {won:?}"
    );
    let mut raw = db.raw().await;
    let (n,): (i64,) = raw
        .fetch_one("SELECT COUNT(*) FROM identifiers WHERE kind = 'specimen'")
        .await;
    assert_eq!(n, 40);
    raw.close().await;
}

on_both!(
    under_route_an_unregistered_coi_goes_on_linked_to_nothing,
    under_route_an_unregistered_coi_goes_on_linked_to_nothing_sqlite,
    under_route_an_unregistered_coi_goes_on_linked_to_nothing_postgres
);

async fn under_route_an_unregistered_coi_goes_on_linked_to_nothing(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
    let hub = Hub::new(
        store.clone(),
        Router::default(),
        Metrics::default(),
        Vec::<String>::new(),
    );
    hub.set_registry(RegistrySettings {
        rules: Rules {
            on_unknown: hub_core::registry::OnUnknown::Route,
            ..Rules::default()
        },
        keys: PhiKeys::ephemeral(),
        hold_timeout: chrono::Duration::hours(4),
    });
    let mut ev = result("S-1");
    ev.coi = Some(COI_A.into());
    let r = send(&hub, "R-1", ev).await;
    assert_eq!((r.outcome, r.held), (Outcome::Accepted { events: 1 }, 0));
    // The store still takes messages: the writer is alive.
    let r = send(&hub, "R-2", result("S-2")).await;
    assert_eq!((r.outcome, r.held), (Outcome::Accepted { events: 1 }, 0));
    assert!(
        store.journey(COI_A).await.unwrap().is_none(),
        "no therapy made"
    );
    let mut raw = db.raw().await;
    let (n,): (i64,) = raw.fetch_one("SELECT COUNT(*) FROM identifiers").await;
    assert_eq!(n, 0, "linked to nothing");
    raw.close().await;
    store.close().await;
}

on_both!(
    a_coi_the_registry_fills_in_is_in_the_body_and_the_routing_key,
    a_coi_the_registry_fills_in_is_in_the_body_and_the_routing_key_sqlite,
    a_coi_the_registry_fills_in_is_in_the_body_and_the_routing_key_postgres
);

/// A result naming only its specimen gets the order's COI: in the stored
/// body (spliced in), and in a routing key that names the COI (routed again).
async fn a_coi_the_registry_fills_in_is_in_the_body_and_the_routing_key(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    for (file, key) in [("by_coi.toml", "{coi}.{kind}"), ("by_kind.toml", "{kind}")] {
        let sink = file.trim_end_matches(".toml");
        std::fs::write(
            dir.path().join(file),
            format!("[[route]]\nname = \"{sink}\"\nkinds = [\"*\"]\nsink = \"{sink}\"\nrouting_key = \"{key}\"\n"),
        )
        .unwrap();
    }
    let sinks = ["by_coi".to_string(), "by_kind".to_string()]
        .into_iter()
        .collect();
    let store = Store::open(db.options()).await.unwrap();
    let (sink, router) = ("by_coi", Router::load_dir(dir.path(), &sinks).unwrap());
    {
        let hub = Hub::new(
            store.clone(),
            router,
            Metrics::default(),
            Vec::<String>::new(),
        );
        hub.set_registry(RegistrySettings {
            rules: Rules::default(),
            keys: PhiKeys::ephemeral(),
            hold_timeout: chrono::Duration::hours(4),
        });
        send(&hub, "O-1", order(COI_A, "S-1", "M-A")).await;
        let r = send(&hub, "R-1", result("S-1")).await;
        assert_eq!((r.outcome, r.held), (Outcome::Accepted { events: 1 }, 0));
        let now = chrono::Utc::now() + chrono::Duration::seconds(1);
        let due = store.pending(sink, 10, now).await.unwrap();
        let res = due
            .iter()
            .find(|i| i.kind == "qc.result_reported")
            .expect("the result");
        assert_eq!(res.routing_key, format!("{COI_A}.qc.result_reported"));
        let body: serde_json::Value = serde_json::from_str(&res.body).unwrap();
        assert_eq!(body["coi"], COI_A);
        // The other route's key does not name the COI; the body is the same.
        let other = store.pending("by_kind", 10, now).await.unwrap();
        let res2 = other
            .iter()
            .find(|i| i.kind == "qc.result_reported")
            .unwrap();
        assert_eq!(res2.routing_key, "qc.result_reported");
        assert_eq!(res2.body, res.body);
    }
    store.close().await;
}

on_both!(
    the_first_index_key_is_the_stores_and_a_different_one_is_told,
    the_first_index_key_is_the_stores_and_a_different_one_is_told_sqlite,
    the_first_index_key_is_the_stores_and_a_different_one_is_told_postgres
);

async fn the_first_index_key_is_the_stores_and_a_different_one_is_told(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
    let (a, b) = (PhiKeys::ephemeral(), PhiKeys::ephemeral());
    assert_ne!(a.index_fingerprint(), b.index_fingerprint());
    let fa = a.index_fingerprint();
    assert_eq!(store.index_key(&fa).await.unwrap(), fa, "recorded");
    assert_eq!(store.index_key(&fa).await.unwrap(), fa, "the same again");
    assert_eq!(
        store.index_key(&b.index_fingerprint()).await.unwrap(),
        fa,
        "another key gets the recorded one back"
    );
    store.close().await;
}

/// Two hubs on one PostgreSQL: results held on one while their orders link
/// the specimens on the other, at the same moment. No result may be left
/// waiting for a link that has already come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_on_one_hub_releases_a_hold_being_made_on_another_postgres() {
    let db = TestDb::postgres().await;
    let keys = PhiKeys::ephemeral();
    let lease = std::time::Duration::from_secs(60);
    let store_a = Store::open(db.instance("a", lease)).await.unwrap();
    let a = hub(store_a.clone(), keys.clone());
    let b = hub(Store::open(db.instance("b", lease)).await.unwrap(), keys);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let specimen = format!("S-{i}");
        let (a, b, s2) = (a.clone(), b.clone(), specimen.clone());
        tasks.push(tokio::spawn(async move {
            send(&a, &format!("R-{s2}"), result(&s2)).await;
        }));
        tasks.push(tokio::spawn(async move {
            let coi = format!("CHW0001262{i:05}");
            send(
                &b,
                &format!("O-{specimen}"),
                order(&coi, &specimen, &format!("M-{i}")),
            )
            .await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let held = store_a.holds(&HoldFilter::default()).await.unwrap();
    let waiting: Vec<_> = held
        .iter()
        .filter_map(|h| h.message_id.as_deref())
        .collect();
    assert!(
        held.is_empty(),
        "{} result(s) left waiting: {waiting:?}",
        held.len()
    );
    let results = store_a
        .events(&hub_core::store::EventFilter {
            kind: Some("qc.result_reported".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(results.len(), 60, "every result routed");
    assert!(results.iter().all(|e| e.coi.is_some()), "each with its COI");
}

async fn held(store: &Store, state: &str) -> Vec<hub_core::store::HoldInfo> {
    store
        .holds(&HoldFilter {
            state: Some(state.into()),
            ..HoldFilter::default()
        })
        .await
        .unwrap()
}

async fn results(store: &Store) -> Vec<hub_core::store::StoredEvent> {
    store
        .events(&hub_core::store::EventFilter {
            kind: Some("qc.result_reported".into()),
            ..Default::default()
        })
        .await
        .unwrap()
}

on_both!(
    a_release_checks_the_demographics_the_held_event_stated,
    a_release_checks_the_demographics_the_held_event_stated_sqlite,
    a_release_checks_the_demographics_the_held_event_stated_postgres
);

/// A result held before its order is judged again on release, demographics
/// included: another patient's name and birth date quarantine it.
async fn a_release_checks_the_demographics_the_held_event_stated(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
    let hub = hub(store.clone(), PhiKeys::ephemeral());
    let mut ev = result("S-9");
    ev.claims.name = Some("DOE^JOHN".into());
    ev.claims.birth_date = Some("19600101".into());
    let r = send(&hub, "R-1", ev).await;
    assert_eq!(r.held, 1);
    // The order is SMITH^JANE's (see `order`).
    send(&hub, "O-1", order(COI_A, "S-9", "M-A")).await;
    assert!(
        results(&store).await.is_empty(),
        "never routed under her COI"
    );
    let q = held(&store, "quarantined").await;
    assert_eq!(q.len(), 1, "quarantined on release");
    assert!(
        q[0].resolution
            .as_deref()
            .unwrap_or_default()
            .contains("name"),
        "{q:?}"
    );
    // Not left 'held' with nothing held: dead, with a dead letter to act on.
    let msg = store.message(q[0].message_row).await.unwrap().unwrap();
    assert_eq!(msg.status.as_str(), "dead");
    let dead = store.dead_letters(10).await.unwrap();
    assert!(
        dead.iter()
            .any(|d| d.code == IDENTITY_CONFLICT && d.message_row == q[0].message_row),
        "{dead:?}"
    );
    store.close().await;
}

on_both!(
    a_result_naming_only_its_coi_is_released_by_its_order,
    a_result_naming_only_its_coi_is_released_by_its_order_sqlite,
    a_result_naming_only_its_coi_is_released_by_its_order_postgres
);

async fn a_result_naming_only_its_coi_is_released_by_its_order(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
    let hub = hub(store.clone(), PhiKeys::ephemeral());
    let mut ev = result("unused");
    ev.claims.identifiers.clear();
    ev.coi = Some(COI_A.into());
    assert_eq!(send(&hub, "R-1", ev).await.held, 1, "no order for it yet");
    send(&hub, "O-1", order(COI_A, "S-1", "M-A")).await;
    let routed = results(&store).await;
    assert_eq!(routed.len(), 1, "released by its order");
    assert_eq!(routed[0].coi.as_deref(), Some(COI_A));
    store.close().await;
}

on_both!(
    a_rejected_hold_is_not_released_by_a_later_link,
    a_rejected_hold_is_not_released_by_a_later_link_sqlite,
    a_rejected_hold_is_not_released_by_a_later_link_postgres
);

async fn a_rejected_hold_is_not_released_by_a_later_link(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
    let hub = hub(store.clone(), PhiKeys::ephemeral());
    send(&hub, "R-1", result("S-5")).await;
    let h = held(&store, "held").await;
    assert_eq!(h.len(), 1);
    let done = hub.reject_hold(h[0].id, "qa-1", "wrong lab").await.unwrap();
    assert_eq!(done, hub_core::store::HoldAction::Rejected);
    send(&hub, "O-1", order(COI_A, "S-5", "M-A")).await;
    assert!(
        results(&store).await.is_empty(),
        "a rejected event never goes on"
    );
    assert_eq!(held(&store, "rejected").await.len(), 1);
    let again = hub
        .release_hold(h[0].id, "qa-1", "changed my mind")
        .await
        .unwrap();
    assert!(
        matches!(again, hub_core::store::HoldAction::Refused { .. }),
        "{again:?}"
    );
    store.close().await;
}
