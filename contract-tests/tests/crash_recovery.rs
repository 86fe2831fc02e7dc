//! The hub is killed with SIGKILL while partners are sending. After a
//! restart, every message that had received an AA is in the store and its
//! event reaches the sink exactly once.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use contract_tests::{fixture, with_control_id, Hub, Partner};

const CONNECTIONS: usize = 4;
const IN_FLIGHT: usize = 8;
const PER_CONNECTION: usize = 2000;

/// Sends pipelined messages until the hub dies or all are sent; returns
/// nothing, records every AA'd id in `acked`.
fn partner(
    hub: std::net::SocketAddr,
    conn: usize,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let base = String::from_utf8(fixture(
        "hl7v2/rethinkhealth_bench_oru_r01_v2.5_multiOBX.hl7",
    ))
    .unwrap();
    let mut reader = Partner::connect(hub);
    let mut writer = reader.stream.try_clone().unwrap();
    let (tx, rx) = mpsc::sync_channel::<String>(IN_FLIGHT);
    let sending = std::thread::spawn(move || {
        for i in 0..PER_CONNECTION {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let id = format!("K{conn}-{i}");
            if tx.send(id.clone()).is_err() {
                break;
            }
            if writer
                .write_all(&Partner::frame(with_control_id(&base, &id).as_bytes()))
                .is_err()
            {
                break;
            }
        }
    });
    while let Ok(id) = rx.recv() {
        let Some(ack) = reader.read_ack() else {
            break;
        };
        assert_eq!(ack.acked_id(), id, "ACKs in order");
        if ack.code() == "AA" {
            acked.lock().unwrap().push(id);
        }
    }
    drop(rx);
    let _ = sending.join();
}

#[test]
fn every_acked_message_survives_sigkill_and_is_delivered_exactly_once() {
    let mut hub = Hub::start(&[]);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let (a, s, addr) = (Arc::clone(&acked), Arc::clone(&stop), hub.mllp);
            std::thread::spawn(move || partner(addr, c, a, s))
        })
        .collect();
    // Kill it mid-stream, once a fair number of messages were acknowledged.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 400 {
        assert!(
            Instant::now() < deadline,
            "load did not start:\n{}",
            hub.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    hub.kill();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = s.join();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
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
