//! Dead letters as an operator handles them, with the real binary: a
//! message a broken mapping turned into AE is listed with its partner and
//! reason, replayed through the running hub after the mapping is fixed (its
//! events reach the sink, the audit log names who did it), and a delivery
//! that failed for good is replayed once the sink is fixed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use contract_tests::{fixture, repo, with_control_id, Hub, Partner, Setup};
use serde_json::Value;

fn oru(id: &str) -> Vec<u8> {
    let base = String::from_utf8(fixture(
        "hl7v2/rethinkhealth_bench_oru_r01_v2.5_multiOBX.hl7",
    ))
    .unwrap();
    with_control_id(&base, id).into_bytes()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `cgthub dlq list --json [args]`, one object per dead letter.
fn dlq_list(hub: &Hub, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["dlq", "list", "--json"];
    all.extend_from_slice(args);
    let out = hub.cli(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// A plain HTTP/1.1 POST of JSON: (status, body).
fn http_post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

const OCCURRED_AT: &str = r#"occurred_at = { paths = ["OBR-7", "OBR-22", "MSH-7"] }"#;

#[test]
fn a_message_a_broken_mapping_failed_is_replayed_after_the_fix() {
    let maps = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("mappings"), maps.path());
    let oru_mapping = maps.path().join("hl7v2/oru_r01.toml");
    let good = std::fs::read_to_string(&oru_mapping).unwrap();
    assert!(good.contains(OCCURRED_AT), "the shipped mapping changed");
    // A required field read from where no message has it.
    let broken = good.replace(OCCURRED_AT, r#"occurred_at = { paths = ["OBR-99"] }"#);
    std::fs::write(&oru_mapping, &broken).unwrap();
    let maps_dir = maps.path().display().to_string();
    let env = [("CGTHUB__PATHS__MAPPINGS", maps_dir.as_str())];
    let mut hub = Hub::start_with(Setup {
        env: &env,
        ..Setup::default()
    });

    let ack = Partner::connect(hub.mllp).send(&oru("DLQ-1"));
    assert_eq!(ack.code(), "AE", "{}", ack.0);

    // The operator sees it, with partner and reason.
    let text = stdout(&hub.cli(&["dlq", "list"]));
    assert!(text.contains("HOSPITAL"), "{text}");
    assert!(text.contains("required_field_missing"), "{text}");
    let open = dlq_list(&hub, &[]);
    assert_eq!(open.len(), 1, "{open:?}");
    let dl = &open[0];
    assert_eq!(
        (
            dl["partner"].as_str(),
            dl["stage"].as_str(),
            dl["status"].as_str()
        ),
        (Some("HOSPITAL"), Some("map"), Some("open"))
    );
    assert!(
        dl["reason"].as_str().unwrap().contains("occurred_at"),
        "{dl}"
    );
    let id = dl["id"].to_string();

    // Replayed while still broken: fails again, stays open, exit 1.
    let out = hub.cli(&["dlq", "replay", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!("{id}: failed")),
        "{}",
        stdout(&out)
    );
    assert_eq!(dlq_list(&hub, &[])[0]["attempts"], 2);

    // With the hub down, the CLI says so.
    hub.kill();
    let out = hub.cli(&["dlq", "replay", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot reach the hub"),
        "{}",
        stderr(&out)
    );

    // Fixed and restarted: the replay delivers its events.
    std::fs::write(&oru_mapping, &good).unwrap();
    hub.restart();
    let out = hub.cli(&["dlq", "replay", &id]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(&format!("{id}: replayed")),
        "{}",
        stdout(&out)
    );
    let actor = stderr(&out)
        .rsplit_once("(as ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(a, _)| a.to_string())
        .expect("the CLI names its actor");
    assert!(actor.contains('@'), "{actor}");
    hub.wait_delivered();
    let delivered: Vec<Value> = hub
        .sink("results")
        .into_iter()
        .filter(|e| e["source"]["message_id"] == "DLQ-1")
        .collect();
    assert!(!delivered.is_empty(), "the replayed events reach the sink");
    assert!(delivered.iter().all(|e| e["kind"] == "qc.result_reported"));

    // No longer open; shown as replayed, by whom.
    assert!(dlq_list(&hub, &[]).is_empty());
    let replayed = dlq_list(&hub, &["--status", "replayed"]);
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0]["replayed_by"].as_str(), Some(actor.as_str()));
    let text = stdout(&hub.cli(&["dlq", "list", "--status", "all"]));
    assert!(text.contains(&format!("replayed by {actor}")), "{text}");

    // The audit log has the replay with the actor; the chain shows every try.
    let show = hub.cli(&["dlq", "show", &id, "--json"]);
    assert!(show.status.success(), "{}", stderr(&show));
    let detail: Value = serde_json::from_str(&stdout(&show)).unwrap();
    let audit = detail["audit"].as_array().unwrap();
    let last = audit.last().unwrap();
    assert_eq!(last["action"], "dead_letter.replayed");
    assert_eq!(last["actor"].as_str(), Some(actor.as_str()));
    assert_eq!(last["detail"]["outcome"], "replayed");
    let chain: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(chain, ["dead_lettered", "replay_failed", "replayed"]);
    let text = stdout(&hub.cli(&["dlq", "show", &id]));
    assert!(
        text.contains("error chain:") && text.contains("MSH|"),
        "{text}"
    );

    // A second replay is refused, and says why.
    let out = hub.cli(&["dlq", "replay", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("refused"), "{}", stdout(&out));

    // A purge needs a reason: 400, a problem body.
    let (status, body) = http_post(
        hub.http,
        "/api/dead-letters/purge",
        &format!(r#"{{"ids":[{id}],"actor":"test"}}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("reason"), "{body}");
    // The partner's resend of the now accepted message is a duplicate.
    let ack = Partner::connect(hub.mllp).send(&oru("DLQ-1"));
    assert_eq!(ack.code(), "AA");
    assert!(ack.0.contains("duplicate"), "{}", ack.0);
}

#[test]
fn a_delivery_that_failed_for_good_is_replayed_once_the_sink_is_fixed() {
    let routes = r#"
[[route]]
name = "results"
kinds = ["qc.*"]
sink = "results_file"
retry = { max_attempts = 2, initial_backoff_ms = 20, max_backoff_ms = 50 }
"#;
    // Every write to /dev/full fails with "no space left on device".
    let mut hub = Hub::start_with(Setup {
        routes: Some(routes),
        results_sink: Some("/dev/full"),
        ..Setup::default()
    });
    let ack = Partner::connect(hub.mllp).send(&oru("FULL-1"));
    assert_eq!(ack.code(), "AA");
    hub.wait_for("the delivery dead letter", || {
        !dlq_list(&hub, &["--stage", "deliver"]).is_empty()
    });
    let dl = dlq_list(&hub, &["--stage", "deliver"])[0].clone();
    assert_eq!(
        (
            dl["code"].as_str(),
            dl["sink"].as_str(),
            dl["attempts"].as_u64()
        ),
        (Some("delivery_failed"), Some("results_file"), Some(2))
    );

    // The operator points the sink at a disk with room and restarts.
    let config = std::fs::read_to_string(&hub.config).unwrap();
    let fixed = hub.dir.path().join("out/results.jsonl");
    std::fs::write(
        &hub.config,
        config.replace("/dev/full", &fixed.display().to_string()),
    )
    .unwrap();
    hub.kill();
    hub.restart();
    let out = hub.cli(&["dlq", "replay", "--all", "--reason", "delivery_failed"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    hub.wait_delivered();
    let ids: Vec<Value> = hub
        .sink("results")
        .iter()
        .map(|e| e["source"]["message_id"].clone())
        .collect();
    assert_eq!(ids, ["FULL-1"]);
    assert!(dlq_list(&hub, &["--stage", "deliver"]).is_empty());
}
