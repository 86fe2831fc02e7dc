//! A partner sends every corpus message over MLLP: the valid ones get AA and
//! become events in the sinks, the others get AE/AR with the reason, and
//! everything is kept.

use contract_tests::{fixture, Hub, Partner};

/// (file, MSA-1, MSA-2 = its MSH-10, ERR code expected)
const CORPUS: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "nodehl7complete_nist_ORU_R01_2.5.1_SampleTestCase1.hl7",
        "AA",
        "NIST-100929110701660",
        None,
    ),
    (
        "rethinkhealth_bench_oru_r01_v2.5_multiOBX.hl7",
        "AA",
        "MSG00002",
        None,
    ),
    (
        "nwgmsa_ORU_R01_genomic_report_ED_pdf_v2.5.1.hl7",
        "AA",
        "5051095-201905141025",
        None,
    ),
    (
        "nwgmsa_OML_O21_genomics_order_coded_v2.5.1.hl7",
        "AA",
        "urn:uuid:9612365d-52a4-4fab-87e7-8a09d753f095",
        None,
    ),
    // A08 with no PID: understood, but nothing says which patient changed.
    (
        "mirth_export_ADT_A08_v2.3_extra_fields.hl7",
        "AE",
        "245140",
        Some("101"),
    ),
    // A raw line break inside OBR-16 splits the segment.
    (
        "nodehl7complete_catalyze_orm-example_v2.3.hl7",
        "AR",
        "497",
        Some("100"),
    ),
    // No mapping for A01, nor for an ACK sent as a message.
    (
        "hl7v2rs_z-segment_ADT_A01_v2.5.hl7",
        "AR",
        "CTRL-Z",
        Some("200"),
    ),
    (
        "hl7v2rs_special_chars_escapes_v2.5.hl7",
        "AR",
        "1",
        Some("200"),
    ),
    (
        "mirth_export_ACK_AA_v2.3.hl7",
        "AR",
        "1734634365",
        Some("200"),
    ),
    // Segments separated by spaces: one long MSH, and ADT^A01 is unsupported.
    (
        "nodehl7complete_adt-example_ADT_A01_v2.3.hl7",
        "AR",
        "599102",
        Some("200"),
    ),
];

