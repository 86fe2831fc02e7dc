//! Engine tests on a toy line format, so they do not depend on any connector:
//! a document is lines `SEG|f1|f2…`; a path is `SEG-N`, `SEG[*]-N` or `SEG`.

use std::borrow::Cow;
use std::path::Path;

use super::*;
use crate::event::{EventData, Source};

#[derive(Debug)]
struct Toy;

#[derive(Debug, Clone)]
struct ToyPath {
    seg: String,
    all: bool,
    field: Option<usize>,
}

impl Format for Toy {
    const NAME: &'static str = "toy";
    type Dialect = crate::mapping::NoDialect;
    type Path = ToyPath;
    fn parse_path(text: &str) -> Result<ToyPath, String> {
        let (seg, field) = match text.split_once('-') {
            Some((s, f)) => (
                s,
                Some(
                    f.parse::<usize>()
                        .map_err(|_| format!("bad field in {text}"))?,
                ),
            ),
            None => (text, None),
        };
        let (seg, all) = match seg.strip_suffix("[*]") {
            Some(s) => (s, true),
            None => (seg, false),
        };
        if seg.len() != 3 {
            return Err(format!("{seg:?} is not a segment"));
        }
        Ok(ToyPath {
            seg: seg.into(),
            all,
            field,
        })
    }
}

struct ToyDoc(Vec<Vec<String>>);

#[derive(Debug, Clone, Copy)]
struct Span(usize, usize, Option<usize>);

impl Document for ToyDoc {
    type Format = Toy;
    type Scope = Span;
    fn root(&self) -> Span {
        Span(0, self.0.len(), None)
    }
    fn message_type(&self) -> Option<Cow<'_, str>> {
        self.0
            .first()
            .and_then(|l| l.get(1))
            .map(|s| Cow::Borrowed(s.as_str()))
    }
    fn values<'a>(&'a self, p: &ToyPath, s: Span, out: &mut Vec<Cow<'a, str>>) {
        let Some(f) = p.field else { return };
        let seg = |i: usize| self.0[i][0] == p.seg;
        let hits: Vec<usize> = match s.2 {
            Some(c) if seg(c) && !p.all => vec![c],
            _ => {
                let inside: Vec<usize> = (s.0..s.1).filter(|&i| seg(i)).collect();
                if p.all {
                    inside
                } else if let Some(&i) = inside.first() {
                    vec![i]
                } else {
                    (0..s.0).rev().find(|&i| seg(i)).into_iter().collect()
                }
            }
        };
        for i in hits {
            if let Some(v) = self.0[i].get(f).filter(|v| !v.is_empty()) {
                out.push(Cow::Borrowed(v.as_str()));
            }
        }
    }
    fn scopes(&self, p: &ToyPath, s: Span) -> Vec<Span> {
        let idx: Vec<usize> = (s.0..s.1).filter(|&i| self.0[i][0] == p.seg).collect();
        idx.iter()
            .enumerate()
            .map(|(n, &i)| Span(i, idx.get(n + 1).copied().unwrap_or(s.1), Some(i)))
            .collect()
    }
    fn is_multi(p: &ToyPath) -> bool {
        p.all
    }
}

fn doc(text: &str) -> ToyDoc {
    ToyDoc(
        text.lines()
            .map(|l| l.split('|').map(str::to_string).collect())
            .collect(),
    )
}

fn run(mapping: &str, input: &str) -> Result<Vec<crate::TherapyEvent>, MapError> {
    let m = compile::<Toy>(Path::new("m.toml"), mapping, "m").unwrap();
    let source = Source {
        connector: "toy".into(),
        partner: "p".into(),
        message_id: None,
        payload_sha256: String::new(),
        entry: None,
    };
    let mut n = 0u128;
    let mut ids = || {
        n += 1;
        uuid::Uuid::from_u128(n)
    };
    m.run(
        &doc(input),
        &mut MapContext {
            source: &source,
            recorded_at: chrono::Utc::now(),
            new_id: &mut ids,
        },
    )
}

const RESULTS: &str = r#"
format = "toy"
message_types = ["ORU"]
[maps.status]
F = "final"
P = "preliminary"
[[events]]
kind = "qc.result_reported"
foreach = "OBR"
order_id = "OBR-1"
coi = "PID-2"
occurred_at = { paths = ["OBR-2", "MSH-2"] }
[events.data]
panel = { fields = { code = "OBR-3" } }
[events.data.results]
foreach = "OBX"
[events.data.results.fields]
test = { fields = { code = "OBX-1" } }
value = "OBX-2"
numeric_value = { path = "OBX-2", convert = "try_number" }
status = { path = "OBX-3", map = "status", default = "final" }
"#;

