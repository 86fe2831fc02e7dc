//! The broker objects the hub declares at start and after every reconnect:
//! the events exchange, the dead-letter exchange and queue, and one durable
//! quorum queue (plus an optional retry queue) per route.
//!
//! Declaring is idempotent: the same declaration again is a no-op. A
//! declaration that disagrees with what exists answers 406
//! PRECONDITION_FAILED and the broker closes the channel, so every object is
//! declared on a channel of its own; all conflicts are collected and
//! reported together, each naming the object and the broker's text.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ExchangeKind};

use super::error::{precondition_failed, AmqpError, TopologyConflict, TopologyObject};
use super::settings::{AmqpSettings, MAX_NAME_BYTES};

/// The queues the routes need on the broker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    pub queues: Vec<QueueSpec>,
}

/// One route's queue: a durable quorum queue bound to the events exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    /// Topic patterns on the events exchange (`*` one word, `#` any).
    pub bindings: Vec<String>,
    /// Deliveries a consumer may refuse (nack with requeue) before the
    /// broker dead-letters the message with reason `delivery_limit`.
    pub delivery_limit: u32,
    /// When set, a `<name>.retry` queue holds messages this long, then puts
    /// them back on `<name>`.
    pub retry_ttl_ms: Option<u64>,
}

impl Topology {
    /// Checks what the broker would refuse anyway, before asking it: names
    /// and patterns over AMQP's 255 bytes, an empty queue name.
    pub fn validate(&self) -> Result<(), AmqpError> {
        check_names(self)
    }
}

impl QueueSpec {
    /// The retry queue's name, when the route has one.
    pub fn retry_queue(&self) -> Option<String> {
        self.retry_ttl_ms.map(|_| format!("{}.retry", self.name))
    }
}

// Queue argument names (RabbitMQ's).
const X_QUEUE_TYPE: &str = "x-queue-type";
const X_DELIVERY_LIMIT: &str = "x-delivery-limit";
const X_DEAD_LETTER_EXCHANGE: &str = "x-dead-letter-exchange";
const X_DEAD_LETTER_ROUTING_KEY: &str = "x-dead-letter-routing-key";
const X_DEAD_LETTER_STRATEGY: &str = "x-dead-letter-strategy";
const X_OVERFLOW: &str = "x-overflow";
const X_MESSAGE_TTL: &str = "x-message-ttl";

/// The pattern that binds the dead-letter queue to everything.
const ALL: &str = "#";

/// Declares everything: exchanges, the dead-letter queue, the routes'
/// queues and bindings. Each object gets a fresh channel from `conn`.
pub async fn declare(
    conn: &Connection,
    settings: &AmqpSettings,
    topology: &Topology,
) -> Result<(), AmqpError> {
    settings.validate()?;
    check_names(topology)?;
    let mut d = Declarer {
        conn,
        conflicts: Vec::new(),
    };
    d.exchange(&settings.exchange).await?;
    declare_dead_letter(&mut d, settings).await?;
    for q in &topology.queues {
        d.queue(&q.name, work_queue_args(settings, q)).await?;
        for pattern in &q.bindings {
            d.bind(&q.name, &settings.exchange, pattern).await?;
        }
        if let (Some(retry), Some(ttl)) = (q.retry_queue(), q.retry_ttl_ms) {
            d.queue(&retry, retry_queue_args(&q.name, ttl)).await?;
        }
    }
    d.finish()
}

/// Declares only the dead-letter exchange and queue (what the drain needs).
pub async fn declare_dead_letter_only(
    conn: &Connection,
    settings: &AmqpSettings,
) -> Result<(), AmqpError> {
    settings.validate()?;
    let mut d = Declarer {
        conn,
        conflicts: Vec::new(),
    };
    declare_dead_letter(&mut d, settings).await?;
    d.finish()
}

