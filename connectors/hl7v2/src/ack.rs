//! HL7 acknowledgements (ACK), original acknowledgement mode.
//!
//! cgthub answers every message with one ACK once the pipeline's outcome is
//! known (after the message is durably stored): `AA`, `AE` or `AR`. Enhanced
//! mode is honoured only to decide *whether* to answer ([`wants_ack`], from
//! MSH-15 like Mirth's `HL7v2AutoResponder`); the answer itself is always an
//! original-mode ACK. Encode the returned text with
//! [`crate::charset::encode_text`] and the original's MSH-18.

use chrono::{DateTime, Utc};

use crate::delimiters::Delimiters;
use crate::escape::escape;
use crate::message::{first_part, Message};
use crate::path::{Hl7Path, Occurrence, RepSel};

/// MSA-1 acknowledgement code (HL7 table 0008).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// Application accept.
    AA,
    /// Application error: the message was understood but could not be processed.
    AE,
    /// Application reject: the message is unacceptable (syntax, type, version).
    AR,
    /// Commit accept (enhanced mode).
    CA,
    /// Commit error (enhanced mode).
    CE,
    /// Commit reject (enhanced mode).
    CR,
}

impl AckCode {
    /// The code as written in MSA-1.
    pub const fn as_str(self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
            AckCode::CA => "CA",
            AckCode::CE => "CE",
            AckCode::CR => "CR",
        }
    }

    /// `AA` and `CA`.
    pub const fn is_success(self) -> bool {
        matches!(self, AckCode::AA | AckCode::CA)
    }
}

/// An error to report in the ERR segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError {
    /// HL7 table 0357 code: one of the `ERR_*` constants in this module.
    pub code: &'static str,
    /// What went wrong, for the partner (no PHI). Escaped when written.
    pub text: String,
    /// Where, as a path (`OBX-5`, `PID-3[2].1`); written as ERR-2 (ERL).
    pub location: Option<String>,
}

/// Table 0357: segment sequence error.
pub const ERR_SEGMENT_SEQUENCE: &str = "100";
/// Table 0357: required field missing.
pub const ERR_REQUIRED_FIELD_MISSING: &str = "101";
/// Table 0357: data type error.
pub const ERR_DATA_TYPE: &str = "102";
/// Table 0357: table value not found.
pub const ERR_TABLE_VALUE_NOT_FOUND: &str = "103";
/// Table 0357: unsupported message type.
pub const ERR_UNSUPPORTED_MESSAGE_TYPE: &str = "200";
/// Table 0357: unsupported event code.
pub const ERR_UNSUPPORTED_EVENT_CODE: &str = "201";
/// Table 0357: unsupported processing id.
pub const ERR_UNSUPPORTED_PROCESSING_ID: &str = "202";
/// Table 0357: unsupported version id.
pub const ERR_UNSUPPORTED_VERSION_ID: &str = "203";
/// Table 0357: unknown key identifier.
pub const ERR_UNKNOWN_KEY: &str = "204";
/// Table 0357: duplicate key identifier.
pub const ERR_DUPLICATE_KEY: &str = "205";
/// Table 0357: application record locked.
pub const ERR_RECORD_LOCKED: &str = "206";
/// Table 0357: application internal error.
pub const ERR_INTERNAL: &str = "207";

/// The table 0357 description of `code` (empty for codes not in the table).
pub fn error_description(code: &str) -> &'static str {
    match code {
        "0" => "Message accepted",
        "100" => "Segment sequence error",
        "101" => "Required field missing",
        "102" => "Data type error",
        "103" => "Table value not found",
        "200" => "Unsupported message type",
        "201" => "Unsupported event code",
        "202" => "Unsupported processing id",
        "203" => "Unsupported version id",
        "204" => "Unknown key identifier",
        "205" => "Duplicate key identifier",
        "206" => "Application record locked",
        "207" => "Application internal error",
        _ => "",
    }
}

