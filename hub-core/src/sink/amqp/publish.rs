//! The AMQP sink: publishes outbox items to the events exchange with
//! publisher confirms and `mandatory`, pipelined.
//!
//! `Ok` for an item means the broker confirmed it (stored in every queue it
//! was routed to). A message the broker *returned* (no queue bound for its
//! routing key) is confirmed too, and comes back as `unroutable`. A nack,
//! a confirm that does not come in time, or a channel that dies leaves the
//! outcome unknown: the item fails transiently and the outbox sends it
//! again; consumers drop the duplicate by `message_id` (the event id).
//!
//! Returned messages are matched to items by message id and routing key,
//! not by lapin's pairing: lapin hands the oldest returned message to
//! whichever confirmation completes next, which under pipelining (or a
//! multiple-ack resolved in hash order) can be another item's.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use lapin::message::BasicReturnMessage;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, PublisherConfirm};
use tokio::time::Instant;

use super::connection::{AmqpHealth, Session, Setup, Supervisor};
use super::error::AmqpError;
use super::settings::AmqpSettings;
use super::topology::{declare, Topology};
use super::{CONTENT_TYPE_JSON, HEADER_COI, HEADER_PARTNER, HEADER_PRODUCT, HEADER_SCHEMA};
use crate::event::SCHEMA;
use crate::sink::{BoxFuture, Sink, SinkError};
use crate::store::OutboxItem;

/// Persistent (AMQP `delivery_mode` 2).
const PERSISTENT: u8 = 2;

/// Delivers events to RabbitMQ. See the module documentation.
pub struct AmqpSink {
    name: String,
    settings: AmqpSettings,
    supervisor: Supervisor<Publisher>,
    /// What every new connection declares; replaced when routes reload.
    topology: Arc<Mutex<Topology>>,
    /// One batch at a time on the channel: keeps `max_in_flight` a bound.
    batch_lock: tokio::sync::Mutex<()>,
}

/// A confirm-mode channel on a connection whose topology is declared.
pub(crate) struct Publisher {
    channel: Channel,
    /// Set when a confirm went missing: the channel's state is in doubt,
    /// so the supervisor replaces it.
    poisoned: AtomicBool,
}

impl Session for Publisher {
    fn alive(&self) -> bool {
        !self.poisoned.load(Ordering::Relaxed) && self.channel.status().connected()
    }
}

struct SinkSetup {
    settings: AmqpSettings,
    topology: Arc<Mutex<Topology>>,
}

impl Setup for SinkSetup {
    type Session = Publisher;

    fn setup<'a>(&'a self, conn: &'a Connection) -> BoxFuture<'a, Result<Publisher, AmqpError>> {
        Box::pin(async move {
            let topology = self
                .topology
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            declare(conn, &self.settings, &topology).await?;
            let channel = conn
                .create_channel()
                .await
                .map_err(AmqpError::channel("opening the publish channel"))?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(AmqpError::channel("enabling publisher confirms"))?;
            Ok(Publisher {
                channel,
                poisoned: AtomicBool::new(false),
            })
        })
    }
}

