//! Plain-dialect rows through the chunker and `translate_chunk`: decode,
//! cut into chunks, parse, map each row into a typed `qc.result_reported`.
//!
//! `cargo bench -p cgthub-lims-csv -- --warm-up-time 1 --measurement-time 3`
//!
//! - `chunk/10000`: bytes → UTF-8 → preamble/header → 10 chunks of 1,000 rows.
//! - `chunk_translate/10000`: the same, then every row mapped to its event.
//! - `translate/1000`: one stored 1,000-row chunk mapped again.

/// The same allocator as the `cgthub` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::path::Path;

use cgthub_lims_csv::LimsCsvConnector;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const HEADER: &str = "sample_id,coi,specimen_id,test_code,test_name,result,unit,specification,pass_fail,analyst,instrument,result_time,status\n";

fn file(rows: usize) -> Vec<u8> {
    let mut out = String::from(HEADER);
    let tests = [
        ("VIAB", "Viability (7-AAD)", "%"),
        ("CD3", "CD3+ T cells", "cells/uL"),
        ("ENDO", "Endotoxin", "EU/mL"),
    ];
    for i in 0..rows {
        let (code, name, unit) = tests[i % 3];
        out.push_str(&format!(
            "QC-2026-{i:06},CHW123426{i:06},SPM-{i:06}-01,{code},{name},{}.{},{unit},>= 70 %,PASS,jdoe,FACSLyric-02,2026-03-03T09:{:02}:00+01:00,final\n",
            60 + i % 40,
            i % 10,
            i % 60
        ));
    }
    out.into_bytes()
}

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/lims_csv");
    let lims = LimsCsvConnector::load(&dir).expect("the shipped mappings load");
    let rows = 10_000;
    let bytes = file(rows);

    let mut g = c.benchmark_group("chunk");
    g.throughput(Throughput::Elements(rows as u64));
    g.bench_with_input(BenchmarkId::from_parameter(rows), &bytes, |b, bytes| {
        b.iter(|| {
            let mut n = 0;
            for chunk in lims.open("lims", &bytes[..]).expect("opens") {
                n += chunk.expect("chunk").rows;
            }
            black_box(n)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("chunk_translate");
    g.throughput(Throughput::Elements(rows as u64));
    g.bench_with_input(BenchmarkId::from_parameter(rows), &bytes, |b, bytes| {
        b.iter(|| {
            let mut events = 0;
            for chunk in lims.open("lims", &bytes[..]).expect("opens") {
                let chunk = chunk.expect("chunk");
                let outcomes = lims
                    .translate_chunk(&chunk.payload, chunk.first_row, "lims", "bench")
                    .expect("translates");
                for o in outcomes {
                    events += o.result.expect("row maps").len();
                }
            }
            assert_eq!(events, rows);
            black_box(events)
        })
    });
    g.finish();

    let chunk = lims
        .open("lims", &bytes[..])
        .expect("opens")
        .next()
        .expect("a chunk")
        .expect("chunk");
    let mut g = c.benchmark_group("translate");
    g.throughput(Throughput::Elements(chunk.rows));
    g.bench_with_input(
        BenchmarkId::from_parameter(chunk.rows),
        &chunk,
        |b, chunk| {
            b.iter(|| {
                let outcomes = lims
                    .translate_chunk(&chunk.payload, chunk.first_row, "lims", "bench")
                    .expect("translates");
                black_box(outcomes.len())
            })
        },
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
