//! `cgthub bench mllp`: drives a running hub as C partners with W pipelined
//! messages each, and reports throughput and ACK latency.
//!
//! Every message is a ~2 KB ORU^R01 with 12 OBX and a unique MSH-10, so none
//! is deduplicated away. Latency is measured from the write of a frame to the
//! read of its ACK.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::BytesMut;
use cgthub_hl7v2::mllp::{self, Frame, MllpDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};

#[derive(Debug, clap::Args)]
pub struct MllpBench {
    #[arg(long, default_value = "127.0.0.1:2575")]
    to: String,
    /// Concurrent connections.
    #[arg(long, short = 'c', default_value_t = 8)]
    connections: usize,
    /// Messages in flight per connection.
    #[arg(long, short = 'w', default_value_t = 32)]
    in_flight: usize,
    /// Messages in all.
    #[arg(long, short = 'n', default_value_t = 100_000)]
    messages: usize,
    /// OBX segments per message.
    #[arg(long, default_value_t = 12)]
    obx: usize,
}

struct ConnStats {
    latencies_us: Vec<u32>,
    non_aa: usize,
}

pub async fn mllp(b: MllpBench) -> anyhow::Result<std::process::ExitCode> {
    let sample = cgthub_hl7v2::testdata::sample_oru(b.obx);
    let (prefix, suffix) = split_at_control_id(&sample).context("sample has no MSH-10")?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let per_conn = b.messages.div_ceil(b.connections);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..b.connections {
        let stream = TcpStream::connect(&b.to)
            .await
            .with_context(|| format!("connecting to {}", b.to))?;
        stream.set_nodelay(true)?;
        let msgs: Vec<Vec<u8>> = (0..per_conn)
            .map(|i| {
                let mut framed = BytesMut::new();
                mllp::encode(
                    format!("{prefix}B{}-{c}-{i}{suffix}", &run[..12]).as_bytes(),
                    &mut framed,
                );
                framed.to_vec()
            })
            .collect();
        tasks.push(tokio::spawn(connection(stream, msgs, b.in_flight)));
    }
    let mut lat = Vec::with_capacity(b.messages);
    let mut non_aa = 0;
    for t in tasks {
        let s = t.await??;
        lat.extend(s.latencies_us);
        non_aa += s.non_aa;
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0
    };
    let n = lat.len();
    println!(
        "cgthub bench mllp: {n} messages ({} B each, {} OBX) over {} connections x {} in flight",
        sample.len(),
        b.obx,
        b.connections,
        b.in_flight
    );
    println!(
        "  {:.0} msg/s, {:.1} MB/s, {:.2} s; ACK latency ms: p50 {:.2}, p99 {:.2}, max {:.2}; non-AA: {non_aa}",
        n as f64 / secs,
        (n * sample.len()) as f64 / secs / 1e6,
        secs,
        pct(0.50),
        pct(0.99),
        pct(1.0),
    );
    Ok(if non_aa == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

fn split_at_control_id(msg: &str) -> Option<(String, String)> {
    let msh = msg.split('\r').next()?;
    let idx: Vec<usize> = msh.match_indices('|').map(|(i, _)| i).collect();
    let (a, b) = (*idx.get(8)?, *idx.get(9)?);
    Some((msg[..=a].to_string(), msg[b..].to_string()))
}

async fn connection(
    stream: TcpStream,
    msgs: Vec<Vec<u8>>,
    in_flight: usize,
) -> anyhow::Result<ConnStats> {
    let (mut rd, mut wr) = stream.into_split();
    let permits = Arc::new(Semaphore::new(in_flight));
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<Instant>();
    let total = msgs.len();
    let writer = {
        let permits = Arc::clone(&permits);
        tokio::spawn(async move {
            for m in msgs {
                permits.acquire().await?.forget();
                let _ = sent_tx.send(Instant::now());
                wr.write_all(&m).await?;
            }
            anyhow::Ok(wr)
        })
    };
    let mut decoder = MllpDecoder::new(1 << 20);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut stats = ConnStats {
        latencies_us: Vec::with_capacity(total),
        non_aa: 0,
    };
    while stats.latencies_us.len() < total {
        let frame = loop {
            if let Some(f) = decoder.decode(&mut buf) {
                break f;
            }
            let n = tokio::time::timeout(Duration::from_secs(30), rd.read_buf(&mut buf))
                .await
                .context("no ACK for 30 s")??;
            anyhow::ensure!(n > 0, "the hub closed the connection");
        };
        let Frame::Message(ack) = frame else { continue };
        let sent = sent_rx.recv().await.context("ACK without a message")?;
        stats
            .latencies_us
            .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
        if !memchr_aa(&ack) {
            stats.non_aa += 1;
        }
        permits.add_permits(1);
    }
    drop(writer.await??);
    Ok(stats)
}

fn memchr_aa(ack: &[u8]) -> bool {
    ack.windows(7).any(|w| w == b"MSA|AA|")
}
