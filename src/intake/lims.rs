//! CSV exports from LIMS: `POST /lims/{partner}` and the drop folders
//! `{data_dir}/inbox/lims/{partner}/`.
//!
//! A file is streamed, never held whole: a blocking thread reads it, cuts
//! it into chunks of up to 1,000 records and maps each row, two chunks
//! ahead at most, with three more in the store's queue; each chunk's good rows go into the store as one message
//! (one group commit for a thousand results), and each bad row as a
//! message of its own (the header and that row), failed with its row
//! number, column and reason, so it is a dead letter an operator can find
//! and replay. A chunk the identity registry refuses as a whole (one row
//! contradicts a chain of identity) is taken again row by row, so the
//! other rows still go on. Messages are known by their content's SHA-256:
//! a file (or the unchanged part of a corrected one) taken twice is
//! answered as a duplicate and processed once.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use cgthub_lims_csv::{Chunk, FileError, LimsCsvConnector, RowOutcome};
use hub_core::error::Stage;
use hub_core::inbox::{self, DropFolder, Dropped, Settled};
use hub_core::store::StoreError;
use hub_core::{Decoded, Hub, Inbound, Outcome, Problem, Receipt, TherapyEvent};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::{FileIntakeConfig, LimsSection};

type Config = FileIntakeConfig<LimsSection>;
use super::http::{self as h, KEEP_OF_OVERSIZE};

/// The section name in config and messages.
pub const SECTION: &str = "lims";
/// Content types a CSV export may come as.
const CSV: &[&str] = &["text/csv", "application/csv", "text/plain"];
/// Bad rows listed in a report (all of them are dead letters).
const REPORT_ROWS: usize = 1000;

/// What became of a file.
#[derive(Debug, Default)]
pub struct FileReport {
    pub rows: u64,
    pub accepted_rows: u64,
    pub rejected_rows: u64,
    pub events: u64,
    pub held: u64,
    pub messages: u64,
    pub duplicate_messages: u64,
    /// The first rejected rows: row, code, reason, dead letter message.
    pub rejected: Vec<Value>,
    /// Why the file as a whole was refused (nothing after it was read).
    pub file_problem: Option<Problem>,
}

impl FileReport {
    /// Where the file goes: refused when nothing in it was taken.
    pub fn settled(&self) -> Settled {
        let refused_whole = self.file_problem.is_some() && self.accepted_rows == 0;
        let nothing_taken =
            self.rows > 0 && self.accepted_rows == 0 && self.duplicate_messages == 0;
        if refused_whole || nothing_taken {
            Settled::Rejected
        } else {
            Settled::Processed
        }
    }

    pub fn to_json(&self, file: &str, partner: &str) -> Value {
        let mut v = json!({
            "file": file,
            "partner": partner,
            "rows": self.rows,
            "accepted_rows": self.accepted_rows,
            "rejected_rows": self.rejected_rows,
            "events": self.events,
            "held": self.held,
            "messages": self.messages,
            "duplicate_messages": self.duplicate_messages,
            "duplicate": self.messages > 0 && self.duplicate_messages == self.messages,
            "rejected": self.rejected,
        });
        if self.rejected_rows as usize > self.rejected.len() {
            v["rejected_listed"] = json!(self.rejected.len());
        }
        if let Some(p) = &self.file_problem {
            v["code"] = json!(p.code);
            v["reason"] = json!(p.reason);
        }
        v
    }

    fn reject_row(&mut self, row: u64, p: &Problem, message: Option<i64>) {
        self.rejected_rows += 1;
        if self.rejected.len() < REPORT_ROWS {
            self.rejected
                .push(json!({"row": row, "code": p.code, "reason": p.reason, "message": message}));
        }
    }
}

/// One piece the reading thread hands over.
enum Piece {
    Chunk(Chunk, Vec<RowOutcome>),
    /// The file as a whole cannot be read on: why, and bytes to keep.
    Failed(Problem, Bytes),
}

