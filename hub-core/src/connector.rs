//! The one trait every partner protocol implements.

use std::sync::Arc;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::inbound::{Decoded, Inbound};
use crate::sink::BoxFuture;

/// A partner protocol: how its bytes become events (pure), and how it talks
/// to partners (I/O). The runtime owns retries and shutdown; a connector
/// owns its protocol.
pub trait Connector: Send + Sync + 'static {
    /// Connector kind, a protocol noun: `hl7v2`, `fhir`, `lims_csv`.
    fn kind(&self) -> &'static str;

    /// Decodes and maps one payload. Pure: no I/O. `partner` overrides the
    /// connector's own rule for naming the sender (fixtures use it).
    fn translate(&self, payload: Bytes, origin: &str, partner: Option<&str>) -> (Inbound, Decoded);

    /// Serves partners until `shutdown` is cancelled. Every message is
    /// handed to [`Hub::submit`] and answered from its receipt only.
    fn run(
        self: Arc<Self>,
        hub: Hub,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ConnectorError>>;
}

/// A connector that cannot go on (its port is taken, its folder is gone).
#[derive(Debug, thiserror::Error)]
#[error("{connector}: {message}")]
pub struct ConnectorError {
    pub connector: &'static str,
    pub message: String,
}
