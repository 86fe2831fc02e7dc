//! Wiring RabbitMQ into the running hub: the topology each AMQP sink
//! declares (the queues its routes name), the check that only broker sinks
//! have queues, and the drain that turns `cgt.dead` into dead letters.

use std::collections::BTreeMap;
use std::sync::Arc;

use hub_core::hub::ComponentHealth;
use hub_core::metrics::StageLabels;
use hub_core::routing::Router;
use hub_core::sink::amqp::{
    AmqpHealth, DeadDelivery, DeadHandler, DeadQueueDrain, QueueSpec, Topology,
};
use hub_core::store::STAGE_CONSUME;
use hub_core::Hub;

use crate::config::{Settings, SinkConfig};

/// The queues the routes to `sink` name.
pub fn topology(router: &Router, sink: &str) -> Topology {
    Topology {
        queues: router
            .routes()
            .iter()
            .filter(|r| r.sink == sink)
            .filter_map(|r| r.queue.as_ref())
            .map(|q| QueueSpec {
                name: q.name.clone(),
                bindings: q.bindings.clone(),
                delivery_limit: q.delivery_limit,
                retry_ttl_ms: q.retry_ttl_ms,
            })
            .collect(),
    }
}

/// Routes that name a queue but send to a sink that is no broker, as
/// `file:line: message` lines.
pub fn misplaced_queues(router: &Router, sinks: &BTreeMap<String, SinkConfig>) -> Vec<String> {
    router
        .routes()
        .iter()
        .filter(|r| r.queue.is_some())
        .filter(|r| !sinks.get(&r.sink).is_some_and(SinkConfig::is_broker))
        .map(|r| {
            format!(
                "{}:{}: route {:?} has a [route.queue], but its sink {:?} is not of type \"amqp\"",
                r.file.display(),
                r.line,
                r.name,
                r.sink
            )
        })
        .collect()
}

/// Whether any sink publishes to RabbitMQ.
pub fn wanted(s: &Settings) -> bool {
    s.sinks.values().any(SinkConfig::is_broker)
}

/// A link's health as `/healthz` shows it.
pub fn component(h: AmqpHealth) -> ComponentHealth {
    ComponentHealth {
        up: h.connected,
        detail: serde_json::json!({ "since": h.since, "last_error": h.last_error }),
    }
}

/// Starts draining the dead-letter queue into the store: each message is
/// acknowledged to the broker only once its dead letter is durable.
pub async fn start_drain(s: &Settings, hub: &Hub) -> anyhow::Result<Arc<DeadQueueDrain>> {
    let h = hub.clone();
    let handler: DeadHandler = Arc::new(move |d: DeadDelivery| {
        let hub = h.clone();
        Box::pin(async move {
            let (reason, queue) = (d.reason.clone(), d.queue.clone());
            let (event, coi) = (d.message_id.clone(), d.coi.clone());
            match hub.store().dead_from_broker(d).await {
                Ok(id) => {
                    tracing::warn!(dead_letter = id, event_id = ?event, coi = ?coi, queue = ?queue, reason = %reason, "a consumer's queue dead-lettered an event");
                    hub.metrics()
                        .dead_letters
                        .get_or_create(&StageLabels {
                            stage: STAGE_CONSUME.into(),
                        })
                        .inc();
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }
        })
    });
    let drain = Arc::new(DeadQueueDrain::start(s.amqp.clone(), handler).await?);
    let d = Arc::clone(&drain);
    hub.add_health_check("dead_queue", Arc::new(move || component(d.health())));
    Ok(drain)
}
