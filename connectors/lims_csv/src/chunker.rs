//! A file, streamed: preamble skipped, header checked, records cut into
//! self-contained [`Chunk`]s. Memory stays bounded by the chunk limits
//! whatever the file's size.
//!
//! A chunk's payload is UTF-8 CSV in the dialect's delimiter and quote: the
//! header line as the partner wrote it (none without a header row), then
//! the chunk's records, byte for byte (blank lines between them kept, so
//! line numbers stay right). It can be stored and translated again later
//! with [`crate::LimsCsvConnector::translate_chunk`] and its `first_row`.
//!
//! Row numbers are the file's physical line numbers (1-based, preamble and
//! header counted, as a spreadsheet or editor shows them); a record with a
//! quoted line break is numbered by its first line. Lines end in LF or CRLF.

use std::io::Read;
use std::ops::Range;

use bytes::Bytes;

use crate::dialect::Dialect;
use crate::document::Columns;
use crate::error::FileError;
use crate::profile::Needs;
use crate::transcode::{file_error, Transcoder};

/// How large a chunk may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Records per chunk (default 1,000).
    pub max_rows: u64,
    /// Bytes of records per chunk (default 1 MiB); a chunk always takes at
    /// least one record.
    pub max_bytes: usize,
    /// Bytes of one record (default 1 MiB): past it the file is refused
    /// (an unclosed quote would otherwise swallow the rest of the file).
    pub max_record_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rows: 1_000,
            max_bytes: 1 << 20,
            max_record_bytes: 1 << 20,
        }
    }
}

/// Records of a file, ready to translate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Line number of the first record.
    pub first_row: u64,
    /// Records in it (blank lines and rows of only delimiters not counted).
    pub rows: u64,
    /// Header line + records, UTF-8.
    pub payload: Bytes,
}

/// Streams a file's chunks; see the module docs. Build it with
/// [`crate::LimsCsvConnector::open`] (or [`Chunker::open`]).
pub struct Chunker<R: Read> {
    records: RecordReader<Transcoder<R>>,
    header: Vec<u8>,
    header_line: u64,
    columns: Option<Columns>,
    limits: Limits,
    done: bool,
}

impl<R: Read> Chunker<R> {
    /// Reads up to the header and checks it has every column in `needs`.
    pub fn open(
        reader: R,
        dialect: &Dialect,
        needs: &Needs,
        limits: Limits,
    ) -> Result<Self, FileError> {
        let mut records = RecordReader::new(
            Transcoder::new(reader, dialect.encoding),
            dialect.delimiter,
            dialect.quote,
            limits.max_record_bytes,
        );
        for _ in 0..dialect.skip_rows {
            if records.next(false)?.is_none() {
                return Err(FileError::NoHeader { line: records.line });
            }
        }
        let (mut header, mut header_line, mut columns) = (Vec::new(), 0, None);
        if dialect.header {
            let (line, range) = loop {
                match records.next(true)? {
                    None => return Err(FileError::NoHeader { line: records.line }),
                    Some((_, r)) if is_blank(&records.buf[r.clone()], dialect.delimiter) => {
                        continue
                    }
                    Some(found) => break found,
                }
            };
            header.extend_from_slice(&records.buf[range]);
            if header.last() != Some(&b'\n') {
                header.push(b'\n');
            }
            header_line = line;
            let cols = parse_header(dialect, &header)
                .map_err(|reason| FileError::BadHeader { line, reason })?;
            needs.check(&cols, line)?;
            columns = Some(cols);
        }
        Ok(Chunker {
            records,
            header,
            header_line,
            columns,
            limits,
            done: false,
        })
    }

    /// The header's columns (after renaming); `None` without a header row.
    pub fn columns(&self) -> Option<&Columns> {
        self.columns.as_ref()
    }

    /// Line number of the header row (0 without one).
    pub fn header_line(&self) -> u64 {
        self.header_line
    }

