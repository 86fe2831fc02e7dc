//! Replays and purges of dead letters, inside the writer's transaction.
//!
//! Each one first re-reads the dead letter under the write lock (an
//! operator's view may be stale: another replay, a purge, a resend may have
//! come first), changes what it must, appends a link to the dead letter's
//! error chain (`dead_letter_history`) and an audit record. What it cannot
//! do is answered [`DlqOutcome::Refused`] and changes nothing.

use super::db::{on_db, Conn};
use serde_json::json;

use super::audit::AuditDraft;
use super::batch::{Answered, Batch, SYSTEM};
use super::dlq_records::{DeadLetterStatus, DlqOutcome, STAGE_CONSUME};
use super::insert::EventRow;
use super::ops::Answer;
use super::records::{IntakeOutcome, MessageStatus, PreparedEvent};
use super::registry::{Asserter, EventIdentity, Judged};
use crate::error::{ErrorClass, Stage};
use std::borrow::Cow;

/// Stages whose dead letters are replayed by processing the stored message
/// again (the bytes are the whole message; a mapping or parser may have
/// been fixed since).
pub const MESSAGE_STAGES: &[&str] = &["decode", "parse", "map", "identity"];

/// A dead letter as the writer sees it before acting on it.
struct State {
    status: String,
    stage: String,
    code: String,
    message_row: i64,
    outbox_id: Option<i64>,
    event_id: Option<String>,
    connector: String,
    partner: String,
    message_id: Option<String>,
}

/// The dead letter's state. On PostgreSQL its row stays locked until the
/// transaction ends, so that two instances replaying or purging the same
/// dead letter at once take turns, and the second sees what the first did.
async fn state(conn: &mut Conn, id: i64) -> Result<Option<State>, sqlx::Error> {
    type Row = (
        String,
        String,
        String,
        i64,
        Option<i64>,
        Option<String>,
        String,
        String,
        Option<String>,
    );
    const SQL: &str = "SELECT d.status, d.stage, d.code, d.message_row, d.outbox_id, d.event_id, \
         m.connector, m.partner, m.message_id FROM dead_letters d \
         JOIN messages m ON m.id = d.message_row WHERE d.id = $1";
    let sql = if conn.is_postgres() {
        format!("{SQL} FOR UPDATE OF d")
    } else {
        SQL.to_string()
    };
    let row: Option<Row> = on_db!(&mut *conn, |c| sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(c)
        .await)?;
    Ok(row.map(
        |(
            status,
            stage,
            code,
            message_row,
            outbox_id,
            event_id,
            connector,
            partner,
            message_id,
        )| {
            State {
                status,
                stage,
                code,
                message_row,
                outbox_id,
                event_id,
                connector,
                partner,
                message_id,
            }
        },
    ))
}

fn answer(o: DlqOutcome) -> Answered {
    Ok(Ok(Answer::Dlq(o)))
}

/// The dead letter's state when it is open; otherwise the answer to give
/// (not found, or why it cannot be acted on).
async fn open_state(conn: &mut Conn, id: i64) -> Result<Result<State, DlqOutcome>, sqlx::Error> {
    let Some(st) = state(conn, id).await? else {
        return Ok(Err(DlqOutcome::NotFound));
    };
    Ok(match not_open(id, &st) {
        Some(refusal) => Err(refusal),
        None => Ok(st),
    })
}

/// Why a dead letter in `st` cannot be acted on, if it cannot.
fn not_open(id: i64, st: &State) -> Option<DlqOutcome> {
    (st.status != DeadLetterStatus::Open.as_str())
        .then(|| DlqOutcome::refused(format!("dead letter {id} is {}, not open", st.status)))
}

