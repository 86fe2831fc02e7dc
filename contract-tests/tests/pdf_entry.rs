//! PDF entry through its JSON API (`/pdf-entry`), as people use it: a lab's
//! certificate of analysis (`mappings/pdf/fixtures/coa_lab_lot_A.pdf`) is
//! uploaded, keyed in by one person and keyed in again, blind, by another,
//! who signs with their password. Only then does an event leave the hub,
//! carrying who entered, who verified and the document's hash. A mismatch,
//! an unverified entry or a refused signature produces nothing; whoever
//! entered a document can neither see their values re-keyed nor verify
//! them; uploads the hub cannot use are refused and kept as dead letters.
//!
//! Under the template's other policy, "review", the verifier checks the
//! entry field by field instead of keying it again.
//!
//! Each test starts one hub and works on several documents: copies of the
//! same certificate with another producer string ([`portal::variant`]) are
//! different files to the hub. The fixture's therapy is registered by an
//! EHR's order first, since the hub holds events of unknown therapies (as
//! it does by default, and as one test shows). Problems are checked as
//! RFC 9457 bodies; a failing assertion prints the whole exchange.

use contract_tests::portal::{
    self, assert_provenance, cli_lines, config_for, entry_events, field_names, login, lot_a_values,
    mappings_copy, pdf, plain, register_therapy, request, sha256_hex, test_index, two_pages_values,
    variant, Api, Reply, COI_A, CSRF_HEADER, ERIN, HOLD_UNKNOWN, MAX_BODY_BYTES, PARTNER, SAM,
    VICTOR,
};
use contract_tests::{Hub, Setup};
use serde_json::{json, Value};

/// The template's product (`product = "CAR-T"` in `mappings/pdf/coa_lab.toml`)
/// has its own COI format with an ISO/IEC 7064 MOD 37-2 check character,
/// as an operator configures one (an ISBT 128 COI Identifier carries no
/// check character of its own).
const IDENTITY: &str = "on_unknown = \"hold\"\ncoi_formats = [{ product = \"CAR-T\", pattern = \"CART-[0-9]{8}-[0-9A-Z*]\", check = \"mod37_2\" }]";

/// A COI of the product's format whose check character is wrong: the
/// right one (ISO/IEC 7064 MOD 37-2 over the data characters) plus one.
fn wrong_check_coi() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*";
    let data = "CART-20261128-";
    let sum = data
        .chars()
        .filter_map(|c| c.to_digit(36))
        .fold(0, |sum, v| ((sum + v) * 2) % 37);
    let right = (38 - sum) % 37;
    let wrong = ALPHABET[((right + 1) % 37) as usize] as char;
    format!("{data}{wrong}")
}

/// The field errors of a 422 problem: `(field, message)`.
fn field_errors(r: &Reply) -> Vec<(String, String)> {
    let p = r.problem(422);
    p["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors: [{{field, message}}]:\n{r:?}"))
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The message of the error on `field`, failing with the exchange if none.
fn error_on(r: &Reply, field: &str) -> String {
    field_errors(r)
        .into_iter()
        .find(|(f, _)| f == field)
        .map(|(_, m)| m)
        .unwrap_or_else(|| panic!("no error on {field}:\n{r:?}"))
}

/// A Document never carries entered values.
fn assert_no_values(doc: &Value, values: &Value) {
    let text = doc.to_string();
    for key in ["coi", "specimen_id", "batch_id", "report_id", "analyst"] {
        let v = values[key].as_str().unwrap();
        assert!(!text.contains(v), "the Document shows {key} {v:?}: {doc:#}");
    }
    for t in values["tests"].as_array().unwrap() {
        let r = t["result"].as_str().unwrap();
        if r.chars().any(|c| c.is_ascii_digit()) {
            assert!(
                !text.contains(r),
                "the Document shows result {r:?}: {doc:#}"
            );
        }
    }
}

fn state(doc: &Value) -> &str {
    doc["state"].as_str().unwrap_or("(none)")
}

