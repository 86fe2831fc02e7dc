//! Typed `data` for every event kind.
//!
//! Each kind's payload is a struct with `deny_unknown_fields`, so a mapping
//! that writes a misspelt field is refused when it is loaded and tested, not
//! silently published. New kinds are added here, never as free-form maps.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::rfc3339;

macro_rules! kinds {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal => $ty:ty ),+ $(,)?) => {
        /// The kind of a therapy event; its dot name is usable in routing keys.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum EventKind {
            $( $(#[$doc])* #[serde(rename = $name)] $variant, )+
        }

        impl EventKind {
            /// Every kind, in schema order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),+];

            /// The dot name, e.g. `qc.result_reported`.
            pub const fn as_str(self) -> &'static str {
                match self { $(EventKind::$variant => $name,)+ }
            }

            /// Parses a dot name.
            pub fn parse(name: &str) -> Option<Self> {
                match name { $($name => Some(EventKind::$variant),)+ _ => None }
            }
        }

        /// An event's payload, tagged by kind: serialises as `"kind": …, "data": {…}`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind", content = "data")]
        #[non_exhaustive]
        pub enum EventData {
            $( $(#[$doc])* #[serde(rename = $name)] $variant($ty), )+
        }

        impl EventData {
            /// The kind of this payload.
            pub fn kind(&self) -> EventKind {
                match self { $(EventData::$variant(_) => EventKind::$variant,)+ }
            }

            /// Builds the payload of `kind` from any serde source, checking its fields.
            pub fn deserialize_as<'de, D: serde::Deserializer<'de>>(kind: EventKind, d: D) -> Result<Self, D::Error> {
                Ok(match kind { $(EventKind::$variant => EventData::$variant(<$ty as serde::Deserialize>::deserialize(d)?),)+ })
            }

            /// Builds the payload of `kind` from a JSON object, checking its fields.
            pub fn from_json(kind: EventKind, data: serde_json::Value) -> Result<Self, serde_json::Error> {
                Ok(match kind { $(EventKind::$variant => EventData::$variant(serde_json::from_value(data)?),)+ })
            }
        }
    };
}

kinds! {
    /// A new therapy order.
    OrderPlaced = "order.placed" => Order,
    /// An order changed (status, schedule, details).
    OrderUpdated = "order.updated" => Order,
    /// An order was cancelled or discontinued.
    OrderCancelled = "order.cancelled" => Order,
    /// Apheresis or other collection booked.
    CollectionScheduled = "collection.scheduled" => CollectionScheduled,
    /// Starting material collected.
    CollectionCompleted = "collection.completed" => CollectionCompleted,
    /// Material changed hands.
    CustodyTransferred = "custody.transferred" => CustodyTransferred,
    /// A shipment was booked with a courier.
    ShipmentCreated = "shipment.created" => ShipmentCreated,
    /// A courier reported progress.
    ShipmentStatus = "shipment.status" => ShipmentStatus,
    /// A shipment arrived.
    ShipmentDelivered = "shipment.delivered" => ShipmentDelivered,
    /// One logger reading.
    TemperatureReading = "temperature.reading" => TemperatureReading,
    /// Temperature left its allowed range.
    TemperatureExcursion = "temperature.excursion" => TemperatureExcursion,
    /// Material received at a site.
    MaterialReceived = "material.received" => MaterialReceived,
    /// A manufacturing step (ISA-95 segment) finished.
    ManufacturingStepCompleted = "manufacturing.step_completed" => ManufacturingStepCompleted,
    /// A manufacturing slot was scheduled (ISA-95 ProductionSchedule / SegmentRequirement).
    ManufacturingScheduled = "manufacturing.scheduled" => ManufacturingScheduled,
    /// The batch record changed.
    BatchRecordUpdated = "batch.record_updated" => BatchRecordUpdated,
    /// Quality-control results were reported.
    QcResultReported = "qc.result_reported" => QcResultReported,
    /// A deviation was raised.
    DeviationRaised = "deviation.raised" => DeviationRaised,
    /// A batch was released, rejected or quarantined.
    BatchDispositioned = "batch.dispositioned" => BatchDispositioned,
    /// A person or system verified the chain of identity.
    IdentityVerified = "identity.verified" => IdentityVerified,
    /// The product was infused.
    InfusionCompleted = "infusion.completed" => InfusionCompleted,
    /// cgthub or a partner raised an alert.
    AlertRaised = "alert.raised" => AlertRaised,
    /// Patient administrative data changed (identifiers only; no name or birth date).
    PatientUpdated = "patient.updated" => PatientUpdated,
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A code from a code system (HL7 CE/CWE, FHIR Coding).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coded {
    /// Empty when the source gives only a text (HL7 `^CBC PANEL`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

/// An identifier with its type and assigning authority (HL7 CX, FHIR Identifier).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identifier {
    pub value: String,
    /// Identifier type code, e.g. `MR`, `COI`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub id_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
}

/// A measured amount with its (UCUM) unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantity {
    pub value: f64,
    pub unit: String,
}

/// `order.placed`, `order.updated`, `order.cancelled`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placer_order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filler_order_id: Option<String>,
    /// The source's order control code (HL7 ORC-1, e.g. `NW`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Coded>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Ordering provider's identifier (never the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_provider_id: Option<String>,
    #[serde(
        default,
        with = "rfc3339::utc_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub requested_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specimen_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patient_ids: Vec<Identifier>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnoses: Vec<Coded>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `collection.scheduled`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionScheduled {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(with = "rfc3339::utc")]
    pub scheduled_start: DateTime<Utc>,
    #[serde(
        default,
        with = "rfc3339::utc_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub scheduled_end: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection_type: Option<String>,
}

