//! Viability countdowns, per chain of identity (COI).
//!
//! - A countdown starts at `collection.completed`: deadline = its
//!   `occurred_at` + `viability_hours` of the profile governing the event's
//!   product. Several collections for one COI (repeats, corrections): the
//!   earliest deadline counts, whatever the order they arrive in.
//! - It stops at `material.received`, or a `manufacturing.step_completed`
//!   whose step names cryopreservation or freezing, for that COI (even one
//!   seen before the collection). A stopped countdown raises nothing more.
//! - Each tick raises each threshold of `alert_remaining_hours`
//!   whose moment (deadline − hours) has come, once, however late: a
//!   collection reported after two thresholds passed raises both at the
//!   next tick. So what has been raised by a time is a function of the
//!   events alone, not of when ticks happened. Then `viability_expired`
//!   once the deadline has come.
//! - A courier ETA (`shipment.status` `eta`, `shipment.created`
//!   `expected_delivery`) later than the deadline raises
//!   `eta_beyond_window` at once, once per distinct ETA. ETAs seen before
//!   the collection are kept and judged when the countdown starts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::config::Profiles;
use super::excursion::human_duration;
use super::Raised;
use crate::event::rfc3339::to_rfc3339;
use crate::event::{AlertRaised, EventData};

/// Alert code: a threshold of the viability window was reached.
pub const ALERT_THRESHOLD: &str = "viability_threshold";
/// Alert code: the viability window ended before the material was received.
pub const ALERT_EXPIRED: &str = "viability_expired";
/// Alert code: the courier's ETA is after the viability deadline.
pub const ALERT_ETA: &str = "eta_beyond_window";

#[derive(Debug)]
struct Countdown {
    profile: usize,
    product: Option<String>,
    collected_at: DateTime<Utc>,
    deadline: DateTime<Utc>,
    collection_event: Uuid,
    /// Thresholds (hours) raised.
    raised: BTreeSet<i64>,
    expired: bool,
}

#[derive(Debug, Clone)]
struct EtaSeen {
    scanned_at: DateTime<Utc>,
    event_id: Uuid,
    tracking: String,
}

/// Everything known about one COI.
#[derive(Debug, Default)]
struct Chain {
    countdown: Option<Countdown>,
    stopped: Option<DateTime<Utc>>,
    etas: BTreeMap<DateTime<Utc>, EtaSeen>,
    etas_raised: BTreeSet<DateTime<Utc>>,
    /// The latest shipment (by event time) and when it was seen.
    shipment: Option<(DateTime<Utc>, String)>,
    last_seen: Option<DateTime<Utc>>,
    /// Its entry in the due queue.
    due: Option<DateTime<Utc>>,
}

impl Chain {
    fn touch(&mut self, at: DateTime<Utc>) {
        self.last_seen = self.last_seen.max(Some(at));
    }

    /// When `tick` next has something to do for it.
    fn next_due(&self, profiles: &Profiles) -> Option<DateTime<Utc>> {
        let c = self.countdown.as_ref().filter(|_| self.stopped.is_none())?;
        let thresholds = profiles
            .get(c.profile)
            .alert_remaining_hours
            .iter()
            .filter(|&&h| h > 0 && !c.raised.contains(&h))
            .map(|&h| c.deadline - Duration::hours(h));
        thresholds.chain((!c.expired).then_some(c.deadline)).min()
    }
}

/// All countdowns, and the queue of when each is next due.
#[derive(Debug, Default)]
pub(super) struct Viability {
    chains: HashMap<String, Chain>,
    due: BTreeSet<(DateTime<Utc>, String)>,
}

