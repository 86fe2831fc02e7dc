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
fn check_refuses_a_bad_coi_format_naming_its_product() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, formats: &str| {
        let config = dir.path().join(name);
        std::fs::write(
            &config,
            format!(
                "[paths]\nroutes = \"{}\"\nmappings = \"{}\"\n\
                 [sinks.orders_file]\ntype = \"jsonl\"\npath = \"o.jsonl\"\n\
                 [sinks.results_file]\ntype = \"jsonl\"\npath = \"r.jsonl\"\n\
                 [sinks.patients_file]\ntype = \"jsonl\"\npath = \"p.jsonl\"\n\
                 [sinks.alerts_file]\ntype = \"jsonl\"\npath = \"a.jsonl\"\n\
                 [sinks.therapy_file]\ntype = \"jsonl\"\npath = \"t.jsonl\"\n\
                 [sinks.coldchain]\ntype = \"coldchain\"\n\
                 [identity]\ncoi_formats = [\n{formats}]\n",
                repo().join("routes").display(),
                repo().join("mappings").display()
            ),
        )
        .unwrap();
        config
    };
    let good = write(
        "good.toml",
        "{ product = \"R240\", pattern = \"R240-[0-9]{8}-[0-9A-Z*]\", check = \"mod37_2\" },\n",
    );
    let out = cgthub(&["check", "--config", good.to_str().unwrap()], dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");

    let bad = write(
        "bad.toml",
        "{ product = \"R240\", pattern = \"R240-[0-9\" },\n",
    );
    let out = cgthub(&["check", "--config", bad.to_str().unwrap()], dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "error: identity.coi_formats: COI format of product \"R240\": invalid pattern"
        ),
        "{text}"
    );

    let twice = write(
        "twice.toml",
        "{ product = \"K9\", pattern = \"K9[0-9]{6}\" },\n{ product = \"K9\", pattern = \"K9.*\" },\n",
    );
    let out = cgthub(&["check", "--config", twice.to_str().unwrap()], dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("product \"K9\" has more than one format"),
        "{text}"
    );
}

#[test]
fn the_rabbitmq_config_checks_and_a_queue_on_a_file_sink_is_refused() {
    let ok = cgthub(&["check", "--config", "config/rabbitmq.toml"], repo());
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{text}");
    assert!(text.contains("5 route(s), 1 sink(s)"), "{text}");

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

/// Runs `psql` against `db` on the local PostgreSQL, panicking on failure.
fn psql(db: &str, sql: &str) {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
            "-c",
            sql,
        ])
        .output()
        .expect("psql (is PostgreSQL installed?)");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Drops the test's database however the test ends.
struct Database(String);

impl Drop for Database {
    fn drop(&mut self) {
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0),
        );
    }
}

#[test]
fn migrate_creates_a_postgres_schema_and_check_tells_its_state() {
    let db = Database(format!("cgthub_cli_{}", std::process::id()));
    psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.0),
    );
    psql("postgres", &format!("CREATE DATABASE {}", db.0));
    let url = format!("postgres://postgres@127.0.0.1:5432/{}", db.0);
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cgthub"))
            .args(args)
            .env("CGTHUB__STORE__URL", &url)
            .current_dir(repo())
            .output()
            .expect("run cgthub");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };

    let (ok, out) = run(&["check"]);
    assert!(
        ok,
        "an empty database is fine: serve creates the schema\n{out}"
    );
    assert!(out.contains("empty"), "{out}");

    let (ok, out) = run(&["migrate"]);
    assert!(ok, "{out}");
    assert!(out.contains("schema version 0 -> "), "{out}");
    let (ok, out) = run(&["migrate"]);
    assert!(
        ok && out.contains("up to date"),
        "a second migrate changes nothing\n{out}"
    );
    let (ok, out) = run(&["check"]);
    assert!(ok && out.contains("up to date"), "{out}");

    // The newest migration undone in the books: behind.
    psql(
        &db.0,
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
    );
    let (ok, out) = run(&["check"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("is behind") && out.contains("cgthub migrate"),
        "{out}"
    );

    // A schema from a newer cgthub: refused too.
    psql(
        &db.0,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', true, '\\x00', 0)",
    );
    let (ok, out) = run(&["check"]);
    assert!(!ok, "{out}");
    assert!(out.contains("newer than this cgthub"), "{out}");
}

#[test]
fn check_names_a_postgres_store_that_does_not_answer() {
    let out = Command::new(env!("CARGO_BIN_EXE_cgthub"))
        .args(["check"])
        .env(
            "CGTHUB__STORE__URL",
            "postgres://postgres:secret@127.0.0.1:9/cgthub",
        )
        .current_dir(repo())
        .output()
        .expect("run cgthub");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("store postgres://postgres:***@127.0.0.1:9/cgthub"),
        "{text}"
    );
    assert!(!text.contains("secret"), "the password stays out: {text}");
}
