//! What the mapping engine needs from a parsed message, whatever its format.
//!
//! A connector implements [`Format`] (how paths are written for its format)
//! and [`Document`] (how a parsed message answers them). The engine in this
//! module never sees bytes or protocol details.

use std::borrow::Cow;
use std::fmt::Debug;

/// A source format's path language, e.g. HL7 `PID-3[5=COI].1`.
pub trait Format: Debug + 'static {
    /// The name used in mapping files' `format` key (`hl7v2`, `json`, …).
    const NAME: &'static str;
    /// A path compiled once, when the mapping is loaded.
    type Path: Clone + Debug + Send + Sync + 'static;
    /// Format-specific settings a mapping carries in its `[dialect]` table
    /// (a CSV partner's delimiter, encoding, date formats), checked when the
    /// mapping loads. Formats without any use [`NoDialect`].
    type Dialect: Debug + Default + Send + Sync + serde::de::DeserializeOwned + 'static;
    /// Compiles a path, or says precisely what is wrong with it.
    fn parse_path(text: &str) -> Result<Self::Path, String>;

    /// Whether a path can drive `foreach` (select repeated groups).
    fn check_foreach(_path: &Self::Path) -> Result<(), String> {
        Ok(())
    }
}

/// A parsed message that answers compiled paths.
///
/// A *scope* is a position in the document: the whole message, or one
/// repeated group selected by a mapping's `foreach` (an OBR and what follows
/// it, a JSON array element). Paths are evaluated relative to a scope.
pub trait Document {
    type Format: Format;
    type Scope: Copy + Debug;

    /// The scope covering the whole message.
    fn root(&self) -> Self::Scope;

    /// The message type used to pick a mapping (HL7 `ORU^R01`).
    fn message_type(&self) -> Option<Cow<'_, str>>;

    /// Appends every value `path` selects in `scope`, decoded to text, in
    /// document order. Empty values are skipped.
    fn values<'a>(
        &'a self,
        path: &<Self::Format as Format>::Path,
        scope: Self::Scope,
        out: &mut Vec<Cow<'a, str>>,
    );

    /// The sub-scopes `path` selects within `scope`, for `foreach`.
    fn scopes(&self, path: &<Self::Format as Format>::Path, scope: Self::Scope)
        -> Vec<Self::Scope>;

    /// Whether `path` can select more than one value (it has a wildcard):
    /// such a field maps to a JSON array.
    fn is_multi(path: &<Self::Format as Format>::Path) -> bool;
}

/// The dialect of a format that has none: a `[dialect]` table with any key
/// in it is refused when the mapping loads.
#[derive(Debug, Default, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoDialect {}
