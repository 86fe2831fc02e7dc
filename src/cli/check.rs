//! `cgthub check`: config, then routes, then mappings; every mistake with its
//! file and line, exit 1 if any.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use hub_core::routing::Router;

use crate::config;

pub async fn run(file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let loaded = match config::load(file) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let s = &loaded.settings;
    let mut errors: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let sinks: BTreeSet<String> = s.sinks.keys().cloned().collect();
    let routes = match Router::load_dir(&s.paths.routes, &sinks) {
        Ok(r) => Some(r),
        Err(e) => {
            errors.extend(e.iter().map(ToString::to_string));
            None
        }
    };
    let connectors = match crate::registry::connectors(s, &s.paths.mappings) {
        Ok(c) => c.len(),
        Err(e) => {
            errors.extend(e.iter().map(ToString::to_string));
            0
        }
    };
    errors.extend(s.fhir.check());
    errors.extend(s.b2mml.check());
    errors.extend(s.lims.check());
    errors.extend(s.courier.check());
    errors.extend(s.coldchain.check());
    if s.courier.enabled {
        warnings.extend(s.courier.warnings(|v| std::env::var(v).ok()));
    }
    if s.pdf_entry.enabled {
        errors.extend(s.pdf_entry.errors());
        warnings.extend(s.pdf_entry.warnings());
        let dir = s.paths.mappings.join("pdf");
        match cgthub_pdf_entry::template::load_dir(&dir) {
            Ok(t) => {
                for p in s.pdf_entry.partners.iter().filter(|p| !t.contains_key(*p)) {
                    errors.push(format!(
                        "pdf_entry.partners names {p:?}, but there is no template {}",
                        dir.join(format!("{p}.toml")).display()
                    ));
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if s.sinks
        .values()
        .any(|c| matches!(c, config::SinkConfig::Coldchain))
        && (!s.coldchain.enabled || s.coldchain.profiles.is_empty())
    {
        warnings.push(
            "a coldchain sink is configured but [coldchain] is not enabled or has no profiles: nothing is watched"
                .into(),
        );
    }
    if let Err(e) = hub_core::identity::CoiFormats::new(&s.identity.coi_formats) {
        errors.push(format!("identity.coi_formats: {e}"));
    }
    if let Err(e) = s.identity.rules() {
        errors.push(e);
    }
    if !s.identity.phi_keys.is_empty() {
        if let Err(e) = hub_core::identity::PhiKeys::from_config(&s.identity.phi_keys) {
            errors.push(format!("identity.phi_keys: {e}"));
        }
    }
    if crate::broker::wanted(s) {
        if let Err(e) = s.amqp.validate() {
            errors.push(format!("[amqp]: {e}"));
        }
    }
    if let Some(r) = &routes {
        errors.extend(crate::broker::misplaced_queues(r, &s.sinks));
        if r.routes().is_empty() {
            warnings.push(format!(
                "{}: no routes: every event will be kept as unmatched",
                s.paths.routes.display()
            ));
        }
        for sink in &sinks {
            if !r.routes().iter().any(|x| &x.sink == sink) {
                warnings.push(format!(
                    "sink {sink:?} is configured but no route sends to it"
                ));
            }
        }
    }
    for (name, addr) in [("http.addr", s.http.addr), ("mllp.addr", s.mllp.addr)] {
        if !addr.ip().is_loopback() {
            warnings.push(format!(
                "{name} = {addr} listens beyond this machine without TLS"
            ));
        }
    }
    if s.instance.id.trim().is_empty() {
        errors.push("instance.id: empty; name this process (e.g. hub-a)".into());
    }
    if s.store.claim_lease_ms < 1_000 {
        errors.push(format!(
            "store.claim_lease_ms = {}: below 1000 ms another instance would take rows still being published",
            s.store.claim_lease_ms
        ));
    } else if s.store.url.starts_with("postgres")
        && crate::broker::wanted(s)
        && s.store.claim_lease_ms <= s.amqp.confirm_timeout_ms
    {
        warnings.push(format!(
            "store.claim_lease_ms = {} is not above amqp.confirm_timeout_ms = {}: a row still awaiting its confirm may be published again by another instance",
            s.store.claim_lease_ms, s.amqp.confirm_timeout_ms
        ));
    }
    let mut notes: Vec<String> = Vec::new();
    store_schema(s, &mut notes, &mut errors).await;
    for n in &notes {
        println!("note: {n}");
    }
    for w in &warnings {
        println!("warning: {w}");
    }
    for e in &errors {
        println!("error: {e}");
    }
    let source = loaded
        .file
        .as_ref()
        .map_or("embedded default".to_string(), |p| p.display().to_string());
    if errors.is_empty() {
        println!(
            "ok: config ({source}), {} route(s), {} sink(s), {connectors} connector(s)",
            routes.map_or(0, |r| r.routes().len()),
            sinks.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{} error(s)", errors.len());
        Ok(ExitCode::FAILURE)
    }
}

/// Whether the store answers and its schema is this program's: a schema
/// behind needs `cgthub migrate` (serve also migrates at start); one ahead
/// belongs to a newer cgthub.
async fn store_schema(s: &config::Settings, notes: &mut Vec<String>, errors: &mut Vec<String>) {
    let opts = crate::serve::store_options(s, None);
    let url = hub_core::store::redact_url(&opts.url);
    if let Some(path) = opts.url.strip_prefix("sqlite://") {
        let file = path.split('?').next().unwrap_or(path);
        if !Path::new(file).exists() {
            notes.push(format!(
                "store {url}: not created yet; `cgthub serve` or `cgthub migrate` creates it"
            ));
            return;
        }
    }
    match hub_core::store::Store::schema_status(&opts).await {
        Ok((0, _)) => notes.push(format!(
            "store {url}: empty; `cgthub serve` or `cgthub migrate` creates the schema"
        )),
        Ok((applied, known)) if applied < known => errors.push(format!(
            "store {url}: schema version {applied} is behind this cgthub's {known}; run `cgthub migrate`"
        )),
        Ok((applied, known)) if applied > known => errors.push(format!(
            "store {url}: schema version {applied} is newer than this cgthub's {known}; run the newer cgthub"
        )),
        Ok((applied, _)) => notes.push(format!("store {url}: schema version {applied}, up to date")),
        Err(e) => errors.push(format!("store {url}: {e}")),
    }
}
