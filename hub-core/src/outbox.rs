//! The outbox relay: one task per sink moves committed events from the
//! outbox to the sink, marks them delivered once the sink confirms, backs off
//! on failure and dead-letters what keeps failing.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::error::ErrorClass;
use crate::hub::Hub;
use crate::metrics::{SinkLabels, StageLabels};
use crate::routing::RetryPolicy;
use crate::sink::{Sink, SinkError};
use crate::store::OutboxItem;

/// Rows fetched per round.
const BATCH: u32 = 2048;
/// How long an idle relay sleeps before it looks again (for retries that
/// come due; new work wakes it at once).
const IDLE_POLL: Duration = Duration::from_millis(500);
/// How often a relay looks whether its unreachable sink is back.
const UNREADY_POLL: Duration = Duration::from_millis(100);

/// Runs one sink's relay until `shutdown`.
pub async fn run_relay(hub: Hub, sink: Arc<dyn Sink>, shutdown: CancellationToken) {
    let name = sink.name().to_string();
    let wake = hub.wake_handle(&name);
    let labels = SinkLabels { sink: name.clone() };
    let mut store_backoff = Duration::from_millis(100);
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        if !sink.ready() {
            // An outage: events wait in the outbox, attempts untouched.
            tokio::select! {
                _ = tokio::time::sleep(UNREADY_POLL) => {}
                _ = shutdown.cancelled() => return,
            }
            continue;
        }
        let items = match hub.store().pending(&name, BATCH, Utc::now()).await {
            Ok(items) => {
                store_backoff = Duration::from_millis(100);
                items
            }
            Err(e) => {
                tracing::warn!(sink = %name, error = %e, "cannot read the outbox; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(store_backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                store_backoff = (store_backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if items.is_empty() {
            tokio::select! {
                _ = async { match &wake { Some(n) => n.notified().await, None => std::future::pending().await } } => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = shutdown.cancelled() => return,
            }
            continue;
        }
        let results = sink.deliver(&items).await;
        // The link broke during the batch: its transient failures are the
        // outage's, not the events'; they stay due as they are.
        let outage = !sink.ready();
        let mut done = Vec::with_capacity(items.len());
        let mut failed = false;
        for (item, result) in items.iter().zip(results) {
            match result {
                Ok(()) => done.push(item.id),
                Err(e) => {
                    failed = true;
                    hub.metrics().delivery_failures.get_or_create(&labels).inc();
                    if !(outage && e.class == ErrorClass::Transient) {
                        fail(&hub, item, &e).await;
                    }
                }
            }
        }
        let n = done.len() as u64;
        if !done.is_empty() {
            match hub.store().delivered(done).await {
                Ok(()) => {
                    hub.metrics().delivered.get_or_create(&labels).inc_by(n);
                }
                Err(e) => {
                    // The sink has them; they stay pending and are sent again,
                    // which consumers tolerate by event id.
                    tracing::error!(sink = %name, error = %e, "delivered, but cannot mark the outbox");
                    tokio::time::sleep(store_backoff).await;
                }
            }
        }
        if failed {
            // Failing sinks are not hammered: the failed rows are rescheduled,
            // and the relay pauses briefly before the next round.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// Reschedules a failed delivery, or dead-letters it when it is permanent or
/// out of attempts.
async fn fail(hub: &Hub, item: &OutboxItem, err: &SinkError) {
    let (class, message) = (err.class, err.message.as_str());
    let policy = hub
        .router()
        .get(&item.route)
        .map(|r| r.retry)
        .unwrap_or_default();
    let attempts = item.attempts + 1;
    let give_up = class != ErrorClass::Transient || attempts >= policy.max_attempts;
    let result = if give_up {
        tracing::warn!(event_id = %item.event_id, sink = %item.sink, route = %item.route, attempts, error = %message, "delivery failed for good: dead letter");
        hub.metrics()
            .dead_letters
            .get_or_create(&StageLabels {
                stage: "deliver".into(),
            })
            .inc();
        hub.store()
            .dead_letter_delivery(item.id, attempts, class, err.code, message.to_string())
            .await
            .map(drop)
    } else {
        let wait = backoff(&policy, attempts);
        tracing::info!(event_id = %item.event_id, sink = %item.sink, attempts, retry_in_ms = wait.as_millis() as u64, error = %message, "delivery failed; will retry");
        let next = Utc::now()
            + chrono::Duration::from_std(wait).unwrap_or_else(|_| chrono::Duration::seconds(60));
        hub.store()
            .retry_later(item.id, attempts, next, message.to_string())
            .await
    };
    match result {
        Ok(()) => {}
        // Settled meanwhile (delivered or dead-lettered): nothing to record.
        Err(crate::store::StoreError::NotFound { .. }) => {
            tracing::debug!(event_id = %item.event_id, "outbox row no longer pending")
        }
        Err(e) => {
            tracing::error!(event_id = %item.event_id, error = %e, "cannot record the failed delivery; it stays pending")
        }
    }
}

fn backoff(policy: &RetryPolicy, attempts: u32) -> Duration {
    policy.backoff(attempts, rand::random::<f64>())
}
