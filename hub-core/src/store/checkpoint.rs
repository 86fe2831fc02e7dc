//! Background WAL checkpoints, off the writer's connection.
//!
//! A checkpoint copies committed pages from the WAL back into the database
//! file and fsyncs it. Left to SQLite's auto-checkpoint, that work runs
//! inside the writer's COMMIT and roughly doubles its cost. This task does
//! it on its own connection (so its own thread) after commits, at most once
//! per [`INTERVAL`], in PASSIVE mode: it never blocks the writer or readers.
//! The writer keeps a larger auto-checkpoint threshold as a backstop: only
//! its checkpoint can finish the last few frames while no write is under
//! way, which lets SQLite restart the WAL from the beginning instead of
//! growing it; by then this task has copied nearly everything, so it is
//! cheap.

use std::time::{Duration, Instant};

use sqlx::{Connection, SqliteConnection};
use tokio::sync::mpsc;

/// At most one checkpoint per interval: a page that several commits
/// changed (an index leaf, a table's last page) is copied once, not once per
/// commit, while the WAL stays well below the writer's threshold.
const INTERVAL: Duration = Duration::from_millis(100);

/// Asks the checkpointer to run; dropping it stops the checkpointer.
#[derive(Debug)]
pub(crate) struct Kick(mpsc::Sender<()>);

impl Kick {
    /// After a commit: a checkpoint is wanted (one queued is enough).
    pub(crate) fn kick(&self) {
        let _ = self.0.try_send(());
    }
}

/// Starts the checkpointer on `conn`; it stops when the [`Kick`] is dropped
/// and the returned handle completes once its connection is closed.
pub(crate) fn spawn(mut conn: SqliteConnection) -> (Kick, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let task = tokio::spawn(async move {
        let mut last: Option<Instant> = None;
        while rx.recv().await.is_some() {
            // Rate limit (see INTERVAL); stop waiting as soon as the writer
            // goes away.
            let wait = last.map_or(Duration::ZERO, |t| INTERVAL.saturating_sub(t.elapsed()));
            let pause = tokio::time::sleep(wait);
            tokio::pin!(pause);
            let writer_gone = loop {
                tokio::select! {
                    () = &mut pause => break false,
                    kick = rx.recv() => if kick.is_none() { break true },
                }
            };
            if writer_gone {
                break;
            }
            last = Some(Instant::now());
            let done: Result<(i64, i64, i64), sqlx::Error> =
                sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&mut conn)
                    .await;
            if let Err(e) = done {
                // Not fatal: the writer's auto-checkpoint is the backstop.
                tracing::debug!(error = %e, "background checkpoint failed");
            }
        }
        if let Err(e) = conn.close().await {
            tracing::debug!(error = %e, "closing the checkpoint connection failed");
        }
    });
    (Kick(tx), task)
}
