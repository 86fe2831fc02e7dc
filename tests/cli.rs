//! The binary's operator commands, run as an operator would.

use std::process::Command;

fn cgthub(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cgthub"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run cgthub")
}

fn repo() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_passes_on_the_shipped_config_and_points_at_a_bad_line() {
    let ok = cgthub(&["check"], repo());
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes");
    std::fs::create_dir(&routes).unwrap();
    std::fs::write(
        routes.join("mine.toml"),
        "[[route]]\nname = \"a\"\nkinds = [\"order.*\"]\nsink = \"orders_file\"\n\n[[route]]\nname = \"b\"\nkinds = [\"order.*\"]\nsink = \"nowhere\"\n",
    )
    .unwrap();
    let mappings = dir.path().join("mappings/hl7v2");
    std::fs::create_dir_all(&mappings).unwrap();
    std::fs::write(
        mappings.join("bad.toml"),
        "format = \"hl7v2\"\nmessage_types = [\"ORU^R01\"]\n[[events]]\nkind = \"qc.result_reported\"\noccurred_at = \"OBR-x\"\n",
    )
    .unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[paths]\nroutes = \"{}\"\nmappings = \"{}\"\n[sinks.orders_file]\ntype = \"jsonl\"\npath = \"o.jsonl\"\n",
            routes.display(),
            dir.path().join("mappings").display()
        ),
    )
    .unwrap();
    let out = cgthub(&["check", "--config", config.to_str().unwrap()], dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("mine.toml:6:"), "the route's line: {text}");
    assert!(text.contains("no sink \"nowhere\""), "{text}");
    assert!(text.contains("bad.toml:5:"), "the mapping's line: {text}");
    assert!(text.contains("OBR-x"), "{text}");
}

#[test]
fn the_shipped_mapping_fixtures_pass() {
    let out = cgthub(&["test"], repo());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(" passed, 0 failed"), "{text}");
    assert!(!text.contains("FAIL"), "{text}");
}

#[test]
fn a_config_typo_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[http]\naddr = \"127.0.0.1:1\"\n[store]\nulr = \"sqlite://x.db\"\n",
    )
    .unwrap();
    let out = cgthub(&["check", "--config", config.to_str().unwrap()], repo());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("c.toml:4:"), "{text}");
    assert!(text.contains("ulr"), "{text}");
}

#[test]
fn the_rabbitmq_config_checks_and_a_queue_on_a_file_sink_is_refused() {
    let ok = cgthub(&["check", "--config", "config/rabbitmq.toml"], repo());
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{text}");
    assert!(text.contains("3 route(s), 1 sink(s)"), "{text}");

    // A [route.queue] means "declare this on the broker": on a file sink it
    // is a mistake, named with its file and line.
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes");
    std::fs::create_dir(&routes).unwrap();
    std::fs::write(
        routes.join("r.toml"),
        "[[route]]\nname = \"a\"\nkinds = [\"order.*\"]\nsink = \"orders_file\"\n\n\
         [[route]]\nname = \"b\"\nkinds = [\"qc.*\"]\nsink = \"orders_file\"\n[route.queue]\nname = \"q\"\n",
    )
    .unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[paths]\nroutes = \"{}\"\nmappings = \"{}\"\n[sinks.orders_file]\ntype = \"jsonl\"\npath = \"o.jsonl\"\n",
            routes.display(),
            repo().join("mappings").display()
        ),
    )
    .unwrap();
    let out = cgthub(&["check", "--config", config.to_str().unwrap()], dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("r.toml:6:"), "{text}");
    assert!(text.contains("not of type \"amqp\""), "{text}");

    // And a bad AMQP URL is caught before anything starts.
    let config = dir.path().join("bad_url.toml");
    std::fs::write(
        &config,
        format!(
            "[paths]\nroutes = \"{}\"\nmappings = \"{}\"\n[amqp]\nurl = \"http://broker\"\n\
             [sinks.rabbitmq]\ntype = \"amqp\"\n",
            repo().join("routes/rabbitmq").display(),
            repo().join("mappings").display()
        ),
    )
    .unwrap();
    let out = cgthub(&["check", "--config", config.to_str().unwrap()], dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("[amqp]"), "{text}");
}
