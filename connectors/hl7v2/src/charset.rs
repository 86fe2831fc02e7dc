//! Bytes → text by the character set a message declares in MSH-18.
//!
//! The MSH segment itself is ASCII in every character set HL7 allows for ER7,
//! so MSH-18 is read from the raw bytes before decoding. Supported values
//! (HL7 table 0211, compared case-insensitively, first repetition only):
//!
//! | MSH-18                                   | decoded as                                  |
//! |------------------------------------------|---------------------------------------------|
//! | absent, `ASCII`, `ISO IR6`               | UTF-8 (a superset; see the fallback below)  |
//! | `UNICODE UTF-8`, `UNICODE`, `UTF-8`      | UTF-8, strictly                             |
//! | `8859/1`                                 | ISO-8859-1, byte → U+00xx (exact)           |
//! | `8859/2` … `8859/8`, `8859/15`           | ISO-8859-n via `encoding_rs`                |
//! | `8859/9`                                 | ISO-8859-9 (Latin-1 with 6 Turkish letters) |
//! | `GB 18030-2000`, `KS X 1001`, `BIG-5`    | GB18030, EUC-KR, Big5 via `encoding_rs`     |
//!
//! `ISO-8859-n` spellings are accepted as `8859/n`. `ISO IR14`, `ISO IR87`,
//! `ISO IR159` (ISO 2022 code extension), `CNS 11643-1992`, `UNICODE UTF-16`
//! and `UNICODE UTF-32` (an ASCII MSH cannot be UTF-16/32) and anything else
//! are refused with [`ParseError::UnsupportedCharset`] naming the value.
//!
//! **Fallback:** when MSH-18 is absent (or `ASCII`) and the bytes are not
//! valid UTF-8, they are decoded as ISO-8859-1 instead of failing: real
//! senders emit Latin-1 without declaring it, and Latin-1 decoding is
//! lossless. A declared `UNICODE UTF-8` that is not valid UTF-8 is an error.
//!
//! `8859/1` is decoded exactly, not as windows-1252 (what `encoding_rs` and
//! browsers use for the `iso-8859-1` label): bytes 0x80–0x9F stay C1 controls.

use std::borrow::Cow;

use encoding_rs::Encoding;
use memchr::memchr2;

use crate::error::ParseError;

const BOM: &[u8] = b"\xEF\xBB\xBF";

#[derive(Debug, Clone, Copy)]
enum Charset {
    /// UTF-8; `strict` when declared as Unicode, lenient for absent/ASCII.
    Utf8 {
        strict: bool,
    },
    Latin1,
    Latin5,
    Other(&'static Encoding),
}

/// Decodes a message's bytes as MSH-18 says (see the module docs).
/// Borrows when the bytes are valid UTF-8 (or ASCII) already.
pub fn decode_text(bytes: &[u8]) -> Result<Cow<'_, str>, ParseError> {
    let label = msh18(bytes)?;
    match resolve(&label)? {
        Charset::Utf8 { strict } => match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Cow::Borrowed(s)),
            Err(_) if !strict => Ok(Cow::Owned(latin1(bytes))),
            Err(e) => Err(ParseError::InvalidText {
                charset: label.into_owned(),
                offset: Some(e.valid_up_to()),
            }),
        },
        _ if bytes.is_ascii() => Ok(Cow::Borrowed(
            std::str::from_utf8(bytes).unwrap_or_default(), // ASCII is UTF-8
        )),
        Charset::Latin1 => Ok(Cow::Owned(latin1(bytes))),
        Charset::Latin5 => Ok(Cow::Owned(bytes.iter().map(|&b| latin5(b)).collect())),
        Charset::Other(enc) => enc
            .decode_without_bom_handling_and_without_replacement(bytes)
            .ok_or_else(|| ParseError::InvalidText {
                charset: label.into_owned(),
                offset: None,
            }),
    }
}

/// Encodes text we write (ACKs) in the character set of the message we
/// answer (`charset` = its MSH-18). ASCII text is returned as is, since every
/// supported character set is an ASCII superset; characters the target set
/// cannot represent become `?`. Unknown or absent charsets give UTF-8.
pub fn encode_text(text: &str, charset: Option<&str>) -> Vec<u8> {
    if text.is_ascii() {
        return text.as_bytes().to_vec();
    }
    let cs = resolve(charset.unwrap_or("")).unwrap_or(Charset::Utf8 { strict: true });
    match cs {
        Charset::Utf8 { .. } => text.as_bytes().to_vec(),
        Charset::Latin1 => text
            .chars()
            .map(|c| u8::try_from(c).unwrap_or(b'?'))
            .collect(),
        Charset::Latin5 => text
            .chars()
            .map(|c| (0..=255u8).find(|&b| latin5(b) == c).unwrap_or(b'?'))
            .collect(),
        Charset::Other(enc) => {
            let mut out = Vec::with_capacity(text.len());
            let mut buf = [0u8; 4];
            for c in text.chars() {
                let (bytes, _, unmappable) = enc.encode(c.encode_utf8(&mut buf));
                if unmappable {
                    out.push(b'?');
                } else {
                    out.extend_from_slice(&bytes);
                }
            }
            out
        }
    }
}

/// MSH-18's first repetition, trimmed; empty when absent.
fn msh18(bytes: &[u8]) -> Result<Cow<'_, str>, ParseError> {
    let b = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let (Some(b"MSH"), Some(&fs)) = (b.get(..3), b.get(3)) else {
        return Ok(Cow::Borrowed(""));
    };
    let line = b
        .get(..memchr2(b'\r', b'\n', b).unwrap_or(b.len()))
        .unwrap_or(b);
    // parts[0] = "MSH", parts[1] = MSH-2, parts[k] = MSH-(k+1).
    let Some(field) = line.split(|&c| c == fs).nth(17) else {
        return Ok(Cow::Borrowed(""));
    };
    let first = match b.get(5) {
        Some(&rep) if rep != fs => field.split(|&c| c == rep).next().unwrap_or(field),
        _ => field,
    };
    let label = String::from_utf8_lossy(first.trim_ascii());
    Ok(label)
}

