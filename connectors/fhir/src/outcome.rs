//! Errors as FHIR answers them: an HTTP status and an OperationOutcome.

use serde_json::{json, Value};

/// Stable problem codes (stored with dead letters, counted in metrics).
pub mod codes {
    pub const MALFORMED_JSON: &str = "malformed_json";
    pub const NOT_A_RESOURCE: &str = "not_a_resource";
    pub const WRONG_RESOURCE_TYPE: &str = "wrong_resource_type";
    pub const UNSUPPORTED_RESOURCE_TYPE: &str = "unsupported_resource_type";
    pub const INVALID_RESOURCE: &str = "invalid_resource";
    pub const INVALID_CODE: &str = "invalid_code";
    pub const UNSUPPORTED_INTERACTION: &str = "unsupported_interaction";
    pub const UNRESOLVED_REFERENCE: &str = "unresolved_reference";
    pub const TOO_LARGE: &str = "too_large";
}

/// A request the endpoint refuses or fails: what the partner is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirError {
    pub status: u16,
    /// OperationOutcome issue code (`structure`, `required`, `code-invalid`,
    /// `not-supported`, `too-costly`, `conflict`, `processing`, `security`).
    pub issue: &'static str,
    /// The stored problem code (see [`codes`]).
    pub code: &'static str,
    pub diagnostics: String,
    /// FHIRPath of the offending element, when there is one.
    pub expression: Option<String>,
}

impl FhirError {
    pub fn new(
        status: u16,
        issue: &'static str,
        code: &'static str,
        diagnostics: impl Into<String>,
        expression: Option<String>,
    ) -> Self {
        FhirError {
            status,
            issue,
            code,
            diagnostics: diagnostics.into(),
            expression,
        }
    }

    /// The same error inside Bundle entry `index` (`Bundle.entry[2].resource.…`).
    pub fn in_entry(mut self, index: Option<usize>) -> Self {
        let already = self
            .expression
            .as_deref()
            .is_some_and(|e| e.starts_with("Bundle.entry["));
        if let (Some(i), false) = (index, already) {
            let inner = self.expression.take();
            self.expression = Some(in_entry(i, inner.as_deref()));
        }
        self
    }

    /// The stored reason: the expression, then the diagnostics.
    pub fn reason(&self) -> String {
        match &self.expression {
            Some(e) => format!("{e}: {}", self.diagnostics),
            None => self.diagnostics.clone(),
        }
    }

    pub fn outcome(&self) -> Value {
        outcome(
            "error",
            self.issue,
            &self.diagnostics,
            self.expression.as_deref(),
        )
    }
}

/// `Bundle.entry[i].resource` plus an expression within the resource
/// (which starts with the resource type).
pub fn in_entry(index: usize, expression: Option<&str>) -> String {
    let base = format!("Bundle.entry[{index}].resource");
    match expression.and_then(|e| e.split_once('.')) {
        Some((_, rest)) => format!("{base}.{rest}"),
        None => base,
    }
}

/// An OperationOutcome with one issue.
pub fn outcome(severity: &str, code: &str, diagnostics: &str, expression: Option<&str>) -> Value {
    let mut issue = json!({"severity": severity, "code": code, "diagnostics": diagnostics});
    if let Some(e) = expression {
        issue["expression"] = json!([e]);
    }
    json!({"resourceType": "OperationOutcome", "issue": [issue]})
}

/// The reason phrase FHIR puts after a status in `entry.response.status`.
pub fn status_line(status: u16) -> String {
    let phrase = match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        503 => "Service Unavailable",
        _ => "",
    };
    format!("{status} {phrase}").trim_end().to_string()
}
