//! Which B2MML documents cgthub reads, and in which namespaces.
//!
//! A document is recognised by the local name of its element, in a B2MML
//! namespace ([`NAMESPACES`]), either as the root element or as a noun in
//! the `DataArea` of a BOD (`ProcessProductionPerformance`,
//! `SyncMaterialLot`, `ShowProductionSchedule`, …: verb + noun).
//!
//! Batch records and dispositions: B2MML V0600 has no disposition
//! document of its own. cgthub reads a QA disposition from a
//! `MaterialLot` that carries a `MaterialLotProperty` with ID
//! `Disposition` (the lot *is* the batch of a cell therapy product), and
//! accepts `BatchProductionRecord` (the batch record document of
//! B2MML V0700 and later, from BatchML) as a batch record update.

/// The B2MML namespaces accepted at the root, and their versions.
pub const NAMESPACES: &[(&str, Version)] = &[
    ("http://www.mesa.org/xml/B2MML-V0600", Version::V0600),
    ("http://www.mesa.org/xml/B2MML-V0700", Version::V0700),
    ("http://www.mesa.org/xml/B2MML", Version::V0800),
    ("http://www.mesa.org/xml/B2MML-V0500", Version::V0500),
    ("http://www.wbf.org/xml/b2mml-v0400", Version::V0400),
    ("http://www.wbf.org/xml/B2MML-V0400", Version::V0400),
];

/// A B2MML schema version, from the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Version {
    V0400,
    V0500,
    V0600,
    V0700,
    /// V0800 and later (one unversioned namespace).
    V0800,
}

impl Version {
    /// The version of a namespace URI, if it is a B2MML one.
    pub fn of_namespace(ns: &[u8]) -> Option<Version> {
        NAMESPACES
            .iter()
            .find(|(n, _)| n.as_bytes() == ns)
            .map(|(_, v)| *v)
    }
}

/// The BOD verbs a root element name may start with.
pub const VERBS: &[&str] = &[
    "Process",
    "Sync",
    "Show",
    "Get",
    "Acknowledge",
    "Respond",
    "Change",
    "Cancel",
    "Confirm",
];

macro_rules! kinds {
    ($( $(#[$doc:meta])* $v:ident ),+ $(,)?) => {
        /// A B2MML document cgthub understands (the message type mappings select on).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum DocumentKind { $( $(#[$doc])* $v, )+ }

        impl DocumentKind {
            /// Every kind.
            pub const ALL: &'static [DocumentKind] = &[$(DocumentKind::$v),+];

            /// The element's local name, also the mapping's message type.
            pub const fn as_str(self) -> &'static str {
                match self { $(DocumentKind::$v => stringify!($v),)+ }
            }

            /// The kind of an element's local name.
            pub fn from_local_name(name: &[u8]) -> Option<Self> {
                $( if name == stringify!($v).as_bytes() { return Some(DocumentKind::$v); } )+
                None
            }
        }
    };
}

kinds! {
    /// Results of production for a schedule (ProductionResponse*).
    ProductionPerformance,
    /// Results of one production request (SegmentResponse*).
    ProductionResponse,
    /// What one process segment (step) did.
    SegmentResponse,
    /// A material lot: the batch, its status, its disposition property.
    MaterialLot,
    /// A sub-lot (a bag, a vial set) of a lot.
    MaterialSubLot,
    /// Material definitions, lots and sub-lots.
    MaterialInformation,
    /// Requests for production (ProductionRequest*, SegmentRequirement*).
    ProductionSchedule,
    /// One scheduled segment.
    SegmentRequirement,
    /// A batch production record (B2MML V0700+, from BatchML).
    BatchProductionRecord,
}

impl std::fmt::Display for DocumentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The noun of a BOD root name (`ShowEquipmentInformation` → `EquipmentInformation`).
pub fn bod_noun(root: &str) -> Option<&str> {
    VERBS
        .iter()
        .find_map(|v| root.strip_prefix(v))
        .filter(|n| n.starts_with(|c: char| c.is_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_namespaces_are_recognised() {
        assert_eq!(
            DocumentKind::from_local_name(b"SegmentResponse"),
            Some(DocumentKind::SegmentResponse)
        );
        assert_eq!(DocumentKind::from_local_name(b"Segment"), None);
        assert_eq!(DocumentKind::MaterialLot.as_str(), "MaterialLot");
        assert_eq!(
            Version::of_namespace(b"http://www.mesa.org/xml/B2MML-V0600"),
            Some(Version::V0600)
        );
        assert_eq!(
            Version::of_namespace(b"http://www.mesa.org/xml/B2MML"),
            Some(Version::V0800)
        );
        assert_eq!(Version::of_namespace(b"urn:other"), None);
        assert_eq!(
            bod_noun("ShowEquipmentInformation"),
            Some("EquipmentInformation")
        );
        assert_eq!(bod_noun("ProcessMaterialLot"), Some("MaterialLot"));
        assert_eq!(bod_noun("Processing"), None);
    }
}