#[test]
fn foreach_groups_and_nested_lists() {
    let input = "MSH|ORU|20250102120000\nPID|x|COI-1\nOBR|ORD-1|202501020830|CBC\nOBX|WBC|7.2|F\nOBX|NOTE|see text|P\nOBR|ORD-2||LYTES\nOBX|NA|140|";
    let events = run(RESULTS, input).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].order_id.as_deref(), Some("ORD-1"));
    assert_eq!(
        events[0].coi.as_deref(),
        Some("COI-1"),
        "PID found before the OBR scope"
    );
    assert_eq!(
        events[0].occurred_at.to_rfc3339(),
        "2025-01-02T08:30:00+00:00"
    );
    assert_eq!(
        events[1].occurred_at.to_rfc3339(),
        "2025-01-02T12:00:00+00:00",
        "falls back to MSH-2"
    );
    let EventData::QcResultReported(first) = &events[0].data else {
        panic!()
    };
    assert_eq!(first.panel.as_ref().unwrap().code, "CBC");
    assert_eq!(first.results.len(), 2);
    assert_eq!(first.results[0].numeric_value, Some(7.2));
    assert_eq!(first.results[1].numeric_value, None);
    assert_eq!(first.results[1].value.as_deref(), Some("see text"));
    let EventData::QcResultReported(second) = &events[1].data else {
        panic!()
    };
    assert_eq!(second.results.len(), 1, "OBX of the second OBR only");
    assert_eq!(
        second.results[0].status,
        Some(crate::event::ResultStatus::Final),
        "default applies when empty"
    );
}

