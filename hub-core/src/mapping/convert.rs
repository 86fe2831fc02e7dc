//! Value conversions a mapping may ask for (`convert = "…"`).
//!
//! Source times come as HL7 TS/DTM (`YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]`)
//! or ISO 8601; both become RFC 3339 in UTC. A time without an offset is read
//! in the mapping's time zone (an IANA name, so daylight saving is right).

use std::borrow::Cow;

use chrono::format::{Fixed, Item, Parsed, StrftimeItems};
use chrono::{DateTime, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

use crate::event::rfc3339;

/// A conversion named in a mapping file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convert {
    /// HL7 TS/DTM or ISO 8601 → RFC 3339 UTC.
    Timestamp,
    /// HL7 DT/TS or ISO date → `YYYY-MM-DD`.
    Date,
    /// A decimal number; anything else is an error.
    Number,
    /// A decimal number, or nothing when the value is not one.
    TryNumber,
    Integer,
    /// `Y`/`N`, `true`/`false`, `1`/`0`.
    Boolean,
    Trim,
    Upper,
    Lower,
    /// A unit as sent (`mcg/dL`, `10^3/uL`, `cells/uL`) → its UCUM code
    /// (`ug/dL`, `10*3/uL`, `/uL`). Units already in UCUM, and units this
    /// table does not know, pass unchanged: a mapping's value map handles a
    /// partner's own spellings.
    Ucum,
}

impl Convert {
    pub const NAMES: &'static [&'static str] = &[
        "timestamp",
        "date",
        "number",
        "try_number",
        "integer",
        "boolean",
        "trim",
        "upper",
        "lower",
        "ucum",
    ];

    pub fn parse(name: &str) -> Option<Convert> {
        Some(match name {
            "timestamp" => Convert::Timestamp,
            "date" => Convert::Date,
            "number" => Convert::Number,
            "try_number" => Convert::TryNumber,
            "integer" => Convert::Integer,
            "boolean" => Convert::Boolean,
            "trim" => Convert::Trim,
            "upper" => Convert::Upper,
            "lower" => Convert::Lower,
            "ucum" => Convert::Ucum,
            _ => return None,
        })
    }

    /// Applies the conversion. `Ok(None)` means "no value" (try_number on text).
    pub fn apply(self, text: &str, tz: &Zone) -> Result<Option<Value>, String> {
        Ok(self.apply_typed(text, tz)?.map(Scalar::into_json))
    }

    /// [`Convert::apply`] without building a JSON value: text is borrowed
    /// where it can be, times stay times.
    pub(crate) fn apply_typed<'a>(
        self,
        text: &'a str,
        tz: &Zone,
    ) -> Result<Option<Scalar<'a>>, String> {
        let t = text.trim();
        Ok(Some(match self {
            Convert::Timestamp => Scalar::Time(parse_timestamp(t, tz)?),
            Convert::Date => Scalar::Date(parse_date(t)?),
            Convert::Number => {
                Scalar::Num(number(t).ok_or_else(|| format!("{t:?} is not a number"))?)
            }
            Convert::TryNumber => match number(t) {
                Some(n) => Scalar::Num(n),
                None => return Ok(None),
            },
            Convert::Integer => Scalar::Int(
                t.parse::<i64>()
                    .map_err(|_| format!("{t:?} is not an integer"))?,
            ),
            Convert::Boolean => Scalar::Bool(
                if ["y", "yes", "true", "1"]
                    .iter()
                    .any(|w| t.eq_ignore_ascii_case(w))
                {
                    true
                } else if ["n", "no", "false", "0"]
                    .iter()
                    .any(|w| t.eq_ignore_ascii_case(w))
                {
                    false
                } else {
                    return Err(format!("{t:?} is not a yes/no value"));
                },
            ),
            Convert::Trim => Scalar::Str(Cow::Borrowed(t)),
            Convert::Upper => Scalar::Str(Cow::Owned(t.to_uppercase())),
            Convert::Lower => Scalar::Str(Cow::Owned(t.to_lowercase())),
            Convert::Ucum => Scalar::Str(Cow::Borrowed(ucum(t))),
        }))
    }
}

