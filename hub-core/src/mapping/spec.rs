//! The mapping file format (TOML), as written by operators.
//!
//! ```toml
//! description = "Lab results → qc.result_reported, one event per OBR"
//! format = "hl7v2"
//! message_types = ["ORU^R01"]
//! partners = ["*"]            # or partner names; a named partner wins over "*"
//! timezone = "UTC"            # for source times without an offset ("+01:00", "Europe/Paris")
//!
//! [maps.result_status]        # value maps, referenced by name
//! F = "final"
//! "*" = "unknown"             # optional fallback; without it an unmapped value is an error
//!
//! [[events]]
//! kind = "qc.result_reported" # or { path = "ORC-1", map = "order_control" }
//! foreach = "OBR"             # one event per OBR (optional; absent = one per message)
//! coi = "PID-3[5=COI].1"
//! order_id = { paths = ["ORC-2.1", "OBR-2.1"] }
//! occurred_at = { paths = ["OBR-7", "MSH-7"] }   # required; converted as a timestamp
//!
//! [events.data]
//! report_status = { path = "OBR-25", map = "result_status" }
//! [events.data.results]
//! foreach = "OBX"             # a list: one object per OBX in this OBR
//! [events.data.results.fields]
//! value = "OBX-5"
//! numeric_value = { path = "OBX-5", convert = "try_number" }
//! ```
//!
//! A field is either a path (string) or a table with: `path` or `paths`
//! (first that has a value) or `value` (a constant) or `concat` (below);
//! `map` (a map name or an inline table); `convert`; `time_format` (below);
//! `default`; `required`; and `fields` (an object) with optional `foreach`
//! (a list of objects).
//!
//! `concat = ["0/date", "0/time", "0/gmtOffset"]` builds one value from
//! pieces: the first value of each path, joined with nothing. If any piece
//! has no value, the field has none (a time without its offset must not pass
//! for a whole one). With `separator = ", "` the pieces are joined with it
//! and pieces without a value are left out (`city, state, country` when the
//! state is missing); the field has no value only when no piece has one.
//! `map` and `convert` then apply to the joined text as usual:
//!
//! ```toml
//! occurred_at = { concat = ["0/date", "0/time", "0/gmtOffset"] }  # 20250819081559-05:00
//! location = { concat = ["0/city", "0/state", "0/country"], separator = ", " }
//! ```
//!
//! `time_format = "%Y-%m-%dT%H:%M:%S %z"` reads a timestamp in a partner's own
//! layout (chrono strftime syntax) instead of HL7 TS / ISO 8601. It goes with
//! `convert = "timestamp"` (implied when `convert` is absent). A format with
//! an offset (`%z`, `%:z`, `%#z`, `%+`) reads a time with its offset; without
//! one, the time is read in the mapping's `timezone`. A bad format is refused
//! when the mapping loads; a value that does not match is a `bad_value`
//! mapping error naming the format.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// A whole mapping file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    #[serde(default)]
    pub description: Option<String>,
    pub format: Spanned<String>,
    pub message_types: Spanned<Vec<String>>,
    #[serde(default = "any_partner")]
    pub partners: Vec<String>,
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    #[serde(default)]
    pub maps: BTreeMap<String, BTreeMap<String, toml::Value>>,
    /// Format-specific settings (see `Format::Dialect`).
    #[serde(default)]
    pub dialect: Option<Spanned<toml::Table>>,
    pub events: Vec<EventSpec>,
}

fn any_partner() -> Vec<String> {
    vec!["*".to_string()]
}

/// One `[[events]]` block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    pub kind: Spanned<FieldSpec>,
    #[serde(default)]
    pub foreach: Option<Spanned<String>>,
    /// With `foreach`: finding nothing to iterate is fine (otherwise an error).
    #[serde(default)]
    pub optional: bool,
    #[serde(default)]
    pub coi: Option<Spanned<FieldSpec>>,
    #[serde(default)]
    pub order_id: Option<Spanned<FieldSpec>>,
    #[serde(default)]
    pub product: Option<Spanned<FieldSpec>>,
    pub occurred_at: Spanned<FieldSpec>,
    #[serde(default)]
    pub data: BTreeMap<String, Spanned<FieldSpec>>,
    /// What the message says about whose material this is, for the
    /// identity registry (never part of the event).
    #[serde(default)]
    pub identity: Option<IdentitySpec>,
}

