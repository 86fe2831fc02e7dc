use super::*;
use crate::event::ManufacturingStepCompleted;

const REMAINING_24: &str = "viability:W1234 26 000001:remaining:24h";
const REMAINING_12: &str = "viability:W1234 26 000001:remaining:12h";
const REMAINING_4: &str = "viability:W1234 26 000001:remaining:4h";
const EXPIRED: &str = "viability:W1234 26 000001:expired";

#[test]
fn each_threshold_is_raised_once_across_repeated_ticks() {
    let mut m = monitor();
    let collected = collection(COI, t0());
    assert!(m.observe(&collected).is_empty());
    assert_eq!(m.next_deadline(), Some(hours(48)));
    assert!(m.tick(hours(47)).is_empty());

    let out = m.tick(hours(48));
    assert_eq!(keys(&out), [REMAINING_24]);
    let a = alert(&out[0]);
    assert_eq!(a.alert, "viability_threshold");
    assert_eq!(a.severity, "warning");
    assert_eq!(a.deadline, Some(hours(72)));
    assert_eq!(a.related_event_id, Some(collected.event_id.to_string()));
    assert_eq!(
        a.message,
        "24 h left of the viability window of COI W1234 26 000001: deadline \
         2026-11-24T08:00:00Z (72 h window of profile fresh_apheresis from collection at \
         2026-11-21T08:00:00Z), material not yet received"
    );
    assert_eq!(out[0].occurred_at, hours(48));
    assert_eq!(out[0].coi.as_deref(), Some(COI));
    assert_eq!(out[0].product.as_deref(), Some("CART-1"));

    assert!(m.tick(hours(48)).is_empty(), "the same tick again");
    assert!(m.tick(hours(50)).is_empty());
    assert_eq!(m.next_deadline(), Some(hours(60)));
    assert_eq!(keys(&m.tick(hours(61))), [REMAINING_12]);
    let out = m.tick(hours(69));
    assert_eq!(keys(&out), [REMAINING_4]);
    assert_eq!(alert(&out[0]).severity, "high", "the last threshold");
    assert_eq!(out[0].occurred_at, hours(68));
    let out = m.tick(hours(72));
    assert_eq!(keys(&out), [EXPIRED]);
    assert_eq!(alert(&out[0]).alert, "viability_expired");
    assert_eq!(alert(&out[0]).severity, "critical");
    assert_eq!(out[0].occurred_at, hours(72));
    assert_eq!(m.next_deadline(), None);
    assert!(m.tick(hours(100)).is_empty());
    assert!(m.observe(&collected).is_empty(), "a repeated collection");
    assert!(m.tick(hours(100)).is_empty());
}

#[test]
fn a_late_collection_raises_every_threshold_passed_at_the_next_tick() {
    let mut m = monitor();
    m.observe(&collection(COI, t0()));
    assert_eq!(m.next_deadline(), Some(hours(48)), "already past: tick now");
    let out = m.tick(hours(70));
    assert_eq!(keys(&out), [REMAINING_24, REMAINING_12, REMAINING_4]);
    let at: Vec<_> = out.iter().map(|r| r.occurred_at).collect();
    assert_eq!(at, [hours(48), hours(60), hours(68)]);
    assert_eq!(keys(&m.tick(hours(73))), [EXPIRED]);
}

#[test]
fn the_earliest_collection_counts() {
    let mut m = monitor();
    m.observe(&collection(COI, hours(2)));
    m.observe(&collection(COI, t0()));
    m.observe(&collection(COI, hours(1)));
    assert_eq!(m.next_deadline(), Some(hours(48)));
}

#[test]
fn material_received_stops_the_countdown() {
    let mut m = monitor();
    m.observe(&collection(COI, t0()));
    assert_eq!(keys(&m.tick(hours(49))), [REMAINING_24]);
    assert!(m.observe(&received(COI, hours(50))).is_empty());
    assert_eq!(m.next_deadline(), None);
    assert!(m.tick(hours(80)).is_empty());
    assert!(m
        .observe(&status(COI, hours(51), Some(hours(90))))
        .is_empty());
}