/// Takes one file of `partner`'s: streamed, mapped, stored. `Err` when the
/// store is unavailable (what was taken stays taken; the file is taken
/// again later and those parts are answered as duplicates).
pub async fn take_file(
    hub: &Hub,
    conn: &Arc<LimsCsvConnector>,
    path: &Path,
    partner: &str,
    origin: &str,
) -> Result<FileReport, StoreError> {
    let (tx, mut rx) = mpsc::channel::<Piece>(2);
    let reader = {
        let (conn, path) = (conn.clone(), path.to_path_buf());
        let (partner, origin) = (partner.to_string(), origin.to_string());
        tokio::task::spawn_blocking(move || read_pieces(&conn, &path, &partner, &origin, &tx))
    };
    let mut report = FileReport::default();
    let mut result = Ok(());
    // Chunks in the store's queue at once: while one commits the next is
    // already waiting, so the writer's group commits take several at a
    // time. Their answers are handled in file order.
    let mut inflight: VecDeque<Started> = VecDeque::new();
    while let Some(piece) = rx.recv().await {
        let r = match piece {
            Piece::Chunk(chunk, rows) => {
                inflight.push_back(start_chunk(hub, chunk, rows, partner, origin, &mut report));
                if inflight.len() < IN_FLIGHT {
                    continue;
                }
                let front = inflight.pop_front().expect("one in flight");
                finish_chunk(hub, conn, front, partner, origin, &mut report).await
            }
            Piece::Failed(problem, kept) => {
                let inbound = Inbound::new(
                    cgthub_lims_csv::KIND,
                    partner,
                    cgthub_lims_csv::CONTENT_TYPE,
                    None,
                    kept,
                    origin,
                );
                tracing::warn!(partner, file = origin, code = problem.code, reason = %problem.log_reason(), "LIMS file refused");
                report.file_problem = Some(problem.clone());
                hub.submit(inbound, Decoded::Rejected(problem))
                    .await
                    .map(|_| ())
            }
        };
        if let Err(e) = r {
            result = Err(e);
            break;
        }
    }
    drop(rx);
    while let Some(front) = inflight.pop_front() {
        let r = finish_chunk(hub, conn, front, partner, origin, &mut report).await;
        if result.is_ok() {
            result = r;
        }
    }
    let _ = reader.await;
    result.map(|()| report)
}

/// The reading thread: chunks and their rows' events, two ahead at most.
fn read_pieces(
    conn: &LimsCsvConnector,
    path: &Path,
    partner: &str,
    origin: &str,
    tx: &mpsc::Sender<Piece>,
) {
    let head = || head_of(path);
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.blocking_send(Piece::Failed(FileError::Io(e).problem(), Bytes::new()));
            return;
        }
    };
    let mut chunker = match conn.open(partner, std::io::BufReader::with_capacity(256 * 1024, file))
    {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.blocking_send(Piece::Failed(e.problem(), head()));
            return;
        }
    };
    loop {
        let piece = match chunker.next_chunk() {
            Ok(None) => return,
            Ok(Some(chunk)) => {
                match conn.translate_chunk(&chunk.payload, chunk.first_row, partner, origin) {
                    Ok(rows) => Piece::Chunk(chunk, rows),
                    Err(e) => Piece::Failed(e.problem(), keep(&chunk.payload)),
                }
            }
            Err(e) => Piece::Failed(e.problem(), head()),
        };
        let last = matches!(piece, Piece::Failed(..));
        if tx.blocking_send(piece).is_err() || last {
            return;
        }
    }
}

/// The first bytes of a file, kept with the reason it was refused.
fn head_of(path: &Path) -> Bytes {
    use std::io::Read;
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(KEEP_OF_OVERSIZE as u64).read_to_end(&mut buf);
    }
    Bytes::from(buf)
}

fn keep(b: &Bytes) -> Bytes {
    b.slice(..b.len().min(KEEP_OF_OVERSIZE))
}

/// A message of `payload` with `events`, known by its content hash.
fn message(
    payload: Bytes,
    partner: &str,
    origin: String,
    mut events: Vec<TherapyEvent>,
) -> (Inbound, Decoded) {
    let mut inbound = Inbound::new(
        cgthub_lims_csv::KIND,
        partner,
        cgthub_lims_csv::CONTENT_TYPE,
        None,
        payload,
        origin,
    );
    let id = format!("sha256:{}", inbound.sha256);
    for ev in &mut events {
        ev.source.message_id = Some(id.clone());
    }
    inbound.message_id = Some(id);
    (inbound, Decoded::Events(events))
}

/// Chunks submitted before the first one's answer is awaited.
const IN_FLIGHT: usize = 3;

/// The store's answer to a chunk.
type Submitted = Result<(Receipt, Option<Problem>), StoreError>;

/// A chunk whose good rows were handed to the store.
struct Started {
    chunk: Chunk,
    good: Vec<u64>,
    bad: Vec<(u64, Problem)>,
    events: u64,
    submitted: Option<tokio::task::JoinHandle<Submitted>>,
}

