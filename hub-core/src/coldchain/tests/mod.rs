//! What an operator would check: the monitor fed events as the hub feeds them.

mod excursions;
mod viability;

use chrono::TimeZone;
use uuid::Uuid;

use super::config::example_config;
use super::*;
use crate::event::{
    AlertRaised, CollectionCompleted, MaterialReceived, ShipmentCreated, ShipmentStatus, Source,
    TemperatureExcursion, TemperatureReading,
};

/// 2026-11-21 08:00 UTC.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap()
}

fn min(m: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(m)
}

fn hours(h: i64) -> DateTime<Utc> {
    t0() + Duration::hours(h)
}

/// A stable event id from the event's own facts (FNV-1a), so that feeding
/// the same list twice, or in another order, gives the same ids.
fn id_of(text: &str) -> Uuid {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in text.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    Uuid::from_u128(h)
}

fn event(
    at: DateTime<Utc>,
    coi: Option<&str>,
    product: Option<&str>,
    data: EventData,
) -> TherapyEvent {
    TherapyEvent {
        schema: (),
        event_id: id_of(&format!("{at:?}{coi:?}{data:?}")),
        data,
        coi: coi.map(str::to_string),
        order_id: None,
        product: product.map(str::to_string),
        occurred_at: at,
        recorded_at: at,
        source: Source {
            connector: "courier".into(),
            partner: "COURIER".into(),
            message_id: None,
            payload_sha256: "00".repeat(32),
            entry: None,
        },
        claims: Default::default(),
    }
}

const COI: &str = "W1234 26 000001";

/// A reading of `logger` at minute `m`, on shipment `TN-{logger}`.
fn reading(logger: &str, m: i64, celsius: f64) -> TherapyEvent {
    event(
        min(m),
        Some(COI),
        Some("CART-1"),
        EventData::TemperatureReading(TemperatureReading {
            logger_id: logger.into(),
            celsius,
            tracking_number: Some(format!("TN-{logger}")),
            profile: None,
        }),
    )
}

fn shipment_created(tracking: &str, container: &str, at: DateTime<Utc>) -> TherapyEvent {
    event(
        at,
        Some(COI),
        Some("CART-1"),
        EventData::ShipmentCreated(ShipmentCreated {
            tracking_number: tracking.into(),
            carrier: "WORLD COURIER".into(),
            container: Some(container.into()),
            ..Default::default()
        }),
    )
}

fn collection(coi: &str, at: DateTime<Utc>) -> TherapyEvent {
    event(
        at,
        Some(coi),
        Some("CART-1"),
        EventData::CollectionCompleted(CollectionCompleted::default()),
    )
}

fn received(coi: &str, at: DateTime<Utc>) -> TherapyEvent {
    event(
        at,
        Some(coi),
        Some("CART-1"),
        EventData::MaterialReceived(MaterialReceived {
            material_id: "APH-1".into(),
            ..Default::default()
        }),
    )
}

fn status(coi: &str, at: DateTime<Utc>, eta: Option<DateTime<Utc>>) -> TherapyEvent {
    event(
        at,
        Some(coi),
        Some("CART-1"),
        EventData::ShipmentStatus(ShipmentStatus {
            tracking_number: "1Z999".into(),
            carrier: "UPS".into(),
            status: "in_transit".into(),
            eta,
            ..Default::default()
        }),
    )
}

fn monitor() -> Monitor {
    Monitor::new(example_config())
}

fn feed<'a>(m: &mut Monitor, events: impl IntoIterator<Item = &'a TherapyEvent>) -> Vec<Raised> {
    events.into_iter().flat_map(|e| m.observe(e)).collect()
}

fn keys(out: &[Raised]) -> Vec<&str> {
    out.iter().map(|r| r.key.as_str()).collect()
}

fn excursion(r: &Raised) -> &TemperatureExcursion {
    match &r.data {
        EventData::TemperatureExcursion(x) => x,
        other => panic!("{}: not an excursion: {other:?}", r.key),
    }
}

fn alert(r: &Raised) -> &AlertRaised {
    match &r.data {
        EventData::AlertRaised(a) => a,
        other => panic!("{}: not an alert: {other:?}", r.key),
    }
}

