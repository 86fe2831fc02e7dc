//! The engine's intermediate value: keys borrowed from the mapping, text
//! borrowed from the message, deserialised straight into the event kind's
//! Rust type. No `serde_json::Value` tree (a map node and a key string per
//! field) is built and taken apart again on the way.

use std::borrow::Cow;

use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// One mapped value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Val<'m, 'd> {
    /// Text as found in (or decoded from) the message.
    Text(Cow<'d, str>),
    /// A constant, a mapped value or a converted one.
    Json(Value),
    /// A multi-valued path.
    List(Vec<Val<'m, 'd>>),
    /// An object: `fields = {…}`.
    Object(Vec<(&'m str, Val<'m, 'd>)>),
}

impl Val<'_, '_> {
    /// As text, for envelope fields.
    pub(super) fn into_text(self) -> String {
        match self {
            Val::Text(t) => t.into_owned(),
            Val::Json(Value::String(s)) => s,
            Val::Json(v) => v.to_string(),
            other => format!("{other:?}"),
        }
    }

    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Val::Text(t) => Some(t),
            Val::Json(Value::String(s)) => Some(s),
            _ => None,
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
            Val::Text(Cow::Borrowed(s)) => visitor.visit_str(s),
            Val::Text(Cow::Owned(s)) => visitor.visit_string(s),
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
        match self.0 {
            Val::Text(t) => {
                let d: StrDeserializer<'_, Error> = t.as_ref().into_deserializer();
                visitor.visit_enum(d)
            }
            Val::Json(v) => de::Deserializer::deserialize_enum(v, name, variants, visitor),
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
