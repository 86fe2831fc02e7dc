//! The cold-chain sink: routes send it temperature readings, collections,
//! receipts and shipment scans; it runs the [`Monitor`] over them and raises
//! what the monitor finds (`temperature.excursion`, `alert.raised`) as
//! messages of the hub's own, which are routed like any other.
//!
//! Durable without state of its own: each raised message's id is a pure
//! function of the facts (`excursion:LOG-7:2026-…:opened`), and the store
//! takes an id once. After a restart the sink rebuilds the monitor from the
//! stored events, and whatever it raises again is answered as a duplicate,
//! while anything it had not raised yet (a threshold passed while the hub
//! was down) is raised now. Nothing is lost, nothing repeated.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{BoxFuture, Sink, SinkError};
use crate::coldchain::{ColdChainConfig, Monitor, Raised};
use crate::event::{Source, TherapyEvent};
use crate::store::{EventFilter, OutboxItem, StoreError};
use crate::{Decoded, Hub, Inbound};

/// The connector name of what the monitor raises.
pub const CONNECTOR: &str = "coldchain";
/// The partner name of what the monitor raises.
pub const PARTNER: &str = "cgthub";

/// The kinds the monitor reads, with how many of each (newest) it reloads
/// at start: enough for every open therapy and each logger's recent run.
pub const KINDS: &[(&str, u32)] = &[
    ("collection.completed", 20_000),
    ("material.received", 20_000),
    ("manufacturing.step_completed", 20_000),
    ("shipment.created", 20_000),
    ("shipment.status", 50_000),
    ("temperature.reading", 200_000),
];

/// How often the viability clock is looked at: alerts go out within this.
const TICK: Duration = Duration::from_millis(200);

pub struct ColdChainSink {
    name: String,
    hub: Hub,
    state: Mutex<State>,
}

struct State {
    monitor: Monitor,
    /// Raised but not yet taken by the store (it was unavailable).
    pending: Vec<Raised>,
}

impl ColdChainSink {
    /// Rebuilds the monitor from the stored events, raises what is due and
    /// starts the clock (stopped by `shutdown`).
    pub async fn start(
        name: &str,
        hub: Hub,
        config: ColdChainConfig,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, StoreError> {
        let mut monitor = Monitor::new(config);
        let mut events = Vec::new();
        for (kind, limit) in KINDS {
            let f = EventFilter {
                kind: Some((*kind).to_string()),
                limit: *limit,
                ..EventFilter::default()
            };
            for stored in hub.store().events(&f).await? {
                match serde_json::from_str::<TherapyEvent>(&stored.body) {
                    Ok(ev) => events.push(ev),
                    Err(e) => {
                        tracing::warn!(event = %stored.event_id, error = %e, "cold chain: stored event unreadable; skipped")
                    }
                }
            }
        }
        events.sort_by_key(|e| e.occurred_at);
        let mut pending = Vec::new();
        for ev in &events {
            pending.extend(monitor.observe(ev));
        }
        pending.extend(monitor.tick(Utc::now()));
        tracing::info!(
            sink = name,
            events = events.len(),
            "cold chain monitor rebuilt from the store"
        );
        let sink = Arc::new(ColdChainSink {
            name: name.to_string(),
            hub,
            state: Mutex::new(State { monitor, pending }),
        });
        if let Err(e) = sink.flush().await {
            tracing::warn!(error = %e, "cold chain: alerts kept for later, the store is unavailable");
        }
        let clock = Arc::clone(&sink);
        tokio::spawn(async move { clock.run_clock(shutdown).await });
        Ok(sink)
    }

    async fn run_clock(&self, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            let now = Utc::now();
            {
                let mut st = self.state.lock().await;
                if st.monitor.next_deadline().is_some_and(|d| d <= now) {
                    let due = st.monitor.tick(now);
                    st.pending.extend(due);
                }
                if st.pending.is_empty() {
                    continue;
                }
            }
            if let Err(e) = self.flush().await {
                tracing::warn!(error = %e, "cold chain: alerts kept for later, the store is unavailable");
            }
        }
    }

    /// Takes every pending output into the store; what fails stays pending.
    async fn flush(&self) -> Result<(), StoreError> {
        let mut st = self.state.lock().await;
        if st.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut st.pending);
        let submits = batch.iter().map(|r| {
            let (inbound, event) = message_of(r);
            self.hub
                .submit_explained(inbound, Decoded::Events(vec![event]))
        });
        let results = futures_util::future::join_all(submits).await;
        let mut first_error = None;
        for (r, raised) in results.into_iter().zip(batch) {
            match r {
                Ok((receipt, _)) if !receipt.duplicate => {
                    tracing::info!(key = %raised.key, coi = raised.coi.as_deref().unwrap_or("-"), kind = %raised.data.kind(), "cold chain raised");
                }
                Ok(_) => {}
                Err(e) => {
                    st.pending.push(raised);
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

/// The message the hub takes for one output: its payload is the output's
/// facts, its id the output's key.
fn message_of(r: &Raised) -> (Inbound, TherapyEvent) {
    let payload = serde_json::json!({
        "key": r.key,
        "kind": r.data.kind().as_str(),
        "coi": r.coi,
        "occurred_at": r.occurred_at,
        "data": r.data,
    });
    let inbound = Inbound::new(
        CONNECTOR,
        PARTNER,
        "application/json",
        Some(r.key.clone()),
        bytes::Bytes::from(payload.to_string()),
        "cgthub cold chain monitor",
    );
    // The COI is the one the registry gave the events it is about.
    let event = TherapyEvent {
        schema: (),
        event_id: TherapyEvent::new_id(),
        data: r.data.clone(),
        coi: r.coi.clone(),
        order_id: None,
        product: r.product.clone(),
        occurred_at: r.occurred_at,
        recorded_at: inbound.received_at,
        source: Source {
            connector: CONNECTOR.into(),
            partner: PARTNER.into(),
            message_id: Some(r.key.clone()),
            payload_sha256: inbound.sha256.clone(),
            entry: None,
        },
        claims: Default::default(),
    };
    (inbound, event)
}

impl Sink for ColdChainSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, batch: &'a [OutboxItem]) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(batch.len());
            {
                let mut st = self.state.lock().await;
                for item in batch {
                    match serde_json::from_str::<TherapyEvent>(&item.body) {
                        Ok(ev) => {
                            let raised = st.monitor.observe(&ev);
                            st.pending.extend(raised);
                            out.push(Ok(()));
                        }
                        Err(e) => out.push(Err(SinkError::permanent(format!(
                            "not a cgt.event/v1 event: {e}"
                        )))),
                    }
                }
            }
            // Raised before the batch counts as delivered: an alert must
            // not wait for the next event.
            if let Err(e) = self.flush().await {
                let msg = format!("the store did not take the cold chain's alerts: {e}");
                return out
                    .into_iter()
                    .map(|r| r.and(Err(SinkError::transient(msg.clone()))))
                    .collect();
            }
            out
        })
    }
}
