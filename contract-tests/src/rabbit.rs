//! RabbitMQ as the tests see it: a throw-away vhost per test, a real lapin
//! consumer to read what the hub published, and `rabbitmqctl` to break the
//! broker the way operations do. Synchronous on purpose, like the rest of
//! the harness: each `Vhost` drives its own small tokio runtime.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicRejectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

/// The broker the tests use.
pub const BROKER: &str = "127.0.0.1:5672";

/// Runs `rabbitmqctl ARGS`, panicking with its output when it fails.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl (is RabbitMQ installed?)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "rabbitmqctl {args:?}: {text}");
    text
}

/// A vhost of its own, deleted (with everything in it) on drop.
pub struct Vhost {
    pub name: String,
    rt: tokio::runtime::Runtime,
    conn: Option<Connection>,
}

/// One message as a consumer received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub routing_key: String,
    pub message_id: Option<String>,
    pub kind: Option<String>,
    pub content_type: Option<String>,
    pub delivery_mode: Option<u8>,
    pub timestamp: Option<u64>,
    /// String-valued headers.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("message body is JSON")
    }
}

impl Vhost {
    /// Creates `cgt-test-<uuid>` and gives guest all rights on it.
    pub fn new() -> Vhost {
        let name = format!("cgt-test-{}", uuid::Uuid::now_v7().simple());
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        Vhost {
            name,
            rt,
            conn: None,
        }
    }

    /// The AMQP URL of this vhost.
    pub fn url(&self) -> String {
        self.url_via(BROKER)
    }

    /// The AMQP URL of this vhost through another address (a
    /// [`crate::proxy::Proxy`] in front of the broker).
    pub fn url_via(&self, addr: impl std::fmt::Display) -> String {
        format!("amqp://guest:guest@{addr}/{}", self.name)
    }

    fn channel(&mut self) -> Channel {
        let url = self.url();
        let rt = &self.rt;
        if self.conn.as_ref().is_none_or(|c| !c.status().connected()) {
            self.conn = Some(
                rt.block_on(Connection::connect(
                    &url,
                    ConnectionProperties::default().with_connection_name("cgt-test-reader".into()),
                ))
                .expect("connect to RabbitMQ"),
            );
        }
        let conn = self.conn.as_ref().expect("connected");
        rt.block_on(conn.create_channel()).expect("channel")
    }

