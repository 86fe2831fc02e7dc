//! The FHIR round trip the EHR integration is done by: an EHR places a
//! therapy order as a transaction Bundle at cgthub's `/fhir`, gets a
//! transaction-response, and then sees the order's Task kept up to date on
//! its own FHIR server (the `fhir_task` sink) as the therapy moves: order
//! placed, starting material collected, shipment booked, order cancelled.
//!
//! The EHR's FHIR server is a small recording server in this test: it keeps
//! Tasks with versions (`ETag: W/"n"`), honours `If-Match` (412 on a stale
//! version, as a FHIR server doing version-aware updates does), checks the
//! sink's bearer token, and records every request.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use contract_tests::{http_request, Hub, Setup};
use serde_json::{json, Value};

/// The EHR's bearer token at cgthub's `/fhir`, and its SHA-256 as the config
/// keeps it (`printf %s ehr-a-secret-token | sha256sum`).
const TOKEN: &str = "ehr-a-secret-token";
/// The token the sink presents to the EHR's FHIR server (from `token_env`).
const SINK_TOKEN_ENV: &str = "CGTHUB_TEST_EHR_FHIR_TOKEN";
const SINK_TOKEN: &str = "sink-token-for-the-ehr-fhir-server";

const COI: &str = "CHW000126000001";
const ORDER: &str = "ORD-1001";
const FHIR_JSON: &str = "application/fhir+json";
const STEP_SYSTEM: &str = "https://cgthub.org/fhir/CodeSystem/therapy-step";

/// Routes: the steps the EHR should see go to the Task sink; orders also
/// to the orders file (to tie the Task's event id to the event).
const ROUTES: &str = r#"
[[route]]
name = "ehr-tasks"
kinds = ["order.*", "collection.*", "shipment.*", "infusion.*"]
sink = "ehr_tasks"
retry = { max_attempts = 20, initial_backoff_ms = 100, max_backoff_ms = 1000 }

[[route]]
name = "orders"
kinds = ["order.*"]
sink = "orders_file"
"#;

// ---------------------------------------------------------------------------
// The EHR's FHIR server.

/// One request the EHR's FHIR server received.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    if_match: Option<String>,
    authorization: Option<String>,
    body: Option<Value>,
    /// The status it was answered.
    status: u16,
}

#[derive(Debug, Clone)]
struct StoredTask {
    version: u64,
    body: Value,
}

#[derive(Default)]
struct ServerState {
    requests: Vec<Recorded>,
    tasks: HashMap<String, StoredTask>,
}

/// A FHIR server with Tasks only: `PUT /fhir/Task/{id}` (create or update,
/// version-aware with `If-Match`) and `GET /fhir/Task/{id}`.
struct EhrFhirServer {
    addr: SocketAddr,
    state: Arc<Mutex<ServerState>>,
}

impl EhrFhirServer {
    fn start() -> EhrFhirServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the EHR's FHIR server");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(ServerState::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve_connection(conn, &state));
            }
        });
        EhrFhirServer { addr, state }
    }

    fn base_url(&self) -> String {
        format!("http://{}/fhir", self.addr)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    fn task(&self, id: &str) -> Option<StoredTask> {
        self.state.lock().unwrap().tasks.get(id).cloned()
    }

    /// Someone at the EHR edits the Task: a new version.
    fn edit_task(&self, id: &str, edit: impl FnOnce(&mut Value)) -> u64 {
        let mut state = self.state.lock().unwrap();
        let task = state.tasks.get_mut(id).expect("the Task exists");
        edit(&mut task.body);
        task.version += 1;
        task.body["meta"] = json!({"versionId": task.version.to_string()});
        task.version
    }
}

