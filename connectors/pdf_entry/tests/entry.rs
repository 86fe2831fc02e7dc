//! Values keyed in from the lot A certificate: validation with the hub's COI
//! parser, comparison of two entries, and the event they become. Expected
//! values are those printed on coa_lab_lot_A.pdf (see make_fixtures.py).

use std::path::Path;

use cgthub_pdf_entry::{diff, load_file, to_event, Template, Values, KIND};
use chrono::{DateTime, TimeZone, Utc};
use hub_core::event::{ManualEntry, Source};
use hub_core::identity::CoiFormats;
use hub_core::registry::{Claimed, IdKind};
use serde_json::json;

/// The COI printed on coa_lab_lot_A.pdf.
const COI: &str = "CHW000126000001";

/// The hub's COI check, as the portal passes it.
fn check_coi(raw: &str) -> Result<String, String> {
    CoiFormats::isbt128_only()
        .parse(None, raw)
        .map(|c| c.into_string())
        .map_err(|e| e.to_string())
}

fn template() -> Template {
    load_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/pdf/coa_lab.toml"))
        .unwrap()
}

/// The form as a person fills it from the lot A certificate.
fn lot_a_form() -> Vec<(String, String)> {
    let mut form = vec![
        ("_csrf", "a1b2c3"),
        ("coi", COI),
        ("specimen_id", "SPC-778812"),
        ("batch_id", "LOT-A-0412"),
        ("report_id", "NBA-2026-0412"),
        ("analyst", "R. Okafor"),
        ("tested_at", "2026-11-28"),
    ];
    let rows = [
        (
            "STERILITY",
            "Sterility (USP <71>)",
            "No growth",
            "",
            "No growth",
        ),
        (
            "ENDOTOXIN",
            "Bacterial endotoxins (LAL)",
            "0.12",
            "EU/mL",
            "< 0.5 EU/mL",
        ),
        (
            "VIABILITY",
            "Viability (7-AAD flow cytometry)",
            "87.5",
            "%",
            ">= 70 %",
        ),
        (
            "CD3",
            "CD3+ T cells (identity/purity)",
            "96.2",
            "%",
            ">= 80 %",
        ),
        (
            "MYCOPLASMA",
            "Mycoplasma (qPCR)",
            "Not detected",
            "",
            "Not detected",
        ),
    ];
    let mut owned: Vec<(String, String)> = form
        .drain(..)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (i, (code, name, result, unit, spec)) in rows.into_iter().enumerate() {
        for (field, value) in [
            ("code", code),
            ("name", name),
            ("result", result),
            ("unit", unit),
            ("specification", spec),
            ("pass_fail", "PASS"),
        ] {
            owned.push((format!("test.{i}.{field}"), value.to_string()));
        }
    }
    owned
}

fn lot_a() -> Values {
    Values::from_form(&lot_a_form())
}

fn errors_for(values: Values) -> Vec<(String, String)> {
    values
        .validate(check_coi)
        .unwrap_err()
        .into_iter()
        .map(|e| (e.field, e.message))
        .collect()
}

#[test]
fn the_fixture_coi_is_a_valid_isbt128_coi() {
    assert_eq!(check_coi(COI).as_deref(), Ok(COI));
    assert_eq!(check_coi("&/CHW000126000001").as_deref(), Ok(COI));
}

#[test]
fn good_values_are_accepted_and_normalised() {
    let mut form = lot_a_form();
    form.push(("coi".into(), "  &/CHW000126000001 ".into())); // last wins
    form.push(("test.6.unit".into(), "%".into())); // a blank row, dropped
    let v = Values::from_form(&form).validate(check_coi).unwrap();
    assert_eq!(v.coi, COI);
    assert_eq!(v.tests.len(), 5);
    assert!(v.tests.iter().all(|t| t.pass_fail == "pass"));
    assert_eq!(v.tests[1].result, "0.12");
    assert_eq!(v.tested_at, "2026-11-28", "dates are kept as typed");
}

#[test]
fn a_broken_coi_is_refused_with_the_parsers_reason() {
    // The lot A COI with its facility number's first character mistyped as
    // the letter O (not allowed there).
    let mut v = lot_a();
    v.coi = "CHO000126000001".into();
    let errors = errors_for(v);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "coi");
    assert!(errors[0].1.starts_with("COI"), "{}", errors[0].1);
    assert!(errors[0].1.contains("ISBT 128"), "{}", errors[0].1);
    assert!(errors[0].1.contains("position 3"), "{}", errors[0].1);

    // Its last character changed: refused when it is not a character the
    // sequence number allows, with its position.
    let mut v = lot_a();
    v.coi = "CHW00012600000a".into();
    let errors = errors_for(v);
    assert_eq!(errors[0].0, "coi");
    assert!(errors[0].1.contains("position 15"), "{}", errors[0].1);

    // A check that answers without "COI" gets it put in front.
    let err = lot_a()
        .validate(|_| Err("wrong check character".into()))
        .unwrap_err();
    assert_eq!(err[0].message, "COI: wrong check character");
}

