//! Checks on the raw bytes before lopdf parses them.
//!
//! lopdf's parser recurses once per nested array or dictionary with no
//! limit; a few hundred levels overflow a thread's stack, which aborts the
//! whole process (`catch_unwind` cannot catch it). Real PDFs nest a handful
//! of levels, so anything deeper than [`MAX_NESTING`] is refused: in the
//! file's objects, in its object streams (inflated here, with a size cap,
//! since lopdf parses their contents too) and, in `layout`, in each page's
//! content. The scan also finds an `/Encrypt` entry without trusting lopdf
//! to load an encrypted file.

use std::io::Read;

use super::PdfRefusal;

/// Deepest nesting of arrays and dictionaries accepted.
pub(super) const MAX_NESTING: usize = 64;

/// Largest inflated object stream accepted (a "zip bomb" guard).
const MAX_OBJECT_STREAM: u64 = 64 << 20;

/// What a scan of PDF syntax found.
#[derive(Debug, Default)]
struct Scan {
    /// Deepest nesting within one object.
    depth: usize,
    /// An `/Encrypt` name outside strings and streams.
    encrypt: bool,
    /// Byte ranges of object streams' data, with their coding.
    object_streams: Vec<(std::ops::Range<usize>, Coding)>,
}

/// Refuses bytes lopdf must not be given: encrypted, or nested too deeply.
pub(super) fn check(bytes: &[u8]) -> Result<(), PdfRefusal> {
    let scan = scan(bytes, true);
    if scan.encrypt {
        return Err(PdfRefusal::Encrypted);
    }
    too_deep(scan.depth)?;
    for (range, coding) in scan.object_streams {
        let data = &bytes[range];
        let inflated;
        let objects = match coding {
            Coding::Plain => data,
            Coding::Flate => {
                inflated = inflate(data)?;
                &inflated[..]
            }
            Coding::Other => {
                return Err(PdfRefusal::Corrupt(
                    "an object stream is encoded other than with FlateDecode alone, which the hub does not accept; save or print the document to PDF again".into(),
                ))
            }
        };
        too_deep(nesting(objects))?;
    }
    Ok(())
}

/// Deepest nesting in PDF syntax without streams (a page's content).
pub(super) fn nesting(bytes: &[u8]) -> usize {
    scan(bytes, false).depth
}

/// Inflates an object stream, keeping (like lopdf) what inflated before
/// any error; refused past [`MAX_OBJECT_STREAM`].
fn inflate(data: &[u8]) -> Result<Vec<u8>, PdfRefusal> {
    let mut inflated = Vec::new();
    let mut reader = flate2::read::ZlibDecoder::new(data).take(MAX_OBJECT_STREAM + 1);
    let _ = reader.read_to_end(&mut inflated);
    if inflated.len() as u64 > MAX_OBJECT_STREAM {
        return Err(PdfRefusal::Corrupt(format!(
            "an object stream expands to more than {} MB",
            MAX_OBJECT_STREAM >> 20
        )));
    }
    Ok(inflated)
}

fn too_deep(depth: usize) -> Result<(), PdfRefusal> {
    if depth > MAX_NESTING {
        Err(PdfRefusal::Corrupt(format!(
            "arrays or dictionaries nested {depth} levels deep (at most {MAX_NESTING})"
        )))
    } else {
        Ok(())
    }
}

