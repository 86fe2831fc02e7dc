//! Runs every `mappings/b2mml/*.cases.toml` through the connector's own
//! `translate`, as `cgthub test` does.

use std::path::PathBuf;

use cgthub_b2mml::B2mmlConnector;
use hub_core::mapping::cases;
use hub_core::{Connector, Decoded, TherapyEvent};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../mappings/b2mml")
}

fn translator(
    conn: &B2mmlConnector,
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
    let conn = B2mmlConnector::load(&dir()).expect("shipped mappings load");
    assert!(conn.mappings().len() >= 5, "the shipped mappings");
    let translate = translator(&conn);
    let files = hub_core::mapping::case_files(&dir()).expect("mappings/b2mml");
    assert!(!files.is_empty(), "cases files exist");
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
    assert!(passed >= 16, "only {passed} cases");
}