/// One request per connection, answered with `Connection: close`.
fn serve_connection(conn: TcpStream, state: &Mutex<ServerState>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers: HashMap<String, String> = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut raw = vec![0; len];
    if reader.read_exact(&mut raw).is_err() {
        return;
    }
    let body =
        (!raw.is_empty()).then(|| serde_json::from_slice::<Value>(&raw).unwrap_or(Value::Null));
    let if_match = headers.get("if-match").cloned();
    let authorization = headers.get("authorization").cloned();

    let (status, etag, answer) = {
        let mut st = state.lock().unwrap();
        let answer = handle(
            &mut st,
            &method,
            &path,
            if_match.as_deref(),
            authorization.as_deref(),
            body.as_ref(),
        );
        st.requests.push(Recorded {
            method,
            path,
            if_match,
            authorization,
            body,
            status: answer.0,
        });
        answer
    };
    let reason = match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        412 => "Precondition Failed",
        _ => "Other",
    };
    let text = answer.to_string();
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {FHIR_JSON}\r\nContent-Length: {}\r\nConnection: close\r\n",
        text.len()
    );
    if let Some(v) = etag {
        head.push_str(&format!("ETag: W/\"{v}\"\r\n"));
    }
    head.push_str("\r\n");
    let mut conn = reader.into_inner();
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(text.as_bytes());
    let _ = conn.flush();
}

fn outcome(code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}]
    })
}

/// (status, version for the ETag, body).
fn handle(
    st: &mut ServerState,
    method: &str,
    path: &str,
    if_match: Option<&str>,
    authorization: Option<&str>,
    body: Option<&Value>,
) -> (u16, Option<u64>, Value) {
    if authorization != Some(format!("Bearer {SINK_TOKEN}").as_str()) {
        return (401, None, outcome("login", "no or wrong bearer token"));
    }
    let Some(id) = path.strip_prefix("/fhir/Task/").filter(|i| !i.is_empty()) else {
        return (404, None, outcome("not-supported", "Tasks only"));
    };
    let id = id.to_string();
    match method {
        "GET" => match st.tasks.get(&id) {
            Some(t) => (200, Some(t.version), t.body.clone()),
            None => (404, None, outcome("not-found", "no such Task")),
        },
        "PUT" => {
            let Some(mut task) = body.filter(|b| b["resourceType"] == "Task").cloned() else {
                return (400, None, outcome("structure", "not a Task"));
            };
            if task["id"] != id.as_str() {
                return (400, None, outcome("invalid", "Task.id is not the URL's"));
            }
            let current = st.tasks.get(&id).map(|t| t.version);
            if let Some(m) = if_match {
                let wanted = m.trim().trim_start_matches("W/").trim_matches('"');
                if current.map(|v| v.to_string()).as_deref() != Some(wanted) {
                    return (
                        412,
                        None,
                        outcome(
                            "conflict",
                            &format!("If-Match {m}: the Task is at version {current:?}"),
                        ),
                    );
                }
            }
            let version = current.unwrap_or(0) + 1;
            task["meta"] = json!({"versionId": version.to_string()});
            st.tasks.insert(
                id,
                StoredTask {
                    version,
                    body: task.clone(),
                },
            );
            let status = if current.is_some() { 200 } else { 201 };
            (status, Some(version), task)
        }
        _ => (405, None, outcome("not-supported", "GET and PUT only")),
    }
}

// ---------------------------------------------------------------------------
// The EHR as a client of cgthub's /fhir.

fn send(hub: &Hub, method: &str, path: &str, body: &Value) -> (u16, Vec<(String, String)>, Value) {
    let auth = format!("Bearer {TOKEN}");
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let mut headers = vec![("Authorization", auth.as_str())];
    if !text.is_empty() {
        headers.push(("Content-Type", FHIR_JSON));
    }
    let (status, headers, answer) = http_request(hub.http, method, path, &headers, text.as_bytes())
        .unwrap_or_else(|e| panic!("{method} {path}: no answer ({e}):\n{}", hub.log()));
    let v = serde_json::from_str(&answer)
        .unwrap_or_else(|e| panic!("{method} {path}: {status} {answer:?} is not JSON ({e})"));
    (status, headers, v)
}

