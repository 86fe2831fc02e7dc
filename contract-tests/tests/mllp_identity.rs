//! The identity registry over MLLP, as partners and operators meet it: an
//! EHR places orders (ORM^O01, COI in PID-3 typed COI), a lab sends results
//! that name only its specimen (ORU^R01, OBR-3), a cancer centre reports an
//! infusion (RAS^O17). Every assertion is on what a partner gets back
//! (the ACK), what reaches the sinks, and what an operator sees: a
//! conflicting event never reaches a sink.
//!
//! Messages follow the layout of the corpus messages the default mappings'
//! fixtures come from (`mappings/hl7v2/fixtures/`); ids vary per test.

use contract_tests::{Hub, Partner, Setup};

const COI_A: &str = "CHW000126000001";
const COI_B: &str = "CHW000126000002";
const COI_C: &str = "CHW000126000003";

/// An EHR's new order (ORC-1 NW) for a CAR-T product.
fn order(
    id: &str,
    coi: &str,
    mrn: &str,
    name: &str,
    dob: &str,
    order: &str,
    specimen: &str,
) -> String {
    format!(
        "MSH|^~\\&|EHR|CANCERCTR|CGTHUB|HUB|202601100900||ORM^O01|{id}|P|2.5.1\r\
         PID|1||{mrn}^^^HOSPITAL^MR~{coi}^^^ISBT128^COI||{name}||{dob}|F\r\
         ORC|NW|{order}^EHR|||||||202601100900\r\
         OBR|1|{order}^EHR|{specimen}^LAB|CART-19^Autologous anti-CD19 CAR-T cells^L|||202601100900\r"
    )
}

/// SMITH^JANE's order for therapy A (order ORD-A, specimen SPEC-A).
fn order_a() -> String {
    order(
        "ORD-1",
        COI_A,
        "MRN-A",
        "SMITH^JANE",
        "19850317",
        "ORD-A",
        "SPEC-A",
    )
}

/// A lab's result for a specimen; `pid3` and the demographics are whatever
/// the lab knows (often only its own patient id).
fn result(id: &str, pid3: &str, name: &str, dob: &str, specimen: &str) -> String {
    format!(
        "MSH|^~\\&|LIMS|CENTRALLAB|CGTHUB|HUB|202601120800||ORU^R01|{id}|P|2.5.1\r\
         PID|1||{pid3}||{name}||{dob}\r\
         OBR|1||{specimen}^LAB|CD3^T-cell panel^L|||202601120700||||||||||||||||||F\r\
         OBX|1|NM|CD3^CD3+ count^L||850|cells/uL|700-1100|N|||F\r"
    )
}

/// A cancer centre's complete administration of the product.
fn infusion(id: &str, coi: &str, mrn: &str) -> String {
    format!(
        "MSH|^~\\&|EHR|CANCERCTR|CGTHUB|HUB|202601151015||RAS^O17^RAS_O17|{id}|P|2.5.1\r\
         PID|1||{mrn}^^^HOSPITAL^MR~{coi}^^^ISBT128^COI||SMITH^JANE||19850317|F\r\
         ORC|RE|ORD-A^EHR|||CM\r\
         RXA|0|1|202601151000|202601151012|CART-19^Autologous anti-CD19 CAR-T cells^L|1|bag||||^^^CANCERCTR||||B26-0042|||||CP\r"
    )
}

fn ids(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            e["source"]["message_id"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        })
        .collect()
}

