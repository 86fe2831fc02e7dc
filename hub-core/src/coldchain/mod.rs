//! Cold chain and viability: what to raise while a patient's cells travel.
//!
//! Pure and deterministic: no I/O, no clock, no tasks. The hub feeds the
//! [`Monitor`] every routed event (after the identity registry filled in
//! its COI) with [`Monitor::observe`], and the current time with
//! [`Monitor::tick`] (when [`Monitor::next_deadline`] says), and turns each
//! [`Raised`] into an event whose `message_id` is [`Raised::key`]. Keys are
//! a pure function of the facts, so a restart that replays the same events
//! and ticks raises the same keys, and the store's (partner, message_id)
//! dedup keeps each alert to one.
//!
//! # Which profile a reading is judged by
//!
//! 1. The reading's own `profile`, when it names a configured profile.
//!    When it names an unknown one, the reading falls through to 2 and 3,
//!    and the excursion's message says so (`logger reported unknown
//!    profile "x"; judged by y`).
//! 2. The profile of its shipment: the `shipment.created` with its
//!    tracking number whose `container` a profile claims. (A reading seen
//!    before its shipment record is judged without it.)
//! 3. `default_profile`. With no usable profile (an unknown default, a
//!    problem [`ColdChainConfig::check`] reports) the reading is not judged.
//!
//! # Excursions (per logger, in event time)
//!
//! See [`excursion`]'s rules. Each logger keeps its readings of the last
//! `retain_hours` (of event time, behind its latest reading) and at most
//! `max_readings_per_logger`; a reading older than that is not judged. A
//! repeated reading (same time, same value) changes nothing; a second,
//! different value at the same instant replaces the first only when it is
//! further out of range under the same profile. Readings that are not
//! finite numbers are ignored.
//!
//! Each opening and each closing gives two outputs: a
//! `temperature.excursion` (key `excursion:{logger}:{started_at}:opened`
//! or `…:closed`, RFC 3339 UTC) and an `alert.raised`
//! `temperature_excursion` (the same key + `:alert`), `high` when a reading
//! went beyond the tolerance, `warning` for a drift that lasted. Their
//! `occurred_at` is the excursion's start (opened) or end (closed); while
//! open, `duration_seconds` runs to the last out-of-range reading known.
//! Readings that arrive late are merged in event time: the outcome is the
//! one in-order readings give unless part of a run had already been
//! reported by itself (reports are never withdrawn; see [`excursion`]).
//!
//! # Viability (per COI)
//!
//! See [`viability`]. Alert keys: `viability:{coi}:remaining:{hours}h`
//! (`viability_threshold`: `high` for the profile's smallest threshold,
//! `warning` for the others; `occurred_at` deadline − hours),
//! `viability:{coi}:expired` (`viability_expired`, `critical`, at the
//! deadline), `viability:{coi}:eta:{eta}` (`eta_beyond_window`, `high`,
//! at the scan's time).
//!
//! # Memory
//!
//! [`Monitor::forget_before`] drops loggers with no reading since then
//! (with an excursion still open, if a logger fell silent out of range),
//! shipments not heard of since, and COIs whose countdown is over.

mod config;
pub mod excursion;
pub mod viability;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use crate::event::{EventData, TherapyEvent};

use config::Profiles;
pub use config::{ColdChainConfig, Profile, EXAMPLE};
pub use excursion::ALERT_EXCURSION;
use excursion::{Context, Limits, Track};
use viability::Viability;
pub use viability::{ALERT_ETA, ALERT_EXPIRED, ALERT_THRESHOLD};

/// Something the monitor wants the hub to publish: an event of the kind of
/// `data`, with `message_id` = `key`.
#[derive(Debug, Clone, PartialEq)]
pub struct Raised {
    /// Deterministic: the same facts always give the same key.
    pub key: String,
    pub coi: Option<String>,
    pub product: Option<String>,
    /// The event time it is about (an excursion's start or end, the moment
    /// a threshold was reached, the scan that gave an ETA).
    pub occurred_at: DateTime<Utc>,
    /// `temperature.excursion` or `alert.raised`.
    pub data: EventData,
    pub tracking_number: Option<String>,
}

/// What the monitor knows of a shipment.
#[derive(Debug)]
struct Shipment {
    /// The profile its container puts its readings on.
    profile: Option<usize>,
    coi: Option<String>,
    product: Option<String>,
    last_seen: DateTime<Utc>,
}

/// All cold-chain state, in keyed maps.
#[derive(Debug)]
pub struct Monitor {
    enabled: bool,
    profiles: Profiles,
    limits: Limits,
    shipments: HashMap<String, Shipment>,
    loggers: HashMap<String, Track>,
    viability: Viability,
}

/// Whether a manufacturing step is the one that ends the fresh window.
fn is_cryopreservation(step: &str) -> bool {
    let step = step.to_lowercase();
    step.contains("cryopreserv") || step.contains("freez")
}

impl Monitor {
    /// A monitor with no state. A disabled config gives one that raises
    /// nothing.
    pub fn new(config: ColdChainConfig) -> Self {
        Monitor {
            enabled: config.enabled,
            profiles: Profiles::new(&config),
            limits: Limits {
                retain: Duration::hours(config.retain_hours.max(1)),
                max_readings: config.max_readings_per_logger.max(2),
            },
            shipments: HashMap::new(),
            loggers: HashMap::new(),
            viability: Viability::default(),
        }
    }

