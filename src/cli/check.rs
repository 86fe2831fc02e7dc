//! `cgthub check`: config, then routes, then mappings; every mistake with its
//! file and line, exit 1 if any.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use hub_core::routing::Router;

use crate::config;

pub fn run(file: Option<&Path>) -> anyhow::Result<ExitCode> {
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
