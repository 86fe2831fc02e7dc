//! The hub is killed with SIGKILL while partners are sending. After a
//! restart, every message that had received an AA is in the store and its
//! event reaches the sink exactly once.

use std::collections::{HashMap, HashSet};

use contract_tests::load::Load;
use contract_tests::Hub;

const CONNECTIONS: usize = 4;
const IN_FLIGHT: usize = 8;
const PER_CONNECTION: usize = 2000;

#[test]
fn every_acked_message_survives_sigkill_and_is_delivered_exactly_once() {
    let mut hub = Hub::start(&[]);
    let load = Load::start(hub.mllp, "K", CONNECTIONS, IN_FLIGHT, PER_CONNECTION);
    // Kill it mid-stream, once a fair number of messages were acknowledged.
    load.wait_acked(400);
    hub.kill();
    let acked = load.finish(true);
    assert!(
        acked.len() < CONNECTIONS * PER_CONNECTION,
        "the kill landed before the load finished"
    );

    hub.restart();
    hub.wait_delivered();
    let events = hub.sink("results");
    let mut per_event: HashMap<String, usize> = HashMap::new();
    let mut delivered_ids = HashSet::new();
    for e in &events {
        *per_event
            .entry(e["event_id"].as_str().unwrap().to_string())
            .or_default() += 1;
        delivered_ids.insert(e["source"]["message_id"].as_str().unwrap().to_string());
    }
    let dupes: Vec<_> = per_event.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "events delivered twice: {dupes:?}");
    let lost: Vec<_> = acked
        .iter()
        .filter(|id| !delivered_ids.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} AA'd message(s) never delivered, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    // And the store has every one of them.
    let out = hub.cli(&["events", "--json", "--limit", "100000"]);
    let stored: HashSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["source"]["message_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(acked.iter().all(|id| stored.contains(id)));
    eprintln!(
        "{} AA'd before the kill; {} events delivered after restart",
        acked.len(),
        events.len()
    );
}
