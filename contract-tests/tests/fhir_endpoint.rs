//! The FHIR R4 endpoint as an EHR sees it: `cgthub serve` answers at
//! `/fhir` on the HTTP address, each partner with its own bearer token.
//! What comes back (statuses, OperationOutcomes, Location and ETag) and
//! what arrives in the sinks, `/api/events` and `/api/dead-letters`.

use std::collections::BTreeMap;

use contract_tests::{fixture, http_request, Hub, Setup};
use serde_json::{json, Value};

/// The EHR's bearer token, and its SHA-256 as the config keeps it
/// (`printf %s ehr-a-secret-token | sha256sum`).
const TOKEN: &str = "ehr-a-secret-token";
const FHIR_CONFIG: &str = "[fhir]\ntokens = [{ partner = \"EHR_A\", sha256 = \"8389795806740c45b455568cac6fd33954603353d47f956f31ddcf7dca300479\" }]\n";

const COI: &str = "CHW000126000001";
const FHIR_JSON: &str = "application/fhir+json";

fn start() -> Hub {
    start_with(FHIR_CONFIG)
}

fn start_with(config: &str) -> Hub {
    Hub::start_with(Setup {
        config_extra: Some(config),
        ..Setup::default()
    })
}

/// One HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {} {}", self.status, self.body))
    }
}

fn send(hub: &Hub, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let (status, headers, body) = http_request(hub.http, method, path, headers, body)
        .unwrap_or_else(|e| {
            panic!(
                "{method} {path}: no answer ({e}); the hub log:\n{}",
                hub.log()
            )
        });
    assert!(
        status != 0,
        "{method} {path}: no HTTP answer; the hub log:\n{}",
        hub.log()
    );
    Answer {
        status,
        headers,
        body,
    }
}

fn auth() -> String {
    format!("Bearer {TOKEN}")
}

/// POST with the EHR's token, as application/fhir+json.
fn post(hub: &Hub, path: &str, body: &[u8]) -> Answer {
    let auth = auth();
    send(
        hub,
        "POST",
        path,
        &[("Authorization", &auth), ("Content-Type", FHIR_JSON)],
        body,
    )
}

fn post_json(hub: &Hub, path: &str, body: &Value) -> Answer {
    post(hub, path, body.to_string().as_bytes())
}

fn put_json(hub: &Hub, path: &str, body: &Value, extra: &[(&str, &str)]) -> Answer {
    let auth = auth();
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", FHIR_JSON),
    ];
    headers.extend_from_slice(extra);
    send(hub, "PUT", path, &headers, body.to_string().as_bytes())
}

fn get(hub: &Hub, path: &str) -> Answer {
    let auth = auth();
    send(hub, "GET", path, &[("Authorization", &auth)], b"")
}

/// A FHIR error answer: the status, an OperationOutcome whose first issue is
/// an error with `code`, a diagnostics text and (when given) `expression`.
fn assert_outcome(a: &Answer, status: u16, code: &str, expression: Option<&str>) -> Value {
    assert_eq!(a.status, status, "status: {}", a.body);
    assert!(
        a.header("content-type")
            .is_some_and(|c| c.starts_with(FHIR_JSON)),
        "Content-Type {:?}",
        a.header("content-type")
    );
    let v = a.json();
    assert_eq!(v["resourceType"], "OperationOutcome", "{v}");
    let issue = &v["issue"][0];
    assert_eq!(issue["severity"], "error", "{v}");
    assert_eq!(issue["code"], code, "{v}");
    assert!(
        issue["diagnostics"].as_str().is_some_and(|d| !d.is_empty()),
        "no diagnostics: {v}"
    );
    if let Some(e) = expression {
        assert_eq!(issue["expression"], json!([e]), "{v}");
    }
    v
}

/// `Type/id/_history/N` → (id, N).
fn split_location(location: &str, ty: &str) -> (String, String) {
    let parts: Vec<&str> = location.split('/').collect();
    assert!(
        parts.len() == 4 && parts[0] == ty && !parts[1].is_empty() && parts[2] == "_history",
        "location {location:?} is not {ty}/id/_history/N"
    );
    assert!(
        parts[3].parse::<u64>().is_ok(),
        "version in {location:?} is not a number"
    );
    (parts[1].to_string(), parts[3].to_string())
}

/// The hub's panic message, if it logged one.
fn panic_line(hub: &Hub) -> String {
    let log = hub.log();
    let mut lines = log.lines().skip_while(|l| !l.contains("panicked at"));
    match (lines.next(), lines.next()) {
        (Some(at), what) => format!("{at} {}", what.unwrap_or_default()),
        (None, _) => "(no panic in the log)".to_string(),
    }
}