#[test]
fn a_disabled_monitor_raises_nothing() {
    let mut m = Monitor::new(ColdChainConfig {
        enabled: false,
        ..example_config()
    });
    let out = feed(&mut m, &[collection(COI, t0()), reading("L1", 0, 30.0)]);
    assert!(out.is_empty());
    assert!(m.tick(hours(100)).is_empty());
    assert_eq!(m.next_deadline(), None);
}

/// Everything the monitor is fed, with ticks between, as the hub would.
fn a_day() -> Vec<(Option<TherapyEvent>, Option<DateTime<Utc>>)> {
    let mut steps = vec![
        (Some(shipment_created("TN-L1", "2-8C", min(-5))), None),
        (Some(collection(COI, min(-10))), None),
    ];
    for m in 0..120 {
        let c = match m {
            30..=33 => 9.4,
            70..=84 => 8.2,
            _ => 5.0,
        };
        steps.push((Some(reading("L1", m, c)), None));
        if m % 30 == 0 {
            steps.push((None, Some(min(m))));
        }
    }
    steps.push((Some(status(COI, hours(40), Some(hours(73)))), None));
    for h in [47, 48, 49, 60, 61, 68, 71, 72, 80] {
        steps.push((None, Some(hours(h))));
    }
    steps
}

fn run(steps: &[(Option<TherapyEvent>, Option<DateTime<Utc>>)]) -> Vec<Raised> {
    let mut m = monitor();
    let mut out = Vec::new();
    for (ev, tick) in steps {
        if let Some(ev) = ev {
            out.extend(m.observe(ev));
        }
        if let Some(t) = tick {
            out.extend(m.tick(*t));
        }
    }
    out
}

#[test]
fn a_rebuilt_monitor_raises_the_same_keys() {
    let steps = a_day();
    let first = run(&steps);
    let again = run(&steps);
    assert_eq!(
        first, again,
        "same events and ticks, same outputs, byte for byte"
    );

    let mut k = keys(&first);
    assert_eq!(k.len(), 13, "{k:#?}");
    k.sort_unstable();
    k.dedup();
    assert_eq!(k.len(), 13, "no key twice");

    // A restart that replays all the events and then ticks once, late,
    // raises the same set: what is due depends on the facts, not on when
    // the ticks happened.
    let mut m = monitor();
    let mut replay: Vec<Raised> = feed(&mut m, steps.iter().filter_map(|(e, _)| e.as_ref()));
    replay.extend(m.tick(hours(80)));
    let mut r = keys(&replay);
    r.sort_unstable();
    assert_eq!(r, k);
}

#[test]
fn forget_before_drops_finished_state() {
    let steps = a_day();
    let mut m = monitor();
    feed(&mut m, steps.iter().filter_map(|(e, _)| e.as_ref()));
    m.tick(hours(80));
    assert_eq!(m.sizes(), (1, 2, 1));
    m.forget_before(min(60));
    assert_eq!(m.sizes(), (1, 2, 1), "all still current");
    m.forget_before(min(200));
    assert_eq!(
        m.sizes(),
        (0, 1, 1),
        "the logger and its shipment fell silent"
    );
    m.forget_before(hours(100));
    assert_eq!(m.sizes(), (0, 0, 0));
    assert_eq!(m.next_deadline(), None);
}

#[test]
fn a_thousand_loggers_for_an_hour() {
    let mut m = monitor();
    let mut out = Vec::new();
    for minute in 0..60 {
        for logger in 0..1000 {
            let spiking = logger % 10 == 0 && (30..35).contains(&minute);
            let c = if spiking {
                9.5
            } else {
                4.0 + (logger % 3) as f64
            };
            out.extend(m.observe(&reading(&format!("L{logger:04}"), minute, c)));
        }
    }
    assert_eq!(
        out.len(),
        100 * 4,
        "100 excursions, opened and closed, two outputs each"
    );
    let mut k = keys(&out);
    k.sort_unstable();
    k.dedup();
    assert_eq!(k.len(), 400);
    let closed: Vec<&TemperatureExcursion> = out
        .iter()
        .filter(|r| r.key.ends_with(":closed"))
        .map(excursion)
        .collect();
    assert_eq!(closed.len(), 100);
    assert!(closed
        .iter()
        .all(|x| x.duration_seconds == Some(300) && x.peak_celsius == 9.5));
    assert_eq!(m.sizes().0, 1000);
}