/// A converted value, typed: what [`Convert::apply`] returns as JSON.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'a> {
    /// Text (trim, upper, lower, ucum).
    Str(Cow<'a, str>),
    /// A finite number (JSON float).
    Num(f64),
    Int(i64),
    Bool(bool),
    /// A time; as JSON, RFC 3339 in UTC.
    Time(DateTime<Utc>),
    /// A date; as JSON, `YYYY-MM-DD`.
    Date(NaiveDate),
}

impl Scalar<'_> {
    /// The same value, owning its text.
    pub(crate) fn into_owned(self) -> Scalar<'static> {
        match self {
            Scalar::Str(s) => Scalar::Str(Cow::Owned(s.into_owned())),
            Scalar::Num(n) => Scalar::Num(n),
            Scalar::Int(i) => Scalar::Int(i),
            Scalar::Bool(b) => Scalar::Bool(b),
            Scalar::Time(d) => Scalar::Time(d),
            Scalar::Date(d) => Scalar::Date(d),
        }
    }

    /// The JSON value [`Convert::apply`] gives.
    pub(crate) fn into_json(self) -> Value {
        match self {
            Scalar::Str(s) => Value::String(s.into_owned()),
            Scalar::Num(n) => Value::from(n),
            Scalar::Int(i) => Value::from(i),
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Time(d) => Value::String(rfc3339::to_rfc3339(&d)),
            Scalar::Date(d) => Value::String(rfc3339::with_ymd(&d, str::to_string)),
        }
    }
}

/// Common non-UCUM spellings in lab and cell-therapy reports, and their UCUM
/// codes (case-sensitive, as UCUM is).
const UCUM_ALIASES: &[(&str, &str)] = &[
    ("mcg/dL", "ug/dL"),
    ("mcg/L", "ug/L"),
    ("mcg/mL", "ug/mL"),
    ("µg/dL", "ug/dL"),
    ("µg/L", "ug/L"),
    ("µL", "uL"),
    ("mL", "mL"),
    ("ml", "mL"),
    ("cc", "mL"),
    ("l", "L"),
    ("10^3/uL", "10*3/uL"),
    ("10^3/µL", "10*3/uL"),
    ("x10^3/uL", "10*3/uL"),
    ("K/uL", "10*3/uL"),
    ("10^6/uL", "10*6/uL"),
    ("M/uL", "10*6/uL"),
    ("10^9/L", "10*9/L"),
    ("x10^9/L", "10*9/L"),
    ("10^6/kg", "10*6/kg"),
    ("cells/uL", "/uL"),
    ("cells/µL", "/uL"),
    ("cells/kg", "/kg"),
    ("degC", "Cel"),
    ("°C", "Cel"),
    ("C", "Cel"),
    ("hrs", "h"),
    ("hr", "h"),
    ("mins", "min"),
    ("sec", "s"),
    ("percent", "%"),
];

/// The UCUM code for a unit as sent; unknown units pass unchanged.
pub fn ucum(unit: &str) -> &str {
    UCUM_ALIASES
        .iter()
        .find(|(from, _)| *from == unit)
        .map_or(unit, |(_, to)| to)
}

fn number(t: &str) -> Option<f64> {
    // HL7 NM: optional sign, digits, optional decimal point. No exponents, no
    // "inf"/"nan", which Rust's parser would otherwise accept.
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let ok = !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && body.bytes().filter(|&b| b == b'.').count() <= 1
        && body.bytes().any(|b| b.is_ascii_digit());
    if !ok {
        return None;
    }
    let f: f64 = t.parse().ok()?;
    // What `serde_json::Number::from_f64` accepts.
    f.is_finite().then_some(f)
}

/// The zone a mapping reads offset-less times in.
#[derive(Debug, Clone, Copy)]
pub enum Zone {
    Fixed(FixedOffset),
    Named(chrono_tz::Tz),
}

