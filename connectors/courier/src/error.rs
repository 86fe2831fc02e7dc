//! Stable problem codes of the courier connector, and the HTTP status an
//! intake answers for each.

use hub_core::Problem;

/// Stable problem codes (stored with dead letters, counted in metrics).
pub mod codes {
    /// Not JSON at all (the reason gives line and column).
    pub const MALFORMED_JSON: &str = "malformed_json";
    /// JSON, but not an object or array at the top.
    pub const UNEXPECTED_JSON: &str = "unexpected_json";
    /// No mapping of the partner (or of `"*"`) matches the payload's shape.
    pub const NO_MAPPING: &str = "no_mapping";
}

/// The status an HTTP intake answers a refused or failed payload with:
/// 400 for bytes that are not JSON, 422 for JSON cgthub cannot map, and the
/// hub's own rule for the rest (409 for an identity conflict).
pub fn http_status(problem: &Problem) -> u16 {
    match problem.code {
        codes::MALFORMED_JSON => 400,
        codes::UNEXPECTED_JSON | codes::NO_MAPPING => 422,
        _ => problem.http_status(),
    }
}
