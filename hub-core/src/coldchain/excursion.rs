//! Temperature excursions, per logger, in event time.
//!
//! A logger's track keeps its recent readings sorted by time and the
//! excursions already reported. A new reading is placed by its own time and
//! only its neighbourhood is looked at again: the run of out-of-range
//! readings it belongs to, and the runs on either side that it may split.
//!
//! Rules (see the module docs of [`super`] for the whole contract):
//!
//! - A reading is *out of range* when its profile's
//!   [`deviation`](super::Profile::deviation) is above zero. A *run* is a
//!   maximal sequence of consecutive (in event time) out-of-range readings
//!   judged by the same profile; an in-range reading, or one judged by
//!   another profile, ends it.
//! - A run *qualifies* when one of its readings is beyond the range by more
//!   than `tolerance_celsius`, or when its first and last readings are at
//!   least `tolerance_minutes` apart. A qualifying run that overlaps no
//!   reported excursion opens one, `started_at` its first reading.
//! - An open excursion closes at the first reading after it that ends its
//!   run (`ended_at`), even one that arrives late and splits it: the rest
//!   of the split run is then judged afresh, as it would have been had the
//!   readings come in order.
//! - Reports are never withdrawn or amended. A reported excursion covers
//!   `[started_at, ended_at)` (open-ended while it lasts); a late reading
//!   inside a closed one changes nothing, a late out-of-range reading that
//!   joins an open one only counts towards its peak, and a late run that
//!   reaches into a reported excursion is absorbed by it.

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Unbounded};

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::config::{Profile, Profiles};
use super::Raised;
use crate::event::rfc3339::to_rfc3339;
use crate::event::{AlertRaised, EventData, TemperatureExcursion};

/// The alert code of excursion alerts.
pub const ALERT_EXCURSION: &str = "temperature_excursion";

/// What the hub knows about a reading besides its value: the profile it is
/// judged by and the shipment and therapy it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Context {
    pub profile: usize,
    pub tracking: Option<String>,
    pub coi: Option<String>,
    pub product: Option<String>,
    /// Why the profile is not the one the logger named, when it is not.
    pub note: Option<String>,
}

/// How much history a track keeps.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub retain: Duration,
    pub max_readings: usize,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    celsius: f64,
    /// Index into the track's contexts.
    ctx: u32,
    event_id: Uuid,
}

#[derive(Debug, Clone)]
struct Excursion {
    /// The context of its first reading.
    ctx: u32,
    started_at: DateTime<Utc>,
    started_event: Uuid,
    peak: f64,
    /// A reading beyond the tolerance.
    spike: bool,
    /// The latest out-of-range reading counted in it.
    last_out: DateTime<Utc>,
    /// The reading that ended it.
    ended: Option<(DateTime<Utc>, Uuid)>,
}

/// One logger's readings and reported excursions.
#[derive(Debug, Default)]
pub(super) struct Track {
    readings: BTreeMap<DateTime<Utc>, Sample>,
    /// Distinct contexts of the readings (one, for a logger on one trip).
    contexts: Vec<Context>,
    /// Reported excursions by `started_at`; their spans do not overlap, and
    /// only the last can be open.
    excursions: BTreeMap<DateTime<Utc>, Excursion>,
    /// Readings at or before this time were dropped; later readings there
    /// are not judged.
    floor: Option<DateTime<Utc>>,
    latest: Option<DateTime<Utc>>,
}

/// How a run relates to the reported excursions.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Overlap {
    None,
    Closed,
    Open(DateTime<Utc>),
}

#[derive(Debug)]
struct Run {
    profile: usize,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    first: Sample,
    peak: f64,
    spike: bool,
    /// The reading that ends the run, if there is one yet.
    next: Option<(DateTime<Utc>, Uuid)>,
    overlap: Overlap,
}

/// The more extreme of two values: further out of range, then the higher.
fn extreme(p: &Profile, a: f64, b: f64) -> f64 {
    let (da, db) = (p.deviation(a), p.deviation(b));
    if db > da || (db == da && b > a) {
        b
    } else {
        a
    }
}

impl Track {
    /// The latest reading's time.
    pub(super) fn latest(&self) -> Option<DateTime<Utc>> {
        self.latest
    }