/// ISBT 128 Data Structure 040 (as hub-core implements it) has no check
/// character: changing the last character to another allowed one gives
/// another valid COI. Only the pattern can be checked here.
#[test]
fn an_isbt128_coi_has_no_check_character_to_catch_a_changed_last_character() {
    assert!(check_coi("CHW000126000002").is_ok());
}

#[test]
fn every_error_at_once_on_its_field() {
    let mut v = lot_a();
    v.coi.clear();
    v.tested_at = "28.11.2026".into();
    v.tests[0].pass_fail.clear();
    v.tests[1].pass_fail = "ok".into();
    v.tests[2].result.clear();
    v.tests[3].code.clear();
    v.tests[4].tested_at = "2026-11-31".into();
    let fields: Vec<String> = errors_for(v).into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "coi",
            "tested_at",
            "test.0.pass_fail",
            "test.1.pass_fail",
            "test.2.result",
            "test.3.code",
            "test.4.tested_at",
        ]
    );
}

#[test]
fn missing_pass_fail_and_bad_date_say_what_is_expected() {
    let mut v = lot_a();
    v.tests[0].pass_fail.clear();
    v.tested_at = "2026/11/28".into();
    let errors = errors_for(v);
    assert_eq!(errors[0].0, "tested_at");
    assert!(errors[0].1.contains("2026-11-28 14:30"), "{}", errors[0].1);
    assert_eq!(errors[1].0, "test.0.pass_fail");
    assert!(
        errors[1].1.contains("pass or fail is required"),
        "{}",
        errors[1].1
    );
}

#[test]
fn errors_keep_the_forms_row_numbers_past_a_blank_row() {
    let mut form = lot_a_form();
    // Row 1 blanked out in the form: row 2's error is still test.2.
    form.retain(|(k, _)| !k.starts_with("test.1."));
    form.retain(|(k, _)| k != "test.2.result");
    let fields: Vec<String> = errors_for(Values::from_form(&form))
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(fields, ["test.2.result"]);
}

#[test]
fn no_tests_is_an_error() {
    let mut v = lot_a();
    v.tests.clear();
    let errors = errors_for(v);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0, "test.0.code");
}

#[test]
fn identical_entries_do_not_differ() {
    assert_eq!(diff(&lot_a(), &lot_a()), []);
}

#[test]
fn diff_finds_exactly_the_fields_that_differ() {
    let first = lot_a();
    let mut second = lot_a();
    second.batch_id = "LOT-A-0421".into();
    second.tests[1].result = "0.120".into(); // same number
    second.tests[2].result = "78.5".into();
    second.tests[3].pass_fail = "Pass".into(); // case only
    second.tests[4].code = "mycoplasma".into(); // case only
    second.tests[4].specification = "Not detected ".into(); // trailing space
    second.tests[0].unit = "n/a".into();
    let found: Vec<_> = diff(&first, &second)
        .into_iter()
        .map(|m| (m.field, m.label, m.first, m.second))
        .collect();
    let row = |f: &str, l: &str, a: &str, b: &str| {
        (f.to_string(), l.to_string(), a.to_string(), b.to_string())
    };
    assert_eq!(
        found,
        [
            row("batch_id", "Batch", "LOT-A-0412", "LOT-A-0421"),
            row("test.0.unit", "Test 1 (STERILITY): unit", "", "n/a"),
            row(
                "test.2.result",
                "Test 3 (VIABILITY): result",
                "87.5",
                "78.5"
            ),
        ]
    );
}

#[test]
fn numbers_compare_as_numbers_only_when_both_are_numbers() {
    let mut first = lot_a();
    let mut second = lot_a();
    first.tests[1].result = "1.50".into();
    second.tests[1].result = "1.5".into();
    assert_eq!(diff(&first, &second), []);
    first.tests[1].result = "<0.50".into();
    second.tests[1].result = "<0.5".into();
    assert_eq!(diff(&first, &second).len(), 1);
    // Names and other text stay exact.
    second = first.clone();
    second.tests[0].name = "sterility (usp <71>)".into();
    assert_eq!(diff(&first, &second)[0].field, "test.0.name");
}

#[test]
fn diff_finds_a_dropped_row() {
    let first = lot_a();
    let mut second = lot_a();
    second.tests.remove(2); // Viability left out of the second entry
    let found: Vec<_> = diff(&first, &second)
        .into_iter()
        .map(|m| (m.field, m.first, m.second))
        .collect();
    let row = |f: &str, a: &str| (f.to_string(), a.to_string(), String::new());
    assert_eq!(
        found,
        [
            row("test.2.code", "VIABILITY"),
            row("test.2.name", "Viability (7-AAD flow cytometry)"),
            row("test.2.result", "87.5"),
            row("test.2.unit", "%"),
            row("test.2.specification", ">= 70 %"),
            row("test.2.pass_fail", "PASS"),
        ]
    );
    // A verifier resolving each mismatch on the first entry (the portal's
    // way) with the second's value drops the row.
    let mut resolved = first.clone();
    for m in diff(&first, &second) {
        assert!(resolved.set(&m.field, m.second));
    }
    assert_eq!(resolved.without_blank_rows(), second);
}

