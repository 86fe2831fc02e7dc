//! Turns a mapping file into a [`Mapping`]: paths parsed, maps resolved,
//! every mistake reported with its file and line.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::convert::{Convert, TimeFormat, Zone};
use super::document::Format;
use super::spec::{EventSpec, FieldSpec, IdentitySpec, MapRef, MappingFile};
use super::LoadError;
use crate::event::EventKind;
use crate::registry::IdKind;

/// A loaded mapping, ready to run against documents of format `F`.
#[derive(Debug)]
pub struct Mapping<F: Format> {
    pub name: String,
    pub file: PathBuf,
    pub description: Option<String>,
    pub message_types: Vec<String>,
    pub partners: Vec<String>,
    pub(super) zone: Zone,
    /// The `[dialect]` table, checked against the format's settings.
    pub dialect: F::Dialect,
    pub(super) events: Vec<EventRule<F>>,
}

#[derive(Debug)]
pub(super) struct EventRule<F: Format> {
    pub kind: Field<F>,
    pub foreach: Option<(String, F::Path)>,
    pub optional: bool,
    pub coi: Option<Field<F>>,
    pub order_id: Option<Field<F>>,
    pub product: Option<Field<F>>,
    pub occurred_at: Field<F>,
    pub data: Vec<Field<F>>,
    pub identity: IdentityRule<F>,
}

/// Compiled `[events.identity]`.
#[derive(Debug)]
pub(super) struct IdentityRule<F: Format> {
    pub order_authority: Option<Field<F>>,
    /// Kind, value, authority.
    pub identifiers: Vec<(IdKind, Field<F>, Option<Field<F>>)>,
    pub name: Option<Field<F>>,
    pub birth_date: Option<Field<F>>,
}

#[derive(Debug)]
pub(super) struct Field<F: Format> {
    /// Dotted, for errors: `data.results.value`.
    pub name: String,
    /// The output key: `value`.
    pub key: String,
    pub source: Source<F>,
    pub map: Option<Arc<ValueMap>>,
    pub convert: Option<Convert>,
    /// With `convert = "timestamp"`: the partner's own layout.
    pub time_format: Option<TimeFormat>,
    pub default: Option<Value>,
    pub required: bool,
    pub shape: Shape<F>,
}

#[derive(Debug)]
pub(super) enum Source<F: Format> {
    Paths(Vec<(String, F::Path)>),
    Const(Value),
    Nested,
    /// `concat`: pieces joined into one value.
    Concat(Concat<F>),
}

/// A compiled `concat` (see [`super::spec`]).
#[derive(Debug)]
pub(super) struct Concat<F: Format> {
    /// `concat(0/date, 0/time)`, for errors.
    pub label: String,
    pub parts: Vec<(String, F::Path)>,
    /// With a separator, pieces without a value are left out.
    pub separator: Option<String>,
}

#[derive(Debug)]
pub(super) enum Shape<F: Format> {
    Scalar,
    Object(Vec<Field<F>>),
    List((String, F::Path), Vec<Field<F>>),
}

/// A value map with its optional `"*"` fallback.
#[derive(Debug)]
pub(super) struct ValueMap {
    pub name: String,
    /// Sorted by key, for a binary search: value maps are small, and this
    /// is quicker than hashing the key.
    pub entries: Vec<(String, Value)>,
    pub fallback: Option<Value>,
}

impl ValueMap {
    /// The value for `key`, else the fallback.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self.entries.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            Ok(i) => Some(&self.entries[i].1),
            Err(_) => self.fallback.as_ref(),
        }
    }
}

struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    maps: HashMap<String, Arc<ValueMap>>,
}

impl Ctx<'_> {
    fn err(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> LoadError {
        LoadError::at(self.file, self.text, span.start, message)
    }
}

/// Compiles one mapping file's text. `name` is the file stem.
pub fn compile<F: Format>(file: &Path, text: &str, name: &str) -> Result<Mapping<F>, LoadError> {
    let spec: MappingFile = toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        LoadError::at(file, text, offset, e.message().to_string())
    })?;
    let mut ctx = Ctx {
        file,
        text,
        maps: HashMap::new(),
    };
    if spec.format.get_ref() != F::NAME {
        return Err(ctx.err(
            spec.format.span(),
            format!(
                "format {:?} does not belong under mappings/{}/",
                spec.format.get_ref(),
                F::NAME
            ),
        ));
    }
    if spec.message_types.get_ref().is_empty() {
        return Err(ctx.err(spec.message_types.span(), "message_types is empty"));
    }
    let zone = match &spec.timezone {
        Some(tz) => Zone::parse(tz.get_ref()).map_err(|e| ctx.err(tz.span(), e))?,
        None => Zone::default(),
    };
    let dialect = match &spec.dialect {
        None => F::Dialect::default(),
        Some(t) => F::Dialect::deserialize(toml::Value::Table(t.get_ref().clone()))
            .map_err(|e| ctx.err(t.span(), format!("[dialect]: {}", e.message())))?,
    };
    for (map_name, entries) in spec.maps {
        ctx.maps
            .insert(map_name.clone(), Arc::new(value_map(map_name, entries)));
    }
    if spec.events.is_empty() {
        return Err(ctx.err(0..0, "a mapping needs at least one [[events]] block"));
    }
    let events = spec
        .events
        .iter()
        .map(|e| event_rule::<F>(&ctx, e))
        .collect::<Result<_, _>>()?;
    Ok(Mapping {
        name: name.to_string(),
        file: file.to_path_buf(),
        description: spec.description,
        message_types: spec.message_types.into_inner(),
        partners: spec.partners,
        zone,
        dialect,
        events,
    })
}

