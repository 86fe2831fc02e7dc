//! `cgthub send mllp`: a small MLLP client that prints each ACK.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bytes::BytesMut;
use cgthub_hl7v2::mllp::{self, Frame, MllpDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub async fn mllp(files: &[PathBuf], to: &str, timeout: u64) -> anyhow::Result<ExitCode> {
    let mut stream = TcpStream::connect(to)
        .await
        .with_context(|| format!("connecting to {to}"))?;
    let mut decoder = MllpDecoder::new(64 * 1024 * 1024);
    let mut buf = BytesMut::with_capacity(8192);
    let mut out = BytesMut::new();
    let mut failed = false;
    for f in files {
        let payload = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        out.clear();
        mllp::encode(&payload, &mut out);
        stream.write_all(&out).await.context("sending")?;
        let ack = tokio::time::timeout(
            Duration::from_secs(timeout),
            read_frame(&mut stream, &mut decoder, &mut buf),
        )
        .await
        .map_err(|_| anyhow::anyhow!("{}: no ACK within {timeout} s", f.display()))??;
        let Some(ack): Option<bytes::Bytes> = ack else {
            println!("{}: connection closed before the ACK", f.display());
            failed = true;
            break;
        };
        let text = String::from_utf8_lossy(&ack);
        let code = text
            .split(['\r', '\n'])
            .find(|s| s.starts_with("MSA"))
            .and_then(|s| s.get(4..6))
            .unwrap_or("??");
        println!("{}: {code}", f.display());
        for seg in text.split(['\r', '\n']).filter(|s| !s.is_empty()) {
            println!("  {seg}");
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads until one whole frame; `None` at end of stream.
pub async fn read_frame(
    stream: &mut TcpStream,
    decoder: &mut MllpDecoder,
    buf: &mut BytesMut,
) -> anyhow::Result<Option<bytes::Bytes>> {
    loop {
        while let Some(frame) = decoder.decode(buf) {
            if let Frame::Message(m) = frame {
                return Ok(Some(m));
            }
        }
        if stream.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}