fn events(hub: &Hub, kind: Option<&str>) -> Vec<Value> {
    let path = match kind {
        Some(k) => format!("/api/events?kind={k}&limit=10000"),
        None => "/api/events?limit=10000".to_string(),
    };
    hub.get_json(&path)["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn dead_letters(hub: &Hub) -> Vec<Value> {
    hub.get_json("/api/dead-letters?status=all&limit=10000")["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Dead letters' reason codes, counted.
fn dead_letter_codes(hub: &Hub) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for d in dead_letters(hub) {
        *out.entry(d["code"].as_str().unwrap_or_default().to_string())
            .or_insert(0) += 1;
    }
    out
}

/// Every line of every sink file, as text.
fn all_sink_text(hub: &Hub) -> String {
    let mut out = String::new();
    if let Ok(dir) = std::fs::read_dir(hub.dir.path().join("out")) {
        for f in dir.flatten() {
            out.push_str(&std::fs::read_to_string(f.path()).unwrap_or_default());
        }
    }
    out
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

/// The EHR's order: a Patient (MRN, COI), the ServiceRequest for the
/// therapy (placer number, conditional create on it), the apheresis
/// Specimen, all by `urn:uuid:` references.
fn order_bundle(bundle_id: &str) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "identifier": {"system": "urn:ehr:bundles", "value": bundle_id},
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
                         "system": "urn:oid:1.2.3.4", "value": "ORD-1001"}
                    ],
                    "status": "active",
                    "intent": "order",
                    "code": {"coding": [{"system": "urn:cgt:product", "code": "K9", "display": "CAR-T"}]},
                    "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"},
                    "authoredOn": "2026-11-20T09:00:00+01:00",
                    "specimen": [{"reference": "urn:uuid:33333333-3333-4333-8333-333333333333"}]
                },
                "request": {"method": "POST", "url": "ServiceRequest",
                            "ifNoneExist": "identifier=urn:oid:1.2.3.4|ORD-1001"}
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

/// A ServiceRequest posted on its own (no COI on itself).
fn service_request(order: &str, subject: &str) -> Value {
    json!({
        "resourceType": "ServiceRequest",
        "identifier": [{"type": {"coding": [{"code": "PLAC"}]}, "system": "urn:oid:1.2.3.4", "value": order}],
        "status": "active",
        "intent": "order",
        "code": {"coding": [{"system": "urn:cgt:product", "code": "K9"}]},
        "subject": {"reference": subject},
        "authoredOn": "2026-11-22T09:00:00Z"
    })
}

