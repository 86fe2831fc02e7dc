//! Sinks: where routed events are delivered. One trait; the outbox relay
//! owns retries and dead letters, a sink only delivers and classifies.

pub mod amqp;
pub mod coldchain;
pub mod fhir_task;
mod jsonl;

pub use amqp::AmqpSink;
pub use coldchain::ColdChainSink;
pub use fhir_task::{ClientCredentials, FhirAuth, FhirTaskConfig, FhirTaskSink, Secret};
pub use jsonl::JsonlSink;

use std::future::Future;
use std::pin::Pin;

use crate::error::ErrorClass;
use crate::store::OutboxItem;

/// A boxed future, so sinks can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a delivery failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    pub class: ErrorClass,
    /// The dead letter's reason code if this failure ends the event's road:
    /// `delivery_failed`, or a sink's own such as `unroutable`.
    pub code: &'static str,
    pub message: String,
}

/// The code of an ordinary failed delivery.
pub const DELIVERY_FAILED: &str = "delivery_failed";
/// A broker had no queue bound for the event's routing key.
pub const UNROUTABLE: &str = "unroutable";

impl SinkError {
    pub fn transient(message: impl Into<String>) -> Self {
        SinkError {
            class: ErrorClass::Transient,
            code: DELIVERY_FAILED,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        SinkError {
            class: ErrorClass::Permanent,
            code: DELIVERY_FAILED,
            message: message.into(),
        }
    }

    /// The broker returned the message: no binding matches its routing
    /// key. Retrying cannot help until an operator binds a queue.
    pub fn unroutable(message: impl Into<String>) -> Self {
        SinkError {
            class: ErrorClass::Permanent,
            code: UNROUTABLE,
            message: message.into(),
        }
    }
}

/// A destination for events.
pub trait Sink: Send + Sync + 'static {
    /// The configured name (`[sinks.NAME]`).
    fn name(&self) -> &str;

    /// Delivers a batch, in order. Returns one result per item; `Ok` means
    /// the item is durable at the destination (fsynced, confirmed).
    fn deliver<'a>(&'a self, batch: &'a [OutboxItem]) -> BoxFuture<'a, Vec<Result<(), SinkError>>>;

    /// False while the destination is unreachable as a whole (a broker
    /// down). The relay then waits instead of spending the events' retry
    /// attempts on an outage that is nobody's fault but the link's.
    fn ready(&self) -> bool {
        true
    }
}
