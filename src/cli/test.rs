//! `cgthub test`: runs mapping fixtures through each connector's own decoder.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use hub_core::mapping::cases;
use hub_core::{Connector, Decoded};

use crate::config;

pub fn run(path: &Path, config_file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let loaded = config::load(config_file)?;
    // Which format folders and cases files to run.
    let (mappings_root, files) = collect(path)?;
    let connectors = match crate::registry::connectors(&loaded.settings, &mappings_root) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                println!("error: {e}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let (mut passed, mut failed) = (0usize, 0usize);
    for (format, file) in files {
        let Some(conn) = connectors.iter().find(|c| c.kind() == format) else {
            println!(
                "FAIL {}: no connector for format {format:?}",
                file.display()
            );
            failed += 1;
            continue;
        };
        let translate = translator(Arc::clone(conn));
        match cases::run_file(&file, &translate) {
            Ok(results) => {
                for r in results {
                    match r.failure {
                        None => {
                            passed += 1;
                            println!("PASS {}: {}", file.display(), r.name);
                        }
                        Some(why) => {
                            failed += 1;
                            println!("FAIL {}: {}: {why}", file.display(), r.name);
                        }
                    }
                }
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {e}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn translator(
    conn: Arc<dyn Connector>,
) -> impl Fn(&[u8], Option<&str>) -> Result<Vec<hub_core::TherapyEvent>, String> {
    move |bytes, partner| {
        let (_, decoded) = conn.translate(bytes::Bytes::copy_from_slice(bytes), "fixture", partner);
        match decoded {
            Decoded::Events(ev) => Ok(ev),
            Decoded::Failed(p) => Err(format!("failed ({}): {}", p.code, p.reason)),
            Decoded::Rejected(p) => Err(format!("rejected ({}): {}", p.code, p.reason)),
        }
    }
}

/// Resolves PATH to (mappings root, [(format, cases file)]).
fn collect(path: &Path) -> anyhow::Result<(PathBuf, Vec<(String, PathBuf)>)> {
    let format_of = |dir: &Path| {
        dir.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string()
    };
    if path.is_file() {
        let dir = path
            .parent()
            .context("a cases file needs a format folder")?;
        let root = dir.parent().unwrap_or(Path::new(".")).to_path_buf();
        return Ok((root, vec![(format_of(dir), path.to_path_buf())]));
    }
    let cases_here = hub_core::mapping::case_files(path)
        .with_context(|| format!("reading {}", path.display()))?;
    if !cases_here.is_empty() {
        let root = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let f = format_of(path);
        return Ok((
            root,
            cases_here.into_iter().map(|c| (f.clone(), c)).collect(),
        ));
    }
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        let f = format_of(&d);
        for c in hub_core::mapping::case_files(&d)? {
            out.push((f.clone(), c));
        }
    }
    Ok((path.to_path_buf(), out))
}
