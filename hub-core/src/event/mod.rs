//! The canonical therapy event, schema `cgt.event/v1`.
//!
//! Every connector's output ends up as a [`TherapyEvent`]: an envelope (ids,
//! chain of identity, times, provenance) around a typed [`EventData`] whose
//! variant is the event's kind. Events never carry a patient's name or birth
//! date: those stay in the identity registry.

mod data;
pub(crate) mod rfc3339;

pub use data::*;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::registry::Claims;

/// The schema tag every event carries.
pub const SCHEMA: &str = "cgt.event/v1";

/// One canonical event. Serialises to the JSON documented in DESIGN.md.
///
/// Deserialisation is written out below rather than derived: a derived
/// `flatten` buffers the input, and when anything in the build turns on
/// serde_json's `arbitrary_precision` (fhirbolt does, for FHIR decimals) a
/// buffered number arrives as a map and every `f64` field fails to parse.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TherapyEvent {
    /// Always [`SCHEMA`]; checked on deserialisation.
    #[serde(with = "schema_tag")]
    pub schema: (),
    /// UUIDv7: time-ordered, stable across redeliveries (the AMQP `message_id`).
    pub event_id: Uuid,
    /// The kind (`kind`) and its typed payload (`data`).
    #[serde(flatten)]
    pub data: EventData,
    /// Chain of identity identifier, when the source names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coi: Option<String>,
    /// The therapy order this event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Therapy product code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// When the thing happened, per the source.
    #[serde(with = "rfc3339::utc")]
    pub occurred_at: DateTime<Utc>,
    /// When cgthub took the message in.
    #[serde(with = "rfc3339::utc")]
    pub recorded_at: DateTime<Utc>,
    /// Where the event came from.
    pub source: Source,
    /// The identifiers and demographics its message states, for the
    /// identity registry; never serialised (events carry no patient data).
    #[serde(skip)]
    pub claims: Claims,
}

impl TherapyEvent {
    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        self.data.kind()
    }

    /// A fresh, time-ordered event id.
    pub fn new_id() -> Uuid {
        Uuid::now_v7()
    }
}

/// Provenance: which connector and partner, which message, which bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub connector: String,
    pub partner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// SHA-256 of the raw inbound payload, lowercase hex.
    pub payload_sha256: String,
    /// Present when people keyed the values in from a document (PDF
    /// entry): who entered, who verified, and the document's hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<ManualEntry>,
}

/// The provenance of hand-keyed values: a document read by one person and
/// confirmed by another, never the same (see the `pdf_entry` connector).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualEntry {
    /// Always `manual`.
    pub method: String,
    /// The hub's id of the source document.
    pub document_id: i64,
    /// SHA-256 of the document (the PDF) the values were read from.
    pub document_sha256: String,
    /// Who keyed the values in.
    pub entered_by: String,
    /// Who verified them (and signed), never `entered_by`.
    pub verified_by: String,
    #[serde(with = "rfc3339::utc")]
    pub verified_at: DateTime<Utc>,
    /// `double_entry` (keyed twice, blind), `review` (checked field by
    /// field) or `resolved` (mismatches settled by a verifier, with reasons).
    pub verification: String,
}

impl<'de> Deserialize<'de> for TherapyEvent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// The wire form: `kind` and `data` as plain fields, no buffering.
        #[derive(Deserialize)]
        struct Wire {
            #[serde(with = "schema_tag")]
            schema: (),
            event_id: Uuid,
            kind: EventKind,
            data: serde_json::Value,
            #[serde(default)]
            coi: Option<String>,
            #[serde(default)]
            order_id: Option<String>,
            #[serde(default)]
            product: Option<String>,
            #[serde(with = "rfc3339::utc")]
            occurred_at: DateTime<Utc>,
            #[serde(with = "rfc3339::utc")]
            recorded_at: DateTime<Utc>,
            source: Source,
        }
        let w = Wire::deserialize(d)?;
        let data = EventData::from_json(w.kind, w.data)
            .map_err(|e| serde::de::Error::custom(format!("{} data: {e}", w.kind.as_str())))?;
        Ok(TherapyEvent {
            schema: w.schema,
            event_id: w.event_id,
            data,
            coi: w.coi,
            order_id: w.order_id,
            product: w.product,
            occurred_at: w.occurred_at,
            recorded_at: w.recorded_at,
            source: w.source,
            claims: Claims::default(),
        })
    }
}

mod schema_tag {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(_: &(), s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(super::SCHEMA)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        let tag = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if tag == super::SCHEMA {
            Ok(())
        } else {
            Err(D::Error::custom(format!(
                "unsupported schema {tag:?}, expected {:?}",
                super::SCHEMA
            )))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
