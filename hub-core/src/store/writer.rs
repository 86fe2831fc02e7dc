//! The group-commit task: the one owner of the write connections.
//!
//! It waits for a command, takes whatever else is queued (up to `batch_max`
//! messages), opens a transaction and applies it all. Then it commits, and
//! only then answers each caller. Nothing is answered `Ok` before its
//! COMMIT returns.
//!
//! SQLite has one writer at a time, so there is one connection: while one
//! batch commits, the next one queues, and before committing the writer
//! looks at the queue again: ops that arrived meanwhile join the same
//! transaction (another round), so the fsync is shared by as many callers
//! as possible and batch sizes do not see-saw between large and tiny.
//!
//! PostgreSQL takes concurrent writers, so there may be several connections
//! ([`Committer`]s): each batch goes to a free one, and while it waits on
//! the server (round trips, the WAL flush) the next batch is already being
//! written on another. They coordinate exactly as separate hub instances
//! do: sequences, the dedup index, the audit chain's advisory lock.

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
    pub rx: mpsc::Receiver<Command>,
    pub batch_max: usize,
    /// Set once a close was asked for (or every handle is gone).
    pub closing: Option<Vec<oneshot::Sender<()>>>,
    /// One per write connection; SQLite has exactly one.
    pub committers: Vec<Committer>,
}

/// One write connection and what goes with it.
pub(crate) struct Committer {
    pub conn: Conn,
    /// The audit chain head as this connection last committed it; a batch
    /// works on a copy (re-chained when another writer appended).
    pub head: AuditHead,
    pub on_batch: Option<OnBatch>,
    /// PostgreSQL: how to open a new write connection when the old one broke.
    pub reconnect: Option<PgConnectOptions>,
    /// SQLite: the background checkpointer, kicked after each commit.
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
        if self.committers.len() > 1 {
            return self.run_parallel().await;
        }
        let Some(mut c) = self.committers.pop() else {
            return;
        };
        while self.closing.is_none() {
            let Some(first) = self.rx.recv().await else {
                self.closing = Some(Vec::new());
                break;
            };
            let mut batch = Batch::default();
            self.take(first, &mut batch);
            self.drain(&mut batch);
            if !batch.ops.is_empty() {
                c.commit(batch, Some(&mut |b: &mut Batch| self.drain(b)))
                    .await;
            }
        }
        self.committers.push(c);
        self.shut_down().await;
    }

    /// Several connections: each batch to a free one, committed in a task
    /// of its own; a batch forms while every connection is busy.
    async fn run_parallel(mut self) {
        let mut idle = std::mem::take(&mut self.committers);
        let total = idle.len();
        let (back, mut returned) = mpsc::unbounded_channel::<Committer>();
        while self.closing.is_none() {
            if idle.is_empty() {
                match returned.recv().await {
                    Some(c) => idle.push(c),
                    None => break,
                }
                continue;
            }
            let Some(first) = self.rx.recv().await else {
                self.closing = Some(Vec::new());
                break;
            };
            let mut batch = Batch::default();
            self.take(first, &mut batch);
            self.drain(&mut batch);
            while let Ok(c) = returned.try_recv() {
                idle.push(c);
            }
            if batch.ops.is_empty() {
                continue;
            }
            let Some(mut c) = idle.pop() else {
                continue;
            };
            let back = back.clone();
            tokio::spawn(async move {
                c.commit(batch, None).await;
                let _ = back.send(c);
            });
        }
        // Every batch under way commits (and is answered) before the close.
        while idle.len() < total {
            match returned.recv().await {
                Some(c) => idle.push(c),
                None => break,
            }
        }
        self.committers = idle;
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
        for c in std::mem::take(&mut self.committers) {
            c.close().await;
        }
        tracing::debug!("store writer stopped");
        for tx in waiters {
            let _ = tx.send(());
        }
    }
}

/// Adds late joiners to a batch under way; returns how many it added.
type Joiner<'a> = &'a mut (dyn FnMut(&mut Batch) -> usize + Send);

impl Committer {
    /// Closes the connection (SQLite: after the checkpointer stops, and
    /// the close checkpoints the WAL).
    async fn close(mut self) {
        if let Some((kick, task)) = self.checkpoint.take() {
            drop(kick);
            let _ = task.await;
        }
        let closed = on_db!(self.conn, |c| c.close().await);
        if let Err(e) = closed {
            tracing::warn!(error = %e, "closing the store's write connection failed");
        }
    }

    /// Commits `batch` as one transaction. When the transaction fails on a
    /// permanent error (a constraint one op violates), the ops are retried
    /// one per transaction so that one bad op does not fail its neighbours.
    /// (Also a batch of one: a conflict on an audit id, when another process
    /// appended to the chain, passes once the rollback reloaded the head.)
    async fn commit(&mut self, mut batch: Batch, mut join: Option<Joiner<'_>>) {
        let started = Instant::now();
        let err = match self.transaction(&mut batch, &mut join).await {
            Ok(done) => return self.answer(batch, done, started),
            Err(e) => match self.again(&mut batch, e).await {
                Ok(done) => return self.answer(batch, done, started),
                Err(e) => e,
            },
        };
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
                let done = match self.transaction(&mut one, &mut None).await {
                    Ok(done) => Ok(done),
                    Err(e) => self.again(&mut one, e).await,
                };
                match done {
                    Ok(done) => self.answer(one, done, started),
                    Err(e) => fail(one.ops, Arc::new(e)),
                }
            }
        } else {
            fail(batch.ops, Arc::new(err));
        }
    }

    /// PostgreSQL: a transaction that lost a race with another writer (a
    /// deadlock, or a unique key another writer committed first: the same
    /// message or broker dead letter at two instances) runs again as it
    /// was; then it sees the other's row and takes the repeat's path.
    async fn again(
        &mut self,
        batch: &mut Batch,
        mut err: sqlx::Error,
    ) -> Result<Committed, sqlx::Error> {
        for _ in 0..PG_CONFLICT_RETRIES {
            if !is_pg_conflict(&err) {
                break;
            }
            tracing::debug!(error = %err, "store group commit lost a race with another writer; again");
            err = match self.transaction(batch, &mut None).await {
                Ok(done) => return Ok(done),
                Err(e) => e,
            };
        }
        Err(err)
    }

    /// BEGIN (IMMEDIATE on SQLite), rounds of [`batch::apply`] (the first for
    /// `batch`, then for late joiners `join` adds), COMMIT. On error:
    /// ROLLBACK and reload the audit head, which a failed batch must not
    /// advance.
    async fn transaction(
        &mut self,
        batch: &mut Batch,
        join: &mut Option<Joiner<'_>>,
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
                let joined = join.as_mut().map_or(0, |j| j(batch));
                if joined == 0 {
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