impl Default for Zone {
    fn default() -> Self {
        Zone::Fixed(FixedOffset::east_opt(0).expect("zero offset"))
    }
}

impl Zone {
    /// `UTC`, `Z`, `+01:00`, `-0500` or an IANA name.
    pub fn parse(s: &str) -> Result<Zone, String> {
        if s.eq_ignore_ascii_case("utc") || s == "Z" {
            return Ok(Zone::default());
        }
        if let Some(off) = parse_offset(s) {
            return Ok(Zone::Fixed(off));
        }
        s.parse::<chrono_tz::Tz>()
            .map(Zone::Named)
            .map_err(|_| format!("unknown time zone {s:?} (use UTC, +HH:MM or an IANA name)"))
    }

    fn resolve(&self, local: NaiveDateTime) -> Result<DateTime<Utc>, String> {
        let r = match self {
            Zone::Fixed(o) => o.from_local_datetime(&local).map(|d| d.with_timezone(&Utc)),
            Zone::Named(z) => z.from_local_datetime(&local).map(|d| d.with_timezone(&Utc)),
        };
        match r {
            LocalResult::Single(d) => Ok(d),
            // A repeated hour at the end of daylight saving: take the earlier.
            LocalResult::Ambiguous(a, _) => Ok(a),
            LocalResult::None => Err(format!("{local} does not exist in the mapping's time zone")),
        }
    }
}

fn parse_offset(s: &str) -> Option<FixedOffset> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    // Exactly four digits once every ':' is dropped.
    let mut d = [0i32; 4];
    let mut n = 0;
    for b in rest.bytes().filter(|&b| b != b':') {
        if n == 4 || !b.is_ascii_digit() {
            return None;
        }
        d[n] = i32::from(b - b'0');
        n += 1;
    }
    if n != 4 {
        return None;
    }
    let h = d[0] * 10 + d[1];
    let m = d[2] * 10 + d[3];
    if h > 14 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// Parses HL7 TS/DTM (any precision from year to 1/10000 s, optional offset)
/// or RFC 3339.
pub fn parse_timestamp(t: &str, tz: &Zone) -> Result<DateTime<Utc>, String> {
    if t.contains('T') || t.contains('-') && t.len() >= 10 && t.as_bytes().get(4) == Some(&b'-') {
        if let Ok(d) = DateTime::parse_from_rfc3339(t) {
            return Ok(d.with_timezone(&Utc));
        }
        if let Ok(d) = NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f") {
            return tz.resolve(d);
        }
        if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
            return tz.resolve(d.and_hms_opt(0, 0, 0).expect("midnight"));
        }
        return Err(format!("{t:?} is not an HL7 or ISO 8601 timestamp"));
    }
    let bad = || format!("{t:?} is not an HL7 timestamp (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ])");
    let (body, offset) = match t.find(['+', '-']) {
        Some(i) => (&t[..i], Some(parse_offset(&t[i..]).ok_or_else(bad)?)),
        None => (t, None),
    };
    let (whole, frac) = match body.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (body, None),
    };
    if !matches!(whole.len(), 4 | 6 | 8 | 10 | 12 | 14)
        || !whole.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    // `whole` is ASCII digits only.
    let digits = whole.as_bytes();
    let two = |at: usize| u32::from(digits[at] - b'0') * 10 + u32::from(digits[at + 1] - b'0');
    let part = |from: usize, default: u32| -> u32 {
        if from + 2 <= digits.len() {
            two(from)
        } else {
            default
        }
    };
    let year = (two(0) * 100 + two(2)) as i32;
    let nanos = match frac {
        Some(f)
            if whole.len() == 14
                && !f.is_empty()
                && f.len() <= 4
                && f.bytes().all(|b| b.is_ascii_digit()) =>
        {
            f.parse::<u32>().map_err(|_| bad())? * 10u32.pow(9 - f.len() as u32)
        }
        Some(_) => return Err(bad()),
        None => 0,
    };
    let date = NaiveDate::from_ymd_opt(year, part(4, 1), part(6, 1)).ok_or_else(bad)?;
    let local = date
        .and_hms_nano_opt(part(8, 0), part(10, 0), part(12, 0), nanos)
        .ok_or_else(bad)?;
    match offset {
        Some(o) => match o.from_local_datetime(&local) {
            LocalResult::Single(d) => Ok(d.with_timezone(&Utc)),
            _ => Err(bad()),
        },
        None => tz.resolve(local),
    }
}

