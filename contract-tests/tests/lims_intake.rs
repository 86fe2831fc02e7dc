//! CSV exports from a LIMS, as the lab sees it: files written into
//! `data/inbox/lims/{partner}/`, or `POST /lims/{partner}` with its token.
//! Good rows go on, each bad row is a dead letter naming its row and
//! column, and every file ends in `processed/` or `rejected/` beside a
//! report that counts both.

use std::path::{Path, PathBuf};

use contract_tests::{http_request, repo, Hub, Setup};
use serde_json::Value;

/// The lab's token and its SHA-256 (`printf %s lims-secret-token | sha256sum`).
const TOKEN: &str = "lims-secret-token";
const CONFIG: &str = "[lims]\npartners = [\"lims\", \"eurolab\"]\ntokens = [{ partner = \"lims\", sha256 = \"d56137ea3f2a7c4368861b8eced034dabd3f0db36e4a6ada88523bb04e97a148\" }]\nsettle_ms = 200\npoll_ms = 50\n";

fn start() -> Hub {
    Hub::start_with(Setup {
        config_extra: Some(CONFIG),
        ..Setup::default()
    })
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("mappings/lims_csv/fixtures").join(name)).expect("fixture")
}

fn folder(hub: &Hub, partner: &str) -> PathBuf {
    hub.dir.path().join("data/inbox/lims").join(partner)
}

fn report(path: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .expect("report is JSON")
}

/// Drops `body` as `name` (written under a temporary name, then renamed)
/// and waits for its report in `processed/` or `rejected/`.
fn drop_file(hub: &Hub, partner: &str, name: &str, body: &[u8]) -> (&'static str, Value) {
    let dir = folder(hub, partner);
    hub.wait_for("the drop folder", || dir.join("processed").is_dir());
    let tmp = dir.join(format!("{name}.part"));
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
    let mut found = None;
    hub.wait_for("the file's report", || {
        found = ["processed", "rejected"]
            .into_iter()
            .find(|d| dir.join(d).join(format!("{name}.report.json")).exists());
        found.is_some()
    });
    let to = found.unwrap();
    assert!(!dir.join(name).exists(), "the file was not moved");
    assert!(dir.join(to).join(name).exists(), "the file is not in {to}/");
    (
        to,
        report(&dir.join(to).join(format!("{name}.report.json"))),
    )
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

fn results(hub: &Hub) -> Vec<Value> {
    hub.wait_delivered();
    hub.sink("results")
}

#[test]
fn good_rows_go_on_and_each_bad_row_is_a_dead_letter_with_its_row_and_column() {
    let hub = start();
    let (to, r) = drop_file(
        &hub,
        "lims",
        "export-0118.csv",
        &fixture("lims_bad_rows.csv"),
    );
    assert_eq!(to, "processed", "{r}");
    assert_eq!(
        (
            r["rows"].as_u64(),
            r["accepted_rows"].as_u64(),
            r["rejected_rows"].as_u64()
        ),
        (Some(4), Some(1), Some(3)),
        "{r}"
    );
    let rows: Vec<u64> = r["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, [3, 4, 5], "{r}");
    assert!(
        r["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("column pass_fail"),
        "{r}"
    );

    let got = results(&hub);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["data"]["results"][0]["test"]["code"], "VIAB");

    let dead = dlq(&hub);
    assert_eq!(dead.len(), 3, "{dead:?}");
    for (d, row) in dead.iter().rev().zip(["row 3", "row 4", "row 5"]) {
        assert_eq!(d["partner"], "lims");
        assert!(d["reason"].as_str().unwrap().starts_with(row), "{d}");
    }
}

#[test]
fn a_lab_posts_an_export_and_the_same_export_again_is_a_duplicate() {
    let hub = start();
    let auth = format!("Bearer {TOKEN}");
    let post = |body: &[u8], token: &str| {
        let (status, _, text) = http_request(
            hub.http,
            "POST",
            "/lims/lims",
            &[("Authorization", token), ("Content-Type", "text/csv")],
            body,
        )
        .expect("an answer");
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
        )
    };
    let (status, r) = post(&fixture("lims_plain.csv"), &auth);
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["accepted_rows"].as_u64(), r["duplicate"].as_bool()),
        (Some(3), Some(false)),
        "{r}"
    );
    let (status, again) = post(&fixture("lims_plain.csv"), &auth);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(results(&hub).len(), 3);
    // The posted file is kept like a dropped one.
    let processed = folder(&hub, "lims").join("processed");
    let kept = std::fs::read_dir(&processed).unwrap().count();
    assert_eq!(
        kept,
        4,
        "two files and their reports in {}",
        processed.display()
    );

    assert_eq!(post(&fixture("lims_plain.csv"), "Bearer wrong").0, 401);

    // Not CSV: refused in HTTP's terms, and kept with its reason.
    let (status, _, text) = http_request(
        hub.http,
        "POST",
        "/lims/lims",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        b"{\"sample\": 1}",
    )
    .expect("an answer");
    assert_eq!(status, 415, "{text}");
    let dead = dlq(&hub);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["code"], "unsupported_media_type");
    let shown = hub.cli(&["dlq", "show", &dead[0]["id"].to_string()]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("sample"),
        "{}",
        String::from_utf8_lossy(&shown.stdout)
    );
}