fn value_map(name: String, entries: BTreeMap<String, toml::Value>) -> ValueMap {
    let mut map = ValueMap {
        name,
        entries: Vec::with_capacity(entries.len()),
        fallback: None,
    };
    // A `BTreeMap` iterates in key order: `entries` comes out sorted.
    for (k, v) in entries {
        let v = toml_to_json(v);
        if k == "*" {
            map.fallback = Some(v);
        } else {
            map.entries.push((k, v));
        }
    }
    map
}

fn event_rule<F: Format>(ctx: &Ctx, e: &EventSpec) -> Result<EventRule<F>, LoadError> {
    let spec = e.kind.get_ref();
    let kind = match (&spec.path, &spec.map, spec.paths.is_empty()) {
        // `kind = "order.placed"` is a constant; a kind read from the message
        // is written `{ path = "ORC-1", map = … }`.
        (Some(text), None, true) => Field {
            name: "kind".into(),
            key: "kind".into(),
            source: Source::Const(Value::String(text.clone())),
            map: None,
            convert: None,
            time_format: None,
            default: None,
            required: true,
            shape: Shape::Scalar,
        },
        _ => field::<F>(ctx, "kind", &e.kind)?,
    };
    check_kinds(ctx, &e.kind, &kind)?;
    let foreach = match &e.foreach {
        Some(p) => Some(foreach_path::<F>(ctx, p.get_ref(), p.span())?),
        None => None,
    };
    let opt = |name: &str, f: &Option<Spanned<FieldSpec>>| -> Result<Option<Field<F>>, LoadError> {
        f.as_ref().map(|f| field::<F>(ctx, name, f)).transpose()
    };
    let mut occurred_at = field::<F>(ctx, "occurred_at", &e.occurred_at)?;
    occurred_at.required = true;
    occurred_at.convert.get_or_insert(Convert::Timestamp);
    Ok(EventRule {
        kind,
        foreach,
        optional: e.optional,
        coi: opt("coi", &e.coi)?,
        order_id: opt("order_id", &e.order_id)?,
        product: opt("product", &e.product)?,
        occurred_at,
        data: e
            .data
            .iter()
            .map(|(n, f)| field::<F>(ctx, &format!("data.{n}"), f))
            .collect::<Result<_, _>>()?,
        identity: identity_rule::<F>(ctx, e.identity.as_ref())?,
    })
}

fn identity_rule<F: Format>(
    ctx: &Ctx,
    spec: Option<&IdentitySpec>,
) -> Result<IdentityRule<F>, LoadError> {
    let Some(spec) = spec else {
        return Ok(IdentityRule {
            order_authority: None,
            identifiers: Vec::new(),
            name: None,
            birth_date: None,
        });
    };
    let opt = |name: &str, f: &Option<Spanned<FieldSpec>>| -> Result<Option<Field<F>>, LoadError> {
        f.as_ref()
            .map(|f| field::<F>(ctx, &format!("identity.{name}"), f))
            .transpose()
    };
    let mut identifiers = Vec::new();
    for (kind, value, authority) in spec.identifiers() {
        let name = kind.as_str();
        match (opt(name, value)?, authority) {
            (Some(v), a) => {
                identifiers.push((kind, v, opt(&format!("{name}_authority"), a)?));
            }
            (None, Some(a)) => {
                return Err(ctx.err(
                    a.span(),
                    format!("{name}_authority without {name}: the authority of what?"),
                ))
            }
            (None, None) => {}
        }
    }
    Ok(IdentityRule {
        order_authority: opt("order_authority", &spec.order_authority)?,
        identifiers,
        name: opt("name", &spec.name)?,
        birth_date: opt("birth_date", &spec.birth_date)?,
    })
}

/// Every kind a rule can produce must be a known event kind.
fn check_kinds<F: Format>(
    ctx: &Ctx,
    spec: &Spanned<FieldSpec>,
    kind: &Field<F>,
) -> Result<(), LoadError> {
    let mut names: Vec<&Value> = Vec::new();
    if let Source::Const(v) = &kind.source {
        names.push(v);
    }
    if let Some(m) = &kind.map {
        names.extend(m.entries.iter().map(|(_, v)| v));
        names.extend(m.fallback.iter());
    } else if matches!(kind.source, Source::Paths(_) | Source::Concat(_)) {
        return Err(ctx.err(
            spec.span(),
            "a kind read from the message needs a map to event kinds",
        ));
    }
    for n in names {
        let ok = n.as_str().and_then(EventKind::parse).is_some();
        if !ok {
            let known: Vec<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(ctx.err(
                spec.span(),
                format!("unknown event kind {n}; known kinds: {}", known.join(", ")),
            ));
        }
    }
    Ok(())
}

