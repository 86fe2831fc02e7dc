//! Dead letters as operators see them, what the broker consumer hands the
//! store, and what a replay or purge did.

use chrono::{DateTime, Utc};

use super::records::MessageRecord;
use super::StoreError;
use crate::error::ErrorClass;

/// Where a dead letter is in its life (`dead_letters.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadLetterStatus {
    /// Waiting for an operator.
    Open,
    /// An operator replayed it (see `replayed_by`, `replayed_at`).
    Replayed,
    /// An operator gave up on it, with a reason. Final; the row is kept.
    Purged,
}

impl DeadLetterStatus {
    pub const ALL: &'static [DeadLetterStatus] = &[
        DeadLetterStatus::Open,
        DeadLetterStatus::Replayed,
        DeadLetterStatus::Purged,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            DeadLetterStatus::Open => "open",
            DeadLetterStatus::Replayed => "replayed",
            DeadLetterStatus::Purged => "purged",
        }
    }

    /// `open`, `replayed` or `purged`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|st| st.as_str() == s)
    }

    pub(crate) fn from_db(s: &str) -> Result<Self, StoreError> {
        Self::parse(s).ok_or_else(|| StoreError::Corrupt {
            table: "dead_letters",
            detail: format!("unknown status {s:?}"),
        })
    }
}

impl std::fmt::Display for DeadLetterStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Stage of a dead letter from a broker consumer (a message the broker
/// dead-lettered to `cgt.dead`).
pub const STAGE_CONSUME: &str = "consume";
/// Connector of the messages rows that keep broker dead letters' bodies.
pub const BROKER_CONNECTOR: &str = "amqp";

/// Something that could not be processed or delivered, kept for an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    /// The message it came from (for a broker dead letter: the row keeping
    /// the body the broker returned).
    pub message_row: i64,
    /// Connector and partner of that message.
    pub connector: String,
    pub partner: String,
    /// Set for delivery failures, and for broker dead letters of our events.
    pub event_id: Option<String>,
    /// The outbox row a delivery dead letter gave up on.
    pub outbox_id: Option<i64>,
    pub route: Option<String>,
    pub sink: Option<String>,
    pub routing_key: Option<String>,
    /// From the event when there is one.
    pub coi: Option<String>,
    /// Where it failed (`decode`, `map`, `deliver`, `consume`, …).
    pub stage: String,
    pub class: ErrorClass,
    /// Reason code of the latest failure (`required_field_missing`,
    /// `delivery_failed`, `unroutable`, `rejected`, …).
    pub code: String,
    /// Reason text of the latest failure.
    pub reason: String,
    /// Attempts so far (deliveries, processings, broker deaths).
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub first_attempt_at: DateTime<Utc>,
    pub last_attempt_at: DateTime<Utc>,
    pub status: DeadLetterStatus,
    /// The latest replay (kept when a replayed delivery fails again and the
    /// dead letter reopens).
    pub replayed_at: Option<DateTime<Utc>>,
    pub replayed_by: Option<String>,
    pub purged_at: Option<DateTime<Utc>>,
    pub purged_by: Option<String>,
    pub purge_reason: Option<String>,
}

/// Which dead letters to list, newest first; set fields must all match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// `None`: every status.
    pub status: Option<DeadLetterStatus>,
    pub stage: Option<String>,
    /// Reason code.
    pub code: Option<String>,
    pub limit: u32,
}

impl Default for DeadLetterFilter {
    /// The newest 100 open ones.
    fn default() -> Self {
        DeadLetterFilter {
            status: Some(DeadLetterStatus::Open),
            stage: None,
            code: None,
            limit: 100,
        }
    }
}

/// One link of a dead letter's error chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    /// `system`, or the operator.
    pub actor: String,
    /// `dead_lettered`, `replay_failed`, `replayed` or `purged`.
    pub action: String,
    /// The reason code of a failure.
    pub code: Option<String>,
    /// A failure's reason, what a replay did, or why it was purged.
    pub note: String,
}

/// An audit log record, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// JSON text.
    pub detail: String,
    pub hash: String,
}

/// A dead letter with everything `dlq show` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterDetail {
    pub dead_letter: DeadLetter,
    /// The message it came from, with the payload as received.
    pub message: MessageRecord,
    /// The error chain, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Audit records about it (`dead_letter:ID`), oldest first.
    pub audit: Vec<AuditRecord>,
}

/// A message the broker dead-lettered (RabbitMQ `cgt.dead`), as the
/// consumer that drains that queue read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerDeadLetter {
    /// The body, byte for byte.
    pub body: Vec<u8>,
    /// AMQP `message_id`: our event id when we published it.
    pub message_id: Option<String>,
    /// Event kind header, when present.
    pub kind: Option<String>,
    /// The routing key it was published with.
    pub routing_key: String,
    pub coi: Option<String>,
    pub product: Option<String>,
    pub partner: Option<String>,
    /// `x-death` reason: `rejected`, `expired`, `maxlen`, `delivery_limit`.
    pub reason: String,
    /// The queue it died in.
    pub queue: Option<String>,
    /// `x-death` count.
    pub death_count: u32,
    /// `x-death` time of the first death, when the broker gave one.
    pub first_death_at: Option<DateTime<Utc>>,
}

/// Where a broker dead letter of one of our events goes again: the route,
/// sink and routing key of the outbox row that delivered the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayTarget {
    /// The outbox row copied.
    pub outbox_id: i64,
    pub route: String,
    pub sink: String,
    pub routing_key: String,
}

/// What a replay or a purge did to one dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DlqOutcome {
    /// Replayed. `detail` says what was queued; `sinks` are the sinks with
    /// new work (their relays are woken).
    Replayed { detail: String, sinks: Vec<String> },
    /// Processed again and failed again: it stays open with this reason.
    Failed { code: String, reason: String },
    /// Purged.
    Purged,
    /// Nothing was done, and why (not open, superseded, no connector, …).
    Refused { reason: String },
    /// No such dead letter.
    NotFound,
    /// The store could not do it (nothing was changed).
    Error { reason: String },
}

impl DlqOutcome {
    /// `replayed`, `failed`, `purged`, `refused`, `not_found` or `error`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DlqOutcome::Replayed { .. } => "replayed",
            DlqOutcome::Failed { .. } => "failed",
            DlqOutcome::Purged => "purged",
            DlqOutcome::Refused { .. } => "refused",
            DlqOutcome::NotFound => "not_found",
            DlqOutcome::Error { .. } => "error",
        }
    }

    /// True when the operator's wish was carried out.
    pub fn is_success(&self) -> bool {
        matches!(self, DlqOutcome::Replayed { .. } | DlqOutcome::Purged)
    }

    /// A line for operators: what happened, or why not.
    pub fn detail(&self) -> String {
        match self {
            DlqOutcome::Replayed { detail, .. } => detail.clone(),
            DlqOutcome::Failed { code, reason } => format!("failed again ({code}): {reason}"),
            DlqOutcome::Purged => "purged".into(),
            DlqOutcome::Refused { reason } | DlqOutcome::Error { reason } => reason.clone(),
            DlqOutcome::NotFound => "no such dead letter".into(),
        }
    }

    pub(crate) fn refused(reason: impl Into<String>) -> Self {
        DlqOutcome::Refused {
            reason: reason.into(),
        }
    }
}

/// One dead letter's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqResult {
    pub id: i64,
    pub outcome: DlqOutcome,
}
