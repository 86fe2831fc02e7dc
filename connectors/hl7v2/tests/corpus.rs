//! Every file of the shared HL7 v2 corpus (`$CGTHUB_CORPUS_DIR/hl7v2`, by
//! default `/work/shared/corpus/hl7v2`; see its `SOURCES.md`), with values read
//! from the files by hand. A corpus file without a check here fails the test.
//! The corpus is not part of the repository: without it the test says so and
//! passes.

use std::borrow::Cow;
use std::path::PathBuf;

use cgthub_hl7v2::{decode_text, Hl7Path, Message, ParseError};
use hub_core::mapping::Document;

fn corpus_dir() -> PathBuf {
    std::env::var_os("CGTHUB_CORPUS_DIR")
        .map_or_else(|| PathBuf::from("/work/shared/corpus"), PathBuf::from)
        .join("hl7v2")
}

fn vals(m: &Message<'_>, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    m.values(&Hl7Path::parse(path).unwrap(), m.root(), &mut out);
    out.into_iter().map(Cow::into_owned).collect()
}

fn one(m: &Message<'_>, path: &str) -> String {
    let v = vals(m, path);
    assert_eq!(v.len(), 1, "{path}: {v:?}");
    v.into_iter().next().unwrap_or_default()
}

#[test]
fn every_corpus_file() {
    let dir = corpus_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "corpus not found at {}: skipped (set CGTHUB_CORPUS_DIR)",
            dir.display()
        );
        return;
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    assert_eq!(names.len(), 10, "{names:?}");
    for name in names {
        let bytes = std::fs::read(dir.join(&name)).unwrap();
        let text = decode_text(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let parsed = Message::parse(&text);
        let stem = name.trim_end_matches(".hl7");
        if stem == "nodehl7complete_catalyze_orm-example_v2.3" {
            check_orm(parsed.map(|_| ()));
            continue;
        }
        let m = parsed.unwrap_or_else(|e| panic!("{name}: {e}"));
        match stem {
            "hl7v2rs_special_chars_escapes_v2.5" => special_chars(&m),
            "hl7v2rs_z-segment_ADT_A01_v2.5" => z_segment(&m),
            "mirth_export_ACK_AA_v2.3" => mirth_ack(&m),
            "mirth_export_ADT_A08_v2.3_extra_fields" => mirth_a08(&m),
            "nodehl7complete_adt-example_ADT_A01_v2.3" => spaces_not_segments(&m),
            "nodehl7complete_nist_ORU_R01_2.5.1_SampleTestCase1" => nist_oru(&m),
            "nwgmsa_OML_O21_genomics_order_coded_v2.5.1" => nwgmsa_oml(&m),
            "nwgmsa_ORU_R01_genomic_report_ED_pdf_v2.5.1" => nwgmsa_oru_ed(&m),
            "rethinkhealth_bench_oru_r01_v2.5_multiOBX" => rethink_oru(&m),
            other => panic!("no checks for corpus file {other}: add them"),
        }
    }
}

