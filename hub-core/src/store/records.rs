//! What goes into the store and what comes back out of it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use crate::error::ErrorClass;
use crate::event::TherapyEvent;
use crate::inbound::{Inbound, Problem};

/// What the hub asks the store to make durable for one inbound message.
#[derive(Debug, Clone)]
pub struct IntakeRecord {
    pub inbound: Inbound,
    pub outcome: IntakeOutcome,
}

/// How the hub disposed of the message, decided before it is stored so that
/// the message, its events and their outbox rows commit together.
#[derive(Debug, Clone)]
pub enum IntakeOutcome {
    /// Status `routed`: one events row each, one outbox row per destination.
    /// An event without destinations is stored with routing `unmatched`.
    Events(Vec<PreparedEvent>),
    /// Status `dead`: a dead letter (class permanent) and an audit record.
    Failed(Problem),
    /// Status `rejected`: a dead letter and an audit record.
    Rejected(Problem),
}

/// One event ready to store: its indexed fields, its JSON body and where it goes.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub event_id: Uuid,
    pub kind: &'static str,
    pub coi: Option<String>,
    pub order_id: Option<String>,
    pub product: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// The event's JSON, stored and delivered byte for byte.
    pub body: String,
    /// One outbox row each; empty means unmatched.
    pub destinations: Vec<Destination>,
    /// For the identity registry: without it the event is not reconciled
    /// (stores used directly, in tests and tools).
    pub identity: Option<Box<super::registry::EventIdentity>>,
    /// For an event without a COI: where in `body` its `"coi"` member goes
    /// (right after `data`), so the registry can give it one without
    /// serialising the event again in the writer.
    pub coi_at: Option<usize>,
}

impl PreparedEvent {
    /// Serialises `ev` and copies out the fields the store indexes.
    ///
    /// # Panics
    ///
    /// If `ev` does not serialise to JSON, which the event model rules out
    /// (no maps with non-string keys, no fallible `Serialize` impls): that
    /// would be a bug. Use [`PreparedEvent::try_new`] to get an error instead.
    pub fn new(ev: &TherapyEvent, destinations: Vec<Destination>) -> Self {
        match Self::try_new(ev, destinations) {
            Ok(p) => p,
            Err(e) => panic!("therapy event {} does not serialise: {e}", ev.event_id),
        }
    }

    /// Like [`PreparedEvent::new`], returning serialisation errors.
    pub fn try_new(ev: &TherapyEvent, destinations: Vec<Destination>) -> Result<Self, StoreError> {
        let body = serde_json::to_string(ev).map_err(|e| StoreError::Encode {
            what: "therapy event",
            source: e.into(),
        })?;
        Ok(PreparedEvent {
            event_id: ev.event_id,
            kind: ev.kind().as_str(),
            coi: ev.coi.clone(),
            order_id: ev.order_id.clone(),
            product: ev.product.clone(),
            occurred_at: ev.occurred_at,
            recorded_at: ev.recorded_at,
            coi_at: if ev.coi.is_none() {
                coi_position(ev, &body)
            } else {
                None
            },
            body,
            destinations,
            identity: None,
        })
    }

    /// The body with `"coi": coi` where serialising the event with that COI
    /// would put it. `None` when the body's shape is not the one
    /// [`PreparedEvent::try_new`] measured (then serialise again).
    pub fn body_with_coi(&self, coi: &str) -> Option<String> {
        let at = self.coi_at?;
        let value = serde_json::to_string(coi).ok()?;
        let mut out = String::with_capacity(self.body.len() + value.len() + 8);
        out.push_str(self.body.get(..at)?);
        out.push_str(",\"coi\":");
        out.push_str(&value);
        out.push_str(self.body.get(at..)?);
        Some(out)
    }
}

/// A route's decision to send an event to a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The route that matched (its name, for dead letters and operators).
    pub route: String,
    /// The sink to deliver to; the outbox relay polls per sink.
    pub sink: String,
    /// The route's routing key template, filled for this event (brokers).
    pub routing_key: String,
}