/// A partner's own time layout (`time_format = "…"`, chrono strftime),
/// compiled when the mapping loads.
#[derive(Debug, Clone)]
pub struct TimeFormat {
    text: String,
    items: Vec<Item<'static>>,
    /// The layout reads an offset: the value is a time with its offset, not
    /// a local time in the mapping's zone.
    with_offset: bool,
}

impl TimeFormat {
    /// Compiles a strftime layout, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<TimeFormat, String> {
        let items = StrftimeItems::new(text)
            .parse_to_owned()
            .map_err(|_| format!("{text:?} is not a valid strftime format"))?;
        let mut with_offset = false;
        for item in &items {
            match item {
                Item::Error => return Err(format!("{text:?} is not a valid strftime format")),
                Item::Fixed(Fixed::TimezoneName) => {
                    return Err(format!(
                    "{text:?}: %Z (a zone name) cannot be read; use %z or the mapping's timezone"
                ))
                }
                Item::Fixed(
                    Fixed::TimezoneOffset
                    | Fixed::TimezoneOffsetColon
                    | Fixed::TimezoneOffsetDoubleColon
                    | Fixed::TimezoneOffsetTripleColon
                    | Fixed::TimezoneOffsetColonZ
                    | Fixed::TimezoneOffsetZ
                    | Fixed::RFC2822
                    | Fixed::RFC3339,
                ) => with_offset = true,
                // `%#z` (offset, minutes optional) is one of chrono's internal items.
                Item::Fixed(Fixed::Internal(i)) if format!("{i:?}").contains("TimezoneOffset") => {
                    with_offset = true
                }
                _ => {}
            }
        }
        if !items.iter().any(|i| {
            matches!(
                i,
                Item::Numeric(..) | Item::Fixed(Fixed::RFC2822 | Fixed::RFC3339)
            )
        }) {
            return Err(format!("{text:?} has no date or time field"));
        }
        Ok(TimeFormat {
            text: text.to_string(),
            items,
            with_offset,
        })
    }

    /// The layout as written in the mapping.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Reads `t` in this layout: with its own offset, or in `tz`.
    pub fn read(&self, t: &str, tz: &Zone) -> Result<DateTime<Utc>, String> {
        let mismatch = |e: chrono::format::ParseError| {
            format!("{t:?} does not match time_format {:?}: {e}", self.text)
        };
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, t, self.items.iter()).map_err(mismatch)?;
        if self.with_offset {
            Ok(parsed.to_datetime().map_err(mismatch)?.with_timezone(&Utc))
        } else {
            tz.resolve(parsed.to_naive_datetime_with_offset(0).map_err(mismatch)?)
        }
    }
}

