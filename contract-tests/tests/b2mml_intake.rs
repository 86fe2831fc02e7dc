//! B2MML from an MES, as the MES sees it: `POST /b2mml/{partner}` with its
//! token, or a file written into `data/inbox/b2mml/{partner}/`. What comes
//! back, where files end up, and what reaches the sink and `cgthub dlq list`.

use std::path::PathBuf;

use contract_tests::{http_request, repo, Hub, Setup};
use serde_json::Value;

/// The MES's token and its SHA-256 (`printf %s mes-secret-token | sha256sum`).
const TOKEN: &str = "mes-secret-token";
const CONFIG: &str = "[b2mml]\npartners = [\"mes\", \"mes2\"]\ntokens = [{ partner = \"mes\", sha256 = \"704f5a417d06fea83bd53eee55c85e8a91451f8ce37b43440a0d5b8372b06742\" }]\nmax_body_bytes = 65536\nsettle_ms = 200\npoll_ms = 50\n";

/// A fixture of the B2MML mappings (`mappings/b2mml/fixtures/`).
fn mapping_fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("mappings/b2mml/fixtures").join(name)).expect("fixture")
}

fn start() -> Hub {
    Hub::start_with(Setup {
        config_extra: Some(CONFIG),
        ..Setup::default()
    })
}

fn post(hub: &Hub, partner: &str, token: Option<&str>, body: &[u8]) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/xml")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let (status, _, body) = http_request(
        hub.http,
        "POST",
        &format!("/b2mml/{partner}"),
        &headers,
        body,
    )
    .unwrap_or_else(|e| panic!("no answer ({e}):\n{}", hub.log()));
    let json =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {status} {body}"));
    (status, json)
}

