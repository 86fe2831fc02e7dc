//! The connectors this binary knows, registered explicitly, one line each.

use std::path::Path;
use std::sync::Arc;

use cgthub_b2mml::B2mmlConnector;
use cgthub_courier::CourierConnector;
use cgthub_fhir::FhirConnector;
use cgthub_lims_csv::LimsCsvConnector;
use hub_core::mapping::LoadError;
use hub_core::Connector;

use crate::config::Settings;

/// Builds every connector, loading its mappings from `mappings/<kind>/`.
/// Returns all load errors at once.
pub fn connectors(
    settings: &Settings,
    mappings: &Path,
) -> Result<Vec<Arc<dyn Connector>>, Vec<LoadError>> {
    Ok(load(settings, mappings)?.all)
}

/// Every connector, and apart those whose intake the hub's HTTP server and
/// drop folders serve.
pub struct Connectors {
    pub all: Vec<Arc<dyn Connector>>,
    pub fhir: Arc<FhirConnector>,
    pub b2mml: Arc<B2mmlConnector>,
    pub lims: Arc<LimsCsvConnector>,
    pub courier: Arc<CourierConnector>,
}

/// [`connectors`], with the HTTP and file ones apart.
pub fn load(settings: &Settings, mappings: &Path) -> Result<Connectors, Vec<LoadError>> {
    let mut all: Vec<Arc<dyn Connector>> = Vec::new();
    let mut errors = Vec::new();
    let hl7 = cgthub_hl7v2::Hl7Connector::load(settings.mllp.clone(), &mappings.join("hl7v2"));
    let fhir = FhirConnector::load(settings.fhir.clone(), &mappings.join("fhir"));
    let b2mml = B2mmlConnector::load(&mappings.join("b2mml"));
    let lims = LimsCsvConnector::load(&mappings.join("lims_csv"));
    let courier = CourierConnector::load(&mappings.join("courier"));
    let hl7 = keep(hl7, &mut all, &mut errors);
    let fhir = keep(fhir, &mut all, &mut errors);
    let b2mml = keep(b2mml, &mut all, &mut errors);
    let lims = keep(lims, &mut all, &mut errors);
    let courier = keep(courier, &mut all, &mut errors);
    match (hl7, fhir, b2mml, lims, courier) {
        (Some(_), Some(fhir), Some(b2mml), Some(lims), Some(courier)) if errors.is_empty() => {
            Ok(Connectors {
                all,
                fhir,
                b2mml,
                lims,
                courier,
            })
        }
        _ => Err(errors),
    }
}

fn keep<C: Connector>(
    loaded: Result<C, Vec<LoadError>>,
    all: &mut Vec<Arc<dyn Connector>>,
    errors: &mut Vec<LoadError>,
) -> Option<Arc<C>> {
    match loaded {
        Ok(c) => {
            let c = Arc::new(c);
            all.push(c.clone());
            Some(c)
        }
        Err(e) => {
            errors.extend(e);
            None
        }
    }
}