/// The order: Patient (MRN, COI, name, birth date), ServiceRequest (placer
/// number, conditional create), the collected apheresis Specimen.
fn order_bundle() -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "identifier": {"system": "urn:ehr:bundles", "value": "b-roundtrip-1"},
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [
                        {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                         "system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"},
                        {"type": {"coding": [{"code": "COI"}]}, "system": "urn:isbt128", "value": COI}
                    ],
                    "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
                    "gender": "male",
                    "birthDate": "1974-12-25"
                },
                "request": {"method": "POST", "url": "Patient"}
            },
            {
                "fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "identifier": [
                        {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PLAC"}]},
                         "system": "urn:oid:1.2.3.4", "value": ORDER}
                    ],
                    "status": "active",
                    "intent": "order",
                    "code": {"coding": [{"system": "urn:cgt:product", "code": "K9", "display": "CAR-T"}]},
                    "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"},
                    "authoredOn": "2026-11-20T09:00:00+01:00",
                    "specimen": [{"reference": "urn:uuid:33333333-3333-4333-8333-333333333333"}]
                },
                "request": {"method": "POST", "url": "ServiceRequest",
                            "ifNoneExist": format!("identifier=urn:oid:1.2.3.4|{ORDER}")}
            },
            {
                "fullUrl": "urn:uuid:33333333-3333-4333-8333-333333333333",
                "resource": {
                    "resourceType": "Specimen",
                    "identifier": [{"system": "urn:lab", "value": "SPC-77"}],
                    "status": "available",
                    "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"},
                    "request": [{"reference": "urn:uuid:22222222-2222-4222-8222-222222222222"}],
                    "collection": {
                        "collectedDateTime": "2026-11-21T08:30:00Z",
                        "quantity": {"value": 250, "unit": "mL", "code": "mL"}
                    }
                },
                "request": {"method": "POST", "url": "Specimen"}
            }
        ]
    })
}

/// The courier booked: a Task whose business status is `shipped`.
fn shipped_task() -> Value {
    json!({
        "resourceType": "Task",
        "identifier": [{"type": {"coding": [{"code": "COI"}]}, "system": "urn:isbt128", "value": COI}],
        "basedOn": [{"identifier": {"system": "urn:oid:1.2.3.4", "value": ORDER}}],
        "status": "in-progress",
        "businessStatus": {"coding": [{"system": "urn:ehr:steps", "code": "shipped"}]},
        "intent": "order",
        "executionPeriod": {"start": "2026-11-22T10:15:00Z"},
        "owner": {"display": "Apheresis Centre Leeds"},
        "location": {"display": "K9 Manufacturing Site"},
        "output": [
            {"type": {"coding": [{"code": "tracking-number"}]}, "valueString": "1Z999AA10123456784"},
            {"type": {"coding": [{"code": "carrier"}]}, "valueString": "Cryoport"}
        ]
    })
}

// ---------------------------------------------------------------------------
// Checks.

