//! Intake throughput of the store: 64 concurrent submitters, each waiting
//! for its own receipt (as a connector does before it ACKs), into a SQLite
//! file in a temp dir, with `synchronous=FULL`.
//!
//! Each record: a ~2 KB payload and one ~1.5 KB event with one destination.
//! Record construction is inside the timed loop but cheap (the payload and
//! its hash are shared, the event body is copied): this measures the store.
//!
//! `cargo bench -p hub-core --bench store_intake -- --warm-up-time 1 --measurement-time 5`

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hub_core::event::{DeviationRaised, Source};
use hub_core::store::{
    BatchStats, Destination, IntakeOutcome, IntakeRecord, PreparedEvent, Store, StoreOptions,
};
use hub_core::{EventData, Inbound, TherapyEvent};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const SUBMITTERS: u64 = 64;

/// Everything a record is made from, built once.
struct Template {
    payload: Bytes,
    /// Offset of MSH-10 (the message id) in `payload`.
    msh10: usize,
    event: PreparedEvent,
}

fn template() -> Template {
    let mut payload = String::from(
        "MSH|^~\\&|LIS|LAB|CGTHUB|HUB|20261121091400||ORU^R01|MSG000000000000|P|2.5.1\r",
    );
    let msh10 = payload.find("MSG0").expect("template has MSH-10");
    while payload.len() < 2048 {
        payload.push_str("OBX|1|NM|WBC^White cells^LN||7.2|10*3/uL|4.0-11.0|N|||F\r");
    }
    let payload = Bytes::from(payload.into_bytes());
    let sha256 = hex::encode(Sha256::digest(&payload));
    let mut ev = TherapyEvent {
        schema: (),
        event_id: TherapyEvent::new_id(),
        data: EventData::DeviationRaised(DeviationRaised {
            deviation_id: "DEV-2026-0042".into(),
            severity: Some("minor".into()),
            description: String::new(),
            batch_id: Some("B-0001".into()),
        }),
        coi: Some("W1234 26 000001".into()),
        order_id: Some("ORD-1".into()),
        product: Some("CART-19".into()),
        occurred_at: Utc::now(),
        recorded_at: Utc::now(),
        source: Source {
            connector: "hl7v2".into(),
            partner: "LAB".into(),
            message_id: Some("MSG".into()),
            payload_sha256: sha256,
            entry: None,
        },
        claims: Default::default(),
    };
    // Pad the description so that the event's JSON is ~1.5 KB.
    let bare = serde_json::to_string(&ev).expect("event serialises").len();
    if let EventData::DeviationRaised(d) = &mut ev.data {
        d.description = "x".repeat(1536usize.saturating_sub(bare));
    }
    let dest = Destination {
        route: "qc-to-mes".into(),
        sink: "amqp".into(),
        routing_key: "none.deviation.raised".into(),
    };
    let event = PreparedEvent::new(&ev, vec![dest]);
    assert!(
        (1400..1700).contains(&event.body.len()),
        "body {} bytes",
        event.body.len()
    );
    Template {
        payload,
        msh10,
        event,
    }
}

/// Record `n`: its own message id, payload bytes (so its own hash, as in
/// real traffic) and event id; one of 256 chains of identity.
fn record(t: &Template, n: u64) -> IntakeRecord {
    let message_id = format!("MSG{n:012}");
    let mut payload = t.payload.to_vec();
    payload[t.msh10..t.msh10 + message_id.len()].copy_from_slice(message_id.as_bytes());
    let mut event = t.event.clone();
    event.event_id = Uuid::now_v7();
    event.coi = Some(format!("W1234 26 {:06}", n % 256));
    IntakeRecord {
        inbound: Inbound::new(
            "hl7v2",
            "LAB",
            "x-application/hl7-v2+er7",
            Some(message_id),
            Bytes::from(payload),
            "127.0.0.1:40000",
        ),
        outcome: IntakeOutcome::Events(vec![event]),
    }
}

/// Runs `iters` intakes over [`SUBMITTERS`] tasks and times them.
async fn run(store: &Store, t: &Arc<Template>, next: &Arc<AtomicU64>, iters: u64) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..SUBMITTERS)
        .map(|k| {
            let n = iters / SUBMITTERS + u64::from(k < iters % SUBMITTERS);
            let (store, t, next) = (store.clone(), Arc::clone(t), Arc::clone(next));
            tokio::spawn(async move {
                for _ in 0..n {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    let receipt = store.intake(record(&t, id)).await.expect("intake");
                    assert!(!receipt.duplicate);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("submitter");
    }
    start.elapsed()
}

fn intake(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let commits = Arc::new(AtomicUsize::new(0));
    let messages = Arc::new(AtomicUsize::new(0));
    let busy_us = Arc::new(AtomicU64::new(0));
    let (cs, ms, bs) = (
        Arc::clone(&commits),
        Arc::clone(&messages),
        Arc::clone(&busy_us),
    );
    let started = Instant::now();
    let opts = StoreOptions {
        url: format!("sqlite://{}", dir.path().join("bench.db").display()),
        on_batch: Some(Arc::new(move |s: BatchStats| {
            cs.fetch_add(1, Ordering::Relaxed);
            ms.fetch_add(s.messages, Ordering::Relaxed);
            bs.fetch_add(s.commit.as_micros() as u64, Ordering::Relaxed);
        })),
        // STORE_BENCH_SYNC=normal measures without the per-commit fsync.
        synchronous_full: std::env::var("STORE_BENCH_SYNC").map_or(true, |v| v != "normal"),
        ..StoreOptions::default()
    };
    let store = rt.block_on(Store::open(opts)).expect("open store");
    let t = Arc::new(template());
    let next = Arc::new(AtomicU64::new(0));

    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1));
    group.bench_function("intake_64_submitters", |b| {
        b.iter_custom(|iters| rt.block_on(run(&store, &t, &next, iters)))
    });
    group.finish();

    let (commits, messages) = (
        commits.load(Ordering::Relaxed),
        messages.load(Ordering::Relaxed),
    );
    let busy = Duration::from_micros(busy_us.load(Ordering::Relaxed));
    eprintln!(
        "{messages} intakes in {commits} group commits ({:.1} per commit, {:.2} ms each); \
         writer in transactions {:.0}% of {:.1} s",
        messages as f64 / commits.max(1) as f64,
        busy.as_secs_f64() * 1e3 / commits.max(1) as f64,
        100.0 * busy.as_secs_f64() / started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    rt.block_on(store.close());
}

criterion_group!(benches, intake);
criterion_main!(benches);