/// Hands a chunk's good rows to the store as one message (each bad row
/// becomes its own message when the chunk is finished).
fn start_chunk(
    hub: &Hub,
    chunk: Chunk,
    rows: Vec<RowOutcome>,
    partner: &str,
    origin: &str,
    report: &mut FileReport,
) -> Started {
    report.rows += chunk.rows;
    let mut events = Vec::new();
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for r in rows {
        match r.result {
            Ok(evs) => {
                good.push(r.row);
                events.extend(evs);
            }
            Err(p) => bad.push((r.row, p)),
        }
    }
    let n_events = events.len() as u64;
    let submitted = (!good.is_empty()).then(|| {
        let label = format!("{origin} rows {}-{}", good[0], good[good.len() - 1]);
        let (inbound, decoded) = message(chunk.payload.clone(), partner, label, events);
        let hub = hub.clone();
        tokio::spawn(async move { hub.submit_explained(inbound, decoded).await })
    });
    Started {
        chunk,
        good,
        bad,
        events: n_events,
        submitted,
    }
}

/// Counts a started chunk's answer; a chunk refused as a whole is taken
/// again row by row; its bad rows are kept as their own messages.
async fn finish_chunk(
    hub: &Hub,
    conn: &LimsCsvConnector,
    st: Started,
    partner: &str,
    origin: &str,
    report: &mut FileReport,
) -> Result<(), StoreError> {
    let Started {
        chunk,
        good,
        bad,
        events,
        submitted,
    } = st;
    if let Some(task) = submitted {
        let (receipt, problem) = task.await.map_err(|e| StoreError::Invalid {
            op: "lims_chunk",
            reason: format!("the chunk's submission panicked: {e}"),
        })??;
        report.messages += 1;
        match &receipt.outcome {
            Outcome::Accepted { .. } => {
                report.duplicate_messages += u64::from(receipt.duplicate);
                report.accepted_rows += good.len() as u64;
                report.events += events;
                report.held += receipt.held as u64;
            }
            _ => {
                // One row spoilt the chunk (a chain of identity it
                // contradicts, a malformed COI): take its rows one by one
                // so the others go on, and close the chunk's dead letter.
                let why = problem.or(receipt.problem.clone());
                tracing::info!(
                    partner,
                    file = origin,
                    code = why.as_ref().map(|p| p.code),
                    "LIMS chunk refused as a whole; taken row by row"
                );
                for row in &good {
                    take_row(hub, conn, &chunk, *row, partner, origin, report).await?;
                }
                for dl in hub
                    .store()
                    .open_dead_letters_of_message(receipt.message_row)
                    .await?
                {
                    hub.store()
                        .purge_dead_letter(dl, "system", "the chunk was taken again row by row; each row that failed has a dead letter of its own")
                        .await?;
                }
            }
        }
    }
    for (row, p) in bad {
        fail_row(hub, conn, &chunk, row, p, partner, origin, report).await?;
    }
    Ok(())
}

/// One row of a chunk as its own message (after the chunk failed as a whole).
async fn take_row(
    hub: &Hub,
    conn: &LimsCsvConnector,
    chunk: &Chunk,
    row: u64,
    partner: &str,
    origin: &str,
    report: &mut FileReport,
) -> Result<(), StoreError> {
    let Some(payload) = row_payload(conn, partner, chunk, row) else {
        return Ok(());
    };
    let label = format!("{origin} row {row}");
    let outcome = conn
        .translate_chunk(&payload, row, partner, &label)
        .ok()
        .and_then(|mut r| r.pop());
    match outcome.map(|o| o.result) {
        Some(Ok(events)) => {
            let n = events.len() as u64;
            let (inbound, decoded) = message(payload, partner, label, events);
            let (receipt, problem) = hub.submit_explained(inbound, decoded).await?;
            report.messages += 1;
            match &receipt.outcome {
                Outcome::Accepted { .. } => {
                    report.duplicate_messages += u64::from(receipt.duplicate);
                    report.accepted_rows += 1;
                    report.events += n;
                    report.held += receipt.held as u64;
                }
                _ => {
                    let p = problem.or(receipt.problem.clone()).unwrap_or_else(|| {
                        Problem::new(Stage::Identity, "failed", "the row failed")
                    });
                    report.reject_row(row, &prefixed(row, &p), Some(receipt.message_row));
                }
            }
            Ok(())
        }
        Some(Err(p)) => fail_row(hub, conn, chunk, row, p, partner, origin, report).await,
        None => Ok(()),
    }
}

