//! The pipeline behind every connector: route the mapped events, make the
//! message and its events durable in one group commit, answer with a receipt.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use crate::inbound::{Decoded, Inbound, Outcome, Receipt};
use crate::metrics::{PartnerLabels, ReasonLabels, RouteLabels, StageLabels};
use crate::routing::Router;
use crate::store::{IntakeOutcome, IntakeRecord, PreparedEvent, Store, StoreError};
use crate::Metrics;

/// Shared handle to the running hub. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    router: RwLock<Arc<Router>>,
    metrics: Metrics,
    /// Wakes a sink's relay when new work for it is committed.
    wake: HashMap<String, Arc<Notify>>,
}

impl Hub {
    /// `sinks` are the configured sink names (each gets a wake-up signal).
    pub fn new(
        store: Store,
        router: Router,
        metrics: Metrics,
        sinks: impl IntoIterator<Item = String>,
    ) -> Self {
        Hub {
            inner: Arc::new(Inner {
                store,
                router: RwLock::new(Arc::new(router)),
                metrics,
                wake: sinks
                    .into_iter()
                    .map(|s| (s, Arc::new(Notify::new())))
                    .collect(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The routes in force.
    pub fn router(&self) -> Arc<Router> {
        Arc::clone(&self.inner.router.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts new routes in force for every message from now on.
    pub fn replace_router(&self, router: Router) {
        *self.inner.router.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(router);
    }

    /// The signal a sink's relay waits on.
    pub fn wake_handle(&self, sink: &str) -> Option<Arc<Notify>> {
        self.inner.wake.get(sink).cloned()
    }

    /// Takes one inbound message: routes its events and returns once the
    /// message, its events and their outbox rows are durable. Only then may
    /// the connector acknowledge.
    pub async fn submit(&self, inbound: Inbound, decoded: Decoded) -> Result<Receipt, StoreError> {
        let m = &self.inner.metrics;
        let labels = PartnerLabels {
            connector: inbound.connector.to_string(),
            partner: inbound.partner.clone(),
        };
        m.received.get_or_create(&labels).inc();
        let mut sinks: Vec<String> = Vec::new();
        let mut routed: Vec<String> = Vec::new();
        let mut unmatched = 0u64;
        let outcome = match decoded {
            Decoded::Events(events) => {
                let router = self.router();
                let prepared = events
                    .iter()
                    .map(|ev| {
                        let dest = router.route(ev);
                        if dest.is_empty() {
                            unmatched += 1;
                        }
                        for d in &dest {
                            routed.push(d.route.clone());
                            if !sinks.contains(&d.sink) {
                                sinks.push(d.sink.clone());
                            }
                        }
                        PreparedEvent::new(ev, dest)
                    })
                    .collect();
                IntakeOutcome::Events(prepared)
            }
            Decoded::Failed(p) => IntakeOutcome::Failed(p),
            Decoded::Rejected(p) => IntakeOutcome::Rejected(p),
        };
        let problem = match &outcome {
            IntakeOutcome::Failed(p) | IntakeOutcome::Rejected(p) => Some((p.code, p.stage)),
            IntakeOutcome::Events(_) => None,
        };
        let receipt = self
            .inner
            .store
            .intake(IntakeRecord { inbound, outcome })
            .await?;
        if receipt.duplicate {
            m.duplicates.get_or_create(&labels).inc();
            return Ok(receipt);
        }
        if let Some((code, stage)) = problem {
            m.rejected
                .get_or_create(&ReasonLabels {
                    connector: labels.connector.clone(),
                    reason: code.to_string(),
                })
                .inc();
            m.dead_letters
                .get_or_create(&StageLabels {
                    stage: stage.as_str().to_string(),
                })
                .inc();
        }
        if let Outcome::Accepted { .. } = receipt.outcome {
            for r in routed {
                m.routed.get_or_create(&RouteLabels { route: r }).inc();
            }
            m.unmatched.inc_by(unmatched);
            for s in sinks {
                if let Some(n) = self.inner.wake.get(&s) {
                    n.notify_one();
                }
            }
        }
        Ok(receipt)
    }
}
