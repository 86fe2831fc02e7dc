//! Replaying and purging dead letters, for operators (`cgthub dlq`, the
//! HTTP API). Each replay starts again from the stage that failed, and every
//! write goes through the store's single writer (which keeps the audit
//! chain):
//!
//! - `decode`, `parse`, `map` (the message failed): the stored payload is
//!   translated again by the connector it came from (with its current
//!   mappings), routed by the routes in force, and stored for the same
//!   message row. Failing again keeps the dead letter open with the new
//!   reason. Refused when the partner's resend of it was accepted meanwhile.
//! - `deliver` (incl. `unroutable`): the outbox row is pending again, and the
//!   sink's relay is woken.
//! - `consume` (a broker dead-lettered one of our events): a new outbox row
//!   for the event, to the sink, route and routing key that delivered it.
//! - `receive`: refused: what was kept is not a whole message (a frame
//!   error, the first bytes of an oversized one).
//!
//! Purging needs a reason and keeps everything; it only closes the dead
//! letter. Logs name ids, stages, codes and partners, never reasons (they
//! may quote message values).

use bytes::Bytes;
use tokio::task::JoinSet;

use crate::hub::Hub;
use crate::inbound::Decoded;
use crate::store::{
    DeadLetter, DeadLetterStatus, DlqOutcome, DlqResult, IntakeOutcome, MessageRecord, StoreError,
    MESSAGE_STAGES, STAGE_CONSUME,
};

/// Dead letters replayed or purged at the same time (their writes share
/// group commits).
const CONCURRENCY: usize = 16;

/// Which dead letters an operator acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterSelection {
    /// These, in this order.
    Ids(Vec<i64>),
    /// Every open one with this reason code, oldest first.
    OpenWithCode(String),
}

async fn resolve(
    hub: &Hub,
    which: DeadLetterSelection,
    op: &'static str,
) -> Result<Vec<i64>, StoreError> {
    let invalid = |reason: &str| StoreError::Invalid {
        op,
        reason: reason.into(),
    };
    match which {
        DeadLetterSelection::Ids(ids) if ids.is_empty() => Err(invalid("no dead letters named")),
        DeadLetterSelection::Ids(ids) => Ok(ids),
        DeadLetterSelection::OpenWithCode(code) if code.trim().is_empty() => {
            Err(invalid("no reason code named"))
        }
        DeadLetterSelection::OpenWithCode(code) => {
            hub.store().open_dead_letter_ids(code.trim()).await
        }
    }
}

fn check_actor(op: &'static str, actor: &str) -> Result<String, StoreError> {
    let actor = actor.trim();
    if actor.is_empty() {
        return Err(StoreError::Invalid {
            op,
            reason: "no actor named".into(),
        });
    }
    Ok(actor.to_string())
}

/// Runs `one` for every id, a few at a time; results in id order given.
async fn each<F, Fut>(hub: &Hub, ids: Vec<i64>, one: F) -> Vec<DlqResult>
where
    F: Fn(Hub, i64) -> Fut,
    Fut: std::future::Future<Output = DlqOutcome> + Send + 'static,
{
    let mut out: Vec<Option<DlqOutcome>> = vec![None; ids.len()];
    let mut tasks = JoinSet::new();
    let mut next = 0;
    while next < ids.len() || !tasks.is_empty() {
        while next < ids.len() && tasks.len() < CONCURRENCY {
            let fut = one(hub.clone(), ids[next]);
            let slot = next;
            tasks.spawn(async move { (slot, fut.await) });
            next += 1;
        }
        if let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((slot, outcome)) => out[slot] = Some(outcome),
                Err(e) => tracing::error!(error = %e, "dead letter task failed"),
            }
        }
    }
    ids.into_iter()
        .zip(out)
        .map(|(id, outcome)| DlqResult {
            id,
            outcome: outcome.unwrap_or_else(|| DlqOutcome::Error {
                reason: "the replay task failed".into(),
            }),
        })
        .collect()
}

/// See [`Hub::replay_dead_letters`].
pub(crate) async fn replay(
    hub: &Hub,
    which: DeadLetterSelection,
    actor: &str,
) -> Result<Vec<DlqResult>, StoreError> {
    let actor = check_actor("replay", actor)?;
    let ids = resolve(hub, which, "replay").await?;
    Ok(each(hub, ids, move |hub, id| {
        let actor = actor.clone();
        async move {
            let outcome =
                replay_one(&hub, id, &actor)
                    .await
                    .unwrap_or_else(|e| DlqOutcome::Error {
                        reason: e.to_string(),
                    });
            log(id, "replay", &actor, &outcome);
            outcome
        }
    })
    .await)
}

/// See [`Hub::purge_dead_letters`].
pub(crate) async fn purge(
    hub: &Hub,
    which: DeadLetterSelection,
    actor: &str,
    reason: &str,
) -> Result<Vec<DlqResult>, StoreError> {
    let actor = check_actor("purge", actor)?;
    let reason = reason.trim().to_string();
    if reason.is_empty() {
        return Err(StoreError::Invalid {
            op: "purge",
            reason: "a purge needs a reason".into(),
        });
    }
    let ids = resolve(hub, which, "purge").await?;
    Ok(each(hub, ids, move |hub, id| {
        let (actor, reason) = (actor.clone(), reason.clone());
        async move {
            let outcome = hub
                .store()
                .purge_dead_letter(id, &actor, &reason)
                .await
                .unwrap_or_else(|e| DlqOutcome::Error {
                    reason: e.to_string(),
                });
            log(id, "purge", &actor, &outcome);
            outcome
        }
    })
    .await)
}