fn response_statuses(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    e["response"]["status"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn response_locations(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    e["response"]["location"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn metadata_is_a_capability_statement() {
    let hub = start();
    // No token: the CapabilityStatement is public (how a client finds out
    // what the server does before it has credentials).
    let a = send(&hub, "GET", "/fhir/metadata", &[], b"");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a
        .header("content-type")
        .is_some_and(|c| c.starts_with(FHIR_JSON)));
    let cs = a.json();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let rest = &cs["rest"][0];
    assert_eq!(rest["mode"], "server");
    let sr = rest["resource"]
        .as_array()
        .expect("rest.resource")
        .iter()
        .find(|r| r["type"] == "ServiceRequest")
        .expect("ServiceRequest is listed");
    let codes: Vec<&str> = sr["interaction"]
        .as_array()
        .expect("interactions")
        .iter()
        .filter_map(|i| i["code"].as_str())
        .collect();
    assert!(
        codes.contains(&"create") && codes.contains(&"update"),
        "{codes:?}"
    );
    let system: Vec<&str> = rest["interaction"]
        .as_array()
        .expect("rest.interaction")
        .iter()
        .filter_map(|i| i["code"].as_str())
        .collect();
    assert!(
        system.contains(&"transaction") && system.contains(&"batch"),
        "{system:?}"
    );
}

/// Steps an EHR goes through: a transaction, its retry, a second Bundle
/// for the same order, a ServiceRequest naming the Patient by id, its
/// revocation, reads.
#[test]
fn transaction_is_taken_once_and_later_requests_resolve_against_it() {
    let hub = start();

    // 1. The transaction: three creates.
    let a = post_json(&hub, "/fhir", &order_bundle("b-1"));
    assert_eq!(a.status, 200, "{}", a.body);
    let first = a.json();
    assert_eq!(first["resourceType"], "Bundle");
    assert_eq!(first["type"], "transaction-response");
    assert_eq!(
        response_statuses(&first),
        ["201 Created", "201 Created", "201 Created"]
    );
    let locations = response_locations(&first);
    let mut ids = Vec::new();
    for ((loc, ty), entry) in locations
        .iter()
        .zip(["Patient", "ServiceRequest", "Specimen"])
        .zip(first["entry"].as_array().unwrap())
    {
        let (id, version) = split_location(loc, ty);
        assert_eq!(
            entry["response"]["etag"],
            format!("W/\"{version}\""),
            "{entry}"
        );
        ids.push(id);
    }
    let patient_id = ids[0].clone();

    hub.wait_delivered();
    let orders = hub.sink("orders");
    assert_eq!(orders.len(), 1, "{orders:?}");
    let placed = &orders[0];
    assert_eq!(placed["kind"], "order.placed");
    assert_eq!(placed["coi"], COI);
    assert_eq!(placed["order_id"], "ORD-1001");
    assert_eq!(placed["product"], "K9");
    assert_eq!(placed["source"]["connector"], "fhir");
    assert_eq!(placed["source"]["partner"], "EHR_A");
    // routes/default.toml: collection.* → therapy_file.
    let therapy = hub.sink("therapy");
    let collected = of_kind(&therapy, "collection.completed");
    assert_eq!(collected.len(), 1, "{therapy:?}");
    assert_eq!(collected[0]["coi"], COI);
    assert_eq!(collected[0]["order_id"], "ORD-1001");
    assert_eq!(collected[0]["occurred_at"], "2026-11-21T08:30:00Z");
    assert_eq!(collected[0]["source"]["partner"], "EHR_A");
    let before = events(&hub, None).len();

    // 2. The same Bundle again (a retry: same Bundle.identifier): the same
    // resources, nothing new.
    let a = post_json(&hub, "/fhir", &order_bundle("b-1"));
    assert_eq!(a.status, 200, "{}", a.body);
    let again = a.json();
    assert_eq!(again["type"], "transaction-response");
    assert_eq!(response_locations(&again), locations);
    assert_eq!(events(&hub, None).len(), before, "a retry made events");

    // 3. Another Bundle for the same order: the conditional create finds
    // the ServiceRequest; no second order.placed.
    let a = post_json(&hub, "/fhir", &order_bundle("b-2"));
    assert_eq!(a.status, 200, "{}", a.body);
    let other = a.json();
    let statuses = response_statuses(&other);
    assert_eq!(statuses[1], "200 OK", "{other}");
    assert_eq!(response_locations(&other)[1], locations[1]);
    assert_eq!(events(&hub, Some("order.placed")).len(), 1);

    // 4. A ServiceRequest naming the Patient by id: the COI is the one of
    // the Patient cgthub already holds.
    let a = post_json(
        &hub,
        "/fhir/ServiceRequest",
        &service_request("ORD-2002", &format!("Patient/{patient_id}")),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let location = a.header("location").expect("Location").to_string();
    let prefix = format!("http://{}/fhir/", hub.http);
    let rel = location
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("Location {location:?} is not under {prefix}"));
    let (sr_id, version) = split_location(rel, "ServiceRequest");
    assert_eq!(a.header("etag"), Some(format!("W/\"{version}\"").as_str()));
    let created = a.json();
    assert_eq!(created["resourceType"], "ServiceRequest");
    assert_eq!(created["id"], sr_id.as_str());
    assert_eq!(created["meta"]["versionId"], version.as_str());
    hub.wait_for("order ORD-2002 in the orders sink", || {
        hub.sink("orders")
            .iter()
            .any(|e| e["order_id"] == "ORD-2002")
    });
    let orders = hub.sink("orders");
    let ord2 = orders.iter().find(|e| e["order_id"] == "ORD-2002").unwrap();
    assert_eq!(ord2["kind"], "order.placed");
    assert_eq!(ord2["coi"], COI, "{ord2}");

    // 5. Reads.
    let a = get(&hub, &format!("/fhir/ServiceRequest/{sr_id}"));
    assert_eq!(a.status, 200, "{}", a.body);
    let read = a.json();
    assert_eq!(read["id"], sr_id.as_str());
    assert_eq!(read["meta"]["versionId"], version.as_str());
    assert_eq!(read["status"], "active");
    assert_eq!(a.header("etag"), Some(format!("W/\"{version}\"").as_str()));
    let a = get(&hub, "/fhir/ServiceRequest/no-such-id");
    assert_outcome(&a, 404, "not-found", None);

    // 6. The EHR revokes the order: an update of what exists → 200, a new
    // version, order.cancelled.
    let mut revoked = created.clone();
    revoked["status"] = json!("revoked");
    revoked.as_object_mut().unwrap().remove("meta");
    let a = put_json(
        &hub,
        &format!("/fhir/ServiceRequest/{sr_id}"),
        &revoked,
        &[],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let location = a.header("location").expect("Location").to_string();
    let (id2, version2) = split_location(location.strip_prefix(&prefix).unwrap(), "ServiceRequest");
    assert_eq!(id2, sr_id);
    assert_ne!(version2, version, "an update is a new version");
    hub.wait_for("order.cancelled in the orders sink", || {
        hub.sink("orders")
            .iter()
            .any(|e| e["kind"] == "order.cancelled")
    });
    let orders = hub.sink("orders");
    let cancelled = of_kind(&orders, "order.cancelled");
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0]["order_id"], "ORD-2002");
    assert_eq!(cancelled[0]["coi"], COI);
    let read = get(&hub, &format!("/fhir/ServiceRequest/{sr_id}")).json();
    assert_eq!(read["status"], "revoked");
    assert_eq!(read["meta"]["versionId"], version2.as_str());

    // An update whose body names another resource than the URL.
    let a = put_json(&hub, "/fhir/ServiceRequest/another-id", &revoked, &[]);
    assert_outcome(&a, 400, "invalid", Some("ServiceRequest.id"));

    // 7. The Patient's name and birth date stay in cgthub: no sink has them.
    hub.wait_delivered();
    let text = all_sink_text(&hub);
    for phi in ["Chalmers", "Peter", "1974-12-25"] {
        assert!(!text.contains(phi), "{phi:?} is in a sink:\n{text}");
    }
}

/// A second Bundle for an order cgthub holds: its Specimen's request names
/// the ServiceRequest by `urn:uuid:`, which the conditional create resolved
/// to the ServiceRequest already held.
#[test]
fn a_later_bundle_resolves_references_to_the_order_already_held() {
    let hub = start();
    assert_eq!(post_json(&hub, "/fhir", &order_bundle("b-1")).status, 200);
    let a = post_json(&hub, "/fhir", &order_bundle("b-2"));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(response_statuses(&a.json())[1], "200 OK");
    let collected = events(&hub, Some("collection.completed"));
    assert_eq!(collected.len(), 2, "{collected:?}");
    for c in &collected {
        assert_eq!(c["coi"], COI, "{c}");
        // The second Bundle's Specimen.request (urn:uuid:2222…) is rewritten to
        // ServiceRequest/<the id If-None-Exist found>, and resolves to that
        // order: ORD-1001.
        assert_eq!(c["order_id"], "ORD-1001", "{c}");
    }
}

/// `If-Match` (version-aware update: the CapabilityStatement declares
/// `versioning: versioned-update`) on a stale version.
#[test]
fn an_update_with_a_stale_if_match_is_refused() {
    let hub = start();
    let a = post_json(
        &hub,
        "/fhir/ServiceRequest",
        &json!({
            "resourceType": "ServiceRequest",
            "identifier": [
                {"type": {"coding": [{"code": "PLAC"}]}, "system": "urn:oid:1.2.3.4", "value": "ORD-8"},
                {"type": {"coding": [{"code": "COI"}]}, "value": COI}
            ],
            "status": "active", "intent": "order",
            "code": {"coding": [{"code": "K9"}]},
            "subject": {"reference": "Patient/elsewhere"},
            "authoredOn": "2026-11-22T09:00:00Z"
        }),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let mut sr = a.json();
    let id = sr["id"].as_str().unwrap().to_string();
    sr["status"] = json!("revoked");
    let a = put_json(
        &hub,
        &format!("/fhir/ServiceRequest/{id}"),
        &sr,
        &[("If-Match", "W/\"999\"")],
    );
    // A stale If-Match: 412 Precondition Failed (FHIR version-aware update,
    // RFC 9110 §13.1.1), and nothing is taken.
    assert_outcome(&a, 412, "conflict", None);
    assert!(events(&hub, Some("order.cancelled")).is_empty());
}

/// Refusals: each an OperationOutcome, never a 5xx; every body refused
/// after authentication is kept as a dead letter with its reason.
#[test]
fn refusals_are_operation_outcomes_and_their_bodies_are_kept() {
    let hub = start();
    let sr = service_request("ORD-9", "Patient/x").to_string();

    // Malformed JSON.
    let malformed = br#"{"resourceType": "Bundle", "type": "transaction", "entry": ["#;
    let a = post(&hub, "/fhir", malformed);
    assert_outcome(&a, 400, "structure", None);

    // No token, a wrong token: 401 with the challenge; not stored.
    let before = dead_letters(&hub).len();
    let a = send(
        &hub,
        "POST",
        "/fhir/ServiceRequest",
        &[("Content-Type", FHIR_JSON)],
        sr.as_bytes(),
    );
    assert_outcome(&a, 401, "login", None);
    assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    let a = send(
        &hub,
        "POST",
        "/fhir/ServiceRequest",
        &[
            ("Authorization", "Bearer not-the-token"),
            ("Content-Type", FHIR_JSON),
        ],
        sr.as_bytes(),
    );
    assert_outcome(&a, 401, "login", None);
    assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    let a = send(
        &hub,
        "GET",
        "/fhir/ServiceRequest/x",
        &[("Authorization", "Bearer not-the-token")],
        b"",
    );
    assert_outcome(&a, 401, "login", None);
    assert_eq!(
        dead_letters(&hub).len(),
        before,
        "an unauthenticated body was stored"
    );

    // A Patient where a Bundle is expected.
    let a = post_json(
        &hub,
        "/fhir",
        &json!({"resourceType": "Patient", "gender": "female"}),
    );
    assert_outcome(&a, 422, "invalid", None);

    // A transaction whose 2nd entry has a code outside the required value
    // set: refused whole; nothing of it is taken.
    let events_before = events(&hub, None).len();
    let mut bogus = order_bundle("b-bogus");
    bogus["entry"][1]["resource"]["status"] = json!("bogus");
    let a = post_json(&hub, "/fhir", &bogus);
    assert_outcome(
        &a,
        422,
        "code-invalid",
        Some("Bundle.entry[1].resource.status"),
    );
    assert_eq!(events(&hub, None).len(), events_before);
    // The Patient (entry 0) was not kept either: the same Bundle fixed
    // creates all three.
    let fixed = post_json(&hub, "/fhir", &order_bundle("b-fixed"));
    assert_eq!(fixed.status, 200, "{}", fixed.body);
    assert_eq!(
        response_statuses(&fixed.json()),
        ["201 Created", "201 Created", "201 Created"]
    );

    // A resource type the endpoint does not take.
    let a = post_json(
        &hub,
        "/fhir/Medication",
        &json!({"resourceType": "Medication"}),
    );
    assert_outcome(&a, 404, "not-supported", None);

    // Not JSON by its Content-Type.
    let auth = auth();
    let a = send(
        &hub,
        "POST",
        "/fhir/ServiceRequest",
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        sr.as_bytes(),
    );
    assert_outcome(&a, 415, "not-supported", None);

    // Every refused body is kept, with its reason code.
    let codes = dead_letter_codes(&hub);
    let expected: BTreeMap<String, usize> = [
        ("malformed_json", 1),
        ("wrong_resource_type", 1),
        ("invalid_code", 1),
        ("unsupported_resource_type", 1),
        ("unsupported_interaction", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(codes, expected);
    let letters = dead_letters(&hub);
    let bad_json = letters
        .iter()
        .find(|d| d["code"] == "malformed_json")
        .unwrap();
    assert_eq!(bad_json["partner"], "EHR_A");
    assert_eq!(bad_json["connector"], "fhir");
    let detail = hub.get_json(&format!("/api/dead-letters/{}", bad_json["id"]));
    assert_eq!(
        detail["message"]["payload"],
        String::from_utf8_lossy(malformed).as_ref(),
        "the refused body is kept as sent"
    );
}

/// An element R4 does not define, inside a transaction entry.
#[test]
fn an_unknown_element_in_a_transaction_is_refused_at_that_element() {
    let hub = start();
    let mut bundle = order_bundle("b-unknown");
    bundle["entry"][1]["resource"]["frobnicate"] = json!(true);
    let a = http_request(
        hub.http,
        "POST",
        "/fhir",
        &[("Authorization", &auth()), ("Content-Type", FHIR_JSON)],
        bundle.to_string().as_bytes(),
    );
    // A Bundle that does not fit the R4 model is answered 422 at the element
    // (fhirbolt 0.4 panics on empty JSON arrays: cgthub checks for them
    // first and guards the model call).
    let (status, _, body) = a.unwrap_or_else(|e| panic!("no answer ({e})"));
    assert!(
        status != 0,
        "no HTTP answer (the handler panicked): {}",
        panic_line(&hub)
    );
    let a = Answer {
        status,
        headers: Vec::new(),
        body,
    };
    let v = a.json();
    assert_eq!(a.status, 422, "{v}");
    assert_eq!(v["resourceType"], "OperationOutcome");
    assert_eq!(v["issue"][0]["code"], "structure");
    assert_eq!(
        v["issue"][0]["expression"],
        json!(["Bundle.entry[1].resource.frobnicate"])
    );
    assert!(events(&hub, None).is_empty());
    assert_eq!(
        dead_letter_codes(&hub).get("invalid_resource"),
        Some(&1),
        "the refused body is kept"
    );
}

/// A required element missing inside a transaction entry.
#[test]
fn a_missing_required_element_in_a_transaction_is_refused_at_that_element() {
    let hub = start();
    let mut bundle = order_bundle("b-missing");
    bundle["entry"][1]["resource"]
        .as_object_mut()
        .unwrap()
        .remove("status");
    let a = http_request(
        hub.http,
        "POST",
        "/fhir",
        &[("Authorization", &auth()), ("Content-Type", FHIR_JSON)],
        bundle.to_string().as_bytes(),
    );
    // A Bundle that does not fit the model gets an answer, not a dropped
    // connection.
    let (status, _, body) = a.unwrap_or_else(|e| panic!("no answer ({e})"));
    assert!(
        status != 0,
        "no HTTP answer (the handler panicked): {}",
        panic_line(&hub)
    );
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["resourceType"], "OperationOutcome");
    assert_eq!(v["issue"][0]["code"], "required");
    assert_eq!(
        v["issue"][0]["expression"],
        json!(["Bundle.entry[1].resource.status"])
    );
    assert!(events(&hub, None).is_empty());
    assert_eq!(dead_letter_codes(&hub).get("invalid_resource"), Some(&1));
}

#[test]
fn a_body_over_the_limit_is_413_and_its_head_kept() {
    let hub = start_with(&format!("{FHIR_CONFIG}max_body_bytes = 2048\n"));
    let mut bundle = order_bundle("b-big");
    bundle["entry"][2]["resource"]["note"] = json!([{"text": "x".repeat(4000)}]);
    let body = bundle.to_string();
    assert!(body.len() > 2048);
    let a = post(&hub, "/fhir", body.as_bytes());
    assert_outcome(&a, 413, "too-costly", None);
    assert!(events(&hub, None).is_empty());
    let letters = dead_letters(&hub);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["code"], "too_large");
    let detail = hub.get_json(&format!("/api/dead-letters/{}", letters[0]["id"]));
    let kept = detail["message"]["payload"].as_str().unwrap_or_default();
    assert!(
        !kept.is_empty() && kept.len() <= 2048 && body.starts_with(kept),
        "kept {} bytes",
        kept.len()
    );
    // A body within the limit is still taken.
    let a = post_json(
        &hub,
        "/fhir/ServiceRequest",
        &service_request("ORD-S", "Patient/p"),
    );
    assert_eq!(a.status, 201, "{}", a.body);
}

#[test]
fn a_batch_answers_each_entry_on_its_own() {
    let hub = start();
    let batch = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {
                    "resourceType": "ServiceRequest",
                    "identifier": [
                        {"type": {"coding": [{"code": "PLAC"}]}, "system": "urn:oid:1.2.3.4", "value": "ORD-3003"},
                        {"type": {"coding": [{"code": "COI"}]}, "system": "urn:isbt128", "value": COI}
                    ],
                    "status": "active", "intent": "order",
                    "code": {"coding": [{"code": "K9"}]},
                    "subject": {"reference": "Patient/held-elsewhere"},
                    "authoredOn": "2026-11-23T09:00:00Z"
                },
                "request": {"method": "POST", "url": "ServiceRequest"}
            },
            {
                "resource": {
                    "resourceType": "ServiceRequest",
                    "identifier": [{"type": {"coding": [{"code": "PLAC"}]}, "value": "ORD-3004"}],
                    "status": "bogus", "intent": "order",
                    "subject": {"reference": "Patient/held-elsewhere"}
                },
                "request": {"method": "POST", "url": "ServiceRequest"}
            }
        ]
    });
    let a = post_json(&hub, "/fhir", &batch);
    assert_eq!(a.status, 200, "{}", a.body);
    let b = a.json();
    assert_eq!(b["type"], "batch-response");
    let entries = b["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["response"]["status"], "201 Created");
    split_location(
        entries[0]["response"]["location"]
            .as_str()
            .unwrap_or_default(),
        "ServiceRequest",
    );
    let bad = &entries[1]["response"];
    assert!(
        bad["status"].as_str().is_some_and(|s| s.starts_with("422")),
        "{bad}"
    );
    let outcome = &bad["outcome"];
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["severity"], "error");
    assert_eq!(outcome["issue"][0]["code"], "code-invalid");
    assert_eq!(
        outcome["issue"][0]["expression"],
        json!(["Bundle.entry[1].resource.status"])
    );
    hub.wait_for("ORD-3003 in the orders sink", || {
        hub.sink("orders")
            .iter()
            .any(|e| e["order_id"] == "ORD-3003")
    });
    let orders = hub.sink("orders");
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert_eq!(orders[0]["kind"], "order.placed");
    assert_eq!(orders[0]["coi"], COI);
    assert_eq!(dead_letter_codes(&hub).get("invalid_code"), Some(&1));
}

