//! Any encoding → UTF-8, streamed in fixed buffers ([`Transcoder`]).
//!
//! A byte-order mark is removed, and wins over the dialect's encoding (a
//! file that starts with the UTF-8 BOM is UTF-8). Invalid input stops the
//! stream with [`FileError::Encoding`], which names the byte offset in the
//! file as received and its line.

use std::io::{self, Read};

use encoding_rs::{DecoderResult, Encoding};

use crate::error::FileError;

const BUF: usize = 64 * 1024;

/// Reads `R` in its encoding and yields UTF-8.
pub struct Transcoder<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    input: Box<[u8]>,
    in_start: usize,
    in_end: usize,
    eof: bool,
    done: bool,
    output: Box<[u8]>,
    out_start: usize,
    out_end: usize,
    /// Input bytes consumed by the decoder so far.
    consumed: u64,
    /// Line breaks produced so far.
    lines: u64,
    /// An error to report once the output before it is read.
    pending: Option<(u64, u64)>,
}

impl<R: Read> Transcoder<R> {
    pub fn new(inner: R, encoding: &'static Encoding) -> Self {
        Transcoder {
            inner,
            decoder: encoding.new_decoder(),
            input: vec![0; BUF].into_boxed_slice(),
            in_start: 0,
            in_end: 0,
            eof: false,
            done: false,
            output: vec![0; BUF].into_boxed_slice(),
            out_start: 0,
            out_end: 0,
            consumed: 0,
            lines: 0,
            pending: None,
        }
    }

    /// Decodes more output; false at the end.
    fn fill(&mut self) -> io::Result<bool> {
        loop {
            if let Some((offset, line)) = self.pending.take() {
                self.done = true;
                let name = self.decoder.encoding().name();
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    FileError::Encoding {
                        encoding: name,
                        offset,
                        line,
                    },
                ));
            }
            if self.done {
                return Ok(false);
            }
            if self.in_start == self.in_end && !self.eof {
                let n = loop {
                    match self.inner.read(&mut self.input) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                };
                self.in_start = 0;
                self.in_end = n;
                self.eof = n == 0;
            }
            let src = &self.input[self.in_start..self.in_end];
            let (result, read, written) =
                self.decoder
                    .decode_to_utf8_without_replacement(src, &mut self.output, self.eof);
            self.in_start += read;
            self.consumed += read as u64;
            let out = &self.output[..written];
            self.lines += out.iter().filter(|&&b| b == b'\n').count() as u64;
            self.out_start = 0;
            self.out_end = written;
            match result {
                DecoderResult::InputEmpty => {
                    if self.eof {
                        self.done = true;
                    }
                }
                DecoderResult::OutputFull => {}
                DecoderResult::Malformed(bad, extra) => {
                    let offset = self.consumed - u64::from(extra) - u64::from(bad);
                    self.pending = Some((offset, self.lines + 1));
                }
            }
            if written > 0 {
                return Ok(true);
            }
        }
    }
}

impl<R: Read> Read for Transcoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.out_start == self.out_end && !self.fill()? {
            return Ok(0);
        }
        let n = buf.len().min(self.out_end - self.out_start);
        buf[..n].copy_from_slice(&self.output[self.out_start..self.out_start + n]);
        self.out_start += n;
        Ok(n)
    }
}

/// The [`FileError`] an I/O error from a [`Transcoder`] stands for.
pub fn file_error(e: io::Error) -> FileError {
    if !e.get_ref().is_some_and(|inner| inner.is::<FileError>()) {
        return FileError::Io(e);
    }
    match e.into_inner().map(|inner| inner.downcast::<FileError>()) {
        Some(Ok(f)) => *f,
        Some(Err(other)) => FileError::Io(io::Error::other(other)),
        None => FileError::Io(io::Error::other("unknown read error")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8], enc: &'static Encoding) -> Result<String, FileError> {
        let mut out = String::new();
        Transcoder::new(bytes, enc)
            .read_to_string(&mut out)
            .map_err(file_error)?;
        Ok(out)
    }

    #[test]
    fn utf8_with_and_without_bom() {
        assert_eq!(
            all(b"\xEF\xBB\xBFa,b\n", encoding_rs::UTF_8).unwrap(),
            "a,b\n"
        );
        assert_eq!(
            all("é,ü\n".as_bytes(), encoding_rs::UTF_8).unwrap(),
            "é,ü\n"
        );
        assert_eq!(all(b"", encoding_rs::UTF_8).unwrap(), "");
    }

    #[test]
    fn windows_1252_becomes_utf8() {
        assert_eq!(
            all(b"Vitalit\xe4t;\x80 5\n", encoding_rs::WINDOWS_1252).unwrap(),
            "Vitalität;€ 5\n"
        );
    }

    #[test]
    fn invalid_utf8_names_offset_and_line() {
        let e = all(b"a,b\nc,\xff\n", encoding_rs::UTF_8).unwrap_err();
        assert_eq!(
            e.to_string(),
            "not UTF-8: invalid byte sequence at byte offset 6 (line 2)"
        );
        // A sequence cut off at the end of the file.
        let e = all(b"ab\xc3", encoding_rs::UTF_8).unwrap_err();
        assert!(
            matches!(
                e,
                FileError::Encoding {
                    offset: 2,
                    line: 1,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn large_input_crosses_buffers() {
        let mut big = Vec::new();
        for i in 0..20_000 {
            big.extend_from_slice(format!("row {i},ä\n").as_bytes());
        }
        let text = all(&big, encoding_rs::UTF_8).unwrap();
        assert_eq!(text.len(), big.len());
        big.extend_from_slice(b"x\xfe\n");
        let e = all(&big, encoding_rs::UTF_8).unwrap_err();
        assert!(matches!(e, FileError::Encoding { line: 20_001, .. }), "{e}");
    }
}
