//! `inspect` on the fixture PDFs (mappings/pdf/fixtures, written by
//! make_fixtures.py) and on malformed input: what an operator uploading
//! them would see. Expected text is written from make_fixtures.py.

use cgthub_pdf_entry::{inspect, PdfRefusal};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../mappings/pdf/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A one-object-per-body PDF with a correct cross-reference table.
fn build(objects: &[&[u8]]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    let size = objects.len() + 1;
    out.extend_from_slice(format!("xref\n0 {size}\n0000000000 65535 f\r\n").as_bytes());
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {size} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
    );
    out
}

const CATALOG: &[u8] = b"<< /Type /Catalog /Pages 2 0 R >>";
const ONE_PAGE: &[u8] = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>";

#[test]
fn lot_a_reads_line_by_line_as_printed() {
    let pdf = inspect(&fixture("coa_lab_lot_A.pdf")).unwrap();
    assert_eq!(pdf.pages, 1);
    let lines: Vec<&str> = pdf.text.lines().collect();
    assert_eq!(lines.first(), Some(&"Northgate Bioanalytics"));
    assert_eq!(lines.last(), Some(&"Page 1 of 1"));
    for expected in [
        "CERTIFICATE OF ANALYSIS",
        "Certificate No:  NBA-2026-0412  Date Issued:  2026-11-30",
        "Chain of Identity:  CHW000126000001  Product:  CAR-T cell suspension",
        "Specimen ID:  SPC-778812  Batch:  LOT-A-0412",
        "Date Received:  2026-11-24  Date Tested:  2026-11-28",
        "Analyst:  R. Okafor  Client:  Meridian Cell Therapies",
        "Test  Result  Specification  Conclusion",
        "Sterility  No growth  No growth  PASS",
        "Endotoxin  0.12 EU/mL  < 0.5 EU/mL  PASS",
        "Viability  87.5 %  >= 70 %  PASS",
        "CD3+ T cells  96.2 %  >= 80 %  PASS",
        "Mycoplasma  Not detected  Not detected  PASS",
        // One text object of several lines (T*), one shown with `'`.
        "Results relate only to the sample tested. This certificate shall not be",
        "reproduced except in full without written approval of the laboratory.",
        "Reviewed and approved: M. Lindqvist, Head of Quality Assurance, 2026-11-30",
    ] {
        assert!(
            lines.contains(&expected),
            "{expected:?} not in\n{}",
            pdf.text
        );
    }
}

#[test]
fn two_pages_are_counted_and_read_in_order() {
    let pdf = inspect(&fixture("coa_lab_two_pages.pdf")).unwrap();
    assert_eq!(pdf.pages, 2);
    let at = |s: &str| {
        pdf.text
            .find(s)
            .unwrap_or_else(|| panic!("{s:?} not in\n{}", pdf.text))
    };
    assert!(at("Certificate No:  NBA-2026-0413") < at("Viability  68.0 %  >= 70 %  FAIL"));
    assert!(at("Page 1 of 2") < at("CERTIFICATE OF ANALYSIS (continued)"));
    assert!(at("Results continue on page 2.") < at("CD3+ T cells  91.4 %  >= 80 %  PASS"));
    assert!(at("Mycoplasma  Not detected  Not detected  PASS") < at("Page 2 of 2"));
}

#[test]
fn encrypted_is_refused_though_it_opens_without_a_password() {
    let bytes = fixture("encrypted.pdf");
    let err = inspect(&bytes).unwrap_err();
    assert_eq!(err, PdfRefusal::Encrypted);
    assert_eq!(err.code(), "encrypted_pdf");
    assert_eq!(
        err.to_string(),
        "the PDF is encrypted; send it without a password or restrictions"
    );
    // Why the trailer is what counts: lopdf decrypts it with the empty
    // password and would happily give its text.
    let doc = lopdf::Document::load_mem(&bytes).unwrap();
    assert!(doc.encryption_state.is_some());
    assert!(doc.extract_text(&[1]).unwrap().contains("NBA-2026-0412"));
}

#[test]
fn truncated_is_refused_as_corrupt() {
    let err = inspect(&fixture("truncated.pdf")).unwrap_err();
    assert_eq!(err.code(), "corrupt_pdf");
    let reason = err.to_string();
    assert!(reason.starts_with("the PDF cannot be read: "), "{reason}");
    assert!(reason.contains("cross-reference"), "{reason}");
}

