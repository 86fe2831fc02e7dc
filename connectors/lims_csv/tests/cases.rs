//! Runs every `mappings/lims_csv/*.cases.toml` through the connector's own
//! `translate`, as `cgthub test` does.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use cgthub_lims_csv::LimsCsvConnector;
use hub_core::mapping::{case_files, cases};
use hub_core::{Connector, Decoded};

fn mappings() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/lims_csv")
}

#[test]
fn every_case_file_passes() {
    let lims = LimsCsvConnector::load(&mappings()).expect("the shipped mappings load");
    let translate = |bytes: &[u8], partner: Option<&str>| {
        let (_, decoded) = lims.translate(Bytes::copy_from_slice(bytes), "fixture", partner);
        match decoded {
            Decoded::Events(ev) => Ok(ev),
            Decoded::Failed(p) => Err(format!("failed ({}): {}", p.code, p.reason)),
            Decoded::Rejected(p) => Err(format!("rejected ({}): {}", p.code, p.reason)),
        }
    };
    let files = case_files(&mappings()).unwrap();
    assert!(files.len() >= 2, "{files:?}");
    let mut failures = Vec::new();
    let mut passed = 0;
    for file in files {
        for r in cases::run_file(&file, &translate).unwrap() {
            match r.failure {
                None => passed += 1,
                Some(why) => failures.push(format!("{}: {}: {why}", file.display(), r.name)),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(passed >= 6, "only {passed} cases ran");
}

/// The shipped good fixtures pass the hub's COI check at intake, so the
/// contract tests' files are accepted whole.
#[test]
fn shipped_fixtures_carry_valid_isbt128_cois() {
    let lims = LimsCsvConnector::load(&mappings()).unwrap();
    let formats = hub_core::identity::CoiFormats::isbt128_only();
    for (file, partner) in [("lims_plain.csv", "lims"), ("eurolab_wide.csv", "eurolab")] {
        let bytes = std::fs::read(mappings().join("fixtures").join(file)).unwrap();
        let (_, decoded) = lims.translate(Bytes::from(bytes), "fixture", Some(partner));
        match hub_core::coi_check::normalise(&formats, decoded) {
            Decoded::Events(ev) => assert!(!ev.is_empty()),
            other => panic!("{file}: {other:?}"),
        }
    }
}
