//! What can go wrong talking to RabbitMQ, typed by what the operator or the
//! supervisor does about it.

use std::fmt;

use lapin::protocol::{AMQPErrorKind, AMQPSoftError};

/// An AMQP object the hub declares.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopologyObject {
    Exchange(String),
    Queue(String),
    /// A queue's binding to an exchange with a pattern.
    Binding {
        queue: String,
        exchange: String,
        pattern: String,
    },
}

impl fmt::Display for TopologyObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopologyObject::Exchange(name) => write!(f, "exchange {name}"),
            TopologyObject::Queue(name) => write!(f, "queue {name}"),
            TopologyObject::Binding {
                queue,
                exchange,
                pattern,
            } => write!(
                f,
                "binding of queue {queue} to exchange {exchange} with {pattern:?}"
            ),
        }
    }
}

/// An object that already exists on the broker with other settings (the
/// broker answered 406 PRECONDITION_FAILED to its declaration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyConflict {
    pub object: TopologyObject,
    /// The broker's own words, e.g. `inequivalent arg 'x-queue-type' for
    /// queue 'cgt.q.results' in vhost '/': received the value 'quorum' of
    /// type 'longstr' but current is none`.
    pub broker_text: String,
}

impl fmt::Display for TopologyConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let advice = match &self.object {
            TopologyObject::Exchange(_) => {
                "delete it (rabbitmqctl delete_exchange, or the management UI) or configure \
                 another amqp exchange name"
            }
            TopologyObject::Queue(_) => {
                "delete it (its messages go with it: drain them first) or make the route's \
                 queue settings match"
            }
            TopologyObject::Binding { .. } => "remove the conflicting binding",
        };
        write!(
            f,
            "{} exists with different arguments: {} — {advice}",
            self.object, self.broker_text
        )
    }
}

/// A failure of the AMQP side.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AmqpError {
    /// The `[amqp]` settings cannot work (fix the config).
    #[error("invalid amqp settings: {0}")]
    InvalidSettings(String),
    /// The broker's topology disagrees with ours: the hub must not start
    /// until an operator reconciles them.
    #[error("RabbitMQ topology conflict: {}", list(.0))]
    Conflict(Vec<TopologyConflict>),
    /// No connection (refused, timed out, TLS, authentication).
    #[error("cannot connect to RabbitMQ at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The broker refused a declaration for another reason than a conflict
    /// (permissions, a missing exchange, a lost connection).
    #[error("declaring {object}: {source}")]
    Declare {
        object: TopologyObject,
        source: Box<lapin::Error>,
    },
    /// A channel could not be opened or set up.
    #[error("{what}: {source}")]
    Channel {
        what: &'static str,
        source: Box<lapin::Error>,
    },
    /// A publish failed or its confirm did not come.
    #[error("{0}")]
    Publish(String),
}

fn list(conflicts: &[TopologyConflict]) -> String {
    conflicts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl AmqpError {
    /// True when retrying cannot help until an operator acts: the hub
    /// refuses to start on these.
    pub fn needs_operator(&self) -> bool {
        match self {
            AmqpError::InvalidSettings(_) | AmqpError::Conflict(_) => true,
            AmqpError::Declare { source, .. } => is_access_refused(source),
            _ => false,
        }
    }

    pub(crate) fn channel(what: &'static str) -> impl FnOnce(lapin::Error) -> AmqpError {
        move |source| AmqpError::Channel {
            what,
            source: Box::new(source),
        }
    }
}

/// The broker's 406 PRECONDITION_FAILED text, when that is the error.
pub(crate) fn precondition_failed(e: &lapin::Error) -> Option<String> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp)
            if matches!(
                amqp.kind(),
                AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
            ) =>
        {
            Some(amqp.get_message().to_string())
        }
        _ => None,
    }
}

fn is_access_refused(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(amqp)
        if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)))
}