/// A bad row: kept as a failed message of its own (the header and the
/// row), so it is a dead letter with its reason.
#[allow(clippy::too_many_arguments)]
async fn fail_row(
    hub: &Hub,
    conn: &LimsCsvConnector,
    chunk: &Chunk,
    row: u64,
    p: Problem,
    partner: &str,
    origin: &str,
    report: &mut FileReport,
) -> Result<(), StoreError> {
    let payload = row_payload(conn, partner, chunk, row).unwrap_or_else(|| keep(&chunk.payload));
    let mut inbound = Inbound::new(
        cgthub_lims_csv::KIND,
        partner,
        cgthub_lims_csv::CONTENT_TYPE,
        None,
        payload,
        format!("{origin} row {row}"),
    );
    inbound.message_id = Some(format!("sha256:{}", inbound.sha256));
    let receipt = hub.submit(inbound, Decoded::Failed(p.clone())).await?;
    report.messages += 1;
    report.reject_row(row, &p, Some(receipt.message_row));
    Ok(())
}

/// The header and row `row` of a chunk, byte for byte: a self-contained
/// payload for that row alone (a chunk's records follow each other line by
/// line, blank lines kept, so the row's line in the chunk is known).
fn row_payload(conn: &LimsCsvConnector, partner: &str, chunk: &Chunk, row: u64) -> Option<Bytes> {
    let dialect = &conn.mapping(partner).ok()?.dialect;
    let payload = &chunk.payload;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(dialect.delimiter)
        .quote(dialect.quote)
        .from_reader(&payload[..]);
    let mut rec = csv::ByteRecord::new();
    if dialect.header && !rdr.read_byte_record(&mut rec).ok()? {
        return None;
    }
    let mut first: Option<(u64, usize)> = None;
    let mut found: Option<usize> = None;
    while rdr.read_byte_record(&mut rec).ok()? {
        let pos = rec.position()?;
        let start = usize::try_from(pos.byte()).ok()?;
        if let Some(s) = found {
            return Some(with_header(payload, first?.1, s, start));
        }
        let (line0, _) = *first.get_or_insert((pos.line(), start));
        if pos.line() - line0 + chunk.first_row == row {
            found = Some(start);
        }
    }
    found.map(|s| with_header(payload, first.map_or(0, |f| f.1), s, payload.len()))
}

fn with_header(payload: &Bytes, header_end: usize, start: usize, end: usize) -> Bytes {
    let mut out = Vec::with_capacity(header_end + end - start);
    out.extend_from_slice(&payload[..header_end]);
    out.extend_from_slice(&payload[start..end]);
    Bytes::from(out)
}

/// A hub problem (identity, COI) does not name the row; the report does.
fn prefixed(row: u64, p: &Problem) -> Problem {
    if p.reason.starts_with("row ") {
        p.clone()
    } else {
        Problem::new(p.stage, p.code, format!("row {row}: {}", p.reason))
    }
}

#[derive(Clone)]
struct St {
    hub: Hub,
    conn: Arc<LimsCsvConnector>,
    cfg: Arc<Config>,
    folder: Arc<DropFolder>,
}

/// `POST /lims/{partner}`, to merge at the root of the HTTP server.
pub fn router(hub: Hub, conn: Arc<LimsCsvConnector>, cfg: Config, data_dir: &Path) -> Router {
    let folder = cfg.drop_folder(data_dir);
    Router::new()
        .route("/lims/{partner}", post(post_file))
        .with_state(St {
            hub,
            conn,
            cfg: Arc::new(cfg),
            folder: Arc::new(folder),
        })
}