fn source() -> Source {
    Source {
        connector: KIND.into(),
        partner: "coa_lab".into(),
        message_id: Some("pdf/41/verification".into()),
        payload_sha256: "ab".repeat(32),
        entry: Some(ManualEntry {
            method: "manual".into(),
            document_id: 41,
            document_sha256: "cd".repeat(32),
            entered_by: "erin".into(),
            verified_by: "victor".into(),
            verified_at: Utc.with_ymd_and_hms(2026, 12, 5, 19, 2, 11).unwrap(),
            verification: "double_entry".into(),
        }),
    }
}

#[test]
fn the_event_is_a_qc_result_report_of_what_was_verified() {
    let mut values = lot_a().validate(check_coi).unwrap();
    values.tests[2].analyst = "J. Brandt".into();
    values.tests[2].tested_at = "2026-11-29 09:15".into();
    let recorded: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 12, 5, 19, 2, 12).unwrap();
    let event = to_event(&values, &template(), source(), recorded);

    assert_eq!(
        event.claims.identifiers,
        [
            Claimed::new(IdKind::Specimen, "", "SPC-778812"),
            Claimed::new(IdKind::Batch, "", "LOT-A-0412"),
        ]
    );
    let mut json = serde_json::to_value(&event).unwrap();
    let id = json["event_id"].as_str().unwrap().to_string();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    json["event_id"] = json!("<uuid>");
    let result = |code: &str,
                  name: &str,
                  value: &str,
                  number: Option<f64>,
                  unit: Option<&str>,
                  spec: &str| {
        let mut r = json!({
            "test": {"code": code, "display": name},
            "value_type": if number.is_some() { "NM" } else { "ST" },
            "value": value,
            "status": "final",
            "observed_at": "2026-11-28T00:00:00Z",
            "passed": true,
            "analyst": "R. Okafor",
            "specification": spec,
        });
        if let Some(n) = number {
            r["numeric_value"] = json!(n);
        }
        if let Some(u) = unit {
            r["unit"] = json!(u);
        }
        r
    };
    let mut viability = result(
        "VIABILITY",
        "Viability (7-AAD flow cytometry)",
        "87.5",
        Some(87.5),
        Some("%"),
        ">= 70 %",
    );
    viability["analyst"] = json!("J. Brandt");
    viability["observed_at"] = json!("2026-11-29T09:15:00Z");
    assert_eq!(
        json,
        json!({
            "schema": "cgt.event/v1",
            "event_id": "<uuid>",
            "kind": "qc.result_reported",
            "data": {
                "report_id": "NBA-2026-0412",
                "specimen_id": "SPC-778812",
                "batch_id": "LOT-A-0412",
                "report_status": "final",
                "results": [
                    result("STERILITY", "Sterility (USP <71>)", "No growth", None, None, "No growth"),
                    result("ENDOTOXIN", "Bacterial endotoxins (LAL)", "0.12", Some(0.12), Some("EU/mL"), "< 0.5 EU/mL"),
                    viability,
                    result("CD3", "CD3+ T cells (identity/purity)", "96.2", Some(96.2), Some("%"), ">= 80 %"),
                    result("MYCOPLASMA", "Mycoplasma (qPCR)", "Not detected", None, None, "Not detected"),
                ]
            },
            "coi": COI,
            "product": "CAR-T",
            "occurred_at": "2026-11-28T00:00:00Z",
            "recorded_at": "2026-12-05T19:02:12Z",
            "source": {
                "connector": "pdf_entry",
                "partner": "coa_lab",
                "message_id": "pdf/41/verification",
                "payload_sha256": "ab".repeat(32),
                "entry": {
                    "method": "manual",
                    "document_id": 41,
                    "document_sha256": "cd".repeat(32),
                    "entered_by": "erin",
                    "verified_by": "victor",
                    "verified_at": "2026-12-05T19:02:11Z",
                    "verification": "double_entry"
                }
            }
        })
    );
    // It reads back as the same event (claims are never serialised).
    let back: hub_core::TherapyEvent =
        serde_json::from_value(serde_json::to_value(&event).unwrap()).unwrap();
    assert_eq!(back.data, event.data);
}

#[test]
fn a_failed_test_and_missing_ids() {
    let mut values = lot_a();
    values.specimen_id.clear();
    values.batch_id.clear();
    values.tests[2].result = "68.0".into();
    values.tests[2].pass_fail = "FAIL".into();
    let values = values.validate(check_coi).unwrap();
    let event = to_event(&values, &template(), source(), Utc::now());
    assert!(event.claims.identifiers.is_empty());
    let json = serde_json::to_value(&event).unwrap();
    assert!(json["data"].get("specimen_id").is_none());
    assert!(json["data"].get("batch_id").is_none());
    assert_eq!(json["data"]["results"][2]["passed"], json!(false));
    assert_eq!(json["data"]["results"][2]["numeric_value"], json!(68.0));
}