#[test]
fn cryopreservation_stops_the_countdown_and_other_steps_do_not() {
    let step = |name: &str| {
        event(
            hours(30),
            Some(COI),
            None,
            EventData::ManufacturingStepCompleted(ManufacturingStepCompleted {
                batch_id: "B-1".into(),
                step: name.into(),
                ..Default::default()
            }),
        )
    };
    let mut m = monitor();
    m.observe(&collection(COI, t0()));
    m.observe(&step("Cell washing"));
    assert_eq!(m.next_deadline(), Some(hours(48)));
    m.observe(&step("Controlled-rate freezing"));
    assert_eq!(m.next_deadline(), None);
    let mut m = monitor();
    m.observe(&step("CRYOPRESERVATION"));
    m.observe(&collection(COI, t0()));
    assert_eq!(m.next_deadline(), None, "a stop seen first holds");
}

#[test]
fn an_eta_beyond_the_window_raises_at_once() {
    let mut m = monitor();
    m.observe(&collection(COI, t0()));
    let scan = status(COI, hours(30), Some(hours(73)));
    let out = m.observe(&scan);
    assert_eq!(
        keys(&out),
        ["viability:W1234 26 000001:eta:2026-11-24T09:00:00Z"]
    );
    let a = alert(&out[0]);
    assert_eq!(a.alert, "eta_beyond_window");
    assert_eq!(a.severity, "high");
    assert_eq!(a.deadline, Some(hours(72)));
    assert_eq!(a.tracking_number.as_deref(), Some("1Z999"));
    assert_eq!(a.related_event_id, Some(scan.event_id.to_string()));
    assert_eq!(out[0].occurred_at, hours(30));
    assert_eq!(out[0].tracking_number.as_deref(), Some("1Z999"));
    assert!(a.message.starts_with(
        "courier ETA 2026-11-24T09:00:00Z for shipment 1Z999 is 1 h 00 min after the viability deadline"
    ));

    assert!(
        m.observe(&status(COI, hours(31), Some(hours(73))))
            .is_empty(),
        "same ETA"
    );
    assert!(
        m.observe(&status(COI, hours(32), Some(hours(70))))
            .is_empty(),
        "back within"
    );
    assert!(
        m.observe(&status(COI, hours(33), Some(hours(72))))
            .is_empty(),
        "at the deadline"
    );
    assert!(m.observe(&status(COI, hours(33), None)).is_empty());
    assert_eq!(
        m.observe(&status(COI, hours(34), Some(hours(75)))).len(),
        1,
        "a new, later ETA"
    );
    assert!(
        m.observe(&status(COI, hours(35), Some(hours(73))))
            .is_empty(),
        "raised before"
    );

    // The tracking number reaches the countdown's alerts.
    let out = m.tick(hours(48));
    assert_eq!(out[0].tracking_number.as_deref(), Some("1Z999"));
}

#[test]
fn an_eta_seen_before_the_collection_is_judged_when_it_starts() {
    let mut m = monitor();
    assert!(m
        .observe(&status(COI, hours(1), Some(hours(80))))
        .is_empty());
    let out = m.observe(&collection(COI, t0()));
    assert_eq!(
        keys(&out),
        ["viability:W1234 26 000001:eta:2026-11-24T16:00:00Z"]
    );
    assert_eq!(out[0].occurred_at, hours(1));
}

#[test]
fn a_product_without_a_window_has_no_countdown() {
    let mut config = example_config();
    config.profiles.get_mut("cryopreserved").unwrap().products = vec!["CART-1".into()];
    let mut m = Monitor::new(config);
    m.observe(&collection(COI, t0()));
    assert_eq!(m.next_deadline(), None);
    let mut other = collection("W1234 26 000002", t0());
    other.product = Some("OTHER".into());
    m.observe(&other);
    assert_eq!(m.next_deadline(), Some(hours(48)), "* governs the rest");
}
