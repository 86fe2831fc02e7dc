//! The FHIR Task sink against a FHIR server of the test's own on
//! `127.0.0.1:0` (axum): a Task store with versions (`ETag`, `If-Match`,
//! 412 on a stale version), an OAuth token endpoint, and faults a test
//! queues per Task (500, a slow answer, 412, 400 with an OperationOutcome,
//! 401). Each test asserts what the EHR saw and the per-event results; the
//! last one runs the sink under the real outbox relay on SQLite.

// For a store on SQLite; its macro for both databases is not used here.
#[allow(unused_macros, unused_imports)]
mod store_fixtures;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Form, Router};
use chrono::{TimeZone, Utc};
use hub_core::error::ErrorClass;
use hub_core::event::{InfusionCompleted, MaterialReceived, Order, Source};
use hub_core::sink::fhir_task::{task_id, Url};
use hub_core::sink::{
    ClientCredentials, FhirAuth, FhirTaskConfig, FhirTaskSink, Secret, Sink, SinkError,
};
use hub_core::store::{IntakeOutcome, IntakeRecord, OutboxItem, PreparedEvent, Store};
use hub_core::{EventData, Hub, Metrics, TherapyEvent};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------- the server

/// What the server does to the next PUT of a Task, instead of its ordinary
/// answer.
#[derive(Debug, Clone)]
enum Fault {
    Status(u16),
    /// Answer (normally) only after this long.
    Slow(Duration),
    /// 400 with an OperationOutcome carrying this diagnostics text.
    Invalid(String),
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    if_match: Option<String>,
    authorization: Option<String>,
    content_type: Option<String>,
    accept: Option<String>,
    body: Option<Value>,
}

#[derive(Default)]
struct FhirState {
    seen: Vec<Seen>,
    /// id → (version, resource).
    tasks: HashMap<String, (u64, Value)>,
    faults: HashMap<String, VecDeque<Fault>>,
    /// Token requests (their forms), and the tokens handed out.
    token_forms: Vec<HashMap<String, String>>,
    expires_in: u64,
}

#[derive(Clone, Default)]
struct Server(Arc<Mutex<FhirState>>);

impl Server {
    async fn start() -> (Server, String) {
        let server = Server::default();
        server.0.lock().unwrap().expires_in = 3600;
        let app = Router::new()
            .route("/fhir/Task/{id}", any(task))
            .route("/token", post(token))
            .with_state(server.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (server, format!("http://{addr}"))
    }

    fn fault(&self, id: &str, f: Fault, times: usize) {
        let mut st = self.0.lock().unwrap();
        let q = st.faults.entry(id.to_string()).or_default();
        q.extend(std::iter::repeat_n(f, times));
    }

    fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().seen.clone()
    }

    /// The requests for one Task, as `METHOD If-Match`.
    fn exchanges(&self, id: &str) -> Vec<String> {
        let path = format!("/fhir/Task/{id}");
        self.seen()
            .into_iter()
            .filter(|s| s.path == path)
            .map(|s| format!("{} {}", s.method, s.if_match.unwrap_or_else(|| "-".into())))
            .collect()
    }

    fn puts(&self, id: &str) -> Vec<Value> {
        let path = format!("/fhir/Task/{id}");
        self.seen()
            .into_iter()
            .filter(|s| s.path == path && s.method == "PUT")
            .map(|s| s.body.unwrap())
            .collect()
    }

    fn task(&self, id: &str) -> Option<(u64, Value)> {
        self.0.lock().unwrap().tasks.get(id).cloned()
    }

    /// A clinician changes the Task in the EHR: a new version.
    fn edit_in_ehr(&self, id: &str, f: impl FnOnce(&mut Value)) {
        let mut st = self.0.lock().unwrap();
        let (v, t) = st.tasks.get_mut(id).unwrap();
        *v += 1;
        f(t);
        t["meta"] = json!({ "versionId": v.to_string() });
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| v.to_str().unwrap().to_string())
}