#[test]
fn a_file_that_is_not_the_partners_dialect_is_rejected_whole() {
    let hub = start();
    let (to, r) = drop_file(
        &hub,
        "lims",
        "arimport.csv",
        &fixture("senaite_ARImport.csv"),
    );
    assert_eq!(to, "rejected", "{r}");
    assert_eq!(r["code"], "bad_header", "{r}");
    assert!(
        r["reason"].as_str().unwrap().contains("lacks column(s)"),
        "{r}"
    );
    let dead = dlq(&hub);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["code"], "bad_header");
}

#[test]
fn one_row_the_hub_refuses_does_not_stop_the_other_rows_of_its_chunk() {
    let hub = start();
    let plain = String::from_utf8(fixture("lims_plain.csv")).unwrap();
    let mut lines: Vec<String> = plain.lines().map(str::to_string).collect();
    // Row 3's chain of identity is not one at all: the hub's COI check
    // refuses it after mapping, which fails its whole chunk at first.
    lines[2] = lines[2].replacen("CHW123426000117", "NOT A COI", 1);
    let body = lines.join("\n") + "\n";
    let (to, r) = drop_file(&hub, "lims", "mixed.csv", body.as_bytes());
    assert_eq!(to, "processed", "{r}");
    assert_eq!(
        (r["accepted_rows"].as_u64(), r["rejected_rows"].as_u64()),
        (Some(2), Some(1)),
        "{r}"
    );
    assert_eq!(r["rejected"][0]["row"], 3, "{r}");
    assert_eq!(results(&hub).len(), 2);
    // One open dead letter: the row's; the chunk's own was closed.
    let dead = dlq(&hub);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("NOT A COI")
            || dead[0]["code"] == "invalid_coi",
        "{dead:?}"
    );
}

#[test]
fn a_windows_1252_export_with_decimal_commas_and_local_times_arrives_as_utf8() {
    let hub = start();
    let (to, r) = drop_file(
        &hub,
        "eurolab",
        "pruefbericht.csv",
        &fixture("eurolab_wide.csv"),
    );
    assert_eq!(to, "processed", "{r}");
    assert_eq!(r["rejected_rows"], 0, "{r}");
    let got = results(&hub);
    assert!(!got.is_empty());
    assert!(got.iter().all(|e| e["source"]["partner"] == "eurolab"));
    assert!(
        got.iter()
            .any(|e| e["data"]["results"][0]["analyst"] == "Müller"),
        "{got:?}"
    );
}
