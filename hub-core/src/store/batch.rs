//! One group commit's worth of writes, inside the writer's transaction.
//!
//! Messages are inserted first, all at once (`INSERT … ON CONFLICT DO
//! NOTHING`), with ids taken here (see [`db::new_ids`]): which of those ids
//! exist afterwards tells which rows a dedup conflict skipped, also when
//! both copies of a message are in the same statement. Then every request is handled in arrival
//! order, collecting rows; the rows go in with a few multi-row statements
//! (see [`insert`](super::insert)); repeats are answered last, from the
//! original rows.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::QueryBuilder;

use super::audit::{self, AuditDraft, AuditHead, AuditRow};
use super::db::{self, on_db, Conn};
use super::insert::{self, DeadRow, EventRow};
use super::ops::{mismatch, Answer, Request};
use super::records::{IntakeOutcome, IntakeRecord, MessageStatus};
use super::registry::{Asserter, EventIdentity, Judged, Registry};
use super::{broker, dlq_write, holds, registry, time, StoreError};
use crate::error::{ErrorClass, Stage};
use crate::inbound::{Outcome, Problem, Receipt, ResourceWrite};

/// Audit actor for what the store records on its own.
pub(crate) const SYSTEM: &str = "system";

/// The answers to a batch (in request order) and the audit head after it.
pub(crate) struct Applied {
    pub answers: Vec<Result<Answer, StoreError>>,
    pub head: AuditHead,
}

/// Per-request answers; an outer `Err` aborts the transaction.
pub(crate) type Answered = Result<Result<Answer, StoreError>, sqlx::Error>;