/// A CLI command's `--json` output: one object, or (for `list` commands)
/// one object per line, gathered into an array.
fn cli_json(hub: &Hub, args: &[&str]) -> serde_json::Value {
    let out = hub.cli(args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cgthub {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if args.contains(&"list") {
        let rows = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        return serde_json::Value::Array(rows);
    }
    serde_json::from_str(&text).expect("JSON output")
}

fn registry_hub(identity: &'static str) -> Hub {
    Hub::start_with(Setup {
        identity: Some(identity),
        ..Setup::default()
    })
}

#[test]
fn results_take_the_order_coi_conflicts_stop_and_late_links_release_holds() {
    let hub = registry_hub("on_unknown = \"hold\"");
    let mut ehr = Partner::connect(hub.mllp);
    let mut lab = Partner::connect(hub.mllp);

    // Two patients' orders register two therapies.
    for msg in [
        order(
            "ORD-1",
            COI_A,
            "MRN-A",
            "SMITH^JANE",
            "19850317",
            "ORD-A",
            "SPEC-A",
        ),
        order(
            "ORD-2",
            COI_B,
            "MRN-B",
            "JONES^MARY",
            "19700101",
            "ORD-B",
            "SPEC-B",
        ),
    ] {
        let ack = ehr.send(msg.as_bytes());
        assert_eq!(ack.code(), "AA", "{}", ack.0);
    }

    // A result naming only its specimen: routed, carrying A's COI.
    let ack = lab.send(result("RES-1", "L-77^^^CENTRALLAB^PI", "", "", "SPEC-A").as_bytes());
    assert_eq!(ack.code(), "AA", "{}", ack.0);

    // The right specimen but another patient's MRN: a conflict. AE 206,
    // with both links named.
    let ack = lab.send(result("RES-2", "MRN-B^^^HOSPITAL^MR", "", "", "SPEC-A").as_bytes());
    assert_eq!(
        (ack.code().as_str(), ack.acked_id().as_str()),
        ("AE", "RES-2"),
        "{}",
        ack.0
    );
    let err = ack.err();
    assert!(err.contains("|206^"), "record locked: {err}");
    assert!(
        err.contains(COI_A) && err.contains(COI_B),
        "both chains named: {err}"
    );
    assert!(
        err.contains("linked by hl7v2/CANCERCTR message ORD-1"),
        "where the link came from: {err}"
    );
    assert!(!err.contains("MRN-B"), "an MRN is never echoed: {err}");

    // The right specimen, right MRN, but another birth date: a conflict too.
    let ack = lab.send(
        result(
            "RES-3",
            "MRN-A^^^HOSPITAL^MR",
            "SMITH^JANE",
            "19850318",
            "SPEC-A",
        )
        .as_bytes(),
    );
    assert_eq!(ack.code(), "AE", "{}", ack.0);
    assert!(ack.err().contains("birth date"), "{}", ack.err());
    // Written differently by another system, the same person is no conflict.
    let ack = lab.send(
        result(
            "RES-4",
            "MRN-A^^^HOSPITAL^MR",
            "Smith^Jane^^^^^L",
            "1985-03-17",
            "SPEC-A",
        )
        .as_bytes(),
    );
    assert_eq!(ack.code(), "AA", "{}", ack.0);

    // A specimen no order has named yet: taken (AA), held, not routed.
    let ack = lab.send(result("RES-5", "L-78^^^CENTRALLAB^PI", "", "", "SPEC-C").as_bytes());
    assert_eq!(ack.code(), "AA", "{}", ack.0);
    let held = cli_json(&hub, &["holds", "list", "--json"]);
    let held = held.as_array().expect("a list");
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["reason"], "unknown_identifiers");
    assert_eq!(held[0]["message_id"], "RES-5");

    // The order that names it arrives: the held result goes on, with C's COI.
    let ack = ehr.send(
        order(
            "ORD-3",
            COI_C,
            "MRN-C",
            "BROWN^ANN",
            "19900505",
            "ORD-C",
            "SPEC-C",
        )
        .as_bytes(),
    );
    assert_eq!(ack.code(), "AA", "{}", ack.0);
    hub.wait_for("the held result released", || {
        hub.sink("results").len() == 3
    });
    hub.wait_delivered();

    let results = hub.sink("results");
    assert_eq!(
        ids(&results),
        ["RES-1", "RES-4", "RES-5"],
        "no conflicting result reached the sink"
    );
    let cois: Vec<&str> = results
        .iter()
        .map(|e| e["coi"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(cois, [COI_A, COI_A, COI_C]);
    assert_eq!(ids(&hub.sink("orders")), ["ORD-1", "ORD-2", "ORD-3"]);

    // One alert per conflict, naming the identifiers and their links.
    let alerts = hub.sink("alerts");
    assert_eq!(ids(&alerts), ["RES-2", "RES-3"], "{alerts:?}");
    assert_eq!(alerts[0]["data"]["alert"], "identity_conflict");
    let links = alerts[0]["data"]["links"].as_array().unwrap();
    let linked: Vec<(&str, &str)> = links
        .iter()
        .map(|l| {
            (
                l["identifier"].as_str().unwrap(),
                l["coi"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        linked.contains(&("specimen SPEC-A (LAB)", COI_A)),
        "{linked:?}"
    );
    assert!(linked.contains(&("mrn … (HOSPITAL)", COI_B)), "{linked:?}");
    assert!(
        !alerts[0].to_string().contains("MRN-B"),
        "no MRN in an alert"
    );

    // No PHI anywhere a consumer or a log reader sees.
    for sink in ["results", "orders", "alerts"] {
        for e in hub.sink(sink) {
            let text = e.to_string();
            assert!(
                !text.contains("SMITH") && !text.contains("19850317") && !text.contains("MRN-"),
                "{sink}: {text}"
            );
        }
    }
    let log = hub.log();
    for phi in ["SMITH", "JONES", "BROWN", "19850317", "MRN-B"] {
        assert!(!log.contains(phi), "the log names {phi}");
    }

    // The journey: identifiers with where they came from, events in order,
    // the quarantined conflict and its alert.
    let j = cli_json(&hub, &["trace", COI_A, "--json"]);
    assert_eq!(j["state"], "active");
    assert_eq!(j["demographics"], "sealed");
    let idents: Vec<(String, String)> = j["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().into(),
                i["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        idents.contains(&("order".into(), "ORD-A".into())),
        "{idents:?}"
    );
    assert!(
        idents.contains(&("specimen".into(), "SPEC-A".into())),
        "{idents:?}"
    );
    assert!(
        idents.contains(&("mrn".into(), String::new())),
        "MRN kept only hashed: {idents:?}"
    );
    let kinds: Vec<&str> = j["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    // The birth-date conflict names only A's chain: its alert is one of A's events.
    assert_eq!(
        kinds,
        [
            "order.placed",
            "qc.result_reported",
            "qc.result_reported",
            "alert.raised"
        ]
    );
    let quarantined: Vec<&serde_json::Value> = j["holds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["state"] == "quarantined")
        .collect();
    assert_eq!(quarantined.len(), 2, "{}", j["holds"]);
    assert_eq!(j["alerts"].as_array().unwrap().len(), 2);

    // The conflicts are dead letters of stage identity, with the reason.
    let dead = hub.get_json("/api/dead-letters")["dead_letters"].clone();
    let codes: Vec<&str> = dead
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["identity_conflict", "identity_conflict"]);
}

#[test]
fn an_identity_never_settled_expires_into_a_dead_letter_with_an_alert() {
    let hub = registry_hub("on_unknown = \"hold\"\nhold_timeout_secs = 1");
    let mut lab = Partner::connect(hub.mllp);
    let ack = lab.send(result("RES-9", "L-90^^^CENTRALLAB^PI", "", "", "SPEC-NONE").as_bytes());
    assert_eq!(ack.code(), "AA", "{}", ack.0);
    hub.wait_for("the hold to expire", || !hub.sink("alerts").is_empty());
    hub.wait_delivered();
    assert!(
        hub.sink("results").is_empty(),
        "an unsettled result is never routed"
    );
    let alerts = hub.sink("alerts");
    assert_eq!(alerts[0]["data"]["alert"], "identity_unresolved");
    assert!(
        alerts[0]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("specimen SPEC-NONE"),
        "{}",
        alerts[0]
    );
    let dead = cli_json(&hub, &["dlq", "list", "--json"]);
    let dead = dead.as_array().expect("a list");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (dead[0]["stage"].as_str(), dead[0]["code"].as_str()),
        (Some("identity"), Some("hold_expired"))
    );
    let held = cli_json(&hub, &["holds", "list", "--state", "expired", "--json"]);
    assert_eq!(held.as_array().unwrap().len(), 1, "{held}");
}

#[test]
fn an_infusion_before_receipt_is_held_until_an_operator_releases_it_with_a_reason() {
    let hub = registry_hub("on_unknown = \"hold\"");
    let mut ehr = Partner::connect(hub.mllp);
    let ack = ehr.send(order_a().as_bytes());
    assert_eq!(ack.code(), "AA", "{}", ack.0);

    // No material.received for A yet: out of sequence, held (the partner
    // still gets AA: the message is stored).
    let ack = ehr.send(infusion("INF-1", COI_A, "MRN-A").as_bytes());
    assert_eq!(ack.code(), "AA", "{}", ack.0);
    let held = cli_json(&hub, &["holds", "list", "--json"]);
    let held = held.as_array().unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["reason"], "out_of_sequence");
    assert!(
        held[0]["detail"]
            .as_str()
            .unwrap()
            .contains("infusion.completed for COI CHW000126000001 before material.received"),
        "{}",
        held[0]
    );
    let id = held[0]["id"].to_string();
    hub.wait_delivered();
    assert!(hub.sink("therapy").is_empty(), "not routed while held");

    // A release needs a reason; with one, the infusion goes on.
    let out = hub.cli(&["holds", "release", &id]);
    assert!(
        !out.status.success(),
        "a release without a reason is refused"
    );
    let out = hub.cli(&[
        "holds",
        "release",
        &id,
        "--reason",
        "receipt scanned on paper, entered late",
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    hub.wait_for("the infusion routed", || hub.sink("therapy").len() == 1);
    let therapy = hub.sink("therapy");
    assert_eq!(therapy[0]["kind"], "infusion.completed");
    assert_eq!(therapy[0]["coi"], COI_A);

    // Released once only; the release is audited with its reason.
    let again = hub.cli(&["holds", "release", &id, "--reason", "again"]);
    assert!(
        !again.status.success(),
        "a settled hold is not released twice"
    );
    let j = cli_json(&hub, &["trace", COI_A, "--json"]);
    assert_eq!(j["state"], "completed", "an infusion completes the therapy");
    let h = j["holds"].as_array().unwrap();
    assert_eq!(h[0]["state"], "released");
    assert_eq!(h[0]["resolution"], "receipt scanned on paper, entered late");

    // After the infusion the therapy is completed: a late result for it is held.
    let mut lab = Partner::connect(hub.mllp);
    let ack = lab.send(result("RES-LATE", "L-1^^^CENTRALLAB^PI", "", "", "SPEC-A").as_bytes());
    assert_eq!(ack.code(), "AA", "{}", ack.0);
    let held = cli_json(&hub, &["holds", "list", "--json"]);
    assert_eq!(held[0]["reason"], "out_of_sequence", "{held}");
    assert!(
        held[0]["detail"].as_str().unwrap().contains("completed"),
        "{held}"
    );
    // The operator rejects it: it never goes on.
    let hid = held[0]["id"].to_string();
    let out = hub.cli(&[
        "holds",
        "reject",
        &hid,
        "--reason",
        "sent to the wrong therapy",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    hub.wait_delivered();
    assert!(hub.sink("results").is_empty());
}

/// A hub whose patient-data key differs from the one the store's registry
/// was hashed with would not recognise a known MRN (and so could miss a
/// conflict): it refuses to start, naming no key; with the right key back it
/// starts and the therapy resolves as before.
#[test]
fn a_hub_with_another_patient_data_key_refuses_to_start_on_the_store() {
    let mut hub = registry_hub("on_unknown = \"hold\"");
    let mut ehr = Partner::connect(hub.mllp);
    let ack = ehr.send(order_a().as_bytes());
    assert_eq!(ack.code(), "AA", "{}", ack.0);
    drop(ehr);
    hub.kill();

    let key_file = hub.dir.path().join("data/phi.key");
    let ours = std::fs::read_to_string(&key_file).expect("the generated key");
    let other = "ab".repeat(32);
    std::fs::write(&key_file, &other).unwrap();
    let mut child = std::process::Command::new(contract_tests::binary())
        .args(["serve", "--config"])
        .arg(&hub.config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the hub started with another key");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("was keyed with another key"), "{err}");
    assert!(
        !err.contains(&other) && !err.contains(ours.trim()),
        "no key in errors: {err}"
    );

    std::fs::write(&key_file, ours).unwrap();
    hub.restart();
    let mut lab = Partner::connect(hub.mllp);
    let ack = lab.send(result("RES-1", "MRN-A^^^HOSPITAL^MR", "", "", "SPEC-A").as_bytes());
    assert_eq!(ack.code(), "AA", "{}", ack.0);
    hub.wait_for("the result routed", || hub.sink("results").len() == 1);
    assert_eq!(
        hub.sink("results")[0]["coi"],
        COI_A,
        "its MRN hash still matches"
    );
}
