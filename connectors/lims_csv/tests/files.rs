//! Files as an operator sees them: streamed in chunks, rows numbered as in
//! the file, bad rows and bad files reported precisely.

use std::path::{Path, PathBuf};

use cgthub_lims_csv::{FileError, Limits, LimsCsvConnector};

const HEADER: &str = "sample_id,coi,specimen_id,test_code,test_name,result,unit,specification,pass_fail,analyst,instrument,result_time,status\n";

fn shipped() -> LimsCsvConnector {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/lims_csv");
    LimsCsvConnector::load(&dir).expect("the shipped mappings load")
}

fn plain_row(i: usize) -> String {
    format!(
        "QC-{i},CHW123426{i:06},SPM-{i},VIAB,Viability,9{},%,>= 70 %,PASS,jdoe,FACS-2,2026-03-03T09:15:00Z,final\n",
        i % 10
    )
}

/// A mapping folder with one mapping file.
fn folder(name: &str, toml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(format!("{name}.toml")), toml).unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

#[test]
fn a_file_streams_in_chunks_and_a_bad_row_is_found_by_its_line() {
    let lims = shipped().with_limits(Limits {
        max_rows: 1000,
        ..Limits::default()
    });
    let mut file = String::from(HEADER);
    for i in 0..2500 {
        if i == 1700 {
            file.push_str(
                "QC-bad,W1234,SPM,VIAB,Viability,90,%,x,PASS,jdoe,FACS,31/02/2026 09:15,final\n",
            );
        } else {
            file.push_str(&plain_row(i));
        }
    }
    let chunks: Vec<_> = lims
        .open("lims", file.as_bytes())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let firsts: Vec<(u64, u64)> = chunks.iter().map(|c| (c.first_row, c.rows)).collect();
    assert_eq!(firsts, [(2, 1000), (1002, 1000), (2002, 500)]);
    assert!(chunks
        .iter()
        .all(|c| c.payload.starts_with(HEADER.as_bytes())));
    let mut good = 0;
    let mut bad = Vec::new();
    for c in &chunks {
        for row in lims
            .translate_chunk(&c.payload, c.first_row, "lims", "drop/export.csv")
            .unwrap()
        {
            match row.result {
                Ok(events) => good += events.len(),
                Err(p) => bad.push((row.row, p.code, p.reason)),
            }
        }
    }
    assert_eq!(good, 2499);
    // Row 1,700 of the data is line 1,702 of the file (header on line 1).
    assert_eq!(bad.len(), 1);
    assert_eq!((bad[0].0, bad[0].1), (1702, "bad_value"));
    assert!(
        bad[0].2.starts_with(
            "row 1702, column result_time: mapping lims: occurred_at: \"31/02/2026 09:15\""
        ),
        "{}",
        bad[0].2
    );
}

#[test]
fn a_stored_chunk_translates_again_the_same_way() {
    let lims = shipped();
    let file = format!("{HEADER}{}\n,,,\n{}", plain_row(1), plain_row(2));
    let chunk = lims
        .open("lims", file.as_bytes())
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let once = lims
        .translate_chunk(&chunk.payload, chunk.first_row, "lims", "a")
        .unwrap();
    let again = lims
        .translate_chunk(&chunk.payload, chunk.first_row, "lims", "b")
        .unwrap();
    let rows = |o: &[cgthub_lims_csv::RowOutcome]| o.iter().map(|r| r.row).collect::<Vec<_>>();
    assert_eq!(
        rows(&once),
        [2, 5],
        "blank lines 3 and 4 are counted, not rows"
    );
    assert_eq!(rows(&once), rows(&again));
    let e = &once[1].result.as_ref().unwrap()[0];
    assert_eq!(e.coi.as_deref(), Some("CHW123426000002"));
    assert_eq!(e.source.connector, "lims_csv");
    assert_eq!(e.source.payload_sha256.len(), 64);
}

#[test]
fn invalid_utf8_ends_the_file_at_its_byte_offset() {
    let lims = shipped().with_limits(Limits {
        max_rows: 2,
        ..Limits::default()
    });
    let mut file = HEADER.as_bytes().to_vec();
    for i in 0..3 {
        file.extend_from_slice(plain_row(i).as_bytes());
    }
    let offset = file.len() + 3;
    file.extend_from_slice(b"QC-\xff\n");
    let mut chunks = lims.open("lims", &file[..]).unwrap();
    let first = chunks.next().unwrap().unwrap();
    assert_eq!((first.first_row, first.rows), (2, 2));
    let e = chunks.next().unwrap().unwrap_err();
    assert_eq!(e.code(), "bad_encoding");
    assert_eq!(
        e.to_string(),
        format!("not UTF-8: invalid byte sequence at byte offset {offset} (line 5)")
    );
    assert!(chunks.next().is_none());
}