/// `[events.identity]`: identifiers (each with an optional `*_authority`,
/// the issuing system) and demographics, read beside the event.
///
/// ```toml
/// [events.identity]
/// mrn = "PID-3[5=MR].1"
/// mrn_authority = "PID-3[5=MR].4.1"
/// specimen = { paths = ["SPM-2.1.1", "OBR-3.1"] }
/// name = "PID-5"
/// birth_date = "PID-7"
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    /// The issuing system of the event's `order_id`.
    pub order_authority: Option<Spanned<FieldSpec>>,
    pub mrn: Option<Spanned<FieldSpec>>,
    pub mrn_authority: Option<Spanned<FieldSpec>>,
    pub specimen: Option<Spanned<FieldSpec>>,
    pub specimen_authority: Option<Spanned<FieldSpec>>,
    pub din: Option<Spanned<FieldSpec>>,
    pub din_authority: Option<Spanned<FieldSpec>>,
    pub batch: Option<Spanned<FieldSpec>>,
    pub batch_authority: Option<Spanned<FieldSpec>>,
    pub lot: Option<Spanned<FieldSpec>>,
    pub lot_authority: Option<Spanned<FieldSpec>>,
    pub tracking: Option<Spanned<FieldSpec>>,
    pub tracking_authority: Option<Spanned<FieldSpec>>,
    /// The patient's name (checked against the registry, kept sealed).
    pub name: Option<Spanned<FieldSpec>>,
    /// The patient's birth date (checked against the registry, kept sealed).
    pub birth_date: Option<Spanned<FieldSpec>>,
}

/// An identifier's kind, its value field and its authority field.
pub type IdentifierSpec<'a> = (
    crate::registry::IdKind,
    &'a Option<Spanned<FieldSpec>>,
    &'a Option<Spanned<FieldSpec>>,
);

impl IdentitySpec {
    /// Each identifier field with its kind and authority field.
    pub fn identifiers(&self) -> [IdentifierSpec<'_>; 6] {
        use crate::registry::IdKind as K;
        [
            (K::Mrn, &self.mrn, &self.mrn_authority),
            (K::Specimen, &self.specimen, &self.specimen_authority),
            (K::Din, &self.din, &self.din_authority),
            (K::Batch, &self.batch, &self.batch_authority),
            (K::Lot, &self.lot, &self.lot_authority),
            (K::Tracking, &self.tracking, &self.tracking_authority),
        ]
    }
}

/// How one output field is computed.
#[derive(Debug, Default)]
pub struct FieldSpec {
    pub path: Option<String>,
    pub paths: Vec<String>,
    pub value: Option<toml::Value>,
    /// Pieces joined into one value (see the module docs).
    pub concat: Vec<String>,
    /// With `concat`: the text between pieces; pieces without a value are
    /// then left out.
    pub separator: Option<String>,
    pub map: Option<MapRef>,
    pub convert: Option<String>,
    /// With `convert = "timestamp"`: the partner's time layout (strftime).
    pub time_format: Option<String>,
    pub default: Option<toml::Value>,
    pub required: bool,
    pub foreach: Option<String>,
    pub fields: Option<BTreeMap<String, Spanned<FieldSpec>>>,
}

/// A value map: by name (`[maps.NAME]`) or inline.
#[derive(Debug)]
pub enum MapRef {
    Named(String),
    Inline(BTreeMap<String, toml::Value>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldTable {
    path: Option<String>,
    #[serde(default)]
    paths: Vec<String>,
    value: Option<toml::Value>,
    #[serde(default)]
    concat: Vec<String>,
    separator: Option<String>,
    map: Option<MapRefRepr>,
    convert: Option<String>,
    time_format: Option<String>,
    default: Option<toml::Value>,
    #[serde(default)]
    required: bool,
    foreach: Option<String>,
    fields: Option<BTreeMap<String, Spanned<FieldSpec>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MapRefRepr {
    Named(String),
    Inline(BTreeMap<String, toml::Value>),
}

/// Hand-written so nested `Spanned` values keep their positions (an
/// untagged enum would buffer the input and lose them).
impl<'de> Deserialize<'de> for FieldSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path string or a field table")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldSpec, E> {
                Ok(FieldSpec {
                    path: Some(v.to_string()),
                    ..FieldSpec::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldSpec, A::Error> {
                let t = FieldTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(FieldSpec {
                    path: t.path,
                    paths: t.paths,
                    value: t.value,
                    concat: t.concat,
                    separator: t.separator,
                    map: t.map.map(|m| match m {
                        MapRefRepr::Named(n) => MapRef::Named(n),
                        MapRefRepr::Inline(t) => MapRef::Inline(t),
                    }),
                    convert: t.convert,
                    time_format: t.time_format,
                    default: t.default,
                    required: t.required,
                    foreach: t.foreach,
                    fields: t.fields,
                })
            }
        }
        d.deserialize_any(V)
    }
}
