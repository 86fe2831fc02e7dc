//! `cgthub bench lims` and `cgthub bench b2mml`: the file intakes under load.
//!
//! `b2mml` posts SegmentResponses of about 20 KiB (process data, equipment,
//! personnel, materials) from C connections, each with its own id, and
//! reports documents/s and latency.
//!
//! `lims` posts one CSV export of N rows (the plain dialect) to
//! `/lims/{partner}` and reports rows/s until the hub answered (every row
//! stored, mapped and routed) and, with `--drain`, until every event was
//! delivered. The rows name the bench's sample therapy (registered first
//! over MLLP, as `bench mllp` does) and a specimen per ten rows, so every
//! row is reconciled against the chain of identity and routed.

use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Debug, clap::Args)]
pub struct B2mmlBench {
    /// The hub's HTTP address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    to: std::net::SocketAddr,
    /// The hub's MLLP address (the sample therapy is registered there first).
    #[arg(long, default_value = "127.0.0.1:2575")]
    mllp: String,
    /// A bearer token of the partner's (`[b2mml] tokens`).
    #[arg(long, env = "CGTHUB_B2MML_TOKEN")]
    token: String,
    /// Concurrent connections (one document in flight each).
    #[arg(long, short = 'c', default_value_t = 32)]
    connections: usize,
    /// Documents in all.
    #[arg(long, short = 'n', default_value_t = 20_000)]
    documents: usize,
    /// Size of each document, KiB.
    #[arg(long, default_value_t = 20)]
    kib: usize,
    /// Wait until the outbox is empty and report the delivered rate too.
    #[arg(long)]
    drain: bool,
}

pub async fn b2mml(b: B2mmlBench) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(b.connections > 0, "--connections must be at least 1");
    super::bench::register_sample(&b.mllp).await?;
    let run = format!("{:08x}", rand::random::<u32>());
    let (doc, _, _) = cgthub_b2mml::testdata::segment_response(b.kib);
    let per_conn = b.documents.div_ceil(b.connections);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..b.connections {
        let bodies: Vec<Bytes> = (0..per_conn)
            .map(|i| {
                Bytes::from(doc.replacen(
                    "SR-EXP-0042",
                    &format!("SR-{run}-{}", c * per_conn + i),
                    1,
                ))
            })
            .collect();
        tasks.push(tokio::spawn(super::bench_fhir::post_loop(
            b.to,
            "/b2mml/mes".into(),
            "application/xml",
            super::bench_fhir::Auth::Bearer(b.token.clone()),
            bodies,
        )));
    }
    let mut lat = Vec::with_capacity(b.documents);
    let (mut failed, mut first) = (0usize, None);
    for t in tasks {
        let (l, f, why) = t.await??;
        lat.extend(l);
        failed += f;
        first = first.or(why);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let n = lat.len();
    let q = |p: f64| super::bench::quantile_ms(&lat, p);
    println!(
        "cgthub bench b2mml: {n} SegmentResponses ({} B each) over {} connections",
        doc.len(),
        b.connections
    );
    println!(
        "  {:.0} documents/s, {:.1} MB/s, {secs:.2} s; latency ms: p50 {:.2}, p99 {:.2}, max {:.2}; not 200: {failed}",
        n as f64 / secs,
        (n * doc.len()) as f64 / secs / 1e6,
        q(0.5),
        q(0.99),
        q(1.0)
    );
    if let Some(why) = first {
        println!("  first failure: {why}");
    }
    if b.drain {
        let drained = super::bench::wait_drained_at(b.to).await?;
        let total = drained.duration_since(start).as_secs_f64();
        println!(
            "  delivered end to end: {:.0} documents/s ({total:.2} s until the outbox was empty)",
            n as f64 / total
        );
    }
    Ok(if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

#[derive(Debug, clap::Args)]
pub struct LimsBench {
    /// The hub's HTTP address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    to: std::net::SocketAddr,
    /// The hub's MLLP address (the sample therapy is registered there first).
    #[arg(long, default_value = "127.0.0.1:2575")]
    mllp: String,
    /// A bearer token of the partner's (`[lims] tokens`).
    #[arg(long, env = "CGTHUB_LIMS_TOKEN")]
    token: String,
    #[arg(long, default_value = "lims")]
    partner: String,
    /// Rows in the export.
    #[arg(long, short = 'n', default_value_t = 200_000)]
    rows: usize,
    /// Wait until the outbox is empty and report the delivered rate too.
    #[arg(long)]
    drain: bool,
}

const HEADER: &str = "sample_id,coi,specimen_id,test_code,test_name,result,unit,specification,pass_fail,analyst,instrument,result_time,status\n";

/// An export of `rows` rows, unique to `run`.
pub fn sample_export(run: &str, rows: usize) -> String {
    use std::fmt::Write;
    let coi = cgthub_hl7v2::testdata::SAMPLE_COI;
    let tests = [
        ("VIAB", "Viability (7-AAD)", "%", ">= 70 %"),
        ("CD3", "CD3+ T cells", "%", ">= 80 %"),
        ("VCN", "Vector copy number", "copies/cell", "<= 5"),
        ("ENDO", "Endotoxin", "EU/mL", "< 5"),
    ];
    let mut out = String::with_capacity(HEADER.len() + rows * 170);
    out.push_str(HEADER);
    for i in 0..rows {
        let (code, name, unit, spec) = tests[i % tests.len()];
        let _ = writeln!(
            out,
            "QC-{run}-{s},{coi},SPM-{run}-{s},{code},{name},{v}.{d},{unit},{spec},PASS,analyst{a},FACSLyric-0{a},2026-03-03T09:{m:02}:{sec:02}Z,final",
            s = i / 10,
            v = 50 + i % 40,
            d = i % 10,
            a = i % 7,
            m = (i / 60) % 60,
            sec = i % 60,
        );
    }
    out
}

pub async fn lims(b: LimsBench) -> anyhow::Result<std::process::ExitCode> {
    super::bench::register_sample(&b.mllp).await?;
    let run = format!("{:08x}", rand::random::<u32>());
    let body = Bytes::from(sample_export(&run, b.rows));
    let size = body.len();
    let stream = TcpStream::connect(b.to)
        .await
        .with_context(|| format!("connecting to {}", b.to))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::post(format!("/lims/{}", b.partner))
        .header(HOST, b.to.to_string())
        .header(CONTENT_TYPE, "text/csv")
        .header(AUTHORIZATION, format!("Bearer {}", b.token))
        .body(Full::new(body))?;
    let start = Instant::now();
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let answer = resp.into_body().collect().await?.to_bytes();
    let secs = start.elapsed().as_secs_f64();
    let report: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
    println!(
        "cgthub bench lims: one export of {} rows ({:.1} MB) to /lims/{}",
        b.rows,
        size as f64 / 1e6,
        b.partner
    );
    println!(
        "  answered {status} in {secs:.2} s: {:.0} rows/s, {:.1} MB/s; accepted {}, rejected {}, held {}",
        b.rows as f64 / secs,
        size as f64 / secs / 1e6,
        report["accepted_rows"],
        report["rejected_rows"],
        report["held"],
    );
    if b.drain {
        let drained = super::bench::wait_drained_at(b.to).await?;
        let total = drained.duration_since(start).as_secs_f64();
        println!(
            "  delivered end to end: {:.0} rows/s ({total:.2} s until the outbox was empty)",
            b.rows as f64 / total
        );
    }
    let ok = status == 200 && report["accepted_rows"] == b.rows;
    if !ok {
        println!(
            "  not every row was taken: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(600)])
        );
    }
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
