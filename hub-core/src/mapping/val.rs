//! The engine's intermediate value: keys borrowed from the mapping, text
//! borrowed from the message, deserialised straight into the event kind's
//! Rust type. No `serde_json::Value` tree (a map node and a key string per
//! field) is built and taken apart again on the way.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::convert::Scalar;
use crate::event::rfc3339;

/// One mapped value.
///
/// Converted and constant values are kept typed (`Const`, `Str`, `Num`,
/// `Time`, …) rather than as `serde_json::Value`s: no string is copied for a
/// value map's entry, no time is formatted and parsed again. Each stands for
/// the JSON value the conversion defines (see [`Val::to_json`]), and shows as
/// that value in error messages.
///
/// `repr(u64)`: a whole-word tag, every payload 8-aligned. With a byte tag,
/// the payload bytes next to it (`Bool`, a date's year) are copied in odd
/// pieces on every move, and reading the value back stalls on those stores.
#[derive(Clone, PartialEq)]
#[repr(u64)]
pub(super) enum Val<'m, 'd> {
    /// Text as found in (or decoded from) the message.
    Text(Cow<'d, str>),
    /// Any other constant or mapped value (numbers, booleans, arrays).
    Json(Value),
    /// A multi-valued path.
    List(Vec<Val<'m, 'd>>),
    /// An object: `fields = {…}`.
    Object(Vec<(&'m str, Val<'m, 'd>)>),
    /// A string constant or value map entry, borrowed from the mapping.
    Const(&'m str),
    /// Converted text (trim, upper, lower, ucum).
    Str(Cow<'d, str>),
    /// A converted number; finite.
    Num(f64),
    Int(i64),
    Bool(bool),
    /// A converted time: RFC 3339 text in UTC.
    Time(DateTime<Utc>),
    /// A converted date: `YYYY-MM-DD`.
    Date(NaiveDate),
}

impl<'m, 'd> Val<'m, 'd> {
    /// A constant from the mapping file.
    pub(super) fn constant(v: &'m Value) -> Self {
        match v {
            Value::String(s) => Val::Const(s),
            other => Val::Json(other.clone()),
        }
    }

    /// A conversion's result on message text.
    pub(super) fn converted(s: Scalar<'d>) -> Self {
        match s {
            Scalar::Str(t) => Val::Str(t),
            other => Val::scalar(other),
        }
    }

    /// A conversion's result on a value map's entry.
    pub(super) fn converted_const(s: Scalar<'m>) -> Self {
        match s {
            Scalar::Str(Cow::Borrowed(t)) => Val::Const(t),
            Scalar::Str(Cow::Owned(t)) => Val::Str(Cow::Owned(t)),
            other => Val::scalar(other),
        }
    }

    fn scalar(s: Scalar<'_>) -> Self {
        match s {
            Scalar::Str(t) => Val::Str(Cow::Owned(t.into_owned())),
            Scalar::Num(n) => Val::Num(n),
            Scalar::Int(i) => Val::Int(i),
            Scalar::Bool(b) => Val::Bool(b),
            Scalar::Time(t) => Val::Time(t),
            Scalar::Date(d) => Val::Date(d),
        }
    }

    /// The JSON value a typed scalar stands for; `None` for text, lists and objects.
    fn to_json(&self) -> Option<Value> {
        Some(match self {
            Val::Const(s) => Value::String((*s).to_string()),
            Val::Str(s) => Value::String(s.to_string()),
            Val::Num(n) => Value::from(*n),
            Val::Int(i) => Value::from(*i),
            Val::Bool(b) => Value::Bool(*b),
            Val::Time(t) => Value::String(rfc3339::to_rfc3339(t)),
            Val::Date(d) => Value::String(rfc3339::with_ymd(d, str::to_string)),
            Val::Json(v) => v.clone(),
            Val::Text(_) | Val::List(_) | Val::Object(_) => return None,
        })
    }

    /// As text, for envelope fields.
    pub(super) fn into_text(self) -> String {
        match self {
            Val::Text(t) | Val::Str(t) => t.into_owned(),
            Val::Const(s) => s.to_string(),
            Val::Json(Value::String(s)) => s,
            Val::Json(v) => v.to_string(),
            Val::Time(t) => rfc3339::to_rfc3339(&t),
            Val::Date(d) => rfc3339::with_ymd(&d, str::to_string),
            v @ (Val::Num(_) | Val::Int(_) | Val::Bool(_)) => {
                v.to_json().unwrap_or_default().to_string()
            }
            other => format!("{other:?}"),
        }
    }

    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Val::Text(t) | Val::Str(t) => Some(t),
            Val::Const(s) => Some(s),
            Val::Json(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// As a time, for `occurred_at`: what parsing its RFC 3339 text gives.
    pub(super) fn into_time(self) -> Option<DateTime<Utc>> {
        match self {
            // Formatting and parsing again gives the same time.
            Val::Time(t) if rfc3339::is_plain(&t) => Some(t),
            Val::Time(t) => rfc3339::with_rfc3339(&t, parse_rfc3339),
            Val::Date(d) => rfc3339::with_ymd(&d, parse_rfc3339),
            other => other.as_str().and_then(parse_rfc3339),
        }
    }
}

fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

impl fmt::Debug for Val<'_, '_> {
    /// As the JSON value a typed scalar stands for: `Json(String("final"))`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Text(t) => f.debug_tuple("Text").field(t).finish(),
            Val::List(items) => f.debug_tuple("List").field(items).finish(),
            Val::Object(fields) => f.debug_tuple("Object").field(fields).finish(),
            other => f
                .debug_tuple("Json")
                .field(&other.to_json().unwrap_or_default())
                .finish(),
        }
    }
}

type Error = serde_json::Error;

/// Deserialises a [`Val`].
pub(super) struct ValDe<'m, 'd>(pub Val<'m, 'd>);

impl<'de> de::Deserializer<'de> for ValDe<'_, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Val::Text(Cow::Borrowed(s)) | Val::Str(Cow::Borrowed(s)) => visitor.visit_str(s),
            Val::Text(Cow::Owned(s)) | Val::Str(Cow::Owned(s)) => visitor.visit_string(s),
            Val::Const(s) => visitor.visit_str(s),
            // As `serde_json::Number` visits them.
            Val::Num(n) => visitor.visit_f64(n),
            Val::Int(i) if i < 0 => visitor.visit_i64(i),
            Val::Int(i) => visitor.visit_u64(i.unsigned_abs()),
            Val::Bool(b) => visitor.visit_bool(b),
            Val::Time(t) => rfc3339::with_rfc3339(&t, |s| visitor.visit_str(s)),
            Val::Date(d) => rfc3339::with_ymd(&d, |s| visitor.visit_str(s)),
            Val::Json(v) => de::Deserializer::deserialize_any(v, visitor),
            Val::List(items) => visitor.visit_seq(Seq(items.into_iter())),
            Val::Object(fields) => visitor.visit_map(Fields {
                iter: fields.into_iter(),
                value: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // Only present values are ever handed over.
        visitor.visit_some(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let code = |s: &str, visitor: V| {
            let d: StrDeserializer<'_, Error> = s.into_deserializer();
            visitor.visit_enum(d)
        };
        match self.0 {
            Val::Text(t) | Val::Str(t) => code(&t, visitor),
            Val::Const(s) => code(s, visitor),
            Val::Time(t) => rfc3339::with_rfc3339(&t, |s| code(s, visitor)),
            Val::Date(d) => rfc3339::with_ymd(&d, |s| code(s, visitor)),
            Val::Json(v) => de::Deserializer::deserialize_enum(v, name, variants, visitor),
            v @ (Val::Num(_) | Val::Int(_) | Val::Bool(_)) => de::Deserializer::deserialize_enum(
                v.to_json().unwrap_or_default(),
                name,
                variants,
                visitor,
            ),
            other => Err(de::Error::custom(format!("expected a code, got {other:?}"))),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

struct Seq<I>(I);

impl<'de, 'm, 'd, I: Iterator<Item = Val<'m, 'd>>> SeqAccess<'de> for Seq<I> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(ValDe(v)))
            .transpose()
    }
}

/// The fields of an object, in mapping order.
pub(super) struct Fields<'m, 'd, I: Iterator<Item = (&'m str, Val<'m, 'd>)>> {
    pub iter: I,
    pub value: Option<Val<'m, 'd>>,
}

impl<'de, 'm, 'd, I: Iterator<Item = (&'m str, Val<'m, 'd>)>> MapAccess<'de> for Fields<'m, 'd, I> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                let d: StrDeserializer<'_, Error> = k.into_deserializer();
                seed.deserialize(d).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let v = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value without its key"))?;
        seed.deserialize(ValDe(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventData, EventKind, ResultStatus};

    #[test]
    fn deserialises_typed_data_and_names_unknown_fields() {
        let results = Val::List(vec![Val::Object(vec![
            ("test", Val::Object(vec![("code", Val::Text("WBC".into()))])),
            ("value", Val::Text(Cow::Owned("7.2".into()))),
            ("numeric_value", Val::Json(serde_json::json!(7.2))),
            ("status", Val::Text("final".into())),
        ])]);
        let data = Val::Object(vec![("results", results)]);
        let EventData::QcResultReported(qc) =
            EventData::deserialize_as(EventKind::QcResultReported, ValDe(data)).unwrap()
        else {
            panic!("wrong kind")
        };
        assert_eq!(qc.results[0].numeric_value, Some(7.2));
        assert_eq!(qc.results[0].status, Some(ResultStatus::Final));
        assert_eq!(qc.results[0].test.code, "WBC");

        let bad = Val::Object(vec![("placer_ordr_id", Val::Text("1".into()))]);
        let err = EventData::deserialize_as(EventKind::OrderPlaced, ValDe(bad)).unwrap_err();
        assert!(err.to_string().contains("placer_ordr_id"), "{err}");
        let bad = Val::Object(vec![(
            "results",
            Val::List(vec![Val::Object(vec![
                ("test", Val::Object(vec![("code", Val::Text("X".into()))])),
                ("status", Val::Text("finished".into())),
            ])]),
        )]);
        let err = EventData::deserialize_as(EventKind::QcResultReported, ValDe(bad)).unwrap_err();
        assert!(err.to_string().contains("finished"), "{err}");
    }
}
