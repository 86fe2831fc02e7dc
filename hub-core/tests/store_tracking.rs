//! Which shipments a courier poller asks about (`Store::tracking_to_poll`),
//! on SQLite and PostgreSQL: tracking numbers the registry links to a
//! therapy for one carrier, linked since a cutoff, until the hub has taken
//! their delivery.

mod store_fixtures;

use chrono::{Duration, Utc};
use hub_core::event::{Order, ShipmentDelivered, ShipmentStatus};
use hub_core::hub::RegistrySettings;
use hub_core::identity::PhiKeys;
use hub_core::registry::{Claimed, Claims, IdKind, Rules};
use hub_core::routing::Router;
use hub_core::store::{normalise_authority, Store};
use hub_core::{Decoded, EventData, Hub, Metrics, Outcome, TherapyEvent};
use store_fixtures::*;

const COI_A: &str = "CHW000126000001";
const COI_B: &str = "CHW000126000002";

fn hub(store: Store) -> Hub {
    let hub = Hub::new(
        store,
        Router::default(),
        Metrics::default(),
        Vec::<String>::new(),
    );
    hub.set_registry(RegistrySettings {
        rules: Rules::default(),
        keys: PhiKeys::ephemeral(),
        hold_timeout: chrono::Duration::hours(4),
    });
    hub
}

fn tracking(ids: &[(&str, &str)]) -> Claims {
    Claims {
        identifiers: ids
            .iter()
            .map(|(carrier, n)| Claimed::new(IdKind::Tracking, *carrier, *n))
            .collect(),
        name: None,
        birth_date: None,
    }
}

/// An order that registers `coi` and links its tracking numbers.
fn order(coi: &str, ids: &[(&str, &str)]) -> TherapyEvent {
    let mut ev = event(coi);
    ev.data = EventData::OrderPlaced(Order::default());
    ev.order_id = None;
    ev.claims = tracking(ids);
    ev
}

fn scan(coi: &str, number: &str, delivered: bool) -> TherapyEvent {
    let mut ev = event(coi);
    ev.order_id = None;
    ev.data = if delivered {
        EventData::ShipmentDelivered(ShipmentDelivered {
            tracking_number: number.into(),
            carrier: "dhl".into(),
            ..Default::default()
        })
    } else {
        EventData::ShipmentStatus(ShipmentStatus {
            tracking_number: number.into(),
            carrier: "dhl".into(),
            status: "in_transit".into(),
            ..Default::default()
        })
    };
    ev.claims = tracking(&[("dhl", number)]);
    ev
}

async fn send(hub: &Hub, id: &str, ev: TherapyEvent) {
    let r = hub
        .submit(inbound("dhl", Some(id), id), Decoded::Events(vec![ev]))
        .await
        .unwrap();
    assert!(
        matches!(r.outcome, Outcome::Accepted { .. }),
        "{id}: {:?}",
        r.problem
    );
}

on_both!(
    tracking_numbers_to_poll,
    tracking_numbers_to_poll_sqlite,
    tracking_numbers_to_poll_postgres
);

async fn tracking_numbers_to_poll(db: &TestDb) {
    let store = Store::open(db.options()).await.unwrap();
    let hub = hub(store.clone());
    let before = Utc::now() - Duration::minutes(1);
    // Linked as an EHR writes the carrier ("DHL", "D.H.L"), and another
    // carrier's number.
    send(
        &hub,
        "O-A",
        order(COI_A, &[("DHL", "JD0001"), ("UPS", "1Z9")]),
    )
    .await;
    send(&hub, "O-B", order(COI_B, &[("D.H.L", "JD0002")])).await;
    let dhl = normalise_authority("DHL");
    assert_eq!(
        store.tracking_to_poll(&dhl, before).await.unwrap(),
        ["JD0001", "JD0002"]
    );
    assert_eq!(
        store.tracking_to_poll("ups", before).await.unwrap(),
        ["1Z9"]
    );
    assert!(store
        .tracking_to_poll("fedex", before)
        .await
        .unwrap()
        .is_empty());
    // Linked before the cutoff: no longer polled.
    let later = Utc::now() + Duration::minutes(1);
    assert!(store
        .tracking_to_poll(&dhl, later)
        .await
        .unwrap()
        .is_empty());

    // A scan on the way changes nothing; the delivery of JD0001 ends its
    // polling, not JD0002's.
    send(&hub, "S-1", scan(COI_A, "JD0001", false)).await;
    assert_eq!(
        store.tracking_to_poll(&dhl, before).await.unwrap(),
        ["JD0001", "JD0002"]
    );
    send(&hub, "S-2", scan(COI_A, "JD0001", true)).await;
    assert_eq!(
        store.tracking_to_poll(&dhl, before).await.unwrap(),
        ["JD0002"]
    );
    store.close().await;
}