/// Builds an ACK (segments ended by CR) answering `original`, or a minimal
/// one (empty MSA-2, `|^~\&`, version 2.5.1) when the message could not be
/// parsed. `control_id` is the ACK's own MSH-10; `now` its MSH-7 (UTC).
pub fn ack(
    original: Option<&Message<'_>>,
    code: AckCode,
    text: Option<&str>,
    error: Option<&AckError>,
    control_id: &str,
    now: DateTime<Utc>,
) -> String {
    let d = original.map_or_else(Delimiters::default, |m| *m.delimiters());
    let fs = char::from(d.field());
    let cs = char::from(d.component());
    let msh = |n| original.and_then(|m| m.msh(n)).unwrap_or("");
    let trigger = first_part(msh(9), d.repetition())
        .split(cs)
        .nth(1)
        .filter(|t| !t.is_empty());
    let version = original.and_then(Message::version).unwrap_or("2.5.1");
    let processing = Some(msh(11)).filter(|p| !p.is_empty()).unwrap_or("P");

    let mut out = String::with_capacity(256);
    let mut seg = |fields: &[&str]| {
        out.push_str(&fields.join(&fs.to_string()));
        out.push('\r');
    };
    let time = now.format("%Y%m%d%H%M%S+0000").to_string();
    let msg_type = match trigger {
        Some(t) => format!("ACK{cs}{t}{cs}ACK"),
        None => "ACK".to_owned(),
    };
    let enc = d.encoding_characters();
    let cid = escape(control_id, &d);
    let mut header = vec![
        "MSH",
        &enc,
        msh(5),
        msh(6),
        msh(3),
        msh(4),
        &time,
        "",
        &msg_type,
        &cid,
        processing,
        version,
    ];
    if let Some(charset) = original.and_then(Message::charset) {
        header.extend(["", "", "", "", "", charset]);
    }
    seg(&header);

    let text = text.map(|t| escape(t, &d));
    let mut msa = vec![
        "MSA",
        code.as_str(),
        original.and_then(Message::control_id).unwrap_or(""),
    ];
    if let Some(t) = &text {
        msa.push(t);
    }
    seg(&msa);

    if let Some(e) = error {
        let desc = error_description(e.code);
        let erl = e
            .location
            .as_deref()
            .map(|l| erl(l, &d))
            .unwrap_or_default();
        let sc = char::from(d.subcomponent());
        let err1 = if is_before_v25(version) {
            let loc: Vec<&str> = erl.split(cs).take(3).collect();
            format!(
                "{}{cs}{}{cs}{}{cs}{}{sc}{desc}{sc}HL70357",
                loc.first().unwrap_or(&""),
                loc.get(1).unwrap_or(&""),
                loc.get(2).unwrap_or(&""),
                escape(e.code, &d),
            )
        } else {
            String::new()
        };
        let err3 = format!("{}{cs}{desc}{cs}HL70357", escape(e.code, &d));
        let msg = escape(&e.text, &d);
        seg(&["ERR", &err1, &erl, &err3, "E", "", "", "", &msg]);
    }
    out
}

/// ERR-2 (ERL: segment^sequence^field^repetition^component^subcomponent)
/// for a location path; an unparsable location is written escaped as is.
fn erl(location: &str, d: &Delimiters) -> String {
    let Ok(path) = Hl7Path::parse(location) else {
        return escape(location, d).into_owned();
    };
    let seq = match path.occurrence {
        Occurrence::Nth(n) => n,
        Occurrence::Scoped | Occurrence::All => 1,
    };
    let mut parts = vec![path.segment().to_owned(), seq.to_string()];
    if let Some(f) = &path.field {
        parts.push(f.field.to_string());
        let rep = match f.rep {
            RepSel::Nth(n) => Some(n),
            RepSel::First | RepSel::All | RepSel::Where { .. } => None,
        };
        if rep.is_some() || f.component.is_some() {
            parts.push(rep.unwrap_or(1).to_string());
        }
        parts.extend(f.component.map(|c| c.to_string()));
        parts.extend(f.sub.map(|s| s.to_string()));
    }
    parts.join(&char::from(d.component()).to_string())
}

fn is_before_v25(version: &str) -> bool {
    let mut nums = version.split('.').map(|p| p.parse::<u32>().ok());
    match (nums.next().flatten(), nums.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) < (2, 5),
        (Some(major), None) => major < 2,
        _ => false,
    }
}