fn resolve(label: &str) -> Result<Charset, ParseError> {
    let upper = label.trim().to_ascii_uppercase();
    let norm = ["ISO-8859-", "ISO8859-", "ISO_8859-", "ISO 8859-"]
        .iter()
        .find_map(|p| upper.strip_prefix(p))
        .map_or(upper.clone(), |n| format!("8859/{n}"));
    let cs = match norm.as_str() {
        "" | "ASCII" | "ISO IR6" => Charset::Utf8 { strict: false },
        "UNICODE UTF-8" | "UNICODE" | "UTF-8" | "UTF8" => Charset::Utf8 { strict: true },
        "8859/1" => Charset::Latin1,
        "8859/9" => Charset::Latin5,
        "8859/2" => Charset::Other(encoding_rs::ISO_8859_2),
        "8859/3" => Charset::Other(encoding_rs::ISO_8859_3),
        "8859/4" => Charset::Other(encoding_rs::ISO_8859_4),
        "8859/5" => Charset::Other(encoding_rs::ISO_8859_5),
        "8859/6" => Charset::Other(encoding_rs::ISO_8859_6),
        "8859/7" => Charset::Other(encoding_rs::ISO_8859_7),
        "8859/8" => Charset::Other(encoding_rs::ISO_8859_8),
        "8859/15" => Charset::Other(encoding_rs::ISO_8859_15),
        "GB 18030-2000" => Charset::Other(encoding_rs::GB18030),
        "KS X 1001" => Charset::Other(encoding_rs::EUC_KR),
        "BIG-5" => Charset::Other(encoding_rs::BIG5),
        _ => {
            return Err(ParseError::UnsupportedCharset {
                charset: label.to_owned(),
            })
        }
    };
    Ok(cs)
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// ISO-8859-9: ISO-8859-1 with six Turkish letters in place of Icelandic ones.
fn latin5(b: u8) -> char {
    match b {
        0xD0 => 'Ğ',
        0xDD => 'İ',
        0xDE => 'Ş',
        0xF0 => 'ğ',
        0xFD => 'ı',
        0xFE => 'ş',
        _ => char::from(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(charset: &str, body: &[u8]) -> Vec<u8> {
        let mut v = format!("MSH|^~\\&|A|B|C|D|20250101||ADT^A01|1|P|2.5||||||{charset}\rPID|1||")
            .into_bytes();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn utf8_borrows() {
        let m = msg("UNICODE UTF-8", "é".as_bytes());
        assert!(matches!(decode_text(&m), Ok(Cow::Borrowed(_))));
        let m = msg("", "ü".as_bytes());
        assert!(decode_text(&m).unwrap().ends_with("||ü"));
    }

    #[test]
    fn latin1_declared_and_fallback() {
        let m = msg("8859/1", b"\xE9");
        assert!(decode_text(&m).unwrap().ends_with("||é"));
        // Repetitions of MSH-18: the first one is the message's charset.
        let m = msg("8859/1~ISO IR87", b"\xE9\x80");
        assert!(decode_text(&m).unwrap().ends_with("||é\u{80}"));
        // Undeclared, not UTF-8: decoded as Latin-1 rather than refused.
        let m = msg("", b"M\xFCller");
        assert!(decode_text(&m).unwrap().ends_with("||Müller"));
        let m = b"not hl7 \xE9";
        assert_eq!(decode_text(m).unwrap(), "not hl7 é");
    }

    #[test]
    fn declared_utf8_must_be_valid() {
        let m = msg("UNICODE UTF-8", b"\xE9");
        let e = decode_text(&m).unwrap_err();
        assert_eq!(
            e,
            ParseError::InvalidText {
                charset: "UNICODE UTF-8".into(),
                offset: Some(m.len() - 1)
            }
        );
    }

    #[test]
    fn other_charsets() {
        assert!(decode_text(&msg("8859/15", b"\xA4"))
            .unwrap()
            .ends_with('€'));
        assert!(decode_text(&msg("8859/2", b"\xB1")).unwrap().ends_with('ą'));
        assert!(decode_text(&msg("8859/9", b"\xFD\xE9"))
            .unwrap()
            .ends_with("ıé"));
        assert!(decode_text(&msg("iso-8859-1", b"\xE9"))
            .unwrap()
            .ends_with('é'));
        assert!(decode_text(&msg("8859/7", b"ab")).is_ok());
    }

    #[test]
    fn unsupported_charsets_are_named() {
        for cs in ["ISO IR87", "UNICODE UTF-16", "KLINGON"] {
            assert_eq!(
                decode_text(&msg(cs, b"x")).unwrap_err().to_string(),
                format!("unsupported character set {cs:?} in MSH-18")
            );
        }
    }

    #[test]
    fn encode_for_acks() {
        assert_eq!(encode_text("ok", Some("8859/1")), b"ok");
        assert_eq!(encode_text("é€", Some("8859/1")), b"\xE9?");
        assert_eq!(encode_text("€", Some("8859/15")), b"\xA4");
        assert_eq!(encode_text("ş", Some("8859/9")), b"\xFE");
        assert_eq!(encode_text("é", None), "é".as_bytes());
        assert_eq!(encode_text("é", Some("nonsense")), "é".as_bytes());
    }
}
