//! PDF entry for cgthub: certificates of analysis (CoA) that contract labs
//! send only as PDF, keyed in by one person and verified by another before
//! any event leaves the hub. Pure logic: the portal (HTTP, sessions, store)
//! lives in the binary and calls this crate.
//!
//! # Layout
//!
//! - [`pdf`]: is the upload a readable, unencrypted PDF ([`inspect`]), and its text.
//! - [`template`]: per-partner templates, `mappings/pdf/{partner}.toml`
//!   ([`Template`], [`load_dir`]): suggestions read off the text, blank forms.
//! - [`values`]: the entered values ([`Values`]): form field names,
//!   [`Values::validate`], and [`diff`] of two entries.
//! - [`event`]: verified values → `qc.result_reported` ([`to_event`]).

pub mod event;
pub mod pdf;
pub mod template;
pub mod values;

pub use event::to_event;
pub use pdf::{inspect, PdfRefusal, PdfText};
pub use template::{
    load_dir, load_file, Column, FieldRule, Policy, Suggestion, Suggestions, Template,
    TemplateError, TestRule,
};
pub use values::{diff, FieldError, Mismatch, TestValues, Values};

/// The connector's name (`source.connector`, message ids, metrics).
pub const KIND: &str = "pdf_entry";