async fn declare_dead_letter(
    d: &mut Declarer<'_>,
    settings: &AmqpSettings,
) -> Result<(), AmqpError> {
    d.exchange(&settings.dead_letter_exchange).await?;
    // No delivery limit and no dead-lettering of its own: what cannot be
    // drained yet stays here until it can.
    let mut args = FieldTable::default();
    args.insert(X_QUEUE_TYPE.into(), long_string("quorum"));
    d.queue(&settings.dead_letter_queue, args).await?;
    d.bind(
        &settings.dead_letter_queue,
        &settings.dead_letter_exchange,
        ALL,
    )
    .await
}

/// A route queue: quorum, durable, dead-lettering at least once.
///
/// On RabbitMQ 3.10 `x-dead-letter-strategy = at-least-once` silently falls
/// back to at-most-once unless `x-overflow = reject-publish` is set too, so
/// both are always declared. `x-delivery-limit` has no default there: a
/// poison message would be redelivered forever without it.
fn work_queue_args(settings: &AmqpSettings, q: &QueueSpec) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(X_QUEUE_TYPE.into(), long_string("quorum"));
    args.insert(
        X_DELIVERY_LIMIT.into(),
        AMQPValue::LongLongInt(i64::from(q.delivery_limit)),
    );
    args.insert(
        X_DEAD_LETTER_EXCHANGE.into(),
        long_string(&settings.dead_letter_exchange),
    );
    args.insert(X_DEAD_LETTER_STRATEGY.into(), long_string("at-least-once"));
    args.insert(X_OVERFLOW.into(), long_string("reject-publish"));
    args
}

/// The retry queue `<name>.retry`: a message put there waits `ttl_ms`, then
/// dead-letters back to exactly `<name>`.
///
/// It dead-letters through the default exchange `""` with routing key
/// `<name>` (every queue is bound there by its own name), not back through
/// the events exchange: a retry meant for one consumer must not fan out
/// again to every other queue bound to the same routing key. It is a quorum
/// queue like the rest, dead-lettering at least once, so a retry is never
/// lost between the two queues.
fn retry_queue_args(work_queue: &str, ttl_ms: u64) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(X_QUEUE_TYPE.into(), long_string("quorum"));
    args.insert(
        X_MESSAGE_TTL.into(),
        AMQPValue::LongLongInt(i64::try_from(ttl_ms).unwrap_or(i64::MAX)),
    );
    args.insert(X_DEAD_LETTER_EXCHANGE.into(), long_string(""));
    args.insert(X_DEAD_LETTER_ROUTING_KEY.into(), long_string(work_queue));
    args.insert(X_DEAD_LETTER_STRATEGY.into(), long_string("at-least-once"));
    args.insert(X_OVERFLOW.into(), long_string("reject-publish"));
    args
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// Names the broker cannot take are a settings error, found before the
/// broker is asked (lapin panics on a short string over 255 bytes).
fn check_names(topology: &Topology) -> Result<(), AmqpError> {
    for q in &topology.queues {
        let retry_len = q.retry_ttl_ms.map_or(0, |_| ".retry".len());
        if q.name.is_empty() || q.name.len() + retry_len > MAX_NAME_BYTES {
            return Err(AmqpError::InvalidSettings(format!(
                "queue name {:?} must be 1 to {} bytes",
                q.name,
                MAX_NAME_BYTES - retry_len
            )));
        }
        if let Some(p) = q.bindings.iter().find(|p| p.len() > MAX_NAME_BYTES) {
            return Err(AmqpError::InvalidSettings(format!(
                "binding {p:?} of queue {} is over {MAX_NAME_BYTES} bytes",
                q.name
            )));
        }
    }
    Ok(())
}

struct Declarer<'c> {
    conn: &'c Connection,
    conflicts: Vec<TopologyConflict>,
}

