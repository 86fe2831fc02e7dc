//! The shipped template (mappings/pdf/coa_lab.toml) against the fixture
//! PDFs' text, and template loading errors as an operator sees them.

use std::path::{Path, PathBuf};

use cgthub_pdf_entry::{inspect, load_dir, load_file, Policy, Suggestion, TemplateError};

fn mappings() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/pdf")
}

fn fixture_text(name: &str) -> String {
    let bytes = std::fs::read(mappings().join("fixtures").join(name)).unwrap();
    inspect(&bytes).unwrap().text
}

fn pairs(suggestions: &[Suggestion]) -> Vec<(&str, &str)> {
    suggestions
        .iter()
        .map(|s| (s.field.as_str(), s.value.as_str()))
        .collect()
}

#[test]
fn shipped_templates_load() {
    let templates = load_dir(&mappings()).unwrap();
    assert_eq!(templates.keys().collect::<Vec<_>>(), ["coa_lab"]);
    let t = &templates["coa_lab"];
    assert_eq!(t.partner, "coa_lab");
    assert_eq!(t.policy, Policy::DoubleEntry);
    assert_eq!(t.product.as_deref(), Some("CAR-T"));
    let codes: Vec<_> = t.tests.iter().map(|t| t.code.as_str()).collect();
    assert_eq!(
        codes,
        ["STERILITY", "ENDOTOXIN", "VIABILITY", "CD3", "MYCOPLASMA"]
    );
    assert_eq!(t.tests[0].unit, None, "unit = \"\" means none");
}

#[test]
fn suggestions_from_lot_a_are_what_it_prints() {
    let t = load_file(&mappings().join("coa_lab.toml")).unwrap();
    let s = t.suggest(&fixture_text("coa_lab_lot_A.pdf"));
    assert_eq!(
        pairs(&s),
        [
            ("coi", "CHW000126000001"),
            ("specimen_id", "SPC-778812"),
            ("batch_id", "LOT-A-0412"),
            ("report_id", "NBA-2026-0412"),
            ("analyst", "R. Okafor"),
            ("tested_at", "2026-11-28"),
            ("test.0.result", "No growth"),
            ("test.0.specification", "No growth"),
            ("test.0.pass_fail", "pass"),
            ("test.1.result", "0.12"),
            ("test.1.unit", "EU/mL"),
            ("test.1.specification", "< 0.5 EU/mL"),
            ("test.1.pass_fail", "pass"),
            ("test.2.result", "87.5"),
            ("test.2.unit", "%"),
            ("test.2.specification", ">= 70 %"),
            ("test.2.pass_fail", "pass"),
            ("test.3.result", "96.2"),
            ("test.3.unit", "%"),
            ("test.3.specification", ">= 80 %"),
            ("test.3.pass_fail", "pass"),
            ("test.4.result", "Not detected"),
            ("test.4.specification", "Not detected"),
            ("test.4.pass_fail", "pass"),
        ]
    );
}

#[test]
fn suggestions_span_both_pages_and_read_a_fail() {
    let t = load_file(&mappings().join("coa_lab.toml")).unwrap();
    let s = t.suggest(&fixture_text("coa_lab_two_pages.pdf"));
    let s = pairs(&s);
    for expected in [
        ("coi", "CHW000126000002"),
        ("report_id", "NBA-2026-0413"),
        ("batch_id", "LOT-B-0413"),
        ("test.2.result", "68.0"),
        ("test.2.pass_fail", "fail"),
        ("test.3.result", "91.4"), // page 2
        ("test.4.result", "Not detected"),
    ] {
        assert!(s.contains(&expected), "{expected:?} not in {s:?}");
    }
}

/// Text as lopdf's own `extract_text` gives it for these files: every label
/// and cell on its own line. Values are then read from the next line.
#[test]
fn suggestions_from_one_item_per_line_text() {
    let t = load_file(&mappings().join("coa_lab.toml")).unwrap();
    let text = "Certificate No:\nNBA-2026-0412\nChain of Identity:\nCHW000126000001\nBatch:\nLOT-A-0412\nEndotoxin\n0.12 EU/mL\n< 0.5 EU/mL\nPASS\n";
    let s = t.suggest(text);
    assert_eq!(
        pairs(&s),
        [
            ("coi", "CHW000126000001"),
            ("batch_id", "LOT-A-0412"),
            ("report_id", "NBA-2026-0412"),
            ("test.1.result", "0.12"),
            ("test.1.unit", "EU/mL"),
        ]
    );
}

