//! The group-commit task: the one owner of the write connection.
//!
//! It waits for a command, takes whatever else is queued (up to `batch_max`
//! messages), opens a transaction and applies it all. Before committing it
//! looks at the queue again: ops that arrived meanwhile join the same
//! transaction (another round), so the fsync is shared by as many callers
//! as possible and batch sizes do not see-saw between large and tiny. Then
//! it commits, and only then answers each caller. While one batch commits,
//! the next one queues. Nothing is answered `Ok` before its COMMIT returns.

use std::sync::Arc;
use std::time::Instant;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{mpsc, oneshot};

use super::audit::AuditHead;
use super::batch;
use super::checkpoint::Kick;
use super::db::{self, on_db, Conn, Db};
use super::error::{is_pg_conflict, sqlx_class};
use super::ops::{Answer, Command, Op, Request};
use super::{BatchStats, OnBatch, StoreError};
use crate::error::ErrorClass;

pub(crate) struct Writer {
    pub conn: Conn,
    pub rx: mpsc::Receiver<Command>,
    /// The committed audit chain head; a batch works on a copy.
    pub head: AuditHead,
    pub batch_max: usize,
    pub on_batch: Option<OnBatch>,
    /// Set once a close was asked for (or every handle is gone).
    pub closing: Option<Vec<oneshot::Sender<()>>>,
    /// PostgreSQL: how to open a new write connection when the old one broke.
    pub reconnect: Option<PgConnectOptions>,
    /// The background checkpointer, kicked after each commit.
    pub checkpoint: Option<(Kick, tokio::task::JoinHandle<()>)>,
}

/// Times a batch that lost a deadlock to another instance is run again.
const PG_CONFLICT_RETRIES: usize = 3;

/// The ops of one batch, and how many of them are messages.
#[derive(Default)]
struct Batch {
    ops: Vec<Op>,
    messages: usize,
}

/// A committed batch's answers (in op order) and its new audit head.
struct Committed {
    answers: Vec<Result<Answer, StoreError>>,
    head: AuditHead,
}

impl Writer {
    /// Runs until [`Command::Close`] arrives or every `Store` handle is gone.
    pub(crate) async fn run(mut self) {
        while self.closing.is_none() {
            let Some(first) = self.rx.recv().await else {
                self.closing = Some(Vec::new());
                break;
            };
            let mut batch = Batch::default();
            self.take(first, &mut batch);
            self.drain(&mut batch);
            if !batch.ops.is_empty() {
                self.commit(batch).await;
            }
        }
        self.shut_down().await;
    }

    fn take(&mut self, cmd: Command, batch: &mut Batch) {
        match cmd {
            Command::Op(op) => {
                batch.messages += usize::from(matches!(op.req, Request::Intake(_)));
                batch.ops.push(op);
            }
            Command::Close(tx) => self.closing.get_or_insert_with(Vec::new).push(tx),
        }
    }

    /// Adds what is queued to `batch`, up to the limits; returns how many
    /// ops it added. Other ops than messages are cheap but still bounded, so
    /// that a flood of delivery confirmations cannot grow a batch forever.
    fn drain(&mut self, batch: &mut Batch) -> usize {
        let before = batch.ops.len();
        while self.closing.is_none()
            && batch.messages < self.batch_max
            && batch.ops.len() < self.batch_max * 4
        {
            match self.rx.try_recv() {
                Ok(cmd) => self.take(cmd, batch),
                Err(_) => break,
            }
        }
        batch.ops.len() - before
    }

