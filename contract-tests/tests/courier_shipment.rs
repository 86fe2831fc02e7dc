//! A shipment as couriers, loggers and an EHR report it: `cgthub serve`
//! takes an order and its collection over FHIR, the shipping Task that
//! names the tracking number, then DHL's signed tracking webhooks (shape of
//! DHL's own Unified Tracking sample, copied from `../shared/corpus/courier`) and a
//! temperature logger's readings (Sensos common schema). What arrives in
//! the therapy and alerts sinks, what is held, what is refused and kept.
//!
//! Times are relative to now: the viability countdown runs on the hub's
//! clock.

use chrono::{DateTime, Duration, Utc};
use contract_tests::courier::{at, fhir, order_bundle, post, sign, COI, FHIR_TOKENS};
use contract_tests::{Hub, Setup};
use serde_json::{json, Value};

const DHL_SECRET: &str = "dhl-webhook-secret";
const TRACKING: &str = "7777777771";

/// A 72 h fresh-apheresis profile that governs every product
/// (2–8 °C, 0.5 °C or 10 minutes of tolerance, alerts at 24, 12 and 4 h left).
const COLDCHAIN: &str = r#"
[coldchain]
enabled = true
default_profile = "fresh_apheresis"
[coldchain.profiles.fresh_apheresis]
min_celsius = 2.0
max_celsius = 8.0
tolerance_celsius = 0.5
tolerance_minutes = 10
viability_hours = 72
alert_remaining_hours = [24, 12, 4]
products = ["*"]
"#;

fn start(extra: &str) -> Hub {
    let config = format!("{FHIR_TOKENS}{COLDCHAIN}{extra}");
    Hub::start_with(Setup {
        env: &[("CGTHUB_SECRET_DHL", DHL_SECRET)],
        config_extra: Some(Box::leak(config.into_boxed_str())),
        // The hub's default: what names no known therapy waits.
        identity: Some("on_unknown = \"hold\""),
        ..Setup::default()
    })
}

/// A logger's readings in the Sensos common schema with cgthub's fields.
fn logger(readings: &[(DateTime<Utc>, f64)]) -> Value {
    json!({
        "deviceId": "LOG-0042",
        "trackingNumber": TRACKING,
        "carrier": "DHL",
        "profile": "fresh_apheresis",
        "logData": readings.iter().map(|(t, c)| json!({"timestamp": at(*t), "temperature": c})).collect::<Vec<_>>(),
    })
}

fn signature(body: &[u8]) -> String {
    sign(DHL_SECRET, None, body)
}

fn webhook(hub: &Hub, partner: &str, body: &Value) -> (u16, Value) {
    contract_tests::courier::webhook(hub, partner, DHL_SECRET, body)
}

fn dhl(events: &[(&str, DateTime<Utc>)], eta: DateTime<Utc>) -> Value {
    contract_tests::courier::dhl(TRACKING, events, eta)
}

