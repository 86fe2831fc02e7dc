//! Shared by the `amqp_*` tests: a real RabbitMQ (`CGTHUB_TEST_AMQP_URL`,
//! default `amqp://guest:guest@127.0.0.1:5672/%2f`), names unique to each
//! test, a plain lapin client to look at what arrived, and `rabbitmqctl`
//! to cut one connection.
//!
//! Without a broker the tests fail, unless `CGTHUB_SKIP_AMQP_TESTS=1`.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hub_core::sink::amqp::{AmqpSettings, AmqpSink, QueueSpec, Topology};
use hub_core::store::OutboxItem;
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};

pub fn broker_url() -> String {
    std::env::var("CGTHUB_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A client of the test's own, to look at the broker as a consumer does.
/// `None` (the test returns) only when the broker is absent and skipping
/// was asked for.
pub async fn client() -> Option<(Connection, Channel)> {
    let conn = match Connection::connect(
        &broker_url(),
        ConnectionProperties::default().with_connection_name("cgthub test client".into()),
    )
    .await
    {
        Ok(c) => c,
        Err(e) if std::env::var("CGTHUB_SKIP_AMQP_TESTS").as_deref() == Ok("1") => {
            eprintln!("SKIPPED: no RabbitMQ at {}: {e}", broker_url());
            return None;
        }
        Err(e) => panic!(
            "these tests need RabbitMQ at {} ({e}); set CGTHUB_SKIP_AMQP_TESTS=1 to skip them",
            broker_url()
        ),
    };
    let ch = conn.create_channel().await.unwrap();
    Some((conn, ch))
}

/// A short unique suffix (UUID v7: unique, sortable by time).
pub fn unique() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Settings whose every broker object and connection name is this test's.
pub fn settings(test: &str) -> AmqpSettings {
    let u = unique();
    AmqpSettings {
        url: broker_url(),
        exchange: format!("test.{test}.{u}.events"),
        dead_letter_exchange: format!("test.{test}.{u}.dlx"),
        dead_letter_queue: format!("test.{test}.{u}.dead"),
        connection_name: format!("cgthub-test-{test}-{u}"),
        ..AmqpSettings::default()
    }
}

pub fn queue(
    settings: &AmqpSettings,
    name: &str,
    bindings: &[&str],
    delivery_limit: u32,
) -> QueueSpec {
    QueueSpec {
        name: format!("{}.{name}", settings.exchange),
        bindings: bindings.iter().map(|b| b.to_string()).collect(),
        delivery_limit,
        retry_ttl_ms: None,
    }
}

pub fn item(n: i64, routing_key: &str) -> OutboxItem {
    let event_id = uuid::Uuid::now_v7().to_string();
    OutboxItem {
        id: n,
        body: format!(r#"{{"schema":"cgt.event/v1","event_id":"{event_id}","n":{n}}}"#),
        event_id,
        route: "r".into(),
        sink: "amqp".into(),
        attempts: 0,
        routing_key: routing_key.into(),
        kind: "qc.result_reported".into(),
        coi: Some("CHW000126000001".into()),
        product: Some("car-t".into()),
        partner: "LAB".into(),
    }
}

/// Deletes what a test declared (its queues, its dead-letter queue, its
/// two exchanges) when dropped: at the end of the test, and when it fails,
/// so a failed run leaves nothing on the broker.
pub struct Cleanup {
    settings: AmqpSettings,
    queues: Vec<String>,
}

impl Cleanup {
    pub fn new(settings: &AmqpSettings, queues: &[&str]) -> Cleanup {
        Cleanup {
            settings: settings.clone(),
            queues: queues.iter().map(|q| q.to_string()).collect(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let settings = self.settings.clone();
        let mut queues = std::mem::take(&mut self.queues);
        queues.push(settings.dead_letter_queue.clone());
        // Its own thread and runtime: a drop cannot await, and may run
        // while the test's runtime unwinds.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let Ok(conn) =
                    Connection::connect(&broker_url(), ConnectionProperties::default()).await
                else {
                    return;
                };
                let Ok(ch) = conn.create_channel().await else {
                    return;
                };
                for q in queues {
                    let _ = ch
                        .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                        .await;
                }
                for x in [&settings.exchange, &settings.dead_letter_exchange] {
                    let _ = ch
                        .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
                        .await;
                }
                let _ = conn.close(200, "OK".into()).await;
            });
        });
        let _ = done.join();
    }
}

/// Whether a queue exists (asked on a channel of its own: a passive
/// declare of a missing queue closes its channel).
pub async fn queue_exists(conn: &Connection, name: &str) -> Option<u32> {
    let ch = conn.create_channel().await.unwrap();
    let r = ch
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    let _ = ch.close(200, "OK".into()).await;
    r.ok().map(|q| q.message_count())
}

/// Reads `n` messages from `queue` (acking them), or fewer at `within`.
pub async fn take(ch: &Channel, queue: &str, n: usize, within: Duration) -> Vec<Delivery> {
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            format!("take-{}", unique()).as_str().into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, consumer.next()).await {
            Ok(Some(Ok(d))) => got.push(d),
            _ => break,
        }
    }
    let _ = ch
        .basic_cancel(
            consumer.tag(),
            lapin::options::BasicCancelOptions::default(),
        )
        .await;
    got
}