impl Viability {
    /// A `collection.completed` for `coi`.
    pub(super) fn collected(
        &mut self,
        profiles: &Profiles,
        coi: &str,
        product: Option<&str>,
        at: DateTime<Utc>,
        event_id: Uuid,
        out: &mut Vec<Raised>,
    ) {
        let Some(profile) = profiles.for_product(product) else {
            return;
        };
        let Some(hours) = profiles.get(profile).viability_hours.filter(|&h| h > 0) else {
            return;
        };
        let deadline = at + Duration::hours(hours);
        let chain = self.chains.entry(coi.to_string()).or_default();
        chain.touch(at);
        match &mut chain.countdown {
            Some(c) if c.deadline <= deadline => return,
            Some(c) => {
                c.profile = profile;
                c.product = product.map(str::to_string);
                c.collected_at = at;
                c.deadline = deadline;
                c.collection_event = event_id;
            }
            None => {
                chain.countdown = Some(Countdown {
                    profile,
                    product: product.map(str::to_string),
                    collected_at: at,
                    deadline,
                    collection_event: event_id,
                    raised: BTreeSet::new(),
                    expired: false,
                })
            }
        }
        self.check_etas(profiles, coi, out);
        self.reschedule(profiles, coi);
    }

    /// The material was received (or cryopreserved): the countdown stops.
    pub(super) fn stopped(&mut self, profiles: &Profiles, coi: &str, at: DateTime<Utc>) {
        let chain = self.chains.entry(coi.to_string()).or_default();
        chain.touch(at);
        chain.stopped = Some(chain.stopped.map_or(at, |s| s.min(at)));
        self.reschedule(profiles, coi);
    }

    /// A shipment event for `coi`, with the courier's ETA if it gives one.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn shipment(
        &mut self,
        profiles: &Profiles,
        coi: &str,
        at: DateTime<Utc>,
        tracking: &str,
        eta: Option<DateTime<Utc>>,
        event_id: Uuid,
        out: &mut Vec<Raised>,
    ) {
        let chain = self.chains.entry(coi.to_string()).or_default();
        chain.touch(at);
        if chain.shipment.as_ref().is_none_or(|(t, _)| *t <= at) {
            chain.shipment = Some((at, tracking.to_string()));
        }
        let Some(eta) = eta else { return };
        let seen = EtaSeen {
            scanned_at: at,
            event_id,
            tracking: tracking.to_string(),
        };
        match chain.etas.get(&eta) {
            Some(old) if old.scanned_at <= at => {}
            _ => {
                chain.etas.insert(eta, seen);
            }
        }
        self.check_etas(profiles, coi, out);
    }

    /// Raises `eta_beyond_window` for each ETA after the deadline not yet raised.
    fn check_etas(&mut self, profiles: &Profiles, coi: &str, out: &mut Vec<Raised>) {
        let Some(chain) = self.chains.get_mut(coi) else {
            return;
        };
        let Some(c) = chain.countdown.as_ref().filter(|_| chain.stopped.is_none()) else {
            return;
        };
        for (&eta, seen) in chain.etas.range((
            std::ops::Bound::Excluded(c.deadline),
            std::ops::Bound::Unbounded,
        )) {
            if !chain.etas_raised.insert(eta) {
                continue;
            }
            let message = format!(
                "courier ETA {} for shipment {} is {} after the viability deadline {} of COI {coi} ({})",
                to_rfc3339(&eta),
                seen.tracking,
                human_duration(eta - c.deadline),
                to_rfc3339(&c.deadline),
                window_text(profiles, c),
            );
            out.push(Raised {
                key: format!("viability:{coi}:eta:{}", to_rfc3339(&eta)),
                coi: Some(coi.to_string()),
                product: c.product.clone(),
                occurred_at: seen.scanned_at,
                data: EventData::AlertRaised(AlertRaised {
                    alert: ALERT_ETA.into(),
                    severity: "high".into(),
                    message,
                    related_event_id: Some(seen.event_id.to_string()),
                    deadline: Some(c.deadline),
                    tracking_number: Some(seen.tracking.clone()),
                    links: Vec::new(),
                }),
                tracking_number: Some(seen.tracking.clone()),
            });
        }
    }

    fn reschedule(&mut self, profiles: &Profiles, coi: &str) {
        let Some(chain) = self.chains.get_mut(coi) else {
            return;
        };
        if let Some(old) = chain.due.take() {
            self.due.remove(&(old, coi.to_string()));
        }
        chain.due = chain.next_due(profiles);
        if let Some(due) = chain.due {
            self.due.insert((due, coi.to_string()));
        }
    }

    /// Raises what has come due by `now`, in due order.
    pub(super) fn tick(&mut self, profiles: &Profiles, now: DateTime<Utc>, out: &mut Vec<Raised>) {
        while let Some((due, coi)) = self.due.first().cloned() {
            if due > now {
                break;
            }
            self.due.pop_first();
            let Some(chain) = self.chains.get_mut(&coi) else {
                continue;
            };
            chain.due = None;
            let shipment = chain.shipment.as_ref().map(|(_, t)| t.clone());
            if let Some(c) = chain.countdown.as_mut().filter(|_| chain.stopped.is_none()) {
                raise_due(profiles, &coi, c, shipment, now, out);
            }
            self.reschedule(profiles, &coi);
        }
    }

    /// How many COIs are held.
    pub(super) fn len(&self) -> usize {
        self.chains.len()
    }

    /// When `tick` next has something to do.
    pub(super) fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.due.first().map(|(t, _)| *t)
    }

    /// Drops COIs last heard of before `t` whose countdown, if any, is over
    /// (stopped or expired) with its deadline before `t` as well.
    pub(super) fn forget_before(&mut self, t: DateTime<Utc>) {
        let due = &mut self.due;
        self.chains.retain(|coi, chain| {
            let quiet = chain.last_seen.is_none_or(|s| s < t);
            let over = chain
                .countdown
                .as_ref()
                .is_none_or(|c| (chain.stopped.is_some() || c.expired) && c.deadline < t);
            let keep = !(quiet && over);
            if !keep {
                if let Some(d) = chain.due {
                    due.remove(&(d, coi.clone()));
                }
            }
            keep
        });
    }
}

