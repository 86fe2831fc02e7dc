//! The identity registry's rows, read and written inside the writer's
//! transaction: therapies, the identifier crosswalk, held and quarantined
//! events. The rules are [`crate::registry::judge`]'s; this module loads
//! what a batch's events name, applies each verdict to its working copy
//! (so later events of the batch see earlier ones), then writes it all.
//!
//! Serialised by construction: SQLite has one writer; on PostgreSQL the
//! therapies a batch touches are locked (`FOR UPDATE`), and a key another
//! instance linked first makes this batch's insert conflict, so the batch
//! runs again and sees that link (see `writer.rs`).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::QueryBuilder;

use super::audit::AuditDraft;
use super::batch::{Batch, SYSTEM};
use super::db::{self, on_db, Conn};
use super::insert::{DeadRow, EventRow};
use super::records::PreparedEvent;
use super::time;
use crate::error::Stage;
use crate::event::{AlertLink, AlertRaised, EventData, TherapyEvent};
use crate::inbound::Problem;
use crate::registry::{
    judge, next_state, Disagreement, Facts, HoldReason, Link, Rules, Therapy, TherapyState,
    Verdict, View,
};
use crate::routing::Router;

/// Problem code of a message whose identifiers contradict the registry.
pub const IDENTITY_CONFLICT: &str = "identity_conflict";
/// Problem code of a held event whose identifiers never became known.
pub const HOLD_EXPIRED: &str = "hold_expired";

/// What the registry needs besides the event: the rules, the routes for
/// what it releases or raises, how long an unknown identity may wait.
#[derive(Debug)]
pub struct RegistryContext {
    pub rules: Rules,
    pub router: Arc<Router>,
    pub hold_timeout: chrono::Duration,
}

/// Patient data for a new therapy, sealed by the hub (bound to the COI).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sealed {
    pub name: Option<String>,
    pub birth_date: Option<String>,
    pub mrn: Option<String>,
}

/// An event's identity, as the hub prepared it for the registry. Small on
/// purpose: it is dropped in the store's serial stage; the event itself is
/// read back from its body on the rare paths that need it (an alert, a
/// routing key naming the COI).
#[derive(Debug, Clone)]
pub struct EventIdentity {
    pub facts: Facts,
    pub sealed: Sealed,
    pub cx: Arc<RegistryContext>,
}

/// The event a prepared body holds (it was serialised from one).
fn event_of(ev: &PreparedEvent) -> Option<TherapyEvent> {
    match serde_json::from_str(&ev.body) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::error!(event_id = %ev.event_id, error = %e, "a prepared event's body does not parse");
            None
        }
    }
}

/// A held or quarantined event, to insert.
pub(crate) struct HoldRow {
    pub event_id: String,
    pub message_row: i64,
    pub kind: &'static str,
    pub coi: Option<String>,
    pub order_id: Option<String>,
    pub product: Option<String>,
    pub occurred_at: String,
    pub recorded_at: String,
    pub body: String,
    pub reason: &'static str,
    pub detail: String,
    pub keys: Vec<String>,
    pub name_index: Option<String>,
    pub birth_date_index: Option<String>,
    pub state: &'static str,
    pub deadline: Option<String>,
}

struct NewTherapy {
    coi: String,
    product: Option<String>,
    order_id: Option<String>,
    sealed: Sealed,
    message_row: i64,
}

struct NewLink {
    key: String,
    kind: &'static str,
    authority: String,
    value: String,
    link: Link,
    message_row: i64,
}

/// Who asserted what a message says.
pub(crate) struct Asserter<'a> {
    pub by: String,
    pub message_id: Option<&'a str>,
    pub message_row: i64,
}

/// The outcome of one message's events.
pub(crate) enum Judged<'a> {
    /// Events that go on (re-serialised where they got a COI) and events held.
    Events {
        pass: Vec<Cow<'a, PreparedEvent>>,
        held: usize,
    },
    /// One event contradicts the registry: the message fails with this
    /// problem; an alert goes on instead of its events.
    Conflict { problem: Problem },
}

/// The registry as a batch sees it: rows read, plus what it has decided.
#[derive(Default)]
pub(crate) struct Registry {
    /// `None`: looked up, not there.
    links: HashMap<String, Option<Link>>,
    therapies: HashMap<String, Option<Therapy>>,
    new_therapies: Vec<NewTherapy>,
    /// Existing therapies whose state or milestones changed.
    dirty: BTreeSet<String>,
    new_links: Vec<NewLink>,
    pub holds: Vec<HoldRow>,
    held_messages: BTreeSet<i64>,
    /// Message row → (code, reason) of a message failed by a conflict.
    failed: Vec<(i64, Problem)>,
    /// Events this module made (alerts) with their message row, owned
    /// until the batch inserts them.
    pub made: Vec<(PreparedEvent, i64)>,
    /// Keys linked by this batch, for re-evaluating holds.
    linked_now: Vec<String>,
}

impl View for Registry {
    fn link(&self, key: &str) -> Option<&Link> {
        self.links.get(key).and_then(Option::as_ref)
    }
    fn therapy(&self, coi: &str) -> Option<&Therapy> {
        self.therapies.get(coi).and_then(Option::as_ref)
    }
}