    /// The next chunk, `None` at the end of the file.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, FileError> {
        if self.done {
            return Ok(None);
        }
        let mut payload = Vec::with_capacity(self.header.len() + 64 * 1024);
        payload.extend_from_slice(&self.header);
        let body = payload.len();
        let (mut first_row, mut rows) = (0, 0);
        while rows < self.limits.max_rows
            && (rows == 0 || payload.len() - body < self.limits.max_bytes)
        {
            let next = self.records.next(true);
            let (line, range) = match next {
                Ok(Some(r)) => r,
                Ok(None) => {
                    self.done = true;
                    break;
                }
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            };
            let record = &self.records.buf[range];
            if is_blank(record, self.records.delimiter) {
                if rows > 0 {
                    payload.extend_from_slice(record);
                }
                continue;
            }
            if rows == 0 {
                first_row = line;
            }
            rows += 1;
            payload.extend_from_slice(record);
        }
        Ok((rows > 0).then(|| Chunk {
            first_row,
            rows,
            payload: Bytes::from(payload),
        }))
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = Result<Chunk, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}

/// A line with nothing but spaces and delimiters (an empty spreadsheet row).
pub(crate) fn is_blank(record: &[u8], delimiter: u8) -> bool {
    record
        .iter()
        .all(|&b| b.is_ascii_whitespace() || b == delimiter)
}

