//! The durable store: raw messages, events, outbox, dead letters and the
//! audit log, in SQLite (WAL), written by one group-commit task.
//!
//! Nothing the hub has acknowledged to a partner may be lost, so a connector
//! ACKs only after [`Store::intake`] returns, and `intake` returns only after
//! the COMMIT of the transaction that holds the message. Concurrent callers
//! share transactions (group commit, see `writer.rs`) and each learns when
//! its own message is durable. Reads go through a separate pool of read-only
//! connections and never wait for the writer (WAL).
//!
//! Files: `mod.rs` (the handle), `connect.rs` (connections, pragmas,
//! migrations), `writer.rs` (the group-commit task), `batch.rs` (one batch's
//! writes), `insert.rs` (its multi-row statements), `ops.rs` (what the
//! writer is asked), `checkpoint.rs` (background WAL checkpoints),
//! `query.rs` (reads), `audit.rs` (hash chain), `records.rs` (row types),
//! `time.rs` (stored timestamps), `tracking.rs` (shipments to poll),
//! `error.rs`. Dead letters: `dlq_records.rs`
//! (their types), `dlq_read.rs` (listing, error chains), `dlq_write.rs`
//! (replay and purge, in the writer), `broker.rs` (dead letters from broker
//! consumers). The schema is in `hub-core/migrations/sqlite/`, embedded in
//! the binary.
//!
//! Another process (a `cgthub` CLI command) may open the same file beside
//! `cgthub serve`: writers take turns on SQLite's write lock (waiting up to
//! 5 s), row ids are taken inside the write transaction, and an audit
//! chain head gone stale because the other process appended is reloaded
//! after the id conflict it causes, and the write retried.

mod audit;
mod batch;
mod broker;
mod checkpoint;
mod connect;
mod db;
mod dlq_read;
mod dlq_records;
mod dlq_write;
mod error;
mod holds;
mod insert;
mod manual_entry;
mod ops;
mod query;
mod records;
mod registry;
mod resources;
mod time;
mod tracking;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

pub use audit::{AuditCheck, GENESIS};
pub use connect::redact as redact_url;
pub use dlq_records::{
    AuditRecord, BrokerDeadLetter, DeadLetter, DeadLetterDetail, DeadLetterFilter,
    DeadLetterStatus, DlqOutcome, DlqResult, HistoryEntry, ReplayTarget, BROKER_CONNECTOR,
    STAGE_CONSUME,
};
pub use dlq_write::MESSAGE_STAGES;
pub use error::StoreError;
pub use holds::{
    HoldAction, HoldDetail, HoldFilter, HoldInfo, Journey, JourneyEvent, JourneyIdentifier,
};
pub use manual_entry::MessageSummary;
pub use records::{
    Destination, EventFilter, IntakeOutcome, IntakeRecord, MessageRecord, MessageStatus,
    OutboxDepth, OutboxItem, OutboxStats, PreparedEvent, Routing, StoreCounts, StoredEvent,
};
pub use registry::{EventIdentity, RegistryContext, Sealed, HOLD_EXPIRED, IDENTITY_CONFLICT};
pub use resources::KeptResource;
pub use tracking::normalise_authority;

use crate::error::ErrorClass;
use crate::inbound::Receipt;
use audit::{AuditDraft, AuditHead};
use db::Pool;
use ops::{Answer, Command, Op, Request};

/// What one group commit did, reported to [`StoreOptions::on_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    /// Operations in the transaction (intakes, confirmations, audit records…).
    pub ops: usize,
    /// Of which intakes.
    pub messages: usize,
    /// From BEGIN to the end of COMMIT (including the fsync): what the
    /// batch's callers waited for, less their time in the queue.
    pub commit: Duration,
}

/// Called by the writer after each successful commit, before the callers are
/// answered: keep it quick (update a metric, count).
pub type OnBatch = Arc<dyn Fn(BatchStats) + Send + Sync>;