/// `collection.completed`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionCompleted {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specimen_id: Option<String>,
    /// ISBT 128 donation identification number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub donation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell_count: Option<Quantity>,
}

/// `custody.transferred`: the material changed hands.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodyTransferred {
    pub from: String,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// Who signed for it (a person's role or badge, as the partner gives it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// How the receiver checked the material's identity (`label_scan`,
    /// `two_person_check`, `signature`), as the partner reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_verified_by: Option<String>,
}

/// `shipment.created`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipmentCreated {
    pub tracking_number: String,
    pub carrier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(
        default,
        with = "rfc3339::utc_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub expected_delivery: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// `shipment.status`: one courier scan. The event's `occurred_at` is the
/// scan's own time, so late or out-of-order scans sort where they belong.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipmentStatus {
    pub tracking_number: String,
    pub carrier: String,
    /// Normalised status, e.g. `in_transit`, `exception`.
    pub status: String,
    /// The courier's own status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The courier's estimated delivery time, as of this scan.
    #[serde(
        default,
        with = "rfc3339::utc_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub eta: Option<DateTime<Utc>>,
}

/// `shipment.delivered`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipmentDelivered {
    pub tracking_number: String,
    pub carrier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// `temperature.reading`: one logger reading at the event's `occurred_at`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemperatureReading {
    pub logger_id: String,
    pub celsius: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// The cold-chain profile the shipper set the logger to
    /// (`fresh_apheresis`, `cryopreserved`), when the logger reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// `temperature.excursion`: readings left the profile's range beyond its
/// tolerance. Raised when it opens (`ended_at` absent) and again when it
/// closes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemperatureExcursion {
    pub logger_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// The profile whose range was left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_low_celsius: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_high_celsius: Option<f64>,
    /// The reading furthest outside the range.
    pub peak_celsius: f64,
    /// The first reading outside the range.
    #[serde(with = "rfc3339::utc")]
    pub started_at: DateTime<Utc>,
    /// The first reading back inside; absent while it lasts.
    #[serde(
        default,
        with = "rfc3339::utc_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ended_at: Option<DateTime<Utc>>,
    /// From start to end (or to the last reading, while open).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
}

/// `material.received`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaterialReceived {
    pub material_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_by: Option<String>,
}