#[test]
fn default_columns_read_result_then_unit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain_lab.toml");
    std::fs::write(
        &path,
        "[template]\ndescription = \"d\"\npolicy = \"review\"\n\n[[tests]]\ncode = \"VIAB\"\nname = \"Viability\"\nlabel = \"Viability\"\n",
    )
    .unwrap();
    let t = load_file(&path).unwrap();
    assert_eq!(t.policy, Policy::Review);
    let s = t.suggest("viability:\t92.4\t%\tConforms\n");
    assert_eq!(
        pairs(&s),
        [
            ("test.0.result", "92.4"),
            ("test.0.unit", "%"),
            ("test.0.pass_fail", "pass"),
        ]
    );
    assert!(t
        .suggest("Viability  Does not conform\n")
        .iter()
        .any(|s| s.value == "fail"));
}

#[test]
fn blank_form_has_the_templates_tests() {
    let t = load_file(&mappings().join("coa_lab.toml")).unwrap();
    let v = t.blank();
    assert_eq!(v.coi, "");
    assert_eq!(v.tests.len(), 5);
    assert_eq!(v.tests[1].code, "ENDOTOXIN");
    assert_eq!(v.tests[1].name, "Bacterial endotoxins (LAL)");
    assert_eq!(v.tests[1].unit, "EU/mL");
    assert_eq!(v.tests[1].specification, "< 0.5 EU/mL");
    assert_eq!(
        (v.tests[1].result.as_str(), v.tests[1].pass_fail.as_str()),
        ("", "")
    );
    assert_eq!(v.tests[0].unit, "");
}

#[test]
fn load_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(mappings().join("coa_lab.toml")).unwrap();
    let typo = shipped.replacen("coi = { label", "coi = { lable", 1);
    let line = typo.lines().position(|l| l.contains("lable")).unwrap() + 1;
    std::fs::write(dir.path().join("coa_lab.toml"), &typo).unwrap();
    // Ignored: cases files and the fixtures folder.
    std::fs::write(dir.path().join("coa_lab.cases.toml"), "not = [toml").unwrap();
    std::fs::create_dir(dir.path().join("fixtures")).unwrap();
    std::fs::write(dir.path().join("fixtures/x.toml"), "not = [toml").unwrap();

    let err = load_dir(dir.path()).unwrap_err();
    let expected_path = dir.path().join("coa_lab.toml");
    match &err {
        TemplateError::Toml {
            path,
            line: l,
            message,
        } => {
            assert_eq!(path, &expected_path);
            assert_eq!(*l, line);
            assert!(message.contains("unknown field `lable`"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!(
            "{} line {line}: unknown field `lable`",
            expected_path.display()
        )),
        "{shown}"
    );

    // A field name the form does not have.
    let unknown = shipped.replacen("analyst = { label", "lot = { label", 1);
    std::fs::write(dir.path().join("coa_lab.toml"), &unknown).unwrap();
    let shown = load_dir(dir.path()).unwrap_err().to_string();
    assert!(shown.contains("unknown field `lot`"), "{shown}");

    // A bad policy value.
    let policy = shipped.replacen("policy = \"double_entry\"", "policy = \"single\"", 1);
    std::fs::write(dir.path().join("coa_lab.toml"), &policy).unwrap();
    let shown = load_dir(dir.path()).unwrap_err().to_string();
    let line = policy
        .lines()
        .position(|l| l.starts_with("policy"))
        .unwrap()
        + 1;
    assert!(
        shown.contains(&format!(
            "coa_lab.toml line {line}: unknown variant `single`"
        )),
        "{shown}"
    );
}

#[test]
fn missing_directory_has_no_templates() {
    let dir = tempfile::tempdir().unwrap();
    assert!(load_dir(&dir.path().join("nope")).unwrap().is_empty());
}
