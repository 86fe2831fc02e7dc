//! The FedEx Track API sample response through `translate`: JSON parse,
//! mapping choice by shape, and every rule (status per scan, created,
//! custody, delivered).
//!
//! `cargo bench -p cgthub-courier -- --warm-up-time 1 --measurement-time 3`

/// The same allocator as the `cgthub` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::path::Path;

use bytes::Bytes;
use cgthub_courier::CourierConnector;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hub_core::{Connector, Decoded};

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/courier");
    let courier = CourierConnector::load(&dir).expect("the shipped mappings load");
    let payload = Bytes::from(
        std::fs::read(
            dir.join("fixtures/fedex_track_v1_trackingnumbers_response_omniship_mock.json"),
        )
        .expect("the FedEx fixture"),
    );
    let mut g = c.benchmark_group("translate");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("fedex_track", |b| {
        b.iter(|| {
            let (_, decoded) = courier.translate(payload.clone(), "bench", Some("fedex"));
            let Decoded::Events(events) = decoded else {
                panic!("the FedEx sample maps: {decoded:?}")
            };
            black_box(events.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