fn shipped_task(start: DateTime<Utc>) -> Value {
    contract_tests::courier::shipped_task(TRACKING, start)
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

fn alerts(hub: &Hub, code: &str) -> Vec<Value> {
    hub.sink("alerts")
        .into_iter()
        .filter(|e| e["data"]["alert"] == code)
        .collect()
}

/// Whatever the hub raises for a code, counted after the monitor has had
/// several ticks (200 ms each) to raise more.
fn settled_alerts(hub: &Hub) -> Vec<(String, String)> {
    hub.wait_delivered();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    hub.wait_delivered();
    let mut v: Vec<(String, String)> = hub
        .sink("alerts")
        .iter()
        .map(|e| {
            (
                e["data"]["alert"].as_str().unwrap_or_default().to_string(),
                e["data"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_shipment_from_collection_to_delivery_with_its_excursion_and_viability_alerts() {
    let mut hub = start("");
    let now = Utc::now();
    // Collected 60.5 h ago: 11.5 h of the 72 h window are left.
    let collected = now - Duration::minutes(60 * 60 + 30);
    let deadline = collected + Duration::hours(72);
    let (s, body) = fhir(&hub, "/fhir", &order_bundle(collected));
    assert_eq!(s, 200, "{body}");

    // The 24 h and 12 h thresholds have passed; the 4 h one has not.
    hub.wait_for("two viability alerts", || {
        alerts(&hub, "viability_threshold").len() >= 2
    });
    let thresholds = alerts(&hub, "viability_threshold");
    assert_eq!(thresholds.len(), 2, "{thresholds:?}");
    for a in &thresholds {
        assert_eq!(a["coi"], COI);
        assert_eq!(a["data"]["deadline"], at(deadline));
    }

    // DHL reports before the EHR has said which therapy the parcel
    // carries: taken, held (its tracking number names no therapy yet).
    let (t_label, t_transit) = (now - Duration::hours(3), now - Duration::hours(2));
    let first = dhl(
        &[("transit", t_transit), ("pre-transit", t_label)],
        now + Duration::hours(10),
    );
    let (s, answer) = webhook(&hub, "dhl", &first);
    assert_eq!(s, 200, "{answer}");
    assert_eq!(answer["updates"], 3, "{answer}"); // created + 2 statuses
    assert_eq!(answer["new"], 3, "{answer}");
    assert_eq!(answer["held"], 3, "{answer}");
    hub.wait_delivered();
    assert!(of_kind(&hub.sink("therapy"), "shipment.status").is_empty());

    // The EHR's shipping Task links the tracking number ("DHL") to the COI:
    // the held scans go on, with the COI.
    let (s, body) = fhir(&hub, "/fhir/Task", &shipped_task(t_label));
    assert_eq!(s, 201, "{body}");
    hub.wait_for("the held scans released", || {
        of_kind(&hub.sink("therapy"), "shipment.status").len() == 2
    });
    let therapy = hub.sink("therapy");
    for e in of_kind(&therapy, "shipment.status") {
        assert_eq!(e["coi"], COI, "{e}");
        assert_eq!(e["source"]["partner"], "dhl", "{e}");
    }
    // Placed by when they happened, not by the order they came in.
    let journey = hub.get_json(&format!("/api/journeys/{COI}"));
    let statuses: Vec<(&str, &str)> = journey["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "shipment.status")
        .map(|e| {
            (
                e["occurred_at"].as_str().unwrap(),
                e["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(statuses.len(), 2, "{journey}");
    assert!(statuses[0].0 < statuses[1].0, "{statuses:?}");
    assert!(
        statuses[0].0.starts_with(&at(t_label)[..19]),
        "{statuses:?}"
    );

    // DHL pushes its whole history again with a new scan, and the ETA slips
    // past the end of the viability window: the old scans are duplicates,
    // the slip is an alert naming the deadline and the parcel.
    let t_hub = now - Duration::hours(1);
    let second = dhl(
        &[
            ("transit", t_hub),
            ("transit", t_transit),
            ("pre-transit", t_label),
        ],
        now + Duration::hours(13),
    );
    let (s, answer) = webhook(&hub, "dhl", &second);
    assert_eq!(s, 200, "{answer}");
    assert_eq!(answer["updates"], 4, "{answer}");
    assert_eq!(answer["new"], 1, "{answer}");
    assert_eq!(answer["duplicates"], 3, "{answer}");
    hub.wait_for("the ETA alert", || {
        !alerts(&hub, "eta_beyond_window").is_empty()
    });
    let eta = &alerts(&hub, "eta_beyond_window")[0];
    assert_eq!(eta["coi"], COI);
    assert_eq!(eta["data"]["tracking_number"], TRACKING);
    assert_eq!(eta["data"]["deadline"], at(deadline));

    // The logger in the parcel: 9.1 °C is more than 0.5 °C above 8 °C, an
    // excursion at once; back to 5.1 °C closes it.
    let m = |n: i64| now - Duration::minutes(n);
    let readings = [
        (m(50), 5.0),
        (m(40), 5.2),
        (m(30), 9.1),
        (m(20), 8.9),
        (m(10), 5.1),
    ];
    let (s, answer) = webhook(&hub, "dhl", &logger(&readings));
    assert_eq!(s, 200, "{answer}");
    assert_eq!(answer["new"], 5, "{answer}");
    hub.wait_for("the excursion opened and closed", || {
        of_kind(&hub.sink("therapy"), "temperature.excursion").len() == 2
    });
    let therapy = hub.sink("therapy");
    assert_eq!(of_kind(&therapy, "temperature.reading").len(), 5);
    let closed = of_kind(&therapy, "temperature.excursion")
        .into_iter()
        .find(|e| e["data"]["ended_at"].is_string())
        .expect("a closed excursion");
    assert_eq!(closed["coi"], COI);
    assert_eq!(closed["data"]["peak_celsius"], 9.1);
    assert_eq!(closed["data"]["started_at"], at(m(30)));
    assert_eq!(closed["data"]["ended_at"], at(m(10)));
    assert_eq!(closed["data"]["duration_seconds"], 1200);
    assert_eq!(closed["data"]["tracking_number"], TRACKING);
    assert!(!alerts(&hub, "temperature_excursion").is_empty());

    // Killed and restarted: the monitor rebuilds from the store and raises
    // nothing twice; the same pushes again are duplicates.
    let before = settled_alerts(&hub);
    hub.kill();
    hub.restart();
    assert_eq!(settled_alerts(&hub), before, "alerts after a restart");
    let (_, answer) = webhook(&hub, "dhl", &second);
    assert_eq!(
        (answer["new"].clone(), answer["duplicates"].clone()),
        (json!(0), json!(4))
    );
    let (_, answer) = webhook(&hub, "dhl", &logger(&readings));
    assert_eq!(answer["duplicates"], 5, "{answer}");
    assert_eq!(
        settled_alerts(&hub),
        before,
        "alerts after the pushes again"
    );

    // Delivered and signed for: a status, the delivery, and the handoff
    // from DHL to the recipient, verified by signature.
    let t_done = now - Duration::minutes(5);
    let mut third = dhl(
        &[
            ("delivered", t_done),
            ("transit", t_hub),
            ("transit", t_transit),
            ("pre-transit", t_label),
        ],
        now + Duration::hours(13),
    );
    third["shipments"][0]["details"]["proofOfDelivery"]["signed"]["name"] = json!("J. Ward");
    let (s, answer) = webhook(&hub, "dhl", &third);
    assert_eq!(s, 200, "{answer}");
    assert_eq!(answer["new"], 3, "{answer}");
    hub.wait_for("the delivery", || {
        !of_kind(&hub.sink("therapy"), "shipment.delivered").is_empty()
    });
    let therapy = hub.sink("therapy");
    // The pickup (the EHR's shipping Task: the site hands it to DHL) and
    // the delivery (DHL's scan, signed for).
    let handoffs = of_kind(&therapy, "custody.transferred");
    assert_eq!(handoffs.len(), 2, "{handoffs:?}");
    let (pickup, delivery) = (handoffs[0], handoffs[1]);
    assert_eq!(pickup["data"]["from"], "Apheresis Center Leiden");
    assert_eq!(pickup["data"]["to"], "DHL");
    assert_eq!(pickup["occurred_at"], at(t_label));
    assert_eq!(delivery["coi"], COI);
    assert_eq!(delivery["data"]["from"], "dhl");
    assert_eq!(delivery["data"]["identity_verified_by"], "signature");
    assert_eq!(delivery["occurred_at"], at(t_done));
    let journey = hub.get_json(&format!("/api/journeys/{COI}"));
    let custody: Vec<&str> = journey["custody"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["occurred_at"].as_str().unwrap())
        .collect();
    assert_eq!(custody.len(), 2, "{journey}");
    assert!(custody[0] < custody[1], "{custody:?}");
    // Nothing of the patient's in what was routed.
    for line in hub.sink("therapy").iter().chain(hub.sink("alerts").iter()) {
        let text = line.to_string();
        assert!(
            !text.contains("Chalmers") && !text.contains("1974-12-25"),
            "{text}"
        );
    }
}

#[test]
fn refused_webhooks_are_answered_precisely_and_kept_with_their_reason() {
    // acme signs a timestamp too; ups's secret is not set.
    let hub = start(
        r#"
[courier]
max_body_bytes = 4096
[courier.partners.dhl]
[courier.partners.ups]
[courier.partners.acme]
timestamp_header = "X-Timestamp"
secret_env = "CGTHUB_SECRET_DHL"
"#,
    );
    let json = ("Content-Type", "application/json");
    let path = "/webhooks/courier/dhl";
    let body = dhl(&[("transit", Utc::now())], Utc::now()).to_string();

    // No signature, a wrong one: 401, kept.
    let (s, _, text) = post(&hub, path, &[json], body.as_bytes());
    assert_eq!(s, 401, "{text}");
    assert!(text.contains("X-Hub-Signature-256"), "{text}");
    let wrong = signature(b"another body");
    let (s, _, text) = post(
        &hub,
        path,
        &[json, ("X-Hub-Signature-256", &wrong)],
        body.as_bytes(),
    );
    assert_eq!(s, 401, "{text}");
    // A partner whose secret the hub does not have: every request refused.
    let sig = signature(body.as_bytes());
    let (s, _, text) = post(
        &hub,
        "/webhooks/courier/ups",
        &[json, ("X-Hub-Signature-256", &sig)],
        body.as_bytes(),
    );
    assert_eq!(s, 401, "{text}");
    assert!(text.contains("CGTHUB_SECRET_UPS"), "{text}");
    // A partner the hub does not know.
    let (s, _, _) = post(&hub, "/webhooks/courier/nobody", &[json], body.as_bytes());
    assert_eq!(s, 404);

    // A replay: signed 10 minutes ago (5 allowed); then signed now, taken.
    let readings = logger(&[(Utc::now(), 5.0)]).to_string();
    let signed_at = |t: i64| {
        let ts = t.to_string();
        let sig = sign(DHL_SECRET, Some(&ts), readings.as_bytes());
        (ts, sig)
    };
    let (ts, sig) = signed_at(Utc::now().timestamp() - 600);
    let headers = [json, ("X-Hub-Signature-256", &sig), ("X-Timestamp", &ts)];
    let (s, _, text) = post(
        &hub,
        "/webhooks/courier/acme",
        &headers,
        readings.as_bytes(),
    );
    assert_eq!(s, 401, "{text}");
    let (ts, sig) = signed_at(Utc::now().timestamp());
    let headers = [json, ("X-Hub-Signature-256", &sig), ("X-Timestamp", &ts)];
    let (s, _, text) = post(
        &hub,
        "/webhooks/courier/acme",
        &headers,
        readings.as_bytes(),
    );
    assert_eq!(s, 200, "{text}");

    // Signed but not JSON: 400. Too large: 413.
    let (s, a) = {
        let raw = b"{\"shipments\": [";
        let sig = signature(raw);
        let (s, _, t) = post(&hub, path, &[json, ("X-Hub-Signature-256", &sig)], raw);
        (s, t)
    };
    assert_eq!(s, 400, "{a}");
    let big = json!({"shipments": [], "pad": "x".repeat(5000)}).to_string();
    let sig = signature(big.as_bytes());
    let (s, _, text) = post(
        &hub,
        path,
        &[json, ("X-Hub-Signature-256", &sig)],
        big.as_bytes(),
    );
    assert_eq!(s, 413, "{text}");

    // A scan for a parcel no therapy names: taken and held, not routed.
    let (s, answer) = webhook(&hub, "dhl", &dhl(&[("transit", Utc::now())], Utc::now()));
    assert_eq!(s, 200, "{answer}");
    assert_eq!(answer["held"], 1, "{answer}");
    let holds = hub.get_json("/api/holds");
    let holds = holds["holds"].as_array().expect("holds");
    assert!(
        holds.iter().any(|h| h["reason"] == "unknown_identifiers"),
        "{holds:?}"
    );

    // Every refusal is kept with its reason for operators.
    let dead = hub.get_json("/api/dead-letters?status=all&limit=1000");
    let codes: Vec<(&str, &str)> = dead["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["connector"] == "courier")
        .filter_map(|d| Some((d["code"].as_str()?, d["partner"].as_str()?)))
        .collect();
    for kept in [
        ("missing_signature", "dhl"),
        ("bad_signature", "dhl"),
        ("no_secret", "ups"),
        ("stale_timestamp", "acme"),
        ("malformed_json", "dhl"),
        ("too_large", "dhl"),
    ] {
        assert!(codes.contains(&kept), "{kept:?} not among {codes:?}");
    }
    assert_eq!(codes.len(), 6, "{codes:?}");
}
