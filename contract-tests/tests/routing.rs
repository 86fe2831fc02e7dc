//! Routes as operators manage them: unmatched events are kept, routes are
//! reloaded without a restart (a bad file is refused and the old routes
//! stay), and a sink that keeps failing turns events into dead letters.

use contract_tests::{fixture, with_control_id, Hub, Partner, Setup};

fn oru(id: &str) -> Vec<u8> {
    let base = String::from_utf8(fixture(
        "hl7v2/rethinkhealth_bench_oru_r01_v2.5_multiOBX.hl7",
    ))
    .unwrap();
    with_control_id(&base, id).into_bytes()
}

const ORDERS_ONLY: &str = r#"
[[route]]
name = "orders"
kinds = ["order.*"]
sink = "orders_file"
"#;

const RESULTS_TOO: &str = r#"
[[route]]
name = "orders"
kinds = ["order.*"]
sink = "orders_file"

[[route]]
name = "results"
kinds = ["qc.*"]
sink = "results_file"
"#;

#[test]
fn unmatched_events_are_kept_and_routes_reload_without_a_restart() {
    let hub = Hub::start_with(Setup {
        routes: Some(ORDERS_ONLY),
        ..Setup::default()
    });
    let mut p = Partner::connect(hub.mllp);
    assert_eq!(p.send(&oru("U1")).code(), "AA", "no route is not an error");
    hub.wait_delivered();
    assert!(hub.sink("results").is_empty());
    let out = hub.cli(&["events", "--unmatched", "--json"]);
    let unmatched = String::from_utf8_lossy(&out.stdout);
    assert!(
        unmatched.contains("\"message_id\":\"U1\""),
        "kept and visible: {unmatched}"
    );

    // A broken route file is refused; the routes in force stay.
    hub.write_routes(
        "[[route]]\nname = \"results\"\nkinds = [\"qc.result\"]\nsink = \"results_file\"\n",
    );
    hub.wait_for("the refusal in the log", || {
        hub.log().contains("route file refused")
    });
    assert!(
        hub.log().contains("default.toml:1:"),
        "file and line are named:\n{}",
        hub.log()
    );
    assert_eq!(p.send(&oru("U2")).code(), "AA");
    hub.wait_delivered();
    assert!(hub.sink("results").is_empty(), "still the old routes");

    // A good file takes effect.
    hub.write_routes(RESULTS_TOO);
    hub.wait_for("the reload", || hub.log().contains("routes reloaded"));
    assert_eq!(p.send(&oru("U3")).code(), "AA");
    hub.wait_delivered();
    let ids: Vec<String> = hub
        .sink("results")
        .iter()
        .map(|e| e["source"]["message_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["U3"]);
    let metrics = contract_tests::http_get(hub.http, "/metrics").unwrap().1;
    assert!(
        metrics.contains("cgthub_events_unmatched_total 2"),
        "{metrics}"
    );
}

#[test]
fn a_sink_that_keeps_failing_turns_events_into_dead_letters() {
    let routes = r#"
[[route]]
name = "results"
kinds = ["qc.*"]
sink = "results_file"
retry = { max_attempts = 3, initial_backoff_ms = 20, max_backoff_ms = 50 }
"#;
    // Every write to /dev/full fails with "no space left on device".
    let hub = Hub::start_with(Setup {
        routes: Some(routes),
        results_sink: Some("/dev/full"),
        ..Setup::default()
    });
    let mut p = Partner::connect(hub.mllp);
    assert_eq!(
        p.send(&oru("FULL1")).code(),
        "AA",
        "the partner is not blocked by a sink"
    );
    hub.wait_for("the dead letter", || {
        hub.get_json("/api/dead-letters")["dead_letters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["stage"] == "deliver")
    });
    let dead = hub.get_json("/api/dead-letters")["dead_letters"][0].clone();
    assert_eq!(dead["sink"], "results_file");
    assert_eq!(dead["route"], "results");
    assert_eq!(dead["attempts"], 3);
    assert!(
        dead["reason"].as_str().unwrap().contains("No space left"),
        "{dead}"
    );
    hub.wait_delivered();
    let metrics = contract_tests::http_get(hub.http, "/metrics").unwrap().1;
    assert!(
        metrics.contains("cgthub_delivery_failures_total{sink=\"results_file\"} 3"),
        "{metrics}"
    );
}
