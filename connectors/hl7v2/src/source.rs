//! The MLLP listener: protocol I/O only.
//!
//! Each connection reads frames, hands each one to the hub (in its own task,
//! so one connection's pipelined messages share group commits), and writes
//! the ACKs back in the order the messages came, each only after the hub has
//! made its message durable. Whatever arrives — a good message, garbage, an
//! oversized or unterminated frame — is stored with its outcome; nothing is
//! answered before that.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hub_core::error::Stage;
use hub_core::metrics::{AckLabels, ConnectorLabels};
use hub_core::{ConnectorError, Decoded, Hub, Inbound, Outcome, Problem};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::ack::{self, AckCode, AckError};
use crate::connector::{codes, msh_only, Hl7Connector, CONTENT_TYPE, KIND, UNKNOWN_PARTNER};
use crate::mllp::{self, Frame, MllpDecoder};
use crate::{decode_text, wants_ack, Message};
use hub_core::Connector;

/// Serves MLLP until `shutdown`, then lets open connections finish the
/// messages they have in flight.
pub async fn serve(
    conn: Arc<Hl7Connector>,
    hub: Hub,
    shutdown: CancellationToken,
) -> Result<(), ConnectorError> {
    let cfg = conn.config.clone();
    if !cfg.enabled {
        shutdown.cancelled().await;
        return Ok(());
    }
    let listener = TcpListener::bind(cfg.addr)
        .await
        .map_err(|e| ConnectorError {
            connector: KIND,
            message: format!("cannot listen on mllp.addr {}: {e}", cfg.addr),
        })?;
    tracing::info!(addr = %cfg.addr, "MLLP listening");
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let mut conns = JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let (conn, hub, stop) = (Arc::clone(&conn), hub.clone(), shutdown.clone());
        conns.spawn(async move {
            let labels = ConnectorLabels {
                connector: KIND.into(),
            };
            hub.metrics().connections.get_or_create(&labels).inc();
            connection(conn, hub.clone(), stream, peer, stop).await;
            hub.metrics().connections.get_or_create(&labels).dec();
            drop(permit);
        });
        // Reap finished connections so the set does not grow.
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// One partner connection.
async fn connection(
    conn: Arc<Hl7Connector>,
    hub: Hub,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let origin = format!("mllp://{peer}");
    tracing::debug!(peer = %peer, "connection opened");
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel::<JoinHandle<Reply>>(conn.config.max_in_flight.max(1));
    let writer = tokio::spawn(write_acks(rx, wr, peer));
    let mut decoder = MllpDecoder::new(conn.config.max_message_bytes);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let idle = Duration::from_secs(conn.config.idle_timeout_secs.max(1));
    let submit = |frame: Received| {
        let (conn, hub, origin) = (Arc::clone(&conn), hub.clone(), origin.clone());
        tokio::spawn(async move { handle(&conn, &hub, frame, &origin, peer).await })
    };
    'read: loop {
        while let Some(frame) = decoder.decode(&mut buf) {
            if tx.send(submit(Received::Frame(frame))).await.is_err() {
                break 'read; // the writer is gone: the peer closed
            }
        }
        let read = tokio::select! {
            r = tokio::time::timeout(idle, rd.read_buf(&mut buf)) => r,
            _ = shutdown.cancelled() => break,
        };
        match read {
            Ok(Ok(0)) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::info!(peer = %peer, error = %e, "read failed; closing");
                break;
            }
            Err(_) => {
                tracing::info!(peer = %peer, idle_secs = idle.as_secs(), "connection idle; closing");
                break;
            }
        }
    }
    // What is left is an unterminated frame: keep it with the reason.
    if let Some(frame) = decoder.finish(&mut buf) {
        let _ = tx.send(submit(Received::Unterminated(frame))).await;
    }
    drop(tx);
    let _ = writer.await;
    tracing::debug!(peer = %peer, "connection closed");
}

/// What a connection produced: a frame, or the leftovers of one when the
/// connection ended.
enum Received {
    Frame(Frame),
    Unterminated(Frame),
}