/// Appends a link to a dead letter's error chain.
pub(crate) async fn history(
    conn: &mut Conn,
    dead_letter: i64,
    at: &str,
    actor: &str,
    action: &str,
    code: Option<&str>,
    note: &str,
) -> Result<(), sqlx::Error> {
    on_db!(&mut *conn, |c| sqlx::query(
        "INSERT INTO dead_letter_history (dead_letter, at, actor, action, code, note) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(dead_letter)
    .bind(at)
    .bind(actor)
    .bind(action)
    .bind(code)
    .bind(note)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Marks an open dead letter replayed by `actor`; `processed` counts the
/// replay as an attempt (the message was processed again, now), while a
/// delivery's attempts are the relay's to count.
async fn mark_replayed(
    conn: &mut Conn,
    id: i64,
    now: &str,
    actor: &str,
    processed: bool,
) -> Result<(), sqlx::Error> {
    on_db!(&mut *conn, |c| sqlx::query(
        "UPDATE dead_letters SET status = 'replayed', replayed_at = $1, replayed_by = $2, \
         attempts = attempts + $3, last_attempt_at = CASE WHEN $4 THEN $5 ELSE last_attempt_at END \
         WHERE id = $6 AND status = 'open'",
    )
    .bind(now)
    .bind(actor)
    .bind(i64::from(processed))
    .bind(processed)
    .bind(now)
    .bind(id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

fn audit_replay(b: &mut Batch<'_>, actor: &str, id: i64, detail: &serde_json::Value) {
    b.append_audit(AuditDraft::new(
        actor,
        "dead_letter.replayed",
        format!("dead_letter:{id}"),
        detail,
    ));
}

/// What every successful replay records: the dead letter marked replayed,
/// a history line, an audit record; then the answer naming the sinks to wake.
#[allow(clippy::too_many_arguments)]
async fn replayed(
    conn: &mut Conn,
    b: &mut Batch<'_>,
    id: i64,
    actor: &str,
    processed: bool,
    detail: String,
    audit: serde_json::Value,
    sinks: Vec<String>,
) -> Answered {
    let now = b.now.clone();
    mark_replayed(conn, id, &now, actor, processed).await?;
    history(conn, id, &now, actor, "replayed", None, &detail).await?;
    audit_replay(b, actor, id, &audit);
    answer(DlqOutcome::Replayed { detail, sinks })
}

/// A message dead letter: the message's new outcome. Events are stored for
/// the same message row (now `routed`); a new failure keeps the dead letter
/// open with the new reason, one attempt more.
pub(crate) async fn replay_message<'a>(
    conn: &mut Conn,
    b: &mut Batch<'a>,
    id: i64,
    actor: &str,
    outcome: &'a IntakeOutcome,
) -> Answered {
    let st = match open_state(conn, id).await? {
        Ok(st) => st,
        Err(outcome) => return answer(outcome),
    };
    if !MESSAGE_STAGES.contains(&st.stage.as_str()) {
        return answer(DlqOutcome::refused(format!(
            "stage {} is not replayed by processing the message again",
            st.stage
        )));
    }
    if let Some(mid) = &st.message_id {
        // The dedup index admits one accepted message per id: a resend
        // that was accepted meanwhile is the message now.
        let other: Option<i64> = on_db!(&mut *conn, |c| {
            sqlx::query_scalar(
            "SELECT id FROM messages WHERE connector = $1 AND partner = $2 AND message_id = $3 \
             AND id <> $4 AND status NOT IN ('dead', 'rejected') LIMIT 1",
        )
        .bind(&st.connector)
        .bind(&st.partner)
        .bind(mid)
        .bind(st.message_row)
        .fetch_optional(c)
        .await
        })?;
        if let Some(n) = other {
            return answer(DlqOutcome::refused(format!(
                "superseded by message {n}: the partner resent message id {mid} and it was accepted"
            )));
        }
    }
    let now = b.now.clone();
    let row = st.message_row;
    let problem = match outcome {
        IntakeOutcome::Events(evs) => 'events: {
            // Claimed first: a message that is no longer dead (replayed by
            // another dead letter of it, resent) is refused before the
            // registry decides anything for it.
            let done = on_db!(&mut *conn, |c| sqlx::query(
                "UPDATE messages SET status = 'routed', error_code = NULL, error = NULL, \
                 stage = NULL, updated_at = $1 WHERE id = $2 AND status IN ('dead', 'rejected')",
            )
            .bind(&now)
            .bind(row)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
            if done == 0 {
                return answer(DlqOutcome::refused(format!(
                    "message {row} is no longer dead"
                )));
            }
            // Judged by the identity registry like a new message: a
            // conflict fails the replay, held events wait.
            let pass: Vec<Cow<'a, PreparedEvent>> = if evs.iter().any(|e| e.identity.is_some()) {
                let ids: Vec<&EventIdentity> =
                    evs.iter().filter_map(|e| e.identity.as_deref()).collect();
                b.registry.load_for(conn, &ids).await?;
                let who = Asserter {
                    by: format!("{}/{}", st.connector, st.partner),
                    message_id: st.message_id.as_deref(),
                    message_row: row,
                };
                match b.registry.judge_message(evs, &who, &now) {
                    Judged::Conflict { problem } => {
                        break 'events (Cow::Owned(problem), MessageStatus::Dead);
                    }
                    Judged::Events { pass, .. } => pass,
                }
            } else {
                evs.iter().map(Cow::Borrowed).collect()
            };
            let mut sinks: Vec<String> = Vec::new();
            let mut unmatched = 0usize;
            let stored = pass.len();
            for ev in pass {
                if ev.destinations.is_empty() {
                    unmatched += 1;
                }
                for d in &ev.destinations {
                    if !sinks.contains(&d.sink) {
                        sinks.push(d.sink.clone());
                    }
                }
                b.events.push(EventRow {
                    id: ev.event_id.hyphenated().to_string(),
                    ev,
                    message_row: row,
                });
            }
            let detail = format!(
                "message {row} processed again: {stored} event(s) stored, {} held, routed to [{}], {unmatched} unmatched",
                evs.len() - stored,
                sinks.join(", ")
            );
            let event_ids: Vec<String> = evs
                .iter()
                .map(|e| e.event_id.hyphenated().to_string())
                .collect();
            let audit = json!({
                "outcome": "replayed", "stage": st.stage, "code": st.code, "message": row,
                "events": event_ids, "sinks": sinks, "unmatched": unmatched,
            });
            return replayed(conn, b, id, actor, true, detail, audit, sinks).await;
        }
        IntakeOutcome::Failed(p) => (Cow::Borrowed(p), MessageStatus::Dead),
        IntakeOutcome::Rejected(p) => (Cow::Borrowed(p), MessageStatus::Rejected),
    };
    let (p, status) = problem;
    on_db!(&mut *conn, |c| {
        sqlx::query(
        "UPDATE messages SET status = $1, error_code = $2, error = $3, stage = $4, updated_at = $5 \
         WHERE id = $6",
    )
    .bind(status.as_str())
    .bind(p.code)
    .bind(&p.reason)
    .bind(p.stage.as_str())
    .bind(&now)
    .bind(row)
    .execute(c)
    .await
    .map(|r| r.rows_affected())
    })?;
    on_db!(&mut *conn, |c| sqlx::query(
        "UPDATE dead_letters SET stage = $1, class = $2, code = $3, reason = $4, \
         attempts = attempts + 1, last_attempt_at = $5 WHERE id = $6",
    )
    .bind(p.stage.as_str())
    .bind(ErrorClass::Permanent.as_str())
    .bind(p.code)
    .bind(&p.reason)
    .bind(&now)
    .bind(id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    history(
        conn,
        id,
        &now,
        actor,
        "replay_failed",
        Some(p.code),
        &p.reason,
    )
    .await?;
    audit_replay(
        b,
        actor,
        id,
        &json!({
            "outcome": "failed", "stage": p.stage.as_str(), "code": p.code, "message": row,
            "previous_code": st.code,
        }),
    );
    answer(DlqOutcome::Failed {
        code: p.code.to_string(),
        reason: p.reason.clone(),
    })
}

/// A delivery dead letter: its outbox row pending again, attempts 0, due now.
pub(crate) async fn replay_delivery(
    conn: &mut Conn,
    b: &mut Batch<'_>,
    id: i64,
    actor: &str,
) -> Answered {
    let st = match open_state(conn, id).await? {
        Ok(st) => st,
        Err(outcome) => return answer(outcome),
    };
    if st.stage != Stage::Deliver.as_str() {
        return answer(DlqOutcome::refused(format!(
            "dead letter {id} is of stage {}, not deliver",
            st.stage
        )));
    }
    let Some(outbox_id) = st.outbox_id else {
        return answer(DlqOutcome::refused(format!(
            "dead letter {id} names no outbox row"
        )));
    };
    let now = b.now.clone();
    let done = on_db!(&mut *conn, |c| sqlx::query(
        "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = $1, \
         lease_owner = NULL, lease_until = NULL \
         WHERE id = $2 AND state = 'dead'",
    )
    .bind(&now)
    .bind(outbox_id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    if done == 0 {
        return answer(DlqOutcome::refused(format!(
            "outbox row {outbox_id} is not dead"
        )));
    }
    let (sink, route, event_id): (String, String, String) =
        on_db!(&mut *conn, |c| sqlx::query_as(
            "SELECT sink, route, event_id FROM outbox WHERE id = $1"
        )
        .bind(outbox_id)
        .fetch_one(c)
        .await)?;
    let detail = format!("outbox row {outbox_id} pending again for sink {sink}");
    let audit = json!({
        "outcome": "replayed", "stage": st.stage, "code": st.code, "outbox": outbox_id,
        "event_id": event_id, "route": route, "sink": sink,
    });
    replayed(conn, b, id, actor, false, detail, audit, vec![sink]).await
}

/// A broker dead letter of one of our events: a new pending outbox row to
/// the route, sink and routing key of outbox row `target` (that delivered it).
pub(crate) async fn replay_consumed(
    conn: &mut Conn,
    b: &mut Batch<'_>,
    id: i64,
    actor: &str,
    target: i64,
) -> Answered {
    let st = match open_state(conn, id).await? {
        Ok(st) => st,
        Err(outcome) => return answer(outcome),
    };
    if st.stage != STAGE_CONSUME {
        return answer(DlqOutcome::refused(format!(
            "dead letter {id} is of stage {}, not {STAGE_CONSUME}",
            st.stage
        )));
    }
    let Some(event_id) = st.event_id else {
        return answer(DlqOutcome::refused(format!(
            "dead letter {id} names none of our events: nothing to publish again"
        )));
    };
    let template: Option<(String, String, String)> = on_db!(&mut *conn, |c| sqlx::query_as(
        "SELECT route, sink, CASE WHEN o.routing_key = '' THEN e.kind ELSE o.routing_key END \
         FROM outbox o JOIN events e ON e.event_id = o.event_id \
         WHERE o.id = $1 AND o.event_id = $2",
    )
    .bind(target)
    .bind(&event_id)
    .fetch_optional(c)
    .await)?;
    let Some((route, sink, routing_key)) = template else {
        return answer(DlqOutcome::refused(format!(
            "outbox row {target} is not a delivery of event {event_id}"
        )));
    };
    let now = b.now.clone();
    let outbox_id: i64 = on_db!(&mut *conn, |c| sqlx::query_scalar(
        "INSERT INTO outbox (event_id, route, sink, routing_key, state, attempts, \
         next_attempt_at, created_at) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6) \
         RETURNING id",
    )
    .bind(&event_id)
    .bind(&route)
    .bind(&sink)
    .bind(&routing_key)
    .bind(&now)
    .bind(&now)
    .fetch_one(c)
    .await)?;
    let detail = format!(
        "event {event_id} queued again as outbox row {outbox_id} to sink {sink} \
         (route {route}, routing key {routing_key})"
    );
    let audit = json!({
        "outcome": "replayed", "stage": st.stage, "code": st.code, "event_id": event_id,
        "outbox": outbox_id, "copied_from": target, "route": route, "sink": sink,
        "routing_key": routing_key,
    });
    replayed(conn, b, id, actor, false, detail, audit, vec![sink]).await
}

/// An open dead letter marked purged by `actor` for `reason`. Nothing is
/// deleted: the dead letter, its message and payload stay.
pub(crate) async fn purge(
    conn: &mut Conn,
    b: &mut Batch<'_>,
    id: i64,
    actor: &str,
    reason: &str,
) -> Answered {
    let st = match open_state(conn, id).await? {
        Ok(st) => st,
        Err(outcome) => return answer(outcome),
    };
    let now = b.now.clone();
    on_db!(&mut *conn, |c| sqlx::query(
        "UPDATE dead_letters SET status = 'purged', purged_at = $1, purged_by = $2, \
         purge_reason = $3 WHERE id = $4 AND status = 'open'",
    )
    .bind(&now)
    .bind(actor)
    .bind(reason)
    .bind(id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    history(conn, id, &now, actor, "purged", None, reason).await?;
    b.append_audit(AuditDraft::new(
        actor,
        "dead_letter.purged",
        format!("dead_letter:{id}"),
        &json!({
            "reason": reason, "stage": st.stage, "code": st.code, "message": st.message_row,
            "outbox": st.outbox_id, "event_id": st.event_id,
        }),
    ));
    answer(DlqOutcome::Purged)
}

/// A replayed delivery failed again: its dead letter (the newest replayed
/// one of `outbox_id`) reopens with the new failure and the attempts added.
/// `None` when there is none (the caller makes a new dead letter).
pub(crate) async fn reopen_delivery(
    conn: &mut Conn,
    b: &mut Batch<'_>,
    outbox_id: i64,
    attempts: u32,
    class: ErrorClass,
    code: &str,
    error: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let id: Option<i64> = on_db!(&mut *conn, |c| sqlx::query_scalar(
        "SELECT id FROM dead_letters WHERE outbox_id = $1 AND status = 'replayed' \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(outbox_id)
    .fetch_optional(c)
    .await)?;
    let Some(id) = id else {
        return Ok(None);
    };
    on_db!(&mut *conn, |c| sqlx::query(
        "UPDATE dead_letters SET status = 'open', class = $1, code = $2, reason = $3, \
         attempts = attempts + $4, last_attempt_at = $5 WHERE id = $6",
    )
    .bind(class.as_str())
    .bind(code)
    .bind(error)
    .bind(i64::from(attempts))
    .bind(&b.now)
    .bind(id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    history(conn, id, &b.now, SYSTEM, "dead_lettered", Some(code), error).await?;
    Ok(Some(id))
}