fn outcome(status: StatusCode, diagnostics: &str) -> Response {
    let body = json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "error", "code": "processing", "diagnostics": diagnostics }],
    });
    (
        status,
        [("content-type", "application/fhir+json")],
        body.to_string(),
    )
        .into_response()
}

fn resource(status: StatusCode, version: u64, task: &Value) -> Response {
    (
        status,
        [
            ("content-type", "application/fhir+json".to_string()),
            ("etag", format!("W/\"{version}\"")),
        ],
        task.to_string(),
    )
        .into_response()
}

async fn task(
    State(server): State<Server>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = {
        let mut st = server.0.lock().unwrap();
        st.seen.push(Seen {
            method: method.to_string(),
            path: format!("/fhir/Task/{id}"),
            if_match: header(&headers, "if-match"),
            authorization: header(&headers, "authorization"),
            content_type: header(&headers, "content-type"),
            accept: header(&headers, "accept"),
            body: serde_json::from_slice(&body).ok(),
        });
        match method {
            Method::PUT => st.faults.get_mut(&id).and_then(VecDeque::pop_front),
            _ => None,
        }
    };
    match fault {
        Some(Fault::Status(401)) => return outcome(StatusCode::UNAUTHORIZED, "token expired"),
        Some(Fault::Status(s)) => {
            return outcome(StatusCode::from_u16(s).unwrap(), "the server is unwell")
        }
        Some(Fault::Invalid(d)) => return outcome(StatusCode::BAD_REQUEST, &d),
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let mut st = server.0.lock().unwrap();
    match method {
        Method::GET => match st.tasks.get(&id) {
            Some((v, t)) => resource(StatusCode::OK, *v, t),
            None => outcome(StatusCode::NOT_FOUND, "Resource Task/{id} is not known"),
        },
        Method::PUT => {
            let current = st.tasks.get(&id).map(|(v, _)| *v);
            if let Some(want) = header(&headers, "if-match") {
                if current.map(|v| format!("W/\"{v}\"")) != Some(want) {
                    return outcome(StatusCode::PRECONDITION_FAILED, "version conflict");
                }
            }
            let mut task: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(task["resourceType"], "Task");
            assert_eq!(task["id"], id.as_str(), "the body's id is the URL's");
            let version = current.unwrap_or(0) + 1;
            task["meta"] = json!({ "versionId": version.to_string() });
            st.tasks.insert(id, (version, task.clone()));
            let status = if current.is_some() {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            resource(status, version, &task)
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

async fn token(
    State(server): State<Server>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut st = server.0.lock().unwrap();
    if form.get("client_secret").map(String::as_str) != Some("s3cret") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client", "error_description": "bad secret"})),
        )
            .into_response();
    }
    st.token_forms.push(form);
    let n = st.token_forms.len();
    axum::Json(json!({
        "access_token": format!("tok-{n}"),
        "token_type": "Bearer",
        "expires_in": st.expires_in,
    }))
    .into_response()
}

// ------------------------------------------------------------------ events

fn at(h: u32, m: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, h, m, 0).unwrap()
}

/// A canonical event for the order `order` (and COI `coi`).
fn event(
    data: EventData,
    order: Option<&str>,
    coi: Option<&str>,
    occurred: (u32, u32),
) -> TherapyEvent {
    TherapyEvent {
        schema: (),
        event_id: TherapyEvent::new_id(),
        data,
        coi: coi.map(str::to_string),
        order_id: order.map(str::to_string),
        product: Some("R240".into()),
        occurred_at: at(occurred.0, occurred.1),
        recorded_at: at(occurred.0, occurred.1 + 1),
        source: Source {
            connector: "hl7v2".into(),
            partner: "CHW".into(),
            message_id: Some("MSG-1".into()),
            payload_sha256: "ab".repeat(32),
            entry: None,
        },
        claims: Default::default(),
    }
}

fn order(kind: &str) -> EventData {
    let o = Order {
        placer_order_id: Some("ORD-1001".into()),
        order_control: Some("NW".into()),
        ..Default::default()
    };
    match kind {
        "order.placed" => EventData::OrderPlaced(o),
        "order.updated" => EventData::OrderUpdated(o),
        "order.cancelled" => EventData::OrderCancelled(o),
        _ => unreachable!(),
    }
}

fn material_received() -> EventData {
    EventData::MaterialReceived(MaterialReceived {
        material_id: "APH-0001".into(),
        site: Some("MFG-1".into()),
        ..Default::default()
    })
}

fn infused() -> EventData {
    EventData::InfusionCompleted(InfusionCompleted {
        site: Some("CHW-ONC".into()),
        bag_id: Some("BAG-1".into()),
        batch_id: None,
    })
}

fn item(ev: &TherapyEvent) -> OutboxItem {
    OutboxItem {
        id: 1,
        event_id: ev.event_id.to_string(),
        route: "ehr".into(),
        sink: "ehr".into(),
        attempts: 0,
        routing_key: String::new(),
        kind: ev.kind().as_str().into(),
        coi: ev.coi.clone(),
        product: ev.product.clone(),
        partner: ev.source.partner.clone(),
        body: serde_json::to_string(ev).unwrap(),
    }
}

fn sink(base: &str, auth: FhirAuth, timeout: Duration) -> FhirTaskSink {
    let config = FhirTaskConfig {
        base_url: Url::parse(&format!("{base}/fhir/")).unwrap(),
        timeout,
        auth,
    };
    FhirTaskSink::new("ehr", config).unwrap()
}

fn plain(base: &str) -> FhirTaskSink {
    sink(base, FhirAuth::None, Duration::from_secs(5))
}

fn class(r: &Result<(), SinkError>) -> Option<ErrorClass> {
    r.as_ref().err().map(|e| e.class)
}

const ORDER: &str = "ORD-1001";
const COI: &str = "CHW000126000001";

// ------------------------------------------------------------------- tests

#[tokio::test]
async fn an_order_becomes_one_task_updated_in_order_with_its_version() {
    let (server, base) = Server::start().await;
    let sink = plain(&base);
    let placed = event(order("order.placed"), Some(ORDER), Some(COI), (9, 0));
    let received = event(material_received(), Some(ORDER), Some(COI), (11, 30));
    let r = sink.deliver(&[item(&placed), item(&received)]).await;
    assert_eq!(r, [Ok(()), Ok(())]);
    let infusion = event(infused(), Some(ORDER), Some(COI), (15, 45));
    assert_eq!(sink.deliver(&[item(&infusion)]).await, [Ok(())]);

    // Created without If-Match, then each PUT names the version it follows.
    assert_eq!(
        server.exchanges(ORDER),
        ["PUT -", "PUT W/\"1\"", "PUT W/\"2\""]
    );
    let seen = server.seen();
    for s in &seen {
        assert_eq!(s.content_type.as_deref(), Some("application/fhir+json"));
        assert_eq!(s.accept.as_deref(), Some("application/fhir+json"));
        assert_eq!(s.authorization, None);
    }
    let puts = server.puts(ORDER);
    let steps: Vec<(&str, &str, &str)> = puts
        .iter()
        .map(|t| {
            (
                t["status"].as_str().unwrap(),
                t["businessStatus"]["coding"][0]["code"].as_str().unwrap(),
                t["lastModified"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("requested", "order.placed", "2026-03-02T09:00:00Z"),
            ("in-progress", "material.received", "2026-03-02T11:30:00Z"),
            ("completed", "infusion.completed", "2026-03-02T15:45:00Z"),
        ]
    );
    let t = &puts[0];
    assert_eq!(t["resourceType"], "Task");
    assert_eq!(t["id"], ORDER);
    assert_eq!(t["intent"], "order");
    assert_eq!(
        t["businessStatus"]["coding"][0]["system"],
        "https://cgthub.org/fhir/CodeSystem/therapy-step"
    );
    assert_eq!(
        t["businessStatus"]["coding"][0]["display"],
        "Therapy order placed"
    );
    assert_eq!(t["businessStatus"]["text"], "order.placed");
    assert_eq!(
        t["identifier"],
        json!([{ "system": "https://cgthub.org/fhir/coi", "value": COI }])
    );
    assert_eq!(t["basedOn"], json!([{ "identifier": { "value": ORDER } }]));
    assert_eq!(
        t["extension"][0]["valueString"],
        placed.event_id.to_string()
    );
    for key in ["note", "for", "description", "input", "output"] {
        assert!(t.get(key).is_none(), "{key}: {t}");
    }
    assert_eq!(server.task(ORDER).unwrap().0, 3);

    // A later step does not reopen the infused Task.
    let alert = event(order("order.placed"), Some(ORDER), Some(COI), (16, 0));
    let mut late = serde_json::to_value(&alert).unwrap();
    late["kind"] = json!("temperature.excursion");
    late["data"] = json!({});
    let mut late_item = item(&alert);
    late_item.body = late.to_string();
    assert_eq!(sink.deliver(&[late_item]).await, [Ok(())]);
    let last = server.task(ORDER).unwrap().1;
    assert_eq!(last["status"], "completed");
    assert_eq!(
        last["businessStatus"]["coding"][0]["code"],
        "temperature.excursion"
    );
}

#[tokio::test]
async fn the_task_id_is_the_order_else_the_coi_made_a_legal_fhir_id() {
    let (server, base) = Server::start().await;
    let sink = plain(&base);
    let by_coi = event(material_received(), None, Some(COI), (10, 0));
    let odd = event(order("order.placed"), Some("ORD/77 A"), None, (10, 5));
    let neither = event(material_received(), None, None, (10, 10));
    let r = sink
        .deliver(&[item(&by_coi), item(&odd), item(&neither)])
        .await;
    assert_eq!(r[..2], [Ok(()), Ok(())]);
    let e = r[2].as_ref().unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent);
    assert_eq!(
        e.message,
        "the event names no order or COI; no Task to update"
    );

    assert_eq!(server.exchanges(COI), ["PUT -"]);
    let t = &server.puts(COI)[0];
    assert!(t.get("basedOn").is_none());
    assert_eq!(t["identifier"][0]["value"], COI);
    let odd_id = task_id("ORD/77 A");
    assert!(
        odd_id.starts_with("ORD-77-A-") && odd_id.len() <= 64,
        "{odd_id}"
    );
    assert_eq!(server.exchanges(&odd_id), ["PUT -"]);
    assert_eq!(
        server.puts(&odd_id)[0]["basedOn"][0]["identifier"]["value"],
        "ORD/77 A",
        "the reference keeps the order number as given"
    );
    assert_eq!(
        server.seen().len(),
        2,
        "nothing sent for the event without a Task"
    );
}

#[tokio::test]
async fn server_errors_are_transient_and_the_tasks_later_events_wait() {
    let (server, base) = Server::start().await;
    let sink = plain(&base);
    server.fault(ORDER, Fault::Status(500), 2);
    let placed = event(order("order.placed"), Some(ORDER), Some(COI), (9, 0));
    let updated = event(order("order.updated"), Some(ORDER), Some(COI), (9, 30));
    let other = event(order("order.placed"), Some("ORD-2002"), None, (9, 10));
    let batch = [item(&placed), item(&updated), item(&other)];

    let r = sink.deliver(&batch).await;
    assert_eq!(class(&r[0]), Some(ErrorClass::Transient));
    assert!(r[0].as_ref().unwrap_err().message.contains("500"), "{r:?}");
    let held = r[1].as_ref().unwrap_err();
    assert_eq!(held.class, ErrorClass::Transient);
    assert!(held.message.contains("earlier event"), "{}", held.message);
    assert_eq!(r[2], Ok(()), "another Task is not held up");
    assert_eq!(
        server.exchanges(ORDER),
        ["PUT -"],
        "the update was not sent"
    );

    // The relay retries the two that failed (not the delivered one).
    let retry = [item(&placed), item(&updated)];
    let r = sink.deliver(&retry).await;
    assert_eq!(class(&r[0]), Some(ErrorClass::Transient));
    let r = sink.deliver(&retry).await;
    assert_eq!(r, [Ok(()), Ok(())]);
    assert_eq!(
        server.exchanges(ORDER),
        ["PUT -", "PUT -", "PUT -", "PUT W/\"1\""]
    );
    let task = server.task(ORDER).unwrap().1;
    assert_eq!(task["status"], "accepted", "applied in order");
    for code in [429, 503] {
        server.fault("ORD-2002", Fault::Status(code), 1);
        let r = sink.deliver(&[item(&other)]).await;
        assert_eq!(class(&r[0]), Some(ErrorClass::Transient), "{code}");
    }
}

#[tokio::test]
async fn a_slow_server_is_a_timeout_and_transient() {
    let (server, base) = Server::start().await;
    let sink = sink(&base, FhirAuth::None, Duration::from_millis(300));
    server.fault(ORDER, Fault::Slow(Duration::from_millis(1500)), 1);
    let placed = event(order("order.placed"), Some(ORDER), Some(COI), (9, 0));
    let updated = event(order("order.updated"), Some(ORDER), Some(COI), (9, 30));
    let start = Instant::now();
    let r = sink.deliver(&[item(&placed), item(&updated)]).await;
    assert!(
        start.elapsed() < Duration::from_millis(1200),
        "{:?}",
        start.elapsed()
    );
    let e = r[0].as_ref().unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient);
    assert!(
        e.message.contains("did not answer in time"),
        "{}",
        e.message
    );
    assert_eq!(class(&r[1]), Some(ErrorClass::Transient));
    assert_eq!(server.exchanges(ORDER), ["PUT -"]);

    // Back to normal (the slow PUT has landed meanwhile): both go, in order.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = sink.deliver(&[item(&placed), item(&updated)]).await;
    assert_eq!(r, [Ok(()), Ok(())]);
    assert_eq!(server.task(ORDER).unwrap().1["status"], "accepted");
}

/// Connection refused: transient, and the Tasks not yet started in that
/// batch are not tried.
#[tokio::test]
async fn an_unreachable_server_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let sink = plain(&base);
    let events: Vec<TherapyEvent> = (0..20)
        .map(|i| {
            event(
                order("order.placed"),
                Some(&format!("ORD-{i}")),
                None,
                (9, 0),
            )
        })
        .collect();
    let batch: Vec<OutboxItem> = events.iter().map(item).collect();
    let r = sink.deliver(&batch).await;
    assert!(
        r.iter().all(|r| class(r) == Some(ErrorClass::Transient)),
        "{r:?}"
    );
    let e = r[0].as_ref().unwrap_err();
    assert!(e.message.contains("cannot connect"), "{}", e.message);
    let last = r[19].as_ref().unwrap_err();
    assert!(
        last.message.starts_with("not sent: cannot connect"),
        "{}",
        last.message
    );
}

#[tokio::test]
async fn a_version_conflict_reads_the_task_and_keeps_what_the_ehr_added() {
    let (server, base) = Server::start().await;
    let sink = plain(&base);
    let placed = event(order("order.placed"), Some(ORDER), Some(COI), (9, 0));
    assert_eq!(sink.deliver(&[item(&placed)]).await, [Ok(())]);
    // Someone at the EHR assigns the Task: version 2.
    server.edit_in_ehr(ORDER, |t| {
        t["owner"] = json!({ "reference": "Practitioner/42" });
    });

    let updated = event(order("order.updated"), Some(ORDER), Some(COI), (10, 0));
    assert_eq!(sink.deliver(&[item(&updated)]).await, [Ok(())]);
    // 412 on the stale version, a read, the PUT again on version 2.
    assert_eq!(
        server.exchanges(ORDER),
        ["PUT -", "PUT W/\"1\"", "GET -", "PUT W/\"2\""]
    );
    let (version, task) = server.task(ORDER).unwrap();
    assert_eq!(version, 3);
    assert_eq!(task["status"], "accepted");
    assert_eq!(task["owner"]["reference"], "Practitioner/42");
    assert_eq!(task["identifier"].as_array().unwrap().len(), 1);

    // The next one follows the version it just wrote.
    let received = event(material_received(), Some(ORDER), Some(COI), (11, 0));
    assert_eq!(sink.deliver(&[item(&received)]).await, [Ok(())]);
    assert_eq!(server.exchanges(ORDER).last().unwrap(), "PUT W/\"3\"");
}

#[tokio::test]
async fn a_task_that_keeps_changing_is_retried_later_and_a_deleted_one_created_again() {
    let (server, base) = Server::start().await;
    let sink = plain(&base);
    let placed = event(order("order.placed"), Some(ORDER), Some(COI), (9, 0));
    assert_eq!(sink.deliver(&[item(&placed)]).await, [Ok(())]);
    server.fault(ORDER, Fault::Status(412), 4);
    let updated = event(order("order.updated"), Some(ORDER), Some(COI), (10, 0));
    let r = sink.deliver(&[item(&updated)]).await;
    let e = r[0].as_ref().unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient);
    assert!(e.message.contains("412"), "{}", e.message);
    let ex = server.exchanges(ORDER);
    assert_eq!(
        ex[1..],
        [
            "PUT W/\"1\"",
            "GET -",
            "PUT W/\"1\"",
            "GET -",
            "PUT W/\"1\"",
            "GET -",
            "PUT W/\"1\""
        ],
        "three reads, then retried later"
    );

    // The Task is gone from the EHR: the read finds nothing, the PUT creates it.
    server.0.lock().unwrap().tasks.remove(ORDER);
    assert_eq!(sink.deliver(&[item(&updated)]).await, [Ok(())]);
    assert_eq!(
        server.exchanges(ORDER)[8..],
        ["PUT W/\"1\"", "GET -", "PUT -"]
    );
    assert_eq!(server.task(ORDER).unwrap().1["status"], "accepted");

    // 409 is a conflict like 412.
    server.fault(ORDER, Fault::Status(409), 1);
    let received = event(material_received(), Some(ORDER), Some(COI), (11, 0));
    assert_eq!(sink.deliver(&[item(&received)]).await, [Ok(())]);
    assert_eq!(
        server.exchanges(ORDER)[11..],
        ["PUT W/\"1\"", "GET -", "PUT W/\"1\""]
    );
}