impl AmqpSink {
    /// Connects, declares the topology and opens a confirm channel.
    ///
    /// Fails when the settings are invalid or the broker's topology
    /// conflicts with ours (the hub must not start). An unreachable broker
    /// is not a failure: the sink starts degraded (`health().connected` is
    /// false, deliveries fail transiently) and connects in the background.
    pub async fn start(
        name: &str,
        settings: AmqpSettings,
        topology: Topology,
    ) -> Result<AmqpSink, AmqpError> {
        topology.validate()?;
        let topology = Arc::new(Mutex::new(topology));
        let setup = SinkSetup {
            settings: settings.clone(),
            topology: Arc::clone(&topology),
        };
        let supervisor =
            Supervisor::start(settings.clone(), settings.connection_name.clone(), setup).await?;
        Ok(AmqpSink {
            name: name.to_string(),
            settings,
            supervisor,
            topology,
            batch_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Puts a new topology in force (routes were reloaded): declares it
    /// now when connected, and on every reconnect from then on. A conflict
    /// leaves the topology in force unchanged, so the caller can refuse the
    /// routes that asked for it. Objects the old topology declared are left
    /// on the broker: deleting a queue could delete messages.
    pub async fn set_topology(&self, topology: Topology) -> Result<(), AmqpError> {
        topology.validate()?;
        if let Some(live) = self.supervisor.live() {
            match declare(&live.conn, &self.settings, &topology).await {
                Ok(()) => {}
                Err(e) if e.needs_operator() => return Err(e),
                // The link failed meanwhile: the reconnect declares it.
                Err(e) => {
                    tracing::warn!(sink = %self.name, error = %e, "could not declare the new topology now; will on reconnect")
                }
            }
        }
        *self.topology.lock().unwrap_or_else(|e| e.into_inner()) = topology;
        Ok(())
    }

    /// Whether the sink is connected, since when, and the last error.
    /// Cheap: reads a snapshot.
    pub fn health(&self) -> AmqpHealth {
        self.supervisor.health()
    }

    /// Stops reconnecting and closes the connection. Dropping the sink
    /// stops the background task too, without waiting for the close.
    pub async fn stop(&self) {
        self.supervisor.stop().await;
    }

    async fn deliver_batch(&self, batch: &[OutboxItem]) -> Vec<Result<(), SinkError>> {
        let _one_at_a_time = self.batch_lock.lock().await;
        let live = match self.supervisor.live() {
            Some(live) if live.session.alive() => live,
            _ => {
                self.supervisor.kick();
                return vec![Err(self.not_connected()); batch.len()];
            }
        };
        let (results, link_error) =
            publish_batch(&live.session.channel, &self.settings, batch).await;
        if let Some(error) = link_error {
            live.session.poisoned.store(true, Ordering::Relaxed);
            tracing::warn!(sink = %self.name, error = %error, "publishing to RabbitMQ failed; unconfirmed events will be resent");
            self.supervisor.report(error);
        }
        results
    }

    fn not_connected(&self) -> SinkError {
        let h = self.health();
        let why = h.last_error.as_deref().unwrap_or("connecting");
        SinkError::transient(format!(
            "not connected to RabbitMQ since {} ({why}): not sent, will be retried",
            h.since.format("%Y-%m-%dT%H:%M:%SZ")
        ))
    }
}

impl Sink for AmqpSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, batch: &'a [OutboxItem]) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        Box::pin(self.deliver_batch(batch))
    }

    /// Connected, and the session not found broken by a publish: after a
    /// confirm timeout or a channel error the relay sees the outage at once
    /// and leaves the batch's events due, their attempts unspent, instead
    /// of counting the link's failure against each event.
    fn ready(&self) -> bool {
        self.supervisor
            .live()
            .is_some_and(|live| live.session.alive())
    }
}

/// Where one item stands while its batch is in flight.
enum State {
    /// Not decided yet (only between publish and confirm).
    Pending,
    /// The broker confirmed it; unroutable if it was also returned.
    Acked,
    Done(Result<(), SinkError>),
}

/// Publishes `batch` with at most `max_in_flight` unconfirmed, then waits
/// for the rest. Returns one result per item, and the error that shows the
/// channel is no longer to be trusted, if one was seen.
async fn publish_batch(
    channel: &Channel,
    settings: &AmqpSettings,
    batch: &[OutboxItem],
) -> (Vec<Result<(), SinkError>>, Option<String>) {
    let mut states: Vec<State> = batch.iter().map(|_| State::Pending).collect();
    let mut returned: HashMap<(String, String), usize> = HashMap::new();
    let mut window: VecDeque<(usize, PublisherConfirm, Instant)> = VecDeque::new();
    let mut link_error: Option<String> = None;
    let timestamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let timeout = settings.confirm_timeout();
    let exchange = ShortString::from(settings.exchange.as_str());

    for (i, item) in batch.iter().enumerate() {
        if link_error.is_some() {
            states[i] = State::Done(Err(SinkError::transient(
                "not sent: the channel failed earlier in the batch; will be retried",
            )));
            continue;
        }
        let (routing_key, props) = match message(item, timestamp) {
            Ok(m) => m,
            Err(e) => {
                states[i] = State::Done(Err(e));
                continue;
            }
        };
        while window.len() >= settings.max_in_flight {
            if let Some(entry) = window.pop_front() {
                settle(entry, &mut states, &mut returned, &mut link_error, settings).await;
            }
        }
        let deadline = Instant::now() + timeout;
        let publish = channel.basic_publish(
            exchange.clone(),
            routing_key,
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            item.body.as_bytes(),
            props,
        );
        match tokio::time::timeout_at(deadline, publish).await {
            Ok(Ok(confirm)) => window.push_back((i, confirm, deadline)),
            Ok(Err(e)) => {
                states[i] = State::Done(Err(unknown(format!("publishing failed: {e}"))));
                link_error = Some(format!("publishing failed: {e}"));
            }
            Err(_) => {
                states[i] = State::Done(Err(unknown(format!(
                    "publishing took over {} ms",
                    settings.confirm_timeout_ms
                ))));
                link_error = Some("a publish did not go out in time".into());
            }
        }
    }
    while let Some(entry) = window.pop_front() {
        settle(entry, &mut states, &mut returned, &mut link_error, settings).await;
    }

    let results = batch
        .iter()
        .zip(states)
        .map(|(item, state)| match state {
            State::Done(r) => r,
            State::Acked => match returned.get_mut(&(item.event_id.clone(), item.routing_key.clone())) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    Err(SinkError::unroutable(format!(
                        "RabbitMQ returned it: no queue is bound to routing key {:?} on exchange {}",
                        item.routing_key, settings.exchange
                    )))
                }
                _ => Ok(()),
            },
            State::Pending => Err(unknown("no confirm was awaited".into())),
        })
        .collect();
    (results, link_error)
}

