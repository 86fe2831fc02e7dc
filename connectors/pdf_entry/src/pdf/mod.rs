//! Checking an uploaded PDF and reading its text, for suggestions only: the
//! operator keys values from the document as displayed, never from this text.
//!
//! A PDF is refused, with a reason an operator can act on, when it is not a
//! PDF, is encrypted (even with an empty password: a document the hub keeps
//! as evidence must open for whoever audits it), or cannot be read.
//!
//! Malformed input must not take the hub down. lopdf has panicked on it
//! before, so every call into it runs under `catch_unwind` and a panic is a
//! refusal like any other; and its parser recurses without limit, so the
//! bytes are checked first ([`guard`]) and lopdf runs on its own thread with
//! a stack of [`READER_STACK`] bytes, whatever thread calls [`inspect`].

mod guard;
mod layout;

use std::panic::{catch_unwind, AssertUnwindSafe};

use lopdf::Document;

/// How far into the bytes the `%PDF-` header may start (ISO 32000-1 allows
/// leading junk; readers look within the first 1024 bytes).
const HEADER_WINDOW: usize = 1024;

/// Stack of the thread lopdf runs on: ample for [`guard::MAX_NESTING`]
/// levels even in a debug build (about 20 KiB a level there).
const READER_STACK: usize = 32 << 20;

/// The text of an accepted PDF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdfText {
    /// Number of pages (at least one).
    pub pages: usize,
    /// Text of every page in page order, one visual line per `'\n'`-ended
    /// line; runs on one line far apart (table columns) are separated by
    /// two or more spaces.
    pub text: String,
}

/// Why an upload is refused as a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PdfRefusal {
    #[error("not a PDF: it does not start with %PDF-")]
    NotPdf,
    #[error("the PDF is encrypted; send it without a password or restrictions")]
    Encrypted,
    #[error("the PDF cannot be read: {0}")]
    Corrupt(String),
}

impl PdfRefusal {
    /// Stable code for APIs and audit records.
    pub fn code(&self) -> &'static str {
        match self {
            PdfRefusal::NotPdf => "not_pdf",
            PdfRefusal::Encrypted => "encrypted_pdf",
            PdfRefusal::Corrupt(_) => "corrupt_pdf",
        }
    }
}

/// Checks `bytes` are a readable, unencrypted PDF with pages, and reads
/// their text. Never panics.
pub fn inspect(bytes: &[u8]) -> Result<PdfText, PdfRefusal> {
    let window = &bytes[..bytes.len().min(HEADER_WINDOW)];
    if !window.windows(5).any(|w| w == b"%PDF-") {
        return Err(PdfRefusal::NotPdf);
    }
    guard::check(bytes)?;
    std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("pdf-inspect".into())
            .stack_size(READER_STACK)
            .spawn_scoped(scope, || guarded_read(bytes));
        match reader {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(PdfRefusal::Corrupt("the PDF reader failed".into()))),
            // No thread to be had: read here rather than fail the upload.
            Err(_) => guarded_read(bytes),
        }
    })
}

/// [`read`], a panic in lopdf turned into a refusal.
fn guarded_read(bytes: &[u8]) -> Result<PdfText, PdfRefusal> {
    match catch_unwind(AssertUnwindSafe(|| read(bytes))) {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            tracing::warn!(panic = %what, "lopdf panicked on an uploaded PDF");
            Err(PdfRefusal::Corrupt(format!(
                "the PDF reader failed on its structure ({what})"
            )))
        }
    }
}

fn read(bytes: &[u8]) -> Result<PdfText, PdfRefusal> {
    let doc = Document::load_mem(bytes).map_err(|e| PdfRefusal::Corrupt(describe(&e)))?;
    // `guard` found no /Encrypt; lopdf's own view, in case it sees one.
    if doc.trailer.has(b"Encrypt") || doc.encryption_state.is_some() {
        return Err(PdfRefusal::Encrypted);
    }
    let pages = doc.get_pages();
    if pages.is_empty() {
        return Err(PdfRefusal::Corrupt("it has no pages".into()));
    }
    let mut text = String::new();
    for (number, id) in &pages {
        let page = layout::page_text(&doc, *id).map_err(|e| {
            PdfRefusal::Corrupt(format!("page {number} cannot be read: {}", describe(&e)))
        })?;
        text.push_str(&page);
    }
    Ok(PdfText {
        pages: pages.len(),
        text,
    })
}

/// lopdf's error, with a hint for the common causes.
fn describe(e: &lopdf::Error) -> String {
    use lopdf::Error as E;
    let hint = match e {
        E::Xref(_) | E::IndirectObject { .. } | E::MissingXrefEntry | E::InvalidOffset(_) => {
            " (no usable cross-reference table: the file may be truncated or damaged)"
        }
        E::Parse(_) => " (the file may be truncated or damaged)",
        _ => "",
    };
    format!("{e}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_must_be_within_the_first_kilobyte() {
        let mut late = vec![b' '; HEADER_WINDOW];
        late.extend_from_slice(b"%PDF-1.4\n");
        assert_eq!(inspect(&late).unwrap_err(), PdfRefusal::NotPdf);
        assert_eq!(inspect(b"").unwrap_err(), PdfRefusal::NotPdf);
        let early = b"junk\n%PDF-1.4\n";
        assert_eq!(inspect(early).unwrap_err().code(), "corrupt_pdf");
    }

    #[test]
    fn codes_and_reasons() {
        assert_eq!(PdfRefusal::NotPdf.code(), "not_pdf");
        assert_eq!(PdfRefusal::Encrypted.code(), "encrypted_pdf");
        let corrupt = PdfRefusal::Corrupt("it has no pages".into());
        assert_eq!(corrupt.code(), "corrupt_pdf");
        assert_eq!(
            corrupt.to_string(),
            "the PDF cannot be read: it has no pages"
        );
    }
}
