//! Checking an entry before it is stored: every error at once, each on the
//! form field to fix, so a person corrects the form in one pass.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Serialize;

use super::Values;

/// What is wrong with one field (its form name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

const DATE_FORMS: &str = "a date (2026-11-28), a date and time in UTC (2026-11-28 14:30) or RFC 3339 (2026-11-28T14:30:00Z)";

impl Values {
    /// The entry, trimmed, its COI canonical and `pass_fail` lowercase and
    /// blank rows dropped; or every error. `check_coi` returns the canonical
    /// COI or why the value is not one (the hub's COI parser).
    ///
    /// Errors name fields as submitted: a blank row dropped before row 2
    /// does not renumber row 2.
    pub fn validate(
        self,
        check_coi: impl Fn(&str) -> Result<String, String>,
    ) -> Result<Values, Vec<FieldError>> {
        let mut v = self.trimmed();
        let mut errors = Vec::new();
        if v.coi.is_empty() {
            errors.push(FieldError::new(
                "coi",
                "the Chain of Identity (COI) is required",
            ));
        } else {
            match check_coi(&v.coi) {
                Ok(canonical) => v.coi = canonical,
                Err(reason) if reason.starts_with("COI") => {
                    errors.push(FieldError::new("coi", reason))
                }
                Err(reason) => errors.push(FieldError::new("coi", format!("COI: {reason}"))),
            }
        }
        if v.tested_at.is_empty() {
            errors.push(FieldError::new("tested_at", "the date tested is required"));
        } else if parse_time(&v.tested_at).is_none() {
            errors.push(FieldError::new(
                "tested_at",
                format!("date tested {:?} is not {DATE_FORMS}", v.tested_at),
            ));
        }
        if v.rows().next().is_none() {
            errors.push(FieldError::new(
                "test.0.code",
                "at least one test is required: enter its code and result",
            ));
        }
        for (i, t) in v
            .tests
            .iter_mut()
            .enumerate()
            .filter(|(_, t)| !t.is_blank())
        {
            let name = |sub: &str| format!("test.{i}.{sub}");
            if t.code.is_empty() {
                errors.push(FieldError::new(name("code"), "the test code is required"));
            }
            if t.result.is_empty() {
                errors.push(FieldError::new(name("result"), "the result is required"));
            }
            t.pass_fail = t.pass_fail.to_ascii_lowercase();
            if t.pass_fail.is_empty() {
                errors.push(FieldError::new(
                    name("pass_fail"),
                    "pass or fail is required: a certificate states whether each result conforms",
                ));
            } else if t.pass_fail != "pass" && t.pass_fail != "fail" {
                errors.push(FieldError::new(
                    name("pass_fail"),
                    format!("{:?} is neither pass nor fail", t.pass_fail),
                ));
            }
            if !t.tested_at.is_empty() && parse_time(&t.tested_at).is_none() {
                errors.push(FieldError::new(
                    name("tested_at"),
                    format!("date tested {:?} is not {DATE_FORMS}", t.tested_at),
                ));
            }
        }
        if errors.is_empty() {
            Ok(v.without_blank_rows())
        } else {
            Err(errors)
        }
    }

    fn trimmed(mut self) -> Values {
        let trim = |s: &mut String| {
            let t = s.trim();
            if t.len() != s.len() {
                *s = t.to_string();
            }
        };
        for s in [
            &mut self.coi,
            &mut self.specimen_id,
            &mut self.batch_id,
            &mut self.report_id,
            &mut self.analyst,
            &mut self.tested_at,
        ] {
            trim(s);
        }
        for t in &mut self.tests {
            for s in [
                &mut t.code,
                &mut t.name,
                &mut t.result,
                &mut t.unit,
                &mut t.specification,
                &mut t.pass_fail,
                &mut t.analyst,
                &mut t.tested_at,
            ] {
                trim(s);
            }
        }
        self
    }
}

/// A date tested: RFC 3339, `YYYY-MM-DD` (midnight) or `YYYY-MM-DD HH:MM`,
/// the last two in UTC.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M") {
        return Some(t.and_utc());
    }
    // Exactly YYYY-MM-DD: chrono alone would take `2026-1-5`.
    if s.len() == 10 {
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        }
    }
    None
}

/// A plain decimal (`12`, `-0.5`, `.5`, `1.50`), never `1e3`, `inf` or `NaN`.
pub fn parse_decimal(s: &str) -> Option<f64> {
    let s = s.trim();
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let ok = !(whole.is_empty() && frac.is_empty()) && all_digits(whole) && all_digits(frac);
    if ok {
        s.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let t = |s| parse_time(s).map(|t| t.to_rfc3339());
        assert_eq!(
            t("2026-11-28").as_deref(),
            Some("2026-11-28T00:00:00+00:00")
        );
        assert_eq!(
            t("2026-11-28 14:30").as_deref(),
            Some("2026-11-28T14:30:00+00:00")
        );
        assert_eq!(
            t("2026-11-28T15:30:00+01:00").as_deref(),
            Some("2026-11-28T14:30:00+00:00")
        );
        for bad in [
            "28.11.2026",
            "2026-11-31",
            "2026-1-5",
            "2026-11-28 25:00",
            "",
            "yesterday",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }

    #[test]
    fn decimals() {
        for (s, n) in [
            ("12", 12.0),
            ("-0.5", -0.5),
            (".5", 0.5),
            ("1.50", 1.5),
            ("+3", 3.0),
            ("7.", 7.0),
        ] {
            assert_eq!(parse_decimal(s), Some(n), "{s}");
        }
        for s in [
            "",
            ".",
            "-",
            "1e3",
            "inf",
            "NaN",
            "<0.5",
            "1,5",
            "1.2.3",
            "0.12 EU/mL",
        ] {
            assert_eq!(parse_decimal(s), None, "{s}");
        }
    }
}