/// Runs every request inside the already open transaction. An `Err` means
/// the transaction must be rolled back; per-request problems that need no
/// rollback (a missing outbox row) are answered in `Applied::answers`.
pub(crate) async fn apply(
    conn: &mut Conn,
    reqs: &[&Request],
    head: &AuditHead,
) -> Result<Applied, sqlx::Error> {
    let mut b = Batch {
        now: time::fmt(Utc::now()),
        head: head.clone(),
        events: Vec::new(),
        dead: Vec::new(),
        audit: Vec::new(),
        delivered: Vec::new(),
        dead_next: None,
        broker_keys: HashMap::new(),
        registry: Registry::default(),
        resources: Vec::new(),
    };
    let intakes: Vec<(usize, &IntakeRecord)> = reqs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            Request::Intake(rec) => Some((i, rec)),
            _ => None,
        })
        .collect();
    let ids = db::new_ids(conn, "messages", intakes.len()).await?;
    let inserted = insert::insert_messages(conn, &intakes, &ids, &b.now).await?;
    // What the batch's events name in the identity registry, read at once.
    let identities: Vec<&EventIdentity> = intakes
        .iter()
        .filter_map(|(_, rec)| match &rec.outcome {
            IntakeOutcome::Events(evs) => Some(evs),
            _ => None,
        })
        .flatten()
        .filter_map(|ev| ev.identity.as_deref())
        .collect();
    let registry_cx = identities.first().map(|i| Arc::clone(&i.cx)).or_else(|| {
        reqs.iter().find_map(|r| match r {
            Request::ReleaseHold { cx, .. } | Request::ExpireHolds { cx, .. } => {
                Some(Arc::clone(cx))
            }
            _ => None,
        })
    });
    if !identities.is_empty() {
        b.registry.load_for(conn, &identities).await?;
    }

    let mut answers: Vec<Option<Result<Answer, StoreError>>> = reqs.iter().map(|_| None).collect();
    let mut duplicates: Vec<(usize, &IntakeRecord)> = Vec::new();
    let mut intake_no = 0usize;
    for (i, req) in reqs.iter().copied().enumerate() {
        answers[i] = Some(match req {
            Request::Intake(rec) => {
                let row = ids[intake_no];
                let fresh = inserted.get(intake_no).copied().unwrap_or(false);
                intake_no += 1;
                if !fresh {
                    duplicates.push((i, rec));
                    continue;
                }
                Ok(Answer::Receipt(b.fresh_intake(conn, rec, row).await?))
            }
            Request::Delivered(ids) => {
                b.delivered.extend_from_slice(ids);
                Ok(Answer::Done)
            }
            Request::RetryLater {
                outbox_id,
                attempts,
                next_attempt_at,
                error,
            } => retry_later(conn, *outbox_id, *attempts, *next_attempt_at, error).await?,
            Request::DeadLetterDelivery {
                outbox_id,
                attempts,
                class,
                code,
                error,
            } => {
                b.dead_letter_delivery(conn, *outbox_id, *attempts, *class, code, error)
                    .await?
            }
            Request::Audit(d) => Ok(Answer::Id(b.append_audit(d.clone()))),
            Request::ReplayMessage {
                dead_letter,
                actor,
                outcome,
            } => dlq_write::replay_message(conn, &mut b, *dead_letter, actor, outcome).await?,
            Request::ReplayDelivery { dead_letter, actor } => {
                dlq_write::replay_delivery(conn, &mut b, *dead_letter, actor).await?
            }
            Request::ReplayConsumed {
                dead_letter,
                actor,
                target,
            } => dlq_write::replay_consumed(conn, &mut b, *dead_letter, actor, *target).await?,
            Request::Purge {
                dead_letter,
                actor,
                reason,
            } => dlq_write::purge(conn, &mut b, *dead_letter, actor, reason).await?,
            Request::BrokerDead(d) => broker::ingest(conn, &mut b, d).await?,
            Request::ReleaseHold {
                hold,
                actor,
                reason,
                cx,
            } => holds::release(conn, &mut b, *hold, actor, reason, cx).await?,
            Request::RejectHold {
                hold,
                actor,
                reason,
            } => holds::reject(conn, &mut b, *hold, actor, reason).await?,
            Request::ExpireHolds { cx, limit } => holds::expire(conn, &mut b, cx, *limit).await?,
            Request::IndexKey(fingerprint) => {
                registry::index_key(conn, fingerprint, &b.now).await?
            }
        });
    }

    // Registry rows first (the holds a link may release must be in the
    // table), then the holds this batch's links release, then their rows.
    let mut registry = std::mem::take(&mut b.registry);
    registry.flush(conn, &b.now).await?;
    registry
        .release_linked(conn, &mut b, registry_cx.as_ref())
        .await?;
    registry.flush(conn, &b.now).await?;
    registry.move_made(&mut b);
    insert::insert_events(conn, &b.events, &b.now).await?;
    write_resources(conn, &b.resources, &b.now).await?;
    insert::insert_dead_letters(conn, &b.dead, &b.now).await?;
    insert::mark_delivered(conn, &b.delivered, &b.now).await?;
    if !b.audit.is_empty() {
        // Another process (an instance on the same PostgreSQL, a CLI
        // command on the same SQLite file) may have appended since this
        // writer read its head: re-chain this batch's records after the
        // real head, under a lock that keeps it real until COMMIT.
        db::lock_audit_chain(conn).await?;
        let real = AuditHead::load(conn).await?;
        if real != *head {
            let shift = real.last_id - head.last_id;
            b.head = real;
            let rows = std::mem::take(&mut b.audit);
            for row in rows {
                b.append_audit(row.draft);
            }
            for (req, answer) in reqs.iter().zip(answers.iter_mut()) {
                if let (Request::Audit(_), Some(Ok(Answer::Id(id)))) = (req, answer) {
                    *id += shift;
                }
            }
        }
        audit::insert(conn, &b.audit).await?;
    }
    for (i, rec) in duplicates {
        answers[i] = Some(duplicate_receipt(conn, rec).await?);
    }
    let answers = answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(mismatch("batch"))))
        .collect();
    Ok(Applied {
        answers,
        head: b.head,
    })
}

/// Rows collected while the batch's requests are handled.
pub(crate) struct Batch<'a> {
    /// The batch's timestamp (created_at, updated_at, audit `at`).
    pub now: String,
    /// Working copy of the audit chain head.
    head: AuditHead,
    pub events: Vec<EventRow<'a>>,
    pub dead: Vec<DeadRow<'a>>,
    audit: Vec<AuditRow>,
    delivered: Vec<i64>,
    /// Next dead letter id (SQLite), read on first use.
    dead_next: Option<i64>,
    /// Broker dead letters of this batch by idempotency key (their rows are
    /// not inserted yet, so the unique index cannot tell).
    pub broker_keys: HashMap<String, i64>,
    /// The identity registry as this batch sees and changes it.
    pub(crate) registry: Registry,
    /// Resources written by accepted messages, with their message rows.
    resources: Vec<(i64, &'a ResourceWrite)>,
}

