//! Courier tracking and temperature-logger JSON for cgthub: a carrier's
//! track response (FedEx, UPS, DHL) or a logger's webhook in, as
//! `shipment.*`, `custody.transferred` and `temperature.reading` events.
//! Pure: no sockets here; the hub's HTTP intake calls [`CourierConnector`]'s
//! `translate`.
//!
//! # Layout
//!
//! - [`path`]: the mapping path language ([`Courier`] format,
//!   `format = "courier"`): JSON Pointer with `*`, filters
//!   (`*[statusCode=delivered]`) and relative pointers (`2/trackingNumber`).
//! - [`document`]: [`CourierDocument`], how a parsed payload answers paths;
//!   scopes remember their ancestry.
//! - [`dialect`]: a mapping's `[dialect] when = "/…"`, the shape it is for.
//! - [`error`]: stable [`codes`] and [`http_status`].
//! - [`connector`]: [`CourierConnector`]: JSON → chosen mapping → events.
//!
//! # Which mapping applies
//!
//! Payloads carry no message type, so a mapping names the shape it reads
//! with `when` (a path that must exist). The mappings naming the partner are
//! tried first, then those for `"*"`, each in file-name order; the first
//! whose `when` matches (or that has none) applies. Two mappings of one
//! partner with the same `when`, or one after a mapping of that partner
//! without `when`, are refused when loading: which mapping runs must never
//! depend on file order. (The generic check also refuses two mappings of
//! one partner with the same message type: give each its own,
//! `fedex.track`, `ups.track`.)
//!
//! # Outcomes
//!
//! Bytes that are not JSON are `Decoded::Rejected` (`malformed_json`, with
//! line and column); a scalar at the top is `unexpected_json`; JSON no
//! mapping matches is `no_mapping` (naming the partner and the top-level
//! keys). A mapping that fails is `Decoded::Failed` with the engine's code.

pub mod connector;
pub mod dialect;
pub mod document;
pub mod error;
pub mod path;

pub use connector::{CourierConnector, CONTENT_TYPE, KIND, UNKNOWN_PARTNER};
pub use dialect::{CourierDialect, When};
pub use document::CourierDocument;
pub use error::{codes, http_status};
pub use path::{Courier, CourierPath};
