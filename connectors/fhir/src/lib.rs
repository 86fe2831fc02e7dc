//! FHIR R4 for cgthub: the `/fhir` endpoint EHRs write orders, tasks,
//! specimens and results to, the checks a FHIR server makes, and the
//! mapping paths that turn resources into therapy events.
//!
//! - [`model`]: the R4 model (fhirbolt), behind non-generic functions.
//! - [`codes`]: the types accepted, the required codes checked.
//! - [`path`], [`document`]: the FHIRPath subset mappings are written in.
//! - [`intake`]: from a request body to the message the hub stores.
//! - [`outcome`]: errors as OperationOutcomes.
//! - [`http`]: the axum routes.
//! - [`connector`], [`config`]: the connector and `[fhir]`.

pub mod codes;
pub mod config;
pub mod connector;
pub mod document;
pub mod http;
pub mod intake;
pub mod model;
pub mod outcome;
pub mod path;

pub use config::FhirConfig;
pub use connector::FhirConnector;
pub use path::{Fhir, FhirPath};