fn parse_date(t: &str) -> Result<NaiveDate, String> {
    if t.len() >= 10 && t.as_bytes().get(4) == Some(&b'-') {
        return NaiveDate::parse_from_str(&t[..10], "%Y-%m-%d")
            .map_err(|_| format!("{t:?} is not a date"));
    }
    let d = t
        .get(..8)
        .ok_or_else(|| format!("{t:?} is not an HL7 date (YYYYMMDD)"))?;
    NaiveDate::parse_from_str(d, "%Y%m%d")
        .map_err(|_| format!("{t:?} is not an HL7 date (YYYYMMDD)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(t: &str, zone: &str) -> String {
        parse_timestamp(t, &Zone::parse(zone).unwrap())
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }

    #[test]
    fn hl7_timestamps_with_and_without_offsets() {
        assert_eq!(ts("200808151030-0700", "UTC"), "2008-08-15T17:30:00Z");
        assert_eq!(ts("20250129103726+0000", "UTC"), "2025-01-29T10:37:26Z");
        assert_eq!(ts("20190514102527+0200", "UTC"), "2019-05-14T08:25:27Z");
        assert_eq!(ts("202501021200", "UTC"), "2025-01-02T12:00:00Z");
        assert_eq!(
            ts("20100929110702.1234", "UTC"),
            "2010-09-29T11:07:02.123400Z"
        );
        assert_eq!(ts("20250102", "UTC"), "2025-01-02T00:00:00Z");
        assert_eq!(ts("2025", "UTC"), "2025-01-01T00:00:00Z");
        // No offset: read in the mapping's zone, daylight saving included.
        assert_eq!(ts("20250702120000", "Europe/Paris"), "2025-07-02T10:00:00Z");
        assert_eq!(ts("20250102120000", "Europe/Paris"), "2025-01-02T11:00:00Z");
        assert_eq!(ts("20250102120000", "-05:00"), "2025-01-02T17:00:00Z");
        assert_eq!(
            ts("2026-11-21T09:14:00+01:00", "UTC"),
            "2026-11-21T08:14:00Z"
        );
    }

    #[test]
    fn bad_timestamps_say_what_is_wrong() {
        let z = Zone::default();
        for bad in [
            "2025013",
            "20251301",
            "2025-13-01",
            "2025010212000",
            "yesterday",
            "20250102+99",
        ] {
            let e = parse_timestamp(bad, &z).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
        assert!(Zone::parse("Mars/Olympus").is_err());
    }

    #[test]
    fn time_formats_read_partner_layouts() {
        let utc = Zone::default();
        let fedex = TimeFormat::parse("%Y-%m-%dT%H:%M:%S %z").unwrap();
        let t = fedex.read("2024-08-12T15:18:10 -0500", &utc).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-08-12T20:18:10+00:00");
        // Without an offset in the layout, the mapping's zone applies.
        let local = TimeFormat::parse("%d/%m/%Y %H:%M").unwrap();
        let paris = Zone::parse("Europe/Paris").unwrap();
        let t = local.read("02/07/2025 12:00", &paris).unwrap();
        assert_eq!(t.to_rfc3339(), "2025-07-02T10:00:00+00:00");
        let colon = TimeFormat::parse("%Y%m%d%H%M%S%:z").unwrap();
        let t = colon.read("20250819081559-05:00", &utc).unwrap();
        assert_eq!(t.to_rfc3339(), "2025-08-19T13:15:59+00:00");
        // A value in another layout names the layout.
        let e = fedex.read("2024-08-12T15:18:10", &utc).unwrap_err();
        assert!(
            e.contains("does not match time_format \"%Y-%m-%dT%H:%M:%S %z\""),
            "{e}"
        );
        let e = local.read("2025-07-02", &paris).unwrap_err();
        assert!(e.contains("\"2025-07-02\""), "{e}");
    }

    #[test]
    fn bad_time_formats_are_refused() {
        for (bad, says) in [
            ("%Y-%m-%Q", "not a valid strftime format"),
            ("%Y-%m-%d %H:%M %Z", "%Z"),
            ("at noon", "no date or time field"),
        ] {
            let e = TimeFormat::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn numbers_are_hl7_nm_only() {
        let z = Zone::default();
        assert_eq!(
            Convert::Number.apply("7.2", &z).unwrap(),
            Some(serde_json::json!(7.2))
        );
        assert_eq!(
            Convert::Number.apply(" -40 ", &z).unwrap(),
            Some(serde_json::json!(-40.0))
        );
        assert!(Convert::Number.apply("inf", &z).is_err());
        assert!(Convert::Number.apply("1e5", &z).is_err());
        assert_eq!(Convert::TryNumber.apply("<9", &z).unwrap(), None);
        assert_eq!(
            Convert::Date.apply("20080920", &z).unwrap(),
            Some(serde_json::json!("2008-09-20"))
        );
        assert_eq!(
            Convert::Boolean.apply("Y", &z).unwrap(),
            Some(serde_json::json!(true))
        );
    }
}