/// `manufacturing.step_completed` (ISA-95 segment response).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManufacturingStepCompleted {
    pub batch_id: String,
    pub step: String,
    #[serde(
        default,
        with = "rfc3339::utc_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(
        default,
        with = "rfc3339::utc_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub equipment: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub personnel: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub materials: Vec<MaterialActual>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<ProcessValue>,
}

/// `manufacturing.scheduled`: a slot booked for a batch or a segment of it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManufacturingScheduled {
    /// The schedule or request id the MES gave the slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    /// The process segment (step) the slot is for, when the schedule names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(
        default,
        with = "rfc3339::utc_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub scheduled_start: Option<DateTime<Utc>>,
    #[serde(
        default,
        with = "rfc3339::utc_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub scheduled_end: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub equipment: Vec<String>,
}

/// A material consumed or produced by a step.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaterialActual {
    pub material_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#use: Option<String>,
}

/// A recorded process parameter.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessValue {
    pub name: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// `batch.record_updated`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRecordUpdated {
    pub batch_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `qc.result_reported`: one report (HL7 OBR, FHIR DiagnosticReport) with its results.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QcResultReported {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specimen_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panel: Option<Coded>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_status: Option<ResultStatus>,
    pub results: Vec<QcResult>,
}

/// One test result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QcResult {
    pub test: Coded,
    /// Value type as the source gives it (HL7 OBX-2: NM, ST, CE, ED…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_type: Option<String>,
    /// The value as text, exactly as reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value as a number, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numeric_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpretation: Option<Interpretation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ResultStatus>,
    #[serde(
        default,
        with = "rfc3339::utc_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub observed_at: Option<DateTime<Utc>>,
    /// Pass/fail against specification, when the source says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analyst: Option<String>,
    /// The specification the result is judged against, as the source writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specification: Option<String>,
    /// The instrument that measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instrument: Option<String>,
}

/// Result status (HL7 table 0085, FHIR ObservationStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResultStatus {
    Registered,
    Preliminary,
    Final,
    Corrected,
    Amended,
    Cancelled,
    EnteredInError,
    Pending,
    Unknown,
}

/// Abnormal flag (HL7 table 0078), normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Interpretation {
    Normal,
    Abnormal,
    High,
    Low,
    CriticalHigh,
    CriticalLow,
    Positive,
    Negative,
}

/// `deviation.raised`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviationRaised {
    pub deviation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
}

/// `batch.dispositioned`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchDispositioned {
    pub batch_id: String,
    pub disposition: Disposition,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A batch disposition decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Disposition {
    Released,
    ConditionallyReleased,
    Rejected,
    Quarantined,
}

/// `identity.verified`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityVerified {
    pub verified_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<Identifier>,
}

/// `infusion.completed`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfusionCompleted {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bag_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
}

/// `alert.raised`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRaised {
    pub alert: String,
    pub severity: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related_event_id: Option<String>,
    /// When it will be too late (a viability window's end).
    #[serde(
        default,
        with = "rfc3339::utc_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub deadline: Option<DateTime<Utc>>,
    /// The shipment it is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// Identity alerts: each identifier involved, the COI the registry
    /// ties it to and where that link came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<AlertLink>,
}

/// One identifier behind an identity alert (an MRN's value never shown).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertLink {
    /// `specimen S-1 (LAB)`, `mrn … (HOSP)`, or `coi` for the event's own.
    pub identifier: String,
    pub coi: String,
    /// `connector/partner` that linked it; absent for the event's own COI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked_by_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked_at: Option<String>,
}

/// `patient.updated`: administrative update (HL7 ADT^A08). Identifiers only.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientUpdated {
    /// Identifiers that are not patient data (the COI); the MRN stays in
    /// the identity registry, which gives the event its COI.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patient_ids: Vec<Identifier>,
    /// The source's trigger (HL7 EVN-1 / MSH-9.2), e.g. `A08`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// A date the source gives for the change (not a birth date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_date: Option<NaiveDate>,
}