impl Declarer<'_> {
    async fn channel(&self) -> Result<Channel, AmqpError> {
        self.conn.create_channel().await.map_err(AmqpError::channel(
            "opening a channel to declare the topology",
        ))
    }

    /// Sorts a declaration's outcome: a conflict is kept for the report
    /// (the channel died with it), anything else stops the declaration.
    async fn settle(
        &mut self,
        ch: Channel,
        object: TopologyObject,
        result: lapin::Result<()>,
    ) -> Result<(), AmqpError> {
        match result {
            Ok(()) => {
                // A failed close only leaks a channel number until the
                // connection goes; the declaration itself is done.
                let _ = ch.close(200, "OK".into()).await;
                Ok(())
            }
            Err(e) => match precondition_failed(&e) {
                Some(broker_text) => {
                    self.conflicts.push(TopologyConflict {
                        object,
                        broker_text,
                    });
                    Ok(())
                }
                None => Err(AmqpError::Declare {
                    object,
                    source: Box::new(e),
                }),
            },
        }
    }

    async fn exchange(&mut self, name: &str) -> Result<(), AmqpError> {
        let ch = self.channel().await?;
        let result = ch
            .exchange_declare(
                ShortString::from(name),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        self.settle(ch, TopologyObject::Exchange(name.into()), result)
            .await
    }

    async fn queue(&mut self, name: &str, args: FieldTable) -> Result<(), AmqpError> {
        let ch = self.channel().await?;
        let result = ch
            .queue_declare(
                ShortString::from(name),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                args,
            )
            .await
            .map(drop);
        self.settle(ch, TopologyObject::Queue(name.into()), result)
            .await
    }

    async fn bind(&mut self, queue: &str, exchange: &str, pattern: &str) -> Result<(), AmqpError> {
        let ch = self.channel().await?;
        let result = ch
            .queue_bind(
                ShortString::from(queue),
                ShortString::from(exchange),
                ShortString::from(pattern),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await;
        let object = TopologyObject::Binding {
            queue: queue.into(),
            exchange: exchange.into(),
            pattern: pattern.into(),
        };
        self.settle(ch, object, result).await
    }

    fn finish(self) -> Result<(), AmqpError> {
        if self.conflicts.is_empty() {
            Ok(())
        } else {
            Err(AmqpError::Conflict(self.conflicts))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_queues_dead_letter_at_least_once() {
        let q = QueueSpec {
            name: "cgt.q.results".into(),
            bindings: vec!["*.qc.#".into()],
            delivery_limit: 5,
            retry_ttl_ms: Some(30_000),
        };
        let args = work_queue_args(&AmqpSettings::default(), &q);
        let get = |k: &str| args.inner().get(k).cloned();
        assert_eq!(
            get(X_DEAD_LETTER_STRATEGY),
            Some(long_string("at-least-once"))
        );
        assert_eq!(get(X_OVERFLOW), Some(long_string("reject-publish")));
        assert_eq!(get(X_DELIVERY_LIMIT), Some(AMQPValue::LongLongInt(5)));
        assert_eq!(get(X_DEAD_LETTER_EXCHANGE), Some(long_string("cgt.dlx")));
        let retry = retry_queue_args(&q.name, 30_000);
        assert_eq!(
            retry.inner().get(X_DEAD_LETTER_ROUTING_KEY),
            Some(&long_string("cgt.q.results"))
        );
        assert_eq!(
            retry.inner().get(X_DEAD_LETTER_EXCHANGE),
            Some(&long_string(""))
        );
        assert_eq!(q.retry_queue().as_deref(), Some("cgt.q.results.retry"));
    }

    #[test]
    fn over_long_names_are_refused_before_the_broker_is_asked() {
        let t = Topology {
            queues: vec![QueueSpec {
                name: "q".repeat(250),
                bindings: vec![],
                delivery_limit: 1,
                retry_ttl_ms: Some(1),
            }],
        };
        let err = check_names(&t).unwrap_err();
        assert!(err.needs_operator(), "{err}");
    }
}