/// The OBR phone number holds a raw LF, so segment 7 starts with "8866|".
fn check_orm(result: Result<(), ParseError>) {
    let err = result.unwrap_err();
    assert_eq!(
        err,
        ParseError::BadSegment {
            line: 7,
            found: "8866".into()
        }
    );
    assert_eq!(err.to_string(), r#"segment 7: "8866" is not a segment id"#);
}

fn special_chars(m: &Message<'_>) {
    assert_eq!(one(m, "PID-5"), r"Test|Value^Special~Chars\Escape");
    assert_eq!(m.message_type().as_deref(), Some("ADT^A01"));
    assert_eq!(one(m, "PID-3"), "123");
}

fn z_segment(m: &Message<'_>) {
    assert_eq!(m.segments().collect::<Vec<_>>(), ["MSH", "PID", "ZPV"]);
    assert_eq!(one(m, "ZPV-1"), "legacy-room");
    assert_eq!(one(m, "ZPV-2"), "dirty interface note");
    assert_eq!(one(m, "PID-3[5=MR].1"), "MRN-Z");
    assert_eq!(one(m, "PID-3.4"), "HOSP");
    assert_eq!(one(m, "PID-5.2"), "Zed");
    assert_eq!(m.control_id(), Some("CTRL-Z"));
}

fn mirth_ack(m: &Message<'_>) {
    assert_eq!(m.message_type().as_deref(), Some("ACK"));
    assert_eq!(one(m, "MSA-1"), "AA");
    assert_eq!(one(m, "MSA-2"), "245140");
    assert_eq!(m.sending_app(), None);
    assert_eq!(one(m, "MSH-5"), "EPIC");
    assert_eq!((m.processing_id(), m.version()), (Some("T"), Some("2.3")));
}

fn mirth_a08(m: &Message<'_>) {
    assert_eq!(m.message_type().as_deref(), Some("ADT^A08"));
    assert_eq!(one(m, "MSH-31"), "Todd Horst was also here");
    assert_eq!(m.field_count(0), 31);
    assert_eq!(one(m, "EVN-1"), "A08");
    assert_eq!(m.sending_facility().as_deref(), Some("Todd Horst was here"));
}

/// Segments separated by spaces: the whole message is one (long) MSH segment.
/// This is what a receiver sees: PID lookups are empty, the "segments" are
/// MSH fields (MSH-15 is " EVN"), and the mapping finds no patient.
fn spaces_not_segments(m: &Message<'_>) {
    assert_eq!(m.segment_count(), 1);
    assert_eq!(m.message_type().as_deref(), Some("ADT^A01"));
    assert_eq!(one(m, "MSH-15"), " EVN");
    assert_eq!(one(m, "MSH-22"), " PID");
    assert!(vals(m, "PID-3.1").is_empty());
    assert!(vals(m, "PV1-2").is_empty());
}

fn nist_oru(m: &Message<'_>) {
    assert_eq!(
        m.segments().collect::<Vec<_>>(),
        ["MSH", "SFT", "PID", "ORC", "OBR", "OBX", "SPM"]
    );
    assert_eq!(m.message_type().as_deref(), Some("ORU^R01"));
    assert_eq!(m.control_id(), Some("NIST-100929110701660"));
    assert_eq!(m.sending_app().as_deref(), Some("EHR Application"));
    assert_eq!(m.sending_facility().as_deref(), Some("EHR Facility"));
    assert_eq!(m.version(), Some("2.5.1"));
    assert_eq!(one(m, "PID-3[1].1"), "9817566735");
    assert_eq!(one(m, "PID-3[5=MR].1"), "9817566735");
    assert_eq!(one(m, "PID-3.4"), "MPI&2.16.840.1.113883.19.3.2.1&ISO");
    assert_eq!(one(m, "PID-3.4.2"), "2.16.840.1.113883.19.3.2.1");
    assert_eq!(one(m, "PID-5.1"), "Johnson");
    assert_eq!(one(m, "OBR-7"), "200808151030-0700");
    assert_eq!(one(m, "OBR-4.1"), "10368-9");
    assert_eq!(one(m, "OBX-5"), "50");
    assert_eq!(one(m, "OBX-6.1"), "ug/dL");
    assert_eq!(
        one(m, "OBX-7"),
        "<9 mcg/dL:  Acceptable background lead exposure"
    );
    assert_eq!(one(m, "OBX-8"), "H");
    assert_eq!(one(m, "SPM-4.2"), "Capillary blood specimen");
    assert_eq!(one(m, "MSH-21.1"), "PHLabReport-NoAck");
}

fn nwgmsa_oml(m: &Message<'_>) {
    assert_eq!(m.message_type().as_deref(), Some("OML^O21"));
    assert_eq!(m.accept_ack_type(), Some("AL"));
    assert_eq!(one(m, "PID-3[5=MR].1"), "633");
    assert_eq!(one(m, "PID-3[5=NH].1"), "9449305552");
    assert_eq!(vals(m, "PID-3[*].1"), ["633", "9449305552"]);
    assert_eq!(vals(m, "NTE[*]-3").len(), 16); // 19 NTE, 3 of them empty
    assert_eq!(
        one(m, "NTE[14]-3"),
        "Specimen Collection Status: Collect & send with order"
    );
    assert_eq!(
        one(m, "NTE[14]-3.1.1"),
        "Specimen Collection Status: Collect "
    );
    assert_eq!(vals(m, "OBX[*].5").len(), 7);
    assert_eq!(one(m, "OBX[12]-5"), "DESHPANDE, CHARULATA");
    assert_eq!(one(m, "DG1[2]-3.2"), "Malignant tumour of stomach");
    assert_eq!(one(m, "SPM-2.1"), "25GEN-029GN00001&R0A");
    assert_eq!(one(m, "SPM-2.1.1"), "25GEN-029GN00001");
    assert_eq!(one(m, "SPM-2.1.2"), "R0A");
    assert_eq!(one(m, "SPM-3.2.2"), "699X0");
    // foreach OBR → one group to the end; foreach OBX inside it → 12.
    let obr = m.scopes(&Hl7Path::parse("OBR").unwrap(), m.root());
    assert_eq!(obr.len(), 1);
    let obx = m.scopes(&Hl7Path::parse("OBX").unwrap(), obr[0]);
    assert_eq!(obx.len(), 12);
    let mut out = Vec::new();
    m.values(&Hl7Path::parse("OBX-3.1").unwrap(), obx[3], &mut out);
    m.values(&Hl7Path::parse("OBR-2.1").unwrap(), obx[3], &mut out);
    assert_eq!(out, ["230016", "1601737"]);
}

fn nwgmsa_oru_ed(m: &Message<'_>) {
    assert_eq!(m.message_type().as_deref(), Some("ORU^R01"));
    assert_eq!(one(m, "OBX-2"), "ED");
    assert_eq!(one(m, "OBX-5"), "MOL^IM^PDF^Base64^JVBERi0x...");
    assert_eq!(one(m, "OBX-5.5"), "JVBERi0x...");
    assert_eq!(one(m, "PID-5.4"), "Miss");
    assert_eq!(one(m, "PID-3[5=NH].4"), "NHS");
    assert_eq!(one(m, "PV1-19.1"), "12345");
    assert_eq!(one(m, "OBR-7"), "20190514102000+0200");
}

fn rethink_oru(m: &Message<'_>) {
    assert_eq!(m.message_type().as_deref(), Some("ORU^R01"));
    assert_eq!(vals(m, "OBX[*].5"), ["7.2", "13.5", "40"]);
    assert_eq!(vals(m, "OBX[*]-6"), ["10^3/uL", "g/dL", "%"]);
    assert_eq!(
        vals(m, "OBX[*]-3.2"),
        ["WHITE BLOOD CELL COUNT", "HEMOGLOBIN", "HEMATOCRIT"]
    );
    assert_eq!(one(m, "OBX-6.1"), "10");
    assert_eq!(one(m, "PID-3[5=MR].1"), "789012");
    assert_eq!(one(m, "OBR-4.2"), "CBC PANEL");
    assert!(vals(m, "OBR-4.1").is_empty());
}

#[test]
fn iso_8859_1_declared_in_msh18() {
    let mut bytes =
        b"MSH|^~\\&|A|B|C|D|20250101||ADT^A08|1|P|2.5||||||8859/1\rPID|1||1||Ren".to_vec();
    bytes.extend_from_slice(b"\xE9e^Z\xFCrich");
    let text = decode_text(&bytes).unwrap();
    let m = Message::parse(&text).unwrap();
    assert_eq!(m.charset(), Some("8859/1"));
    assert_eq!(one(&m, "PID-5.1"), "Renée");
    assert_eq!(one(&m, "PID-5.2"), "Zürich");
}
