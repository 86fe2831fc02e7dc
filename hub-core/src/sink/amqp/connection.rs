//! One connection to RabbitMQ, kept up by a supervisor task.
//!
//! lapin's own recovery is young, so the hub does its own: a supervisor
//! connects, runs a [`Setup`] on the new connection (declare the topology,
//! open the channels: a [`Session`]), publishes it for the users, and
//! watches it. When the connection or the session dies (broker restart,
//! `rabbitmqctl close_connection`, a channel error, a user's
//! [`Supervisor::report`]), it drops them and reconnects with exponential
//! backoff and jitter, set up afresh each time. Users never wait for a
//! reconnect: they take the current session or learn there is none.
//!
//! The publishing sink and the dead-queue drain both run on this.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lapin::{Connection, ConnectionProperties, Event};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::error::AmqpError;
use super::settings::AmqpSettings;
use crate::sink::BoxFuture;

/// How often a live connection's state is looked at (a user's report or a
/// connection error event wakes the watcher at once).
const WATCH_INTERVAL: Duration = Duration::from_millis(250);
/// How long a graceful close may take at shutdown or after a loss.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The state of a link to the broker, for `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AmqpHealth {
    /// Connected, with the topology declared and the channels open.
    pub connected: bool,
    /// When `connected` last changed (or the sink started).
    pub since: DateTime<Utc>,
    /// The most recent failure (connecting, declaring, publishing), kept
    /// after a reconnect so an operator can see what happened.
    pub last_error: Option<String>,
}

/// What a user of the connection keeps open on it (channels, consumers).
pub(crate) trait Session: Send + Sync + 'static {
    /// False once the session cannot be used any more; the supervisor then
    /// replaces the connection.
    fn alive(&self) -> bool;
}

/// Prepares a new connection for its user; runs after every (re)connect.
pub(crate) trait Setup: Send + Sync + 'static {
    type Session: Session;
    fn setup<'a>(&'a self, conn: &'a Connection)
        -> BoxFuture<'a, Result<Self::Session, AmqpError>>;
}

/// A connection and what was set up on it.
pub(crate) struct Live<S> {
    pub(crate) conn: Connection,
    pub(crate) session: S,
}

struct Shared<S> {
    live: Mutex<Option<Arc<Live<S>>>>,
    health: Mutex<HealthState>,
    kick: Notify,
}

struct HealthState {
    health: AmqpHealth,
    /// A user reported an error during the current session: its text is
    /// more telling than the watcher's "connection closed".
    reported: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent across a panic: use them anyway.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S> Shared<S> {
    fn set_live(&self, live: Arc<Live<S>>) {
        *lock(&self.live) = Some(live);
        let mut h = lock(&self.health);
        h.health.connected = true;
        h.health.since = Utc::now();
        h.reported = false;
    }

    fn set_lost(&self, reason: String) {
        *lock(&self.live) = None;
        let mut h = lock(&self.health);
        if h.health.connected {
            h.health.connected = false;
            h.health.since = Utc::now();
        }
        if !h.reported {
            h.health.last_error = Some(reason);
        }
        h.reported = false;
    }

    fn set_error(&self, error: String) {
        let mut h = lock(&self.health);
        h.health.last_error = Some(error);
        h.reported = h.health.connected;
    }
}

/// Keeps one connection up for one user (a sink, the drain).
pub(crate) struct Supervisor<S> {
    shared: Arc<Shared<S>>,
    cancel: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl<S: Session> Supervisor<S> {
    /// Connects and sets up once, then leaves a task to keep it so. Fails
    /// only when an operator must act ([`AmqpError::needs_operator`]: bad
    /// settings, a conflicting topology); an unreachable broker starts the
    /// supervisor degraded, reconnecting in the background.
    pub(crate) async fn start<T: Setup<Session = S>>(
        settings: AmqpSettings,
        connection_name: String,
        setup: T,
    ) -> Result<Self, AmqpError> {
        settings.validate()?;
        let shared = Arc::new(Shared {
            live: Mutex::new(None),
            health: Mutex::new(HealthState {
                health: AmqpHealth {
                    connected: false,
                    since: Utc::now(),
                    last_error: None,
                },
                reported: false,
            }),
            kick: Notify::new(),
        });
        let cancel = CancellationToken::new();
        let ctx = Ctx {
            settings,
            connection_name,
            setup,
            shared: Arc::clone(&shared),
            cancel: cancel.clone(),
        };
        if let Err(e) = ctx.attempt().await {
            if e.needs_operator() {
                return Err(e);
            }
            tracing::warn!(
                connection = %ctx.connection_name,
                url = %ctx.settings.redacted_url(),
                error = %e,
                "RabbitMQ unreachable; starting degraded and reconnecting in the background"
            );
        }
        let task = tokio::spawn(ctx.run());
        Ok(Supervisor {
            shared,
            cancel,
            task: Mutex::new(Some(task)),
        })
    }

    /// The current connection and session, if connected. Never waits.
    pub(crate) fn live(&self) -> Option<Arc<Live<S>>> {
        lock(&self.shared.live).clone()
    }

    pub(crate) fn health(&self) -> AmqpHealth {
        lock(&self.shared.health).health.clone()
    }

    /// A user saw the link fail: record why and have the watcher look now.
    pub(crate) fn report(&self, error: String) {
        self.shared.set_error(error);
        self.shared.kick.notify_one();
    }

    /// Has the watcher look at the session now (a user found it unusable).
    pub(crate) fn kick(&self) {
        self.shared.kick.notify_one();
    }

    /// Stops reconnecting and closes the connection; waits for both.
    pub(crate) async fn stop(&self) {
        self.cancel.cancel();
        let task = lock(&self.task).take();
        if let Some(task) = task {
            // A panicked or aborted task has nothing left to close.
            let _ = task.await;
        }
    }
}

impl<S> Drop for Supervisor<S> {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// What the supervisor task owns.
struct Ctx<T: Setup> {
    settings: AmqpSettings,
    connection_name: String,
    setup: T,
    shared: Arc<Shared<T::Session>>,
    cancel: CancellationToken,
}

impl<T: Setup> Ctx<T> {
    /// Connects and sets up; on success the session is published.
    async fn attempt(&self) -> Result<(), AmqpError> {
        let result = async {
            let conn = connect(&self.settings, &self.connection_name).await?;
            let setup =
                tokio::time::timeout(self.settings.connect_timeout(), self.setup.setup(&conn))
                    .await;
            match setup {
                Ok(Ok(session)) => Ok(Live { conn, session }),
                Ok(Err(e)) => {
                    close(&conn).await;
                    Err(e)
                }
                Err(_) => {
                    close(&conn).await;
                    Err(AmqpError::Connect {
                        url: self.settings.redacted_url().to_string(),
                        reason: format!(
                            "declaring the topology took over {} ms",
                            self.settings.connect_timeout_ms
                        ),
                    })
                }
            }
        }
        .await;
        match result {
            Ok(live) => {
                tracing::info!(connection = %self.connection_name, url = %self.settings.redacted_url(), "connected to RabbitMQ");
                self.shared.set_live(Arc::new(live));
                Ok(())
            }
            Err(e) => {
                self.shared.set_error(e.to_string());
                Err(e)
            }
        }
    }