/// A message's decisions on top of the batch's, kept apart until the
/// message is known not to conflict.
struct Overlay<'r> {
    base: &'r Registry,
    links: HashMap<String, Link>,
    therapies: HashMap<String, Therapy>,
}

impl View for Overlay<'_> {
    fn link(&self, key: &str) -> Option<&Link> {
        self.links.get(key).or_else(|| self.base.link(key))
    }
    fn therapy(&self, coi: &str) -> Option<&Therapy> {
        self.therapies.get(coi).or_else(|| self.base.therapy(coi))
    }
}

/// Rows per `IN (…)` list.
const IN_CHUNK: usize = 256;

impl Registry {
    /// Reads the links of `keys` and the therapies of `cois` (and of the
    /// COIs those links name) not read yet.
    pub(crate) async fn load<'k>(
        &mut self,
        conn: &mut Conn,
        keys: impl IntoIterator<Item = &'k str>,
        cois: impl IntoIterator<Item = &'k str>,
    ) -> Result<(), sqlx::Error> {
        let keys: BTreeSet<&str> = keys
            .into_iter()
            .filter(|k| !self.links.contains_key(*k))
            .collect();
        let keys: Vec<&str> = keys.into_iter().collect();
        let cois: Vec<&str> = cois.into_iter().collect();
        lock_keys(conn, &keys, &cois).await?;
        for chunk in keys.chunks(IN_CHUNK) {
            let rows: Vec<(String, String, String, Option<String>, String)> = on_db!(
                &mut *conn,
                |c| {
                    let mut qb = QueryBuilder::new(
                        "SELECT key, coi, asserted_by, message_id, created_at FROM identifiers WHERE key IN (",
                    );
                    let mut sep = qb.separated(", ");
                    for k in chunk {
                        sep.push_bind(*k);
                    }
                    qb.push(")");
                    qb.build_query_as().fetch_all(&mut *c).await
                }
            )?;
            for k in chunk {
                self.links.insert((*k).to_string(), None);
            }
            for (key, coi, asserted_by, message_id, at) in rows {
                self.links.insert(
                    key,
                    Some(Link {
                        coi,
                        asserted_by,
                        message_id,
                        at,
                    }),
                );
            }
        }
        let mut want: BTreeSet<String> = cois.iter().map(|c| c.to_string()).collect();
        for k in &keys {
            if let Some(Some(l)) = self.links.get(*k) {
                want.insert(l.coi.clone());
            }
        }
        let want: Vec<String> = want
            .into_iter()
            .filter(|c| !self.therapies.contains_key(c))
            .collect();
        let lock = if conn.is_postgres() {
            " ORDER BY coi FOR UPDATE"
        } else {
            ""
        };
        for chunk in want.chunks(IN_CHUNK) {
            type Row = (String, String, String, Option<String>, Option<String>);
            let rows: Vec<Row> = on_db!(&mut *conn, |c| {
                let mut qb = QueryBuilder::new(
                    "SELECT coi, state, milestones, name_index, birth_date_index FROM therapies WHERE coi IN (",
                );
                let mut sep = qb.separated(", ");
                for k in chunk {
                    sep.push_bind(k.as_str());
                }
                qb.push(")");
                qb.push(lock);
                qb.build_query_as().fetch_all(&mut *c).await
            })?;
            for c in chunk {
                self.therapies.insert(c.clone(), None);
            }
            for (coi, state, milestones, name_index, birth_date_index) in rows {
                let therapy = Therapy {
                    coi: coi.clone(),
                    state: TherapyState::parse(&state).unwrap_or(TherapyState::Active),
                    milestones: milestones
                        .split(',')
                        .filter(|m| !m.is_empty())
                        .map(str::to_string)
                        .collect(),
                    name_index,
                    birth_date_index,
                };
                self.therapies.insert(coi, Some(therapy));
            }
        }
        Ok(())
    }

    /// Loads what `events` name (see [`Registry::load`]).
    pub(crate) async fn load_for(
        &mut self,
        conn: &mut Conn,
        events: &[&EventIdentity],
    ) -> Result<(), sqlx::Error> {
        let keys = events
            .iter()
            .flat_map(|e| e.facts.keys.iter().map(|k| k.key.as_str()));
        let cois = events.iter().filter_map(|e| e.facts.coi.as_deref());
        self.load(conn, keys.collect::<Vec<_>>(), cois.collect::<Vec<_>>())
            .await
    }

    /// Judges one message's events in order. On a conflict nothing the
    /// message's earlier events decided is kept.
    pub(crate) fn judge_message<'a>(
        &mut self,
        evs: &'a [PreparedEvent],
        who: &Asserter,
        now: &str,
    ) -> Judged<'a> {
        let mut overlay = Overlay {
            base: self,
            links: HashMap::new(),
            therapies: HashMap::new(),
        };
        let mut decided: Vec<(&'a PreparedEvent, Verdict)> = Vec::with_capacity(evs.len());
        let mut creates: Vec<(&'a PreparedEvent, String)> = Vec::new();
        let mut links: Vec<(String, &'static str, String, String, Link)> = Vec::new();
        for ev in evs {
            let Some(id) = ev.identity.as_deref() else {
                decided.push((
                    ev,
                    Verdict::Pass {
                        coi: ev.coi.clone(),
                        link: vec![],
                        create: false,
                    },
                ));
                continue;
            };
            let verdict = judge(&id.cx.rules, &overlay, &id.facts);
            match &verdict {
                Verdict::Conflict {
                    reason,
                    disagreements,
                } => {
                    let problem = conflict_problem(reason, disagreements);
                    if let Some(about) = event_of(ev) {
                        let alert = alert_for(
                            &about,
                            "identity_conflict",
                            &problem.reason,
                            disagreements,
                            now,
                        );
                        let routed = PreparedEvent::new(&alert, id.cx.router.route(&alert));
                        self.made.push((routed, who.message_row));
                    }
                    for ev in evs {
                        self.holds.push(hold_row(
                            ev,
                            who.message_row,
                            IDENTITY_CONFLICT,
                            reason,
                            "quarantined",
                            None,
                        ));
                    }
                    self.failed.push((who.message_row, problem.clone()));
                    return Judged::Conflict { problem };
                }
                Verdict::Pass {
                    coi: Some(coi),
                    link,
                    create,
                } => {
                    let kind = id.facts.kind;
                    let changes = |t: &Therapy| {
                        !t.has(kind)
                            || next_state(t.state, kind) != t.state
                            || (t.name_index.is_none() && id.facts.name_index.is_some())
                            || (t.birth_date_index.is_none() && id.facts.birth_date_index.is_some())
                    };
                    // None: under `on_unknown = "route"` an event whose COI
                    // has no order yet goes on, linked to nothing.
                    let registered = *create || overlay.therapy(coi).is_some();
                    let updated = if *create {
                        creates.push((ev, coi.clone()));
                        Some(Therapy {
                            coi: coi.clone(),
                            state: TherapyState::Active,
                            milestones: Vec::new(),
                            name_index: id.facts.name_index.clone(),
                            birth_date_index: id.facts.birth_date_index.clone(),
                        })
                    } else {
                        // Most events change nothing (their step is known):
                        // no copy, no UPDATE.
                        overlay.therapy(coi).filter(|t| changes(t)).cloned()
                    };
                    if let Some(mut t) = updated {
                        if !t.has(kind) {
                            t.milestones.push(kind.to_string());
                        }
                        t.state = next_state(t.state, kind);
                        if t.name_index.is_none() {
                            t.name_index = id.facts.name_index.clone();
                        }
                        if t.birth_date_index.is_none() {
                            t.birth_date_index = id.facts.birth_date_index.clone();
                        }
                        overlay.therapies.insert(coi.clone(), t);
                    }
                    if registered {
                        for k in link {
                            let l = Link {
                                coi: coi.clone(),
                                asserted_by: who.by.clone(),
                                message_id: who.message_id.map(str::to_string),
                                at: now.to_string(),
                            };
                            overlay.links.insert(k.key.clone(), l.clone());
                            links.push((
                                k.key.clone(),
                                k.claimed.kind.as_str(),
                                k.claimed.authority.clone(),
                                k.claimed.value.clone(),
                                l,
                            ));
                        }
                    }
                }
                Verdict::Pass { coi: None, .. } => {}
                Verdict::Hold { .. } => {}
            }
            decided.push((ev, verdict));
        }
        let Overlay {
            links: o_links,
            therapies: o_therapies,
            ..
        } = overlay;
        for (ev, coi) in creates {
            // Events held for this COI's order wake up.
            self.linked_now.push(coi_key(&coi));
            self.new_therapies.push(NewTherapy {
                coi: coi.clone(),
                product: ev.product.clone(),
                order_id: ev.order_id.clone(),
                sealed: ev
                    .identity
                    .as_deref()
                    .map(|i| i.sealed.clone())
                    .unwrap_or_default(),
                message_row: who.message_row,
            });
        }
        for (coi, t) in o_therapies {
            let existed = matches!(self.therapies.get(&coi), Some(Some(_)));
            if existed && !self.new_therapies.iter().any(|n| n.coi == coi) {
                self.dirty.insert(coi.clone());
            }
            self.therapies.insert(coi, Some(t));
        }
        drop(o_links);
        for (key, kind, authority, value, link) in links {
            self.links.insert(key.clone(), Some(link.clone()));
            self.linked_now.push(key.clone());
            self.new_links.push(NewLink {
                key,
                kind,
                authority,
                value,
                link,
                message_row: who.message_row,
            });
        }
        let mut pass = Vec::with_capacity(decided.len());
        let mut held = 0;
        for (ev, verdict) in decided {
            match verdict {
                Verdict::Pass { coi, .. } => pass.push(with_coi(ev, coi)),
                Verdict::Hold { coi, reason } => {
                    held += 1;
                    // Only events with an identity are judged (others pass).
                    let Some(id) = ev.identity.as_deref() else {
                        continue;
                    };
                    let (detail, deadline) = match &reason {
                        HoldReason::UnknownIdentifiers => {
                            (unknown_detail(id), Some(deadline(now, id.cx.hold_timeout)))
                        }
                        HoldReason::OutOfSequence(why) => (why.clone(), None),
                    };
                    let mut row = hold_row(
                        ev,
                        who.message_row,
                        reason.code(),
                        &detail,
                        "held",
                        deadline,
                    );
                    row.coi = coi;
                    self.holds.push(row);
                    self.held_messages.insert(who.message_row);
                }
                Verdict::Conflict { .. } => unreachable!("returned above"),
            }
        }
        Judged::Events { pass, held }
    }

    /// Releases the holds waiting on keys this batch linked, as far as the
    /// registry now allows (a release can link keys that release others).
    pub(crate) async fn release_linked<'a>(
        &mut self,
        conn: &mut Conn,
        b: &mut Batch<'a>,
        cx: Option<&Arc<RegistryContext>>,
    ) -> Result<(), sqlx::Error> {
        let Some(cx) = cx else {
            return Ok(());
        };
        for _round in 0..8 {
            let keys = std::mem::take(&mut self.linked_now);
            if keys.is_empty() {
                break;
            }
            let mut waiting: Vec<StoredHold> = Vec::new();
            for chunk in keys.chunks(IN_CHUNK) {
                let rows: Vec<StoredHold> = on_db!(&mut *conn, |c| {
                    let mut qb = QueryBuilder::new(format!(
                        "SELECT DISTINCT {HOLD_COLUMNS} FROM holds h JOIN hold_keys k ON k.hold_id = h.id \
                         WHERE h.state = 'held' AND h.reason = 'unknown_identifiers' AND k.key IN ("
                    ));
                    let mut sep = qb.separated(", ");
                    for k in chunk {
                        sep.push_bind(k.as_str());
                    }
                    qb.push(")");
                    qb.build_query_as().fetch_all(&mut *c).await
                })?;
                for r in rows {
                    if !waiting.iter().any(|w| w.id == r.id) {
                        waiting.push(r);
                    }
                }
            }
            waiting.sort_by_key(|h| h.id);
            for h in waiting {
                self.reevaluate(conn, b, cx, h, SYSTEM, None).await?;
            }
        }
        Ok(())
    }

    /// Judges a stored hold again: released (its event stored and routed),
    /// quarantined (a conflict now), or still held (its reason updated).
    /// Returns the outcome's name.
    pub(crate) async fn reevaluate<'a>(
        &mut self,
        conn: &mut Conn,
        b: &mut Batch<'a>,
        cx: &Arc<RegistryContext>,
        h: StoredHold,
        actor: &str,
        operator_reason: Option<&str>,
    ) -> Result<&'static str, sqlx::Error> {
        let event: TherapyEvent = match serde_json::from_str(&h.body) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(hold = h.id, error = %e, "a held event's body does not parse; left held");
                return Ok("unreadable");
            }
        };
        let keys: Vec<String> = serde_json::from_str(&h.keys).unwrap_or_default();
        self.load(
            conn,
            keys.iter().map(String::as_str).collect::<Vec<_>>(),
            h.coi.as_deref().into_iter().collect::<Vec<_>>(),
        )
        .await?;
        let facts = Facts {
            kind: event.kind().as_str(),
            coi: event.coi.clone(),
            // The COI's own hold key is no identifier to link.
            keys: keys
                .iter()
                .filter(|k| !k.starts_with("coi||"))
                .map(|k| crate::registry::EventKey {
                    key: k.clone(),
                    claimed: claimed_of_key(k),
                })
                .collect(),
            // Checked again: a release must not skip the demographics.
            name_index: h.name_index.clone(),
            birth_date_index: h.birth_date_index.clone(),
        };
        let mut verdict = judge(&cx.rules, self, &facts);
        // An operator releasing an out-of-sequence hold overrides the
        // sequence, never the identity.
        if let (
            Some(_),
            Verdict::Hold {
                coi: Some(coi),
                reason: HoldReason::OutOfSequence(_),
            },
        ) = (operator_reason, &verdict)
        {
            verdict = Verdict::Pass {
                coi: Some(coi.clone()),
                link: Vec::new(),
                create: false,
            };
        }
        match verdict {
            Verdict::Pass { coi, link, .. } => {
                let Some(coi) = coi else {
                    return Ok("held");
                };
                // Settled first, and only if still held: another instance (or
                // an operator, or the clock) may have settled it meanwhile.
                if !set_hold_state(conn, h.id, "released", actor, operator_reason, &b.now).await? {
                    return Ok("settled");
                }
                let who = Asserter {
                    by: format!("{}/{}", event.source.connector, event.source.partner),
                    message_id: event.source.message_id.as_deref(),
                    message_row: h.message_row,
                };
                self.apply_pass(&coi, &facts, &link, &who, &b.now);
                let mut ev = event;
                ev.coi = Some(coi);
                let dest = cx.router.route(&ev);
                b.events.push(EventRow {
                    id: ev.event_id.hyphenated().to_string(),
                    ev: Cow::Owned(PreparedEvent::new(&ev, dest)),
                    message_row: h.message_row,
                });
                set_message_routed_if_done(conn, h.message_row, &b.now).await?;
                b.append_audit(AuditDraft::new(
                    actor,
                    "hold.released",
                    format!("hold:{}", h.id),
                    &json!({"event_id": h.event_id, "coi": ev.coi, "reason": operator_reason,
                            "held_for": h.reason}),
                ));
                Ok("released")
            }
            Verdict::Conflict {
                reason,
                disagreements,
            } => {
                let problem = conflict_problem(&reason, &disagreements);
                if !set_hold_state(
                    conn,
                    h.id,
                    "quarantined",
                    actor,
                    Some(&problem.reason),
                    &b.now,
                )
                .await?
                {
                    return Ok("settled");
                }
                let alert = alert_for(
                    &event,
                    "identity_conflict",
                    &problem.reason,
                    &disagreements,
                    &b.now,
                );
                b.events.push(EventRow {
                    id: alert.event_id.hyphenated().to_string(),
                    ev: Cow::Owned(PreparedEvent::new(&alert, cx.router.route(&alert))),
                    message_row: h.message_row,
                });
                // Like a conflict at intake: a dead letter an operator sees,
                // and the message done (dead when nothing of it went on).
                let first = b.now.clone();
                let dl = dead_letter_hold(conn, b, &h, IDENTITY_CONFLICT, &problem.reason, first)
                    .await?;
                set_message_routed_if_done(conn, h.message_row, &b.now).await?;
                b.append_audit(AuditDraft::new(
                    actor,
                    "hold.quarantined",
                    format!("hold:{}", h.id),
                    &json!({"event_id": h.event_id, "reason": reason, "dead_letter": dl}),
                ));
                Ok("quarantined")
            }
            Verdict::Hold { coi, reason } => {
                if reason.code() != h.reason {
                    let detail = match &reason {
                        HoldReason::OutOfSequence(w) => w.clone(),
                        HoldReason::UnknownIdentifiers => "identifiers not known yet".into(),
                    };
                    on_db!(&mut *conn, |c| {
                        sqlx::query(
                        "UPDATE holds SET reason = $1, detail = $2, coi = $3, deadline = NULL, updated_at = $4 \
                         WHERE id = $5 AND state = 'held'"
                    )
                    .bind(reason.code())
                    .bind(detail)
                    .bind(coi)
                    .bind(&b.now)
                    .bind(h.id)
                    .execute(c)
            .await
            .map(|r| r.rows_affected())
                    })?;
                }
                Ok("held")
            }
        }
    }

    /// A stored hold's event goes on: its therapy's milestones and state,
    /// and links for its keys not linked yet.
    fn apply_pass(
        &mut self,
        coi: &str,
        facts: &Facts,
        link: &[crate::registry::EventKey],
        who: &Asserter,
        now: &str,
    ) {
        if let Some(Some(t)) = self.therapies.get_mut(coi) {
            if !t.has(facts.kind) {
                t.milestones.push(facts.kind.to_string());
            }
            t.state = next_state(t.state, facts.kind);
            // As at intake: what the released event stated checks later ones.
            if t.name_index.is_none() {
                t.name_index = facts.name_index.clone();
            }
            if t.birth_date_index.is_none() {
                t.birth_date_index = facts.birth_date_index.clone();
            }
            if !self.new_therapies.iter().any(|n| n.coi == coi) {
                self.dirty.insert(coi.to_string());
            }
        }
        for k in link {
            let l = Link {
                coi: coi.to_string(),
                asserted_by: who.by.clone(),
                message_id: who.message_id.map(str::to_string),
                at: now.to_string(),
            };
            self.links.insert(k.key.clone(), Some(l.clone()));
            self.linked_now.push(k.key.clone());
            self.new_links.push(NewLink {
                key: k.key.clone(),
                kind: k.claimed.kind.as_str(),
                authority: k.claimed.authority.clone(),
                value: k.claimed.value.clone(),
                link: l,
                message_row: who.message_row,
            });
        }
    }

    /// Writes what the batch decided: therapies, links, holds, message
    /// statuses. Events (passed, released, alerts) go in with the batch's
    /// other events.
    pub(crate) async fn flush(&mut self, conn: &mut Conn, now: &str) -> Result<(), sqlx::Error> {
        let creates = std::mem::take(&mut self.new_therapies);
        for t in &creates {
            let th = self.therapy(&t.coi).cloned();
            let (state, milestones, ni, bi) = match &th {
                Some(th) => (
                    th.state.as_str(),
                    th.milestones.join(","),
                    th.name_index.clone(),
                    th.birth_date_index.clone(),
                ),
                None => ("active", String::new(), None, None),
            };
            on_db!(&mut *conn, |c| {
                sqlx::query(
                "INSERT INTO therapies (coi, product, order_id, state, milestones, name_sealed, \
                 birth_date_sealed, mrn_sealed, name_index, birth_date_index, message_row, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)"
            )
            .bind(&t.coi)
            .bind(t.product.as_deref())
            .bind(t.order_id.as_deref())
            .bind(state)
            .bind(milestones)
            .bind(t.sealed.name.as_deref())
            .bind(t.sealed.birth_date.as_deref())
            .bind(t.sealed.mrn.as_deref())
            .bind(ni)
            .bind(bi)
            .bind(t.message_row)
            .bind(now)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
            })?;
        }
        for coi in std::mem::take(&mut self.dirty) {
            let Some(th) = self.therapy(&coi).cloned() else {
                continue;
            };
            on_db!(&mut *conn, |c| {
                sqlx::query(
                "UPDATE therapies SET state = $1, milestones = $2, \
                 name_index = COALESCE(name_index, $3), birth_date_index = COALESCE(birth_date_index, $4), \
                 updated_at = $5 WHERE coi = $6"
            )
            .bind(th.state.as_str())
            .bind(th.milestones.join(","))
            .bind(th.name_index)
            .bind(th.birth_date_index)
            .bind(now)
            .bind(&coi)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
            })?;
        }
        let links = std::mem::take(&mut self.new_links);
        for chunk in links.chunks(64) {
            on_db!(&mut *conn, |c| {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO identifiers (key, kind, authority, value, coi, asserted_by, message_id, \
                     message_row, created_at) ",
                );
                qb.push_values(chunk, |mut r, l| {
                    r.push_bind(l.key.as_str())
                        .push_bind(l.kind)
                        .push_bind(l.authority.as_str())
                        .push_bind(l.value.as_str())
                        .push_bind(l.link.coi.as_str())
                        .push_bind(l.link.asserted_by.as_str())
                        .push_bind(l.link.message_id.as_deref())
                        .push_bind(l.message_row)
                        .push_bind(now);
                });
                qb.build().execute(&mut *c).await.map(|r| r.rows_affected())
            })?;
        }
        let holds = std::mem::take(&mut self.holds);
        if !holds.is_empty() {
            let ids = db::new_ids(conn, "holds", holds.len()).await?;
            for (h, id) in holds.iter().zip(&ids) {
                on_db!(&mut *conn, |c| {
                    sqlx::query(
                    "INSERT INTO holds (id, event_id, message_row, kind, coi, order_id, product, occurred_at, \
                     recorded_at, body, reason, detail, keys, state, deadline, created_at, updated_at, \
                     name_index, birth_date_index) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16, $17, $18)"
                )
                .bind(*id)
                .bind(&h.event_id)
                .bind(h.message_row)
                .bind(h.kind)
                .bind(h.coi.as_deref())
                .bind(h.order_id.as_deref())
                .bind(h.product.as_deref())
                .bind(&h.occurred_at)
                .bind(&h.recorded_at)
                .bind(&h.body)
                .bind(h.reason)
                .bind(&h.detail)
                .bind(serde_json::to_string(&h.keys).unwrap_or_else(|_| "[]".into()))
                .bind(h.state)
                .bind(h.deadline.as_deref())
                .bind(now)
                .bind(h.name_index.as_deref())
                .bind(h.birth_date_index.as_deref())
                .execute(c)
            .await
            .map(|r| r.rows_affected())
                })?;
                if h.state == "held" && h.reason == "unknown_identifiers" {
                    for k in &h.keys {
                        on_db!(&mut *conn, |c| {
                            sqlx::query(
                            "INSERT INTO hold_keys (key, hold_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
                        )
                        .bind(k)
                        .bind(*id)
                        .execute(c)
            .await
            .map(|r| r.rows_affected())
                        })?;
                    }
                }
            }
        }
        for row in std::mem::take(&mut self.held_messages) {
            on_db!(&mut *conn, |c| {
                sqlx::query(
                "UPDATE messages SET status = 'held', updated_at = $1 WHERE id = $2 AND status = 'routed'"
            )
            .bind(now)
            .bind(row)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
            })?;
        }
        for (row, p) in std::mem::take(&mut self.failed) {
            on_db!(&mut *conn, |c| sqlx::query(
                "UPDATE messages SET status = 'dead', error_code = $1, error = $2, stage = $3, \
                 updated_at = $4 WHERE id = $5"
            )
            .bind(p.code)
            .bind(&p.reason)
            .bind(p.stage.as_str())
            .bind(now)
            .bind(row)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    /// Moves the events this module made into the batch's event rows.
    pub(crate) fn move_made(&mut self, b: &mut Batch<'_>) {
        for (ev, message_row) in std::mem::take(&mut self.made) {
            b.events.push(EventRow {
                id: ev.event_id.hyphenated().to_string(),
                ev: Cow::Owned(ev),
                message_row,
            });
        }
    }
}

/// The columns of a stored hold, as [`StoredHold`] reads them.
pub(crate) const HOLD_COLUMNS: &str =
    "h.id, h.event_id, h.message_row, h.coi, h.body, h.reason, h.keys, h.state, h.name_index, \
     h.birth_date_index, h.created_at";

/// A hold as stored, for re-evaluation and operator actions.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StoredHold {
    pub id: i64,
    pub event_id: String,
    pub message_row: i64,
    pub coi: Option<String>,
    pub body: String,
    pub reason: String,
    pub keys: String,
    pub state: String,
    pub name_index: Option<String>,
    pub birth_date_index: Option<String>,
    pub created_at: String,
}

