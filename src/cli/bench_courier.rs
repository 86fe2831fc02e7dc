//! `cgthub bench courier`: courier webhooks and logger streams under load.
//!
//! Setup, as a partner would: the sample therapy is registered over MLLP
//! (as `bench mllp` does), then the EHR books S shipments for it over FHIR
//! (a shipping Task per tracking number, carrier DHL), so every scan and
//! reading the bench sends is reconciled against the chain of identity and
//! routed, not held.
//!
//! Webhooks: P pushes per shipment, each a signed DHL Unified Tracking
//! response with K new scans, from C connections: updates/s until answered
//! (every update stored, mapped and reconciled) and, with `--drain`, until
//! delivered.
//!
//! Loggers (`--rounds R`): each shipment's logger reports one reading per
//! minute of event time; the bench sends R such minutes back to back (far
//! faster than the real one reading per minute, so the monitor is under
//! more load than a real stream gives it). In each minute one logger reads
//! 12 °C, outside the default profile's 2–8 °C by more than its tolerance:
//! the latency is from that reading's answer to its `temperature.excursion`
//! being stored (polled at `/api/events`).

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use super::bench_fhir::{post_loop, Auth};

/// DHL's own sample response (a copy of the corpus file), the shape of
/// every push.
const DHL_SAMPLE: &str =
    include_str!("../../mappings/courier/fixtures/dhl_unified_track_shipments_response_spec_sample_purplship.json");

#[derive(Debug, clap::Args)]
pub struct CourierBench {
    /// The hub's HTTP address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    to: std::net::SocketAddr,
    /// The hub's MLLP address (the sample therapy is registered there first).
    #[arg(long, default_value = "127.0.0.1:2575")]
    mllp: String,
    /// A bearer token of an EHR's (`[fhir] tokens`), to book the shipments.
    #[arg(long, env = "CGTHUB_FHIR_TOKEN")]
    fhir_token: String,
    /// The courier partner (`[courier.partners]`, a DHL-shaped mapping).
    #[arg(long, default_value = "dhl")]
    partner: String,
    /// The partner's HMAC secret.
    #[arg(long, env = "CGTHUB_SECRET_DHL")]
    secret: String,
    /// Concurrent connections (one request in flight each).
    #[arg(long, short = 'c', default_value_t = 32)]
    connections: usize,
    /// Shipments (tracking numbers), each with its logger.
    #[arg(long, short = 's', default_value_t = 1000)]
    shipments: usize,
    /// Webhook pushes per shipment.
    #[arg(long, default_value_t = 5)]
    pushes: usize,
    /// New scans in each push.
    #[arg(long, default_value_t = 4)]
    scans: usize,
    /// Wait until the outbox is empty and report the delivered rate too.
    #[arg(long)]
    drain: bool,
    /// Logger minutes to play after the webhooks (0: none).
    #[arg(long, default_value_t = 0)]
    rounds: usize,
}

