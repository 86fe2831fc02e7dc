//! `cgthub bench mllp`: drives a running hub (or several: `--to` repeated or
//! comma-separated, connections spread round-robin) as C partners with W
//! pipelined messages each, and reports throughput and ACK latency.
//!
//! Every message is a ~2 KB ORU^R01 with 12 OBX and a unique MSH-10, so none
//! is deduplicated away. One order first registers the therapy the results
//! belong to, so each result is reconciled against the identity registry
//! and routed, as in production. Latency is measured from the write of a frame to the
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
    /// The hub's MLLP address; several (repeated, or comma-separated) for
    /// several hubs: connection i goes to address i mod N.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:2575")]
    to: Vec<String>,
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
    /// The hub's HTTP address: after the load, wait until its outbox is
    /// empty and report the end-to-end delivered rate too. Several
    /// (repeated, or comma-separated) for several hubs: waits until each
    /// one's outbox is empty (hubs sharing one PostgreSQL store share one
    /// outbox, which any of them shows; one that no longer answers is
    /// skipped while another does).
    #[arg(long, value_delimiter = ',')]
    drain: Vec<std::net::SocketAddr>,
}

#[derive(Debug, clap::Args)]
pub struct AmqpBaseline {
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    url: String,
    #[arg(long, default_value = "cgt.events")]
    exchange: String,
    /// Where the hub's bench events go (routes/rabbitmq: queue cgt.qc-results).
    #[arg(long, default_value = "none.qc.result_reported")]
    routing_key: String,
    #[arg(long, short = 'n', default_value_t = 100_000)]
    messages: usize,
    /// Unconfirmed publishes at once (the hub's amqp.max_in_flight).
    #[arg(long, default_value_t = 1000)]
    in_flight: usize,
    /// OBX segments of the message whose event is sent.
    #[arg(long, default_value_t = 12)]
    obx: usize,
    /// Mappings to translate the bench message with.
    #[arg(long, default_value = "mappings/hl7v2")]
    mappings: std::path::PathBuf,
}

