//! Parse and path evaluation for ORU^R01 messages with 5, 12 and 20 OBX.
//!
//! `cargo bench -p cgthub-hl7v2 -- --warm-up-time 1 --measurement-time 3`
//!
//! - `parse/N`: bytes → text (MSH-18, UTF-8 check) → [`Message`].
//! - `parse_map/N`: the same plus 7 root paths and, for each OBX via
//!   `foreach`-style scopes, 8 OBX paths (what a CBC result mapping reads).
//! - `translate/N`: what the hub does per message before storing it: SHA-256
//!   of the payload, decode, parse, pick the shipped `mappings/hl7v2/oru_r01`
//!   mapping, run it into a typed `qc.result_reported` event, and serialise
//!   the event to its JSON body.

/// The same allocator as the `cgthub` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::borrow::Cow;
use std::hint::black_box;

use cgthub_hl7v2::testdata::sample_oru;
use cgthub_hl7v2::{decode_text, Hl7Path, Message};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hub_core::mapping::Document;

const ROOT_PATHS: [&str; 7] = [
    "PID-3[5=MR].1",
    "OBR-2.1",
    "MSH-10",
    "PID-5.1",
    "PID-7",
    "PID-8",
    "OBR-4.1",
];
const OBX_PATHS: [&str; 8] = [
    "OBX-3.1", "OBX-3.2", "OBX-5", "OBX-6.1", "OBX-7", "OBX-8", "OBX-11", "OBX-14",
];

fn compile(paths: &[&str]) -> Vec<Hl7Path> {
    paths
        .iter()
        .map(|p| Hl7Path::parse(p).expect("valid path"))
        .collect()
}

/// Parses and evaluates every path; returns the number of values found.
fn parse_and_map(bytes: &[u8], root: &[Hl7Path], obx: &Hl7Path, per_obx: &[Hl7Path]) -> usize {
    let text = decode_text(bytes).expect("valid text");
    let m = Message::parse(&text).expect("valid message");
    let mut out: Vec<Cow<'_, str>> = Vec::with_capacity(16);
    let mut found = 0;
    for p in root {
        m.values(p, m.root(), &mut out);
    }
    found += out.len();
    for scope in m.scopes(obx, m.root()) {
        out.clear();
        for p in per_obx {
            m.values(p, scope, &mut out);
        }
        found += out.len();
    }
    found
}

fn bench(c: &mut Criterion) {
    let root = compile(&ROOT_PATHS);
    let per_obx = compile(&OBX_PATHS);
    let obx = Hl7Path::parse("OBX").expect("valid path");
    let samples: Vec<(usize, String)> = [5, 12, 20]
        .into_iter()
        .map(|n| (n, sample_oru(n)))
        .collect();

    let mut g = c.benchmark_group("parse");
    for (n, text) in &samples {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(n),
            text.as_bytes(),
            |b, bytes| {
                b.iter(|| {
                    let text = decode_text(black_box(bytes)).expect("valid text");
                    Message::parse(&text)
                        .expect("valid message")
                        .segment_count()
                })
            },
        );
    }
    g.finish();

    let mut g = c.benchmark_group("parse_map");
    for (n, text) in &samples {
        assert_eq!(
            parse_and_map(text.as_bytes(), &root, &obx, &per_obx),
            ROOT_PATHS.len() + n * OBX_PATHS.len(),
            "every path finds a value"
        );
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(
            BenchmarkId::from_parameter(n),
            text.as_bytes(),
            |b, bytes| b.iter(|| parse_and_map(black_box(bytes), &root, &obx, &per_obx)),
        );
    }
    g.finish();

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/hl7v2");
    let conn =
        cgthub_hl7v2::Hl7Connector::load(Default::default(), &dir).expect("shipped mappings load");
    let mut g = c.benchmark_group("translate");
    for (n, text) in &samples {
        let payload = bytes::Bytes::from(text.clone());
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(n), &payload, |b, payload| {
            b.iter(|| {
                use hub_core::Connector;
                let (_, decoded) = conn.translate(black_box(payload.clone()), "bench", None);
                let hub_core::Decoded::Events(events) = decoded else {
                    panic!("the sample maps")
                };
                events
                    .iter()
                    .map(|e| serde_json::to_string(e).expect("serialises").len())
                    .sum::<usize>()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
