//! The canonical event built from verified values: one `qc.result_reported`
//! per certificate, the specimen and batch claimed for the identity registry.

use chrono::{DateTime, Utc};
use hub_core::event::{Coded, EventData, QcResult, QcResultReported, ResultStatus, Source};
use hub_core::registry::{Claimed, Claims, IdKind};
use hub_core::TherapyEvent;

use crate::template::Template;
use crate::values::{parse_decimal, parse_time, Values};

/// The event for `values`, which [`Values::validate`] has accepted.
///
/// `source` is the caller's (with `source.entry` saying who entered and who
/// verified). `occurred_at` is the document's date tested; were it
/// unreadable (unvalidated values), `recorded_at` stands in.
pub fn to_event(
    values: &Values,
    template: &Template,
    source: Source,
    recorded_at: DateTime<Utc>,
) -> TherapyEvent {
    let text = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let tested_at = parse_time(&values.tested_at);
    if tested_at.is_none() {
        tracing::warn!(partner = %template.partner, "pdf entry without a readable date tested; using the time recorded");
    }
    let results = values
        .tests
        .iter()
        .filter(|t| !t.is_blank())
        .map(|t| {
            let numeric = parse_decimal(&t.result);
            QcResult {
                test: Coded {
                    code: t.code.trim().to_string(),
                    display: text(&t.name),
                    system: None,
                },
                value_type: Some(if numeric.is_some() { "NM" } else { "ST" }.to_string()),
                value: text(&t.result),
                numeric_value: numeric,
                unit: text(&t.unit),
                status: Some(ResultStatus::Final),
                observed_at: parse_time(&t.tested_at).or(tested_at),
                passed: match t.pass_fail.trim().to_ascii_lowercase().as_str() {
                    "pass" => Some(true),
                    "fail" => Some(false),
                    _ => None,
                },
                analyst: text(&t.analyst).or_else(|| text(&values.analyst)),
                specification: text(&t.specification),
                ..QcResult::default()
            }
        })
        .collect();
    let mut claims = Claims::default();
    if let Some(specimen) = text(&values.specimen_id) {
        claims
            .identifiers
            .push(Claimed::new(IdKind::Specimen, "", specimen));
    }
    if let Some(batch) = text(&values.batch_id) {
        claims
            .identifiers
            .push(Claimed::new(IdKind::Batch, "", batch));
    }
    TherapyEvent {
        schema: (),
        event_id: TherapyEvent::new_id(),
        data: EventData::QcResultReported(QcResultReported {
            report_id: text(&values.report_id),
            specimen_id: text(&values.specimen_id),
            batch_id: text(&values.batch_id),
            panel: None,
            report_status: Some(ResultStatus::Final),
            results,
        }),
        coi: text(&values.coi),
        order_id: None,
        product: template.product.clone(),
        occurred_at: tested_at.unwrap_or(recorded_at),
        recorded_at,
        source,
        claims,
    }
}
