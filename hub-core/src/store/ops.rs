//! The operations the writer task accepts, and its answers.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::audit::AuditDraft;
use super::dlq_records::{BrokerDeadLetter, DlqOutcome};
use super::holds::HoldAction;
use super::records::{IntakeOutcome, IntakeRecord};
use super::registry::RegistryContext;
use super::StoreError;
use crate::error::ErrorClass;
use crate::inbound::Receipt;

/// One write, as queued for the next group commit.
#[derive(Debug)]
pub(crate) enum Request {
    Intake(IntakeRecord),
    Delivered(Vec<i64>),
    RetryLater {
        outbox_id: i64,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: String,
    },
    DeadLetterDelivery {
        outbox_id: i64,
        attempts: u32,
        class: ErrorClass,
        code: &'static str,
        error: String,
    },
    Audit(AuditDraft),
    /// A message dead letter processed again: the new outcome for its row.
    ReplayMessage {
        dead_letter: i64,
        actor: String,
        outcome: IntakeOutcome,
    },
    /// A delivery dead letter: its outbox row back to pending.
    ReplayDelivery {
        dead_letter: i64,
        actor: String,
    },
    /// A broker dead letter of our event: a new outbox row like `target`.
    ReplayConsumed {
        dead_letter: i64,
        actor: String,
        target: i64,
    },
    Purge {
        dead_letter: i64,
        actor: String,
        reason: String,
    },
    BrokerDead(BrokerDeadLetter),
    /// An operator releases a hold (see `holds.rs`).
    ReleaseHold {
        hold: i64,
        actor: String,
        reason: String,
        cx: Arc<RegistryContext>,
    },
    RejectHold {
        hold: i64,
        actor: String,
        reason: String,
    },
    /// Records the registry's index key fingerprint, or answers the one
    /// recorded before (`Answer::Text`).
    IndexKey(String),
    /// Holds past their deadline become dead letters (at most `limit`).
    ExpireHolds {
        cx: Arc<RegistryContext>,
        limit: i64,
    },
}

impl Request {
    /// The operation's name, for errors and logs.
    pub(crate) fn op(&self) -> &'static str {
        match self {
            Request::Intake(_) => "intake",
            Request::Delivered(_) => "delivered",
            Request::RetryLater { .. } => "retry_later",
            Request::DeadLetterDelivery { .. } => "dead_letter_delivery",
            Request::Audit(_) => "audit",
            Request::ReplayMessage { .. } => "replay_message",
            Request::ReplayDelivery { .. } => "replay_delivery",
            Request::ReplayConsumed { .. } => "replay_consumed",
            Request::Purge { .. } => "purge_dead_letter",
            Request::BrokerDead(_) => "dead_from_broker",
            Request::ReleaseHold { .. } => "release_hold",
            Request::RejectHold { .. } => "reject_hold",
            Request::ExpireHolds { .. } => "expire_holds",
            Request::IndexKey(_) => "index_key",
        }
    }

    /// What it is about, for errors: never payload content.
    pub(crate) fn subject(&self) -> String {
        match self {
            Request::Intake(r) => message_subject(r),
            Request::Delivered(ids) => match ids.as_slice() {
                [one] => format!("outbox {one}"),
                _ => format!("{} outbox rows", ids.len()),
            },
            Request::RetryLater { outbox_id, .. }
            | Request::DeadLetterDelivery { outbox_id, .. } => {
                format!("outbox {outbox_id}")
            }
            Request::Audit(d) => format!("{} {}", d.action, d.subject),
            Request::ReplayMessage { dead_letter, .. }
            | Request::ReplayDelivery { dead_letter, .. }
            | Request::ReplayConsumed { dead_letter, .. }
            | Request::Purge { dead_letter, .. } => format!("dead letter {dead_letter}"),
            Request::ReleaseHold { hold, .. } | Request::RejectHold { hold, .. } => {
                format!("hold {hold}")
            }
            Request::ExpireHolds { .. } => "due holds".into(),
            Request::IndexKey(_) => "the registry's index key".into(),
            Request::BrokerDead(d) => format!(
                "broker dead letter {} from queue {}",
                d.message_id.as_deref().unwrap_or("(no message id)"),
                d.queue.as_deref().unwrap_or("?")
            ),
        }
    }
}

/// `connector/partner/message id` (or the payload hash when there is no id).
pub(crate) fn message_subject(r: &IntakeRecord) -> String {
    let i = &r.inbound;
    match &i.message_id {
        Some(id) => format!("{}/{}/{}", i.connector, i.partner, id),
        None => format!("{}/{}/sha256:{}", i.connector, i.partner, i.sha256),
    }
}

/// The writer's answer to one request.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    Receipt(Receipt),
    Done,
    Id(i64),
    Dlq(DlqOutcome),
    Hold(HoldAction),
    Text(String),
}

pub(crate) type Reply = oneshot::Sender<Result<Answer, StoreError>>;

/// A request with the channel its caller waits on.
#[derive(Debug)]
pub(crate) struct Op {
    pub req: Request,
    pub reply: Reply,
}

/// What the writer's channel carries.
// Boxing the op would cost an allocation per write; the channel's slots
// are allocated once, so the size difference is harmless.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Command {
    Op(Op),
    /// Commit what is queued before this, close the connection, then answer.
    Close(oneshot::Sender<()>),
}

/// Error for an answer of the wrong shape: a bug in this module, not a
/// database problem, reported rather than panicking.
pub(crate) fn mismatch(op: &'static str) -> StoreError {
    StoreError::Corrupt {
        table: "writer",
        detail: format!("unexpected answer to {op}"),
    }
}

impl Answer {
    pub(crate) fn receipt(r: Result<Answer, StoreError>) -> Result<Receipt, StoreError> {
        match r? {
            Answer::Receipt(rc) => Ok(rc),
            _ => Err(mismatch("intake")),
        }
    }

    pub(crate) fn done(r: Result<Answer, StoreError>, op: &'static str) -> Result<(), StoreError> {
        match r? {
            Answer::Done => Ok(()),
            _ => Err(mismatch(op)),
        }
    }

    pub(crate) fn id(r: Result<Answer, StoreError>, op: &'static str) -> Result<i64, StoreError> {
        match r? {
            Answer::Id(id) => Ok(id),
            _ => Err(mismatch(op)),
        }
    }

    pub(crate) fn text(
        r: Result<Answer, StoreError>,
        op: &'static str,
    ) -> Result<String, StoreError> {
        match r? {
            Answer::Text(t) => Ok(t),
            _ => Err(mismatch(op)),
        }
    }

    pub(crate) fn hold(
        r: Result<Answer, StoreError>,
        op: &'static str,
    ) -> Result<HoldAction, StoreError> {
        match r? {
            Answer::Hold(h) => Ok(h),
            _ => Err(mismatch(op)),
        }
    }

    pub(crate) fn dlq(
        r: Result<Answer, StoreError>,
        op: &'static str,
    ) -> Result<DlqOutcome, StoreError> {
        match r? {
            Answer::Dlq(o) => Ok(o),
            _ => Err(mismatch(op)),
        }
    }
}