#[test]
fn every_corpus_message_gets_the_right_ack_and_is_kept() {
    let hub = Hub::start(&[]);
    let mut partner = Partner::connect(hub.mllp);
    for (file, code, id, err) in CORPUS {
        let ack = partner.send(&fixture(&format!("hl7v2/{file}")));
        assert_eq!(ack.code(), *code, "{file}: {}", ack.0);
        assert_eq!(ack.acked_id(), *id, "{file}: MSA-2 names the message");
        match err {
            Some(e) => assert!(
                ack.err().contains(&format!("|{e}^")),
                "{file}: ERR code {e}: {}",
                ack.0
            ),
            None => assert!(ack.segment("ERR").is_none(), "{file}: {}", ack.0),
        }
    }
    hub.wait_delivered();

    // Sender and receiver are swapped in the ACK's MSH.
    let nist = partner.send(&fixture(
        "hl7v2/nodehl7complete_nist_ORU_R01_2.5.1_SampleTestCase1.hl7",
    ));
    let msh = nist.segment("MSH").unwrap();
    assert_eq!(msh[2], "PH Application^2.16.840.1.113883.3.72.7.3^HL7");
    assert_eq!(msh[4], "EHR Application^2.16.840.1.113883.3.72.7.1^HL7");
    assert_eq!(msh[8], "ACK^R01^ACK");

    let results = hub.sink("results");
    let orders = hub.sink("orders");
    assert_eq!(results.len(), 3, "one qc.result_reported per ORU OBR");
    assert_eq!(orders.len(), 1);
    let lead = results
        .iter()
        .find(|e| e["source"]["message_id"] == "NIST-100929110701660")
        .expect("the NIST result was delivered");
    assert_eq!(lead["kind"], "qc.result_reported");
    assert_eq!(lead["schema"], "cgt.event/v1");
    assert_eq!(lead["source"]["partner"], "EHR Facility");
    assert_eq!(lead["data"]["results"][0]["numeric_value"], 50.0);
    assert_eq!(lead["data"]["results"][0]["interpretation"], "high");
    assert_eq!(orders[0]["kind"], "order.placed");
    assert_eq!(orders[0]["order_id"], "1601737");
    // No PHI in events: the corpus patients' names, birth dates and MRNs
    // (PID-3 typed MR) are absent.
    let all = format!("{results:?}{orders:?}");
    for phi in [
        "CHISLETT",
        "Octavia",
        "Johnson",
        "Philip",
        "SMITH",
        "20080920",
        "19850317",
        "9817566735",
        "789012",
        "\"633\"",
    ] {
        assert!(!all.contains(phi), "{phi} leaked into an event");
    }

    // Operators see every message, including the refused ones, with reasons.
    let dead = hub.get_json("/api/dead-letters");
    let codes: Vec<&str> = dead["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes
            .iter()
            .filter(|c| **c == "unsupported_message_type")
            .count(),
        4,
        "{codes:?}"
    );
    assert!(codes.contains(&"bad_segment"), "{codes:?}");
    assert!(codes.contains(&"required_field_missing"), "{codes:?}");

    let out = hub.cli(&["events", "--json", "--kind", "qc.result_reported"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    let dlq = hub.cli(&["dlq", "list"]);
    assert!(
        String::from_utf8_lossy(&dlq.stdout).contains("segment 7: \"8866\" is not a segment id")
    );
}

#[test]
fn a_repeated_message_id_is_acked_again_and_processed_once() {
    let hub = Hub::start(&[]);
    let msg = fixture("hl7v2/rethinkhealth_bench_oru_r01_v2.5_multiOBX.hl7");
    let mut a = Partner::connect(hub.mllp);
    let mut b = Partner::connect(hub.mllp);
    let first = a.send(&msg);
    let second = b.send(&msg);
    assert_eq!(first.code(), "AA");
    assert_eq!(second.code(), "AA");
    assert!(second.0.contains("duplicate"), "{}", second.0);
    hub.wait_delivered();
    assert_eq!(hub.sink("results").len(), 1);
}

#[test]
fn pipelined_frames_in_one_write_and_a_frame_split_across_writes() {
    let hub = Hub::start(&[]);
    let base = String::from_utf8(fixture(
        "hl7v2/rethinkhealth_bench_oru_r01_v2.5_multiOBX.hl7",
    ))
    .unwrap();
    let mut p = Partner::connect(hub.mllp);
    let mut burst = Vec::new();
    for i in 0..3 {
        burst.extend(Partner::frame(
            contract_tests::with_control_id(&base, &format!("P{i}")).as_bytes(),
        ));
    }
    p.send_raw(&burst);
    for i in 0..3 {
        let ack = p.read_ack().unwrap();
        assert_eq!(
            (ack.code().as_str(), ack.acked_id()),
            ("AA", format!("P{i}")),
            "ACKs come back in order"
        );
    }
    let frame = Partner::frame(contract_tests::with_control_id(&base, "SPLIT").as_bytes());
    for chunk in frame.chunks(7) {
        p.send_raw(chunk);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let ack = p.read_ack().unwrap();
    assert_eq!(
        (ack.code().as_str(), ack.acked_id().as_str()),
        ("AA", "SPLIT")
    );
}

#[test]
fn a_failed_message_resent_under_the_same_id_is_processed() {
    let hub = Hub::start(&[]);
    let mut p = Partner::connect(hub.mllp);
    // An A08 without a PID fails (AE); the partner fixes it and resends it
    // with the same MSH-10: it must not be answered as a duplicate.
    let broken = fixture("hl7v2/mirth_export_ADT_A08_v2.3_extra_fields.hl7");
    assert_eq!(p.send(&broken).code(), "AE");
    let mut fixed = broken.clone();
    while fixed.last() == Some(&b'\r') {
        fixed.pop();
    }
    fixed.extend_from_slice(b"\rPID|1||MRN-Z^^^HOSP^MR\r");
    let ack = p.send(&fixed);
    assert_eq!(
        (ack.code().as_str(), ack.acked_id().as_str()),
        ("AA", "245140"),
        "{}",
        ack.0
    );
    assert!(!ack.0.contains("duplicate"));
    hub.wait_delivered();
    let patients = hub.sink("patients");
    assert_eq!(patients.len(), 1);
    assert_eq!(patients[0]["kind"], "patient.updated");
    assert!(
        !patients[0].to_string().contains("MRN-Z"),
        "the MRN stays in the registry: {}",
        patients[0]
    );
    // Now the id is taken.
    assert!(p.send(&fixed).0.contains("duplicate"));
}
