//! What a loaded mapping asks of a file: the columns it reads ([`Needs`])
//! and the time zone its dialect's `dates` are read in.
//!
//! The compiled mapping does not list its paths, so they are read again
//! from the mapping file (already checked by the compiler) when the
//! connector loads.

use std::path::Path;

use hub_core::mapping::convert::Zone;
use hub_core::mapping::spec::{FieldSpec, MappingFile};
use hub_core::mapping::LoadError;

use crate::dialect::{Dialect, Layout, RESULT, TEST_CODE};
use crate::document::Columns;
use crate::error::FileError;
use crate::path::ROW;

/// Columns a file must have for a mapping and its dialect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    needs: Vec<Need>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Need {
    /// `path = "x"`, a dialect column.
    One(String),
    /// `paths = ["x", "y"]`: at least one of them.
    Any(Vec<String>),
}

impl Needs {
    /// Checks a header against the needs; the error names every missing
    /// column, sorted (`a|b` when either would do), and the header's named
    /// columns.
    pub fn check(&self, columns: &Columns, line: u64) -> Result<(), FileError> {
        let mut missing: Vec<String> = self
            .needs
            .iter()
            .filter_map(|n| match n {
                Need::One(c) => columns.get(c).is_none().then(|| c.clone()),
                Need::Any(cs) => cs
                    .iter()
                    .all(|c| columns.get(c).is_none())
                    .then(|| cs.join("|")),
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort();
        Err(FileError::MissingColumns {
            line,
            missing,
            found: columns
                .names()
                .iter()
                .filter(|n| !n.is_empty())
                .cloned()
                .collect(),
        })
    }

    /// Column names, each once, in the order first needed.
    pub fn columns(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for n in &self.needs {
            let names: Vec<&str> = match n {
                Need::One(c) => vec![c.as_str()],
                Need::Any(cs) => cs.iter().map(String::as_str).collect(),
            };
            for c in names {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
        out
    }

    fn push(&mut self, need: Need) {
        if !self.needs.contains(&need) {
            self.needs.push(need);
        }
    }
}

/// What the connector keeps beside a compiled mapping.
#[derive(Debug, Clone)]
pub struct Profile {
    pub needs: Needs,
    /// The zone `dates` are read in: the dialect's `timezone`, else the
    /// mapping's, else UTC.
    pub zone: Zone,
}

impl Profile {
    /// Reads the mapping file again for its paths and `timezone`.
    pub fn read(file: &Path, dialect: &Dialect) -> Result<Profile, LoadError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| LoadError::file(file, format!("cannot read: {e}")))?;
        let spec: MappingFile =
            toml::from_str(&text).map_err(|e| LoadError::file(file, e.message().to_string()))?;
        let zone = match (&dialect.timezone, &spec.timezone) {
            (Some(z), _) => *z,
            (None, Some(tz)) => Zone::parse(tz.get_ref()).map_err(|e| LoadError::file(file, e))?,
            (None, None) => Zone::default(),
        };
        let wide = dialect.layout == Layout::ResultsPerColumn;
        let mut needs = Needs::default();
        let mut add = |names: Vec<&String>| {
            let names: Vec<String> = names
                .into_iter()
                .filter(|n| !n.starts_with('$'))
                .filter(|n| !(wide && (*n == TEST_CODE || *n == RESULT)))
                .cloned()
                .collect();
            match names.len() {
                0 => {}
                1 => needs.push(Need::One(names.into_iter().next().unwrap_or_default())),
                _ => needs.push(Need::Any(names)),
            }
        };
        for e in &spec.events {
            let kind = e.kind.get_ref();
            let constant_kind = kind.path.is_some() && kind.map.is_none() && kind.paths.is_empty();
            if !constant_kind {
                walk(kind, &mut add);
            }
            for f in [&e.coi, &e.order_id, &e.product].into_iter().flatten() {
                walk(f.get_ref(), &mut add);
            }
            walk(e.occurred_at.get_ref(), &mut add);
            for f in e.data.values() {
                walk(f.get_ref(), &mut add);
            }
            if let Some(id) = &e.identity {
                let mut fields = vec![&id.order_authority, &id.name, &id.birth_date];
                for (_, value, authority) in id.identifiers() {
                    fields.push(value);
                    fields.push(authority);
                }
                for f in fields.into_iter().flatten() {
                    walk(f.get_ref(), &mut add);
                }
            }
        }
        for c in dialect
            .dates
            .iter()
            .chain(&dialect.numbers)
            .chain(&dialect.result_columns)
        {
            if !(wide && c == RESULT) {
                needs.push(Need::One(c.clone()));
            }
        }
        debug_assert!(!needs.columns().contains(&ROW));
        Ok(Profile { needs, zone })
    }
}

fn walk<'a>(f: &'a FieldSpec, add: &mut impl FnMut(Vec<&'a String>)) {
    if let Some(p) = &f.path {
        add(vec![p]);
    }
    if !f.paths.is_empty() {
        add(f.paths.iter().collect());
    }
    for child in f.fields.iter().flat_map(|m| m.values()) {
        walk(child.get_ref(), add);
    }
}