impl<'a> Batch<'a> {
    pub(crate) fn append_audit(&mut self, draft: AuditDraft) -> i64 {
        let row = self.head.append(&self.now, draft);
        let id = row.id;
        self.audit.push(row);
        id
    }

    pub(crate) async fn dead_letter_id(&mut self, conn: &mut Conn) -> Result<i64, sqlx::Error> {
        let id = match self.dead_next {
            Some(id) => id,
            None => db::new_ids(conn, "dead_letters", 1).await?[0],
        };
        // SQLite: the next ones follow (the write lock is ours); PostgreSQL:
        // each from the sequence.
        self.dead_next = (!conn.is_postgres()).then_some(id + 1);
        Ok(id)
    }

    /// Events (and their outbox rows) for a routed message; a dead letter
    /// and an audit record for a failed or rejected one.
    async fn fresh_intake(
        &mut self,
        conn: &mut Conn,
        rec: &'a IntakeRecord,
        row: i64,
    ) -> Result<Receipt, sqlx::Error> {
        let (problem, rejected, conflict): (Cow<'_, Problem>, bool, bool) = match &rec.outcome {
            IntakeOutcome::Events(evs) if evs.iter().any(|e| e.identity.is_some()) => {
                let i = &rec.inbound;
                let who = Asserter {
                    by: format!("{}/{}", i.connector, i.partner),
                    message_id: i.message_id.as_deref(),
                    message_row: row,
                };
                match self.registry.judge_message(evs, &who, &self.now) {
                    Judged::Events { pass, held } => {
                        let outcome = Outcome::Accepted { events: pass.len() };
                        self.events.extend(pass.into_iter().map(|ev| EventRow {
                            id: ev.event_id.hyphenated().to_string(),
                            ev,
                            message_row: row,
                        }));
                        self.resources
                            .extend(rec.inbound.resources.iter().map(|r| (row, r)));
                        let mut r = receipt(row, outcome, false);
                        r.held = held;
                        return Ok(r);
                    }
                    Judged::Conflict { problem } => (Cow::Owned(problem), false, true),
                }
            }
            IntakeOutcome::Events(evs) => {
                self.events.extend(evs.iter().map(|ev| EventRow {
                    ev: Cow::Borrowed(ev),
                    id: ev.event_id.hyphenated().to_string(),
                    message_row: row,
                }));
                self.resources
                    .extend(rec.inbound.resources.iter().map(|r| (row, r)));
                let outcome = Outcome::Accepted { events: evs.len() };
                return Ok(receipt(row, outcome, false));
            }
            IntakeOutcome::Failed(p) => (Cow::Borrowed(p), false, false),
            IntakeOutcome::Rejected(p) => (Cow::Borrowed(p), true, false),
        };
        let dl = self.dead_letter_id(conn).await?;
        self.dead.push(DeadRow {
            id: dl,
            message_row: row,
            event_id: None,
            outbox_id: None,
            route: None,
            sink: None,
            routing_key: None,
            coi: None,
            stage: problem.stage.as_str(),
            class: ErrorClass::Permanent,
            code: problem.code,
            reason: Cow::Owned(problem.reason.clone()),
            attempts: 1,
            first_attempt_at: time::fmt(rec.inbound.received_at),
            broker_key: None,
        });
        let i = &rec.inbound;
        let detail = json!({
            "connector": i.connector, "partner": i.partner, "message_id": i.message_id,
            "stage": problem.stage.as_str(), "code": problem.code, "dead_letter": dl,
        });
        let (action, outcome) = if rejected {
            (
                "message.rejected",
                Outcome::Rejected(problem.reason.clone()),
            )
        } else {
            (
                "message.dead_lettered",
                Outcome::Failed(problem.reason.clone()),
            )
        };
        self.append_audit(AuditDraft::new(
            SYSTEM,
            action,
            format!("message:{row}"),
            &detail,
        ));
        let mut r = receipt(row, outcome, false);
        if conflict {
            r.problem = Some(problem.into_owned());
        }
        Ok(r)
    }