    /// Takes one routed event; returns what it raises now: excursions
    /// opened or closed (two outputs each) and ETAs beyond the window.
    pub fn observe(&mut self, ev: &TherapyEvent) -> Vec<Raised> {
        let mut out = Vec::new();
        if !self.enabled {
            return out;
        }
        let at = ev.occurred_at;
        let coi = ev.coi.as_deref();
        match &ev.data {
            EventData::TemperatureReading(r) => self.reading(ev, r, &mut out),
            EventData::ShipmentCreated(s) => {
                let profile = s
                    .container
                    .as_deref()
                    .and_then(|c| self.profiles.for_container(c));
                let sh = self.shipment(&s.tracking_number, ev);
                if s.container.is_some() {
                    sh.profile = profile;
                }
                self.eta(coi, &s.tracking_number, s.expected_delivery, ev, &mut out);
            }
            EventData::ShipmentStatus(s) => {
                self.shipment(&s.tracking_number, ev);
                self.eta(coi, &s.tracking_number, s.eta, ev, &mut out);
            }
            EventData::ShipmentDelivered(s) => {
                self.shipment(&s.tracking_number, ev);
                self.eta(coi, &s.tracking_number, None, ev, &mut out);
            }
            EventData::CollectionCompleted(_) => {
                if let Some(coi) = coi {
                    self.viability.collected(
                        &self.profiles,
                        coi,
                        ev.product.as_deref(),
                        at,
                        ev.event_id,
                        &mut out,
                    );
                }
            }
            EventData::MaterialReceived(_) => {
                if let Some(coi) = coi {
                    self.viability.stopped(&self.profiles, coi, at);
                }
            }
            EventData::ManufacturingStepCompleted(m) if is_cryopreservation(&m.step) => {
                if let Some(coi) = coi {
                    self.viability.stopped(&self.profiles, coi, at);
                }
            }
            _ => {}
        }
        out
    }

    /// A shipment event of a therapy: its ETA (if any) against the
    /// therapy's viability window.
    fn eta(
        &mut self,
        coi: Option<&str>,
        tracking: &str,
        eta: Option<DateTime<Utc>>,
        ev: &TherapyEvent,
        out: &mut Vec<Raised>,
    ) {
        if let Some(coi) = coi {
            self.viability.shipment(
                &self.profiles,
                coi,
                ev.occurred_at,
                tracking,
                eta,
                ev.event_id,
                out,
            );
        }
    }

    /// Records a shipment event's facts and returns the shipment.
    fn shipment(&mut self, tracking: &str, ev: &TherapyEvent) -> &mut Shipment {
        let sh = self
            .shipments
            .entry(tracking.to_string())
            .or_insert_with(|| Shipment {
                profile: None,
                coi: None,
                product: None,
                last_seen: ev.occurred_at,
            });
        sh.last_seen = sh.last_seen.max(ev.occurred_at);
        if ev.coi.is_some() {
            sh.coi.clone_from(&ev.coi);
        }
        if ev.product.is_some() {
            sh.product.clone_from(&ev.product);
        }
        sh
    }

    fn reading(
        &mut self,
        ev: &TherapyEvent,
        r: &crate::event::TemperatureReading,
        out: &mut Vec<Raised>,
    ) {
        let shipment = r
            .tracking_number
            .as_ref()
            .and_then(|t| self.shipments.get_mut(t));
        let fallback = shipment
            .as_ref()
            .and_then(|s| s.profile)
            .or(self.profiles.default());
        let (profile, note) = match r.profile.as_deref() {
            None => (fallback, None),
            Some(name) => match self.profiles.by_name(name) {
                Some(i) => (Some(i), None),
                None => (
                    fallback,
                    fallback.map(|f| {
                        format!(
                            "logger reported unknown profile {name:?}; judged by {}",
                            self.profiles.name(f)
                        )
                    }),
                ),
            },
        };
        let Some(profile) = profile else { return };
        let (mut coi, mut product) = (ev.coi.clone(), ev.product.clone());
        if let Some(s) = shipment {
            s.last_seen = s.last_seen.max(ev.occurred_at);
            coi = coi.or_else(|| s.coi.clone());
            product = product.or_else(|| s.product.clone());
        }
        let ctx = Context {
            profile,
            tracking: r.tracking_number.clone(),
            coi,
            product,
            note,
        };
        self.loggers
            .entry(r.logger_id.clone())
            .or_default()
            .observe(
                &self.profiles,
                self.limits,
                &r.logger_id,
                ev.occurred_at,
                r.celsius,
                ctx,
                ev.event_id,
                out,
            );
    }

    /// Raises the viability thresholds and expiries that have come by `now`.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Raised> {
        let mut out = Vec::new();
        if self.enabled {
            self.viability.tick(&self.profiles, now, &mut out);
        }
        out
    }

    /// When [`Monitor::tick`] next has something to do (possibly already
    /// past: tick then); `None` while nothing is counting down.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.viability.next_deadline()
    }

    /// Drops state last touched before `t` (event time): loggers with no
    /// reading since, shipments not heard of since, COIs whose countdown is
    /// over. Pass a time well behind the present (days), so late events
    /// still find what they belong to.
    pub fn forget_before(&mut self, t: DateTime<Utc>) {
        self.loggers
            .retain(|_, track| track.latest().is_some_and(|l| l >= t));
        self.shipments.retain(|_, s| s.last_seen >= t);
        self.viability.forget_before(t);
    }

    /// How many loggers, shipments and COIs are held (for metrics and tests).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.loggers.len(),
            self.shipments.len(),
            self.viability.len(),
        )
    }
}

#[cfg(test)]
mod tests;
