//! Translates the 12-OBX sample N times (argv[1]); for instruction counts
//! under `valgrind --tool=callgrind`, which do not depend on machine load.

use hub_core::Connector;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/hl7v2");
    let conn = cgthub_hl7v2::Hl7Connector::load(Default::default(), &dir).expect("mappings");
    let payload = bytes::Bytes::from(cgthub_hl7v2::testdata::sample_oru(12));
    let mut total = 0;
    for _ in 0..n {
        let (_, decoded) = conn.translate(payload.clone(), "bench", None);
        let hub_core::Decoded::Events(events) = decoded else {
            panic!("maps")
        };
        total += events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap().len())
            .sum::<usize>();
    }
    println!("{total}");
}