/// Polls `check` until it holds or `within` passes; returns whether it held.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Closes the broker's connection(s) whose client-provided name is exactly
/// `name`, as an operator would; returns how many.
pub fn close_connection(name: &str) -> usize {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl runs");
    assert!(out.status.success(), "rabbitmqctl: {out:?}");
    // 3.10 prints `{"connection_name","NAME"}` (older ones `longstr,<<"NAME">>`).
    let needles = [
        format!("{{\"connection_name\",\"{name}\"}}"),
        format!("{{\"connection_name\",longstr,<<\"{name}\">>}}"),
    ];
    let text = String::from_utf8_lossy(&out.stdout);
    let pids: Vec<&str> = text
        .lines()
        .filter(|l| needles.iter().any(|n| l.contains(n.as_str())))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(!pids.is_empty(), "no connection named {name} in:\n{text}");
    for pid in &pids {
        let st = std::process::Command::new("rabbitmqctl")
            .args(["-q", "close_connection", pid, "closed by a cgthub test"])
            .status()
            .expect("rabbitmqctl runs");
        assert!(st.success(), "closing {pid}");
    }
    pids.len()
}

/// A header's text value.
pub fn header(d: &Delivery, name: &str) -> Option<String> {
    match d.properties.headers().as_ref()?.inner().get(name)? {
        lapin::types::AMQPValue::LongString(s) => {
            Some(String::from_utf8_lossy(s.as_bytes()).into())
        }
        other => Some(format!("{other:?}")),
    }
}

/// The broker's `host:port`, from its URL.
pub fn broker_addr() -> String {
    let url = broker_url();
    let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:5672")
    }
}

/// The broker's URL, through `addr` instead.
pub fn url_via(addr: std::net::SocketAddr) -> String {
    broker_url().replacen(&broker_addr(), &addr.to_string(), 1)
}

/// A TCP proxy in front of the broker that a test can take down and bring
/// back, like a broker stop and start, without touching the shared broker.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pipes: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(up: bool) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(up));
        let pipes: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> =
            Default::default();
        let (up2, pipes2, upstream) = (state.clone(), pipes.clone(), broker_addr());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let upstream = upstream.clone();
                pipes2.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Proxy {
            addr,
            up: state,
            pipes,
            accept,
        }
    }

    /// Cuts every connection through it and refuses new ones.
    pub fn down(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for p in self.pipes.lock().unwrap().drain(..) {
            p.abort();
        }
    }

    pub fn up(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
        self.accept.abort();
    }
}

/// Starts a sink whose topology is the one queue `q`.
pub async fn start_sink(settings: &AmqpSettings, q: &QueueSpec) -> AmqpSink {
    AmqpSink::start(
        "amqp",
        settings.clone(),
        Topology {
            queues: vec![q.clone()],
        },
    )
    .await
    .expect("the sink starts")
}