fn suggestion<'a>(upload: &'a Value, field: &str) -> Option<&'a str> {
    upload["suggestions"]
        .as_array()?
        .iter()
        .find(|s| s["field"] == field)
        .and_then(|s| s["value"].as_str())
}

#[test]
fn a_double_entry_signed_by_another_person_is_one_event_with_its_provenance() {
    let hub = portal::start(&[ERIN, VICTOR]);
    register_therapy(&hub, COI_A, 1);
    let erin = Api::login(&hub, ERIN);
    let victor = Api::login(&hub, VICTOR);
    let lot_a = pdf("coa_lab_lot_A.pdf");
    let sha = sha256_hex(&lot_a);

    // Erin uploads the certificate: a document awaiting entry, with what
    // the template reads off it as suggestions.
    let up = erin.upload_new(&lot_a);
    let doc = up["document"].clone();
    let id = doc["id"].clone();
    assert_eq!(
        (doc["partner"].as_str(), doc["sha256"].as_str(), state(&doc)),
        (Some(PARTNER), Some(sha.as_str()), "awaiting_entry"),
        "{up:#}"
    );
    assert_eq!(doc["policy"], "double_entry", "{up:#}");
    assert_eq!(doc["uploaded"]["user"], "erin", "{up:#}");
    assert!(doc["uploaded"]["at"].is_string(), "{up:#}");
    assert!(!doc["uploaded"]["message"].is_null(), "{up:#}");
    assert_eq!(doc["events"], 0, "{up:#}");
    assert!(doc.get("entered").is_none_or(Value::is_null), "{up:#}");
    assert_eq!(
        (up["pages"].as_u64(), up["duplicate"].as_bool()),
        (Some(1), Some(false)),
        "{up:#}"
    );
    assert_eq!(suggestion(&up, "coi"), Some(COI_A), "{up:#}");
    let steril = test_index("steril");
    assert_eq!(
        suggestion(&up, &format!("test.{steril}.result")),
        Some("No growth"),
        "{up:#}"
    );

    // Nothing to verify before it is entered.
    victor.verify(&id, &lot_a_values()).problem(409);

    // The same file again is the same document.
    let again = erin.upload(&lot_a);
    let body = again.expect(200);
    assert_eq!(
        (&body["document"]["id"], body["duplicate"].as_bool()),
        (&id, Some(true)),
        "{again:?}"
    );

    // Anyone signed in can read the PDF as it was uploaded.
    let r = victor.get(&format!("/pdf-entry/documents/{}/pdf", plain(&id)));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("application/pdf"),
        "{r:?}"
    );
    assert!(
        r.body == lot_a,
        "the PDF's bytes changed ({} bytes back)",
        r.body.len()
    );

    // Erin keys it in: awaiting verification, nothing produced yet.
    let values = lot_a_values();
    let r = erin.enter(&id, &values);
    let d = r.expect(200);
    assert_eq!(state(&d), "awaiting_verification", "{r:?}");
    assert_eq!(d["entered"]["user"], "erin", "{r:?}");
    assert_no_values(&d, &values);
    let r = erin.enter(&id, &values);
    r.problem(409);
    assert!(
        entry_events(&hub).is_empty(),
        "an entered document produced an event"
    );

    // Blind: nobody reads the first entry before the verification, the
    // verifier because he must key it himself, Erin because it is hers.
    for who in [&victor, &erin] {
        let r = who.get(&format!("/pdf-entry/documents/{}/values", plain(&id)));
        r.problem(403);
    }
    // Erin holds no role verifier.
    erin.verify(&id, &values).problem(403);

    // A signature with the wrong password is refused and changes nothing.
    let before = victor.document(&id);
    let r = victor.verify_with(&id, &values, "not victor's password");
    r.problem(401);
    let after = victor.document(&id);
    assert_eq!(state(&after), "awaiting_verification", "{after:#}");
    assert!(
        after.get("verified").is_none_or(Value::is_null),
        "{after:#}"
    );
    assert!(after.get("checked").is_none_or(Value::is_null), "{after:#}");
    assert_eq!(after["events"], before["events"], "{after:#}");
    assert!(
        entry_events(&hub).is_empty(),
        "a refused signature produced an event"
    );

    // Victor keys in the same values and signs: verified, one event.
    let r = victor.verify(&id, &values);
    let v = r.expect(200);
    assert_eq!(state(&v["document"]), "verified", "{r:?}");
    assert_eq!(v["mismatches"], json!([]), "{r:?}");
    assert_eq!(v["document"]["verified"]["user"], "victor", "{r:?}");
    assert_eq!(v["document"]["events"], 1, "{r:?}");
    assert_no_values(&v["document"], &values);
    victor.verify(&id, &values).problem(409);

    // Once verified, the values are there to read.
    for who in [&victor, &erin] {
        let r = who.get(&format!("/pdf-entry/documents/{}/values", plain(&id)));
        let got = r.expect(200);
        for key in ["coi", "specimen_id", "batch_id", "report_id", "analyst"] {
            assert_eq!(got[key], values[key], "{r:?}");
        }
        for (g, w) in got["tests"]
            .as_array()
            .unwrap()
            .iter()
            .zip(values["tests"].as_array().unwrap())
        {
            assert_eq!(
                (&g["result"], &g["pass_fail"]),
                (&w["result"], &w["pass_fail"]),
                "{r:?}"
            );
        }
    }

    let events = entry_events(&hub);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_provenance(
        &events[0],
        &doc,
        &values,
        &sha,
        ("erin", "victor", "double_entry", "verification"),
    );
    assert_signature_audited(&hub, &id, &sha, "victor");

    // The list, newest first.
    let second = erin.upload_new(&pdf("coa_lab_two_pages.pdf"));
    assert_eq!(second["pages"], 2, "{second:#}");
    let id2 = second["document"]["id"].clone();
    let r = erin.get("/pdf-entry/documents");
    let list = r.expect(200);
    let rows: Vec<(Value, String)> = list["documents"]
        .as_array()
        .unwrap_or_else(|| panic!("{r:?}"))
        .iter()
        .map(|d| (d["id"].clone(), state(d).to_string()))
        .collect();
    assert_eq!(
        rows,
        [
            (id2.clone(), "awaiting_entry".to_string()),
            (id.clone(), "verified".to_string())
        ],
        "{r:?}"
    );
    victor.get("/pdf-entry/documents/999999").problem(404);

    // A certificate for a therapy no order registered (the two-page one)
    // is verified like any other, and its event is held, not delivered.
    let values2 = two_pages_values();
    erin.enter(&id2, &values2).expect(200);
    let r = victor.verify(&id2, &values2);
    assert_eq!(state(&r.expect(200)["document"]), "verified", "{r:?}");
    let events = entry_events(&hub);
    assert_eq!(
        events.len(),
        1,
        "the unknown therapy's event was delivered: {events:#?}"
    );
    let held = cli_lines(&hub, &["holds", "list", "--json"]);
    let ids: Vec<&Value> = held.iter().map(|h| &h["message_id"]).collect();
    assert_eq!(
        ids,
        [&json!(format!("pdf/{}/verification", plain(&id2)))],
        "{held:#?}"
    );
}

