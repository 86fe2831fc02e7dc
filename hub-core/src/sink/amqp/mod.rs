//! The RabbitMQ (AMQP 0-9-1) side: a sink that publishes events with
//! publisher confirms, the topology it declares, and the drain that brings
//! what the broker dead-lettered back into the hub.
//!
//! # Layout
//!
//! - [`settings`]: the `[amqp]` config section, and a URL safe to log.
//! - [`topology`]: exchanges, route queues (quorum), retry and dead-letter
//!   queues; declared at start and after every reconnect.
//! - `connection`: the supervisor that keeps a connection up (backoff,
//!   jitter, re-declaring) for the sink and the drain alike.
//! - `publish`: [`AmqpSink`], the [`Sink`](crate::sink::Sink).
//! - `dead_queue`: [`DeadQueueDrain`].
//! - [`baseline`]: a plain lapin publisher to measure the sink against.
//! - `error`: [`AmqpError`], conflicts named for the operator.
//!
//! # The message
//!
//! Each outbox item becomes one persistent message on `amqp.exchange` with
//! the item's routing key, `mandatory`, body = the event's JSON, and:
//! `message_id` = event id, `type` = event kind, `content_type` =
//! `application/json`, `timestamp` = publish time (unix seconds), headers
//! `schema` (`cgt.event/v1`), `coi`, `product`, `partner` (each omitted when
//! the event has none).

pub mod baseline;
mod connection;
mod dead_queue;
mod error;
mod publish;
pub mod settings;
pub mod topology;

pub use baseline::{raw_publish, BaselineStats};
pub use connection::AmqpHealth;
pub use dead_queue::{DeadDelivery, DeadHandler, DeadQueueDrain, DRAIN_PREFETCH};
pub use error::{AmqpError, TopologyConflict, TopologyObject};
pub use publish::AmqpSink;
pub use settings::{AmqpSettings, RedactedUrl};
pub use topology::{declare, declare_dead_letter_only, QueueSpec, Topology};

/// Header: the event's chain of identity.
pub const HEADER_COI: &str = "coi";
/// Header: the therapy product code.
pub const HEADER_PRODUCT: &str = "product";
/// Header: the partner the event's message came from.
pub const HEADER_PARTNER: &str = "partner";
/// Header: the body's schema (`cgt.event/v1`).
pub const HEADER_SCHEMA: &str = "schema";
/// The body's content type.
pub const CONTENT_TYPE_JSON: &str = "application/json";
