//! The dead-queue drain: moves what the broker dead-lettered (refused,
//! expired, over its delivery limit) from `amqp.dead_letter_queue` into the
//! hub, through a handler that makes each message durable.
//!
//! A message is acked only after the handler returned `Ok`; on `Err` it is
//! put back (nack with requeue) after a pause that grows while failures
//! continue. The dead queue has no delivery limit, so nothing is dropped
//! while the handler cannot store. Delivery is at least once: after a lost
//! connection a message the handler already stored may come again, so the
//! handler should be idempotent (by `message_id`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Connection, Consumer};
use tokio_util::sync::CancellationToken;

use super::connection::{AmqpHealth, Session, Setup, Supervisor};
use super::error::AmqpError;
use super::settings::AmqpSettings;
use super::topology::declare_dead_letter_only;
use super::{HEADER_COI, HEADER_PARTNER, HEADER_PRODUCT};
use crate::sink::BoxFuture;

/// Unacknowledged deliveries the broker may push ahead of the handler.
pub const DRAIN_PREFETCH: u16 = 64;

/// A message the broker dead-lettered, as read from the dead queue: the
/// store's record of it, filled from the message and its `x-death`.
pub use crate::store::BrokerDeadLetter as DeadDelivery;

/// Stores a dead delivery durably; `Err` (with why) puts it back.
pub type DeadHandler =
    Arc<dyn Fn(DeadDelivery) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Consumes the dead queue for as long as it lives, reconnecting like the
/// sink does.
pub struct DeadQueueDrain {
    supervisor: Supervisor<Drainer>,
}

impl DeadQueueDrain {
    /// Connects (as `<connection_name> (dead-queue drain)`), declares the
    /// dead-letter exchange and queue, and starts consuming. Like the sink,
    /// fails only on bad settings or a conflicting declaration; an
    /// unreachable broker starts it degraded.
    pub async fn start(settings: AmqpSettings, handler: DeadHandler) -> Result<Self, AmqpError> {
        let name = format!("{} (dead-queue drain)", settings.connection_name);
        let setup = DrainSetup {
            settings: settings.clone(),
            handler,
        };
        Ok(DeadQueueDrain {
            supervisor: Supervisor::start(settings, name, setup).await?,
        })
    }

    pub fn health(&self) -> AmqpHealth {
        self.supervisor.health()
    }

    /// Stops consuming and closes the connection. A message whose handler
    /// is running when the connection closes is delivered again later.
    pub async fn stop(&self) {
        self.supervisor.stop().await;
    }
}

struct DrainSetup {
    settings: AmqpSettings,
    handler: DeadHandler,
}

/// A consumer task on a live connection.
pub(crate) struct Drainer {
    finished: Arc<AtomicBool>,
    stop: CancellationToken,
}

impl Session for Drainer {
    fn alive(&self) -> bool {
        !self.finished.load(Ordering::Relaxed)
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Setup for DrainSetup {
    type Session = Drainer;

    fn setup<'a>(&'a self, conn: &'a Connection) -> BoxFuture<'a, Result<Drainer, AmqpError>> {
        Box::pin(async move {
            declare_dead_letter_only(conn, &self.settings).await?;
            let channel = conn
                .create_channel()
                .await
                .map_err(AmqpError::channel("opening the drain channel"))?;
            channel
                .basic_qos(DRAIN_PREFETCH, BasicQosOptions::default())
                .await
                .map_err(AmqpError::channel("setting the drain's prefetch"))?;
            let consumer = channel
                .basic_consume(
                    ShortString::from(self.settings.dead_letter_queue.as_str()),
                    ShortString::from(""),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(AmqpError::channel("consuming the dead-letter queue"))?;
            let finished = Arc::new(AtomicBool::new(false));
            let stop = CancellationToken::new();
            let pause = Pause {
                initial: Duration::from_millis(self.settings.reconnect_initial_ms),
                max: Duration::from_millis(self.settings.reconnect_max_ms),
            };
            tokio::spawn(consume(
                consumer,
                Arc::clone(&self.handler),
                pause,
                Arc::clone(&finished),
                stop.clone(),
            ));
            Ok(Drainer { finished, stop })
        })
    }
}

#[derive(Clone, Copy)]
struct Pause {
    initial: Duration,
    max: Duration,
}

async fn consume(
    mut consumer: Consumer,
    handler: DeadHandler,
    pause: Pause,
    finished: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut failures: u32 = 0;
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break,
            next = consumer.next() => next,
        };
        let delivery = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "dead-queue consumer failed");
                break;
            }
            None => break,
        };
        let acker = delivery.acker.clone();
        let dead = DeadDelivery::from_delivery(delivery);
        let message_id = dead.message_id.clone().unwrap_or_default();
        let settled = match handler(dead).await {
            Ok(()) => {
                failures = 0;
                acker.ack(BasicAckOptions::default()).await
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = pause
                    .initial
                    .saturating_mul(2u32.saturating_pow(failures - 1))
                    .min(pause.max);
                tracing::warn!(message_id = %message_id, error = %e, retry_in_ms = wait.as_millis() as u64, "cannot store a dead-lettered message; it goes back to the dead queue");
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await
            }
        };
        if let Err(e) = settled {
            // The broker redelivers what was not settled: nothing is lost.
            tracing::warn!(message_id = %message_id, error = %e, "cannot settle a dead-queue delivery");
            break;
        }
    }
    finished.store(true, Ordering::Relaxed);
}