/// How to open the store.
#[derive(Clone)]
pub struct StoreOptions {
    /// `sqlite://data/cgthub.db`, relative to the working directory; parent
    /// directories are created. In-memory databases are refused: the
    /// readers would not see the writer's data. Or
    /// `postgres://user@host:5432/database` (the database must exist).
    pub url: String,
    /// Most messages in one group commit.
    pub batch_max: usize,
    /// Size of the read connection pool (PostgreSQL: also outbox claims).
    pub read_connections: u32,
    /// PostgreSQL: group commits under way at once, each on a connection
    /// of its own (SQLite: always 1, its single writer).
    pub write_connections: u32,
    /// This process among the hubs sharing a store: the owner of the
    /// outbox rows it claims.
    pub instance_id: String,
    /// How long claimed outbox rows stay this instance's own before another
    /// may take them (PostgreSQL; a single SQLite hub claims nothing).
    pub claim_lease: Duration,
    /// `PRAGMA synchronous=FULL` (default): a commit survives power loss.
    /// `false` = NORMAL: survives a crash of the process, not of the machine.
    pub synchronous_full: bool,
    /// Called after each commit, e.g. to feed a batch size histogram.
    pub on_batch: Option<OnBatch>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            url: "sqlite://data/cgthub.db".into(),
            batch_max: 512,
            read_connections: 4,
            write_connections: 1,
            instance_id: "cgthub".into(),
            claim_lease: Duration::from_secs(30),
            synchronous_full: true,
            on_batch: None,
        }
    }
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("url", &self.url)
            .field("batch_max", &self.batch_max)
            .field("read_connections", &self.read_connections)
            .field("write_connections", &self.write_connections)
            .field("instance_id", &self.instance_id)
            .field("claim_lease", &self.claim_lease)
            .field("synchronous_full", &self.synchronous_full)
            .field("on_batch", &self.on_batch.is_some())
            .finish()
    }
}

/// A handle on the store; clones share the writer and the reader pool.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Command>,
    pool: Pool,
    claims: Arc<query::Claims>,
}

impl Store {
    /// Opens (creating if needed) the database, applies migrations, starts
    /// the writer task on its own connection and opens the reader pool.
    /// Must be called inside a tokio runtime.
    pub async fn open(opts: StoreOptions) -> Result<Store, StoreError> {
        let conns = connect::open(&opts).await?;
        let mut checkpoint = conns.checkpoint.map(checkpoint::spawn);
        let mut committers = Vec::with_capacity(conns.writers.len());
        for mut conn in conns.writers {
            let head = AuditHead::load(&mut conn)
                .await
                .map_err(|e| StoreError::Open {
                    url: connect::redact(&opts.url),
                    source: e.into(),
                })?;
            committers.push(writer::Committer {
                conn,
                head,
                on_batch: opts.on_batch.clone(),
                reconnect: conns.reconnect.clone(),
                checkpoint: checkpoint.take(),
            });
        }
        let batch_max = opts.batch_max.max(1);
        let (tx, rx) = mpsc::channel(batch_max.saturating_mul(2).max(64));
        let writer = writer::Writer {
            rx,
            batch_max,
            closing: None,
            committers,
        };
        let task = tokio::spawn(writer.run());
        tokio::spawn(async move {
            // A bug in the writer ends it: say so loudly; every write then
            // fails (no ACK, partners resend) and /healthz reports it.
            if let Err(e) = task.await {
                if e.is_panic() {
                    tracing::error!("the store's writer stopped on a bug (panic): nothing can be stored until the hub is restarted");
                }
            }
        });
        tracing::info!(url = %connect::redact(&opts.url), batch_max, instance = %opts.instance_id, "store open");
        Ok(Store {
            tx,
            pool: conns.readers,
            claims: Arc::new(query::Claims::new(&opts)),
        })
    }

    /// Whether the writer task still takes writes (false once it stopped,
    /// after a close or on a bug).
    pub fn writer_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Makes one inbound message and its outcome durable. Returns after the
    /// COMMIT that holds it: the connector may ACK then, not before. A repeat
    /// of `(connector, partner, message_id)` writes nothing and returns the
    /// original's row and outcome with `duplicate: true`.
    ///
    /// A caller that stops waiting (its future dropped) does not withdraw
    /// the message: it may still commit, and a resend is then a duplicate.
    pub async fn intake(&self, rec: IntakeRecord) -> Result<Receipt, StoreError> {
        Answer::receipt(self.call(Request::Intake(rec)).await)
    }

