//! The pipeline behind every connector: check the mapped events' COIs (see
//! [`crate::coi_check`]), route them, make the message and its events durable
//! in one group commit, answer with a receipt.
//! Dead letters are replayed and purged through it too (see
//! [`crate::dead_letters`]): a replay needs the connectors and the routes.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use tokio::sync::Notify;

use crate::coi_check;
use crate::connector::Connector;
use crate::dead_letters::{self, DeadLetterSelection};
use crate::event::TherapyEvent;
use crate::identity::demographics::{normalise_birth_date, normalise_name};
use crate::identity::seal::PhiKeys;
use crate::identity::CoiFormats;
use crate::inbound::{Decoded, Inbound, Outcome, Problem, Receipt};
use crate::metrics::{PartnerLabels, ReasonLabels, RouteLabels, StageLabels};
use crate::registry::{Claimed, EventKey, Facts, IdKind, Rules};
use crate::routing::Router;
use crate::store::{
    DlqResult, EventIdentity, HoldAction, IntakeOutcome, IntakeRecord, PreparedEvent,
    RegistryContext, Sealed, Store, StoreError,
};
use crate::EventKind;
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
    /// The running connectors, for replaying messages (set once at start).
    connectors: OnceLock<Vec<Arc<dyn Connector>>>,
    /// The COI formats events are checked against (set once at start;
    /// ISBT 128 only if never set).
    coi_formats: OnceLock<CoiFormats>,
    /// Links to other systems whose state `/healthz` reports (brokers).
    health: RwLock<Vec<(String, HealthCheck)>>,
    /// The identity registry's settings (set once at start; without them
    /// events are not reconciled, as in tools that only store).
    registry: OnceLock<RegistrySettings>,
    /// The registry's rules with the routes in force, shared by every
    /// event of a message (rebuilt when the routes change).
    registry_cx: RwLock<Option<Arc<RegistryContext>>>,
}

/// How the identity registry runs: its rules, the keys that seal patient
/// data and key its hashes, how long an unknown identity may wait.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    pub rules: Rules,
    pub keys: PhiKeys,
    pub hold_timeout: chrono::Duration,
}

/// Reports one component's state: up or not, and details for operators.
pub type HealthCheck = Arc<dyn Fn() -> ComponentHealth + Send + Sync>;

/// One component's state, as `/healthz` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComponentHealth {
    pub up: bool,
    /// Component-specific details (since when, the last error).
    #[serde(flatten)]
    pub detail: serde_json::Value,
}

