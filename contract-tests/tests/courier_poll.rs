//! Polling a courier that only offers a pull API: `cgthub serve` with
//! `[courier.partners.dhl.poll]` against a local DHL-shaped tracking API
//! (DHL's Unified Tracking sample, a changed shipment id) that records every
//! request. An EHR links the tracking number to a therapy over FHIR; from
//! then on the hub asks for it, takes its scans with the COI, sends the
//! ETag back (a 304 does nothing), honours Retry-After, backs off after an
//! error, and stops asking once the parcel is delivered. A webhook push of
//! scans already polled is answered as duplicates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use contract_tests::courier::{fhir, order_bundle, COI, FHIR_TOKENS};
use contract_tests::{Hub, Setup};
use serde_json::Value;
use sha2::{Digest, Sha256};

const DHL_SECRET: &str = "dhl-webhook-secret";
const API_KEY: &str = "dhl-api-key-for-tests";
const TRACKING: &str = "7777777772";
const LAST_MODIFIED: &str = "Sat, 05 Dec 2026 10:00:00 GMT";

const COLDCHAIN: &str = r#"
[coldchain]
enabled = true
default_profile = "fresh_apheresis"
[coldchain.profiles.fresh_apheresis]
min_celsius = 2.0
max_celsius = 8.0
viability_hours = 72
products = ["*"]
"#;

/// What the courier answers next, before its normal answer.
#[derive(Debug, Clone, Copy)]
enum Forced {
    /// 429 with `Retry-After: n`.
    Throttle(u64),
    /// 500.
    Error,
}

/// One request the courier saw, and what it answered.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    tracking: String,
    if_none_match: Option<String>,
    if_modified_since: Option<String>,
    api_key: Option<String>,
    accept: Option<String>,
    status: u16,
}

#[derive(Default)]
struct Courier {
    /// The tracking response of TRACKING, as JSON text.
    body: String,
    forced: Vec<Forced>,
    seen: Vec<Seen>,
}

type Shared = Arc<Mutex<Courier>>;

fn etag(body: &str) -> String {
    format!(
        "\"{}\"",
        &hex::encode(Sha256::digest(body.as_bytes()))[..16]
    )
}

async fn track(
    State(c): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut c = c.lock().unwrap();
    let tracking = q.get("trackingNumber").cloned().unwrap_or_default();
    let tag = etag(&c.body);
    let (status, response) = if tracking != TRACKING {
        (404, StatusCode::NOT_FOUND.into_response())
    } else if !c.forced.is_empty() {
        match c.forced.remove(0) {
            Forced::Throttle(secs) => (
                429,
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("Retry-After", secs.to_string())],
                    "slow down",
                )
                    .into_response(),
            ),
            Forced::Error => (
                500,
                (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
            ),
        }
    } else if h("if-none-match").as_deref() == Some(tag.as_str()) {
        (304, StatusCode::NOT_MODIFIED.into_response())
    } else {
        (
            200,
            (
                [
                    ("Content-Type", "application/json"),
                    ("ETag", tag.as_str()),
                    ("Last-Modified", LAST_MODIFIED),
                ],
                c.body.clone(),
            )
                .into_response(),
        )
    };
    c.seen.push(Seen {
        at: Instant::now(),
        tracking,
        if_none_match: h("if-none-match"),
        if_modified_since: h("if-modified-since"),
        api_key: h("dhl-api-key"),
        accept: h("accept"),
        status,
    });
    response
}

/// The courier's API on a free port, on a runtime of its own.
fn courier(rt: &tokio::runtime::Runtime, body: &Value) -> (Shared, u16) {
    let shared: Shared = Arc::new(Mutex::new(Courier {
        body: body.to_string(),
        ..Courier::default()
    }));
    let app = axum::Router::new()
        .route("/track/shipments", get(track))
        .with_state(Arc::clone(&shared));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move { axum::serve(listener, app).await });
    (shared, port)
}

fn seen(c: &Shared) -> Vec<Seen> {
    c.lock().unwrap().seen.clone()
}

/// Events in the therapy sink that came from DHL.
fn webhook(hub: &Hub, body: &Value) -> (u16, Value) {
    contract_tests::courier::webhook(hub, "dhl", DHL_SECRET, body)
}

fn dhl(events: &[(&str, DateTime<Utc>)], eta: DateTime<Utc>) -> Value {
    contract_tests::courier::dhl(TRACKING, events, eta)
}

fn shipped_task(start: DateTime<Utc>) -> Value {
    contract_tests::courier::shipped_task(TRACKING, start)
}

/// Events in the therapy sink that came from DHL.
fn from_dhl(hub: &Hub) -> Vec<Value> {
    hub.sink("therapy")
        .into_iter()
        .filter(|e| e["source"]["partner"] == "dhl")
        .collect()
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["kind"] == kind).count()
}

