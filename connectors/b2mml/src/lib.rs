//! ISA-95 B2MML for cgthub (issue 7): MES documents (production
//! responses, schedules, material lots, batch records) in, as therapy
//! events. Pure: no sockets or files here; the HTTP endpoint and the drop
//! folder call [`B2mmlConnector`]'s `translate`.
//!
//! # Layout
//!
//! - [`tree`]: bytes → element arena in one streaming pass of quick-xml,
//!   namespace-aware (prefixes resolved by the tree); DOCTYPE, undeclared
//!   prefixes and malformed XML refused with line and column.
//! - [`kind`]: the documents cgthub reads ([`DocumentKind`]) and B2MML namespaces.
//! - [`document`]: [`B2mmlMessage`] (the root or a BOD's nouns) and how a
//!   [`Noun`] answers mapping paths.
//! - [`path`]: the mapping path language ([`B2mml`] format, `format = "b2mml"`).
//! - [`error`]: [`DecodeError`], stable codes and [`http_status`].
//! - [`connector`]: [`B2mmlConnector`]: decode → mapping → events, for the hub.
//!
//! # Outcomes
//!
//! Bytes that are not UTF-8 XML, carry a DOCTYPE, use an undeclared prefix,
//! are not in a B2MML namespace or are not a document cgthub reads are
//! `Decoded::Rejected` (stage decode). A document cgthub reads that has no
//! mapping for the partner, or whose mapping fails, is `Decoded::Failed`
//! (stage map). [`http_status`] gives the status an HTTP intake answers.

pub mod connector;
pub mod document;
pub mod error;
pub mod kind;
pub mod path;
#[doc(hidden)]
pub mod testdata;
pub mod tree;

pub use connector::{B2mmlConnector, CONTENT_TYPE, KIND};
pub use document::{B2mmlMessage, Noun};
pub use error::{codes, http_status, DecodeError};
pub use kind::{DocumentKind, Version};
pub use path::{B2mml, B2mmlPath};
