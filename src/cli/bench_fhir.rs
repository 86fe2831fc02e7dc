//! `cgthub bench fhir`: drives a running hub's `/fhir` as C EHRs, each
//! posting transaction Bundles one after the other on a kept-alive HTTP/1.1
//! connection, and reports Bundles/s and response latency.
//!
//! Every Bundle (~6 KiB) holds a Patient, a ServiceRequest and a Specimen,
//! with a unique Bundle identifier, order number and COI: each one
//! registers a new therapy (order.placed) and links its collection
//! (collection.completed), as an EHR's order would.

use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Debug, clap::Args)]
pub struct FhirBench {
    /// The hub's HTTP address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    to: std::net::SocketAddr,
    /// A bearer token the hub knows (`[fhir] tokens`).
    #[arg(long, env = "CGTHUB_FHIR_TOKEN")]
    token: String,
    /// Concurrent connections (one Bundle in flight each).
    #[arg(long, short = 'c', default_value_t = 32)]
    connections: usize,
    /// Bundles in all.
    #[arg(long, short = 'n', default_value_t = 50_000)]
    bundles: usize,
    /// After the load, wait until the outbox is empty and report the
    /// delivered rate too.
    #[arg(long)]
    drain: bool,
}

/// One transaction Bundle, numbered `n` in run `run`.
pub fn sample_bundle(run: &str, n: usize) -> String {
    // Facility W0002 up: W0001 is the HL7 sample's (`cgthub bench mllp`).
    let facility = 2 + n / 1_000_000;
    let coi = format!("CHW{facility:04}26{:06}", n % 1_000_000);
    let narrative = "Autologous anti-CD19 CAR-T cell therapy order: leukapheresis at the \
                     apheresis centre, courier to the manufacturing site, release testing, \
                     return shipment in the vapour phase of liquid nitrogen. "
        .repeat(19);
    format!(
        r#"{{"resourceType":"Bundle","type":"transaction","identifier":{{"system":"urn:bench:{run}","value":"b-{n}"}},"entry":[
{{"fullUrl":"urn:uuid:{run}-0000-4000-8000-{n:012}","request":{{"method":"POST","url":"Patient"}},"resource":{{"resourceType":"Patient",
 "text":{{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Patient of order ORD-{run}-{n}</div>"}},
 "identifier":[{{"type":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}}]}},"system":"urn:oid:1.2.36.146.595.217.0.1","value":"MRN-{run}-{n}"}},
  {{"type":{{"coding":[{{"code":"COI"}}]}},"system":"urn:isbt128","value":"{coi}"}}],
 "name":[{{"use":"official","family":"Bench","given":["Pat","{n}"]}}],"gender":"female","birthDate":"1980-01-01",
 "address":[{{"line":["1 Hospital Road"],"city":"Leiden","postalCode":"2333","country":"NL"}}]}}}},
{{"fullUrl":"urn:uuid:{run}-0000-4000-8001-{n:012}","request":{{"method":"POST","url":"ServiceRequest","ifNoneExist":"identifier=urn:oid:1.2.3.4|ORD-{run}-{n}"}},"resource":{{"resourceType":"ServiceRequest",
 "text":{{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">{narrative}</div>"}},
 "identifier":[{{"type":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"PLAC"}}]}},"system":"urn:oid:1.2.3.4","value":"ORD-{run}-{n}"}}],
 "status":"active","intent":"order","priority":"urgent",
 "code":{{"coding":[{{"system":"urn:cgt:product","code":"K9","display":"Autologous CAR-T"}}]}},
 "subject":{{"reference":"urn:uuid:{run}-0000-4000-8000-{n:012}"}},"authoredOn":"2026-11-20T09:00:00+01:00",
 "occurrenceDateTime":"2026-11-25T08:00:00+01:00","requester":{{"display":"Dr. Haematology"}},
 "reasonCode":[{{"coding":[{{"system":"http://snomed.info/sct","code":"91857003","display":"Acute lymphoblastic leukemia"}}]}}],
 "specimen":[{{"reference":"urn:uuid:{run}-0000-4000-8002-{n:012}"}}]}}}},
{{"fullUrl":"urn:uuid:{run}-0000-4000-8002-{n:012}","request":{{"method":"POST","url":"Specimen"}},"resource":{{"resourceType":"Specimen",
 "identifier":[{{"system":"urn:apheresis:leiden","value":"SPC-{run}-{n}"}}],"status":"available",
 "type":{{"coding":[{{"system":"http://snomed.info/sct","code":"119297000","display":"Blood specimen"}}]}},
 "subject":{{"reference":"urn:uuid:{run}-0000-4000-8000-{n:012}"}},
 "request":[{{"reference":"urn:uuid:{run}-0000-4000-8001-{n:012}"}}],
 "collection":{{"collector":{{"display":"Apheresis Center Leiden"}},"collectedDateTime":"2026-11-25T11:30:00+01:00",
  "quantity":{{"value":250,"unit":"mL","system":"http://unitsofmeasure.org","code":"mL"}}}}}}}}
]}}"#
    )
}