    /// Outbox row → dead, plus a dead letter and an audit record. When an
    /// operator had replayed this row's dead letter, that one reopens (its
    /// chain goes on) instead of a second one being made.
    async fn dead_letter_delivery(
        &mut self,
        conn: &mut Conn,
        outbox_id: i64,
        attempts: u32,
        class: ErrorClass,
        code: &'static str,
        error: &'a str,
    ) -> Answered {
        type Found = (String, String, String, String, String, Option<String>, i64);
        let found: Option<Found> = on_db!(&mut *conn, |c| {
            sqlx::query_as(
            "SELECT o.event_id, o.route, o.sink, o.routing_key, o.created_at, e.coi, e.message_row \
             FROM outbox o JOIN events e ON e.event_id = o.event_id \
             WHERE o.id = $1 AND o.state = 'pending'",
        )
        .bind(outbox_id)
        .fetch_optional(c)
        .await
        })?;
        let Some((event_id, route, sink, routing_key, created_at, coi, message_row)) = found else {
            return Ok(Err(not_pending("dead_letter_delivery", outbox_id)));
        };
        on_db!(&mut *conn, |c| sqlx::query(
            "UPDATE outbox SET state = 'dead', attempts = $1, last_error = $2, \
             lease_owner = NULL, lease_until = NULL WHERE id = $3"
        )
        .bind(i64::from(attempts))
        .bind(error)
        .bind(outbox_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))?;
        let reopened =
            dlq_write::reopen_delivery(conn, self, outbox_id, attempts, class, code, error).await?;
        let dl = match reopened {
            Some(id) => id,
            None => self.dead_letter_id(conn).await?,
        };
        let detail = json!({
            "event_id": event_id, "route": route, "sink": sink,
            "class": class.as_str(), "code": code, "attempts": attempts, "dead_letter": dl,
            "reopened": reopened.is_some(),
        });
        let subject = format!("outbox:{outbox_id}");
        self.append_audit(AuditDraft::new(
            SYSTEM,
            "delivery.dead_lettered",
            subject,
            &detail,
        ));
        if reopened.is_none() {
            self.dead.push(DeadRow {
                id: dl,
                message_row,
                event_id: Some(event_id),
                outbox_id: Some(outbox_id),
                route: Some(route),
                sink: Some(sink),
                routing_key: Some(routing_key).filter(|k| !k.is_empty()),
                coi,
                stage: Stage::Deliver.as_str(),
                class,
                code,
                reason: Cow::Borrowed(error),
                attempts: i64::from(attempts),
                first_attempt_at: created_at,
                broker_key: None,
            });
        }
        Ok(Ok(Answer::Id(dl)))
    }
}

fn receipt(message_row: i64, outcome: Outcome, duplicate: bool) -> Receipt {
    Receipt {
        message_row,
        outcome,
        duplicate,
        held: 0,
        problem: None,
    }
}

fn not_pending(op: &'static str, outbox_id: i64) -> StoreError {
    StoreError::NotFound {
        op,
        what: format!("pending outbox row {outbox_id}"),
    }
}