#[test]
fn unknown_partner_and_missing_columns_are_file_errors() {
    let lims = shipped();
    let e = lims.open("nobody", &b"a\n"[..]).err().unwrap();
    assert!(matches!(e, FileError::NoMapping { .. }));
    assert_eq!(e.code(), "no_mapping");
    let header = HEADER.replace("pass_fail,", "").replace(",status", "");
    let e = lims.open("lims", header.as_bytes()).err().unwrap();
    assert_eq!(e.code(), "bad_header");
    assert!(
        e.to_string().starts_with(
            "the header (line 1) lacks column(s) \"pass_fail\", \"status\"; it has \"sample_id\""
        ),
        "{e}"
    );
}

/// The SENAITE import sheet, read with a dialect written for it: two
/// preamble lines, the "Samples" header on line 3, ragged rows.
#[test]
fn senaite_sheet_ragged_rows_are_reported_by_line() {
    let (_keep, dir) = folder(
        "senaite",
        r#"
format = "lims_csv"
message_types = ["csv"]
partners = ["senaite"]
[dialect]
skip_rows = 2
columns = { "Client Sample ID" = "specimen_id", "Samples" = "sample_id", "Sampling date" = "sampled" }
date_formats = ["%d/%m/%Y"]
dates = ["sampled"]
[[events]]
kind = "qc.result_reported"
occurred_at = "sampled"
[events.data]
report_id = "sample_id"
specimen_id = { path = "specimen_id", required = true }
results = { value = [] }
"#,
    );
    let lims = LimsCsvConnector::load(&dir).unwrap();
    let bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../mappings/lims_csv/fixtures/senaite_ARImport.csv"),
    )
    .unwrap();
    let chunks: Vec<_> = lims
        .open("senaite", &bytes[..])
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(chunks.len(), 1);
    assert_eq!(
        chunks[0].first_row, 4,
        "after two preamble lines and the header"
    );
    let rows = lims
        .translate_chunk(&chunks[0].payload, chunks[0].first_row, "senaite", "x")
        .unwrap();
    let report: Vec<(u64, Result<usize, String>)> = rows
        .into_iter()
        .map(|r| (r.row, r.result.map(|e| e.len()).map_err(|p| p.reason)))
        .collect();
    // Lines 4–6 (prices and totals) have 30 fields; line 5 holds the
    // quoted "R 1,980", one cell, or it would have 31.
    for (i, line) in [4u64, 5, 6].into_iter().enumerate() {
        let want = format!("row {line}: 30 fields, the header has 31");
        assert_eq!(report[i], (line, Err(want)));
    }
    assert_eq!(report[3], (7, Ok(1)), "Sample 1: 3/5/2008 read day first");
    assert_eq!(report[12], (16, Ok(1)));
    assert_eq!(
        report[13],
        (17, Err("row 17: 13 fields, the header has 31".into()))
    );
    assert_eq!(
        report[14],
        (18, Err("row 18: 13 fields, the header has 31".into()))
    );
    assert_eq!(report.len(), 15);
}

#[test]
fn headerless_files_are_named_by_position() {
    let (_keep, dir) = folder(
        "nohead",
        r#"
format = "lims_csv"
message_types = ["csv"]
partners = ["nohead"]
[dialect]
header = false
delimiter = "\t"
columns = { "1" = "sample_id", "2" = "code", "3" = "value", "4" = "at" }
[[events]]
kind = "qc.result_reported"
occurred_at = "at"
[events.data]
report_id = "sample_id"
[events.data.results]
foreach = "$row"
[events.data.results.fields]
test = { fields = { code = "code" } }
value = "value"
"#,
    );
    let lims = LimsCsvConnector::load(&dir).unwrap();
    let text = "S1\tVIAB\t91\t2026-03-03T09:15:00Z\nS2\tCD3\n";
    let chunk = lims
        .open("nohead", text.as_bytes())
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(chunk.first_row, 1);
    let rows = lims
        .translate_chunk(&chunk.payload, 1, "nohead", "x")
        .unwrap();
    let e = &rows[0].result.as_ref().unwrap()[0];
    assert_eq!(e.occurred_at.to_rfc3339(), "2026-03-03T09:15:00+00:00");
    assert_eq!(
        rows[1].result.as_ref().unwrap_err().reason,
        "row 2: 2 fields, the header has 4"
    );
}

#[test]
fn mapping_mistakes_are_load_errors_naming_file_line_and_key() {
    let (_keep, dir) = folder(
        "broken",
        "format = \"lims_csv\"\nmessage_types = [\"csv\"]\n\n[dialect]\ndelimiter = \";;\"\n\n[[events]]\nkind = \"qc.result_reported\"\noccurred_at = \"t\"\n",
    );
    let errors = LimsCsvConnector::load(&dir).err().unwrap();
    let text = errors[0].to_string();
    assert!(text.contains("broken.toml:4:"), "{text}");
    assert!(
        text.contains("[dialect]: delimiter: must be one ASCII character"),
        "{text}"
    );

    let (_keep, dir) = folder(
        "wrongtype",
        "format = \"lims_csv\"\nmessage_types = [\"ORU^R01\"]\n[[events]]\nkind = \"qc.result_reported\"\noccurred_at = \"$when\"\n",
    );
    let errors = LimsCsvConnector::load(&dir).err().unwrap();
    assert!(errors[0].to_string().contains("reserved"), "{}", errors[0]);

    let (_keep, dir) = folder(
        "wrongtype",
        "format = \"lims_csv\"\nmessage_types = [\"ORU^R01\"]\n[[events]]\nkind = \"qc.result_reported\"\noccurred_at = \"t\"\n",
    );
    let errors = LimsCsvConnector::load(&dir).err().unwrap();
    assert!(
        errors[0]
            .to_string()
            .contains("message_types must be [\"csv\"]"),
        "{}",
        errors[0]
    );
}