pub async fn courier(b: CourierBench) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(b.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(b.shipments > 0, "--shipments must be at least 1");
    super::bench::register_sample(&b.mllp).await?;
    let run = rand::random::<u32>() % 1_000_000;
    let tracking: Vec<String> = (0..b.shipments)
        .map(|i| format!("9{run:06}{i:06}"))
        .collect();

    // The EHR books every shipment: the tracking numbers get their COI.
    let tasks: Vec<Bytes> = tracking.iter().map(|t| Bytes::from(task(t))).collect();
    let (_, failed, why) = run_posts(
        &b,
        "/fhir/Task".into(),
        "application/fhir+json",
        Auth::Bearer(b.fhir_token.clone()),
        tasks,
    )
    .await?;
    anyhow::ensure!(
        failed == 0,
        "booking the shipments over FHIR: {failed} refused ({})",
        why.unwrap_or_default()
    );
    super::bench::wait_drained_at(b.to).await?;

    let sample: Value = serde_json::from_str(DHL_SAMPLE).context("the DHL sample")?;
    let t0 = Utc::now() - chrono::Duration::hours(24);
    // Push p of shipment i: scans p*K .. p*K+K, a minute apart.
    let pushes: Vec<Bytes> = (0..b.pushes)
        .flat_map(|p| tracking.iter().map(move |t| (p, t)))
        .map(|(p, t)| {
            let scans = (0..b.scans)
                .map(|k| t0 + chrono::Duration::minutes((p * b.scans + k) as i64))
                .collect::<Vec<_>>();
            Bytes::from(dhl_push(&sample, t, &scans).to_string())
        })
        .collect();
    let updates = pushes.len() * b.scans;
    let size = pushes[0].len();
    let path = format!("/webhooks/courier/{}", b.partner);
    let auth = Auth::HubSignature(b.secret.clone().into_bytes());
    let start = Instant::now();
    let (mut lat, failed, why) =
        run_posts(&b, path.clone(), "application/json", auth.clone(), pushes).await?;
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let q = |p: f64| super::bench::quantile_ms(&lat, p);
    println!(
        "cgthub bench courier: {} signed DHL pushes ({size} B, {} new scans each) for {} shipments over {} connections",
        lat.len(),
        b.scans,
        b.shipments,
        b.connections
    );
    println!(
        "  {:.0} updates/s ({:.0} pushes/s), {secs:.2} s; latency ms: p50 {:.2}, p99 {:.2}, max {:.2}; not 200: {failed}",
        updates as f64 / secs,
        lat.len() as f64 / secs,
        q(0.5),
        q(0.99),
        q(1.0)
    );
    if let Some(why) = &why {
        println!("  first failure: {why}");
    }
    if b.drain {
        let drained = super::bench::wait_drained_at(b.to).await?;
        let total = drained.duration_since(start).as_secs_f64();
        println!(
            "  delivered end to end: {:.0} updates/s ({total:.2} s until the outbox was empty)",
            updates as f64 / total
        );
    }
    let mut ok = failed == 0;
    if b.rounds > 0 {
        ok &= loggers(&b, &tracking, &path, auth).await?;
    }
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// Plays `rounds` logger minutes; prints the excursion latency.
async fn loggers(
    b: &CourierBench,
    tracking: &[String],
    path: &str,
    auth: Auth,
) -> anyhow::Result<bool> {
    let start_at = Utc::now() - chrono::Duration::minutes(b.rounds as i64 + 1);
    let mut latencies = Vec::with_capacity(b.rounds);
    let mut failed_total = 0;
    let started = Instant::now();
    for r in 0..b.rounds {
        let at = start_at + chrono::Duration::minutes(r as i64);
        // Logger `hot` reads 12 °C this minute (and 5 °C in the others).
        let hot = (r * 7919) % tracking.len();
        let bodies: Vec<Bytes> = tracking
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != hot)
            .map(|(i, t)| Bytes::from(reading(t, i, at, 5.0)))
            .collect();
        let (_, failed, why) = run_posts(
            b,
            path.to_string(),
            "application/json",
            auth.clone(),
            bodies,
        )
        .await?;
        failed_total += failed;
        if let Some(why) = why {
            println!("  round {r}: first failure: {why}");
        }
        let hot_body = Bytes::from(reading(&tracking[hot], hot, at, 12.0));
        let (_, failed, why) = post_loop(
            b.to,
            path.to_string(),
            "application/json",
            auth.clone(),
            vec![hot_body],
        )
        .await?;
        anyhow::ensure!(failed == 0, "the hot reading was refused: {why:?}");
        let sent = Instant::now();
        let logger = logger_id(hot);
        let deadline = sent + Duration::from_secs(10);
        loop {
            if excursion_stored(b.to, &logger).await? {
                latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no temperature.excursion for {logger} within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let readings = b.rounds * tracking.len();
    latencies.sort_unstable();
    let q = |p: f64| super::bench::quantile_ms(&latencies, p);
    println!(
        "  loggers: {} loggers × {} minutes = {readings} readings in {secs:.2} s ({:.0} readings/s); not 200: {failed_total}",
        tracking.len(),
        b.rounds,
        readings as f64 / secs
    );
    println!(
        "  excursion latency (answered → temperature.excursion stored) ms: p50 {:.1}, p99 {:.1}, max {:.1}",
        q(0.5),
        q(0.99),
        q(1.0)
    );
    Ok(failed_total == 0)
}

async fn run_posts(
    b: &CourierBench,
    path: String,
    content_type: &'static str,
    auth: Auth,
    bodies: Vec<Bytes>,
) -> anyhow::Result<(Vec<u32>, usize, Option<String>)> {
    let per_conn = bodies.len().div_ceil(b.connections).max(1);
    let mut bodies = bodies.into_iter();
    let mut tasks = Vec::new();
    loop {
        let chunk: Vec<Bytes> = bodies.by_ref().take(per_conn).collect();
        if chunk.is_empty() {
            break;
        }
        tasks.push(tokio::spawn(post_loop(
            b.to,
            path.clone(),
            content_type,
            auth.clone(),
            chunk,
        )));
    }
    let (mut lat, mut failed, mut first) = (Vec::new(), 0, None);
    for t in tasks {
        let (l, f, why) = t.await??;
        lat.extend(l);
        failed += f;
        first = first.or(why);
    }
    Ok((lat, failed, first))
}

/// The EHR's shipping Task for one tracking number of the sample therapy.
fn task(tracking: &str) -> String {
    json!({
        "resourceType": "Task", "status": "in-progress", "intent": "order",
        "identifier": [{"type": {"coding": [{"code": "COI"}]}, "system": "urn:isbt128",
                        "value": cgthub_hl7v2::testdata::SAMPLE_COI}],
        "businessStatus": {"coding": [{"code": "shipped"}]},
        "owner": {"display": "Apheresis Center Leiden"},
        "location": {"display": "Manufacturing site Geleen"},
        "executionPeriod": {"start": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)},
        "output": [
            {"type": {"coding": [{"code": "tracking-number"}]}, "valueString": tracking},
            {"type": {"coding": [{"code": "carrier"}]}, "valueString": "DHL"}
        ]
    })
    .to_string()
}

/// DHL's sample with this shipment's id and `scans` transit events.
fn dhl_push(sample: &Value, tracking: &str, scans: &[chrono::DateTime<Utc>]) -> Value {
    let mut d = sample.clone();
    let s = &mut d["shipments"][0];
    s["id"] = json!(tracking);
    let template = s["events"][0].clone();
    s["events"] = scans
        .iter()
        .rev()
        .map(|t| {
            let mut e = template.clone();
            e["statusCode"] = json!("transit");
            e["status"] = json!("PROCESSED AT HUB");
            e["description"] = json!("Processed at hub");
            e["timestamp"] = json!(t.format("%Y-%m-%dT%H:%M:%S").to_string());
            e
        })
        .collect();
    d
}

fn logger_id(i: usize) -> String {
    format!("BENCH-LOG-{i:06}")
}

/// One reading of logger `i` in the Sensos common schema with cgthub's fields.
fn reading(tracking: &str, i: usize, at: chrono::DateTime<Utc>, celsius: f64) -> String {
    json!({
        "deviceId": logger_id(i), "trackingNumber": tracking, "carrier": "DHL",
        "profile": "fresh_apheresis",
        "logData": [{"timestamp": at.to_rfc3339_opts(SecondsFormat::Secs, true), "temperature": celsius}]
    })
    .to_string()
}

/// Whether an excursion of `logger` is among the latest stored.
async fn excursion_stored(to: std::net::SocketAddr, logger: &str) -> anyhow::Result<bool> {
    let path = "/api/events?kind=temperature.excursion&limit=20";
    let (status, v) = super::client::get_json(to, path).await?;
    anyhow::ensure!(status == 200, "GET {path}: {status} {v}");
    Ok(v["events"]
        .as_array()
        .is_some_and(|evs| evs.iter().any(|e| e["data"]["logger_id"] == logger)))
}
