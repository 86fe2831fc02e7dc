//! Runs every `mappings/courier/*.cases.toml` through the connector's own
//! `translate`, as `cgthub test` does.

use std::path::PathBuf;

use cgthub_courier::CourierConnector;
use hub_core::mapping::cases;
use hub_core::{Connector, Decoded, TherapyEvent};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../mappings/courier")
}

fn translator(
    conn: &CourierConnector,
) -> impl Fn(&[u8], Option<&str>) -> Result<Vec<TherapyEvent>, String> + '_ {
    move |bytes, partner| {
        let (_, decoded) = conn.translate(bytes::Bytes::copy_from_slice(bytes), "fixture", partner);
        match decoded {
            Decoded::Events(ev) => Ok(ev),
            Decoded::Failed(p) => Err(format!("failed ({}): {}", p.code, p.reason)),
            Decoded::Rejected(p) => Err(format!("rejected ({}): {}", p.code, p.reason)),
        }
    }
}

#[test]
fn every_case_file_passes() {
    let conn = CourierConnector::load(&dir()).expect("shipped mappings load");
    assert_eq!(conn.mappings().len(), 4, "fedex, ups, dhl, logger");
    let translate = translator(&conn);
    let files = hub_core::mapping::case_files(&dir()).expect("mappings/courier");
    assert_eq!(files.len(), 4, "a cases file per mapping");
    let mut failures = Vec::new();
    let mut passed = 0;
    for f in &files {
        for r in cases::run_file(f, &translate).expect("cases file parses") {
            match r.failure {
                None => passed += 1,
                Some(why) => failures.push(format!("{}: {}: {why}", f.display(), r.name)),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(passed >= 14, "only {passed} cases");
}
