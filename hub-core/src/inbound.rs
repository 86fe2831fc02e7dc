//! What a connector hands the hub, and what the hub answers.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::event::TherapyEvent;

/// Raw bytes as received from a partner, before any interpretation.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// Connector kind, e.g. `hl7v2`.
    pub connector: &'static str,
    /// The partner as the connector identified it (`unknown` when it could not).
    pub partner: String,
    /// MIME type of the payload, e.g. `x-application/hl7-v2+er7`.
    pub content_type: &'static str,
    /// The partner's own message id (HL7 MSH-10), the dedup key with `partner`.
    pub message_id: Option<String>,
    pub payload: Bytes,
    /// SHA-256 of `payload`, lowercase hex.
    pub sha256: String,
    pub received_at: DateTime<Utc>,
    /// Where it came from (peer address, file path), for logs and operators.
    pub origin: String,
    /// Resources the message creates or updates at the hub (a FHIR create
    /// or update), kept with it: written in the same commit when the
    /// message is accepted, never when it fails.
    pub resources: Vec<ResourceWrite>,
}

/// One resource a message writes: what a later read, conditional create or
/// reference finds by its type and id or by an identifier. Its version is
/// the row of the message that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceWrite {
    /// `ServiceRequest`.
    pub resource_type: String,
    pub id: String,
    /// `(system, value)` pairs it can be found by (`system` may be empty).
    pub identifiers: Vec<(String, String)>,
    /// The resource as kept (JSON).
    pub body: String,
}

impl Inbound {
    /// Wraps received bytes, hashing them and stamping the receive time.
    pub fn new(
        connector: &'static str,
        partner: impl Into<String>,
        content_type: &'static str,
        message_id: Option<String>,
        payload: Bytes,
        origin: impl Into<String>,
    ) -> Self {
        let sha256 = hex::encode(Sha256::digest(&payload));
        Inbound {
            connector,
            partner: partner.into(),
            content_type,
            message_id,
            payload,
            sha256,
            received_at: Utc::now(),
            origin: origin.into(),
            resources: Vec::new(),
        }
    }
}

/// What decoding and mapping made of an inbound message (named apart from the event `Interpretation`).
#[derive(Debug, Clone)]
pub enum Decoded {
    /// Mapped: zero or more events to route.
    Events(Vec<TherapyEvent>),
    /// Understood but could not be mapped (bad value, missing required field):
    /// stored, dead-lettered, answered with an application error (HL7 `AE`).
    Failed(Problem),
    /// Not acceptable at all (not the protocol, unsupported type, too large):
    /// stored with the reason and refused (HL7 `AR`).
    Rejected(Problem),
}

/// Why a message failed or was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub stage: crate::error::Stage,
    /// Stable machine-readable code, e.g. `unsupported_message_type`.
    pub code: &'static str,
    /// Human-readable reason naming the offending element.
    pub reason: String,
}

impl Problem {
    /// The status an HTTP intake (FHIR, webhooks) answers a message that
    /// failed with this problem: 409 Conflict when the identity registry
    /// contradicts it, else 422 (understood, not acceptable). Refusals of
    /// the bytes themselves (malformed, too large) are the connector's own.
    pub fn http_status(&self) -> u16 {
        if self.code == crate::store::IDENTITY_CONFLICT {
            409
        } else {
            422
        }
    }

    /// The reason with every quoted value (`"…"`) blanked, for logs: values
    /// come from the message and may be patient data. The full reason stays
    /// in the store, the partner's NAK and `cgthub dlq show`.
    pub fn log_reason(&self) -> String {
        redact_quoted(&self.reason)
    }

    pub fn new(stage: crate::error::Stage, code: &'static str, reason: impl Into<String>) -> Self {
        Problem {
            stage,
            code,
            reason: reason.into(),
        }
    }
}

/// The hub's answer once the message is durable: the connector turns this
/// into its protocol's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Store row id of the raw message.
    pub message_row: i64,
    pub outcome: Outcome,
    /// True when this was a repeat of a message already taken; the outcome is
    /// the original's.
    pub duplicate: bool,
    /// Events held by the identity registry (stored, not routed yet).
    pub held: usize,
    /// Why the store failed the message itself (an identity conflict).
    pub problem: Option<Problem>,
}

/// The durable disposition of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored; its events are routed (or held as unmatched).
    Accepted { events: usize },
    /// Stored, then failed (HL7 `AE`).
    Failed(String),
    /// Stored and refused (HL7 `AR`).
    Rejected(String),
}

/// Replaces the contents of every double-quoted run with `…`.
pub fn redact_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for c in text.chars() {
        if c == '"' {
            if inside {
                out.push('…');
            }
            inside = !inside;
            out.push(c);
        } else if !inside {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_identity_conflict_is_409_for_http_partners() {
        use crate::error::Stage;
        let conflict = Problem::new(Stage::Identity, crate::store::IDENTITY_CONFLICT, "x");
        assert_eq!(conflict.http_status(), 409);
        let coi = Problem::new(Stage::Identity, crate::coi_check::INVALID_COI, "x");
        assert_eq!(coi.http_status(), 422);
    }

    use super::*;

    #[test]
    fn quoted_values_are_blanked_for_logs() {
        let p = Problem::new(
            crate::error::Stage::Map,
            "bad_value",
            r#"mapping x: data.dob: "19850317" is not an HL7 timestamp (at PID-7)"#,
        );
        assert_eq!(
            p.log_reason(),
            r#"mapping x: data.dob: "…" is not an HL7 timestamp (at PID-7)"#
        );
        assert_eq!(
            redact_quoted(r#"no mapping for "ADT^A01" from partner "LAB""#),
            r#"no mapping for "…" from partner "…""#
        );
        assert_eq!(redact_quoted("plain"), "plain");
    }
}