/// Where a corpus file goes: a Bundle to `/fhir`, a resource to
/// `/fhir/{resourceType}`; XML by its root element.
fn natural_endpoint(name: &str, bytes: &[u8]) -> (String, &'static str) {
    if name.ends_with(".xml") {
        let text = String::from_utf8_lossy(bytes);
        let root = text
            .split('<')
            .find(|t| !t.is_empty() && !t.starts_with('?') && !t.starts_with('!'))
            .and_then(|t| t.split([' ', '>']).next())
            .expect("root element")
            .to_string();
        (format!("/fhir/{root}"), "application/fhir+xml")
    } else {
        let v: Value = serde_json::from_slice(bytes).expect("corpus JSON");
        let ty = v["resourceType"].as_str().expect("resourceType");
        if ty == "Bundle" {
            ("/fhir".to_string(), FHIR_JSON)
        } else {
            (format!("/fhir/{ty}"), FHIR_JSON)
        }
    }
}

fn corpus_files() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fhir");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("fixtures/fhir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") || n.ends_with(".xml"))
        .collect();
    names.sort();
    names
}

fn post_corpus(hub: &Hub, name: &str) -> Answer {
    let bytes = fixture(&format!("fhir/{name}"));
    let (path, content_type) = natural_endpoint(name, &bytes);
    let auth = auth();
    send(
        hub,
        "POST",
        &path,
        &[("Authorization", &auth), ("Content-Type", content_type)],
        &bytes,
    )
}