/// An outbox row due for delivery, with the event body to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub event_id: String,
    pub route: String,
    pub sink: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Filled from the route's template when the event was routed.
    pub routing_key: String,
    pub kind: String,
    pub coi: Option<String>,
    pub product: Option<String>,
    /// The partner the event's message came from.
    pub partner: String,
    /// The event's JSON, byte for byte as stored.
    pub body: String,
}

/// A stored message's status (`messages.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum MessageStatus {
    Accepted,
    Mapped,
    Held,
    Routed,
    Dead,
    Rejected,
}

impl MessageStatus {
    pub const ALL: &'static [MessageStatus] = &[
        MessageStatus::Accepted,
        MessageStatus::Mapped,
        MessageStatus::Held,
        MessageStatus::Routed,
        MessageStatus::Dead,
        MessageStatus::Rejected,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Accepted => "accepted",
            MessageStatus::Mapped => "mapped",
            MessageStatus::Held => "held",
            MessageStatus::Routed => "routed",
            MessageStatus::Dead => "dead",
            MessageStatus::Rejected => "rejected",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        Self::ALL
            .iter()
            .copied()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt {
                table: "messages",
                detail: format!("unknown status {s:?}"),
            })
    }
}

/// Whether a stored event had somewhere to go (`events.routing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Routing {
    /// At least one outbox row.
    Routed,
    /// No route matched: kept, visible, not delivered.
    Unmatched,
}

impl Routing {
    pub const fn as_str(self) -> &'static str {
        match self {
            Routing::Routed => "routed",
            Routing::Unmatched => "unmatched",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "routed" => Ok(Routing::Routed),
            "unmatched" => Ok(Routing::Unmatched),
            _ => Err(StoreError::Corrupt {
                table: "events",
                detail: format!("unknown routing {s:?}"),
            }),
        }
    }
}

/// Which events to list; all set fields must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    pub coi: Option<String>,
    pub kind: Option<String>,
    pub message_row: Option<i64>,
    /// Only events no route matched.
    pub unmatched_only: bool,
    /// At most this many, newest first.
    pub limit: u32,
}

impl Default for EventFilter {
    /// Everything, newest 100.
    fn default() -> Self {
        EventFilter {
            coi: None,
            kind: None,
            message_row: None,
            unmatched_only: false,
            limit: 100,
        }
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub event_id: String,
    pub kind: String,
    pub coi: Option<String>,
    pub message_row: i64,
    pub routing: Routing,
    /// The event's JSON exactly as given at intake.
    pub body: String,
}

/// A raw message as stored, with the ids and kinds of its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: i64,
    pub connector: String,
    pub partner: String,
    pub message_id: Option<String>,
    pub content_type: String,
    pub sha256: String,
    pub status: MessageStatus,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub stage: Option<String>,
    pub received_at: DateTime<Utc>,
    pub origin: String,
    /// The bytes exactly as received.
    pub payload: Vec<u8>,
    /// `(event_id, kind)` in the order they were stored.
    pub events: Vec<(String, String)>,
}

pub(crate) fn parse_class(s: &str) -> Result<ErrorClass, StoreError> {
    [
        ErrorClass::Transient,
        ErrorClass::Permanent,
        ErrorClass::Fatal,
    ]
    .into_iter()
    .find(|c| c.as_str() == s)
    .ok_or_else(|| StoreError::Corrupt {
        table: "dead_letters",
        detail: format!("unknown class {s:?}"),
    })
}

/// How far the outbox is behind, for health and metrics: cheap to read
/// (the pending rows only, through the `outbox_due` index), so that
/// frequent health checks do not count the whole delivered history.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OutboxDepth {
    pub pending: u64,
    /// Age of the oldest pending row (0 when none): the relay's lag.
    pub oldest_pending_age_secs: f64,
    /// Pending rows this instance holds under a live claim (PostgreSQL).
    pub claimed: u64,
}

/// The outbox counted by state (reads every row: for tests and reports,
/// not for health checks; see [`OutboxDepth`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OutboxStats {
    pub pending: u64,
    /// Age of the oldest pending row (0 when none): the relay's lag.
    pub oldest_pending_age_secs: f64,
    pub dead: u64,
    pub delivered: u64,
    /// Pending rows this instance holds under a live claim (PostgreSQL).
    pub claimed: u64,
}