fn is_white(b: u8) -> bool {
    matches!(b, b'\0' | b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

fn is_delimiter(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

/// Tokenises PDF syntax just enough to count nesting: strings, comments and
/// (when `streams`) stream data are skipped; nesting restarts at each `obj`.
fn scan(b: &[u8], streams: bool) -> Scan {
    let mut out = Scan::default();
    let (mut depth, mut obj_start, mut i) = (0usize, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'%' => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
            }
            b'(' => {
                let mut level = 0usize;
                while i < b.len() {
                    match b[i] {
                        b'\\' => i += 1,
                        b'(' => level += 1,
                        b')' => {
                            level -= 1;
                            if level == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
            }
            b'<' if b.get(i + 1) == Some(&b'<') => {
                depth += 1;
                out.depth = out.depth.max(depth);
                i += 2;
            }
            b'<' => {
                while i < b.len() && b[i] != b'>' {
                    i += 1;
                }
                i += 1;
            }
            b'>' if b.get(i + 1) == Some(&b'>') => {
                depth = depth.saturating_sub(1);
                i += 2;
            }
            b'[' => {
                depth += 1;
                out.depth = out.depth.max(depth);
                i += 1;
            }
            b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'/' => {
                let start = i + 1;
                i = start;
                while i < b.len() && !is_white(b[i]) && !is_delimiter(b[i]) {
                    i += 1;
                }
                if &b[start..i] == b"Encrypt" {
                    out.encrypt = true;
                }
            }
            c if is_white(c) || is_delimiter(c) => i += 1,
            _ => {
                let start = i;
                while i < b.len() && !is_white(b[i]) && !is_delimiter(b[i]) {
                    i += 1;
                }
                match &b[start..i] {
                    b"obj" => {
                        depth = 0;
                        obj_start = i;
                    }
                    b"stream" if streams => {
                        let dict = &b[obj_start..start];
                        let data_start = match b.get(i..i + 2) {
                            Some(b"\r\n") => i + 2,
                            _ => i + 1,
                        };
                        let data_end = find(b, b"endstream", data_start).unwrap_or(b.len());
                        if contains(dict, b"/ObjStm") {
                            out.object_streams
                                .push((data_start.min(data_end)..data_end, coding(dict)));
                        }
                        i = data_end;
                        depth = 0;
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// How an object stream's data is encoded, as far as this check goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Plain,
    Flate,
    /// Other filters, filter chains, decode parameters, indirect filters.
    Other,
}

/// An object stream dictionary's coding.
fn coding(dict: &[u8]) -> Coding {
    let Some(at) = find(dict, b"/Filter", 0) else {
        return Coding::Plain;
    };
    if contains(dict, b"/DecodeParms") {
        return Coding::Other;
    }
    let rest = &dict[at + b"/Filter".len()..];
    let rest = &rest[rest.iter().take_while(|b| is_white(**b)).count()..];
    let names: Vec<&[u8]> = match rest.first() {
        Some(b'[') => {
            let end = rest.iter().position(|b| *b == b']').unwrap_or(rest.len());
            rest[1..end]
                .split(|b| *b == b'/' || is_white(*b))
                .filter(|n| !n.is_empty())
                .collect()
        }
        Some(b'/') => {
            let name = &rest[1..];
            let len = name
                .iter()
                .take_while(|b| !is_white(**b) && !is_delimiter(**b))
                .count();
            vec![&name[..len]]
        }
        _ => return Coding::Other,
    };
    match names.as_slice() {
        [] => Coding::Plain,
        [b"FlateDecode"] => Coding::Flate,
        _ => Coding::Other,
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle, 0).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_counts_arrays_and_dicts_but_not_strings_or_comments() {
        assert_eq!(nesting(b"<< /A [1 [2] << /B 3 >>] >>"), 3);
        assert_eq!(nesting(b"[(((([[[[) <5B5B5B> % [[[[[[\n]"), 1);
        assert_eq!(nesting(b"(a \\( [[[ ) [ ]"), 1);
        assert_eq!(nesting(&[b'['; 100]), 100);
    }

    #[test]
    fn nesting_restarts_per_object_and_skips_stream_data() {
        let pdf = b"1 0 obj [[[ endobj 2 0 obj << /Length 3 >> stream\n[[[[[[[[\nendstream endobj 3 0 obj [[ ]] endobj";
        assert_eq!(scan(pdf, true).depth, 3);
    }

    #[test]
    fn encrypt_entry_is_found_outside_strings_only() {
        assert!(scan(b"trailer << /Encrypt 8 0 R >>", true).encrypt);
        assert!(!scan(b"(/Encrypt) << /EncryptMetadata false >>", true).encrypt);
    }

    #[test]
    fn object_stream_codings() {
        let cases: [(&[u8], Coding); 8] = [
            (
                b"<< /Type /ObjStm /N 3 /First 20 /Filter /FlateDecode /Length 9 >>",
                Coding::Flate,
            ),
            (
                b"<</Type/ObjStm/Filter[/FlateDecode]/Length 9>>",
                Coding::Flate,
            ),
            (b"<</Type/ObjStm/Filter/FlateDecode>>", Coding::Flate),
            (b"<</Type/ObjStm/N 1/First 4/Length 9>>", Coding::Plain),
            (
                b"<</Type/ObjStm/Filter[/ASCII85Decode/FlateDecode]>>",
                Coding::Other,
            ),
            (
                b"<</Type/ObjStm/Filter[/FlateDecode /ASCII85Decode]>>",
                Coding::Other,
            ),
            (
                b"<</Type/ObjStm/Filter/FlateDecode/DecodeParms<</Predictor 12>>>>",
                Coding::Other,
            ),
            (b"<</Type/ObjStm/Filter 5 0 R>>", Coding::Other),
        ];
        for (dict, expected) in cases {
            assert_eq!(coding(dict), expected, "{}", String::from_utf8_lossy(dict));
        }
    }

    #[test]
    fn deep_nesting_inside_a_compressed_object_stream_is_refused() {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&[b'['; 10_000]).unwrap();
        let data = z.finish().unwrap();
        let mut pdf =
            b"%PDF-1.5\n5 0 obj << /Type /ObjStm /N 1 /First 4 /Filter /FlateDecode >> stream\n"
                .to_vec();
        pdf.extend_from_slice(&data);
        pdf.extend_from_slice(b"\nendstream endobj");
        let err = check(&pdf).unwrap_err();
        assert!(err.to_string().contains("nested 10000 levels"), "{err}");
    }
}