/// The header row's names, renamed.
pub(crate) fn parse_header(dialect: &Dialect, header: &[u8]) -> Result<Columns, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(dialect.delimiter)
        .quote(dialect.quote)
        .from_reader(header);
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => Columns::from_header(dialect, record.iter()),
        Ok(false) => Err("it is empty".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Where a record scanner is within a record (csv's own rules: a quote
/// opens a quoted field only at the start of a field).
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    StartField,
    InField,
    InQuoted,
    QuoteInQuoted,
}

/// Cuts UTF-8 text into records (or plain lines), in a buffer that keeps
/// only the record being read.
struct RecordReader<R> {
    src: R,
    buf: Vec<u8>,
    /// Start of the bytes not returned yet.
    start: usize,
    delimiter: u8,
    quote: u8,
    limit: usize,
    eof: bool,
    /// Line number of the byte at `start`.
    line: u64,
}

impl<R: Read> RecordReader<R> {
    fn new(src: R, delimiter: u8, quote: u8, limit: usize) -> Self {
        RecordReader {
            src,
            buf: Vec::with_capacity(128 * 1024),
            start: 0,
            delimiter,
            quote,
            limit,
            eof: false,
            line: 1,
        }
    }

    /// The next record (`quoted`) or line, as its first line number and
    /// its bytes in `buf` (line break included), valid until the next call.
    fn next(&mut self, quoted: bool) -> Result<Option<(u64, Range<usize>)>, FileError> {
        let mut scan = self.start;
        let mut state = State::StartField;
        loop {
            if let Some(end) = self.find_end(scan, quoted, &mut state) {
                return Ok(Some(self.take(end)));
            }
            scan = self.buf.len();
            if self.eof {
                return Ok((self.start < self.buf.len()).then(|| self.take(self.buf.len())));
            }
            if self.buf.len() - self.start > self.limit {
                return Err(FileError::RecordTooLong {
                    row: self.line,
                    limit: self.limit,
                });
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                scan -= self.start;
                self.start = 0;
            }
            let old = self.buf.len();
            self.buf.resize(old + 64 * 1024, 0);
            let n = loop {
                match self.src.read(&mut self.buf[old..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.buf.truncate(old);
                        return Err(file_error(e));
                    }
                }
            };
            self.buf.truncate(old + n);
            self.eof = n == 0;
        }
    }

    fn take(&mut self, end: usize) -> (u64, Range<usize>) {
        let range = self.start..end;
        let line = self.line;
        self.line += self.buf[range.clone()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        self.start = end;
        (line, range)
    }

    /// One past the line break ending the record, if it is in `buf[scan..]`.
    fn find_end(&self, scan: usize, quoted: bool, state: &mut State) -> Option<usize> {
        let (d, q) = (self.delimiter, self.quote);
        for (k, &b) in self.buf[scan..].iter().enumerate() {
            *state = match (*state, b) {
                (State::InQuoted, b) if b == q => State::QuoteInQuoted,
                (State::InQuoted, _) => State::InQuoted,
                (State::QuoteInQuoted, b) if b == q => State::InQuoted,
                (_, b'\n') => return Some(scan + k + 1),
                (_, b) if b == d => State::StartField,
                (State::StartField, b) if b == q && quoted => State::InQuoted,
                _ => State::InField,
            };
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(text: &[u8], dialect: &Dialect, max_rows: u64) -> Vec<(u64, u64, String)> {
        let limits = Limits {
            max_rows,
            ..Limits::default()
        };
        Chunker::open(text, dialect, &Needs::default(), limits)
            .unwrap()
            .map(|c| {
                let c = c.unwrap();
                (
                    c.first_row,
                    c.rows,
                    String::from_utf8(c.payload.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn chunks_carry_the_header_and_line_numbers() {
        let text = b"a,b\n1,2\n\n3,\"x\ny\"\n4,5\n5,6";
        let got = chunks(text, &Dialect::default(), 2);
        assert_eq!(
            got,
            [
                (2, 2, "a,b\n1,2\n\n3,\"x\ny\"\n".to_string()),
                (6, 2, "a,b\n4,5\n5,6".to_string()),
            ]
        );
    }

    #[test]
    fn preamble_bom_and_windows_1252() {
        let d = Dialect {
            skip_rows: 2,
            delimiter: b';',
            encoding: encoding_rs::WINDOWS_1252,
            ..Dialect::default()
        };
        let text = b"Export \"LIMS\nerstellt: 01.02.2026\nProbe;Vitalit\xe4t\nS1;95,5\n";
        let got = chunks(text, &d, 10);
        assert_eq!(got, [(4, 1, "Probe;Vitalität\nS1;95,5\n".to_string())]);
        let bom = b"\xEF\xBB\xBFa,b\r\n1,2\r\n";
        assert_eq!(
            chunks(bom, &Dialect::default(), 10),
            [(2, 1, "a,b\r\n1,2\r\n".to_string())]
        );
    }

    #[test]
    fn quotes_open_only_at_a_field_start() {
        // 12" is a literal quote: the line break after it ends the record.
        let text = b"a,b\nbag 12\",x\n2,\"q\"\"\n\"\n3,4\n";
        let got = chunks(text, &Dialect::default(), 1);
        let rows: Vec<u64> = got.iter().map(|c| c.0).collect();
        assert_eq!(rows, [2, 3, 5]);
    }

    #[test]
    fn file_level_errors() {
        let d = Dialect::default();
        let open = |t: &'static [u8]| Chunker::open(t, &d, &Needs::default(), Limits::default());
        assert!(matches!(
            open(b"").err(),
            Some(FileError::NoHeader { line: 1 })
        ));
        assert!(matches!(
            open(b"\n\n").err(),
            Some(FileError::NoHeader { .. })
        ));
        let e = open(b"a,a\n").err().unwrap();
        assert_eq!(
            e.to_string(),
            "the header (line 1): columns 1 and 2 are both named \"a\""
        );
        let limits = Limits {
            max_record_bytes: 100,
            ..Limits::default()
        };
        let mut long = b"a,b\n1,\"never closed\n".to_vec();
        long.extend(std::iter::repeat_n(b'x', 200_000));
        let mut c = Chunker::open(&long[..], &d, &Needs::default(), limits).unwrap();
        let e = c.next().unwrap().unwrap_err();
        assert_eq!(
            e.to_string(),
            "row 2: a record longer than 100 bytes (an unclosed quote?)"
        );
        assert!(c.next().is_none());
    }

    #[test]
    fn a_large_file_streams_in_bounded_chunks() {
        let mut text = b"a,b\n".to_vec();
        for i in 0..25_000 {
            text.extend_from_slice(format!("{i},value {i}\n").as_bytes());
        }
        let c = Chunker::open(
            &text[..],
            &Dialect::default(),
            &Needs::default(),
            Limits::default(),
        )
        .unwrap();
        let all: Vec<Chunk> = c.map(Result::unwrap).collect();
        assert_eq!(all.len(), 25);
        assert_eq!(all[24].first_row, 24_002);
        assert!(all.iter().all(|c| c.rows == 1000));
    }
}