fn foreach_path<F: Format>(
    ctx: &Ctx,
    text: &str,
    span: std::ops::Range<usize>,
) -> Result<(String, F::Path), LoadError> {
    let (text, p) = path::<F>(ctx, text, span.clone())?;
    F::check_foreach(&p).map_err(|e| ctx.err(span, e))?;
    Ok((text, p))
}

fn path<F: Format>(
    ctx: &Ctx,
    text: &str,
    span: std::ops::Range<usize>,
) -> Result<(String, F::Path), LoadError> {
    F::parse_path(text)
        .map(|p| (text.to_string(), p))
        .map_err(|e| ctx.err(span, format!("bad {} path {text:?}: {e}", F::NAME)))
}

fn field<F: Format>(
    ctx: &Ctx,
    name: &str,
    spec: &Spanned<FieldSpec>,
) -> Result<Field<F>, LoadError> {
    let span = spec.span();
    let s = spec.get_ref();
    let sources = usize::from(s.path.is_some())
        + usize::from(!s.paths.is_empty())
        + usize::from(s.value.is_some())
        + usize::from(!s.concat.is_empty());
    if sources > 1 {
        return Err(ctx.err(
            span,
            format!("{name}: give only one of path, paths, value or concat"),
        ));
    }
    if sources == 0 && s.fields.is_none() {
        return Err(ctx.err(
            span,
            format!("{name}: needs a path, paths, value, concat or fields"),
        ));
    }
    if s.separator.is_some() && s.concat.is_empty() {
        return Err(ctx.err(span, format!("{name}: separator goes with concat")));
    }
    if s.foreach.is_some() && s.fields.is_none() {
        return Err(ctx.err(span, format!("{name}: foreach needs fields")));
    }
    let source = if let Some(v) = &s.value {
        Source::Const(toml_to_json(v.clone()))
    } else if s.fields.is_some() && sources == 0 {
        Source::Nested
    } else if !s.concat.is_empty() {
        Source::Concat(Concat {
            label: format!("concat({})", s.concat.join(", ")),
            parts: s
                .concat
                .iter()
                .map(|t| path::<F>(ctx, t, span.clone()))
                .collect::<Result<_, _>>()?,
            separator: s.separator.clone(),
        })
    } else {
        let texts = s.path.iter().chain(s.paths.iter());
        Source::Paths(
            texts
                .map(|t| path::<F>(ctx, t, span.clone()))
                .collect::<Result<_, _>>()?,
        )
    };
    let map = match &s.map {
        None => None,
        Some(MapRef::Named(n)) => {
            Some(ctx.maps.get(n).cloned().ok_or_else(|| {
                ctx.err(span.clone(), format!("{name}: no [maps.{n}] in this file"))
            })?)
        }
        Some(MapRef::Inline(t)) => Some(Arc::new(value_map(format!("{name} (inline)"), t.clone()))),
    };
    let mut convert = match &s.convert {
        None => None,
        Some(c) => Some(Convert::parse(c).ok_or_else(|| {
            ctx.err(
                span.clone(),
                format!(
                    "{name}: unknown convert {c:?}; one of {}",
                    Convert::NAMES.join(", ")
                ),
            )
        })?),
    };
    let time_format = match &s.time_format {
        None => None,
        Some(t) => {
            if convert.is_some_and(|c| c != Convert::Timestamp) {
                return Err(ctx.err(
                    span,
                    format!("{name}: time_format goes with convert = \"timestamp\""),
                ));
            }
            convert = Some(Convert::Timestamp);
            Some(
                TimeFormat::parse(t)
                    .map_err(|e| ctx.err(span.clone(), format!("{name}: time_format {e}")))?,
            )
        }
    };
    let shape = match (&s.fields, &s.foreach) {
        (None, _) => Shape::Scalar,
        (Some(_), _) if !matches!(source, Source::Nested) => {
            return Err(ctx.err(
                span,
                format!("{name}: fields cannot be combined with path or value"),
            ))
        }
        (Some(fields), foreach) => {
            let children = fields
                .iter()
                .map(|(n, f)| field::<F>(ctx, &format!("{name}.{n}"), f))
                .collect::<Result<Vec<_>, _>>()?;
            match foreach {
                Some(p) => Shape::List(foreach_path::<F>(ctx, p, span.clone())?, children),
                None => Shape::Object(children),
            }
        }
    };
    Ok(Field {
        name: name.to_string(),
        key: name.rsplit('.').next().unwrap_or(name).to_string(),
        source,
        map,
        convert,
        time_format,
        default: s.default.clone().map(toml_to_json),
        required: s.required,
        shape,
    })
}

pub(super) fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}