/// Publishes the bench message's event, as the hub would, straight to the
/// broker with confirms: what the hub's end-to-end rate is compared with.
pub async fn amqp_baseline(b: AmqpBaseline) -> anyhow::Result<std::process::ExitCode> {
    use hub_core::Connector;
    let conn = cgthub_hl7v2::Hl7Connector::load(Default::default(), &b.mappings)
        .map_err(|e| anyhow::anyhow!("loading {}: {e:?}", b.mappings.display()))?;
    let sample = bytes::Bytes::from(cgthub_hl7v2::testdata::sample_oru(b.obx));
    let (_, decoded) = conn.translate(sample, "bench", None);
    let hub_core::Decoded::Events(events) = decoded else {
        anyhow::bail!("the bench message does not map to events");
    };
    let body = serde_json::to_vec(&events[0])?;
    let stats = hub_core::sink::amqp::raw_publish(
        &b.url,
        &b.exchange,
        &b.routing_key,
        &body,
        b.messages,
        b.in_flight,
    )
    .await?;
    println!(
        "cgthub bench amqp-baseline: {} events ({} B each) to {} with key {}, {} in flight",
        stats.messages,
        body.len(),
        b.exchange,
        b.routing_key,
        b.in_flight
    );
    println!(
        "  {:.0} confirmed msg/s, {:.2} s",
        stats.rate(),
        stats.elapsed.as_secs_f64()
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// Waits until the hub's outbox is empty; returns when that was.
async fn wait_drained(http: std::net::SocketAddr) -> anyhow::Result<Instant> {
    loop {
        let (status, health) = super::client::get_json(http, "/healthz").await?;
        anyhow::ensure!(status == 200, "healthz answered {status}: {health}");
        if health["outbox_pending"] == 0 {
            return Ok(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the hub at `http` has an empty outbox; returns when.
pub(crate) async fn wait_drained_at(http: std::net::SocketAddr) -> anyhow::Result<Instant> {
    wait_drained(http).await
}

/// Waits until every hub's outbox is empty; returns when the last one was.
/// With several hubs, one that does not answer (stopped, or killed as part
/// of a test) is reported and left out, as long as another one answers.
async fn wait_all_drained(hubs: &[std::net::SocketAddr]) -> anyhow::Result<Instant> {
    if let [one] = hubs {
        return wait_drained(*one).await;
    }
    let waits: Vec<_> = hubs
        .iter()
        .map(|&h| (h, tokio::spawn(wait_drained(h))))
        .collect();
    let mut last = None;
    for (hub, wait) in waits {
        match wait.await? {
            Ok(at) => last = last.max(Some(at)),
            Err(e) => eprintln!("  {hub}: left out of the drain: {e:#}"),
        }
    }
    last.context("no hub answered /healthz")
}

struct ConnStats {
    latencies_us: Vec<u32>,
    non_aa: usize,
}

/// The `p`-quantile of sorted latencies (µs), in ms.
pub(crate) fn quantile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    sorted_us[((sorted_us.len() as f64 * p) as usize).min(sorted_us.len() - 1)] as f64 / 1000.0
}

pub async fn mllp(b: MllpBench) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(!b.to.is_empty(), "--to names no hub");
    anyhow::ensure!(b.connections > 0, "--connections must be at least 1");
    let sample = cgthub_hl7v2::testdata::sample_oru(b.obx);
    let (prefix, suffix) = split_at_control_id(&sample).context("sample has no MSH-10")?;
    // Every result names the sample's order, MRN and specimen: one order
    // registers them, so each result is reconciled against the registry
    // (and routed) rather than held, as in production.
    for to in &b.to {
        register_sample(to).await?;
    }
    let run = uuid::Uuid::now_v7().simple().to_string();
    let per_conn = b.messages.div_ceil(b.connections);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..b.connections {
        // Round-robin over the hubs.
        let hub = c % b.to.len();
        let to = &b.to[hub];
        let stream = TcpStream::connect(to)
            .await
            .with_context(|| format!("connecting to {to}"))?;
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
        tasks.push((hub, tokio::spawn(connection(stream, msgs, b.in_flight))));
    }
    let mut lat = Vec::with_capacity(b.messages);
    let mut per_hub: Vec<Vec<u32>> = vec![Vec::new(); b.to.len()];
    let mut non_aa = 0;
    for (hub, t) in tasks {
        let s = t.await??;
        if b.to.len() > 1 {
            per_hub[hub].extend_from_slice(&s.latencies_us);
        }
        lat.extend(s.latencies_us);
        non_aa += s.non_aa;
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| quantile_ms(&lat, p);
    let n = lat.len();
    let hubs = if b.to.len() > 1 {
        format!(" to {} hubs", b.to.len())
    } else {
        String::new()
    };
    println!(
        "cgthub bench mllp: {n} messages ({} B each, {} OBX) over {} connections x {} in flight{hubs}",
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
    if b.to.len() > 1 {
        for (to, l) in b.to.iter().zip(&mut per_hub) {
            l.sort_unstable();
            println!(
                "    {to}: {} messages, {:.0} msg/s; ACK latency ms: p50 {:.2}, p99 {:.2}",
                l.len(),
                l.len() as f64 / secs,
                quantile_ms(l, 0.50),
                quantile_ms(l, 0.99),
            );
        }
    }
    if !b.drain.is_empty() {
        let drained = wait_all_drained(&b.drain).await?;
        let total = drained.duration_since(start).as_secs_f64();
        println!(
            "  delivered end to end: {:.0} msg/s ({:.2} s until the outbox was empty, {:.2} s after the last ACK)",
            n as f64 / total,
            total,
            total - secs
        );
    }
    Ok(if non_aa == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// Sends the sample's order to `to`; it must be accepted (AA, also as a
/// repeat from an earlier run).
pub(crate) async fn register_sample(to: &str) -> anyhow::Result<()> {
    let stream = TcpStream::connect(to)
        .await
        .with_context(|| format!("connecting to {to}"))?;
    let mut framed = BytesMut::new();
    mllp::encode(
        cgthub_hl7v2::testdata::sample_order().as_bytes(),
        &mut framed,
    );
    let stats = connection(stream, vec![framed.to_vec()], 1).await?;
    anyhow::ensure!(
        stats.non_aa == 0,
        "{to} did not accept the order that registers the sample's therapy (COI {}): see `cgthub dlq list`",
        cgthub_hl7v2::testdata::SAMPLE_COI
    );
    Ok(())
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{BenchProtocol, Cli, Command};

    fn parse(args: &[&str]) -> MllpBench {
        let cli = Cli::try_parse_from(["cgthub", "bench", "mllp"].iter().chain(args))
            .expect("arguments parse");
        match cli.command {
            Command::Bench {
                protocol: BenchProtocol::Mllp(b),
            } => b,
            other => panic!("not bench mllp: {other:?}"),
        }
    }

    #[test]
    fn one_hub_by_default() {
        let b = parse(&[]);
        assert_eq!(b.to, ["127.0.0.1:2575"]);
        assert!(b.drain.is_empty());
    }

    #[test]
    fn several_hubs_repeated_or_comma_separated() {
        let b = parse(&[
            "--to",
            "10.0.0.11:2575,10.0.0.12:2575",
            "--to",
            "10.0.0.13:2575",
            "--drain",
            "10.0.0.11:8080",
            "--drain",
            "10.0.0.12:8080,10.0.0.13:8080",
        ]);
        assert_eq!(b.to, ["10.0.0.11:2575", "10.0.0.12:2575", "10.0.0.13:2575"]);
        let drain: Vec<String> = b.drain.iter().map(ToString::to_string).collect();
        assert_eq!(
            drain,
            ["10.0.0.11:8080", "10.0.0.12:8080", "10.0.0.13:8080"]
        );
    }

    #[test]
    fn quantiles_of_sorted_latencies() {
        let us: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(quantile_ms(&us, 0.5), 51.0);
        assert_eq!(quantile_ms(&us, 0.99), 100.0);
        assert_eq!(quantile_ms(&us, 1.0), 100.0);
        assert_eq!(quantile_ms(&[], 0.99), 0.0);
    }
}
