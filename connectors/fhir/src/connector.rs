//! The FHIR connector: the pure translation used by fixtures and replays,
//! and the partner lookup by bearer token. The endpoint is in [`crate::http`].

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use hub_core::mapping::{LoadError, MappingSet};
use hub_core::sink::BoxFuture;
use hub_core::{Connector, ConnectorError, Decoded, Hub, Inbound};
use tokio_util::sync::CancellationToken;

use crate::config::FhirConfig;
use crate::intake::{self, Known, Target};
use crate::path::Fhir;

/// Partner name when a fixture or replay does not say.
pub const UNKNOWN_PARTNER: &str = "unknown";

/// FHIR R4 over HTTP.
pub struct FhirConnector {
    pub(crate) config: FhirConfig,
    pub(crate) mappings: MappingSet<Fhir>,
}

impl FhirConnector {
    /// Loads the mappings under `dir` (`mappings/fhir`).
    pub fn load(config: FhirConfig, dir: &Path) -> Result<Self, Vec<LoadError>> {
        Ok(FhirConnector {
            config,
            mappings: MappingSet::load_dir(dir)?,
        })
    }

    pub fn config(&self) -> &FhirConfig {
        &self.config
    }

    /// The partner a bearer token belongs to.
    pub fn partner_for_token(&self, token: &str) -> Option<&str> {
        hub_core::tokens::partner_for_token(&self.config.tokens, token)
    }
}

/// A new server-assigned id.
pub fn new_resource_id() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

impl Connector for FhirConnector {
    fn kind(&self) -> &'static str {
        intake::KIND
    }

    /// A transaction Bundle or one resource (a create), as a message. The
    /// store is not consulted: relative references stay unresolved and
    /// If-None-Exist is not applied.
    fn translate(&self, payload: Bytes, origin: &str, partner: Option<&str>) -> (Inbound, Decoded) {
        let partner = partner.unwrap_or(UNKNOWN_PARTNER);
        let ty = serde_json::from_slice::<serde_json::Value>(&payload)
            .ok()
            .and_then(|v| v.get("resourceType")?.as_str().map(str::to_string));
        let target = match ty {
            Some(t) if t != "Bundle" => Target::Create(t),
            _ => Target::System,
        };
        let unit = match intake::parse(&payload, &target) {
            Ok(p) => p.units.into_iter().next(),
            Err(e) => return intake::refused(payload, partner, origin, &e),
        };
        match unit {
            Some(Ok(unit)) => {
                let p = intake::prepare(
                    unit,
                    &Known::default(),
                    partner,
                    origin,
                    &self.mappings,
                    &mut new_resource_id,
                );
                (p.inbound, p.decoded)
            }
            Some(Err(e)) => intake::refused(payload, partner, origin, &e),
            None => {
                let inbound = Inbound::new(
                    intake::KIND,
                    partner,
                    intake::CONTENT_TYPE,
                    None,
                    payload,
                    origin,
                );
                (inbound, Decoded::Events(Vec::new()))
            }
        }
    }

    /// The endpoint is served by the hub's HTTP server; nothing to run.
    fn run(
        self: Arc<Self>,
        _hub: Hub,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ConnectorError>> {
        Box::pin(async move {
            shutdown.cancelled().await;
            Ok(())
        })
    }
}
