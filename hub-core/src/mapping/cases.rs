//! Mapping fixtures: `<name>.cases.toml` beside each mapping, run by
//! `cgthub test`.
//!
//! ```toml
//! [[case]]
//! name = "NIST ELR lead result"
//! input = "fixtures/nist_oru_r01.hl7"   # relative to this file
//! # partner = "LAB"                     # optional; else the connector's own rule
//!
//! [[case.events]]                      # expected events, in order, written by hand
//! kind = "qc.result_reported"
//! occurred_at = "2008-08-15T17:30:00Z"
//! [case.events.data]
//! …
//!
//! [[case]]
//! name = "a bad timestamp is refused"
//! input = "fixtures/bad_ts.hl7"
//! error = "is not an HL7 timestamp"     # the failure must mention this
//! ```
//!
//! An event may state `identity = { mrn = { value, authority }, specimen, name,
//! birth_date, … }`: what the mapping read for the registry (never part of
//! the event), compared like the rest; an event that read nothing has none.
//!
//! An expected event is compared with the mapped one on everything but the
//! parts a mapping does not decide (`event_id`, `recorded_at`, `source`):
//! a field the fixture leaves out must be absent from the event too.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::compile::toml_to_json;
use super::LoadError;
use crate::event::TherapyEvent;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    case: Vec<CaseSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: String,
    input: PathBuf,
    #[serde(default)]
    partner: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    events: Vec<toml::Table>,
}

/// One fixture's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub file: PathBuf,
    pub name: String,
    /// `None` when it passed; otherwise what differed.
    pub failure: Option<String>,
}

/// What a connector does with a fixture's input: decode and map it.
pub type Translate<'a> = dyn Fn(&[u8], Option<&str>) -> Result<Vec<TherapyEvent>, String> + 'a;

/// Runs every case of one cases file.
pub fn run_file(file: &Path, translate: &Translate) -> Result<Vec<CaseResult>, LoadError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| LoadError::file(file, format!("cannot read: {e}")))?;
    let spec: CasesFile = toml::from_str(&text).map_err(|e| {
        LoadError::at(
            file,
            &text,
            e.span().map_or(0, |s| s.start),
            e.message().to_string(),
        )
    })?;
    let base = file.parent().unwrap_or(Path::new("."));
    Ok(spec
        .case
        .into_iter()
        .map(|c| {
            let failure = run_case(base, &c, translate).err();
            CaseResult {
                file: file.to_path_buf(),
                name: c.name,
                failure,
            }
        })
        .collect())
}

fn run_case(base: &Path, c: &CaseSpec, translate: &Translate) -> Result<(), String> {
    let input_path = base.join(&c.input);
    let input = std::fs::read(&input_path)
        .map_err(|e| format!("cannot read {}: {e}", input_path.display()))?;
    let result = translate(&input, c.partner.as_deref());
    match (&c.error, result) {
        (Some(want), Err(got)) if got.contains(want.as_str()) => Ok(()),
        (Some(want), Err(got)) => Err(format!("expected an error mentioning {want:?}, got: {got}")),
        (Some(want), Ok(ev)) => Err(format!(
            "expected an error mentioning {want:?}, got {} event(s)",
            ev.len()
        )),
        (None, Err(got)) => Err(format!("mapping failed: {got}")),
        (None, Ok(events)) => compare(&c.events, &events),
    }
}

fn compare(expected: &[toml::Table], actual: &[TherapyEvent]) -> Result<(), String> {
    if expected.len() != actual.len() {
        return Err(format!(
            "expected {} event(s), got {}",
            expected.len(),
            actual.len()
        ));
    }
    for (i, (want, got)) in expected.iter().zip(actual).enumerate() {
        let want = toml_to_json(toml::Value::Table(want.clone()));
        let mut got = serde_json::to_value(got).map_err(|e| e.to_string())?;
        if let Value::Object(o) = &mut got {
            for k in ["schema", "event_id", "recorded_at", "source"] {
                o.remove(k);
            }
            if let Some(id) = claims_json(&got_claims(actual, i)) {
                o.insert("identity".into(), id);
            }
        }
        if let Some(diff) = difference(&want, &got, &format!("events[{i}]")) {
            return Err(diff);
        }
    }
    Ok(())
}

fn got_claims(actual: &[TherapyEvent], i: usize) -> crate::registry::Claims {
    actual[i].claims.clone()
}

/// What a mapping read for the identity registry, as a case states it:
/// `identity = { mrn = { value = "…", authority = "…" }, specimen = "…",
/// name = "…", birth_date = "…" }` (a bare string when there is no
/// authority). `None` when it read nothing.
fn claims_json(c: &crate::registry::Claims) -> Option<Value> {
    if c.is_empty() {
        return None;
    }
    let mut o = serde_json::Map::new();
    for id in &c.identifiers {
        let v = if id.authority.is_empty() {
            Value::String(id.value.clone())
        } else {
            serde_json::json!({"value": id.value, "authority": id.authority})
        };
        o.insert(id.kind.as_str().to_string(), v);
    }
    if let Some(n) = &c.name {
        o.insert("name".into(), Value::String(n.clone()));
    }
    if let Some(d) = &c.birth_date {
        o.insert("birth_date".into(), Value::String(d.clone()));
    }
    Some(Value::Object(o))
}

/// The first place two JSON trees differ, comparing numbers by value.
pub fn difference(want: &Value, got: &Value, at: &str) -> Option<String> {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                match g.get(k) {
                    Some(gv) => {
                        if let Some(d) = difference(wv, gv, &format!("{at}.{k}")) {
                            return Some(d);
                        }
                    }
                    None => {
                        return Some(format!("{at}.{k}: expected {wv}, but the event has none"))
                    }
                }
            }
            g.iter()
                .find(|(k, _)| !w.contains_key(*k))
                .map(|(k, gv)| format!("{at}.{k}: not expected, but the event has {gv}"))
        }
        (Value::Array(w), Value::Array(g)) => {
            if w.len() != g.len() {
                return Some(format!(
                    "{at}: expected {} item(s), got {}: {got}",
                    w.len(),
                    g.len()
                ));
            }
            w.iter()
                .zip(g)
                .enumerate()
                .find_map(|(i, (wv, gv))| difference(wv, gv, &format!("{at}[{i}]")))
        }
        (Value::Number(w), Value::Number(g)) if w.as_f64() == g.as_f64() => None,
        (w, g) if w == g => None,
        (w, g) => Some(format!("{at}: expected {w}, got {g}")),
    }
}
