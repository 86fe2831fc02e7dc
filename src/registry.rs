//! The connectors this binary knows, registered explicitly, one line each.

use std::path::Path;
use std::sync::Arc;

use cgthub_fhir::FhirConnector;
use hub_core::mapping::LoadError;
use hub_core::Connector;

use crate::config::Settings;

/// Builds every connector, loading its mappings from `mappings/<kind>/`.
/// Returns all load errors at once.
pub fn connectors(
    settings: &Settings,
    mappings: &Path,
) -> Result<Vec<Arc<dyn Connector>>, Vec<LoadError>> {
    Ok(with_fhir(settings, mappings)?.0)
}

/// Every connector, and the FHIR one apart (its endpoint is mounted on the
/// hub's HTTP server).
pub type WithFhir = (Vec<Arc<dyn Connector>>, Arc<FhirConnector>);

/// [`connectors`], and the FHIR connector apart.
pub fn with_fhir(settings: &Settings, mappings: &Path) -> Result<WithFhir, Vec<LoadError>> {
    let mut out: Vec<Arc<dyn Connector>> = Vec::new();
    let mut errors = Vec::new();
    match cgthub_hl7v2::Hl7Connector::load(settings.mllp.clone(), &mappings.join("hl7v2")) {
        Ok(c) => out.push(Arc::new(c)),
        Err(e) => errors.extend(e),
    }
    let fhir = match FhirConnector::load(settings.fhir.clone(), &mappings.join("fhir")) {
        Ok(c) => {
            let c = Arc::new(c);
            out.push(c.clone());
            Some(c)
        }
        Err(e) => {
            errors.extend(e);
            None
        }
    };
    match fhir {
        Some(f) if errors.is_empty() => Ok((out, f)),
        _ => Err(errors),
    }
}