/// Row counts, for `cgthub` status output and tests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreCounts {
    /// Messages per status; statuses with no message are absent.
    pub by_status: BTreeMap<MessageStatus, u64>,
    pub events: u64,
    /// Events no route matched.
    pub unmatched: u64,
    pub dead_letters: u64,
}

impl StoreCounts {
    /// Messages with `status`.
    pub fn messages(&self, status: MessageStatus) -> u64 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }

    /// All messages.
    pub fn total_messages(&self) -> u64 {
        self.by_status.values().sum()
    }
}

/// Where the `"coi"` member goes in `body`, the serialisation of `ev`
/// (which has none): just before the members that follow it in
/// [`TherapyEvent`]'s field order, whose serialisation (a few hundred bytes,
/// instead of scanning the whole body) gives their length from the end.
fn coi_position(ev: &TherapyEvent, body: &str) -> Option<usize> {
    #[derive(serde::Serialize)]
    struct Tail<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        order_id: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        product: &'a Option<String>,
        #[serde(with = "crate::event::rfc3339::utc")]
        occurred_at: &'a DateTime<Utc>,
        #[serde(with = "crate::event::rfc3339::utc")]
        recorded_at: &'a DateTime<Utc>,
        source: &'a crate::event::Source,
    }
    let tail = serde_json::to_string(&Tail {
        order_id: &ev.order_id,
        product: &ev.product,
        occurred_at: &ev.occurred_at,
        recorded_at: &ev.recorded_at,
        source: &ev.source,
    })
    .ok()?;
    // body = …"data":{…} + "," + members + "}", tail = "{" + members + "}".
    let at = body.len().checked_sub(tail.len())?;
    (body.as_bytes().get(at) == Some(&b',') && body.ends_with(&tail[1..])).then_some(at)
}

#[cfg(test)]
mod coi_splice_tests {
    use super::*;
    use crate::event::{EventData, QcResult, QcResultReported, Source};
    use chrono::TimeZone;

    fn result_event(coi: Option<&str>, order: Option<&str>) -> TherapyEvent {
        TherapyEvent {
            schema: (),
            event_id: TherapyEvent::new_id(),
            data: EventData::QcResultReported(QcResultReported {
                report_id: Some("R\"1}{".into()),
                results: vec![QcResult {
                    value: Some("a \\\" } ] { [ b".into()),
                    ..QcResult::default()
                }],
                ..QcResultReported::default()
            }),
            coi: coi.map(str::to_string),
            order_id: order.map(str::to_string),
            product: Some("CART-19".into()),
            occurred_at: chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            recorded_at: chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 6).unwrap(),
            source: Source {
                connector: "hl7v2".into(),
                partner: "LAB".into(),
                message_id: Some("M1".into()),
                payload_sha256: "00".into(),
                entry: None,
            },
            claims: Default::default(),
        }
    }

    #[test]
    fn a_spliced_coi_is_byte_for_byte_the_serialised_one() {
        for order in [Some("O-1"), None] {
            let without = result_event(None, order);
            let p = PreparedEvent::new(&without, vec![]);
            let mut with = without.clone();
            with.coi = Some("CHW000126000001".into());
            assert_eq!(
                p.body_with_coi("CHW000126000001").as_deref(),
                Some(serde_json::to_string(&with).unwrap().as_str())
            );
        }
        // An event that has a COI is never spliced.
        let p = PreparedEvent::new(&result_event(Some("CHW000126000001"), None), vec![]);
        assert_eq!(p.coi_at, None);
    }

    #[test]
    fn every_kind_splices_like_serde() {
        for ev in crate::event::tests::one_of_each_kind() {
            let mut without = ev.clone();
            without.coi = None;
            let p = PreparedEvent::new(&without, vec![]);
            without.coi = Some("K9\"123".into());
            assert_eq!(
                p.body_with_coi("K9\"123").as_deref(),
                Some(serde_json::to_string(&without).unwrap().as_str()),
                "{}",
                ev.kind()
            );
        }
    }
}
