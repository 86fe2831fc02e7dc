//! B2MML from MES: `POST /b2mml/{partner}` and the drop folders
//! `{data_dir}/inbox/b2mml/{partner}/`. One document, one message.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use cgthub_b2mml::B2mmlConnector;
use hub_core::error::Stage;
use hub_core::inbox::{self, Dropped, Settled};
use hub_core::{Connector, Decoded, Hub, Inbound, Outcome, Problem};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::config::{B2mmlSection, FileIntakeConfig};

type Config = FileIntakeConfig<B2mmlSection>;
use super::http::{self as h, KEEP_OF_OVERSIZE};

/// The section name in config and messages.
pub const SECTION: &str = "b2mml";

/// Content types a B2MML document may come as.
const XML: &[&str] = &["application/xml", "text/xml"];

#[derive(Clone)]
struct St {
    hub: Hub,
    conn: Arc<B2mmlConnector>,
    cfg: Arc<Config>,
}

/// `POST /b2mml/{partner}`, to nest at the root of the HTTP server.
pub fn router(hub: Hub, conn: Arc<B2mmlConnector>, cfg: Config) -> Router {
    Router::new()
        .route("/b2mml/{partner}", post(post_document))
        .with_state(St {
            hub,
            conn,
            cfg: Arc::new(cfg),
        })
}

async fn post_document(
    State(st): State<St>,
    UrlPath(partner): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(r) = h::admit(&st.cfg, &partner, &headers) {
        return r;
    }
    let origin = h::origin(&headers, "POST /b2mml");
    let bytes = match h::read_limited(body, st.cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(kept) => {
            let p = too_large(st.cfg.max_body_bytes, kept.len());
            return refuse(&st, kept, &partner, &origin, p, 413).await;
        }
    };
    if !h::content_type_is(&headers, XML) {
        let p = Problem::new(
            Stage::Decode,
            "unsupported_media_type",
            "B2MML is taken as application/xml or text/xml",
        );
        return refuse(&st, bytes, &partner, &origin, p, 415).await;
    }
    let (inbound, decoded) = translate(&st.conn, bytes, &origin, &partner);
    match st.hub.submit_explained(inbound, decoded).await {
        Ok((receipt, problem)) => h::answer(&receipt, problem.as_ref(), cgthub_b2mml::http_status),
        Err(e) => h::unavailable(&e),
    }
}

/// Maps a document; one without an id of its own is known by its content
/// hash, so the same file taken twice is answered as a duplicate.
fn translate(
    conn: &B2mmlConnector,
    bytes: Bytes,
    origin: &str,
    partner: &str,
) -> (Inbound, Decoded) {
    let (mut inbound, decoded) = conn.translate(bytes, origin, Some(partner));
    if inbound.message_id.is_none() {
        inbound.message_id = Some(format!("sha256:{}", inbound.sha256));
    }
    (inbound, decoded)
}

fn too_large(max: u64, kept: usize) -> Problem {
    Problem::new(
        Stage::Decode,
        "too_large",
        format!("larger than {max} bytes (b2mml.max_body_bytes); its first {kept} bytes are kept"),
    )
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
        (cgthub_b2mml::KIND, "application/xml"),
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
    conn: Arc<B2mmlConnector>,
    cfg: Config,
    data_dir: &Path,
    shutdown: CancellationToken,
) {
    let Some((folder, poll)) = cfg.ready_folders(data_dir) else {
        return;
    };
    let max = cfg.max_body_bytes;
    inbox::watch(folder, poll, shutdown, move |file: Dropped| {
        let hub = hub.clone();
        let conn = conn.clone();
        async move { take_file(&hub, &conn, file, max).await }
    })
    .await;
}

/// One dropped document: stored and mapped, or refused; `None` when the
/// store could not take it (the file stays for the next look).
async fn take_file(
    hub: &Hub,
    conn: &B2mmlConnector,
    file: Dropped,
    max: u64,
) -> Option<(Settled, Value)> {
    let origin = file.path.display().to_string();
    let path = file.path.clone();
    let read = tokio::task::spawn_blocking(move || read_capped(&path, max))
        .await
        .ok()?;
    let (inbound, decoded) = match read {
        Ok(Ok(bytes)) => translate(conn, bytes, &origin, &file.partner),
        Ok(Err(kept)) => {
            let p = too_large(max, kept.len());
            let inbound = Inbound::new(
                cgthub_b2mml::KIND,
                file.partner.clone(),
                "application/xml",
                None,
                kept,
                origin.clone(),
            );
            (inbound, Decoded::Rejected(p))
        }
        Err(e) => {
            tracing::warn!(file = %origin, error = %e, "B2MML drop: file cannot be read; trying again later");
            return None;
        }
    };
    match hub.submit_explained(inbound, decoded).await {
        Ok((receipt, problem)) => {
            let mut report = h::receipt_json(&receipt, problem.as_ref());
            report.insert("file".into(), Value::String(origin));
            report.insert("partner".into(), Value::String(file.partner.clone()));
            let to = match receipt.outcome {
                Outcome::Accepted { .. } => Settled::Processed,
                _ => Settled::Rejected,
            };
            Some((to, Value::Object(report)))
        }
        Err(e) => {
            tracing::error!(file = %origin, error = %e, "B2MML drop: store unavailable; the file stays");
            None
        }
    }
}

/// The file, or (`Ok(Err)`) its first 4 KiB when it is larger than `max`.
fn read_capped(path: &Path, max: u64) -> std::io::Result<Result<Bytes, Bytes>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len > max {
        let mut head = vec![0u8; KEEP_OF_OVERSIZE.min(len as usize)];
        f.read_exact(&mut head)?;
        return Ok(Err(Bytes::from(head)));
    }
    let mut buf = Vec::with_capacity(len as usize);
    f.read_to_end(&mut buf)?;
    Ok(Ok(Bytes::from(buf)))
}
