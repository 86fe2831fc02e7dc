//! Runs a compiled [`Mapping`] against a [`Document`]. Pure: no clock, no I/O;
//! the caller supplies the receive time and event ids.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::compile::{EventRule, Field, Mapping, Shape, Source};
use super::document::{Document, Format};
use super::val::{Val, ValDe};
use crate::event::{EventData, EventKind, Source as Provenance, TherapyEvent};

/// What the engine needs to know that is not in the document.
pub struct MapContext<'a> {
    pub source: &'a Provenance,
    pub recorded_at: DateTime<Utc>,
    /// Makes event ids; [`TherapyEvent::new_id`] in production.
    pub new_id: &'a mut dyn FnMut() -> Uuid,
}

/// Why a message could not be mapped: which mapping, which field, which
/// source path, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mapping {mapping}: {field}: {reason}")]
pub struct MapError {
    pub kind: MapErrorKind,
    pub mapping: String,
    pub field: String,
    /// The source path involved (HL7 `OBX-5`), for the partner's error report.
    pub location: Option<String>,
    pub reason: String,
}

/// What kind of mapping failure, for the partner's error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapErrorKind {
    /// A required value is absent.
    Required,
    /// A value is not in its value map.
    NotInMap,
    /// A value could not be converted (time, number).
    BadValue,
    /// The mapped event does not fit its kind, or another mapping mistake.
    Invalid,
}

impl MapErrorKind {
    /// A stable code for stores, metrics and problem bodies.
    pub const fn code(self) -> &'static str {
        match self {
            MapErrorKind::Required => "required_field_missing",
            MapErrorKind::NotInMap => "value_not_in_map",
            MapErrorKind::BadValue => "bad_value",
            MapErrorKind::Invalid => "invalid_event",
        }
    }
}

/// Inside a run, errors are boxed: the results passed up the field tree
/// stay small, and moving them is a measurable share of mapping time.
type Fallible<T> = Result<T, Box<MapError>>;

struct Run<'m, F: Format> {
    mapping: &'m Mapping<F>,
}

impl<F: Format> Mapping<F> {
    /// Maps one document to its events.
    pub fn run<D: Document<Format = F>>(
        &self,
        doc: &D,
        cx: &mut MapContext,
    ) -> Result<Vec<TherapyEvent>, MapError> {
        let run = Run { mapping: self };
        let mut out = Vec::new();
        for rule in &self.events {
            let scopes = match &rule.foreach {
                None => vec![doc.root()],
                Some((text, p)) => {
                    let s = doc.scopes(p, doc.root());
                    if s.is_empty() && !rule.optional {
                        return Err(*run.err_kind(
                            MapErrorKind::Required,
                            "foreach",
                            Some(text),
                            format!("the message has no {text} to map"),
                        ));
                    }
                    s
                }
            };
            for scope in scopes {
                out.push(run.event(rule, doc, scope, cx).map_err(|e| *e)?);
            }
        }
        Ok(out)
    }
}

impl<'m, F: Format> Run<'m, F> {
    fn err(&self, field: &str, location: Option<&str>, reason: String) -> Box<MapError> {
        self.err_kind(MapErrorKind::Invalid, field, location, reason)
    }

    fn err_kind(
        &self,
        kind: MapErrorKind,
        field: &str,
        location: Option<&str>,
        reason: String,
    ) -> Box<MapError> {
        Box::new(MapError {
            kind,
            mapping: self.mapping.name.clone(),
            field: field.to_string(),
            location: location.map(str::to_string),
            reason,
        })
    }

