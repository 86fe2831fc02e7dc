//! Declarative mappings: TOML files under `mappings/<format>/` that turn a
//! parsed partner message into canonical events.
//!
//! Mappings are data, not code: a new partner is a new file. The language is
//! small on purpose (paths, value maps, conversions, constants, required
//! fields, `foreach` over repeated groups); a connector that needs more
//! implements its own mapping in Rust. See [`spec`] for the file format.

pub mod cases;
mod compile;
pub mod convert;
pub mod document;
mod engine;
pub mod spec;
mod val;

use std::fmt;
use std::path::{Path, PathBuf};

pub use compile::{compile, Mapping};
pub use document::{Document, Format, NoDialect};
pub use engine::{MapContext, MapError, MapErrorKind};

/// A file that could not be loaded, with the line to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is the file as a whole.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl LoadError {
    /// Locates byte `offset` of `text` as line and column.
    pub fn at(file: &Path, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        LoadError {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    /// A problem with a whole file (unreadable, misplaced).
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        LoadError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: message.into(),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

impl std::error::Error for LoadError {}

/// Every mapping of one format, and the rule that picks one for a message.
#[derive(Debug)]
pub struct MappingSet<F: Format> {
    mappings: Vec<Mapping<F>>,
}

impl<F: Format> Default for MappingSet<F> {
    fn default() -> Self {
        MappingSet {
            mappings: Vec::new(),
        }
    }
}

impl<F: Format> MappingSet<F> {
    /// Loads `dir/*.toml` (not `*.cases.toml`), in file-name order. Every bad
    /// file is reported, not just the first. Two mappings claiming the same
    /// partner and message type are an error: which one runs must never
    /// depend on luck.
    pub fn load_dir(dir: &Path) -> Result<Self, Vec<LoadError>> {
        let mut errors = Vec::new();
        let mut set = MappingSet::default();
        let files = match mapping_files(dir) {
            Ok(f) => f,
            Err(e) => {
                return Err(vec![LoadError::file(
                    dir,
                    format!("cannot read the mappings folder: {e}"),
                )])
            }
        };
        for file in files {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(LoadError::file(&file, format!("cannot read: {e}")));
                    continue;
                }
            };
            let stem = file
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".toml"))
                .unwrap_or_default()
                .to_string();
            match compile::<F>(&file, &text, &stem) {
                Ok(m) => {
                    if let Some(clash) = set.clash(&m) {
                        errors.push(LoadError::file(&file, clash));
                    } else {
                        set.mappings.push(m);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    fn clash(&self, m: &Mapping<F>) -> Option<String> {
        for other in &self.mappings {
            for t in &m.message_types {
                for p in &m.partners {
                    if other.message_types.contains(t) && other.partners.contains(p) {
                        return Some(format!(
                            "{t} from partner {p:?} is already mapped by {}",
                            other.file.display()
                        ));
                    }
                }
            }
        }
        None
    }

    /// The mapping for a partner's message type: one naming the partner wins
    /// over one for `"*"`.
    pub fn select(&self, partner: &str, message_type: &str) -> Option<&Mapping<F>> {
        let for_type = || {
            self.mappings
                .iter()
                .filter(move |m| m.message_types.iter().any(|t| t == message_type))
        };
        for_type()
            .find(|m| m.partners.iter().any(|p| p == partner))
            .or_else(|| for_type().find(|m| m.partners.iter().any(|p| p == "*")))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Mapping<F>> {
        self.mappings.iter()
    }

    pub fn len(&self) -> usize {
        self.mappings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mappings.is_empty()
    }
}

/// `*.toml` mapping files in a folder (fixtures `*.cases.toml` excluded), sorted.
pub fn mapping_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    list(dir, |n| n.ends_with(".toml") && !n.ends_with(".cases.toml"))
}

/// `*.cases.toml` fixture files in a folder, sorted.
pub fn case_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    list(dir, |n| n.ends_with(".cases.toml"))
}

fn list(dir: &Path, keep: impl Fn(&str) -> bool) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && path.file_name().and_then(|n| n.to_str()).is_some_and(&keep) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests;
