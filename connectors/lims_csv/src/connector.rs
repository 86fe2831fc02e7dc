//! [`LimsCsvConnector`]: a partner's mapping and dialect, files opened as
//! chunk streams, chunks translated row by row (pure), and the hub's
//! [`Connector`] on top.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use hub_core::error::Stage;
use hub_core::event::Source;
use hub_core::mapping::{LoadError, Mapping, MappingSet};
use hub_core::{Connector, ConnectorError, Decoded, Hub, Inbound, Problem};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::chunker::{Chunker, Limits};
use crate::document::MESSAGE_TYPE;
use crate::error::{codes, FileError};
use crate::path::LimsCsv;
use crate::profile::Profile;
use crate::translate::{self, RowOutcome};

/// Connector kind, as in `mappings/lims_csv/` and `source.connector`.
pub const KIND: &str = "lims_csv";
/// MIME type stored with raw files and chunks.
pub const CONTENT_TYPE: &str = "text/csv";
/// The partner a payload is from when nobody says (`mappings/lims_csv/lims.toml`).
pub const DEFAULT_PARTNER: &str = "lims";
/// How many failed rows a file's problem describes in full; the rest are
/// listed by row number.
const DESCRIBED_ROWS: usize = 50;

/// LIMS CSV exports: per-partner mappings with their dialects.
pub struct LimsCsvConnector {
    mappings: MappingSet<LimsCsv>,
    /// By mapping name.
    profiles: HashMap<String, Profile>,
    limits: Limits,
}