#[test]
fn unmapped_value_names_the_value_path_and_map() {
    let err = run(RESULTS, "MSH|ORU|20250102\nOBR|1|20250102|X\nOBX|A|1|Q").unwrap_err();
    assert_eq!(err.location.as_deref(), Some("OBX-3"));
    assert!(
        err.to_string()
            .contains(r#"value "Q" at OBX-3 is not in map status"#),
        "{err}"
    );
}

#[test]
fn kind_from_a_code_and_required_fields() {
    let m = r#"
format = "toy"
message_types = ["ORM"]
[[events]]
kind = { path = "ORC-1", map = { NW = "order.placed", CA = "order.cancelled" } }
foreach = "ORC"
occurred_at = "MSH-2"
[events.data]
placer_order_id = { path = "ORC-2", required = true }
"#;
    let ev = run(m, "MSH|ORM|2025\nORC|NW|A1\nORC|CA|A2").unwrap();
    let kinds: Vec<_> = ev.iter().map(|e| e.kind().as_str()).collect();
    assert_eq!(kinds, ["order.placed", "order.cancelled"]);
    let err = run(m, "MSH|ORM|2025\nORC|NW|").unwrap_err();
    assert_eq!(err.field, "data.placer_order_id");
    assert!(err.reason.contains("required"), "{err}");
    let err = run(m, "MSH|ORM|2025\nORC|XX|1").unwrap_err();
    assert!(err.reason.contains("\"XX\""), "{err}");
    let err = run(m, "MSH|ORM|2025").unwrap_err();
    assert!(err.reason.contains("no ORC"), "{err}");
}

#[test]
fn wrong_fields_for_the_kind_are_caught() {
    let m = r#"
format = "toy"
message_types = ["X"]
[[events]]
kind = "order.placed"
occurred_at = "MSH-2"
[events.data]
placer_ordr_id = "MSH-1"
"#;
    let err = run(m, "MSH|X|2025").unwrap_err();
    assert!(err.reason.contains("placer_ordr_id"), "{err}");
}

fn load_err(text: &str) -> LoadError {
    compile::<Toy>(Path::new("bad.toml"), text, "bad").unwrap_err()
}

#[test]
fn load_errors_point_at_the_line() {
    let e = load_err("format = \"toy\"\nmessage_types = [\"X\"]\n[[events]]\nkind = \"order.place\"\noccurred_at = \"MSH-2\"\n");
    assert_eq!((e.line, e.file.as_path()), (4, Path::new("bad.toml")));
    assert!(e.message.contains("unknown event kind"), "{e}");

    let e = load_err("format = \"toy\"\nmessage_types = [\"X\"]\n[[events]]\nkind = \"order.placed\"\noccurred_at = \"MSH-x\"\n");
    assert_eq!(e.line, 5, "{e}");
    assert!(e.message.contains("bad toy path"), "{e}");

    let e = load_err("format = \"toy\"\nmessage_types = [\"X\"]\n[[events]]\nkind = \"order.placed\"\noccurred_at = { path = \"MSH-2\", convert = \"stamp\" }\n");
    assert_eq!(e.line, 5);
    assert!(e.message.contains("unknown convert \"stamp\""), "{e}");

    let e = load_err("format = \"toy\"\nmessage_types = [\"X\"]\nmesage = 1\n");
    assert_eq!(e.line, 3, "{e}");

    // A format without a dialect refuses any setting in `[dialect]`.
    let e = load_err("format = \"toy\"\nmessage_types = [\"X\"]\n[dialect]\ndelimiter = \";\"\n[[events]]\nkind = \"order.placed\"\noccurred_at = \"MSH-2\"\n");
    assert!(
        e.message.contains("[dialect]") && e.message.contains("delimiter"),
        "{e}"
    );
    assert_eq!(e.line, 3, "{e}");

    let e = load_err("format = \"hl7v2\"\nmessage_types = [\"X\"]\n[[events]]\nkind = \"order.placed\"\noccurred_at = \"MSH-2\"\n");
    assert_eq!(e.line, 1);
}

#[test]
fn selection_prefers_the_named_partner_and_refuses_clashes() {
    let dir = tempfile::tempdir().unwrap();
    let body = |partners: &str| {
        format!("format = \"toy\"\nmessage_types = [\"ORU\"]\npartners = {partners}\n[[events]]\nkind = \"order.placed\"\noccurred_at = \"MSH-2\"\n")
    };
    std::fs::write(dir.path().join("a_any.toml"), body(r#"["*"]"#)).unwrap();
    std::fs::write(dir.path().join("b_lab.toml"), body(r#"["LAB"]"#)).unwrap();
    std::fs::write(dir.path().join("b_lab.cases.toml"), "not a mapping").unwrap();
    let set = MappingSet::<Toy>::load_dir(dir.path()).unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(set.select("LAB", "ORU").unwrap().name, "b_lab");
    assert_eq!(set.select("OTHER", "ORU").unwrap().name, "a_any");
    assert!(set.select("LAB", "ADT").is_none());

    std::fs::write(dir.path().join("c_lab_again.toml"), body(r#"["LAB"]"#)).unwrap();
    let errs = MappingSet::<Toy>::load_dir(dir.path()).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.contains("already mapped by"), "{}", errs[0]);
}

#[test]
fn fixture_differences_name_the_field() {
    let want = serde_json::json!({"data": {"results": [{"value": "1", "numeric_value": 1}]}});
    let same = serde_json::json!({"data": {"results": [{"value": "1", "numeric_value": 1.0}]}});
    assert_eq!(cases::difference(&want, &same, "e"), None);
    let extra = serde_json::json!({"data": {"results": [{"value": "1", "numeric_value": 1.0, "unit": "g"}]}});
    assert_eq!(
        cases::difference(&want, &extra, "e").unwrap(),
        "e.data.results[0].unit: not expected, but the event has \"g\""
    );
}

const SHIPMENT: &str = r#"
format = "toy"
message_types = ["TRK"]
[[events]]
kind = "shipment.status"
occurred_at = { concat = ["SCN-1", "SCN-2", "SCN-3"] }
[events.data]
tracking_number = "TRK-1"
carrier = { value = "ups" }
status = { concat = ["SCN-4", "SCN-5"], map = { MP = "label_created", IT = "in_transit" } }
location = { concat = ["SCN-6", "SCN-7", "SCN-8"], separator = ", " }
"#;

#[test]
fn concat_joins_pieces_then_maps_and_converts() {
    let ev = run(
        SHIPMENT,
        "TRK|1Z999\nSCN|20250819|081559|-05:00|M|P|CUCUTA||CO",
    )
    .unwrap();
    assert_eq!(ev[0].occurred_at.to_rfc3339(), "2025-08-19T13:15:59+00:00");
    let data = data_of(&ev[0]);
    assert_eq!(data["status"], "label_created", "joined, then mapped");
    assert_eq!(
        data["location"], "CUCUTA, CO",
        "a missing piece is left out"
    );

    // Without a separator, a missing piece means no value at all: the
    // time is required, so the error names the pieces.
    let err = run(SHIPMENT, "TRK|1Z999\nSCN|20250819|081559||M|P|X|Y|Z").unwrap_err();
    assert_eq!(err.kind, MapErrorKind::Required);
    assert_eq!(err.field, "occurred_at");
    assert_eq!(err.location.as_deref(), Some("concat(SCN-1, SCN-2, SCN-3)"));

    // With a separator, no piece at all is no value (location is optional).
    let ev = run(SHIPMENT, "TRK|1Z999\nSCN|20250819|081559|+00:00|I|T").unwrap();
    let data = data_of(&ev[0]);
    assert_eq!(data["status"], "in_transit");
    assert!(data.get("location").is_none(), "{data}");

    // A joined value that is no time is a bad value, located at the pieces.
    let err = run(SHIPMENT, "TRK|1Z999\nSCN|2025|08|xx|I|T").unwrap_err();
    assert_eq!(err.kind, MapErrorKind::BadValue, "{err}");
    assert!(
        err.reason.contains("(at concat(SCN-1, SCN-2, SCN-3))"),
        "{err}"
    );
}

const FEDEX_TIME: &str = r#"
format = "toy"
message_types = ["TRK"]
timezone = "Europe/Paris"
[[events]]
kind = "shipment.status"
occurred_at = { path = "SCN-1", time_format = "%Y-%m-%dT%H:%M:%S %z" }
[events.data]
tracking_number = "TRK-1"
carrier = { value = "fedex" }
status = { value = "in_transit" }
eta = { path = "SCN-2", convert = "timestamp", time_format = "%d.%m.%Y %H:%M" }
"#;

#[test]
fn time_format_reads_a_partners_layout() {
    let ev = run(
        FEDEX_TIME,
        "TRK|1228\nSCN|2024-08-12T15:18:10 -0500|19.08.2024 15:00",
    )
    .unwrap();
    assert_eq!(ev[0].occurred_at.to_rfc3339(), "2024-08-12T20:18:10+00:00");
    let data = data_of(&ev[0]);
    assert_eq!(
        data["eta"], "2024-08-19T13:00:00Z",
        "no offset in the layout: the mapping's zone (CEST)"
    );
    let err = run(FEDEX_TIME, "TRK|1228\nSCN|2024-08-12T15:18:10Z").unwrap_err();
    assert_eq!(err.kind, MapErrorKind::BadValue);
    assert_eq!(err.field, "occurred_at");
    assert!(
        err.reason
            .contains(r#"does not match time_format "%Y-%m-%dT%H:%M:%S %z""#),
        "{err}"
    );
}

#[test]
fn concat_and_time_format_mistakes_are_refused_at_load() {
    let head = "format = \"toy\"\nmessage_types = [\"X\"]\n[[events]]\nkind = \"order.placed\"\n";
    let e = load_err(&format!(
        "{head}occurred_at = {{ path = \"MSH-2\", time_format = \"%Y-%m-%Q\" }}\n"
    ));
    assert_eq!(e.line, 5, "{e}");
    assert!(
        e.message.contains("occurred_at: time_format") && e.message.contains("%Q"),
        "{e}"
    );
    let e = load_err(&format!(
        "{head}occurred_at = \"MSH-2\"\n[events.data]\nplacer_order_id = {{ path = \"MSH-3\", convert = \"number\", time_format = \"%Y\" }}\n"
    ));
    assert_eq!(e.line, 7, "{e}");
    assert!(e.message.contains("time_format goes with convert"), "{e}");
    let e = load_err(&format!(
        "{head}occurred_at = {{ path = \"MSH-2\", concat = [\"MSH-3\"] }}\n"
    ));
    assert!(
        e.message
            .contains("only one of path, paths, value or concat"),
        "{e}"
    );
    let e = load_err(&format!(
        "{head}occurred_at = {{ path = \"MSH-2\", separator = \" \" }}\n"
    ));
    assert!(e.message.contains("separator goes with concat"), "{e}");
    let e = load_err(&format!(
        "{head}occurred_at = {{ concat = [\"MSH-2\", \"M-1\"] }}\n"
    ));
    assert_eq!(e.line, 5, "{e}");
    assert!(e.message.contains("bad toy path \"M-1\""), "{e}");
}

/// An event's `data` as JSON (without the kind tag).
fn data_of(e: &crate::TherapyEvent) -> serde_json::Value {
    serde_json::to_value(&e.data).unwrap()["data"].clone()
}
