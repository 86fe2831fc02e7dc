//! Fixed-width RFC 3339 text for UTC times, without `fmt` machinery or a
//! heap allocation: the same bytes as chrono's
//! `to_rfc3339_opts(SecondsFormat::AutoSi, true)` and its `Serialize` impl
//! (`2025-01-29T10:37:26Z`, `2010-09-29T11:07:02.123400Z`). Years outside
//! 0000–9999 and leap seconds, which need chrono's own rules, go to chrono.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, SecondsFormat, Timelike, Utc};

/// Longest text: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
const MAX: usize = 30;

/// Calls `f` with `d` as RFC 3339 text (UTC, `Z`, fraction as chrono's `AutoSi`).
pub fn with_rfc3339<R>(d: &DateTime<Utc>, f: impl FnOnce(&str) -> R) -> R {
    let mut buf = [0u8; MAX];
    match fast(d, &mut buf).and_then(|n| std::str::from_utf8(&buf[..n]).ok()) {
        Some(s) => f(s),
        None => f(&d.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    }
}

/// `d` as RFC 3339 text in a new `String`.
pub fn to_rfc3339(d: &DateTime<Utc>) -> String {
    with_rfc3339(d, str::to_string)
}

/// Calls `f` with `d` as `YYYY-MM-DD` (chrono's `%Y-%m-%d`).
pub fn with_ymd<R>(d: &NaiveDate, f: impl FnOnce(&str) -> R) -> R {
    let mut buf = [0u8; 10];
    let year = d.year();
    if (0..=9999).contains(&year) {
        put4(&mut buf[0..4], year as u32);
        buf[4] = b'-';
        put2(&mut buf[5..7], d.month());
        buf[7] = b'-';
        put2(&mut buf[8..10], d.day());
        if let Ok(s) = std::str::from_utf8(&buf) {
            return f(s);
        }
    }
    f(&d.format("%Y-%m-%d").to_string())
}

/// Whether `d` is written without chrono's help (year 0000–9999, no leap
/// second): such text parses back to exactly `d`.
pub fn is_plain(d: &DateTime<Utc>) -> bool {
    (0..=9999).contains(&d.year()) && d.nanosecond() < 1_000_000_000
}

/// Writes the text into `buf` and returns its length, or `None` when the
/// time needs chrono's rules (year outside 0000–9999, leap second).
fn fast(d: &DateTime<Utc>, buf: &mut [u8; MAX]) -> Option<usize> {
    if !is_plain(d) {
        return None;
    }
    let n = d.naive_utc();
    let year = n.year();
    let nanos = n.nanosecond();
    put4(&mut buf[0..4], year as u32);
    buf[4] = b'-';
    put2(&mut buf[5..7], n.month());
    buf[7] = b'-';
    put2(&mut buf[8..10], n.day());
    buf[10] = b'T';
    put2(&mut buf[11..13], n.hour());
    buf[13] = b':';
    put2(&mut buf[14..16], n.minute());
    buf[16] = b':';
    put2(&mut buf[17..19], n.second());
    let mut len = 19;
    if nanos != 0 {
        // AutoSi: milli-, micro- or nanoseconds, whichever is exact.
        let (value, digits) = if nanos.is_multiple_of(1_000_000) {
            (nanos / 1_000_000, 3)
        } else if nanos.is_multiple_of(1_000) {
            (nanos / 1_000, 6)
        } else {
            (nanos, 9)
        };
        buf[len] = b'.';
        let mut v = value;
        for i in (0..digits).rev() {
            buf[len + 1 + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        len += 1 + digits;
    }
    buf[len] = b'Z';
    Some(len + 1)
}

fn put2(out: &mut [u8], v: u32) {
    out[0] = b'0' + (v / 10 % 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

fn put4(out: &mut [u8], v: u32) {
    put2(&mut out[0..2], v / 100);
    put2(&mut out[2..4], v % 100);
}

/// Parses the text [`with_rfc3339`] writes (`YYYY-MM-DDTHH:MM:SS[.f…]Z`, a
/// year 0000–9999, no leap second) without chrono's general parser; `None`
/// for anything else, which chrono then parses (or refuses) itself.
fn parse_plain(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[b.len() - 1] != b'Z'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let nanos = match b.len() {
        20 => 0,
        21..=30 if b[19] == b'.' => {
            let digits = b.len() - 21;
            if digits == 0 {
                return None;
            }
            num(20, b.len() - 1)? * 10u32.pow(9 - digits as u32)
        }
        _ => return None,
    };
    let second = num(17, 19)?;
    if second >= 60 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
    let time = date.and_hms_nano_opt(num(11, 13)?, num(14, 16)?, second, nanos)?;
    Some(time.and_utc())
}

/// Parses RFC 3339 as chrono's `Deserialize` for `DateTime<Utc>` does.
fn parse<E: serde::de::Error>(s: &str) -> Result<DateTime<Utc>, E> {
    match parse_plain(s) {
        Some(d) => Ok(d),
        None => s
            .parse::<DateTime<FixedOffset>>()
            .map(|d| d.with_timezone(&Utc))
            .map_err(E::custom),
    }
}

/// `#[serde(with)]` for `DateTime<Utc>`: chrono's text and errors, quicker.
pub(crate) mod utc {
    use chrono::{DateTime, Utc};
    use serde::{de, Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(d: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        super::with_rfc3339(d, |t| s.serialize_str(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        d.deserialize_str(Visitor)
    }

    struct Visitor;

    impl de::Visitor<'_> for Visitor {
        type Value = DateTime<Utc>;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            // chrono's words, so that errors read the same.
            formatter.write_str("an RFC 3339 formatted date and time string")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            super::parse(value)
        }
    }
}

/// `#[serde(with)]` for `Option<DateTime<Utc>>`.
pub(crate) mod utc_opt {
    use chrono::{DateTime, Utc};
    use serde::{de, Deserializer, Serialize, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(d: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&Text(d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        d.deserialize_option(Visitor)
    }

    struct Text<'a>(&'a DateTime<Utc>);

    impl Serialize for Text<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            super::utc::serialize(self.0, s)
        }
    }

    struct Visitor;

    impl<'de> de::Visitor<'de> for Visitor {
        type Value = Option<DateTime<Utc>>;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            // serde's words for an `Option`.
            formatter.write_str("option")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            super::utc::deserialize(d).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn same_text_as_chrono() {
        let base = Utc.with_ymd_and_hms(2010, 9, 29, 11, 7, 2).unwrap();
        for nanos in [
            0,
            1,
            999,
            1_000,
            123_400_000,
            123_000_000,
            123_456_000,
            123_456_789,
            999_999_999,
        ] {
            let d = base + chrono::Duration::nanoseconds(nanos);
            let chrono_text = d.to_rfc3339_opts(SecondsFormat::AutoSi, true);
            assert_eq!(to_rfc3339(&d), chrono_text);
            assert_eq!(
                serde_json::to_string(&d).unwrap(),
                with_rfc3339(&d, |t| serde_json::to_string(t).unwrap())
            );
        }
        for (y, m, day) in [(0, 1, 1), (9, 2, 3), (999, 12, 31), (9999, 12, 31)] {
            let d = Utc.with_ymd_and_hms(y, m, day, 23, 59, 59).unwrap();
            assert_eq!(
                to_rfc3339(&d),
                d.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            );
            let date = d.date_naive();
            assert_eq!(
                with_ymd(&date, str::to_string),
                date.format("%Y-%m-%d").to_string()
            );
        }
        for text in [
            "2025-01-29T10:37:26Z",
            "2010-09-29T11:07:02.1234Z",
            "2010-09-29T11:07:02.123456789Z",
            "0000-01-01T00:00:00.5Z",
            "2016-12-31T23:59:60Z",
            "2025-01-29T10:37:26+01:00",
            "2025-01-29 10:37:26z",
            "2025-02-30T10:37:26Z",
            "2025-01-29T24:00:00Z",
            "2025-01-29T10:37:26.Z",
            "2025-01-29T10:37:26.1234567891Z",
            "+10000-01-01T00:00:00Z",
            "2025-01-29T10:37:2xZ",
        ] {
            let ours = parse::<serde_json::Error>(text).map_err(|e| e.to_string());
            let chrono = serde_json::from_value::<DateTime<Utc>>(serde_json::json!(text))
                .map_err(|e| e.to_string());
            assert_eq!(ours, chrono, "{text}");
        }
        for y in [-1, 10000] {
            let d = Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0).unwrap();
            assert_eq!(
                to_rfc3339(&d),
                d.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            );
        }
    }
}