/// The body is spooled into the partner's folder under a name the folder
/// watcher never takes, taken as a file, then settled with its report like
/// a dropped one; the answer is the report.
async fn post_file(
    State(st): State<St>,
    UrlPath(partner): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(r) = h::admit(&st.cfg, &partner, &headers) {
        return r;
    }
    let origin = h::origin(&headers, "POST /lims");
    if !h::content_type_is(&headers, CSV) {
        let p = Problem::new(
            Stage::Decode,
            "unsupported_media_type",
            "LIMS exports are taken as text/csv",
        );
        // Kept with the reason: the first 4 KiB of what was sent.
        let head = h::read_limited(body, KEEP_OF_OVERSIZE as u64)
            .await
            .unwrap_or_else(|head| head);
        return refuse(&st, head, &partner, &origin, p, 415).await;
    }
    let dir = st.folder.partner_dir(&partner);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(error = %e, dir = %dir.display(), "LIMS: partner folder cannot be made");
        return crate::http::problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "the hub cannot write the file; nothing was taken, send again",
        );
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let name = format!("http-{stamp}-{}.csv", uuid::Uuid::now_v7().simple());
    let spool = dir.join(format!(".{name}.part"));
    match spool_body(body, &spool, st.cfg.max_body_bytes).await {
        Ok(Ok(())) => {}
        Ok(Err(kept)) => {
            let _ = tokio::fs::remove_file(&spool).await;
            let p = Problem::new(
                Stage::Decode,
                "too_large",
                format!(
                    "larger than {} bytes (lims.max_body_bytes); its first {} bytes are kept",
                    st.cfg.max_body_bytes,
                    kept.len()
                ),
            );
            return refuse(&st, kept, &partner, &origin, p, 413).await;
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&spool).await;
            tracing::warn!(error = %e, "LIMS: request body could not be spooled");
            return crate::http::problem(
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {e}"),
            );
        }
    }
    let report = match take_file(&st.hub, &st.conn, &spool, &partner, &origin).await {
        Ok(r) => r,
        Err(e) => {
            let _ = tokio::fs::remove_file(&spool).await;
            return h::unavailable(&e);
        }
    };
    let named = dir.join(&name);
    let settled = report.settled();
    let body = report.to_json(&named.display().to_string(), &partner);
    let dropped = Dropped {
        partner: partner.clone(),
        path: spool,
        len: 0,
    };
    let renamed = tokio::task::spawn_blocking({
        let (folder, body) = (st.folder.clone(), body.clone());
        move || {
            std::fs::rename(&dropped.path, &named)?;
            let d = Dropped {
                path: named,
                ..dropped
            };
            folder.settle(&d, settled, &body)
        }
    })
    .await;
    match renamed {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "LIMS: a taken file could not be moved to its folder")
        }
        Err(e) => tracing::error!(error = %e, "LIMS: settling a taken file panicked"),
    }
    let status = match settled {
        Settled::Processed => StatusCode::OK,
        Settled::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
    };
    (status, Json(body)).into_response()
}

/// Writes the body to `path`; `Ok(Err(head))` when it is larger than `max`.
async fn spool_body(body: Body, path: &PathBuf, max: u64) -> std::io::Result<Result<(), Bytes>> {
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;
    let mut out = tokio::io::BufWriter::new(tokio::fs::File::create(path).await?);
    let mut body = body;
    let mut written = 0u64;
    let mut head = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(std::io::Error::other)?;
        if let Ok(data) = frame.into_data() {
            if head.len() < KEEP_OF_OVERSIZE {
                let take = (KEEP_OF_OVERSIZE - head.len()).min(data.len());
                head.extend_from_slice(&data[..take]);
            }
            written += data.len() as u64;
            if written > max {
                return Ok(Err(head.freeze()));
            }
            out.write_all(&data).await?;
        }
    }
    out.flush().await?;
    out.into_inner().sync_all().await?;
    Ok(Ok(()))
}

async fn refuse(
    st: &St,
    bytes: Bytes,
    partner: &str,
    origin: &str,
    p: Problem,
    status: u16,
) -> Response {
    h::refuse(
        &st.hub,
        (cgthub_lims_csv::KIND, cgthub_lims_csv::CONTENT_TYPE),
        bytes,
        (partner, origin),
        p,
        status,
    )
    .await
}

/// Watches the partners' drop folders until `shutdown`.
pub async fn watch(
    hub: Hub,
    conn: Arc<LimsCsvConnector>,
    cfg: Config,
    data_dir: &Path,
    shutdown: CancellationToken,
) {
    let Some((folder, poll)) = cfg.ready_folders(data_dir) else {
        return;
    };
    let max = cfg.max_body_bytes;
    inbox::watch(folder, poll, shutdown, move |file: Dropped| {
        let (hub, conn) = (hub.clone(), conn.clone());
        async move {
            let origin = file.path.display().to_string();
            if file.len > max {
                let p = Problem::new(Stage::Decode, "too_large", format!("larger than {max} bytes (lims.max_body_bytes); its first {KEEP_OF_OVERSIZE} bytes are kept"));
                let inbound = Inbound::new(cgthub_lims_csv::KIND, file.partner.clone(), cgthub_lims_csv::CONTENT_TYPE, None, head_of(&file.path), origin.clone());
                hub.submit(inbound, Decoded::Rejected(p.clone())).await.ok()?;
                let report = FileReport { file_problem: Some(p), ..FileReport::default() };
                return Some((Settled::Rejected, report.to_json(&origin, &file.partner)));
            }
            match take_file(&hub, &conn, &file.path, &file.partner, &origin).await {
                Ok(report) => Some((report.settled(), report.to_json(&origin, &file.partner))),
                Err(e) => {
                    tracing::error!(file = %origin, error = %e, "LIMS drop: store unavailable; the file stays");
                    None
                }
            }
        }
    })
    .await;
}