#[test]
fn a_png_is_not_a_pdf() {
    let bytes = fixture("not_a_pdf.pdf");
    assert!(bytes.starts_with(b"\x89PNG"));
    let err = inspect(&bytes).unwrap_err();
    assert_eq!(err, PdfRefusal::NotPdf);
    assert_eq!(err.code(), "not_pdf");
    assert_eq!(err.to_string(), "not a PDF: it does not start with %PDF-");
    assert_eq!(inspect(b"").unwrap_err(), PdfRefusal::NotPdf);
}

#[test]
fn leading_junk_before_the_header_is_allowed() {
    let mut bytes = b"junk from a mail gateway\r\n".to_vec();
    bytes.extend(fixture("coa_lab_lot_A.pdf"));
    // lopdf reads offsets from the header, as readers do.
    let pdf = inspect(&bytes).unwrap();
    assert!(pdf.text.contains("NBA-2026-0412"));
}

#[test]
fn a_pdf_without_pages_is_refused() {
    let pdf = build(&[CATALOG, b"<< /Type /Pages /Kids [] /Count 0 >>"]);
    let err = inspect(&pdf).unwrap_err();
    assert_eq!(err, PdfRefusal::Corrupt("it has no pages".into()));
}

#[test]
fn a_page_without_text_has_empty_text() {
    let pdf = build(&[
        CATALOG,
        ONE_PAGE,
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
    ]);
    let pdf = inspect(&pdf).unwrap();
    assert_eq!((pdf.pages, pdf.text.as_str()), (1, ""));
}

/// lopdf's parser recurses per nesting level: this depth overflowed the
/// stack and aborted the test process before the guard.
#[test]
fn deep_nesting_is_refused_not_a_crash() {
    let deep = format!(
        "<< /Type /Page /Parent 2 0 R /X {}{} >>",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let err = inspect(&build(&[CATALOG, ONE_PAGE, deep.as_bytes()])).unwrap_err();
    assert_eq!(err.code(), "corrupt_pdf");
    assert!(err.to_string().contains("nested 5001 levels deep"), "{err}");

    let content = format!("BT {} ET", "[".repeat(5000));
    let stream = format!(
        "<< /Length {} >>\nstream\n{content}\nendstream",
        content.len()
    );
    let page = b"<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>";
    let err = inspect(&build(&[CATALOG, ONE_PAGE, page, stream.as_bytes()])).unwrap_err();
    assert!(err.to_string().contains("page 1 cannot be read"), "{err}");
    assert!(err.to_string().contains("nested 5000 levels deep"), "{err}");

    // Nesting as real files have it is fine.
    let normal = b"<< /Type /Page /Parent 2 0 R /X [[[[[ << /A [1] >> ]]]]] >>";
    assert!(inspect(&build(&[CATALOG, ONE_PAGE, normal])).is_ok());
}

/// Every prefix of the good file and a spread of single-byte changes: a
/// refusal or a reading, never a panic or an abort.
#[test]
fn damaged_files_never_panic() {
    let good = fixture("coa_lab_lot_A.pdf");
    let mut accepted = 0;
    // Every length near the end (where the trailer is), every third before.
    let lengths = (0..good.len() - 200)
        .step_by(3)
        .chain(good.len() - 200..good.len());
    for len in lengths {
        match inspect(&good[..len]) {
            Ok(pdf) => {
                accepted += 1;
                assert!(pdf.pages >= 1);
            }
            Err(e) => assert!(["not_pdf", "corrupt_pdf"].contains(&e.code()), "{len}: {e}"),
        }
    }
    // Only a file that still has its cross-reference table and trailer reads.
    assert!(accepted < 64, "{accepted} prefixes accepted");
    for file in [
        "coa_lab_lot_A.pdf",
        "coa_lab_two_pages.pdf",
        "encrypted.pdf",
    ] {
        let good = fixture(file);
        // Every third position, given each of these bytes in turn.
        let bytes = [0x00, 0xFF, b'(', b')', b'[', b'<', b'9', b'\n'];
        for at in (0..good.len()).step_by(3) {
            let mut bad = good.clone();
            bad[at] = bytes[at % bytes.len()];
            let _ = inspect(&bad);
        }
    }
}