impl DeadDelivery {
    fn from_delivery(d: Delivery) -> DeadDelivery {
        let props = &d.properties;
        let headers = props.headers().as_ref();
        let header = |name: &str| headers.and_then(|h| h.inner().get(name)).and_then(text);
        let deaths: Vec<&FieldTable> = match headers.and_then(|h| h.inner().get("x-death")) {
            Some(AMQPValue::FieldArray(a)) => a
                .as_slice()
                .iter()
                .filter_map(|v| match v {
                    AMQPValue::FieldTable(t) => Some(t),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let field = |t: &FieldTable, k: &str| t.inner().get(k).cloned();
        let first = deaths.first();
        DeadDelivery {
            message_id: props.message_id().as_ref().map(ToString::to_string),
            kind: props.kind().as_ref().map(ToString::to_string),
            routing_key: d.routing_key.to_string(),
            coi: header(HEADER_COI),
            product: header(HEADER_PRODUCT),
            partner: header(HEADER_PARTNER),
            reason: first
                .and_then(|t| field(t, "reason"))
                .and_then(|v| text(&v))
                .unwrap_or_else(|| "unknown".into()),
            queue: first.and_then(|t| field(t, "queue")).and_then(|v| text(&v)),
            death_count: deaths
                .iter()
                .filter_map(|t| field(t, "count").and_then(|v| number(&v)))
                .fold(0u32, u32::saturating_add),
            first_death_at: deaths
                .iter()
                .filter_map(|t| match field(t, "time") {
                    Some(AMQPValue::Timestamp(s)) => {
                        Utc.timestamp_opt(i64::try_from(s).ok()?, 0).single()
                    }
                    _ => None,
                })
                .min(),
            body: d.data,
        }
    }
}

fn text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

fn number(v: &AMQPValue) -> Option<u32> {
    let n: i64 = match *v {
        AMQPValue::ShortShortInt(n) => n.into(),
        AMQPValue::ShortShortUInt(n) => n.into(),
        AMQPValue::ShortInt(n) => n.into(),
        AMQPValue::ShortUInt(n) => n.into(),
        AMQPValue::LongInt(n) => n.into(),
        AMQPValue::LongUInt(n) => n.into(),
        AMQPValue::LongLongInt(n) => n,
        _ => return None,
    };
    u32::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{FieldArray, LongString};
    use lapin::BasicProperties;

    fn death(queue: &str, reason: &str, count: i64, time: u64) -> AMQPValue {
        let mut t = FieldTable::default();
        t.insert(
            "queue".into(),
            AMQPValue::LongString(LongString::from(queue)),
        );
        t.insert(
            "reason".into(),
            AMQPValue::LongString(LongString::from(reason)),
        );
        t.insert("count".into(), AMQPValue::LongLongInt(count));
        t.insert("time".into(), AMQPValue::Timestamp(time));
        AMQPValue::FieldTable(t)
    }

    #[test]
    fn reads_the_broker_s_x_death() {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![
                death("q.results", "delivery_limit", 1, 1_700_000_100),
                death("q.results.retry", "expired", 3, 1_700_000_000),
            ])),
        );
        headers.insert(
            HEADER_COI.into(),
            AMQPValue::LongString(LongString::from("COI9")),
        );
        let mut d = Delivery::mock(7, "cgt.dlx".into(), "p.qc.x".into(), false, b"{}".to_vec());
        d.properties = BasicProperties::default()
            .with_message_id("e1".into())
            .with_type("qc.x".into())
            .with_headers(headers);
        let dead = DeadDelivery::from_delivery(d);
        assert_eq!(dead.reason, "delivery_limit");
        assert_eq!(dead.queue.as_deref(), Some("q.results"));
        assert_eq!(dead.death_count, 4);
        assert_eq!(
            dead.first_death_at.map(|t| t.timestamp()),
            Some(1_700_000_000)
        );
        assert_eq!(
            (
                dead.message_id.as_deref(),
                dead.kind.as_deref(),
                dead.coi.as_deref(),
                dead.partner
            ),
            (Some("e1"), Some("qc.x"), Some("COI9"), None)
        );
        assert_eq!(
            (dead.routing_key.as_str(), dead.body.as_slice()),
            ("p.qc.x", &b"{}"[..])
        );
    }

    #[test]
    fn without_x_death_the_reason_is_unknown() {
        let d = Delivery::mock(1, "".into(), "k".into(), false, vec![]);
        let dead = DeadDelivery::from_delivery(d);
        assert_eq!(
            (dead.reason.as_str(), dead.death_count, dead.queue),
            ("unknown", 0, None)
        );
    }
}