/// A settled hold's dead letter (stage `identity`, `code`, `reason`), and
/// its message dead when nothing else of it is held or went on. Returns the
/// dead letter's id.
pub(crate) async fn dead_letter_hold(
    conn: &mut Conn,
    b: &mut Batch<'_>,
    h: &StoredHold,
    code: &'static str,
    reason: &str,
    first_attempt_at: String,
) -> Result<i64, sqlx::Error> {
    let dl = b.dead_letter_id(conn).await?;
    b.dead.push(DeadRow {
        id: dl,
        message_row: h.message_row,
        event_id: None,
        outbox_id: None,
        route: None,
        sink: None,
        routing_key: None,
        coi: h.coi.clone(),
        stage: Stage::Identity.as_str(),
        class: crate::error::ErrorClass::Permanent,
        code,
        reason: Cow::Owned(reason.to_string()),
        attempts: 1,
        first_attempt_at,
        broker_key: None,
    });
    on_db!(&mut *conn, |c| {
        sqlx::query(
        "UPDATE messages SET status = 'dead', error_code = $1, error = $2, stage = $3, updated_at = $4 \
         WHERE id = $5 AND status = 'held' \
         AND NOT EXISTS (SELECT 1 FROM holds WHERE message_row = $5 AND state = 'held') \
         AND NOT EXISTS (SELECT 1 FROM events WHERE message_row = $5)"
    )
    .bind(code)
    .bind(reason)
    .bind(Stage::Identity.as_str())
    .bind(&b.now)
    .bind(h.message_row)
    .execute(c)
    .await
    .map(|r| r.rows_affected())
    })?;
    Ok(dl)
}