#[tokio::test]
async fn a_refused_task_is_permanent_with_the_servers_diagnostics() {
    let (server, base) = Server::start().await;
    let sink = plain(&base);
    let long = format!(
        "Task.businessStatus: code not in value set. {}",
        "x".repeat(900)
    );
    server.fault(ORDER, Fault::Invalid(long), 1);
    let placed = event(order("order.placed"), Some(ORDER), Some(COI), (9, 0));
    let other = event(order("order.placed"), Some("ORD-2002"), None, (9, 0));
    let r = sink.deliver(&[item(&placed), item(&other)]).await;
    let e = r[0].as_ref().unwrap_err();
    assert_eq!(e.class, ErrorClass::Permanent);
    assert!(
        e.message.starts_with(
            "PUT Task/ORD-1001: 400 Bad Request: Task.businessStatus: code not in value set."
        ),
        "{}",
        e.message
    );
    assert!(e.message.chars().count() < 600, "cut: {}", e.message.len());
    assert_eq!(r[1], Ok(()));
    // A permanent failure ends that event's road: the Task's next event goes on.
    let updated = event(order("order.updated"), Some(ORDER), Some(COI), (10, 0));
    let again = sink.deliver(&[item(&placed), item(&updated)]).await;
    assert_eq!(again, [Ok(()), Ok(())]);
    server.fault(ORDER, Fault::Status(403), 1);
    let r = sink.deliver(&[item(&updated)]).await;
    assert_eq!(class(&r[0]), Some(ErrorClass::Permanent));
    assert!(r[0]
        .as_ref()
        .unwrap_err()
        .message
        .contains("403 Forbidden: the server is unwell"));
}