fn window_text(profiles: &Profiles, c: &Countdown) -> String {
    let hours = profiles.get(c.profile).viability_hours.unwrap_or_default();
    format!(
        "{hours} h window of profile {} from collection at {}",
        profiles.name(c.profile),
        to_rfc3339(&c.collected_at)
    )
}

/// Each threshold reached and not yet raised, largest first, then expiry.
fn raise_due(
    profiles: &Profiles,
    coi: &str,
    c: &mut Countdown,
    shipment: Option<String>,
    now: DateTime<Utc>,
    out: &mut Vec<Raised>,
) {
    let p = profiles.get(c.profile);
    let mut thresholds: Vec<i64> = p
        .alert_remaining_hours
        .iter()
        .copied()
        .filter(|&h| h > 0)
        .collect();
    thresholds.sort_unstable_by(|a, b| b.cmp(a));
    thresholds.dedup();
    let smallest = thresholds.last().copied();
    let deadline = c.deadline;
    let deadline_text = to_rfc3339(&deadline);
    let window = window_text(profiles, c);
    let product = c.product.clone();
    let related = c.collection_event.to_string();
    let on_shipment = shipment
        .as_deref()
        .map(|t| format!(", shipment {t}"))
        .unwrap_or_default();
    let mut raise =
        |key: String, at: DateTime<Utc>, alert: &str, severity: &str, message: String| {
            out.push(Raised {
                key,
                coi: Some(coi.to_string()),
                product: product.clone(),
                occurred_at: at,
                data: EventData::AlertRaised(AlertRaised {
                    alert: alert.into(),
                    severity: severity.into(),
                    message,
                    related_event_id: Some(related.clone()),
                    deadline: Some(deadline),
                    tracking_number: shipment.clone(),
                    links: Vec::new(),
                }),
                tracking_number: shipment.clone(),
            })
        };
    for h in thresholds {
        let at = deadline - Duration::hours(h);
        if now < at || !c.raised.insert(h) {
            continue;
        }
        let severity = if Some(h) == smallest {
            "high"
        } else {
            "warning"
        };
        raise(
            format!("viability:{coi}:remaining:{h}h"),
            at,
            ALERT_THRESHOLD,
            severity,
            format!(
                "{h} h left of the viability window of COI {coi}: deadline {deadline_text} ({window}){on_shipment}, material not yet received"
            ),
        );
    }
    if !c.expired && now >= deadline {
        c.expired = true;
        raise(
            format!("viability:{coi}:expired"),
            deadline,
            ALERT_EXPIRED,
            "critical",
            format!(
                "viability window of COI {coi} expired at {deadline_text} ({window}){on_shipment} before the material was received"
            ),
        );
    }
}