    fn event<'d, D: Document<Format = F>>(
        &self,
        rule: &'m EventRule<F>,
        doc: &'d D,
        scope: D::Scope,
        cx: &mut MapContext,
    ) -> Fallible<TherapyEvent> {
        let kind_value = self
            .value(&rule.kind, doc, scope)?
            .ok_or_else(|| self.err("kind", None, "no value for the event kind".into()))?;
        let kind = kind_value
            .as_str()
            .and_then(EventKind::parse)
            .ok_or_else(|| {
                self.err("kind", None, format!("{kind_value:?} is not an event kind"))
            })?;
        let text = |f: &'m Option<Field<F>>| -> Fallible<Option<String>> {
            Ok(match f {
                Some(f) => self.value(f, doc, scope)?.map(Val::into_text),
                None => None,
            })
        };
        let occurred = self.value(&rule.occurred_at, doc, scope)?;
        let occurred_at = occurred
            .as_ref()
            .and_then(Val::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc))
            .ok_or_else(|| self.err("occurred_at", None, "no time for the event".into()))?;
        let mut data = Vec::with_capacity(rule.data.len());
        for f in &rule.data {
            if let Some(v) = self.value(f, doc, scope)? {
                data.push((f.key.as_str(), v));
            }
        }
        let data = EventData::deserialize_as(kind, ValDe(Val::Object(data)))
            .map_err(|e| self.err("data", None, format!("not a valid {kind}: {e}")))?;
        Ok(TherapyEvent {
            schema: (),
            event_id: (cx.new_id)(),
            data,
            coi: text(&rule.coi)?,
            order_id: text(&rule.order_id)?,
            product: text(&rule.product)?,
            occurred_at,
            recorded_at: cx.recorded_at,
            source: cx.source.clone(),
        })
    }

    /// Evaluates one field in a scope: `None` when it has no value.
    fn value<'d, D: Document<Format = F>>(
        &self,
        f: &'m Field<F>,
        doc: &'d D,
        scope: D::Scope,
    ) -> Fallible<Option<Val<'m, 'd>>> {
        let v = match &f.shape {
            Shape::Scalar => self.scalar(f, doc, scope)?,
            Shape::Object(children) => self.object(children, doc, scope)?,
            Shape::List((_, p), children) => {
                let mut items = Vec::new();
                for s in doc.scopes(p, scope) {
                    if let Some(o) = self.object(children, doc, s)? {
                        items.push(o);
                    }
                }
                (!items.is_empty()).then_some(Val::List(items))
            }
        };
        match v {
            Some(v) => Ok(Some(v)),
            None => match &f.default {
                Some(d) => Ok(Some(Val::Json(d.clone()))),
                None if f.required => Err(self.err_kind(
                    MapErrorKind::Required,
                    &f.name,
                    self.first_path(f),
                    "required, but the message has no value".into(),
                )),
                None => Ok(None),
            },
        }
    }

    fn first_path<'f>(&self, f: &'f Field<F>) -> Option<&'f str> {
        match &f.source {
            Source::Paths(p) => p.first().map(|(t, _)| t.as_str()),
            _ => None,
        }
    }

    fn object<'d, D: Document<Format = F>>(
        &self,
        children: &'m [Field<F>],
        doc: &'d D,
        scope: D::Scope,
    ) -> Fallible<Option<Val<'m, 'd>>> {
        let mut obj = Vec::with_capacity(children.len());
        for c in children {
            if let Some(v) = self.value(c, doc, scope)? {
                obj.push((c.key.as_str(), v));
            }
        }
        Ok((!obj.is_empty()).then_some(Val::Object(obj)))
    }

    fn scalar<'d, D: Document<Format = F>>(
        &self,
        f: &'m Field<F>,
        doc: &'d D,
        scope: D::Scope,
    ) -> Fallible<Option<Val<'m, 'd>>> {
        match &f.source {
            Source::Const(v) => Ok(Some(Val::Json(v.clone()))),
            Source::Nested => Ok(None),
            Source::Paths(paths) => {
                let mut buf: Vec<Cow<'d, str>> = Vec::new();
                for (text, p) in paths {
                    buf.clear();
                    doc.values(p, scope, &mut buf);
                    if buf.is_empty() {
                        continue;
                    }
                    if D::is_multi(p) {
                        let mut items = Vec::with_capacity(buf.len());
                        for raw in buf.drain(..) {
                            if let Some(v) = self.convert(f, text, raw)? {
                                items.push(v);
                            }
                        }
                        return Ok(Some(Val::List(items)));
                    }
                    let first = buf.swap_remove(0);
                    if let Some(v) = self.convert(f, text, first)? {
                        return Ok(Some(v));
                    }
                }
                Ok(None)
            }
        }
    }

    /// Map, then convert, one source value.
    fn convert<'d>(
        &self,
        f: &Field<F>,
        path: &str,
        raw: Cow<'d, str>,
    ) -> Fallible<Option<Val<'m, 'd>>> {
        let mapped = match &f.map {
            None => None,
            Some(m) => Some(match m.entries.get(raw.as_ref()).or(m.fallback.as_ref()) {
                Some(v) => v.clone(),
                None => {
                    return Err(self.err_kind(
                        MapErrorKind::NotInMap,
                        &f.name,
                        Some(path),
                        format!("value {raw:?} at {path} is not in map {}", m.name),
                    ))
                }
            }),
        };
        let converted = match (f.convert, mapped) {
            (None, Some(v)) => Some(v),
            (None, None) => return Ok(Some(Val::Text(raw))),
            (Some(c), Some(Value::String(s))) => self.apply(f, c, path, &s)?,
            (Some(_), Some(v)) => Some(v),
            (Some(c), None) => self.apply(f, c, path, &raw)?,
        };
        Ok(converted.map(Val::Json))
    }

    fn apply(
        &self,
        f: &Field<F>,
        c: super::convert::Convert,
        path: &str,
        s: &str,
    ) -> Fallible<Option<Value>> {
        c.apply(s, &self.mapping.zone).map_err(|e| {
            self.err_kind(
                MapErrorKind::BadValue,
                &f.name,
                Some(path),
                format!("{e} (at {path})"),
            )
        })
    }
}