#[tokio::test]
async fn client_credentials_are_fetched_once_and_again_after_a_401() {
    let (server, base) = Server::start().await;
    let creds = |secret: &str| {
        FhirAuth::ClientCredentials(ClientCredentials {
            token_url: Url::parse(&format!("{base}/token")).unwrap(),
            client_id: "cgthub".into(),
            client_secret: Secret::new(secret),
            scope: Some("system/Task.write system/Task.read".into()),
        })
    };
    let config_debug = format!("{:?}", creds("s3cret"));
    assert!(!config_debug.contains("s3cret"), "{config_debug}");
    let sink = sink(&base, creds("s3cret"), Duration::from_secs(5));

    let placed = event(order("order.placed"), Some(ORDER), Some(COI), (9, 0));
    let updated = event(order("order.updated"), Some(ORDER), Some(COI), (10, 0));
    assert_eq!(sink.deliver(&[item(&placed)]).await, [Ok(())]);
    assert_eq!(sink.deliver(&[item(&updated)]).await, [Ok(())]);
    {
        let st = server.0.lock().unwrap();
        assert_eq!(st.token_forms.len(), 1, "the token is kept");
        let form = &st.token_forms[0];
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["client_id"], "cgthub");
        assert_eq!(form["scope"], "system/Task.write system/Task.read");
    }
    let auth: Vec<String> = server
        .seen()
        .into_iter()
        .map(|s| s.authorization.unwrap())
        .collect();
    assert_eq!(auth, ["Bearer tok-1", "Bearer tok-1"]);

    // The EHR no longer takes the token: a new one, and the PUT again.
    server.fault(ORDER, Fault::Status(401), 1);
    let received = event(material_received(), Some(ORDER), Some(COI), (11, 0));
    assert_eq!(sink.deliver(&[item(&received)]).await, [Ok(())]);
    let seen = server.seen();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[2].authorization.as_deref(), Some("Bearer tok-1"));
    assert_eq!(seen[3].authorization.as_deref(), Some("Bearer tok-2"));
    assert_eq!(seen[3].if_match.as_deref(), Some("W/\"2\""));

    // Refused again after the new token: once per event, then transient.
    server.fault(ORDER, Fault::Status(401), 2);
    let r = sink.deliver(&[item(&received)]).await;
    let e = r[0].as_ref().unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient);
    assert!(e.message.contains("401"), "{}", e.message);
    assert!(
        !e.message.contains("tok-"),
        "no token in messages: {}",
        e.message
    );
    assert_eq!(server.0.lock().unwrap().token_forms.len(), 3);

    // A wrong secret: transient, named by the OAuth error, the secret not shown.
    let wrong = sink_with_secret(&base, "nope");
    let r = wrong.deliver(&[item(&received)]).await;
    let e = r[0].as_ref().unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient);
    assert!(e.message.contains("invalid_client"), "{}", e.message);
    assert!(!e.message.contains("nope"), "{}", e.message);
}