    /// Outbox rows of `sink` due at `now`, earliest due first (then by id),
    /// with event bodies. In the order of the `outbox_due` index, so a poll
    /// reads `limit` rows however long the backlog is (ordering by id alone
    /// sorted the whole backlog on every poll).
    ///
    /// On PostgreSQL the rows are claimed: leased to this instance for the
    /// claim lease, so that no other instance publishes them meanwhile
    /// (rows whose lease ran out, their instance gone, are claimable again).
    /// One relay per sink per instance, so rows this instance still holds
    /// are returned again on its next poll, as on SQLite.
    pub async fn pending(
        &self,
        sink: &str,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        query::pending(&self.pool, &self.claims, sink, limit, now).await
    }

    /// Marks pending outbox rows delivered (in the next group commit).
    pub async fn delivered(&self, outbox_ids: Vec<i64>) -> Result<(), StoreError> {
        if outbox_ids.is_empty() {
            return Ok(());
        }
        Answer::done(self.call(Request::Delivered(outbox_ids)).await, "delivered")
    }

    /// Records a failed attempt on a pending row and when to try again.
    /// `NotFound` when the row is not pending (delivered or dead meanwhile).
    pub async fn retry_later(
        &self,
        outbox_id: i64,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: String,
    ) -> Result<(), StoreError> {
        let req = Request::RetryLater {
            outbox_id,
            attempts,
            next_attempt_at,
            error,
        };
        Answer::done(self.call(req).await, "retry_later")
    }

    /// Gives up on a pending row: outbox state `dead`, a dead letter (stage
    /// `deliver`) and an audit record, in one transaction. Returns the dead
    /// letter's id; `NotFound` when the row is not pending. `code` is the
    /// dead letter's reason code (`delivery_failed`, `unroutable`, …).
    pub async fn dead_letter_delivery(
        &self,
        outbox_id: i64,
        attempts: u32,
        class: ErrorClass,
        code: &'static str,
        error: String,
    ) -> Result<i64, StoreError> {
        let req = Request::DeadLetterDelivery {
            outbox_id,
            attempts,
            class,
            code,
            error,
        };
        Answer::id(self.call(req).await, "dead_letter_delivery")
    }

