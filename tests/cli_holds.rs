//! `cgthub holds` and `cgthub trace` as an operator runs them, for what
//! needs no running hub: an empty store, a hold or therapy that is not
//! there, a release without a reason. (Releasing and rejecting real holds
//! is in the contract tests.)

use std::path::Path;
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A migrated, empty SQLite store in a temporary directory.
struct EmptyStore {
    _dir: tempfile::TempDir,
    url: String,
}

impl EmptyStore {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("hub.db").display());
        let store = EmptyStore { _dir: dir, url };
        let out = store.cgthub(&["migrate"]);
        assert!(out.status.success(), "migrate: {}", text(&out));
        store
    }

    fn cgthub(&self, args: &[&str]) -> Output {
        // A port nothing listens on: no hub is running.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let http = free.local_addr().unwrap().to_string();
        drop(free);
        Command::new(env!("CARGO_BIN_EXE_cgthub"))
            .args(args)
            .env("CGTHUB__STORE__URL", &self.url)
            .env("CGTHUB__HTTP__ADDR", http)
            .current_dir(repo())
            .output()
            .expect("run cgthub")
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn an_empty_store_lists_no_holds() {
    let store = EmptyStore::new();
    let out = store.cgthub(&["holds", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stdout.is_empty(), "no table: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0 hold(s)"),
        "{}",
        text(&out)
    );

    let out = store.cgthub(&["holds", "list", "--state", "all", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stdout.is_empty(), "no JSON lines: {}", text(&out));

    let out = store.cgthub(&["holds", "list", "--state", "open"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("unknown state \"open\""),
        "{}",
        text(&out)
    );
}

#[test]
fn a_hold_or_therapy_not_there_exits_1_naming_it() {
    let store = EmptyStore::new();
    let out = store.cgthub(&["holds", "show", "99"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no hold 99"), "{}", text(&out));

    let out = store.cgthub(&["trace", "CHW000126000001"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no therapy with COI CHW000126000001"),
        "{}",
        text(&out)
    );
    let out = store.cgthub(&["trace", "CHW000126000001", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn a_release_or_reject_needs_a_reason_and_a_running_hub() {
    let store = EmptyStore::new();
    for verb in ["release", "reject"] {
        let out = store.cgthub(&["holds", verb, "1"]);
        assert_eq!(out.status.code(), Some(2), "clap refuses: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("required") && err.contains("--reason"),
            "{err}"
        );

        let out = store.cgthub(&["holds", verb, "1", "--reason", " "]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("--reason needs a reason"),
            "{}",
            text(&out)
        );

        let out = store.cgthub(&["holds", verb, "1", "--reason", "checked"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("cannot reach the hub"),
            "{}",
            text(&out)
        );
    }
}
