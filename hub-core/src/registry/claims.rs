//! What a message says about whose material it is: the identifiers and
//! demographics a mapping reads next to each event (`[events.identity]`).
//!
//! Claims travel with the event in memory only (never serialised into it):
//! the registry checks them, links the identifiers, and keeps the
//! demographics sealed; the routed event carries none of them.

use std::fmt;

/// The kinds of identifier the registry links to a chain of identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdKind {
    /// The therapy order (placer or filler order number).
    Order,
    /// Medical record number, with its assigning authority. PHI: the
    /// registry keeps it only as a keyed hash (and sealed on the therapy).
    Mrn,
    /// A specimen or sample id (HL7 SPM-2, OBR-3; a LIMS sample id).
    Specimen,
    /// ISBT 128 donation identification number.
    Din,
    /// A manufacturing batch.
    Batch,
    /// A material lot.
    Lot,
    /// A courier tracking number.
    Tracking,
}

impl IdKind {
    pub const ALL: [IdKind; 7] = [
        IdKind::Order,
        IdKind::Mrn,
        IdKind::Specimen,
        IdKind::Din,
        IdKind::Batch,
        IdKind::Lot,
        IdKind::Tracking,
    ];

    /// The name used in mappings, the store and operator output.
    pub const fn as_str(self) -> &'static str {
        match self {
            IdKind::Order => "order",
            IdKind::Mrn => "mrn",
            IdKind::Specimen => "specimen",
            IdKind::Din => "din",
            IdKind::Batch => "batch",
            IdKind::Lot => "lot",
            IdKind::Tracking => "tracking",
        }
    }

    pub fn parse(s: &str) -> Option<IdKind> {
        IdKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the value is patient data, kept only as a keyed hash.
    pub const fn is_phi(self) -> bool {
        matches!(self, IdKind::Mrn)
    }
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One identifier as a message states it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Claimed {
    pub kind: IdKind,
    /// Issuing system or assigning authority; empty when the message names none.
    pub authority: String,
    pub value: String,
}

impl Claimed {
    pub fn new(kind: IdKind, authority: impl Into<String>, value: impl Into<String>) -> Self {
        Claimed {
            kind,
            authority: authority.into(),
            value: value.into(),
        }
    }

    /// How operators see it; an MRN's value is never shown.
    pub fn display(&self) -> String {
        let value = if self.kind.is_phi() {
            "…"
        } else {
            self.value.as_str()
        };
        if self.authority.is_empty() {
            format!("{} {value}", self.kind)
        } else {
            format!("{} {value} ({})", self.kind, self.authority)
        }
    }
}

/// Everything an event's message says about whose material it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// Identifiers besides the event's own `coi` and `order_id`.
    pub identifiers: Vec<Claimed>,
    /// The patient's name as the message gives it (HL7 XPN or plain text).
    pub name: Option<String>,
    /// The patient's birth date as the message gives it.
    pub birth_date: Option<String>,
}

impl Claims {
    pub fn is_empty(&self) -> bool {
        self.identifiers.is_empty() && self.name.is_none() && self.birth_date.is_none()
    }
}