fn dlq(hub: &Hub) -> Vec<Value> {
    let out = hub.cli(&["dlq", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn inbox(hub: &Hub, partner: &str) -> PathBuf {
    hub.dir.path().join("data/inbox/b2mml").join(partner)
}

/// The files in a folder, with their contents.
fn files(dir: &PathBuf) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn an_mes_posts_a_production_response_and_each_segment_reaches_the_sink() {
    let hub = start();
    let doc = mapping_fixture("production_response_car_t_v0600.xml");
    let (status, body) = post(&hub, "mes", Some(TOKEN), &doc);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "accepted", "{body}");
    assert_eq!(body["events"], 2, "{body}");
    assert_eq!(body["duplicate"], false);

    // The same document again: answered as a duplicate, processed once.
    let (status, again) = post(&hub, "mes", Some(TOKEN), &doc);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["message"], body["message"]);

    hub.wait_delivered();
    let steps: Vec<Value> = hub
        .sink("therapy")
        .into_iter()
        .filter(|e| e["kind"] == "manufacturing.step_completed")
        .collect();
    let names: Vec<&str> = steps
        .iter()
        .map(|e| e["data"]["step"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["TRANSDUCTION", "HARVEST"], "{steps:?}");
    assert!(steps
        .iter()
        .all(|e| e["source"]["partner"] == "mes" && e["data"]["batch_id"] == "B26-0042"));
}

#[test]
fn http_refusals_are_precise_and_kept_as_dead_letters() {
    let hub = start();
    let doc = mapping_fixture("production_response_car_t_v0600.xml");
    // No token, an unknown token, another partner's folder, an unknown partner.
    assert_eq!(post(&hub, "mes", None, &doc).0, 401);
    assert_eq!(post(&hub, "mes", Some("guess"), &doc).0, 401);
    let (status, body) = post(&hub, "mes2", Some(TOKEN), &doc);
    assert_eq!(status, 403, "{body}");
    assert_eq!(post(&hub, "nobody", Some(TOKEN), &doc).0, 404);

    let (status, xxe) = post(
        &hub,
        "mes",
        Some(TOKEN),
        &mapping_fixture("doctype_xxe.xml"),
    );
    assert_eq!(status, 400, "{xxe}");
    assert_eq!(xxe["code"], "doctype_refused", "{xxe}");
    assert!(
        !xxe.to_string().contains("root:"),
        "an entity was expanded: {xxe}"
    );

    let (status, bad) = post(
        &hub,
        "mes",
        Some(TOKEN),
        &mapping_fixture("segment_response_mismatched_tag.xml"),
    );
    assert_eq!(status, 400, "{bad}");
    assert!(bad["detail"].as_str().unwrap().contains("line 3"), "{bad}");

    let (status, unknown) = post(
        &hub,
        "mes",
        Some(TOKEN),
        &mapping_fixture("amplab2mml_sample_b2mml_expected_ShowEquipmentInformation_v0400.xml"),
    );
    assert_eq!(status, 422, "{unknown}");
    assert!(
        unknown["detail"]
            .as_str()
            .unwrap()
            .contains("ShowEquipmentInformation"),
        "{unknown}"
    );

    let (status, mapped) = post(
        &hub,
        "mes",
        Some(TOKEN),
        &mapping_fixture("segment_response_bad_end_time.xml"),
    );
    assert_eq!(status, 422, "{mapped}");
    assert_eq!(mapped["code"], "bad_value", "{mapped}");

    let mut big = b"<ProductionResponse xmlns=\"http://www.mesa.org/xml/B2MML-V0600\">".to_vec();
    big.resize(70_000, b' ');
    let (status, large) = post(&hub, "mes", Some(TOKEN), &big);
    assert_eq!(status, 413, "{large}");

    // Each refused document is a dead letter with its reason.
    let codes: Vec<String> = dlq(&hub)
        .iter()
        .map(|d| d["code"].as_str().unwrap_or("").to_string())
        .collect();
    for code in [
        "doctype_refused",
        "not_well_formed",
        "unknown_document",
        "bad_value",
        "too_large",
    ] {
        assert!(codes.iter().any(|c| c == code), "{code} not in {codes:?}");
    }
}

#[test]
fn a_dropped_file_is_taken_once_complete_and_moved_with_its_report() {
    let hub = start();
    let dir = inbox(&hub, "mes");
    hub.wait_for("the drop folder", || dir.join("processed").is_dir());
    let doc = mapping_fixture("segment_response_expansion_v0600.xml");
    // Written under a temporary name, then renamed: taken as soon as seen.
    std::fs::write(dir.join("expansion.xml.part"), &doc).unwrap();
    std::fs::rename(dir.join("expansion.xml.part"), dir.join("expansion.xml")).unwrap();
    std::fs::write(
        dir.join("broken.xml"),
        mapping_fixture("segment_response_mismatched_tag.xml"),
    )
    .unwrap();

    hub.wait_for("both files settled", || {
        files(&dir.join("processed")).len() == 2 && files(&dir.join("rejected")).len() == 2
    });
    assert_eq!(
        files(&dir),
        Vec::<String>::new(),
        "nothing left in the folder"
    );
    let report: Value = serde_json::from_slice(
        &std::fs::read(dir.join("processed/expansion.xml.report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["outcome"], "accepted", "{report}");
    assert_eq!(report["events"], 1, "{report}");
    let refused: Value = serde_json::from_slice(
        &std::fs::read(dir.join("rejected/broken.xml.report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(refused["code"], "not_well_formed", "{refused}");

    // The same document dropped again is a duplicate: moved, not processed twice.
    std::fs::write(dir.join("expansion-again.xml"), &doc).unwrap();
    hub.wait_for("the repeat settled", || {
        dir.join("processed/expansion-again.xml.report.json")
            .exists()
    });
    let again: Value = serde_json::from_slice(
        &std::fs::read(dir.join("processed/expansion-again.xml.report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(again["duplicate"], true, "{again}");
    hub.wait_delivered();
    let steps = hub
        .sink("therapy")
        .into_iter()
        .filter(|e| e["kind"] == "manufacturing.step_completed")
        .count();
    assert_eq!(steps, 1);
    assert!(dlq(&hub).iter().any(|d| d["code"] == "not_well_formed"));
}