fn log(id: i64, action: &str, actor: &str, outcome: &DlqOutcome) {
    match outcome {
        DlqOutcome::Replayed { .. } | DlqOutcome::Purged => {
            tracing::info!(
                dead_letter = id,
                action,
                actor,
                outcome = outcome.as_str(),
                "dead letter"
            )
        }
        DlqOutcome::Failed { code, .. } => {
            tracing::warn!(dead_letter = id, action, actor, code = %code, "replayed dead letter failed again")
        }
        DlqOutcome::Error { reason } => {
            tracing::error!(dead_letter = id, action, actor, error = %reason, "dead letter action failed")
        }
        _ => tracing::info!(
            dead_letter = id,
            action,
            actor,
            outcome = outcome.as_str(),
            "dead letter left as it was"
        ),
    }
}

async fn replay_one(hub: &Hub, id: i64, actor: &str) -> Result<DlqOutcome, StoreError> {
    let Some((dl, msg)) = hub.store().dead_letter(id).await? else {
        return Ok(DlqOutcome::NotFound);
    };
    if dl.status != DeadLetterStatus::Open {
        return Ok(DlqOutcome::refused(format!(
            "dead letter {id} is {}, not open",
            dl.status
        )));
    }
    let outcome = match dl.stage.as_str() {
        "deliver" => {
            let sink = dl.sink.as_deref().unwrap_or_default();
            if hub.wake_handle(sink).is_none() {
                return Ok(no_sink(sink));
            }
            hub.store().replay_delivery(id, actor).await?
        }
        STAGE_CONSUME => replay_consumed(hub, &dl, actor).await?,
        "receive" => DlqOutcome::refused(
            "stage receive: what was kept is not a whole message (a framing error, or the first \
             bytes of an oversized one); ask the partner to send it again",
        ),
        s if MESSAGE_STAGES.contains(&s) => return replay_message(hub, &dl, msg, actor).await,
        other => DlqOutcome::refused(format!("dead letters of stage {other} cannot be replayed")),
    };
    if let DlqOutcome::Replayed { sinks, .. } = &outcome {
        hub.wake(sinks);
    }
    Ok(outcome)
}

fn no_sink(sink: &str) -> DlqOutcome {
    DlqOutcome::refused(format!(
        "sink {sink:?} is not configured in this hub: nothing would deliver it"
    ))
}

async fn replay_consumed(
    hub: &Hub,
    dl: &DeadLetter,
    actor: &str,
) -> Result<DlqOutcome, StoreError> {
    let Some(event_id) = &dl.event_id else {
        return Ok(DlqOutcome::refused(format!(
            "dead letter {} names none of our events (the broker message's id is not an event \
             this hub stored): nothing to publish again",
            dl.id
        )));
    };
    let Some(target) = hub.store().replay_target(dl).await? else {
        return Ok(DlqOutcome::refused(format!(
            "event {event_id} has no delivered outbox row with routing key {:?} to publish it \
             again through",
            dl.routing_key.as_deref().unwrap_or("")
        )));
    };
    if hub.wake_handle(&target.sink).is_none() {
        return Ok(no_sink(&target.sink));
    }
    hub.store()
        .replay_consumed(dl.id, actor, target.outbox_id)
        .await
}

/// Translates the stored payload again with its connector, checks the
/// events' COIs, routes them with the routes in force and stores the new
/// outcome.
async fn replay_message(
    hub: &Hub,
    dl: &DeadLetter,
    msg: MessageRecord,
    actor: &str,
) -> Result<DlqOutcome, StoreError> {
    let Some(connector) = hub.connector(&msg.connector) else {
        return Ok(DlqOutcome::refused(format!(
            "no {} connector runs in this hub to process the message again",
            msg.connector
        )));
    };
    let (_, decoded) = connector.translate(
        Bytes::from(msg.payload),
        &msg.origin,
        Some(msg.partner.as_str()),
    );
    let (outcome, counts) = match hub.check_coi(decoded) {
        Decoded::Events(events) => {
            let r = hub.route(events);
            (
                IntakeOutcome::Events(r.prepared),
                Some((r.routes, r.unmatched)),
            )
        }
        Decoded::Failed(p) => (IntakeOutcome::Failed(p), None),
        Decoded::Rejected(p) => (IntakeOutcome::Rejected(p), None),
    };
    let done = hub.store().replay_message(dl.id, actor, outcome).await?;
    if let (DlqOutcome::Replayed { sinks, .. }, Some((routes, unmatched))) = (&done, counts) {
        tracing::debug!(dead_letter = dl.id, message_row = msg.id, partner = %msg.partner, connector = %msg.connector, "message processed again");
        hub.count_routed(routes, unmatched);
        hub.wake(sinks);
    }
    Ok(done)
}