#[test]
fn a_wide_cell_that_fails_names_the_partners_column() {
    let lims = shipped();
    let text = "Export\nx\nProbe;COI;Proben-ID;Charge;Prüfer;Gerät;Messzeit;Vitalität (%);CD3+ (%);Zellzahl (10^6/ml);Endotoxin (EU/ml)\n\
EL-1;W1;S1;B1;M;G;03.03.2026 09:15;;;;\n";
    let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(text);
    let chunk = lims
        .open("eurolab", &bytes[..])
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert!(std::str::from_utf8(&chunk.payload)
        .unwrap()
        .contains("Vitalität"));
    let rows = lims
        .translate_chunk(&chunk.payload, chunk.first_row, "eurolab", "x")
        .unwrap();
    assert_eq!(rows[0].row, 4);
    assert_eq!(
        rows[0].result.as_ref().unwrap().len(),
        0,
        "no test cell, no event"
    );
}

/// Files with quoted line breaks, doubled quotes, blank lines and CRLF, cut
/// at every chunk size: each record keeps the line number it starts on,
/// and no record is lost or split.
#[test]
fn row_numbers_survive_any_chunking() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _ in 0..20 {
        let eol = if next(2) == 0 { "\n" } else { "\r\n" };
        let mut file = HEADER.replace('\n', eol);
        let (mut line, mut want) = (2u64, Vec::new());
        for i in 0..(5 + next(60)) {
            for _ in 0..next(3).saturating_sub(1) {
                file.push_str(eol); // blank lines
                line += 1;
            }
            let name = match next(4) {
                0 => "\"CD3+\nT cells\"".to_string(),
                1 => "\"say \"\"hi\"\"\"".to_string(),
                2 => "\"a,b\r\nc\nd\"".to_string(),
                _ => "Viability".to_string(),
            };
            want.push(line);
            line += name.matches('\n').count() as u64 + 1;
            file.push_str(&format!(
                "QC-{i},CHW123426{i:06},SPM-{i},VIAB,{name},91,%,x,PASS,jdoe,F,2026-03-03T09:15:00Z,final{eol}"
            ));
        }
        for max_rows in [1, 2, 3, 7, 1000] {
            let lims = shipped().with_limits(Limits {
                max_rows,
                ..Limits::default()
            });
            let mut got = Vec::new();
            for chunk in lims.open("lims", file.as_bytes()).unwrap() {
                let chunk = chunk.unwrap();
                let outcomes = lims
                    .translate_chunk(&chunk.payload, chunk.first_row, "lims", "x")
                    .unwrap();
                assert_eq!(outcomes.len() as u64, chunk.rows);
                assert_eq!(outcomes[0].row, chunk.first_row);
                for o in outcomes {
                    let ev = o.result.unwrap_or_else(|p| panic!("{}", p.reason));
                    assert_eq!(ev.len(), 1);
                    got.push(o.row);
                }
            }
            assert_eq!(got, want, "max_rows {max_rows}:\n{file}");
        }
    }
}

/// A reader that makes a plain export of `rows` rows as it is read: the
/// file never exists in memory as a whole.
struct Generated {
    rows: usize,
    next: usize,
    pending: Vec<u8>,
}

impl std::io::Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.len() < buf.len() && self.next <= self.rows {
            if self.next == 0 {
                self.pending.extend_from_slice(HEADER.as_bytes());
            } else {
                self.pending
                    .extend_from_slice(plain_row(self.next).as_bytes());
            }
            self.next += 1;
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

#[test]
fn a_big_stream_is_read_in_bounded_chunks() {
    let rows = 300_000; // about 36 MB
    let lims = shipped().with_limits(Limits {
        max_rows: 100_000,
        max_bytes: 256 * 1024,
        ..Limits::default()
    });
    let source = Generated {
        rows,
        next: 0,
        pending: Vec::new(),
    };
    let (mut total, mut chunks, mut largest, mut last_row) = (0, 0, 0, 0);
    for chunk in lims.open("lims", source).unwrap() {
        let chunk = chunk.unwrap();
        total += chunk.rows;
        chunks += 1;
        largest = largest.max(chunk.payload.len());
        last_row = chunk.first_row + chunk.rows - 1;
    }
    assert_eq!(total, rows as u64);
    assert_eq!(last_row, rows as u64 + 1);
    assert!(chunks > 100, "the byte cap cut first: {chunks}");
    assert!(largest < 256 * 1024 + 1024, "{largest}");
}
