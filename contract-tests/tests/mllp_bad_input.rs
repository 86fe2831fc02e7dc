//! Bad input over MLLP: each case gets the right NAK or close, and whatever
//! bytes arrived are kept with the reason.

use std::io::Read;
use std::time::{Duration, Instant};

use contract_tests::{fixture, with_control_id, Hub, Partner};

fn oru(id: &str) -> String {
    let base = String::from_utf8(fixture(
        "hl7v2/rethinkhealth_bench_oru_r01_v2.5_multiOBX.hl7",
    ))
    .unwrap();
    with_control_id(&base, id)
}

fn dead_letter_codes(hub: &Hub) -> Vec<String> {
    hub.get_json("/api/dead-letters")["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn garbage_no_msh_bad_delimiters_and_oversize_are_refused_and_kept() {
    let hub = Hub::start(&[("CGTHUB__MLLP__MAX_MESSAGE_BYTES", "4096")]);
    let mut p = Partner::connect(hub.mllp);

    // Bytes outside any frame.
    p.send_raw(b"GET / HTTP/1.1\r\n\r\n");
    let ack = p.read_ack().unwrap();
    assert_eq!(ack.code(), "AR", "{}", ack.0);
    assert_eq!(ack.acked_id(), "");

    // A frame that is not HL7.
    let ack = p.send(b"PID|1||123");
    assert_eq!(ack.code(), "AR");
    assert!(ack.0.contains("must start with MSH"), "{}", ack.0);

    // Wrong encoding characters.
    let ack = p.send(b"MSH|^^\\&|LAB|HOSP|||202501021200||ORU^R01|BAD-ENC|P|2.5\rPID|1");
    assert_eq!(ack.code(), "AR");
    assert!(ack.0.contains("delimiters"), "{}", ack.0);

    // Too large: refused, the rest of the frame skipped, the connection usable.
    let big = format!("{}\r{}", oru("BIG"), "NTE|1||x".repeat(1000));
    let ack = p.send(big.as_bytes());
    assert_eq!(
        (ack.code().as_str(), ack.acked_id().as_str()),
        ("AR", "BIG"),
        "{}",
        ack.0
    );
    assert!(ack.0.contains("max_message_bytes"), "{}", ack.0);
    let ack = p.send(oru("AFTER-BIG").as_bytes());
    assert_eq!(
        (ack.code().as_str(), ack.acked_id().as_str()),
        ("AA", "AFTER-BIG")
    );

    let codes = dead_letter_codes(&hub);
    for c in [
        "bytes_outside_frame",
        "not_hl7",
        "bad_encoding_characters",
        "too_large",
    ] {
        assert!(codes.iter().any(|x| x == c), "{c} missing from {codes:?}");
    }
    // The oversized message is kept (its first 4 KiB) with partner and id.
    let dead = hub.get_json("/api/dead-letters")["dead_letters"].clone();
    let big = dead
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "too_large")
        .unwrap();
    let detail = hub.get_json(&format!("/api/dead-letters/{}", big["id"]));
    assert_eq!(detail["message"]["message_id"], "BIG");
    assert_eq!(detail["message"]["partner"], "HOSPITAL");
    assert!(detail["message"]["payload"]
        .as_str()
        .unwrap()
        .starts_with("MSH|"));
}

#[test]
fn an_unterminated_frame_is_kept_when_the_partner_hangs_up() {
    let hub = Hub::start(&[]);
    let mut p = Partner::connect(hub.mllp);
    let mut half = vec![0x0B];
    half.extend_from_slice(oru("HALF").as_bytes());
    p.send_raw(&half);
    drop(p);
    hub.wait_for("the unterminated frame to be kept", || {
        dead_letter_codes(&hub)
            .iter()
            .any(|c| c == "frame_not_terminated")
    });
}

#[test]
fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let hub = Hub::start(&[("CGTHUB__MLLP__IDLE_TIMEOUT_SECS", "1")]);
    let mut p = Partner::connect(hub.mllp);
    let started = Instant::now();
    let mut b = [0u8; 16];
    let n = p.stream.read(&mut b).expect("closed, not timed out");
    assert_eq!(n, 0, "the hub closes the connection");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(hub.log().contains("idle"), "the close is logged");
}

#[test]
fn a_sender_that_leaves_before_its_ack_still_has_its_message_processed() {
    let hub = Hub::start(&[]);
    let mut p = Partner::connect(hub.mllp);
    p.send_raw(&Partner::frame(oru("GONE").as_bytes()));
    drop(p);
    hub.wait_for("GONE to be delivered", || {
        hub.sink("results")
            .iter()
            .any(|e| e["source"]["message_id"] == "GONE")
    });
}

#[test]
fn connections_beyond_the_cap_wait_until_one_closes() {
    let hub = Hub::start(&[("CGTHUB__MLLP__MAX_CONNECTIONS", "1")]);
    let mut first = Partner::connect(hub.mllp);
    assert_eq!(first.send(oru("CAP1").as_bytes()).code(), "AA");
    let mut second = Partner::connect(hub.mllp);
    second
        .stream
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    second.send_raw(&Partner::frame(oru("CAP2").as_bytes()));
    assert!(
        second.read_ack().is_none(),
        "not served while the first holds the only slot"
    );
    drop(first);
    second
        .stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let ack = second.read_ack().expect("served once the slot is free");
    assert_eq!(
        (ack.code().as_str(), ack.acked_id().as_str()),
        ("AA", "CAP2")
    );
}

#[test]
fn an_iso_8859_1_message_is_decoded_by_its_msh_18() {
    let hub = Hub::start(&[]);
    // The corpus CBC ORU's segments, with MSH-18 = 8859/1 and an OBX-5 of
    // "café" where é is the single byte 0xE9, as ISO 8859-1 writes it.
    let mut bytes =
        b"MSH|^~\\&|LAB|HOSPITAL|EMR|HOSPITAL|202501021200||ORU^R01|LATIN1|P|2.5||||||8859/1\r\
PID|1||789012^^^HOSPITAL^MR\r\
OBR|1|LAB12345|LAB12345|^CBC PANEL|||202501020830\r\
OBX|1|ST|NOTE^NOTE||caf"
            .to_vec();
    bytes.extend_from_slice(b"\xe9||||||F\r");
    let mut p = Partner::connect(hub.mllp);
    let ack = p.send(&bytes);
    assert_eq!(ack.code(), "AA", "{}", ack.0);
    hub.wait_delivered();
    let ev = &hub.sink("results")[0];
    assert_eq!(ev["data"]["results"][0]["value"], "café");
}