/// Whether the sender asked for an acknowledgement with this outcome, per
/// MSH-15 (accept acknowledgement type): `AL` or absent → always, `NE` →
/// never, `ER` → only on error, `SU` → only on success. MSH-16 is not
/// consulted: cgthub sends no deferred application acknowledgement.
pub fn wants_ack(original: &Message<'_>, code: AckCode) -> bool {
    match original.accept_ack_type() {
        Some(t) if t.eq_ignore_ascii_case("NE") => false,
        Some(t) if t.eq_ignore_ascii_case("ER") => !code.is_success(),
        Some(t) if t.eq_ignore_ascii_case("SU") => code.is_success(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// rethinkhealth_bench_oru_r01_v2.5_multiOBX.hl7 (corpus), MSH and PID.
    const ORU: &str = "MSH|^~\\&|LAB|HOSPITAL|EMR|HOSPITAL|202501021200||ORU^R01|MSG00002|P|2.5\r\
PID|1||789012^^^HOSPITAL^MR||SMITH^JANE^^^^^L||19850317|F|||456 OAK ST^^ANYTOWN^WI^53202\r";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 2, 12, 0, 5).unwrap()
    }

    #[test]
    fn corpus_oru_accept_is_byte_exact() {
        let m = Message::parse(ORU).unwrap();
        let a = ack(Some(&m), AckCode::AA, None, None, "ACK00002", now());
        assert_eq!(
            a,
            "MSH|^~\\&|EMR|HOSPITAL|LAB|HOSPITAL|20250102120005+0000||ACK^R01^ACK|ACK00002|P|2.5\r\
MSA|AA|MSG00002\r"
        );
    }

    #[test]
    fn error_ack_escapes_and_locates() {
        let m = Message::parse(ORU).unwrap();
        let e = AckError {
            code: ERR_DATA_TYPE,
            text: "OBX-5 is not numeric: a|b".into(),
            location: Some("OBX[2]-5".into()),
        };
        let a = ack(
            Some(&m),
            AckCode::AE,
            Some("rejected ^ see ERR"),
            Some(&e),
            "A1",
            now(),
        );
        assert_eq!(
            a,
            "MSH|^~\\&|EMR|HOSPITAL|LAB|HOSPITAL|20250102120005+0000||ACK^R01^ACK|A1|P|2.5\r\
MSA|AE|MSG00002|rejected \\S\\ see ERR\r\
ERR||OBX^2^5|102^Data type error^HL70357|E||||OBX-5 is not numeric: a\\F\\b\r"
        );
    }

    #[test]
    fn v23_also_fills_err1_and_keeps_delimiters_and_charset() {
        let src =
            "MSH!*~$@!EPIC!Todd Horst*x!!!20240801!IPMD!ADT*A08!245140!T!2.3!!!!!!8859/1\rEVN!A08";
        let m = Message::parse(src).unwrap();
        let e = AckError {
            code: ERR_INTERNAL,
            text: "down".into(),
            location: Some("PID-3.1".into()),
        };
        let a = ack(Some(&m), AckCode::AE, None, Some(&e), "c!1", now());
        assert_eq!(
            a,
            "MSH!*~$@!!!EPIC!Todd Horst*x!20250102120005+0000!!ACK*A08*ACK!c$F$1!T!2.3!!!!!!8859/1\r\
MSA!AE!245140\r\
ERR!PID*1*3*207@Application internal error@HL70357!PID*1*3*1*1!207*Application internal error*HL70357!E!!!!down\r"
        );
    }

    #[test]
    fn minimal_ack_without_original() {
        let e = AckError {
            code: ERR_SEGMENT_SEQUENCE,
            text: "not HL7".into(),
            location: None,
        };
        let a = ack(None, AckCode::AR, None, Some(&e), "X", now());
        assert_eq!(
            a,
            "MSH|^~\\&|||||20250102120005+0000||ACK|X|P|2.5.1\rMSA|AR|\r\
ERR|||100^Segment sequence error^HL70357|E||||not HL7\r"
        );
        let plain = Message::parse("MSH|^~\\&|A|B|C|D|1||ACK|9").unwrap();
        let a = ack(Some(&plain), AckCode::AA, None, None, "Y", now());
        assert!(a.starts_with("MSH|^~\\&|C|D|A|B|20250102120005+0000||ACK|Y|P|2.5.1\r"));
    }

    #[test]
    fn enhanced_mode_preferences() {
        let with = |v: &str| format!("MSH|^~\\&|||||||ADT^A01|1|P|2.5|||{v}");
        for (msh15, ok, err) in [
            ("", true, true),
            ("AL", true, true),
            ("NE", false, false),
            ("ER", false, true),
            ("SU", true, false),
        ] {
            let text = with(msh15);
            let m = Message::parse(&text).unwrap();
            assert_eq!(wants_ack(&m, AckCode::AA), ok, "{msh15} AA");
            assert_eq!(wants_ack(&m, AckCode::AR), err, "{msh15} AR");
            assert_eq!(wants_ack(&m, AckCode::CE), err, "{msh15} CE");
        }
    }

    #[test]
    fn versions_and_descriptions() {
        assert!(is_before_v25("2.3.1") && is_before_v25("2.4") && is_before_v25("1"));
        assert!(!is_before_v25("2.5") && !is_before_v25("2.5.1") && !is_before_v25("x"));
        assert_eq!(error_description("999"), "");
        assert_eq!(erl("not a path", &Delimiters::default()), "not a path");
        assert_eq!(erl("PID-3[2].4.1", &Delimiters::default()), "PID^1^3^2^4^1");
        assert_eq!(erl("PID", &Delimiters::default()), "PID^1");
    }
}
