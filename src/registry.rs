//! The connectors this binary knows, registered explicitly, one line each.

use std::path::Path;
use std::sync::Arc;

use hub_core::mapping::LoadError;
use hub_core::Connector;

use crate::config::Settings;

/// Builds every connector, loading its mappings from `mappings/<kind>/`.
/// Returns all load errors at once.
pub fn connectors(
    settings: &Settings,
    mappings: &Path,
) -> Result<Vec<Arc<dyn Connector>>, Vec<LoadError>> {
    let mut out: Vec<Arc<dyn Connector>> = Vec::new();
    let mut errors = Vec::new();
    match cgthub_hl7v2::Hl7Connector::load(settings.mllp.clone(), &mappings.join("hl7v2")) {
        Ok(c) => out.push(Arc::new(c)),
        Err(e) => errors.extend(e),
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}