/// Writes ACKs in message order; flushes when no further ACK is ready.
async fn write_acks(
    mut rx: mpsc::Receiver<JoinHandle<Reply>>,
    wr: tokio::net::tcp::OwnedWriteHalf,
    peer: SocketAddr,
) {
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    let mut framed = BytesMut::with_capacity(1024);
    while let Some(task) = rx.recv().await {
        let ack = match task.await {
            Ok(Reply::Ack(a)) => a,
            Ok(Reply::Silent) => continue,
            // Without a store receipt there is no ACK to give; closing makes
            // the partner resend, and dedup keeps that safe.
            Ok(Reply::Close) => break,
            Err(e) => {
                tracing::error!(peer = %peer, error = %e, "message task failed; closing without its ACK");
                break;
            }
        };
        framed.clear();
        mllp::encode(&ack, &mut framed);
        if let Err(e) = wr.write_all(&framed).await {
            tracing::info!(peer = %peer, error = %e, "partner gone before its ACK; the message is stored");
            return;
        }
        if rx.is_empty() {
            if let Err(e) = wr.flush().await {
                tracing::info!(peer = %peer, error = %e, "partner gone before its ACK; the message is stored");
                return;
            }
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}

/// What to send back for one message.
enum Reply {
    /// This ACK (already encoded in the message's character set).
    Ack(Vec<u8>),
    /// Nothing: the sender asked for no ACK of this kind (MSH-15).
    Silent,
    /// Nothing, and close: the message could not be stored.
    Close,
}

/// Stores one frame's bytes with their outcome and builds the reply.
async fn handle(
    conn: &Hl7Connector,
    hub: &Hub,
    received: Received,
    origin: &str,
    peer: SocketAddr,
) -> Reply {
    let started = Instant::now();
    let (inbound, decoded) = match received {
        Received::Frame(Frame::Message(bytes)) => conn.translate(bytes, origin, None),
        Received::Frame(Frame::Garbage(bytes)) => refused(
            conn,
            bytes,
            origin,
            codes::OUTSIDE_FRAME,
            "bytes outside an MLLP frame (no 0x0B start block before them)".into(),
        ),
        Received::Unterminated(Frame::Message(bytes) | Frame::Garbage(bytes) | Frame::TooLarge { prefix: bytes, .. }) => refused(
            conn,
            bytes,
            origin,
            codes::NOT_TERMINATED,
            "MLLP frame not terminated (no 0x1C 0x0D before the connection ended)".into(),
        ),
        Received::Frame(Frame::TooLarge { prefix, len }) => refused(
            conn,
            prefix,
            origin,
            codes::TOO_LARGE,
            format!(
                "message of at least {len} bytes exceeds mllp.max_message_bytes = {} (first {} bytes kept)",
                conn.config.max_message_bytes,
                crate::mllp::TOO_LARGE_PREFIX
            ),
        ),
    };
    let payload = inbound.payload.clone();
    let (partner, message_id) = (inbound.partner.clone(), inbound.message_id.clone());
    // The problem comes from the hub: it may fail a mapped message itself.
    let (receipt, problem) = match hub.submit_explained(inbound, decoded).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(peer = %peer, partner = %partner, message_id = ?message_id, error = %e, "cannot store the message; no ACK, closing");
            return Reply::Close;
        }
    };
    let (code, text, err) = match &receipt.outcome {
        Outcome::Accepted { events } => {
            tracing::debug!(peer = %peer, partner = %partner, message_id = ?message_id, events, duplicate = receipt.duplicate, row = receipt.message_row, "accepted");
            let text = receipt.duplicate.then(|| {
                format!(
                    "duplicate of message {}; processed once",
                    receipt.message_row
                )
            });
            (AckCode::AA, text, None)
        }
        Outcome::Failed(reason) | Outcome::Rejected(reason) => {
            let rejected = matches!(receipt.outcome, Outcome::Rejected(_));
            let p =
                problem.unwrap_or_else(|| Problem::new(Stage::Receive, "unknown", reason.clone()));
            // The reason may quote message values; logs get it redacted.
            tracing::warn!(peer = %peer, partner = %partner, message_id = ?message_id, row = receipt.message_row, code = p.code, reason = %p.log_reason(), "message {}", if rejected { "rejected (AR)" } else { "failed (AE)" });
            let err = AckError {
                code: hl7_error_code(p.code),
                text: reason.clone(),
                location: None,
            };
            (
                if rejected { AckCode::AR } else { AckCode::AE },
                Some(reason.clone()),
                Some(err),
            )
        }
    };
    hub.metrics()
        .acked
        .get_or_create(&AckLabels {
            connector: KIND.into(),
            partner,
            code: code.as_str().into(),
        })
        .inc();
    let text_buf = decode_text(&payload).ok();
    let original = text_buf.as_deref().and_then(msh_only);
    if let Some(m) = &original {
        if !wants_ack(m, code) {
            return Reply::Silent;
        }
    }
    let control_id = format!("CGT{}", receipt.message_row);
    let ack_text = ack::ack(
        original.as_ref(),
        code,
        text.as_deref(),
        err.as_ref(),
        &control_id,
        chrono::Utc::now(),
    );
    hub.metrics()
        .ack_latency
        .get_or_create(&ConnectorLabels {
            connector: KIND.into(),
        })
        .observe(started.elapsed().as_secs_f64());
    Reply::Ack(crate::encode_text(
        &ack_text,
        original.as_ref().and_then(Message::charset),
    ))
}

/// Bytes that are not a frame: stored and refused.
fn refused(
    conn: &Hl7Connector,
    bytes: Bytes,
    origin: &str,
    code: &'static str,
    reason: String,
) -> (Inbound, Decoded) {
    // Name the partner and message when the bytes still start with an MSH.
    let text = decode_text(&bytes).ok();
    let (partner, message_id) = match text.as_deref().and_then(msh_only) {
        Some(m) => (
            conn.partner_of(&m),
            m.control_id().filter(|s| !s.is_empty()).map(str::to_string),
        ),
        None => (UNKNOWN_PARTNER.to_string(), None),
    };
    let inbound = Inbound::new(KIND, partner, CONTENT_TYPE, message_id, bytes, origin);
    (
        inbound,
        Decoded::Rejected(Problem::new(Stage::Receive, code, reason)),
    )
}

/// HL7 table 0357 code for a problem code.
fn hl7_error_code(code: &str) -> &'static str {
    match code {
        "required_field_missing" => ack::ERR_REQUIRED_FIELD_MISSING,
        "value_not_in_map" => ack::ERR_TABLE_VALUE_NOT_FOUND,
        "bad_value"
        | hub_core::coi_check::INVALID_COI
        | hub_core::coi_check::INVALID_DIN
        | codes::BAD_ENCODING_CHARACTERS
        | codes::BAD_CHARSET => ack::ERR_DATA_TYPE,
        codes::UNSUPPORTED_MESSAGE_TYPE => ack::ERR_UNSUPPORTED_MESSAGE_TYPE,
        // The message is stored and its events quarantined: the record
        // (the patient's therapy) is locked against what it says.
        hub_core::store::IDENTITY_CONFLICT => ack::ERR_RECORD_LOCKED,
        codes::BAD_SEGMENT | codes::NOT_HL7 => ack::ERR_SEGMENT_SEQUENCE,
        _ => ack::ERR_INTERNAL,
    }
}