fn statuses(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            e["response"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn step(task: &Value) -> &str {
    task["businessStatus"]["coding"][0]["code"]
        .as_str()
        .unwrap_or_default()
}

/// The PUTs of one Task, in the order received.
fn puts(server: &EhrFhirServer, id: &str) -> Vec<Recorded> {
    let path = format!("/fhir/Task/{id}");
    server
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path == path)
        .collect()
}

/// Waits until the Task's PUTs, in order, show `steps` (each answered
/// 2xx), or fails with what the server got and the hub's log.
fn wait_for_steps(hub: &Hub, server: &EhrFhirServer, steps: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done: Vec<String> = puts(server, ORDER)
            .iter()
            .filter(|r| (200..300).contains(&r.status))
            .map(|r| step(r.body.as_ref().unwrap_or(&Value::Null)).to_string())
            .collect();
        if done.len() >= steps.len() {
            assert_eq!(done, steps, "the Task's steps, in order");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the Task's steps {steps:?}; the EHR's server got:\n{:#?}\nthe hub log:\n{}",
            server.requests(),
            hub.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What cgthub owns in every Task it writes.
fn assert_task_shape(task: &Value, status: &str, kind: &str) {
    assert_eq!(task["resourceType"], "Task", "{task}");
    assert_eq!(task["id"], ORDER, "{task}");
    assert_eq!(task["status"], status, "{task}");
    assert_eq!(task["intent"], "order", "{task}");
    let coding = &task["businessStatus"]["coding"][0];
    assert_eq!(coding["system"], STEP_SYSTEM, "{task}");
    assert_eq!(coding["code"], kind, "{task}");
    let ids = task["identifier"].as_array().expect("Task.identifier");
    assert!(
        ids.contains(&json!({"system": "https://cgthub.org/fhir/coi", "value": COI})),
        "no COI identifier: {task}"
    );
    let based_on = task["basedOn"].as_array().expect("Task.basedOn");
    assert!(
        based_on.iter().any(|b| b["identifier"]["value"] == ORDER),
        "no basedOn {ORDER}: {task}"
    );
    assert!(
        task["lastModified"].as_str().is_some_and(|s| !s.is_empty()),
        "no lastModified: {task}"
    );
}

/// No patient data in a Task: no name, birth date, gender or MRN.
fn assert_no_patient_data(task: &Value) {
    let text = task.to_string();
    for phi in [
        "Chalmers",
        "Peter",
        "James",
        "1974-12-25",
        "birthDate",
        "gender",
    ] {
        assert!(!text.contains(phi), "{phi:?} is in a Task: {text}");
    }
    let ids = task["identifier"].as_array().cloned().unwrap_or_default();
    assert!(
        ids.iter().all(|i| i["value"] != "12345"),
        "the MRN is in a Task: {text}"
    );
}

#[test]
fn an_ehr_order_is_followed_by_its_task_on_the_ehrs_fhir_server() {
    let started = Instant::now();
    let server = EhrFhirServer::start();
    let extra = format!(
        "[fhir]\ntokens = [{{ partner = \"EHR_A\", sha256 = \"8389795806740c45b455568cac6fd33954603353d47f956f31ddcf7dca300479\" }}]\n\
         [sinks.ehr_tasks]\ntype = \"fhir_task\"\nbase_url = \"{}\"\ntimeout_ms = 5000\ntoken_env = \"{SINK_TOKEN_ENV}\"\n",
        server.base_url()
    );
    let hub = Hub::start_with(Setup {
        env: &[(SINK_TOKEN_ENV, SINK_TOKEN)],
        routes: Some(ROUTES),
        config_extra: Some(&extra),
        ..Setup::default()
    });

    // 1. The order, as a transaction: three creates.
    let (status, _, answer) = send(&hub, "POST", "/fhir", &order_bundle());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["resourceType"], "Bundle", "{answer}");
    assert_eq!(answer["type"], "transaction-response", "{answer}");
    assert_eq!(
        statuses(&answer),
        ["201 Created", "201 Created", "201 Created"],
        "{answer}"
    );
    let sr_location = answer["entry"][1]["response"]["location"]
        .as_str()
        .expect("the ServiceRequest's location")
        .to_string();
    let sr_id = sr_location
        .split('/')
        .nth(1)
        .filter(|_| sr_location.starts_with("ServiceRequest/"))
        .unwrap_or_else(|| panic!("location {sr_location:?}"))
        .to_string();

    // 2. On the EHR's server: the Task is created (no If-Match: the sink
    // knows no version yet), then updated with the version it got.
    wait_for_steps(&hub, &server, &["order.placed", "collection.completed"]);
    let p = puts(&server, ORDER);
    assert_eq!(p[0].status, 201, "{:?}", p[0]);
    assert_eq!(p[0].if_match, None, "the first PUT creates: {:?}", p[0]);
    let placed = p[0].body.clone().unwrap();
    assert_task_shape(&placed, "requested", "order.placed");
    assert_eq!(p[1].status, 200, "{:?}", p[1]);
    assert_eq!(p[1].if_match.as_deref(), Some("W/\"1\""), "{:?}", p[1]);
    assert_task_shape(
        p[1].body.as_ref().unwrap(),
        "in-progress",
        "collection.completed",
    );
    assert_eq!(
        p[1].body.as_ref().unwrap()["lastModified"],
        "2026-11-21T08:30:00Z"
    );
    // The Task names the event that last updated it: the order.placed the
    // orders file got.
    hub.wait_for("order.placed in the orders file", || {
        !hub.sink("orders").is_empty()
    });
    let orders = hub.sink("orders");
    assert_eq!(orders[0]["kind"], "order.placed", "{orders:?}");
    assert_eq!(
        placed["extension"][0]["valueString"], orders[0]["event_id"],
        "{placed}"
    );

    // 3. The shipment is booked: a Task at cgthub's /fhir with business
    // status `shipped` → shipment.created → the EHR's Task, version 2 → 3.
    let (status, headers, created) = send(&hub, "POST", "/fhir/Task", &shipped_task());
    assert_eq!(status, 201, "{created}");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "location" && v.contains("/fhir/Task/")),
        "{headers:?}"
    );
    wait_for_steps(
        &hub,
        &server,
        &["order.placed", "collection.completed", "shipment.created"],
    );
    let p = puts(&server, ORDER);
    assert_eq!(p[2].if_match.as_deref(), Some("W/\"2\""), "{:?}", p[2]);
    assert_task_shape(
        p[2].body.as_ref().unwrap(),
        "in-progress",
        "shipment.created",
    );
    assert_eq!(
        p[2].body.as_ref().unwrap()["lastModified"],
        "2026-11-22T10:15:00Z"
    );
    assert_eq!(server.task(ORDER).unwrap().version, 3);

    // 4. A nurse edits the Task in the EHR (owner, a note): version 4, which
    // cgthub has not seen.
    let edited = server.edit_task(ORDER, |t| {
        t["owner"] = json!({"display": "Ward 7 cell therapy nurse"});
        t["note"] = json!([{"text": "Patient informed of the shipment"}]);
    });
    assert_eq!(edited, 4);

    // 5. The EHR revokes the order → order.cancelled. The sink's PUT with
    // W/"3" is refused 412; it reads the Task, keeps the nurse's edits and
    // succeeds with W/"4".
    let (status, _, current) = send(
        &hub,
        "GET",
        &format!("/fhir/ServiceRequest/{sr_id}"),
        &Value::Null,
    );
    assert_eq!(status, 200, "{current}");
    let mut revoked = current.clone();
    revoked["status"] = json!("revoked");
    revoked.as_object_mut().unwrap().remove("meta");
    let (status, _, updated) = send(
        &hub,
        "PUT",
        &format!("/fhir/ServiceRequest/{sr_id}"),
        &revoked,
    );
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["status"], "revoked", "{updated}");
    wait_for_steps(
        &hub,
        &server,
        &[
            "order.placed",
            "collection.completed",
            "shipment.created",
            "order.cancelled",
        ],
    );
    let path = format!("/fhir/Task/{ORDER}");
    let tail: Vec<(String, Option<String>, u16)> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == path)
        .skip(3)
        .map(|r| (r.method, r.if_match, r.status))
        .collect();
    assert_eq!(
        tail,
        [
            ("PUT".to_string(), Some("W/\"3\"".to_string()), 412),
            ("GET".to_string(), None, 200),
            ("PUT".to_string(), Some("W/\"4\"".to_string()), 200),
        ],
        "the conflict and its re-read"
    );
    let last = server.task(ORDER).unwrap();
    assert_eq!(last.version, 5);
    assert_task_shape(&last.body, "cancelled", "order.cancelled");
    assert_eq!(
        last.body["owner"]["display"], "Ward 7 cell therapy nurse",
        "{}",
        last.body
    );
    assert_eq!(
        last.body["note"][0]["text"], "Patient informed of the shipment",
        "{}",
        last.body
    );

    // 6. Everything delivered, nothing dead-lettered; every request to the
    // EHR carried the sink's token; no Task on the EHR's server holds
    // patient data; no other Task was written.
    hub.wait_delivered();
    let letters = hub.get_json("/api/dead-letters?status=all&limit=100");
    assert_eq!(letters["dead_letters"], json!([]), "{letters}");
    let requests = server.requests();
    for r in &requests {
        assert_eq!(
            r.authorization.as_deref(),
            Some(format!("Bearer {SINK_TOKEN}").as_str()),
            "{r:?}"
        );
        assert_eq!(r.path, path, "a request for another Task: {r:?}");
        if let Some(body) = &r.body {
            assert_no_patient_data(body);
        }
    }
    assert_no_patient_data(&last.body);
    assert_eq!(requests.len(), 6, "{requests:#?}");
    eprintln!("round trip in {:?}", started.elapsed());
}
