//! Parse and map of a ~20 KiB B2MML V0600 SegmentResponse.
//!
//! `cargo bench -p cgthub-b2mml -- --warm-up-time 1 --measurement-time 3`
//!
//! - `quick_xml_only/*`: quick-xml alone, no tree: `NsReader` resolving
//!   every event, `NsReader` resolving start tags only, plain `Reader` (what
//!   the tree uses, with its own prefix resolution: see `tree.rs`).
//! - `parse/20KiB`: bytes → UTF-8 check → element tree.
//! - `parse_map/20KiB`: parse, then run the shipped `segment_response`
//!   mapping (no hashing, no JSON).
//! - `translate/20KiB`: what the hub does per message before storing it:
//!   SHA-256 of the payload, parse, pick the shipped
//!   `mappings/b2mml/segment_response` mapping, run it into a typed
//!   `manufacturing.step_completed` event, and serialise the event to JSON.

use std::hint::black_box;

use cgthub_b2mml::testdata::segment_response;
use cgthub_b2mml::{B2mmlConnector, B2mmlMessage};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hub_core::{Connector, Decoded};

fn bench(c: &mut Criterion) {
    let (doc, _, _) = segment_response(20);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/b2mml");
    let conn = B2mmlConnector::load(&dir).expect("shipped mappings load");

    let mut g = c.benchmark_group("quick_xml_only");
    g.bench_function("ns_reader", |b| {
        b.iter(|| {
            let mut r = quick_xml::NsReader::from_str(black_box(&doc));
            let mut n = 0usize;
            loop {
                match r.read_resolved_event() {
                    Ok((_, quick_xml::events::Event::Eof)) => break,
                    Ok(_) => n += 1,
                    Err(_) => break,
                }
            }
            n
        })
    });
    g.bench_function("ns_reader_read_event", |b| {
        b.iter(|| {
            let mut r = quick_xml::NsReader::from_str(black_box(&doc));
            let mut n = 0usize;
            loop {
                match r.read_event() {
                    Ok(quick_xml::events::Event::Eof) => break,
                    Ok(quick_xml::events::Event::Start(e)) => {
                        let (ns, _) = r.resolve_element(e.name());
                        n += matches!(ns, quick_xml::name::ResolveResult::Bound(_)) as usize;
                    }
                    Ok(_) => n += 1,
                    Err(_) => break,
                }
            }
            n
        })
    });
    g.bench_function("reader", |b| {
        b.iter(|| {
            let mut r = quick_xml::Reader::from_str(black_box(&doc));
            let mut n = 0usize;
            loop {
                match r.read_event() {
                    Ok(quick_xml::events::Event::Eof) => break,
                    Ok(_) => n += 1,
                    Err(_) => break,
                }
            }
            n
        })
    });
    g.finish();

    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(doc.len() as u64));
    g.bench_function("20KiB", |b| {
        b.iter(|| {
            B2mmlMessage::parse(black_box(doc.as_bytes()))
                .expect("valid document")
                .tree()
                .element_count()
        })
    });
    g.finish();

    let mapping = conn
        .mappings()
        .select("bench", "SegmentResponse")
        .expect("the shipped mapping");
    let source = hub_core::event::Source {
        connector: "b2mml".into(),
        partner: "bench".into(),
        message_id: None,
        payload_sha256: String::new(),
        entry: None,
    };
    let mut g = c.benchmark_group("parse_map");
    g.throughput(Throughput::Elements(1));
    g.bench_function("20KiB", |b| {
        b.iter(|| {
            let msg = B2mmlMessage::parse(black_box(doc.as_bytes())).expect("valid document");
            let mut cx = hub_core::mapping::MapContext {
                source: &source,
                recorded_at: chrono::DateTime::UNIX_EPOCH,
                new_id: &mut hub_core::TherapyEvent::new_id,
            };
            let doc = msg.documents().next().expect("one document");
            mapping.run(&doc, &mut cx).expect("maps").len()
        })
    });
    g.finish();

    let payload = bytes::Bytes::from(doc.clone());
    let mut g = c.benchmark_group("translate");
    g.throughput(Throughput::Elements(1));
    g.bench_function("20KiB", |b| {
        b.iter(|| {
            let (_, decoded) = conn.translate(black_box(payload.clone()), "bench", None);
            let Decoded::Events(events) = decoded else {
                panic!("the sample maps")
            };
            events
                .iter()
                .map(|e| serde_json::to_string(e).expect("serialises").len())
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
