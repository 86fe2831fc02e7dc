//! cgthub's engine.
//!
//! # Layout
//!
//! - [`event`]: the canonical therapy event (`cgt.event/v1`) and its typed data.
//! - [`inbound`]: what a connector hands the hub ([`Inbound`]) and what it gets back ([`Receipt`]).
//! - [`inbox`]: drop folders: complete files taken once, moved to `processed/` or `rejected/` with a report.
//! - [`connector`]: the one trait every partner protocol implements.
//! - [`mapping`]: declarative mappings (TOML) from a parsed message to events.
//! - [`routing`]: routes (TOML) from events to sinks.
//! - [`identity`]: chain-of-identity identifiers: ISBT 128 COI and DIN,
//!   product-specific COI formats, the ISO/IEC 7064 MOD 37-2 check character.
//! - [`store`]: the durable store: raw messages, events, outbox, dead letters,
//!   audit log; group commit.
//! - [`sink`]: the one trait every destination implements, and the sinks:
//!   JSONL files, RabbitMQ, FHIR Tasks on an EHR.
//! - [`outbox`]: the relay that delivers routed events to sinks, with retries.
//! - [`coi_check`]: the COI check at intake: every mapped event's COI
//!   normalised, or the message failed with `invalid_coi`.
//! - [`registry`]: the identity registry's rules: what a message claims,
//!   and reconciling each event against the chains of identity.
//! - [`hub`]: the pipeline that ties intake, mapping, routing and the store together.
//! - [`dead_letters`]: replaying dead letters from the stage that failed, and purging them.
//! - [`tokens`]: partners' bearer tokens for HTTP intake, kept as SHA-256.
//! - [`metrics`]: metric names and the Prometheus registry.
//! - [`error`]: stages and error classes shared by all of the above.

pub mod coi_check;
pub mod coldchain;
pub mod connector;
pub mod dead_letters;
pub mod error;
pub mod event;
pub mod hub;
pub mod identity;
pub mod inbound;
pub mod inbox;
pub mod mapping;
pub mod metrics;
pub mod outbox;
pub mod registry;
pub mod routing;
pub mod sink;
pub mod store;
pub mod tokens;

pub use connector::{Connector, ConnectorError};
pub use event::{EventData, EventKind, TherapyEvent};
pub use hub::Hub;
pub use inbound::{Decoded, Inbound, Outcome, Problem, Receipt, ResourceWrite};
pub use metrics::Metrics;