#[test]
fn a_mismatch_blocks_events_until_a_verifier_resolves_it_and_nobody_verifies_their_own_entry() {
    let hub = portal::start_with(&[ERIN, VICTOR, SAM], IDENTITY);
    register_therapy(&hub, COI_A, 1);
    let erin = Api::login(&hub, ERIN);
    let victor = Api::login(&hub, VICTOR);
    let sam = Api::login(&hub, SAM);
    let lot_a = pdf("coa_lab_lot_A.pdf");
    let values = lot_a_values();

    // What the entry refuses, field by field; the document waits.
    let copy1 = variant(&lot_a, 1);
    let up = erin.upload_new(&copy1);
    let id = up["document"]["id"].clone();
    let mut bad = values.clone();
    bad["coi"] = json!(wrong_check_coi());
    let r = erin.enter(&id, &bad);
    let msg = error_on(&r, "coi");
    assert!(msg.contains("check character"), "{r:?}");
    // Not an ISBT 128 COI either: the letter O is no facility character.
    bad["coi"] = json!("CHO000126000001");
    error_on(&erin.enter(&id, &bad), "coi");
    let mut bad = values.clone();
    bad["tested_at"] = json!("2026-11-31");
    error_on(&erin.enter(&id, &bad), "tested_at");
    let mut bad = values.clone();
    bad["tests"][0]["pass_fail"] = json!("");
    error_on(&erin.enter(&id, &bad), "test.0.pass_fail");
    let mut bad = values.clone();
    bad["tests"][1].as_object_mut().unwrap().remove("pass_fail");
    error_on(&erin.enter(&id, &bad), "test.1.pass_fail");
    assert_eq!(state(&erin.document(&id)), "awaiting_entry");

    // The second entry differs in one result: a mismatch, and no event.
    erin.enter(&id, &values).expect(200);
    let vi = test_index("viab");
    let field = format!("test.{vi}.result");
    let mut second = values.clone();
    second["tests"][vi]["result"] = json!("78.5");
    let r = victor.verify(&id, &second);
    let v = r.expect(200);
    assert_eq!(state(&v["document"]), "mismatch", "{r:?}");
    let listed: Vec<(&Value, &Value, &Value)> = v["mismatches"]
        .as_array()
        .unwrap_or_else(|| panic!("{r:?}"))
        .iter()
        .map(|m| (&m["field"], &m["first"], &m["second"]))
        .collect();
    assert_eq!(
        listed,
        [(&json!(field), &json!("87.5"), &json!("78.5"))],
        "{r:?}"
    );
    assert!(v["mismatches"][0]["label"].is_string(), "{r:?}");
    assert_eq!(v["document"]["events"], 0, "{r:?}");
    assert!(
        entry_events(&hub).is_empty(),
        "a mismatch produced an event"
    );

    // The verifier sees the mismatches; the enterer sees neither them nor
    // her own values.
    let path = format!("/pdf-entry/documents/{}/mismatches", plain(&id));
    let r = victor.get(&path);
    assert_eq!(r.expect(200)["mismatches"], v["mismatches"], "{r:?}");
    erin.get(&path).problem(403);
    erin.get(&format!("/pdf-entry/documents/{}/values", plain(&id)))
        .problem(403);

    // A resolution must settle every mismatch, each with a reason, signed.
    let r = victor.resolve(&id, &json!({}));
    error_on(&r, &field);
    let r = victor.resolve(&id, &json!({ &field: {"value": "87.5", "reason": ""} }));
    error_on(&r, &field);
    erin.resolve(&id, &json!({ &field: {"value": "87.5", "reason": "mine"} }))
        .problem(403);
    let r = victor.post(
        &format!("/pdf-entry/documents/{}/resolution", plain(&id)),
        &json!({"resolved": { &field: {"value": "87.5", "reason": "typo"} }, "password": "wrong"}),
    );
    r.problem(401);
    assert_eq!(state(&victor.document(&id)), "mismatch");
    assert!(
        entry_events(&hub).is_empty(),
        "an unresolved mismatch produced an event"
    );

    let r = victor.resolve(
        &id,
        &json!({ &field: {
            "value": "87.5",
            "reason": "I read 78.5 off the wrong line; the certificate says 87.5 %",
        }}),
    );
    let v = r.expect(200);
    assert_eq!(state(&v["document"]), "verified", "{r:?}");
    assert_eq!(v["mismatches"], json!([]), "{r:?}");
    let events = entry_events(&hub);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_provenance(
        &events[0],
        &up["document"],
        &values,
        &sha256_hex(&copy1),
        ("erin", "victor", "resolved", "resolution"),
    );

    // Sam holds both roles: he enters a document, and may not verify it.
    let up = sam.upload_new(&variant(&lot_a, 2));
    let own = up["document"]["id"].clone();
    sam.enter(&own, &values).expect(200);
    sam.verify(&own, &values).problem(403);
    sam.get(&format!("/pdf-entry/documents/{}/values", plain(&own)))
        .problem(403);
    // Erin, with role data_entry only, may verify nobody's.
    erin.verify(&own, &values).problem(403);
    assert_eq!(state(&sam.document(&own)), "awaiting_verification");

    // Erin's entry Sam may verify.
    let copy3 = variant(&lot_a, 3);
    let up = erin.upload_new(&copy3);
    let other = up["document"]["id"].clone();
    erin.enter(&other, &values).expect(200);
    let r = sam.verify(&other, &values);
    assert_eq!(state(&r.expect(200)["document"]), "verified", "{r:?}");

    // In all: the resolved document and the one Sam verified; Sam's own,
    // entered and never verified, produced nothing.
    let events = entry_events(&hub);
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_provenance(
        &events[1],
        &up["document"],
        &values,
        &sha256_hex(&copy3),
        ("erin", "sam", "double_entry", "verification"),
    );
}