/// Settles a hold (released, rejected, expired, quarantined) if it is
/// still held: it waits on no key any more. False when it was settled
/// already (by another instance, an operator or the clock, whose
/// transaction this one waited for): the caller does nothing then.
pub(crate) async fn set_hold_state(
    conn: &mut Conn,
    id: i64,
    state: &str,
    actor: &str,
    resolution: Option<&str>,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let settled = on_db!(&mut *conn, |c| {
        sqlx::query(
            "UPDATE holds SET state = $1, resolved_by = $2, resolution = $3, updated_at = $4 \
         WHERE id = $5 AND state = 'held'",
        )
        .bind(state)
        .bind(actor)
        .bind(resolution)
        .bind(now)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    if settled == 0 {
        return Ok(false);
    }
    on_db!(&mut *conn, |c| sqlx::query(
        "DELETE FROM hold_keys WHERE hold_id = $1"
    )
    .bind(id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(true)
}

/// A message whose last held event went on is `routed`.
pub(crate) async fn set_message_routed_if_done(
    conn: &mut Conn,
    row: i64,
    now: &str,
) -> Result<(), sqlx::Error> {
    on_db!(&mut *conn, |c| sqlx::query(
        "UPDATE messages SET status = 'routed', updated_at = $1 WHERE id = $2 AND status = 'held' \
         AND NOT EXISTS (SELECT 1 FROM holds WHERE message_row = $2 AND state = 'held')"
    )
    .bind(now)
    .bind(row)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The identifier a stored key stands for (an MRN's value stays hidden).
fn claimed_of_key(key: &str) -> crate::registry::Claimed {
    let mut parts = key.splitn(3, '|');
    let kind = parts.next().and_then(crate::registry::IdKind::parse);
    let authority = parts.next().unwrap_or_default();
    let value = parts.next().unwrap_or_default();
    match kind {
        Some(k) if k.is_phi() => crate::registry::Claimed::new(k, authority, ""),
        Some(k) => crate::registry::Claimed::new(k, authority, value),
        None => crate::registry::Claimed::new(crate::registry::IdKind::Order, authority, value),
    }
}

/// The event carrying `coi`: as prepared when that is its COI already,
/// else re-serialised (and re-routed: a routing key may name the COI).
fn with_coi(ev: &PreparedEvent, coi: Option<String>) -> Cow<'_, PreparedEvent> {
    match (&ev.identity, coi) {
        (Some(id), Some(c)) if ev.coi.as_deref() != Some(c.as_str()) => {
            // The writer is the serial stage: splice the COI into the body
            // the hub serialised, unless a routing key depends on it.
            if !id.cx.router.keys_on_coi() {
                if let Some(body) = ev.body_with_coi(&c) {
                    return Cow::Owned(PreparedEvent {
                        event_id: ev.event_id,
                        kind: ev.kind,
                        coi: Some(c),
                        order_id: ev.order_id.clone(),
                        product: ev.product.clone(),
                        occurred_at: ev.occurred_at,
                        recorded_at: ev.recorded_at,
                        body,
                        destinations: ev.destinations.clone(),
                        identity: None,
                        coi_at: None,
                    });
                }
            }
            let Some(mut e) = event_of(ev) else {
                return Cow::Borrowed(ev);
            };
            e.coi = Some(c);
            let dest = id.cx.router.route(&e);
            Cow::Owned(PreparedEvent::new(&e, dest))
        }
        _ => Cow::Borrowed(ev),
    }
}

fn hold_row(
    ev: &PreparedEvent,
    message_row: i64,
    reason: &'static str,
    detail: &str,
    state: &'static str,
    deadline: Option<String>,
) -> HoldRow {
    HoldRow {
        event_id: ev.event_id.hyphenated().to_string(),
        message_row,
        kind: ev.kind,
        coi: ev.coi.clone(),
        order_id: ev.order_id.clone(),
        product: ev.product.clone(),
        occurred_at: time::fmt(ev.occurred_at),
        recorded_at: time::fmt(ev.recorded_at),
        body: ev.body.clone(),
        reason,
        detail: detail.to_string(),
        keys: ev
            .identity
            .as_deref()
            .map(|i| {
                let mut keys: Vec<String> = i.facts.keys.iter().map(|k| k.key.clone()).collect();
                keys.extend(i.facts.coi.as_deref().map(coi_key));
                keys
            })
            .unwrap_or_default(),
        name_index: ev
            .identity
            .as_deref()
            .and_then(|i| i.facts.name_index.clone()),
        birth_date_index: ev
            .identity
            .as_deref()
            .and_then(|i| i.facts.birth_date_index.clone()),
        state,
        deadline,
    }
}

/// The hold key that stands for a COI: "linked" when the COI's order
/// registers it, so an event that named only its COI is released then.
pub(crate) fn coi_key(coi: &str) -> String {
    format!("coi||{coi}")
}

fn unknown_detail(id: &EventIdentity) -> String {
    let ids: Vec<String> = id.facts.keys.iter().map(|k| k.claimed.display()).collect();
    match (&id.facts.coi, ids.is_empty()) {
        (Some(c), _) => format!("COI {c} has no registered order yet"),
        (None, true) => "the event names no identifier the registry could link".into(),
        (None, false) => format!("no registered therapy knows {}", ids.join(", ")),
    }
}

fn deadline(now: &str, timeout: chrono::Duration) -> String {
    let now: DateTime<Utc> = time::parse("holds", now).unwrap_or_else(|_| Utc::now());
    // `serve` bounds the timeout; no overflow may stop the writer anyway.
    time::fmt(now.checked_add_signed(timeout).unwrap_or(now))
}

fn conflict_problem(reason: &str, disagreements: &[Disagreement]) -> Problem {
    let mut text = format!("identity conflict: {reason}");
    for d in disagreements {
        match &d.link {
            Some(l) => text.push_str(&format!(
                "; {} belongs to {} (linked by {}{} at {})",
                d.identifier,
                d.coi,
                l.asserted_by,
                l.message_id
                    .as_deref()
                    .map(|m| format!(" message {m}"))
                    .unwrap_or_default(),
                l.at
            )),
            None => text.push_str(&format!("; the message states COI {}", d.coi)),
        }
    }
    Problem::new(Stage::Identity, IDENTITY_CONFLICT, text)
}

/// An `alert.raised` about `about`, from the same source.
pub(crate) fn alert_for(
    about: &TherapyEvent,
    alert: &str,
    message: &str,
    disagreements: &[Disagreement],
    now: &str,
) -> TherapyEvent {
    let at: DateTime<Utc> = time::parse("holds", now).unwrap_or_else(|_| Utc::now());
    let cois: BTreeSet<&str> = disagreements.iter().map(|d| d.coi.as_str()).collect();
    TherapyEvent {
        schema: (),
        event_id: TherapyEvent::new_id(),
        data: EventData::AlertRaised(AlertRaised {
            alert: alert.to_string(),
            severity: "critical".into(),
            message: message.to_string(),
            related_event_id: Some(about.event_id.hyphenated().to_string()),
            deadline: None,
            tracking_number: None,
            links: disagreements
                .iter()
                .map(|d| AlertLink {
                    identifier: d.identifier.clone(),
                    coi: d.coi.clone(),
                    linked_by: d.link.as_ref().map(|l| l.asserted_by.clone()),
                    linked_by_message: d.link.as_ref().and_then(|l| l.message_id.clone()),
                    linked_at: d.link.as_ref().map(|l| l.at.clone()),
                })
                .collect(),
        }),
        // One COI only when the alert is about one chain.
        coi: (cois.len() == 1).then(|| cois.into_iter().next().unwrap_or_default().to_string()),
        order_id: about.order_id.clone(),
        product: about.product.clone(),
        occurred_at: at,
        recorded_at: at,
        source: about.source.clone(),
        claims: Default::default(),
    }
}

/// The index key fingerprint this store's registry was hashed with: the
/// first hub records its own; later ones get the recorded one back.
pub(crate) async fn index_key(
    conn: &mut Conn,
    fingerprint: &str,
    now: &str,
) -> Result<Result<super::ops::Answer, super::StoreError>, sqlx::Error> {
    on_db!(&mut *conn, |c| {
        sqlx::query(
        "INSERT INTO registry_keys (id, fingerprint, created_at) VALUES (1, $1, $2) ON CONFLICT DO NOTHING"
    )
    .bind(fingerprint)
    .bind(now)
    .execute(c)
    .await
    .map(|r| r.rows_affected())
    })?;
    let recorded: String = on_db!(&mut *conn, |c| sqlx::query_scalar(
        "SELECT fingerprint FROM registry_keys WHERE id = 1"
    )
    .fetch_one(c)
    .await)?;
    Ok(Ok(super::ops::Answer::Text(recorded)))
}

/// PostgreSQL: takes a transaction-scoped advisory lock per key (and per
/// COI, as its hold key) before reading it, so that two instances deciding
/// about one identifier take turns: one holding an event for a specimen
/// while the other links that specimen would otherwise each miss the
/// other's uncommitted row, and the hold would wait for a link that has
/// already come. SQLite's single writer needs none.
async fn lock_keys(conn: &mut Conn, keys: &[&str], cois: &[&str]) -> Result<(), sqlx::Error> {
    let super::db::Db::Pg(c) = conn else {
        return Ok(());
    };
    let names: Vec<String> = keys
        .iter()
        .map(|k| k.to_string())
        .chain(cois.iter().map(|c| coi_key(c)))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    // In one order everywhere (by hash), so that two batches cannot wait
    // on each other; a deadlock all the same is retried by the writer.
    sqlx::query(
        "SELECT COUNT(pg_advisory_xact_lock(h)) FROM \
         (SELECT DISTINCT hashtextextended(k, 5) AS h FROM unnest($1::text[]) AS k ORDER BY 1) s",
    )
    .bind(&names)
    .execute(&mut *c)
    .await?;
    Ok(())
}