    /// Messages ready in `queue`, or `None` if it does not exist.
    pub fn queue_len(&mut self, queue: &str) -> Option<u32> {
        let ch = self.channel();
        let q = self.rt.block_on(ch.queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ));
        q.ok().map(|q| q.message_count())
    }

    /// Declares a durable classic queue (what someone else may have done
    /// before the hub started).
    pub fn declare_classic(&mut self, queue: &str) {
        let ch = self.channel();
        self.rt
            .block_on(ch.queue_declare(
                queue.into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            ))
            .expect("declare classic queue");
    }

    /// The `x-*` arguments and type of a queue as the broker reports them.
    pub fn queue_info(&self, queue: &str) -> String {
        rabbitmqctl(&[
            "list_queues",
            "-p",
            &self.name,
            "--no-table-headers",
            "name",
            "type",
            "durable",
            "arguments",
        ])
        .lines()
        .find(|l| l.split_whitespace().next() == Some(queue))
        .unwrap_or_default()
        .to_string()
    }

    /// Consumes (and acks) until `n` messages arrived from `queue` or
    /// `timeout` passed; returns what arrived.
    pub fn take(&mut self, queue: &str, n: usize, timeout: Duration) -> Vec<Received> {
        self.take_until(queue, timeout, |got| got.len() >= n)
    }

    /// Consumes (and acks) from `queue`, in one consumer, until `enough`
    /// says so of what arrived or `timeout` passed; returns what arrived.
    /// (Stopping a consumer returns what the broker already pushed to it,
    /// which a quorum queue counts against its delivery limit: wait for
    /// what is wanted here rather than taking it in slices.)
    pub fn take_until(
        &mut self,
        queue: &str,
        timeout: Duration,
        mut enough: impl FnMut(&[Received]) -> bool,
    ) -> Vec<Received> {
        let ch = self.channel();
        let queue = queue.to_string();
        self.rt.block_on(async move {
            let mut consumer = ch
                .basic_consume(
                    queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("basic_consume");
            let mut out = Vec::new();
            let deadline = tokio::time::Instant::now() + timeout;
            while !enough(&out) {
                match tokio::time::timeout_at(deadline, consumer.next()).await {
                    Ok(Some(Ok(d))) => {
                        d.acker.ack(Default::default()).await.expect("ack");
                        out.push(received(d.routing_key.as_str(), &d.properties, d.data));
                    }
                    Ok(Some(Err(e))) => panic!("consumer error: {e}"),
                    Ok(None) | Err(_) => break,
                }
            }
            let _ = ch.close(200, "done".into()).await;
            out
        })
    }

    /// Takes one message from `queue` and rejects it without requeueing (a
    /// consumer that cannot use it). Returns its message id.
    pub fn reject_one(&mut self, queue: &str, timeout: Duration) -> Option<String> {
        self.settle_one(queue, timeout, false)
    }

    /// Takes one message and nacks it with requeue (a consumer that fails
    /// and wants it again).
    pub fn requeue_one(&mut self, queue: &str, timeout: Duration) -> Option<String> {
        self.settle_one(queue, timeout, true)
    }

    fn settle_one(&mut self, queue: &str, timeout: Duration, requeue: bool) -> Option<String> {
        let ch = self.channel();
        let deadline = Instant::now() + timeout;
        loop {
            let got = self
                .rt
                .block_on(ch.basic_get(queue.into(), BasicGetOptions::default()))
                .expect("basic_get");
            if let Some(m) = got {
                let id = m
                    .delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.to_string());
                let acker = m.delivery.acker.clone();
                self.rt
                    .block_on(async {
                        if requeue {
                            acker
                                .nack(BasicNackOptions {
                                    requeue: true,
                                    ..Default::default()
                                })
                                .await
                        } else {
                            acker.reject(BasicRejectOptions { requeue: false }).await
                        }
                    })
                    .expect("settle");
                return id;
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Publishes with confirms (to test consumers' side of the topology).
    pub fn publish(&mut self, exchange: &str, key: &str, body: &[u8], message_id: &str) {
        let ch = self.channel();
        self.rt.block_on(async {
            ch.confirm_select(Default::default())
                .await
                .expect("confirm");
            ch.basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default()
                    .with_message_id(message_id.into())
                    .with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        });
    }

    /// Closes every client connection to this vhost, as an operator or a
    /// network fault would.
    pub fn close_connections(&self) {
        rabbitmqctl(&[
            "close_all_connections",
            "--vhost",
            &self.name,
            "cgthub contract test: connection dropped",
        ]);
    }
}

impl Default for Vhost {
    fn default() -> Self {
        Vhost::new()
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = self.rt.block_on(c.close(200, "done".into()));
        }
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

fn received(routing_key: &str, p: &BasicProperties, body: Vec<u8>) -> Received {
    let headers = p
        .headers()
        .as_ref()
        .map(|h| {
            h.inner()
                .iter()
                .filter_map(|(k, v)| {
                    let v = match v {
                        AMQPValue::LongString(s) => s.to_string(),
                        AMQPValue::ShortString(s) => s.to_string(),
                        _ => return None,
                    };
                    Some((k.to_string(), v))
                })
                .collect()
        })
        .unwrap_or_default();
    Received {
        routing_key: routing_key.to_string(),
        message_id: p.message_id().as_ref().map(|s| s.to_string()),
        kind: p.kind().as_ref().map(|s| s.to_string()),
        content_type: p.content_type().as_ref().map(|s| s.to_string()),
        delivery_mode: *p.delivery_mode(),
        timestamp: *p.timestamp(),
        headers,
        body,
    }
}

/// Checks that every acked id arrived, and that repeats share an event id.
pub fn assert_all_arrived(acked: &[String], got: &[Received]) {
    let mut event_of: HashMap<String, String> = HashMap::new();
    for m in got {
        let ev = m.json();
        let msg = ev["source"]["message_id"].as_str().unwrap().to_string();
        let id = m.message_id.clone().expect("message_id set");
        assert_eq!(ev["event_id"].as_str(), Some(id.as_str()));
        if let Some(prev) = event_of.insert(msg.clone(), id.clone()) {
            assert_eq!(prev, id, "{msg} arrived twice under different message ids");
        }
    }
    let lost: Vec<&String> = acked
        .iter()
        .filter(|a| !event_of.contains_key(*a))
        .collect();
    assert!(
        lost.is_empty(),
        "{} AA'd message(s) never reached RabbitMQ, e.g. {:?}",
        lost.len(),
        lost.first()
    );
}

/// Drains `queue` until every acked id has arrived or nothing more comes.
pub fn drain(v: &mut Vhost, queue: &str, acked: &[String]) -> Vec<Received> {
    let want: HashSet<&String> = acked.iter().collect();
    let mut got: Vec<Received> = Vec::new();
    loop {
        let batch = v.take(queue, 100_000, Duration::from_secs(5));
        if batch.is_empty() {
            return got;
        }
        got.extend(batch);
        let seen: HashSet<String> = got
            .iter()
            .map(|m| {
                m.json()["source"]["message_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        if want.iter().all(|w| seen.contains(*w)) {
            return got;
        }
    }
}

/// Drains `queue` until a message with each of `want` as its `message_id`
/// (an event id) has arrived, or `timeout` passed. Returns everything
/// taken, repeats included.
pub fn drain_ids(
    v: &mut Vhost,
    queue: &str,
    want: &HashSet<String>,
    timeout: Duration,
) -> Vec<Received> {
    let mut seen: HashSet<String> = HashSet::new();
    v.take_until(queue, timeout, |got| {
        if let Some(id) = got.last().and_then(|m| m.message_id.clone()) {
            seen.insert(id);
        }
        want.iter().all(|w| seen.contains(w))
    })
}