/// Every corpus file gets a FHIR answer: 2xx, or 4xx with an
/// OperationOutcome that says why; never a 5xx, never a dropped connection.
#[test]
fn every_corpus_file_gets_a_fhir_answer() {
    let hub = start();
    let files = corpus_files();
    assert_eq!(files.len(), 5, "{files:?}");
    for name in &files {
        let a = post_corpus(&hub, name);
        assert!(a.status < 500, "{name}: {} {}", a.status, a.body);
        if !(200..300).contains(&a.status) {
            assert!((400..500).contains(&a.status), "{name}: {}", a.status);
            let v = a.json();
            assert_eq!(v["resourceType"], "OperationOutcome", "{name}: {v}");
            assert!(
                v["issue"][0]["diagnostics"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{name}: {v}"
            );
        }
    }
}

/// The official R4 transaction example. Its entries 0-2 are creates and an
/// update (taken), entry 3 is a conditional update (`PUT
/// Patient?identifier=…`), entry 4 a version-aware update (`ifMatch`),
/// 5-6 DELETEs, 7 an operation (`POST ValueSet/$lookup`), 8-9 GETs: this
/// endpoint takes creates and updates only, so the transaction is refused
/// whole, at its first entry it cannot do (3), and nothing is taken.
#[test]
fn corpus_official_transaction_example_is_refused_whole() {
    let hub = start();
    let a = post_corpus(&hub, "r4_Bundle-bundle-transaction.json");
    // Conditional update (`PUT Patient?identifier=…`) is not supported: 422
    // not-supported at the entry's request.url, and the whole transaction is
    // refused.
    assert_outcome(
        &a,
        422,
        "not-supported",
        Some("Bundle.entry[3].request.url"),
    );
    assert!(events(&hub, None).is_empty());
    assert_eq!(dead_letters(&hub).len(), 1, "the refused Bundle is kept");
}

/// The same example sent as a batch: each entry answered on its own.
#[test]
fn corpus_official_transaction_example_as_a_batch_answers_each_entry() {
    let hub = start();
    let mut bundle: Value =
        serde_json::from_slice(&fixture("fhir/r4_Bundle-bundle-transaction.json")).unwrap();
    bundle["type"] = json!("batch");
    let a = post_json(&hub, "/fhir", &bundle);
    assert_eq!(a.status, 200, "{}", a.body);
    let b = a.json();
    assert_eq!(b["type"], "batch-response");
    let entries = b["entry"].as_array().expect("entries").clone();
    assert_eq!(entries.len(), 10, "{b}");
    let mut failures = Vec::new();
    let mut expect = |i: usize, status: &str, code: Option<&str>, expression: Option<&str>| {
        let r = &entries[i]["response"];
        let got = r["status"].as_str().unwrap_or_default();
        if !got.starts_with(status) {
            failures.push(format!("entry {i}: status {got:?}, expected {status}: {r}"));
            return;
        }
        if let Some(code) = code {
            let issue = &r["outcome"]["issue"][0];
            if issue["code"] != code {
                failures.push(format!(
                    "entry {i}: issue code {}, expected {code}: {r}",
                    issue["code"]
                ));
            }
            if let Some(e) = expression {
                if issue["expression"] != json!([e]) {
                    failures.push(format!(
                        "entry {i}: expression {}, expected [{e:?}]: {r}",
                        issue["expression"]
                    ));
                }
            }
        }
    };
    // Two creates; an update of Patient/123, which cgthub does not hold:
    // update as create (updateCreate: true).
    expect(0, "201", None, None);
    expect(1, "201", None, None);
    expect(2, "201", None, None);
    // As in the transaction: conditional update is refused at request.url.
    expect(
        3,
        "422",
        Some("not-supported"),
        Some("Bundle.entry[3].request.url"),
    );
    // `ifMatch: W/"2"` on Patient/123a, which does not exist: 412.
    expect(4, "412", None, None);
    // DELETE and GET entries: the method is not supported here, said at
    // request.method.
    expect(
        5,
        "422",
        Some("not-supported"),
        Some("Bundle.entry[5].request.method"),
    );
    expect(
        6,
        "422",
        Some("not-supported"),
        Some("Bundle.entry[6].request.method"),
    );
    // An operation's Parameters: not a type this endpoint takes.
    expect(
        7,
        "404",
        Some("not-supported"),
        Some("Bundle.entry[7].resource"),
    );
    expect(
        8,
        "422",
        Some("not-supported"),
        Some("Bundle.entry[8].request.method"),
    );
    expect(
        9,
        "422",
        Some("not-supported"),
        Some("Bundle.entry[9].request.method"),
    );
    // Patients make no events; their names stay out of the sinks.
    hub.wait_delivered();
    let text = all_sink_text(&hub);
    if text.contains("Chalmers") {
        failures.push(format!("a patient name is in a sink:\n{text}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The official ServiceRequest example is valid R4, but it has neither an
/// order number (identifier) nor a time (authoredOn, occurrence[x]): no
/// order event can be made of it, so it is refused 422 (a processing
/// failure, pointing at the first element the mapping looked for) and
/// kept as a dead letter of the mapping stage.
#[test]
fn corpus_official_service_request_example_cannot_make_an_order() {
    let hub = start();
    let a = post_corpus(&hub, "r4_ServiceRequest-example.json");
    let v = assert_outcome(&a, 422, "processing", Some("ServiceRequest.authoredOn"));
    assert!(
        v["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("occurred_at"),
        "{v}"
    );
    assert!(events(&hub, None).is_empty());
    let letters = dead_letters(&hub);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["stage"], "map");
    assert_eq!(letters[0]["code"], "required_field_missing");
    // Not kept as a resource either: the id it carried is not readable.
    assert_eq!(get(&hub, "/fhir/ServiceRequest/example").status, 404);
}

/// The official Task example (a lab Task, completed): valid R4, taken
/// (201, with a server-assigned id); its business status is text only,
/// not one of the vein-to-vein steps the Task mapping knows, so it makes
/// no event. References to resources cgthub does not hold are allowed.
#[test]
fn corpus_official_task_example_is_taken_without_an_event() {
    let hub = start();
    let a = post_corpus(&hub, "r4_Task-example6.json");
    assert_eq!(a.status, 201, "{}", a.body);
    let location = a.header("location").expect("Location").to_string();
    let rel = location
        .strip_prefix(&format!("http://{}/fhir/", hub.http))
        .expect("absolute Location");
    let (id, version) = split_location(rel, "Task");
    assert_ne!(id, "example6", "create assigns the id");
    let read = get(&hub, &format!("/fhir/Task/{id}"));
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["meta"]["versionId"], version.as_str());
    assert!(events(&hub, None).is_empty());
    assert!(dead_letters(&hub).is_empty());
}

/// The CIBMTR CMV viral load: valid R4, taken; one qc.result_reported in
/// the results sink. It names no COI (its Patient is not held), and the
/// test hub routes such events.
#[test]
fn corpus_cibmtr_observation_is_a_qc_result() {
    let hub = start();
    let a = post_corpus(&hub, "cibmtr_Observation-CMVDNAViralLoadIUmL.json");
    assert_eq!(a.status, 201, "{}", a.body);
    let obs = a.json();
    // The security label is the partner's: kept.
    assert_eq!(
        obs["meta"]["security"][0]["code"], "rc_99999",
        "{}",
        obs["meta"]
    );
    hub.wait_for("the result in the results sink", || {
        !hub.sink("results").is_empty()
    });
    let results = hub.sink("results");
    assert_eq!(results.len(), 1, "{results:?}");
    let e = &results[0];
    assert_eq!(e["kind"], "qc.result_reported");
    assert_eq!(e["occurred_at"], "2020-07-21T14:17:00Z");
    assert_eq!(e["source"]["connector"], "fhir");
    let r = &e["data"]["results"][0];
    assert_eq!(r["test"]["code"], "72493-0");
    assert_eq!(r["unit"], "[IU]/mL");
    // valueQuantity is `comparator: "<", value: 13700` (below the assay's
    // range): the event says value "<13700" and no exact numeric_value.
    let value = r["value"].as_str().unwrap_or_default();
    assert!(
        value.starts_with('<') || r["comparator"] == "<",
        "the result lost its comparator: {r}"
    );
}

/// The R5-build BiologicallyDerivedProduct is XML: this endpoint speaks
/// JSON only (the CapabilityStatement's `format`), so 415 with an
/// OperationOutcome, and the body is kept.
#[test]
fn corpus_xml_is_415() {
    let hub = start();
    let a = post_corpus(
        &hub,
        "r5build_BiologicallyDerivedProduct-example-autologousHCT.xml",
    );
    let v = assert_outcome(&a, 415, "not-supported", None);
    assert!(
        v["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("application/fhir+json"),
        "{v}"
    );
    assert!(events(&hub, None).is_empty());
    assert_eq!(
        dead_letter_codes(&hub).get("unsupported_interaction"),
        Some(&1)
    );
}

/// Interactions the endpoint does not do (delete, search, patch) are
/// refused as FHIR refuses them: an OperationOutcome, not an empty body.
#[test]
fn unsupported_interactions_answer_an_operation_outcome() {
    let hub = start();
    let mut failures = Vec::new();
    for (method, path) in [
        ("DELETE", "/fhir/ServiceRequest/x"),
        ("GET", "/fhir/ServiceRequest?identifier=ORD-1"),
        ("PATCH", "/fhir/ServiceRequest/x"),
    ] {
        let a = send(
            &hub,
            method,
            path,
            &[("Authorization", &auth()), ("Content-Type", FHIR_JSON)],
            b"{}",
        );
        // A method a matched route lacks: 405 with an OperationOutcome.
        let outcome = serde_json::from_str::<Value>(&a.body).unwrap_or(Value::Null);
        if a.status != 405 || outcome["resourceType"] != "OperationOutcome" {
            failures.push(format!("{method} {path}: {} {:?}", a.status, a.body));
        } else if outcome["issue"][0]["code"] != "not-supported" {
            failures.push(format!("{method} {path}: issue {}", outcome["issue"][0]));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The chain of identity holds over FHIR as over HL7: a second order that
/// claims the first one's specimen for another patient (another COI) is
/// answered 409 Conflict with an OperationOutcome, nothing of it goes on,
/// and it is quarantined; the first therapy's events are untouched. The
/// hub here runs the registry as shipped (`on_unknown = "hold"`).
#[test]
fn an_identity_conflict_is_409_and_nothing_goes_on() {
    let hub = Hub::start_with(Setup {
        config_extra: Some(FHIR_CONFIG),
        identity: Some("on_unknown = \"hold\""),
        ..Setup::default()
    });
    let first = post_json(&hub, "/fhir", &order_bundle("bundle-1"));
    assert_eq!(first.status, 200, "{}", first.body);
    hub.wait_delivered();
    let orders_before = events(&hub, Some("order.placed")).len();
    assert_eq!(orders_before, 1);

    // Another patient (COI …002, another MRN), another order, the same
    // specimen SPC-77 of urn:lab.
    let mut second = order_bundle("bundle-2");
    let text = second.to_string();
    let text = text
        .replace(COI, "CHW000126000002")
        .replace("\"12345\"", "\"67890\"")
        .replace("ORD-1001", "ORD-2002")
        .replace("Chalmers", "Other");
    second = serde_json::from_str(&text).unwrap();
    let a = post_json(&hub, "/fhir", &second);
    let outcome = assert_outcome(&a, 409, "conflict", None);
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .contains("identity"),
        "{outcome}"
    );
    hub.wait_delivered();
    assert_eq!(events(&hub, Some("order.placed")).len(), orders_before);
    assert!(
        dead_letter_codes(&hub).contains_key("identity_conflict"),
        "{:?}",
        dead_letter_codes(&hub)
    );
    // The refused order's resources were not kept: its order number is
    // unknown to a conditional create.
    let again = post_json(
        &hub,
        "/fhir/ServiceRequest",
        &service_request("ORD-2002", "Patient/none"),
    );
    assert_eq!(again.status, 201, "{}", again.body);
}