fn sink_with_secret(base: &str, secret: &str) -> FhirTaskSink {
    sink(
        base,
        FhirAuth::ClientCredentials(ClientCredentials {
            token_url: Url::parse(&format!("{base}/token")).unwrap(),
            client_id: "cgthub".into(),
            client_secret: Secret::new(secret),
            scope: None,
        }),
        Duration::from_secs(5),
    )
}

#[tokio::test]
async fn a_token_is_fetched_again_shortly_before_it_expires() {
    let (server, base) = Server::start().await;
    server.0.lock().unwrap().expires_in = 1;
    let sink = sink_with_secret(&base, "s3cret");
    let placed = event(order("order.placed"), Some(ORDER), Some(COI), (9, 0));
    assert_eq!(sink.deliver(&[item(&placed)]).await, [Ok(())]);
    assert_eq!(sink.deliver(&[item(&placed)]).await, [Ok(())]);
    assert_eq!(server.0.lock().unwrap().token_forms.len(), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(sink.deliver(&[item(&placed)]).await, [Ok(())]);
    assert_eq!(server.0.lock().unwrap().token_forms.len(), 2);
    assert!(!server.0.lock().unwrap().token_forms[0].contains_key("scope"));
}

#[tokio::test]
async fn a_fixed_token_is_sent_and_its_401_is_transient() {
    let (server, base) = Server::start().await;
    let sink = sink(
        &base,
        FhirAuth::Bearer(Secret::new("static-token")),
        Duration::from_secs(5),
    );
    let placed = event(order("order.placed"), Some(ORDER), Some(COI), (9, 0));
    assert_eq!(sink.deliver(&[item(&placed)]).await, [Ok(())]);
    server.fault(ORDER, Fault::Status(401), 1);
    let r = sink.deliver(&[item(&placed)]).await;
    let e = r[0].as_ref().unwrap_err();
    assert_eq!(e.class, ErrorClass::Transient);
    assert!(!e.message.contains("static-token"), "{}", e.message);
    let auth: Vec<String> = server
        .seen()
        .into_iter()
        .map(|s| s.authorization.unwrap())
        .collect();
    assert_eq!(
        auth,
        ["Bearer static-token", "Bearer static-token"],
        "no refetch"
    );
}

/// Under the real relay: delivered, and a refused event dead-lettered with
/// the server's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_relay_tasks_are_delivered_and_refusals_dead_lettered() {
    let (server, base) = Server::start().await;
    let db = store_fixtures::TestDb::sqlite().await;
    let store = Store::open(db.options()).await.unwrap();
    let routes = db.dir().join("routes");
    std::fs::create_dir_all(&routes).unwrap();
    let sinks: BTreeSet<String> = ["ehr".to_string()].into();
    let router = hub_core::routing::Router::load_dir(&routes, &sinks).unwrap();
    let hub = Hub::new(store.clone(), router, Metrics::default(), sinks);

    server.fault("ORD-BAD", Fault::Invalid("Task.intent: required".into()), 1);
    for (i, order_id) in [ORDER, "ORD-BAD"].into_iter().enumerate() {
        let ev = event(
            order("order.placed"),
            Some(order_id),
            Some(COI),
            (9, i as u32),
        );
        store
            .intake(IntakeRecord {
                inbound: store_fixtures::inbound("CHW", Some(&format!("M{i}")), "{}"),
                outcome: IntakeOutcome::Events(vec![PreparedEvent::new(
                    &ev,
                    vec![store_fixtures::dest("ehr")],
                )]),
            })
            .await
            .unwrap();
    }
    let stop = CancellationToken::new();
    let relay = tokio::spawn(hub_core::outbox::run_relay(
        hub.clone(),
        Arc::new(plain(&base)),
        stop.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = store.outbox_stats(Utc::now()).await.unwrap();
        if s.pending == 0 {
            assert_eq!((s.delivered, s.dead), (1, 1));
            break;
        }
        assert!(Instant::now() < deadline, "still pending: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    relay.await.unwrap();
    assert_eq!(server.task(ORDER).unwrap().1["status"], "requested");
    assert!(server.task("ORD-BAD").is_none());
    let dead = store.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let d = format!("{:?}", dead[0]);
    assert!(d.contains("Task.intent: required"), "{d}");
}