#[test]
fn refused_uploads_are_kept_as_dead_letters_and_every_call_needs_a_session() {
    let hub = portal::start(&[ERIN, VICTOR]);

    // Signing in.
    login(&hub, "erin", "not erin's password").problem(401);
    login(&hub, "mallory", "anything").problem(401);

    // No session, or a forged one: 401, for reads and writes alike.
    let r = request(hub.http, "GET", "/pdf-entry/documents", &[], b"");
    r.problem(401);
    let forged = format!("{}=forged", portal::COOKIE);
    let r = request(
        hub.http,
        "GET",
        "/pdf-entry/documents",
        &[("Cookie", &forged)],
        b"",
    );
    r.problem(401);
    let lot_a = pdf("coa_lab_lot_A.pdf");
    let r = request(
        hub.http,
        "POST",
        &format!("/pdf-entry/{PARTNER}/documents"),
        &[("Content-Type", "application/pdf")],
        &lot_a,
    );
    r.problem(401);

    // Every other call too, whatever it asks for (document 1 or not).
    let values = lot_a_values().to_string();
    let verification = json!({"values": lot_a_values(), "password": "x"}).to_string();
    let resolution = json!({"resolved": {}, "password": "x"}).to_string();
    for (method, path, body) in [
        ("GET", "/pdf-entry/documents/1", ""),
        ("GET", "/pdf-entry/documents/1/pdf", ""),
        ("GET", "/pdf-entry/documents/1/values", ""),
        ("GET", "/pdf-entry/documents/1/mismatches", ""),
        ("POST", "/pdf-entry/documents/1/entry", values.as_str()),
        (
            "POST",
            "/pdf-entry/documents/1/verification",
            verification.as_str(),
        ),
        (
            "POST",
            "/pdf-entry/documents/1/resolution",
            resolution.as_str(),
        ),
        ("POST", "/pdf-entry/logout", "{}"),
    ] {
        let r = request(
            hub.http,
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        r.problem(401);
    }

    // A session but no CSRF token, or another: 403.
    let erin = Api::login(&hub, ERIN);
    let path = format!("/pdf-entry/{PARTNER}/documents");
    let r = request(
        hub.http,
        "POST",
        &path,
        &[
            ("Cookie", &erin.cookie),
            ("Content-Type", "application/pdf"),
        ],
        &lot_a,
    );
    r.problem(403);
    let r = request(
        hub.http,
        "POST",
        &path,
        &[
            ("Cookie", &erin.cookie),
            (CSRF_HEADER, "00ff00ff00ff00ff"),
            ("Content-Type", "application/pdf"),
        ],
        &lot_a,
    );
    r.problem(403);
    let r = request(
        hub.http,
        "POST",
        "/pdf-entry/logout",
        &[("Cookie", &erin.cookie)],
        b"",
    );
    r.problem(403);

    // A verifier does not upload.
    let victor = Api::login(&hub, VICTOR);
    // Another session's token is no token.
    let r = request(
        hub.http,
        "POST",
        "/pdf-entry/logout",
        &[("Cookie", &victor.cookie), (CSRF_HEADER, &erin.csrf)],
        b"",
    );
    r.problem(403);
    victor.get("/pdf-entry/documents").expect(200);
    victor.upload(&lot_a).problem(403);

    // Not a PDF, encrypted, truncated: 422 with the reason, kept as dead letters.
    for (file, code) in [
        ("not_a_pdf.pdf", "not_pdf"),
        ("encrypted.pdf", "encrypted_pdf"),
        ("truncated.pdf", "corrupt_pdf"),
    ] {
        let r = erin.upload(&pdf(file));
        let p = r.problem(422);
        assert_eq!(p["code"], code, "{file}:\n{r:?}");
        assert!(
            p["detail"].as_str().is_some_and(|d| !d.trim().is_empty()),
            "{file}: a reason:\n{r:?}"
        );
    }
    let dead = cli_lines(&hub, &["dlq", "list", "--json"]);
    for code in ["not_pdf", "encrypted_pdf", "corrupt_pdf"] {
        let d = dead
            .iter()
            .find(|d| d["code"] == code)
            .unwrap_or_else(|| panic!("no dead letter {code}: {dead:#?}"));
        assert_eq!(d["partner"], PARTNER, "{d:#}");
        assert!(!d["message_row"].is_null(), "the bytes are kept: {d:#}");
    }

    // The wrong content type, too large, an unknown partner.
    erin.upload_as(PARTNER, "text/plain", &lot_a).problem(415);
    let mut big = b"%PDF-1.4\n".to_vec();
    big.resize(MAX_BODY_BYTES + 1, b' ');
    erin.upload(&big).problem(413);
    erin.upload_as("no_such_lab", "application/pdf", &lot_a)
        .problem(404);
    // The first two are kept too, with their reason.
    let dead = cli_lines(&hub, &["dlq", "list", "--json"]);
    for code in ["unsupported_media_type", "too_large"] {
        assert!(
            dead.iter()
                .any(|d| d["code"] == code && d["partner"] == PARTNER),
            "no dead letter {code}: {dead:#?}"
        );
    }

    // Nothing above is a document to key in.
    let r = erin.get("/pdf-entry/documents");
    let list = r.expect(200);
    assert!(
        list["documents"]
            .as_array()
            .unwrap_or_else(|| panic!("{r:?}"))
            .iter()
            .all(|d| d["state"] != "awaiting_entry"),
        "a refused upload awaits entry:\n{r:?}"
    );

    // Signing out ends the session.
    let r = erin.logout();
    assert_eq!(r.status, 204, "{r:?}");
    erin.get("/pdf-entry/documents").problem(401);
    erin.upload(&lot_a).problem(401);

    // Five wrong passwords in a row, then even the right one waits.
    for _ in 0..5 {
        login(&hub, "victor", "guess").problem(401);
    }
    login(&hub, "victor", VICTOR.password).problem(429);

    // A body that is not what the call takes is answered with a problem
    // body too, and without a session with 401 all the same (every
    // exchange that is not is shown).
    let erin = Api::login(&hub, ERIN);
    let bad_entry = json!({"coi": 12, "tests": "none"}).to_string();
    let answers = [
        (
            erin.post(
                "/pdf-entry/documents/1/entry",
                &serde_json::from_str(&bad_entry).unwrap(),
            ),
            &[400][..],
        ),
        (
            request(
                hub.http,
                "POST",
                "/pdf-entry/login",
                &[("Content-Type", "application/json")],
                b"{\"user\": \"erin\"}",
            ),
            &[400][..],
        ),
        (
            request(
                hub.http,
                "POST",
                "/pdf-entry/documents/1/entry",
                &[("Content-Type", "application/json")],
                bad_entry.as_bytes(),
            ),
            &[401][..],
        ),
    ];
    let wrong: Vec<String> = answers
        .iter()
        .filter(|(r, want)| {
            !want.contains(&r.status)
                || !r
                    .header("content-type")
                    .unwrap_or_default()
                    .starts_with("application/problem+json")
        })
        .map(|(r, want)| format!("expected {want:?} with a problem body:\n{r:?}"))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn under_the_review_policy_the_verifier_sees_the_entry_and_confirms_each_field() {
    // A second lab whose template is Northgate's with policy "review".
    let maps = mappings_copy();
    let shipped = std::fs::read_to_string(maps.path().join("pdf/coa_lab.toml")).unwrap();
    assert!(
        shipped.contains("policy = \"double_entry\""),
        "the shipped template's policy moved"
    );
    std::fs::write(
        maps.path().join("pdf/coa_review.toml"),
        shipped.replace("policy = \"double_entry\"", "policy = \"review\""),
    )
    .unwrap();
    let maps_dir = maps.path().display().to_string();
    let extra = config_for(&[PARTNER, "coa_review"], &[ERIN, VICTOR]);
    let hub = Hub::start_with(Setup {
        env: &[("CGTHUB__PATHS__MAPPINGS", maps_dir.as_str())],
        config_extra: Some(&extra),
        identity: Some(HOLD_UNKNOWN),
        ..Setup::default()
    });
    register_therapy(&hub, COI_A, 1);
    let erin = Api::login(&hub, ERIN);
    let victor = Api::login(&hub, VICTOR);
    let lot_a = pdf("coa_lab_lot_A.pdf");
    let values = lot_a_values();

    let r = erin.upload_as("coa_review", "application/pdf", &lot_a);
    let up = r.expect(201);
    let doc = up["document"].clone();
    let id = doc["id"].clone();
    assert_eq!(
        (doc["partner"].as_str(), doc["policy"].as_str()),
        (Some("coa_review"), Some("review")),
        "{r:?}"
    );
    erin.enter(&id, &values).expect(200);

    // The verifier reviews the entry itself; its author still may not.
    let path = format!("/pdf-entry/documents/{}/values", plain(&id));
    erin.get(&path).problem(403);
    let r = victor.get(&path);
    let shown = r.expect(200);
    assert_eq!(
        (&shown["coi"], &shown["batch_id"]),
        (&values["coi"], &values["batch_id"]),
        "{r:?}"
    );

    // Every field ticked, the values unchanged, signed: verified.
    let r = victor.post(
        &format!("/pdf-entry/documents/{}/verification", plain(&id)),
        &json!({"values": values, "password": VICTOR.password, "confirmed": field_names(&values)}),
    );
    let v = r.expect(200);
    assert_eq!(state(&v["document"]), "verified", "{r:?}");
    assert_eq!(v["mismatches"], json!([]), "{r:?}");
    let events = entry_events(&hub);
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(e["source"]["partner"], "coa_review", "{e:#}");
    assert_eq!(e["source"]["entry"]["verification"], "review", "{e:#}");
    assert_eq!(e["source"]["entry"]["entered_by"], "erin", "{e:#}");
    assert_eq!(e["source"]["entry"]["verified_by"], "victor", "{e:#}");
    assert_eq!(
        e["source"]["message_id"],
        format!("pdf/{}/verification", plain(&id)),
        "{e:#}"
    );
}

#[test]
fn verified_values_that_contradict_the_registry_are_refused_and_the_verification_can_be_retried() {
    // Two therapies; the certificate of the first links its specimen to it.
    let hub = portal::start(&[ERIN, VICTOR]);
    register_therapy(&hub, COI_A, 1);
    register_therapy(&hub, portal::COI_B, 2);
    let erin = Api::login(&hub, ERIN);
    let victor = Api::login(&hub, VICTOR);
    let values = lot_a_values();
    let verify = |id: &Value, values: &Value| {
        victor.post(
            &format!("/pdf-entry/documents/{}/verification", plain(id)),
            &json!({"values": values, "password": VICTOR.password}),
        )
    };
    let first = erin.upload_new(&pdf("coa_lab_lot_A.pdf"))["document"]["id"].clone();
    erin.post(
        &format!("/pdf-entry/documents/{}/entry", plain(&first)),
        &values,
    )
    .expect(200);
    assert_eq!(
        state(&verify(&first, &values).expect(200)["document"]),
        "verified"
    );

    // A second copy keyed in with the other therapy's COI but the same
    // specimen: identifiers of two patients. Both people agree, both sign,
    // and still nothing goes out: the document is failed with the reason.
    let mut wrong = values.clone();
    wrong["coi"] = json!(portal::COI_B);
    let second = erin.upload_new(&variant(&pdf("coa_lab_lot_A.pdf"), 1))["document"]["id"].clone();
    erin.post(
        &format!("/pdf-entry/documents/{}/entry", plain(&second)),
        &wrong,
    )
    .expect(200);
    let failed = verify(&second, &wrong).expect(200);
    let doc = &failed["document"];
    assert_eq!(state(doc), "failed", "{failed:#}");
    assert_eq!(doc["problem"]["code"], "identity_conflict", "{failed:#}");
    assert_eq!(doc["events"], 0, "{failed:#}");
    hub.wait_delivered();
    let events = entry_events(&hub);
    assert_eq!(
        events.len(),
        1,
        "only the first document's event: {events:#?}"
    );
    let alerts = hub.sink("alerts");
    assert!(
        alerts
            .iter()
            .any(|a| a["data"]["code"] == "identity_conflict"
                || a.to_string().contains("identity_conflict")),
        "an identity_conflict alert: {alerts:#?}"
    );
    let dead = cli_lines(
        &hub,
        &["dlq", "list", "--reason", "identity_conflict", "--json"],
    );
    assert_eq!(dead.len(), 1, "{dead:#?}");

    // The failed verification did not use the step up: it can be tried
    // again (once the registry is put right; here nothing changed, so it
    // fails again, a second dead letter, and still nothing goes out).
    let body = verify(&second, &wrong).expect(200);
    assert_eq!(state(&body["document"]), "failed", "{body:#}");
    let dead = cli_lines(
        &hub,
        &["dlq", "list", "--reason", "identity_conflict", "--json"],
    );
    assert_eq!(dead.len(), 2, "{dead:#?}");
    hub.wait_delivered();
    assert_eq!(entry_events(&hub).len(), 1);
}

/// The audit log holds the verifier's electronic signature for document
/// `id`: who, the meaning, the PDF's hash and the values' hash, and the
/// chain still verifies. Read from the hub's own store file.
fn assert_signature_audited(hub: &Hub, id: &Value, pdf_sha: &str, verifier: &str) {
    let url = format!("sqlite://{}/data/cgthub.db", hub.dir.path().display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (records, check) = rt.block_on(async {
        let store = hub_core::store::Store::open_read_only(hub_core::store::StoreOptions {
            url,
            ..Default::default()
        })
        .await
        .expect("the hub's store");
        let subject = format!("pdf_entry/{PARTNER}/document/{}", plain(id));
        let records = store.audit_records(&subject).await.expect("audit records");
        (records, store.verify_audit().await.expect("audit chain"))
    });
    assert!(check.is_ok(), "the audit chain is broken: {check:?}");
    let actions: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.actor.as_str(), r.action.as_str()))
        .collect();
    assert!(
        actions.contains(&("erin", "pdf_entry.entered"))
            && actions.contains(&(verifier, "pdf_entry.signature_refused")),
        "{actions:?}"
    );
    let signed: Vec<Value> = records
        .iter()
        .filter(|r| r.action == "pdf_entry.verified")
        .map(|r| serde_json::from_str(&r.detail).unwrap())
        .collect();
    assert_eq!(signed.len(), 1, "one signature: {records:#?}");
    let sig = &signed[0];
    assert_eq!(
        (&sig["meaning"], &sig["signed_by"], &sig["document_sha256"]),
        (&json!("verified"), &json!(verifier), &json!(pdf_sha)),
        "{sig:#}"
    );
    assert_eq!(
        sig["values_sha256"].as_str().map(str::len),
        Some(64),
        "{sig:#}"
    );
}
