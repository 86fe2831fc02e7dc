//! Partners under load: several MLLP connections sending pipelined copies of
//! a corpus message with unique MSH-10s, recording which ones got AA.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{fixture, with_control_id, Partner};

/// The message every load partner sends (an ORU^R01 with several OBX).
pub const MESSAGE: &str = "hl7v2/rethinkhealth_bench_oru_r01_v2.5_multiOBX.hl7";

/// A running load: `connections` partners, `in_flight` frames each, at most
/// `per_connection` messages each, ids `"{tag}{conn}-{i}"`.
pub struct Load {
    pub acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(
        hub: SocketAddr,
        tag: &str,
        connections: usize,
        in_flight: usize,
        per_connection: usize,
    ) -> Load {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..connections)
            .map(|c| {
                let (a, s) = (Arc::clone(&acked), Arc::clone(&stop));
                let prefix = format!("{tag}{c}-");
                std::thread::spawn(move || partner(hub, &prefix, in_flight, per_connection, a, s))
            })
            .collect();
        Load {
            acked,
            stop,
            threads,
        }
    }

    /// How many got AA so far.
    pub fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until at least `n` were acknowledged (or fails after a minute).
    pub fn wait_acked(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.acked_count() < n {
            assert!(
                Instant::now() < deadline,
                "load stalled at {}",
                self.acked_count()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops sending (after `now` is false: lets them finish) and returns
    /// the ids that got AA.
    pub fn finish(self, now: bool) -> Vec<String> {
        if now {
            self.stop.store(true, Ordering::Relaxed);
        }
        for t in self.threads {
            let _ = t.join();
        }
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}

/// Sends pipelined messages until the hub goes away or all are sent.
fn partner(
    hub: SocketAddr,
    prefix: &str,
    in_flight: usize,
    count: usize,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let base = String::from_utf8(fixture(MESSAGE)).expect("UTF-8 fixture");
    let mut reader = Partner::connect(hub);
    let mut writer = reader.stream.try_clone().expect("clone stream");
    let (tx, rx) = mpsc::sync_channel::<String>(in_flight);
    let ids: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
    let sending = std::thread::spawn(move || {
        for id in ids {
            if stop.load(Ordering::Relaxed) {
                break;
            }
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
