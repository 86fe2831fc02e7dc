//! Metric names (constants, one place) and the Prometheus registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub const MESSAGES_RECEIVED: &str = "cgthub_messages_received";
pub const MESSAGES_ACKED: &str = "cgthub_messages_acked";
pub const MESSAGES_REJECTED: &str = "cgthub_messages_rejected";
pub const MESSAGES_DUPLICATE: &str = "cgthub_messages_duplicate";
pub const EVENTS_ROUTED: &str = "cgthub_events_routed";
pub const EVENTS_UNMATCHED: &str = "cgthub_events_unmatched";
pub const EVENTS_HELD: &str = "cgthub_events_held";
pub const EVENTS_DELIVERED: &str = "cgthub_events_delivered";
pub const DELIVERY_FAILURES: &str = "cgthub_delivery_failures";
pub const DEAD_LETTERS: &str = "cgthub_dead_letters";
pub const INTAKE_BATCH_SIZE: &str = "cgthub_intake_batch_size";
pub const INTAKE_COMMIT_SECONDS: &str = "cgthub_intake_commit_seconds";
pub const ACK_LATENCY_SECONDS: &str = "cgthub_ack_latency_seconds";
pub const CONNECTIONS_OPEN: &str = "cgthub_connections_open";
pub const OUTBOX_PENDING: &str = "cgthub_outbox_pending";
pub const OUTBOX_OLDEST_AGE_SECONDS: &str = "cgthub_outbox_oldest_age_seconds";
pub const COMPONENT_UP: &str = "cgthub_component_up";
pub const OUTBOX_CLAIMED: &str = "cgthub_outbox_claimed";
pub const INSTANCE_INFO: &str = "cgthub_instance";
pub const DEAD_LETTER_ACTIONS: &str = "cgthub_dead_letter_actions";

/// Labels of the instance info gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    pub instance: String,
    pub store: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartnerLabels {
    pub connector: String,
    pub partner: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AckLabels {
    pub connector: String,
    pub partner: String,
    /// The protocol's answer: `AA`, `AE`, `AR`, or an HTTP status.
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub connector: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// `replay` or `purge`.
    pub action: String,
    /// `replayed`, `failed`, `purged`, `refused`, `not_found`, `error`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectorLabels {
    pub connector: String,
}

fn latency() -> Histogram {
    // 50 µs … ~6.5 s
    Histogram::new(exponential_buckets(0.00005, 2.0, 18))
}

/// Every metric the hub exports. Cheap to clone (handles are shared).
#[derive(Clone)]
pub struct Metrics {
    pub received: Family<PartnerLabels, Counter>,
    pub acked: Family<AckLabels, Counter>,
    pub rejected: Family<ReasonLabels, Counter>,
    pub duplicates: Family<PartnerLabels, Counter>,
    pub routed: Family<RouteLabels, Counter>,
    pub unmatched: Counter,
    /// Events the identity registry held at intake (unknown identifiers
    /// or out of sequence); conflicts are counted as dead letters of stage
    /// `identity`.
    pub held: Counter,
    pub delivered: Family<SinkLabels, Counter>,
    pub delivery_failures: Family<SinkLabels, Counter>,
    pub dead_letters: Family<StageLabels, Counter>,
    pub batch_size: Histogram,
    pub commit_seconds: Histogram,
    pub ack_latency: Family<ConnectorLabels, Histogram, fn() -> Histogram>,
    pub connections: Family<ConnectorLabels, Gauge>,
    pub outbox_pending: Gauge,
    pub outbox_oldest_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub component_up: Family<ComponentLabels, Gauge>,
    pub outbox_claimed: Gauge,
    pub instance: Family<InstanceLabels, Gauge>,
    pub dead_letter_actions: Family<ActionLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            received: Family::default(),
            acked: Family::default(),
            rejected: Family::default(),
            duplicates: Family::default(),
            routed: Family::default(),
            unmatched: Counter::default(),
            held: Counter::default(),
            delivered: Family::default(),
            delivery_failures: Family::default(),
            dead_letters: Family::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            commit_seconds: latency(),
            ack_latency: Family::new_with_constructor(latency),
            connections: Family::default(),
            outbox_pending: Gauge::default(),
            outbox_oldest_age: Gauge::default(),
            component_up: Family::default(),
            outbox_claimed: Gauge::default(),
            instance: Family::default(),
            dead_letter_actions: Family::default(),
        }
    }
}

impl Metrics {
    /// A registry holding every metric, for `/metrics`.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::default();
        r.register(
            MESSAGES_RECEIVED,
            "Messages received, per connector and partner",
            self.received.clone(),
        );
        r.register(
            MESSAGES_ACKED,
            "Acknowledgements sent, per code",
            self.acked.clone(),
        );
        r.register(
            MESSAGES_REJECTED,
            "Messages refused or failed, per reason",
            self.rejected.clone(),
        );
        r.register(
            MESSAGES_DUPLICATE,
            "Repeats of messages already taken",
            self.duplicates.clone(),
        );
        r.register(
            EVENTS_ROUTED,
            "Events put in the outbox, per route",
            self.routed.clone(),
        );
        r.register(
            EVENTS_UNMATCHED,
            "Events that matched no route (kept, not dropped)",
            self.unmatched.clone(),
        );
        r.register(
            EVENTS_HELD,
            "Events held by the identity registry at intake (not routed until their identity is settled)",
            self.held.clone(),
        );
        r.register(
            EVENTS_DELIVERED,
            "Events confirmed by a sink",
            self.delivered.clone(),
        );
        r.register(
            DELIVERY_FAILURES,
            "Failed delivery attempts",
            self.delivery_failures.clone(),
        );
        r.register(
            DEAD_LETTERS,
            "Dead letters, per stage",
            self.dead_letters.clone(),
        );
        r.register(
            INTAKE_BATCH_SIZE,
            "Messages per group commit",
            self.batch_size.clone(),
        );
        r.register(
            INTAKE_COMMIT_SECONDS,
            "Group commit duration",
            self.commit_seconds.clone(),
        );
        r.register(
            ACK_LATENCY_SECONDS,
            "Receive to acknowledgement",
            self.ack_latency.clone(),
        );
        r.register(
            CONNECTIONS_OPEN,
            "Open partner connections",
            self.connections.clone(),
        );
        r.register(
            OUTBOX_PENDING,
            "Events waiting for delivery",
            self.outbox_pending.clone(),
        );
        r.register(
            OUTBOX_OLDEST_AGE_SECONDS,
            "Age of the oldest waiting event",
            self.outbox_oldest_age.clone(),
        );
        r.register(
            COMPONENT_UP,
            "1 while a linked system (a broker) is reachable, 0 while not",
            self.component_up.clone(),
        );
        r.register(
            OUTBOX_CLAIMED,
            "Waiting events this instance holds under a live claim (PostgreSQL store)",
            self.outbox_claimed.clone(),
        );
        r.register(
            INSTANCE_INFO,
            "1, labelled with this instance's id and its store (sqlite or postgres)",
            self.instance.clone(),
        );
        r.register(
            DEAD_LETTER_ACTIONS,
            "Operators' dead-letter replays and purges, per outcome",
            self.dead_letter_actions.clone(),
        );
        r
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry());
        out
    }
}