    /// Refuses what is still queued, closes the connection (checkpointing
    /// the WAL), then tells whoever asked.
    async fn shut_down(mut self) {
        self.rx.close();
        let mut waiters = self.closing.take().unwrap_or_default();
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::Op(op) => {
                    let _ = op.reply.send(Err(StoreError::Closed));
                }
                Command::Close(tx) => waiters.push(tx),
            }
        }
        if let Some((kick, task)) = self.checkpoint.take() {
            drop(kick);
            let _ = task.await;
        }
        let closed = on_db!(self.conn, |c| c.close().await);
        if let Err(e) = closed {
            tracing::warn!(error = %e, "closing the store's write connection failed");
        }
        tracing::debug!("store writer stopped");
        for tx in waiters {
            let _ = tx.send(());
        }
    }

    /// Commits `batch` as one transaction. When the transaction fails on a
    /// permanent error (a constraint one op violates), the ops are retried
    /// one per transaction so that one bad op does not fail its neighbours.
    /// (Also a batch of one: a conflict on an audit id, when another process
    /// appended to the chain, passes once the rollback reloaded the head.)
    async fn commit(&mut self, mut batch: Batch) {
        let started = Instant::now();
        let mut err = match self.transaction(&mut batch, true).await {
            Ok(done) => return self.answer(batch, done, started),
            Err(e) => e,
        };
        // PostgreSQL: a deadlock with another instance (both inserting the
        // same message ids in opposite order) aborted one of the two; run
        // it again as it was.
        for _ in 0..PG_CONFLICT_RETRIES {
            if !is_pg_conflict(&err) {
                break;
            }
            tracing::debug!(error = %err, "store group commit lost a race with another instance; again");
            err = match self.transaction(&mut batch, false).await {
                Ok(done) => return self.answer(batch, done, started),
                Err(e) => e,
            };
        }
        tracing::warn!(error = %err, ops = batch.ops.len(), "store group commit failed, rolled back");
        if sqlx_class(&err) == ErrorClass::Transient {
            self.reconnect_if_broken().await;
        }
        if sqlx_class(&err) == ErrorClass::Permanent {
            for op in batch.ops {
                let started = Instant::now();
                let messages = usize::from(matches!(op.req, Request::Intake(_)));
                let mut one = Batch {
                    ops: vec![op],
                    messages,
                };
                match self.transaction(&mut one, false).await {
                    Ok(done) => self.answer(one, done, started),
                    Err(e) => fail(one.ops, Arc::new(e)),
                }
            }
        } else {
            fail(batch.ops, Arc::new(err));
        }
    }

    /// BEGIN (IMMEDIATE on SQLite), rounds of [`batch::apply`] (the first for `batch`,
    /// then for late joiners when `join`), COMMIT. On error: ROLLBACK and
    /// reload the audit head, which a failed batch must not advance.
    async fn transaction(
        &mut self,
        batch: &mut Batch,
        join: bool,
    ) -> Result<Committed, sqlx::Error> {
        db::begin(&mut self.conn).await?;
        let mut done = Committed {
            answers: Vec::with_capacity(batch.ops.len()),
            head: self.head.clone(),
        };
        let result = async {
            let mut from = 0;
            loop {
                let reqs: Vec<&Request> = batch.ops[from..].iter().map(|o| &o.req).collect();
                let applied = batch::apply(&mut self.conn, &reqs, &done.head).await?;
                done.head = applied.head;
                done.answers.extend(applied.answers);
                from = batch.ops.len();
                if !join || self.drain(batch) == 0 {
                    break;
                }
            }
            db::commit(&mut self.conn).await
        }
        .await;
        match result {
            Ok(_) => Ok(done),
            Err(e) => {
                self.roll_back().await;
                Err(e)
            }
        }
    }

    /// PostgreSQL: after a failover or a restart the writer's connection is
    /// gone; a new one is made for the next batch (whose callers then
    /// succeed; this batch's were told it failed and resend).
    async fn reconnect_if_broken(&mut self) {
        let (Db::Pg(c), Some(opts)) = (&mut self.conn, &self.reconnect) else {
            return;
        };
        if c.ping().await.is_ok() {
            return;
        }
        match opts.connect().await {
            Ok(fresh) => {
                tracing::info!("store write connection re-established");
                self.conn = Db::Pg(fresh);
                // Another instance may have appended to the audit chain.
                match AuditHead::load(&mut self.conn).await {
                    Ok(head) => self.head = head,
                    Err(e) => tracing::warn!(error = %e, "cannot reload the audit chain head"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "store write connection lost; retrying with the next batch")
            }
        }
    }

    async fn roll_back(&mut self) {
        if let Err(e) = db::rollback(&mut self.conn).await {
            // "no transaction is active" after a failed BEGIN is expected.
            tracing::debug!(error = %e, "rollback");
        }
        match AuditHead::load(&mut self.conn).await {
            Ok(head) => self.head = head,
            Err(e) => tracing::warn!(error = %e, "cannot reload the audit chain head"),
        }
    }

    /// Adopts the batch's audit head, reports the batch, answers every op.
    fn answer(&mut self, batch: Batch, done: Committed, started: Instant) {
        self.head = done.head;
        let stats = BatchStats {
            ops: batch.ops.len(),
            messages: batch.messages,
            commit: started.elapsed(),
        };
        tracing::debug!(
            ops = stats.ops,
            messages = stats.messages,
            commit_us = stats.commit.as_micros() as u64,
            "store group commit"
        );
        if let Some((kick, _)) = &self.checkpoint {
            kick.kick();
        }
        if let Some(cb) = &self.on_batch {
            cb(stats);
        }
        for (op, answer) in batch.ops.into_iter().zip(done.answers) {
            // A caller that stopped waiting still had its write committed.
            let _ = op.reply.send(answer);
        }
    }
}

/// Answers every op with the transaction's error, in its own context.
fn fail(ops: Vec<Op>, err: Arc<sqlx::Error>) {
    for op in ops {
        let e = StoreError::Write {
            op: op.req.op(),
            subject: op.req.subject(),
            source: Arc::clone(&err),
        };
        let _ = op.reply.send(Err(e));
    }
}