impl LimsCsvConnector {
    /// Loads the mappings under `dir` (`mappings/lims_csv`); every mistake
    /// in every file is reported.
    pub fn load(dir: &Path) -> Result<Self, Vec<LoadError>> {
        let mappings = MappingSet::<LimsCsv>::load_dir(dir)?;
        let mut profiles = HashMap::new();
        let mut errors = Vec::new();
        for m in mappings.iter() {
            if m.message_types.iter().any(|t| t != MESSAGE_TYPE) {
                errors.push(LoadError::file(
                    &m.file,
                    format!("message_types must be [\"{MESSAGE_TYPE}\"]: a CSV file has no message type, partners pick the mapping"),
                ));
                continue;
            }
            match Profile::read(&m.file, &m.dialect) {
                Ok(p) => {
                    profiles.insert(m.name.clone(), p);
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(LimsCsvConnector {
            mappings,
            profiles,
            limits: Limits::default(),
        })
    }

    /// The same connector with other chunk limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The mapping (with its dialect, `mapping.dialect`) for a partner.
    pub fn mapping(&self, partner: &str) -> Result<&Mapping<LimsCsv>, FileError> {
        self.select(partner).map(|(m, _)| m)
    }

    fn select(&self, partner: &str) -> Result<(&Mapping<LimsCsv>, &Profile), FileError> {
        self.mappings
            .select(partner, MESSAGE_TYPE)
            .and_then(|m| self.profiles.get(&m.name).map(|p| (m, p)))
            .ok_or_else(|| FileError::NoMapping {
                partner: partner.to_string(),
            })
    }

    /// Opens a partner's file: decodes, skips the preamble, reads and
    /// checks the header. Iterate the result for its chunks.
    pub fn open<R: Read>(&self, partner: &str, reader: R) -> Result<Chunker<R>, FileError> {
        let (mapping, profile) = self.select(partner)?;
        Chunker::open(reader, &mapping.dialect, &profile.needs, self.limits)
    }

    /// Translates one chunk (a [`crate::Chunk`]'s payload and first row),
    /// each row on its own. Events name the chunk's SHA-256 as their
    /// payload. Fails as a whole only when there is no mapping for the
    /// partner or the chunk's header lacks the mapping's columns.
    pub fn translate_chunk(
        &self,
        payload: &[u8],
        first_row: u64,
        partner: &str,
        origin: &str,
    ) -> Result<Vec<RowOutcome>, FileError> {
        let source = self.source(partner, payload);
        self.translate_with(payload, first_row, partner, &source, Utc::now())
            .inspect_err(|e| {
                tracing::debug!(partner, origin, code = e.code(), "lims_csv chunk refused");
            })
    }

    fn source(&self, partner: &str, payload: &[u8]) -> Source {
        Source {
            connector: KIND.to_string(),
            partner: partner.to_string(),
            message_id: None,
            payload_sha256: hex::encode(Sha256::digest(payload)),
            entry: None,
        }
    }

    fn translate_with(
        &self,
        payload: &[u8],
        first_row: u64,
        partner: &str,
        source: &Source,
        recorded_at: DateTime<Utc>,
    ) -> Result<Vec<RowOutcome>, FileError> {
        let (mapping, profile) = self.select(partner)?;
        translate::translate(mapping, profile, payload, first_row, source, recorded_at)
    }

    /// A whole file in memory, as [`Connector::translate`] decodes it.
    fn translate_file(&self, payload: &[u8], partner: &str, inbound: &Inbound) -> Decoded {
        let source = Source {
            connector: KIND.to_string(),
            partner: partner.to_string(),
            message_id: inbound.message_id.clone(),
            payload_sha256: inbound.sha256.clone(),
            entry: None,
        };
        let chunks = match self.open(partner, payload) {
            Ok(c) => c,
            Err(e) => return Decoded::Rejected(e.problem()),
        };
        let (mut events, mut failed, mut rows) = (Vec::new(), Vec::new(), 0usize);
        for chunk in chunks {
            let outcomes = chunk.and_then(|c| {
                self.translate_with(
                    &c.payload,
                    c.first_row,
                    partner,
                    &source,
                    inbound.received_at,
                )
            });
            let outcomes = match outcomes {
                Ok(o) => o,
                Err(e) => return Decoded::Rejected(e.problem()),
            };
            for o in outcomes {
                rows += 1;
                match o.result {
                    Ok(ev) => events.extend(ev),
                    Err(p) => failed.push((o.row, p)),
                }
            }
        }
        if failed.is_empty() {
            Decoded::Events(events)
        } else {
            Decoded::Failed(rows_problem(failed, rows))
        }
    }
}

/// One problem for a file with failed rows: each row's reason (the first
/// [`DESCRIBED_ROWS`]), then the other rows' numbers.
fn rows_problem(mut failed: Vec<(u64, Problem)>, rows: usize) -> Problem {
    if failed.len() == 1 {
        return failed.remove(0).1;
    }
    let first = &failed[0].1;
    let same_code = failed.iter().all(|(_, p)| p.code == first.code);
    let code = if same_code {
        first.code
    } else {
        codes::BAD_ROWS
    };
    let stage = if failed.iter().all(|(_, p)| p.stage == first.stage) {
        first.stage
    } else {
        Stage::Decode
    };
    let mut reason = format!("{} of {rows} rows failed: ", failed.len());
    let described: Vec<&str> = failed
        .iter()
        .take(DESCRIBED_ROWS)
        .map(|(_, p)| p.reason.as_str())
        .collect();
    reason.push_str(&described.join("; "));
    if failed.len() > DESCRIBED_ROWS {
        let rest: Vec<String> = failed[DESCRIBED_ROWS..]
            .iter()
            .map(|(r, _)| r.to_string())
            .collect();
        reason.push_str(&format!("; and rows {}", rest.join(", ")));
    }
    Problem::new(stage, code, reason)
}

impl Connector for LimsCsvConnector {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// The payload is a whole file in the partner's dialect (encoding,
    /// preamble, header), `partner` defaulting to [`DEFAULT_PARTNER`]: a
    /// file-level error rejects it, any bad row fails it (naming every bad
    /// row), else all rows' events. For a plain UTF-8 dialect without a
    /// preamble a chunk payload is such a file, its rows numbered from 2.
    fn translate(&self, payload: Bytes, origin: &str, partner: Option<&str>) -> (Inbound, Decoded) {
        let partner = partner.unwrap_or(DEFAULT_PARTNER);
        let inbound = Inbound::new(KIND, partner, CONTENT_TYPE, None, payload.clone(), origin);
        let decoded = self.translate_file(&payload, partner, &inbound);
        (inbound, decoded)
    }

    /// Nothing to serve: files come from the drop folder and
    /// `POST /lims/{partner}`, which the binary runs.
    fn run(
        self: Arc<Self>,
        _hub: Hub,
        shutdown: CancellationToken,
    ) -> hub_core::sink::BoxFuture<'static, Result<(), ConnectorError>> {
        Box::pin(async move {
            shutdown.cancelled().await;
            Ok(())
        })
    }
}