/// Events routed by the routes in force, with what to count and whom to wake.
pub(crate) struct Routed {
    pub prepared: Vec<PreparedEvent>,
    /// The route of each destination (a route counted once per event).
    pub routes: Vec<String>,
    /// The sinks with new work, once each.
    pub sinks: Vec<String>,
    pub unmatched: u64,
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
                connectors: OnceLock::new(),
                coi_formats: OnceLock::new(),
                health: RwLock::new(Vec::new()),
                registry: OnceLock::new(),
                registry_cx: RwLock::new(None),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Adds a component (`sink:rabbitmq`, `dead_queue`) to what `/healthz`
    /// reports; the hub is degraded while one is down.
    pub fn add_health_check(&self, name: impl Into<String>, check: HealthCheck) {
        self.inner
            .health
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.into(), check));
    }

    /// Every component's state now.
    pub fn component_health(&self) -> Vec<(String, ComponentHealth)> {
        self.inner
            .health
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, c)| (n.clone(), c()))
            .collect()
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
        self.refresh_registry_cx();
    }

    /// Turns the identity registry on (once, before the first message;
    /// later calls are ignored, logged): from then on every event is
    /// reconciled against it before it is routed.
    pub fn set_registry(&self, settings: RegistrySettings) {
        if self.inner.registry.set(settings).is_err() {
            tracing::warn!("registry settings were already set; ignored");
        }
        self.refresh_registry_cx();
    }

    /// The registry's context with the routes in force, if it is on.
    pub fn registry_context(&self) -> Option<Arc<RegistryContext>> {
        self.inner
            .registry_cx
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn refresh_registry_cx(&self) {
        let Some(settings) = self.inner.registry.get() else {
            return;
        };
        let cx = Arc::new(RegistryContext {
            rules: settings.rules.clone(),
            router: self.router(),
            hold_timeout: settings.hold_timeout,
        });
        *self
            .inner
            .registry_cx
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(cx);
    }

    /// What the registry needs of `ev`: its keys (an MRN as a keyed
    /// hash), keyed hashes of the stated name and birth date, and, for an
    /// order that may register its therapy, the patient data sealed.
    fn identity_of(
        &self,
        ev: &TherapyEvent,
        settings: &RegistrySettings,
        cx: &Arc<RegistryContext>,
    ) -> EventIdentity {
        let keys = &settings.keys;
        let hash = |v: &str| keys.blind_index(v);
        let c = &ev.claims;
        let mut ks: Vec<EventKey> = Vec::with_capacity(c.identifiers.len() + 1);
        if !c.identifiers.iter().any(|i| i.kind == IdKind::Order) {
            if let Some(o) = &ev.order_id {
                ks.push(EventKey::new(
                    &Claimed::new(IdKind::Order, "", o.as_str()),
                    hash,
                ));
            }
        }
        for i in &c.identifiers {
            let k = EventKey::new(i, hash);
            if !ks.iter().any(|x| x.key == k.key) {
                ks.push(k);
            }
        }
        let name = c.name.as_deref().and_then(normalise_name);
        let birth_date = c.birth_date.as_deref().and_then(normalise_birth_date);
        let mut sealed = Sealed::default();
        if let (EventKind::OrderPlaced, Some(coi)) = (ev.kind(), ev.coi.as_deref()) {
            let aad = coi.as_bytes();
            sealed.name = name.as_deref().map(|n| keys.seal(n, aad));
            sealed.birth_date = birth_date.as_deref().map(|d| keys.seal(d, aad));
            sealed.mrn = c
                .identifiers
                .iter()
                .find(|i| i.kind == IdKind::Mrn)
                .map(|m| keys.seal(&format!("{}|{}", m.authority, m.value), aad));
        }
        EventIdentity {
            facts: Facts {
                kind: ev.kind().as_str(),
                coi: ev.coi.clone(),
                keys: ks,
                name_index: name.map(|n| hash(&format!("name|{n}"))),
                birth_date_index: birth_date.map(|d| hash(&format!("birth_date|{d}"))),
            },
            sealed,
            cx: Arc::clone(cx),
        }
    }

    /// The signal a sink's relay waits on.
    pub fn wake_handle(&self, sink: &str) -> Option<Arc<Notify>> {
        self.inner.wake.get(sink).cloned()
    }

    /// Hands the hub the running connectors, so that a dead letter's
    /// message can be processed again by the connector it came from. Once:
    /// later calls are ignored (logged).
    pub fn set_connectors(&self, connectors: Vec<Arc<dyn Connector>>) {
        if self.inner.connectors.set(connectors).is_err() {
            tracing::warn!("connectors were already set; ignored");
        }
    }

    /// Hands the hub the COI formats configured in `[identity]`. Once, before
    /// the first message: until then (and later calls are ignored, logged)
    /// the hub accepts ISBT 128 COIs only.
    pub fn set_coi_formats(&self, formats: CoiFormats) {
        if self.inner.coi_formats.set(formats).is_err() {
            tracing::warn!("COI formats were already set; ignored");
        }
    }

    /// The COI formats in force.
    pub fn coi_formats(&self) -> &CoiFormats {
        self.inner.coi_formats.get_or_init(CoiFormats::isbt128_only)
    }

    /// Checks and normalises the COIs of a mapped message's events (see
    /// [`crate::coi_check`]): a malformed one fails the message.
    pub(crate) fn check_coi(&self, decoded: Decoded) -> Decoded {
        coi_check::normalise(self.coi_formats(), decoded)
    }

    /// The connector of kind `kind`, if the hub was given one.
    pub fn connector(&self, kind: &str) -> Option<Arc<dyn Connector>> {
        self.inner
            .connectors
            .get()?
            .iter()
            .find(|c| c.kind() == kind)
            .cloned()
    }

    /// Replays dead letters, each from its stage (see [`crate::dead_letters`]),
    /// as `actor`. One outcome per dead letter; `Err` only when the
    /// selection or the actor is invalid or the ids cannot be read.
    pub async fn replay_dead_letters(
        &self,
        which: DeadLetterSelection,
        actor: &str,
    ) -> Result<Vec<DlqResult>, StoreError> {
        let results = dead_letters::replay(self, which, actor).await?;
        self.count_operator_actions("replay", &results);
        Ok(results)
    }

    /// Purges dead letters as `actor`, for `reason` (required). Rows and
    /// payloads are kept.
    pub async fn purge_dead_letters(
        &self,
        which: DeadLetterSelection,
        actor: &str,
        reason: &str,
    ) -> Result<Vec<DlqResult>, StoreError> {
        let results = dead_letters::purge(self, which, actor, reason).await?;
        self.count_operator_actions("purge", &results);
        Ok(results)
    }

    fn count_operator_actions(&self, action: &str, results: &[DlqResult]) {
        for r in results {
            self.inner
                .metrics
                .dead_letter_actions
                .get_or_create(&crate::metrics::ActionLabels {
                    action: action.to_string(),
                    outcome: r.outcome.as_str().to_string(),
                })
                .inc();
        }
    }

    /// Releases a hold as `actor`, for `reason` (see [`Store::release_hold`]).
    pub async fn release_hold(
        &self,
        hold: i64,
        actor: &str,
        reason: &str,
    ) -> Result<HoldAction, StoreError> {
        let cx = self.registry_context().ok_or(StoreError::Invalid {
            op: "release_hold",
            reason: "the identity registry is not on in this hub".into(),
        })?;
        let done = self
            .inner
            .store
            .release_hold(hold, actor, reason, cx)
            .await?;
        self.wake_all();
        Ok(done)
    }

    /// Rejects a hold as `actor`, for `reason` (see [`Store::reject_hold`]).
    pub async fn reject_hold(
        &self,
        hold: i64,
        actor: &str,
        reason: &str,
    ) -> Result<HoldAction, StoreError> {
        self.inner.store.reject_hold(hold, actor, reason).await
    }

    /// Expires holds past their deadline (see [`Store::expire_holds`]).
    pub async fn expire_holds(&self) -> Result<i64, StoreError> {
        let Some(cx) = self.registry_context() else {
            return Ok(0);
        };
        let n = self.inner.store.expire_holds(cx, 500).await?;
        if n > 0 {
            self.wake_all();
        }
        Ok(n)
    }

    fn wake_all(&self) {
        for n in self.inner.wake.values() {
            n.notify_one();
        }
    }

    /// Routes events with the routes in force.
    pub(crate) fn route(&self, events: Vec<TherapyEvent>) -> Routed {
        let router = self.router();
        let cx = self.registry_context();
        let mut routed = Routed {
            prepared: Vec::with_capacity(events.len()),
            routes: Vec::new(),
            sinks: Vec::new(),
            unmatched: 0,
        };
        for ev in events {
            let dest = router.route(&ev);
            if dest.is_empty() {
                routed.unmatched += 1;
            }
            for d in &dest {
                routed.routes.push(d.route.clone());
                if !routed.sinks.contains(&d.sink) {
                    routed.sinks.push(d.sink.clone());
                }
            }
            let mut prepared = PreparedEvent::new(&ev, dest);
            if let (Some(settings), Some(cx)) = (self.inner.registry.get(), &cx) {
                prepared.identity = Some(Box::new(self.identity_of(&ev, settings, cx)));
            }
            routed.prepared.push(prepared);
        }
        routed
    }

    /// Counts routed and unmatched events once they are durable.
    pub(crate) fn count_routed(&self, routes: Vec<String>, unmatched: u64) {
        let m = &self.inner.metrics;
        for r in routes {
            m.routed.get_or_create(&RouteLabels { route: r }).inc();
        }
        m.unmatched.inc_by(unmatched);
    }

    /// Wakes the relays of `sinks`: committed work is waiting for them.
    pub(crate) fn wake(&self, sinks: &[String]) {
        for s in sinks {
            if let Some(n) = self.inner.wake.get(s) {
                n.notify_one();
            }
        }
    }

    /// Takes one inbound message: checks its events' COIs, routes them and
    /// returns once the message, its events and their outbox rows are
    /// durable. Only then may the connector acknowledge.
    pub async fn submit(&self, inbound: Inbound, decoded: Decoded) -> Result<Receipt, StoreError> {
        Ok(self.submit_explained(inbound, decoded).await?.0)
    }

    /// [`Hub::submit`], also returning the problem the message failed or was
    /// refused with (none for a duplicate: its outcome is the original's).
    /// The problem may be the hub's own (a malformed COI), so a connector
    /// names its protocol's error code from this, not from what it mapped.
    pub async fn submit_explained(
        &self,
        inbound: Inbound,
        decoded: Decoded,
    ) -> Result<(Receipt, Option<Problem>), StoreError> {
        let m = &self.inner.metrics;
        let labels = PartnerLabels {
            connector: inbound.connector.to_string(),
            partner: inbound.partner.clone(),
        };
        m.received.get_or_create(&labels).inc();
        let mut routed = None;
        let outcome = match self.check_coi(decoded) {
            Decoded::Events(events) => {
                let r = self.route(events);
                let prepared = r.prepared;
                routed = Some((r.routes, r.sinks, r.unmatched));
                IntakeOutcome::Events(prepared)
            }
            Decoded::Failed(p) => IntakeOutcome::Failed(p),
            Decoded::Rejected(p) => IntakeOutcome::Rejected(p),
        };
        let problem = match &outcome {
            IntakeOutcome::Failed(p) | IntakeOutcome::Rejected(p) => Some(p.clone()),
            IntakeOutcome::Events(_) => None,
        };
        let receipt = self
            .inner
            .store
            .intake(IntakeRecord { inbound, outcome })
            .await?;
        if receipt.duplicate {
            m.duplicates.get_or_create(&labels).inc();
            return Ok((receipt, None));
        }
        let problem = receipt.problem.clone().or(problem);
        m.held.inc_by(receipt.held as u64);
        if let Some(p) = &problem {
            m.rejected
                .get_or_create(&ReasonLabels {
                    connector: labels.connector.clone(),
                    reason: p.code.to_string(),
                })
                .inc();
            m.dead_letters
                .get_or_create(&StageLabels {
                    stage: p.stage.as_str().to_string(),
                })
                .inc();
        }
        if let (Outcome::Accepted { .. }, Some((routes, sinks, unmatched))) =
            (&receipt.outcome, routed)
        {
            self.count_routed(routes, unmatched);
            self.wake(&sinks);
        }
        Ok((receipt, problem))
    }
}
