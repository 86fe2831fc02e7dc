//! Runs a compiled [`Mapping`] against a [`Document`]. Pure: no clock, no I/O;
//! the caller supplies the receive time and event ids.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::compile::{Concat, EventRule, Field, IdentityRule, Mapping, Shape, Source};
use super::convert::{Convert, Scalar};
use super::document::{Document, Format};
use super::val::{Val, ValDe};
use crate::event::{EventData, EventKind, Source as Provenance, TherapyEvent};
use crate::registry::{Claimed, Claims, IdKind};

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

struct Run<'m, 'd, D: Document> {
    mapping: &'m Mapping<D::Format>,
    doc: &'d D,
    /// Scratch for a path's values, reused by every field.
    buf: Vec<Cow<'d, str>>,
}

/// A field's key and value, in mapping order.
type Entries<'m, 'd> = Vec<(&'m str, Val<'m, 'd>)>;

impl<F: Format> Mapping<F> {
    /// Maps one document to its events.
    pub fn run<D: Document<Format = F>>(
        &self,
        doc: &D,
        cx: &mut MapContext,
    ) -> Result<Vec<TherapyEvent>, MapError> {
        let mut run = Run {
            mapping: self,
            doc,
            buf: Vec::new(),
        };
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
                out.push(run.event(rule, scope, cx).map_err(|e| *e)?);
            }
        }
        Ok(out)
    }
}

impl<'m, 'd, D: Document> Run<'m, 'd, D> {
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

