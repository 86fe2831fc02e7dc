//! Sinks: where routed events are delivered. One trait; the outbox relay
//! owns retries and dead letters, a sink only delivers and classifies.

mod jsonl;

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
    pub message: String,
}

impl SinkError {
    pub fn transient(message: impl Into<String>) -> Self {
        SinkError {
            class: ErrorClass::Transient,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        SinkError {
            class: ErrorClass::Permanent,
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
}
