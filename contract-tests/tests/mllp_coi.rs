//! The chain of identity at intake, over MLLP: the corpus ORU with a COI
//! (`mappings/hl7v2/fixtures/oru_r01_cbc_with_coi.hl7`), its COI varied. A
//! malformed COI is answered `AE` with the reason, reaches no sink and is a
//! dead letter `invalid_coi`; a valid one sent with the ISBT 128 data
//! identifier `&/` is accepted and carried in canonical form.

use contract_tests::{repo, with_control_id, Hub, Partner};

/// The COI in the fixture's PID-3 (CX-5 `COI`).
const FIXTURE_COI: &str = "CHW000126000001";

/// The corpus ORU with COI `coi` and MSH-10 `id`.
fn oru_with_coi(coi: &str, id: &str) -> String {
    let path = repo().join("mappings/hl7v2/fixtures/oru_r01_cbc_with_coi.hl7");
    let base = std::fs::read_to_string(&path).unwrap();
    let from = format!("~{FIXTURE_COI}^^^ISBT128^COI|");
    assert_eq!(base.matches(&from).count(), 1, "the fixture's COI moved");
    with_control_id(&base.replace(&from, &format!("~{coi}^^^ISBT128^COI|")), id)
}

#[test]
fn a_malformed_coi_is_refused_and_a_prefixed_one_is_normalised() {
    let hub = Hub::start(&[]);
    let mut p = Partner::connect(hub.mllp);

    // Facility identification number starting with O (ISBT 128 leaves out
    // O, too like 0): refused with the position and the rule.
    let ack = p.send(oru_with_coi("CHO000126000001", "COI-BAD").as_bytes());
    assert_eq!(
        (ack.code().as_str(), ack.acked_id().as_str()),
        ("AE", "COI-BAD"),
        "{}",
        ack.0
    );
    let err = ack.err();
    assert!(err.contains("|102^"), "a data type error: {err}");
    assert!(
        err.contains(
            "COI is not an ISBT 128 Chain of Identity Identifier: position 3 (facility identification number): 'O' is not allowed"
        ),
        "{err}"
    );

    // The valid COI with its data identifier: accepted, without it.
    let ack = p.send(oru_with_coi(&format!("&/{FIXTURE_COI}"), "COI-PREFIXED").as_bytes());
    assert_eq!(
        (ack.code().as_str(), ack.acked_id().as_str()),
        ("AA", "COI-PREFIXED"),
        "{}",
        ack.0
    );
    hub.wait_delivered();

    // Only the accepted message reached the sink, with the canonical COI.
    let results = hub.sink("results");
    let ids: Vec<&str> = results
        .iter()
        .map(|e| e["source"]["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["COI-PREFIXED"], "{results:?}");
    assert_eq!(results[0]["coi"], FIXTURE_COI);
    assert!(
        hub.sink("orders").is_empty() && hub.sink("patients").is_empty(),
        "no other sink got anything"
    );

    // The refused message is a dead letter with its code, stage and reason.
    let dead = hub.get_json("/api/dead-letters")["dead_letters"].clone();
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["code"], "invalid_coi");
    assert_eq!(dead[0]["stage"], "identity");
    let detail = hub.get_json(&format!("/api/dead-letters/{}", dead[0]["id"]));
    assert_eq!(detail["message"]["message_id"], "COI-BAD");
    assert!(
        detail["dead_letter"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("'O' is not allowed"),
        "{detail}"
    );
}