    /// Takes one reading and appends what it opens or closes to `out`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn observe(
        &mut self,
        profiles: &Profiles,
        limits: Limits,
        logger: &str,
        at: DateTime<Utc>,
        celsius: f64,
        ctx: Context,
        event_id: Uuid,
        out: &mut Vec<Raised>,
    ) {
        if !celsius.is_finite()
            || self.floor.is_some_and(|f| at <= f)
            || self.latest.is_some_and(|l| at < l - limits.retain)
        {
            return;
        }
        let p = profiles.get(ctx.profile);
        if let Some(old) = self.readings.get(&at) {
            // A repeat, or a second value at the same instant: only a worse
            // value under the same profile replaces the first.
            let same_profile = self.contexts[old.ctx as usize].profile == ctx.profile;
            if !same_profile || p.deviation(celsius) <= p.deviation(old.celsius) {
                return;
            }
        }
        let ctx = self.intern(ctx);
        self.readings.insert(
            at,
            Sample {
                celsius,
                ctx,
                event_id,
            },
        );
        self.latest = self.latest.max(Some(at));
        self.evaluate(profiles, logger, at, out);
        self.trim(limits);
    }

    fn intern(&mut self, ctx: Context) -> u32 {
        let i = match self.contexts.iter().position(|c| *c == ctx) {
            Some(i) => i,
            None => {
                self.contexts.push(ctx);
                self.contexts.len() - 1
            }
        };
        i as u32
    }

    fn profile_of(&self, s: &Sample) -> usize {
        self.contexts[s.ctx as usize].profile
    }

    /// Whether `s` belongs to a run judged by `profile`.
    fn continues(&self, profiles: &Profiles, profile: usize, s: &Sample) -> bool {
        self.profile_of(s) == profile && profiles.get(profile).deviation(s.celsius) > 0.0
    }

    /// The reported excursion whose span holds `t`: its start, and whether it is closed.
    fn span_at(&self, t: DateTime<Utc>) -> Option<(DateTime<Utc>, bool)> {
        let (&start, x) = self.excursions.range(..=t).next_back()?;
        match x.ended {
            None => Some((start, false)),
            Some((end, _)) if t < end => Some((start, true)),
            Some(_) => None,
        }
    }

    fn evaluate(
        &mut self,
        profiles: &Profiles,
        logger: &str,
        at: DateTime<Utc>,
        out: &mut Vec<Raised>,
    ) {
        let s = self.readings[&at];
        let profile = self.profile_of(&s);
        let outside = profiles.get(profile).deviation(s.celsius) > 0.0;
        if let Some((start, closed)) = self.span_at(at) {
            if closed {
                return;
            }
            let x_profile = self.contexts[self.excursions[&start].ctx as usize].profile;
            if self.continues(profiles, x_profile, &s) || at == start {
                let p = profiles.get(x_profile);
                let x = self.excursions.get_mut(&start).expect("span_at found it");
                x.peak = extreme(p, x.peak, s.celsius);
                x.spike |= p.deviation(s.celsius) > p.tolerance_celsius;
                x.last_out = x.last_out.max(at);
                return;
            }
            // It ends the open excursion; what follows is judged afresh.
            self.close(profiles, logger, start, (at, s.event_id), out);
        }
        if outside {
            let run = self.run_at(profiles, at);
            self.settle(profiles, logger, run, out);
        }
        // Neighbours that `at` separates from its own run, or from each other.
        let joined = |t: &Sample| outside && self.continues(profiles, profile, t);
        let before = self
            .readings
            .range(..at)
            .next_back()
            .filter(|(_, t)| !joined(t) && self.profile_deviation(profiles, t) > 0.0)
            .map(|(&t, _)| t);
        let after = self
            .readings
            .range((Excluded(at), Unbounded))
            .next()
            .filter(|(_, t)| !joined(t) && self.profile_deviation(profiles, t) > 0.0)
            .map(|(&t, _)| t);
        for anchor in before.into_iter().chain(after) {
            let run = self.run_at(profiles, anchor);
            self.settle(profiles, logger, run, out);
        }
    }

    fn profile_deviation(&self, profiles: &Profiles, s: &Sample) -> f64 {
        profiles.get(self.profile_of(s)).deviation(s.celsius)
    }

    /// The run through the out-of-range reading at `anchor`, scanned only
    /// as far as needed: to its ends, or into a reported excursion.
    fn run_at(&self, profiles: &Profiles, anchor: DateTime<Utc>) -> Run {
        let a = self.readings[&anchor];
        let profile = self.profile_of(&a);
        let p = profiles.get(profile);
        let mut run = Run {
            profile,
            start: anchor,
            end: anchor,
            first: a,
            peak: a.celsius,
            spike: p.deviation(a.celsius) > p.tolerance_celsius,
            next: None,
            overlap: Overlap::None,
        };
        if let Some((start, closed)) = self.span_at(anchor) {
            run.overlap = if closed {
                Overlap::Closed
            } else {
                Overlap::Open(start)
            };
            return run;
        }
        let include = |run: &mut Run, s: &Sample| {
            run.peak = extreme(p, run.peak, s.celsius);
            run.spike |= p.deviation(s.celsius) > p.tolerance_celsius;
        };
        let mark = |run: &mut Run, (start, closed): (DateTime<Utc>, bool)| {
            if !closed {
                run.overlap = Overlap::Open(start);
            } else if run.overlap == Overlap::None {
                run.overlap = Overlap::Closed;
            }
        };
        for (&t, s) in self.readings.range(..anchor).rev() {
            if !self.continues(profiles, profile, s) {
                break;
            }
            if let Some(span) = self.span_at(t) {
                mark(&mut run, span);
                break;
            }
            run.start = t;
            run.first = *s;
            include(&mut run, s);
        }
        for (&t, s) in self.readings.range((Excluded(anchor), Unbounded)) {
            if !self.continues(profiles, profile, s) {
                run.next = Some((t, s.event_id));
                break;
            }
            if let Some(span) = self.span_at(t) {
                mark(&mut run, span);
                break;
            }
            run.end = t;
            include(&mut run, s);
        }
        run
    }

    /// Opens (and closes) what a run calls for.
    fn settle(&mut self, profiles: &Profiles, logger: &str, run: Run, out: &mut Vec<Raised>) {
        let p = profiles.get(run.profile);
        match run.overlap {
            Overlap::Closed => {}
            Overlap::Open(start) => {
                let x = self.excursions.get_mut(&start).expect("overlap names it");
                x.peak = extreme(p, x.peak, run.peak);
                x.spike |= run.spike;
                if let Some(next) = run.next {
                    self.close(profiles, logger, start, next, out);
                }
            }
            Overlap::None => {
                let long = run.end - run.start >= Duration::minutes(p.tolerance_minutes);
                if !(run.spike || long) {
                    return;
                }
                let x = Excursion {
                    ctx: run.first.ctx,
                    started_at: run.start,
                    started_event: run.first.event_id,
                    peak: run.peak,
                    spike: run.spike,
                    last_out: run.end,
                    ended: None,
                };
                self.report(profiles, logger, &x, out);
                self.excursions.insert(run.start, x);
                if let Some(next) = run.next {
                    self.close(profiles, logger, run.start, next, out);
                }
            }
        }
    }

    fn close(
        &mut self,
        profiles: &Profiles,
        logger: &str,
        start: DateTime<Utc>,
        end: (DateTime<Utc>, Uuid),
        out: &mut Vec<Raised>,
    ) {
        let x = self
            .excursions
            .get_mut(&start)
            .expect("closing a known excursion");
        x.ended = Some(end);
        let x = x.clone();
        self.report(profiles, logger, &x, out);
    }

    /// Drops history behind the retention window or beyond the count.
    fn trim(&mut self, limits: Limits) {
        let Some(latest) = self.latest else { return };
        let horizon = latest - limits.retain;
        while let Some((&t, _)) = self.readings.first_key_value() {
            if t >= horizon && self.readings.len() <= limits.max_readings {
                break;
            }
            self.readings.pop_first();
            self.floor = self.floor.max(Some(t));
        }
        while let Some((_, x)) = self.excursions.first_key_value() {
            if x.ended.is_none_or(|(end, _)| end >= horizon) {
                break;
            }
            self.excursions.pop_first();
        }
    }

    /// The two outputs for an excursion's opening or closing.
    fn report(&self, profiles: &Profiles, logger: &str, x: &Excursion, out: &mut Vec<Raised>) {
        let ctx = &self.contexts[x.ctx as usize];
        let p = profiles.get(ctx.profile);
        let name = profiles.name(ctx.profile);
        let started = to_rfc3339(&x.started_at);
        let (phase, at, duration, related) = match x.ended {
            None => (
                "opened",
                x.started_at,
                x.last_out - x.started_at,
                x.started_event,
            ),
            Some((end, ev)) => ("closed", end, end - x.started_at, ev),
        };
        let key = format!("excursion:{logger}:{started}:{phase}");
        let shipment = ctx
            .tracking
            .as_deref()
            .map(|t| format!(" (shipment {t})"))
            .unwrap_or_default();
        let note = ctx
            .note
            .as_deref()
            .map(|n| format!("; {n}"))
            .unwrap_or_default();
        let what = format!("{} °C, outside {} (profile {name})", x.peak, p.range_text());
        let message = match x.ended {
            None => format!(
                "temperature excursion on logger {logger}{shipment} since {started}: {what}{note}"
            ),
            Some((end, _)) => format!(
                "temperature excursion on logger {logger}{shipment} ended at {} after {}; peak {what}{note}",
                to_rfc3339(&end),
                human_duration(duration)
            ),
        };
        let excursion = TemperatureExcursion {
            logger_id: logger.to_string(),
            tracking_number: ctx.tracking.clone(),
            profile: Some(name.to_string()),
            limit_low_celsius: p.min_celsius,
            limit_high_celsius: p.max_celsius,
            peak_celsius: x.peak,
            started_at: x.started_at,
            ended_at: x.ended.map(|(end, _)| end),
            duration_seconds: Some(duration.num_seconds()),
        };
        let alert = AlertRaised {
            alert: ALERT_EXCURSION.into(),
            severity: if x.spike { "high" } else { "warning" }.into(),
            message,
            related_event_id: Some(related.to_string()),
            deadline: None,
            tracking_number: ctx.tracking.clone(),
            links: Vec::new(),
        };
        let raised = |key: String, data: EventData| Raised {
            key,
            coi: ctx.coi.clone(),
            product: ctx.product.clone(),
            occurred_at: at,
            data,
            tracking_number: ctx.tracking.clone(),
        };
        let alert_key = format!("{key}:alert");
        out.push(raised(key, EventData::TemperatureExcursion(excursion)));
        out.push(raised(alert_key, EventData::AlertRaised(alert)));
    }
}

/// `1 h 05 min`, `12 min`, `40 s`.
pub(super) fn human_duration(d: Duration) -> String {
    let secs = d.num_seconds();
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}