/// Waits for a request after the first `after` that `f` accepts; its index.
fn wait_request(
    hub: &Hub,
    c: &Shared,
    after: usize,
    what: &str,
    f: impl Fn(&Seen) -> bool,
) -> usize {
    let mut found = None;
    hub.wait_for(what, || {
        found = seen(c)
            .iter()
            .enumerate()
            .skip(after)
            .find(|(_, s)| f(s))
            .map(|(i, _)| i);
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn a_courier_without_webhooks_is_polled_until_its_parcel_is_delivered() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let now = Utc::now();
    let (t_label, t_transit) = (now - Duration::hours(3), now - Duration::hours(2));
    let eta = now + Duration::hours(10);
    let first = dhl(&[("transit", t_transit), ("pre-transit", t_label)], eta);
    let (api, port) = courier(&rt, &first);
    let config = format!(
        r#"{FHIR_TOKENS}{COLDCHAIN}
[courier.partners.dhl]
[courier.partners.dhl.poll]
url = "http://127.0.0.1:{port}/track/shipments?trackingNumber={{tracking}}"
interval_secs = 1
api_key_env = "CGTHUB_DHL_API_KEY"
api_key_header = "DHL-API-Key"
headers = {{ Accept = "application/json" }}
timeout_ms = 2000
max_backoff_secs = 2
"#
    );
    let hub = Hub::start_with(Setup {
        env: &[
            ("CGTHUB_SECRET_DHL", DHL_SECRET),
            ("CGTHUB_DHL_API_KEY", API_KEY),
        ],
        config_extra: Some(config.as_str()),
        identity: Some("on_unknown = \"hold\""),
        ..Setup::default()
    });

    // The order alone names no tracking number: nothing to ask about.
    let (s, body) = fhir(&hub, "/fhir", &order_bundle(now - Duration::hours(4)));
    assert_eq!(s, 200, "{body}");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert!(seen(&api).is_empty(), "{:?}", seen(&api));

    // The shipping Task links it: polled, its scans go on with the COI.
    let (s, body) = fhir(&hub, "/fhir/Task", &shipped_task(t_label));
    assert_eq!(s, 201, "{body}");
    hub.wait_for("the polled scans", || {
        count(&from_dhl(&hub), "shipment.status") == 2
    });
    let polled = from_dhl(&hub);
    assert_eq!(count(&polled, "shipment.created"), 1, "{polled:?}");
    for e in &polled {
        assert_eq!(e["coi"], COI, "{e}");
        assert_eq!(e["source"]["connector"], "courier", "{e}");
    }
    let requests = seen(&api);
    let r0 = &requests[0];
    assert_eq!(r0.tracking, TRACKING);
    assert_eq!(r0.status, 200);
    assert_eq!(r0.api_key.as_deref(), Some(API_KEY));
    assert_eq!(r0.accept.as_deref(), Some("application/json"));
    assert_eq!(r0.if_none_match, None);

    // The next poll sends the validators back; a 304 takes nothing.
    let tag = etag(&first.to_string());
    let i = wait_request(&hub, &api, 1, "a conditional request", |s| s.status == 304);
    let r = &seen(&api)[i];
    assert_eq!(r.if_none_match.as_deref(), Some(tag.as_str()));
    assert_eq!(r.if_modified_since.as_deref(), Some(LAST_MODIFIED));
    hub.wait_delivered();
    assert_eq!(from_dhl(&hub).len(), polled.len());

    // DHL pushes the same scans afterwards: duplicates, no event twice.
    let (s, answer) = webhook(&hub, &first);
    assert_eq!(s, 200, "{answer}");
    assert_eq!(answer["updates"], 3, "{answer}");
    assert_eq!(answer["new"], 0, "{answer}");
    assert_eq!(answer["duplicates"], 3, "{answer}");
    hub.wait_delivered();
    assert_eq!(from_dhl(&hub).len(), polled.len());

    // 429 with Retry-After: 2: no request to DHL for 2 s.
    api.lock().unwrap().forced.push(Forced::Throttle(2));
    let n = seen(&api).len();
    let i = wait_request(&hub, &api, n, "the 429", |s| s.status == 429);
    let j = wait_request(&hub, &api, i + 1, "a request after the 429", |_| true);
    let requests = seen(&api);
    let gap = requests[j].at - requests[i].at;
    assert!(
        gap >= std::time::Duration::from_secs(2),
        "asked again {gap:?} after Retry-After: 2"
    );

    // A 500: logged (partner, tracking number, status), backed off, then
    // polled again.
    api.lock().unwrap().forced.push(Forced::Error);
    let n = seen(&api).len();
    let i = wait_request(&hub, &api, n, "the 500", |s| s.status == 500);
    wait_request(&hub, &api, i + 1, "a request after the 500", |s| {
        s.status == 304
    });
    let log = hub.log();
    let line = log
        .lines()
        .find(|l| l.contains("poll failed") && l.contains("status=500"))
        .unwrap_or_else(|| panic!("no log of the 500:\n{log}"));
    assert!(line.contains("dhl") && line.contains(TRACKING), "{line}");

    // Delivered: the new scans go on, and DHL is asked no more.
    let t_done = now - Duration::minutes(5);
    let delivered = dhl(
        &[
            ("delivered", t_done),
            ("transit", t_transit),
            ("pre-transit", t_label),
        ],
        eta,
    );
    api.lock().unwrap().body = delivered.to_string();
    hub.wait_for("the delivery", || {
        count(&from_dhl(&hub), "shipment.delivered") == 1
    });
    let asked = seen(&api).len();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let after: Vec<Seen> = seen(&api).into_iter().skip(asked).collect();
    assert!(after.is_empty(), "asked after the delivery: {after:?}");
    hub.wait_delivered();
    let events = from_dhl(&hub);
    assert_eq!(count(&events, "shipment.status"), 3, "{events:?}");
    assert_eq!(count(&events, "shipment.created"), 1, "{events:?}");
    for e in &events {
        assert_eq!(e["coi"], COI, "{e}");
    }
    // One request per interval at most, even right after a wait.
    let requests = seen(&api);
    for w in requests.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(
            gap >= std::time::Duration::from_millis(900),
            "two requests {gap:?} apart: {requests:?}"
        );
    }
    // Never a body in the log.
    let log = hub.log();
    assert!(
        !log.contains("AMSTERDAM") && !log.contains("transit scan"),
        "{log}"
    );
    assert!(!log.contains(API_KEY), "{log}");
}