    fn event(
        &mut self,
        rule: &'m EventRule<D::Format>,
        scope: D::Scope,
        cx: &mut MapContext,
    ) -> Fallible<TherapyEvent> {
        let kind_value = self
            .value(&rule.kind, scope)?
            .ok_or_else(|| self.err("kind", None, "no value for the event kind".into()))?;
        let kind = kind_value
            .as_str()
            .and_then(EventKind::parse)
            .ok_or_else(|| {
                self.err("kind", None, format!("{kind_value:?} is not an event kind"))
            })?;
        let occurred_at = self
            .value(&rule.occurred_at, scope)?
            .and_then(Val::into_time)
            .ok_or_else(|| self.err("occurred_at", None, "no time for the event".into()))?;
        let mut data = Vec::with_capacity(rule.data.len());
        for f in &rule.data {
            self.field(f, scope, &mut data)?;
        }
        let data = EventData::deserialize_as(kind, ValDe(Val::Object(data)))
            .map_err(|e| self.err("data", None, format!("not a valid {kind}: {e}")))?;
        let mut text = |f: &'m Option<Field<D::Format>>| -> Fallible<Option<String>> {
            Ok(match f {
                Some(f) => self.value(f, scope)?.map(Val::into_text),
                None => None,
            })
        };
        let coi = text(&rule.coi)?;
        let order_id = text(&rule.order_id)?;
        let product = text(&rule.product)?;
        let claims = self.claims(&rule.identity, scope, order_id.as_deref())?;
        Ok(TherapyEvent {
            schema: (),
            event_id: (cx.new_id)(),
            data,
            coi,
            order_id,
            product,
            occurred_at,
            recorded_at: cx.recorded_at,
            source: cx.source.clone(),
            claims,
        })
    }

    /// Reads `[events.identity]`: the identifiers that have a value, and
    /// the demographics. The order id is the event's own, with the
    /// authority the mapping names for it.
    fn claims(
        &mut self,
        rule: &'m IdentityRule<D::Format>,
        scope: D::Scope,
        order_id: Option<&str>,
    ) -> Fallible<Claims> {
        let mut claims = Claims::default();
        if rule.identifiers.is_empty()
            && rule.order_authority.is_none()
            && rule.name.is_none()
            && rule.birth_date.is_none()
        {
            return Ok(claims);
        }
        let mut text = |f: Option<&'m Field<D::Format>>| -> Fallible<Option<String>> {
            Ok(match f {
                Some(f) => self
                    .value(f, scope)?
                    .map(Val::into_text)
                    .filter(|s| !s.trim().is_empty()),
                None => None,
            })
        };
        if let (Some(order), Some(authority)) = (order_id, text(rule.order_authority.as_ref())?) {
            claims
                .identifiers
                .push(Claimed::new(IdKind::Order, authority, order));
        }
        for (kind, value, authority) in &rule.identifiers {
            if let Some(v) = text(Some(value))? {
                let a = text(authority.as_ref())?.unwrap_or_default();
                claims.identifiers.push(Claimed::new(*kind, a, v));
            }
        }
        claims.name = text(rule.name.as_ref())?;
        claims.birth_date = text(rule.birth_date.as_ref())?;
        Ok(claims)
    }

    /// Evaluates one field in a scope: `None` when it has no value.
    fn value(&mut self, f: &'m Field<D::Format>, scope: D::Scope) -> Fallible<Option<Val<'m, 'd>>> {
        let mut one = Vec::new();
        self.field(f, scope, &mut one)?;
        Ok(one.pop().map(|(_, v)| v))
    }

    /// Evaluates one field in a scope and appends it to `out` under its key,
    /// unless it has no value.
    fn field(
        &mut self,
        f: &'m Field<D::Format>,
        scope: D::Scope,
        out: &mut Entries<'m, 'd>,
    ) -> Fallible<()> {
        let v = match &f.shape {
            Shape::Scalar => self.scalar(f, scope)?,
            Shape::Object(children) => self.object(children, scope)?,
            Shape::List((_, p), children) => {
                let mut items = Vec::new();
                for s in self.doc.scopes(p, scope) {
                    if let Some(o) = self.object(children, s)? {
                        items.push(o);
                    }
                }
                (!items.is_empty()).then_some(Val::List(items))
            }
        };
        let v = match v {
            Some(v) => v,
            None => match &f.default {
                Some(d) => Val::constant(d),
                None if f.required => {
                    return Err(self.err_kind(
                        MapErrorKind::Required,
                        &f.name,
                        first_path(f),
                        "required, but the message has no value".into(),
                    ))
                }
                None => return Ok(()),
            },
        };
        out.push((f.key.as_str(), v));
        Ok(())
    }

    fn object(
        &mut self,
        children: &'m [Field<D::Format>],
        scope: D::Scope,
    ) -> Fallible<Option<Val<'m, 'd>>> {
        let mut obj = Vec::with_capacity(children.len());
        for c in children {
            self.field(c, scope, &mut obj)?;
        }
        Ok((!obj.is_empty()).then_some(Val::Object(obj)))
    }

    fn scalar(
        &mut self,
        f: &'m Field<D::Format>,
        scope: D::Scope,
    ) -> Fallible<Option<Val<'m, 'd>>> {
        match &f.source {
            Source::Const(v) => Ok(Some(Val::constant(v))),
            Source::Nested => Ok(None),
            Source::Paths(paths) => {
                let mut buf = std::mem::take(&mut self.buf);
                let v = self.paths(f, paths, scope, &mut buf);
                buf.clear();
                self.buf = buf;
                v
            }
            Source::Concat(c) => {
                let mut buf = std::mem::take(&mut self.buf);
                let joined = self.concat(c, scope, &mut buf);
                buf.clear();
                self.buf = buf;
                match joined {
                    Some(text) => self.convert(f, &c.label, Cow::Owned(text)),
                    None => Ok(None),
                }
            }
        }
    }

    /// The first value of each piece, joined; `None` when a piece has none
    /// (without a separator) or when every piece has none (with one).
    fn concat(
        &self,
        c: &'m Concat<D::Format>,
        scope: D::Scope,
        buf: &mut Vec<Cow<'d, str>>,
    ) -> Option<String> {
        let mut out = String::new();
        let mut pieces = 0usize;
        for (_, p) in &c.parts {
            buf.clear();
            self.doc.values(p, scope, buf);
            match buf.first() {
                Some(v) => {
                    if pieces > 0 {
                        out.push_str(c.separator.as_deref().unwrap_or_default());
                    }
                    out.push_str(v);
                    pieces += 1;
                }
                None if c.separator.is_none() => return None,
                None => {}
            }
        }
        (pieces > 0).then_some(out)
    }

    /// The first of `paths` that has a value (all values of a multi path).
    fn paths(
        &self,
        f: &'m Field<D::Format>,
        paths: &'m [(String, <D::Format as Format>::Path)],
        scope: D::Scope,
        buf: &mut Vec<Cow<'d, str>>,
    ) -> Fallible<Option<Val<'m, 'd>>> {
        for (text, p) in paths {
            buf.clear();
            self.doc.values(p, scope, buf);
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

    /// Map, then convert, one source value.
    fn convert(
        &self,
        f: &'m Field<D::Format>,
        path: &str,
        raw: Cow<'d, str>,
    ) -> Fallible<Option<Val<'m, 'd>>> {
        let mapped = match &f.map {
            None => None,
            Some(m) => Some(match m.get(raw.as_ref()) {
                Some(v) => v,
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
        Ok(match (f.convert, mapped) {
            (None, Some(v)) => Some(Val::constant(v)),
            (None, None) => Some(Val::Text(raw)),
            (Some(c), Some(Value::String(s))) => {
                self.apply(f, c, path, s)?.map(Val::converted_const)
            }
            (Some(_), Some(v)) => Some(Val::constant(v)),
            (Some(c), None) => match raw {
                Cow::Borrowed(s) => self.apply(f, c, path, s)?.map(Val::converted),
                Cow::Owned(s) => self
                    .apply(f, c, path, &s)?
                    .map(|v| Val::converted(v.into_owned())),
            },
        })
    }

    fn apply<'s>(
        &self,
        f: &Field<D::Format>,
        c: Convert,
        path: &str,
        s: &'s str,
    ) -> Fallible<Option<Scalar<'s>>> {
        let converted = match (&f.time_format, c) {
            (Some(layout), Convert::Timestamp) => layout
                .read(s.trim(), &self.mapping.zone)
                .map(|t| Some(Scalar::Time(t))),
            _ => c.apply_typed(s, &self.mapping.zone),
        };
        converted.map_err(|e| {
            self.err_kind(
                MapErrorKind::BadValue,
                &f.name,
                Some(path),
                format!("{e} (at {path})"),
            )
        })
    }
}

fn first_path<F: Format>(f: &Field<F>) -> Option<&str> {
    match &f.source {
        Source::Paths(p) => p.first().map(|(t, _)| t.as_str()),
        Source::Concat(c) => Some(c.label.as_str()),
        _ => None,
    }
}
