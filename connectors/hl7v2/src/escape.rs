//! HL7 escape sequences: `\F\ \S\ \T\ \R\ \E\ \P\ \Xhh..\ \.br\ \H\ \N\`.
//!
//! [`unescape`] turns field text into the value it stands for and never
//! fails: a sequence it does not understand (`\Zxxx\`, `\C..\`, `\.sp\`, an
//! unterminated `\`) is kept verbatim. [`escape`] is its inverse for text we
//! write (ACK reasons): `unescape(escape(s)) == s` for every string.

use std::borrow::Cow;

use memchr::memchr;

use crate::delimiters::Delimiters;
use crate::message::find_byte;

/// The value `s` stands for; borrowed when `s` holds no escape character.
///
/// `\Xhhhh\` is decoded as UTF-8 when the bytes are valid UTF-8, otherwise
/// as ISO-8859-1 (exact: every byte is a character). `\.br\` becomes `\n`;
/// `\H\` and `\N\` (highlighting) are removed; `\P\` becomes the truncation
/// character (`#` when MSH-2 declares none).
pub fn unescape<'a>(s: &'a str, delims: &Delimiters) -> Cow<'a, str> {
    let esc = delims.escape();
    let Some(first) = find_byte(esc, s.as_bytes()) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len());
    // `esc` is ASCII, so every position memchr finds is a char boundary.
    let (head, mut rest) = s.split_at(first);
    out.push_str(head);
    while !rest.is_empty() {
        // `rest` starts with the escape character.
        let body_and_after = &rest[1..];
        let Some(close) = memchr(esc, body_and_after.as_bytes()) else {
            out.push_str(rest); // unterminated: verbatim
            break;
        };
        let body = &body_and_after[..close];
        let after = &body_and_after[close + 1..];
        if !decode_sequence(body, delims, &mut out) {
            // Unknown: keep `\body\` verbatim.
            out.push_str(&rest[..close + 2]);
        }
        match memchr(esc, after.as_bytes()) {
            Some(next) => {
                out.push_str(&after[..next]);
                rest = &after[next..];
            }
            None => {
                out.push_str(after);
                break;
            }
        }
    }
    Cow::Owned(out)
}

/// Appends what `body` (the text between two escape characters) stands for;
/// false when it is not a sequence we decode.
fn decode_sequence(body: &str, d: &Delimiters, out: &mut String) -> bool {
    let delim = match body {
        "F" => d.field(),
        "S" => d.component(),
        "T" => d.subcomponent(),
        "R" => d.repetition(),
        "E" => d.escape(),
        "P" => d.truncation().unwrap_or(b'#'),
        ".br" => b'\n',
        "H" | "N" => return true,
        _ => {
            return match body.strip_prefix('X') {
                Some(hex) => decode_hex(hex, out),
                None => false,
            }
        }
    };
    out.push(char::from(delim));
    true
}

fn decode_hex(hex: &str, out: &mut String) -> bool {
    let digits = hex.as_bytes();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return false;
    }
    let mut bytes = Vec::with_capacity(digits.len() / 2);
    for pair in digits.chunks_exact(2) {
        match (hex_value(pair[0]), hex_value(pair[1])) {
            (Some(h), Some(l)) => bytes.push(h << 4 | l),
            _ => return false,
        }
    }
    match String::from_utf8(bytes) {
        Ok(s) => out.push_str(&s),
        Err(e) => out.extend(e.as_bytes().iter().map(|&b| char::from(b))),
    }
    true
}

const fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `s` written so it can be placed in a field: delimiters become `\F\ \S\
/// \T\ \R\ \E\` (and `\P\` for a declared truncation character), CR and LF
/// become `\X0D\` and `\X0A\` (they would end the segment).
pub fn escape<'a>(s: &'a str, delims: &Delimiters) -> Cow<'a, str> {
    let needs = |b: u8| {
        b == delims.field()
            || b == delims.component()
            || b == delims.subcomponent()
            || b == delims.repetition()
            || b == delims.escape()
            || Some(b) == delims.truncation()
            || b == b'\r'
            || b == b'\n'
    };
    if !s.bytes().any(needs) {
        return Cow::Borrowed(s);
    }
    let esc = char::from(delims.escape());
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        let code = match u8::try_from(c) {
            Ok(b) if needs(b) => match b {
                b'\r' => "X0D",
                b'\n' => "X0A",
                _ if b == delims.field() => "F",
                _ if b == delims.component() => "S",
                _ if b == delims.subcomponent() => "T",
                _ if b == delims.repetition() => "R",
                _ if b == delims.escape() => "E",
                _ => "P",
            },
            _ => {
                out.push(c);
                continue;
            }
        };
        out.push(esc);
        out.push_str(code);
        out.push(esc);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn un(s: &str) -> Cow<'_, str> {
        unescape(s, &Delimiters::default())
    }

    #[test]
    fn borrowed_without_escapes() {
        assert!(matches!(un("plain ü text"), Cow::Borrowed("plain ü text")));
    }

    #[test]
    fn delimiter_sequences() {
        assert_eq!(
            un(r"Test\F\Value\S\Special\R\Chars\E\Escape\T\x"),
            r"Test|Value^Special~Chars\Escape&x"
        );
        assert_eq!(un(r"a\P\b"), "a#b");
        let d = Delimiters::from_msh('|', "^~\\&!").unwrap();
        assert_eq!(unescape(r"a\P\b", &d), "a!b");
    }

    #[test]
    fn multibyte_text_around_escapes() {
        assert_eq!(un("é\\F\\ü"), "é|ü");
        assert_eq!(un("日本\\S\\語\\"), "日本^語\\");
        assert_eq!(un("\\E\\é"), "\\é");
    }

    #[test]
    fn hex_formatting_and_unknown() {
        assert_eq!(un(r"a\X0D0A\b"), "a\r\nb");
        assert_eq!(un(r"\XC3A9\"), "é"); // UTF-8 bytes
        assert_eq!(un(r"\XE9\"), "é"); // not UTF-8: ISO-8859-1
        assert_eq!(un(r"\XZZ\ \X1\"), r"\XZZ\ \X1\");
        assert_eq!(un(r"line\.br\next"), "line\nnext");
        assert_eq!(un(r"\H\bold\N\"), "bold");
        assert_eq!(un(r"\Zcustom\ \.sp\ \\"), r"\Zcustom\ \.sp\ \\");
        assert_eq!(un(r"unterminated \F"), r"unterminated \F");
        assert_eq!(un(r"\F\\"), "|\\");
        assert_eq!(un("\\"), "\\");
    }

    #[test]
    fn escape_round_trips() {
        let d = Delimiters::default();
        let s = "a|b^c&d~e\\f\rg\nh#é";
        let e = escape(s, &d);
        assert_eq!(e, r"a\F\b\S\c\T\d\R\e\E\f\X0D\g\X0A\h#é");
        assert_eq!(unescape(&e, &d), s);
        assert!(matches!(escape("plain", &d), Cow::Borrowed("plain")));
        let t = Delimiters::from_msh('|', "^~\\&#").unwrap();
        assert_eq!(escape("#", &t), r"\P\");
    }
}