/// Awaits one confirm, until its deadline.
async fn settle(
    (i, confirm, deadline): (usize, PublisherConfirm, Instant),
    states: &mut [State],
    returned: &mut HashMap<(String, String), usize>,
    link_error: &mut Option<String>,
    settings: &AmqpSettings,
) {
    let mut keep_returned = |m: Option<BasicReturnMessage>| {
        if let Some(m) = m {
            let id = m
                .delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default();
            *returned
                .entry((id, m.delivery.routing_key.to_string()))
                .or_default() += 1;
        }
    };
    states[i] = match tokio::time::timeout_at(deadline, confirm).await {
        Ok(Ok(Confirmation::Ack(m))) => {
            keep_returned(m);
            State::Acked
        }
        Ok(Ok(Confirmation::Nack(m))) => {
            keep_returned(m);
            State::Done(Err(SinkError::transient(
                "RabbitMQ refused it (nack: a queue is full or failed); will be resent",
            )))
        }
        Ok(Ok(Confirmation::NotRequested)) => {
            *link_error = Some("the channel is not in confirm mode".into());
            State::Done(Err(unknown("the broker was not asked to confirm".into())))
        }
        Ok(Err(e)) => {
            *link_error = Some(format!("waiting for confirms: {e}"));
            State::Done(Err(unknown(format!(
                "the channel failed before the confirm: {e}"
            ))))
        }
        Err(_) => {
            *link_error = Some(format!(
                "no publisher confirm within {} ms",
                settings.confirm_timeout_ms
            ));
            State::Done(Err(unknown(format!(
                "no confirm within {} ms",
                settings.confirm_timeout_ms
            ))))
        }
    };
}

fn unknown(what: String) -> SinkError {
    SinkError::transient(format!(
        "{what}: whether RabbitMQ stored it is unknown; it will be resent (consumers drop duplicates by message_id)"
    ))
}

/// The routing key and properties of an item's message. Fails (for good)
/// only for values AMQP cannot carry: a short string over 255 bytes.
fn message(item: &OutboxItem, timestamp: u64) -> Result<(ShortString, BasicProperties), SinkError> {
    let short = |what: &str, v: &str| {
        ShortString::try_new(v).map_err(|e| {
            SinkError::permanent(format!("the event's {what} cannot be sent over AMQP: {e}"))
        })
    };
    let routing_key = short("routing key", &item.routing_key)?;
    let mut headers = FieldTable::default();
    headers.insert(HEADER_SCHEMA.into(), long_string(SCHEMA));
    let optional = [
        (HEADER_COI, item.coi.as_deref()),
        (HEADER_PRODUCT, item.product.as_deref()),
        (HEADER_PARTNER, Some(item.partner.as_str())),
    ];
    for (name, value) in optional {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            headers.insert(name.into(), long_string(v));
        }
    }
    let props = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_message_id(short("event id", &item.event_id)?)
        .with_type(short("kind", &item.kind)?)
        .with_content_type(CONTENT_TYPE_JSON.into())
        .with_timestamp(timestamp)
        .with_headers(headers);
    Ok((routing_key, props))
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> OutboxItem {
        OutboxItem {
            id: 1,
            event_id: "e1".into(),
            route: "r".into(),
            sink: "s".into(),
            attempts: 0,
            routing_key: "car-t.qc.result_reported".into(),
            kind: "qc.result_reported".into(),
            coi: Some("COI1".into()),
            product: None,
            partner: "LAB".into(),
            body: "{}".into(),
        }
    }

    #[test]
    fn properties_and_headers() {
        let (rk, p) = message(&item(), 1_700_000_000).unwrap();
        assert_eq!(rk.as_str(), "car-t.qc.result_reported");
        assert_eq!(p.delivery_mode(), &Some(2));
        assert_eq!(p.message_id().as_ref().map(|s| s.as_str()), Some("e1"));
        assert_eq!(
            p.kind().as_ref().map(|s| s.as_str()),
            Some("qc.result_reported")
        );
        assert_eq!(p.timestamp(), &Some(1_700_000_000));
        let h = p.headers().as_ref().unwrap().inner();
        assert_eq!(h.get(HEADER_COI), Some(&long_string("COI1")));
        assert_eq!(h.get(HEADER_SCHEMA), Some(&long_string("cgt.event/v1")));
        assert!(!h.contains_key(HEADER_PRODUCT), "None is omitted");
    }

    #[test]
    fn a_routing_key_amqp_cannot_carry_fails_for_good() {
        let mut it = item();
        it.routing_key = "k".repeat(300);
        let err = message(&it, 0).unwrap_err();
        assert_eq!(err.class, crate::error::ErrorClass::Permanent);
        assert!(err.message.contains("routing key"), "{err}");
    }
}