pub async fn fhir(b: FhirBench) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(b.connections > 0, "--connections must be at least 1");
    let run = format!("{:08x}", rand::random::<u32>());
    let per_conn = b.bundles.div_ceil(b.connections);
    let size = sample_bundle(&run, 0).len();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..b.connections {
        let bodies: Vec<Bytes> = (0..per_conn)
            .map(|i| Bytes::from(sample_bundle(&run, c * per_conn + i)))
            .collect();
        tasks.push(tokio::spawn(post_loop(
            b.to,
            "/fhir".into(),
            "application/fhir+json",
            Auth::Bearer(b.token.clone()),
            bodies,
        )));
    }
    let mut lat = Vec::with_capacity(b.bundles);
    let mut failed = 0usize;
    let mut first_failure = None;
    for t in tasks {
        let (l, f, why) = t.await??;
        lat.extend(l);
        failed += f;
        first_failure = first_failure.or(why);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let n = lat.len();
    let q = |p: f64| super::bench::quantile_ms(&lat, p);
    println!(
        "cgthub bench fhir: {n} transaction Bundles ({size} B each: Patient, ServiceRequest, Specimen) over {} connections",
        b.connections
    );
    println!(
        "  {:.0} Bundles/s, {:.1} MB/s, {:.2} s; latency ms: p50 {:.2}, p99 {:.2}, max {:.2}; not 200: {failed}",
        n as f64 / secs,
        (n * size) as f64 / secs / 1e6,
        secs,
        q(0.5),
        q(0.99),
        q(1.0)
    );
    if let Some(why) = first_failure {
        println!("  first failure: {why}");
    }
    if b.drain {
        let drained = super::bench::wait_drained_at(b.to).await?;
        let total = drained.duration_since(start).as_secs_f64();
        println!(
            "  delivered end to end: {:.0} Bundles/s ({:.2} s until the outbox was empty)",
            n as f64 / total,
            total
        );
    }
    Ok(if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// Posts `bodies` one after the other on one kept-alive connection: the
/// latency of each (µs), how many were not answered 200, and the first
/// such answer.
/// How a bench client proves who it is.
#[derive(Clone)]
pub(crate) enum Auth {
    /// `Authorization: Bearer …`.
    Bearer(String),
    /// `X-Hub-Signature-256: sha256=…` over each body, as couriers sign.
    HubSignature(Vec<u8>),
}

pub(crate) async fn post_loop(
    to: std::net::SocketAddr,
    path: String,
    content_type: &'static str,
    auth: Auth,
    bodies: Vec<Bytes>,
) -> anyhow::Result<(Vec<u32>, usize, Option<String>)> {
    let stream = TcpStream::connect(to)
        .await
        .with_context(|| format!("connecting to {to}"))?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let host = to.to_string();
    let mut lat = Vec::with_capacity(bodies.len());
    let mut failed = 0;
    let mut why = None;
    for body in bodies {
        let req = Request::post(path.as_str())
            .header(HOST, &host)
            .header(CONTENT_TYPE, content_type)
            .header("prefer", "return=minimal");
        let req = match &auth {
            Auth::Bearer(token) => req.header(AUTHORIZATION, format!("Bearer {token}")),
            Auth::HubSignature(secret) => req.header(
                "x-hub-signature-256",
                crate::intake::courier::auth::sign(secret, None, &body),
            ),
        };
        let req = req.body(Full::new(body))?;
        let t = Instant::now();
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
        if !status.is_success() {
            failed += 1;
            if why.is_none() {
                why = Some(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(400)])
                ));
            }
        }
    }
    Ok((lat, failed, why))
}