    async fn run(self) {
        let initial = Duration::from_millis(self.settings.reconnect_initial_ms);
        let max = Duration::from_millis(self.settings.reconnect_max_ms);
        let mut backoff = initial;
        loop {
            let current = lock(&self.shared.live).clone();
            if let Some(live) = current {
                let reason = tokio::select! {
                    _ = self.cancel.cancelled() => {
                        self.shared.set_lost("stopped".into());
                        close(&live.conn).await;
                        return;
                    }
                    reason = watch(&live, &self.shared.kick) => reason,
                };
                self.shared.set_lost(reason.clone());
                let error = self.health_error().unwrap_or(reason);
                tracing::warn!(connection = %self.connection_name, error = %error, "lost RabbitMQ; reconnecting");
                close(&live.conn).await;
                backoff = initial;
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(jitter(backoff)) => {}
            }
            let result = tokio::select! {
                _ = self.cancel.cancelled() => return,
                r = self.attempt() => r,
            };
            match result {
                Ok(()) => backoff = initial,
                Err(e) => {
                    backoff = (backoff * 2).min(max);
                    if e.needs_operator() {
                        tracing::error!(connection = %self.connection_name, error = %e, "RabbitMQ refuses the hub's topology; retrying");
                    } else {
                        tracing::debug!(connection = %self.connection_name, error = %e, retry_in_ms = backoff.as_millis() as u64, "reconnect failed");
                    }
                }
            }
        }
    }

    fn health_error(&self) -> Option<String> {
        lock(&self.shared.health).health.last_error.clone()
    }
}

/// Resolves with the reason once the connection or session is gone.
async fn watch<S: Session>(live: &Live<S>, kick: &Notify) -> String {
    let mut events = live.conn.events_listener();
    let mut events_open = true;
    loop {
        let mut event_error = None;
        tokio::select! {
            _ = kick.notified() => {}
            _ = tokio::time::sleep(WATCH_INTERVAL) => {}
            event = events.next(), if events_open => match event {
                Some(Event::Error(e)) => event_error = Some(e.to_string()),
                Some(_) => {}
                // Ended: polling it again would spin.
                None => events_open = false,
            },
        }
        let status = live.conn.status();
        if !status.connected() {
            return match event_error {
                Some(e) => format!("connection lost: {e}"),
                None => format!("connection {}", describe(status)),
            };
        }
        if !live.session.alive() {
            return "a channel closed".into();
        }
    }
}

/// Opens a connection named `name` (what `rabbitmqctl list_connections
/// client_properties` shows), within the connect timeout.
pub(crate) async fn connect(settings: &AmqpSettings, name: &str) -> Result<Connection, AmqpError> {
    let uri = settings.amqp_uri()?;
    let url = settings.redacted_url().to_string();
    let props = ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(
        settings.connect_timeout(),
        Connection::connect_uri(uri, props),
    )
    .await
    {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(AmqpError::Connect {
            url,
            reason: e.to_string(),
        }),
        Err(_) => Err(AmqpError::Connect {
            url,
            reason: format!("no answer within {} ms", settings.connect_timeout_ms),
        }),
    }
}

fn describe(status: &lapin::ConnectionStatus) -> &'static str {
    if status.errored() {
        "failed"
    } else if status.closed() || status.closing() {
        "closed (by the broker, or the network)"
    } else {
        "lost"
    }
}

async fn close(conn: &Connection) {
    if conn.status().connected() {
        // Best effort: the broker drops what a dead client leaves anyway.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.close(200, "OK".into())).await;
    }
}

/// "Equal jitter": between half the backoff and all of it, so a fleet of
/// hubs does not reconnect in step after a broker restart.
fn jitter(backoff: Duration) -> Duration {
    backoff.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}