/// Keeps the resources accepted messages wrote: each replaces the one of
/// its type and id (its version is the writing message's row), and its
/// identifiers point at it from now on. Multi-row statements: a statement
/// costs a round trip to the database's thread, and a Bundle writes several
/// resources. Within the batch the last write of a key wins (PostgreSQL
/// refuses one statement that updates a row twice).
async fn write_resources(
    conn: &mut Conn,
    rows: &[(i64, &ResourceWrite)],
    now: &str,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut latest: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, (_, r)) in rows.iter().enumerate() {
        latest.insert((r.resource_type.as_str(), r.id.as_str()), i);
    }
    let resources: Vec<(i64, &ResourceWrite)> = rows
        .iter()
        .enumerate()
        .filter(|(i, (_, r))| latest[&(r.resource_type.as_str(), r.id.as_str())] == *i)
        .map(|(_, r)| *r)
        .collect();
    let mut owner: HashMap<(&str, &str, &str), &str> = HashMap::new();
    let mut order: Vec<(&str, &str, &str)> = Vec::new();
    for (_, r) in rows {
        for (system, value) in &r.identifiers {
            let key = (r.resource_type.as_str(), system.as_str(), value.as_str());
            if owner.insert(key, r.id.as_str()).is_none() {
                order.push(key);
            }
        }
    }
    let identifiers: Vec<((&str, &str, &str), &str)> =
        order.into_iter().map(|k| (k, owner[&k])).collect();
    on_db!(conn, |c| {
        for chunk in resources.chunks(64) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO fhir_resources (resource_type, id, version, message_row, body, updated_at) ",
            );
            qb.push_values(chunk, |mut b, (row, r)| {
                b.push_bind(r.resource_type.as_str())
                    .push_bind(r.id.as_str())
                    .push_bind(*row)
                    .push_bind(*row)
                    .push_bind(r.body.as_str())
                    .push_bind(now);
            });
            qb.push(
                " ON CONFLICT (resource_type, id) DO UPDATE SET version = excluded.version, \
                 message_row = excluded.message_row, body = excluded.body, \
                 updated_at = excluded.updated_at",
            );
            qb.build().execute(&mut *c).await?;
        }
        for chunk in identifiers.chunks(128) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO fhir_identifiers (resource_type, system, value, id) ",
            );
            qb.push_values(chunk, |mut b, ((ty, system, value), id)| {
                b.push_bind(*ty)
                    .push_bind(*system)
                    .push_bind(*value)
                    .push_bind(*id);
            });
            qb.push(" ON CONFLICT (resource_type, system, value) DO UPDATE SET id = excluded.id");
            qb.build().execute(&mut *c).await?;
        }
        Ok::<(), sqlx::Error>(())
    })
}

/// Reschedules a pending row; a row no longer pending is not resurrected.
async fn retry_later(
    conn: &mut Conn,
    outbox_id: i64,
    attempts: u32,
    next_attempt_at: DateTime<Utc>,
    error: &str,
) -> Answered {
    // The claim ends with the attempt: whichever instance is free when the
    // row comes due takes it.
    let affected = on_db!(conn, |c| sqlx::query(
        "UPDATE outbox SET attempts = $1, next_attempt_at = $2, last_error = $3, \
         lease_until = NULL WHERE id = $4 AND state = 'pending'",
    )
    .bind(i64::from(attempts))
    .bind(time::fmt(next_attempt_at))
    .bind(error)
    .bind(outbox_id)
    .execute(c)
    .await?
    .rows_affected());
    Ok(match affected {
        1 => Ok(Answer::Done),
        _ => Err(not_pending("retry_later", outbox_id)),
    })
}

/// The receipt for a repeat: the original's row id and outcome.
async fn duplicate_receipt(conn: &mut Conn, rec: &IntakeRecord) -> Answered {
    let i = &rec.inbound;
    let original: Option<(i64, String, Option<String>, i64)> = on_db!(conn, |c| {
        sqlx::query_as(
        "SELECT m.id, m.status, m.error, (SELECT COUNT(*) FROM events e WHERE e.message_row = m.id) \
         FROM messages m WHERE m.connector = $1 AND m.partner = $2 AND m.message_id = $3 \
         AND m.status NOT IN ('dead', 'rejected')",
    )
    .bind(i.connector)
    .bind(i.partner.as_str())
    .bind(i.message_id.as_deref())
    .fetch_optional(c)
    .await
    })?;
    let Some((id, status, error, events)) = original else {
        return Ok(Err(StoreError::Corrupt {
            table: "messages",
            detail: format!(
                "{} conflicted but is not stored",
                super::ops::message_subject(rec)
            ),
        }));
    };
    let error = error.unwrap_or_default();
    let outcome = match MessageStatus::parse(&status) {
        Ok(MessageStatus::Dead) => Outcome::Failed(error),
        Ok(MessageStatus::Rejected) => Outcome::Rejected(error),
        Ok(_) => Outcome::Accepted {
            events: usize::try_from(events).unwrap_or(0),
        },
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(Answer::Receipt(receipt(id, outcome, true))))
}