    /// Appends to the hash-chained audit log (through the writer, so the
    /// chain is serial). Returns the record's id.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: serde_json::Value,
    ) -> Result<i64, StoreError> {
        let draft = AuditDraft::new(actor, action, subject.to_owned(), &detail);
        Answer::id(self.call(Request::Audit(draft)).await, "audit")
    }

    /// Walks the audit chain; `first_bad` names the first broken record.
    pub async fn verify_audit(&self) -> Result<AuditCheck, StoreError> {
        audit::verify(&self.pool).await
    }

    /// Stored events matching `f`, newest first.
    pub async fn events(&self, f: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
        query::events(&self.pool, f).await
    }

    /// One raw message with its payload and events.
    pub async fn message(&self, id: i64) -> Result<Option<MessageRecord>, StoreError> {
        query::message(&self.pool, id).await
    }

    /// The resource of `resource_type` and `id` partners last wrote.
    pub async fn resource(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<KeptResource>, StoreError> {
        resources::by_id(&self.pool, resource_type, id).await
    }

    /// The resource of `resource_type` an identifier (`system`, `value`;
    /// `system` may be empty) points at.
    pub async fn resource_by_identifier(
        &self,
        resource_type: &str,
        system: &str,
        value: &str,
    ) -> Result<Option<KeptResource>, StoreError> {
        resources::by_identifier(&self.pool, resource_type, system, value).await
    }

    /// The resources message `message_row` wrote (for answering a repeat).
    pub async fn resources_of_message(
        &self,
        message_row: i64,
    ) -> Result<Vec<KeptResource>, StoreError> {
        resources::of_message(&self.pool, message_row).await
    }

    /// Tracking numbers a courier poller asks about: linked to a therapy
    /// for carrier `authority` (normalised: lowercase ASCII letters and
    /// digits, see [`normalise_authority`]) at or after `linked_since`, and
    /// no `shipment.delivered` event taken for them yet. Oldest link first.
    pub async fn tracking_to_poll(
        &self,
        authority: &str,
        linked_since: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        tracking::to_poll(&self.pool, authority, linked_since).await
    }

    /// The newest `limit` messages of the PDF entry portal (connector
    /// `pdf_entry`), newest first, without payloads.
    pub async fn manual_entry_messages(
        &self,
        limit: u32,
    ) -> Result<Vec<MessageSummary>, StoreError> {
        manual_entry::newest(&self.pool, limit).await
    }

    /// One message of connector `pdf_entry` by its row, without its payload.
    pub async fn manual_entry_message(
        &self,
        row: i64,
    ) -> Result<Option<MessageSummary>, StoreError> {
        manual_entry::by_row(&self.pool, row).await
    }

    /// The `pdf_entry` messages of `partner` whose message id is one of
    /// `ids`, whatever their status (a failed one too), oldest first.
    pub async fn manual_entry_messages_by_id(
        &self,
        partner: &str,
        ids: &[String],
    ) -> Result<Vec<MessageSummary>, StoreError> {
        manual_entry::by_ids(&self.pool, partner, ids).await
    }

    /// The newest dead letters, whatever their status.
    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let f = DeadLetterFilter {
            status: None,
            limit,
            ..DeadLetterFilter::default()
        };
        dlq_read::list(&self.pool, &f).await
    }

    /// Dead letters matching `f` (default: the newest 100 open), newest first.
    pub async fn list_dead_letters(
        &self,
        f: &DeadLetterFilter,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        dlq_read::list(&self.pool, f).await
    }

    /// One dead letter with the message (and payload) it came from.
    pub async fn dead_letter(
        &self,
        id: i64,
    ) -> Result<Option<(DeadLetter, MessageRecord)>, StoreError> {
        dlq_read::with_message(&self.pool, id).await
    }

    /// One dead letter with its message, its error chain (every failure,
    /// replay and purge) and the audit records about it.
    pub async fn dead_letter_detail(
        &self,
        id: i64,
    ) -> Result<Option<DeadLetterDetail>, StoreError> {
        dlq_read::detail(&self.pool, id).await
    }

    /// Ids of the open dead letters with reason code `code`, oldest first.
    pub async fn open_dead_letter_ids(&self, code: &str) -> Result<Vec<i64>, StoreError> {
        dlq_read::open_ids(&self.pool, code).await
    }

    /// Ids of the open dead letters of the message stored as `row`.
    pub async fn open_dead_letters_of_message(&self, row: i64) -> Result<Vec<i64>, StoreError> {
        dlq_read::open_ids_of_message(&self.pool, row).await
    }

    /// Audit records about `subject` (e.g. `dead_letter:7`), oldest first.
    pub async fn audit_records(&self, subject: &str) -> Result<Vec<AuditRecord>, StoreError> {
        dlq_read::audit_for(&self.pool, subject).await
    }

    /// Where [`Store::replay_consumed`] would send a broker dead letter of
    /// one of our events again: the delivered outbox row of its event with
    /// the broker's routing key, else its only delivered row. `None` when it
    /// names no event of ours, or that cannot be told.
    pub async fn replay_target(&self, dl: &DeadLetter) -> Result<Option<ReplayTarget>, StoreError> {
        dlq_read::replay_target(&self.pool, dl).await
    }

    /// Keeps a message the broker dead-lettered: its body as a `messages`
    /// row (connector `amqp`, status `dead`) and a dead letter of stage
    /// `consume` whose code is the broker's reason, linked to our event when
    /// `message_id` names one, and an audit record. Returns the dead
    /// letter's id. Idempotent: the same dead message again (a lost ack)
    /// returns the first one's id and writes nothing.
    pub async fn dead_from_broker(&self, d: BrokerDeadLetter) -> Result<i64, StoreError> {
        Answer::id(self.call(Request::BrokerDead(d)).await, "dead_from_broker")
    }

    /// Replays a message dead letter (stage `decode`, `parse`, `map`) with
    /// the message's new outcome, processed again by its connector and
    /// routed by the caller: events are stored for the same message row
    /// (now `routed`) and the dead letter becomes `replayed`; a failure
    /// keeps it open with the new reason and one attempt more. Refused when
    /// a resend of the message was accepted meanwhile. [`crate::Hub`]'s
    /// replay does the processing; call that.
    pub async fn replay_message(
        &self,
        dead_letter: i64,
        actor: &str,
        outcome: IntakeOutcome,
    ) -> Result<DlqOutcome, StoreError> {
        let actor = valid_actor("replay_message", actor)?;
        let req = Request::ReplayMessage {
            dead_letter,
            actor,
            outcome,
        };
        Answer::dlq(self.call(req).await, "replay_message")
    }

    /// Replays a delivery dead letter: its outbox row back to pending,
    /// attempts 0, due now (wake the sink's relay). Should it fail again,
    /// the same dead letter reopens.
    pub async fn replay_delivery(
        &self,
        dead_letter: i64,
        actor: &str,
    ) -> Result<DlqOutcome, StoreError> {
        let actor = valid_actor("replay_delivery", actor)?;
        let req = Request::ReplayDelivery { dead_letter, actor };
        Answer::dlq(self.call(req).await, "replay_delivery")
    }

    /// Replays a broker dead letter of one of our events: a new pending
    /// outbox row with the route, sink and routing key of outbox row
    /// `target` (see [`Store::replay_target`]).
    pub async fn replay_consumed(
        &self,
        dead_letter: i64,
        actor: &str,
        target: i64,
    ) -> Result<DlqOutcome, StoreError> {
        let actor = valid_actor("replay_consumed", actor)?;
        let req = Request::ReplayConsumed {
            dead_letter,
            actor,
            target,
        };
        Answer::dlq(self.call(req).await, "replay_consumed")
    }

    /// Marks an open dead letter purged by `actor`, for `reason` (required:
    /// [`StoreError::Invalid`] without one). Nothing is deleted.
    /// Held events matching `f` (default: the newest 100 still held), newest first.
    pub async fn holds(&self, f: &HoldFilter) -> Result<Vec<HoldInfo>, StoreError> {
        holds::list(&self.pool, f).await
    }

    /// One hold with its event and the identifiers it names.
    pub async fn hold(&self, id: i64) -> Result<Option<HoldDetail>, StoreError> {
        holds::show(&self.pool, id).await
    }

    /// A therapy's chain of identity: identifiers, events, custody, holds
    /// and alerts. `None` when no therapy has this COI.
    pub async fn journey(&self, coi: &str) -> Result<Option<Journey>, StoreError> {
        holds::journey(&self.pool, coi).await
    }

    /// Releases a hold as `actor`, for `reason` (required), audited. An
    /// out-of-sequence event goes on; identity is judged again and never
    /// overridden.
    pub async fn release_hold(
        &self,
        hold: i64,
        actor: &str,
        reason: &str,
        cx: Arc<RegistryContext>,
    ) -> Result<HoldAction, StoreError> {
        let actor = valid_actor("release_hold", actor)?;
        let reason = required_reason("release_hold", reason)?;
        let req = Request::ReleaseHold {
            hold,
            actor,
            reason,
            cx,
        };
        Answer::hold(self.call(req).await, "release_hold")
    }

    /// Rejects a hold as `actor`, for `reason` (required), audited: its
    /// event never goes on.
    pub async fn reject_hold(
        &self,
        hold: i64,
        actor: &str,
        reason: &str,
    ) -> Result<HoldAction, StoreError> {
        let actor = valid_actor("reject_hold", actor)?;
        let reason = required_reason("reject_hold", reason)?;
        let req = Request::RejectHold {
            hold,
            actor,
            reason,
        };
        Answer::hold(self.call(req).await, "reject_hold")
    }

    /// Records `fingerprint` (see `PhiKeys::index_fingerprint`) as the key
    /// this store's registry hashes with, unless one is recorded already;
    /// returns the recorded one. A hub whose fingerprint differs must not
    /// start: its MRN and demographic hashes would not match the registry's.
    pub async fn index_key(&self, fingerprint: &str) -> Result<String, StoreError> {
        Answer::text(
            self.call(Request::IndexKey(fingerprint.to_string())).await,
            "index_key",
        )
    }

    /// Expires up to `limit` holds past their deadline into dead letters
    /// with an alert each; returns how many.
    pub async fn expire_holds(
        &self,
        cx: Arc<RegistryContext>,
        limit: i64,
    ) -> Result<i64, StoreError> {
        Answer::id(
            self.call(Request::ExpireHolds { cx, limit }).await,
            "expire_holds",
        )
    }

    pub async fn purge_dead_letter(
        &self,
        dead_letter: i64,
        actor: &str,
        reason: &str,
    ) -> Result<DlqOutcome, StoreError> {
        let actor = valid_actor("purge_dead_letter", actor)?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(StoreError::Invalid {
                op: "purge_dead_letter",
                reason: "a purge needs a reason".into(),
            });
        }
        let req = Request::Purge {
            dead_letter,
            actor,
            reason: reason.to_string(),
        };
        Answer::dlq(self.call(req).await, "purge_dead_letter")
    }

    /// Pending rows, the age of the oldest at `now`, and this instance's
    /// claims: cheap enough for every health check.
    pub async fn outbox_depth(&self, now: DateTime<Utc>) -> Result<OutboxDepth, StoreError> {
        query::outbox_depth(&self.pool, &self.claims, now).await
    }

    /// Outbox counts by state (reads every row) and the age of the oldest
    /// pending row at `now`.
    pub async fn outbox_stats(&self, now: DateTime<Utc>) -> Result<OutboxStats, StoreError> {
        query::outbox_stats(&self.pool, &self.claims, now).await
    }

    /// This process's instance id (the owner of its outbox claims).
    pub fn instance_id(&self) -> &str {
        &self.claims.instance
    }

    /// Which database this store is on: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        if self.pool.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    /// Applies the schema migrations to the database `opts` names; returns
    /// the schema version before and after (`cgthub migrate`).
    pub async fn migrate(opts: &StoreOptions) -> Result<(i64, i64), StoreError> {
        connect::migrate(opts).await
    }

    /// `(applied, known)`: the database's schema version and this
    /// program's, without changing anything (`cgthub check`). `applied` is
    /// 0 for a database the hub never opened.
    pub async fn schema_status(opts: &StoreOptions) -> Result<(i64, i64), StoreError> {
        match connect::open_readers(opts).await {
            Ok(pool) => {
                let v = connect::applied_version(&pool)
                    .await
                    .map_err(StoreError::read("schema_status"))?;
                pool.close().await;
                Ok((v, connect::schema_version(pool.is_postgres())))
            }
            Err(StoreError::SchemaBehind { found, needed }) => Ok((found, needed)),
            Err(e) => Err(e),
        }
    }

    /// Messages by status, events, unmatched events, dead letters.
    pub async fn counts(&self) -> Result<StoreCounts, StoreError> {
        query::counts(&self.pool).await
    }

    /// Opens an existing database for reading only, beside a running hub:
    /// no writer, no migration (a schema behind this program's is refused
    /// with [`StoreError::SchemaBehind`]). Writes fail with
    /// [`StoreError::Closed`].
    pub async fn open_read_only(opts: StoreOptions) -> Result<Store, StoreError> {
        let pool = connect::open_readers(&opts).await?;
        let (tx, _) = mpsc::channel(1);
        Ok(Store {
            tx,
            pool,
            claims: Arc::new(query::Claims::new(&opts)),
        })
    }

    /// Commits what is queued, stops the writer, closes all connections.
    /// Later calls on any clone fail with [`StoreError::Closed`]. Dropping
    /// every clone also stops the writer, without waiting for it.
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Close(done)).await.is_ok() {
            let _ = wait.await;
        }
        query::release_claims(&self.pool, &self.claims).await;
        self.pool.close().await;
    }

    async fn call(&self, req: Request) -> Result<Answer, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Op(Op { req, reply }))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// An operator's name, trimmed; [`StoreError::Invalid`] when empty.
fn valid_actor(op: &'static str, actor: &str) -> Result<String, StoreError> {
    let actor = actor.trim();
    if actor.is_empty() {
        return Err(StoreError::Invalid {
            op,
            reason: "no actor named".into(),
        });
    }
    Ok(actor.to_string())
}

/// An operator's reason, trimmed; refused when empty.
fn required_reason(op: &'static str, reason: &str) -> Result<String, StoreError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(StoreError::Invalid {
            op,
            reason: "a reason is required".into(),
        });
    }
    Ok(reason.to_string())
}
