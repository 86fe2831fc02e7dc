//! Error vocabulary shared by every stage: where it happened and what can be done.

use serde::{Deserialize, Serialize};

/// The pipeline stage where a problem arose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Stage {
    Receive,
    Decode,
    Map,
    Identity,
    Route,
    Deliver,
}

impl Stage {
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Receive => "receive",
            Stage::Decode => "decode",
            Stage::Map => "map",
            Stage::Identity => "identity",
            Stage::Route => "route",
            Stage::Deliver => "deliver",
        }
    }
}

/// What can be done about an error: retry and dead-letter decisions read
/// this, never the error's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorClass {
    /// May succeed later: retry with backoff.
    Transient,
    /// Will fail again the same way: dead-letter now.
    Permanent,
    /// The component cannot go on: stop it.
    Fatal,
}

impl ErrorClass {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Fatal => "fatal",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
