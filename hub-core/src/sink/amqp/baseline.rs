//! The comparison baseline for the AMQP benchmark: a plain lapin publisher
//! with publisher confirms and a fixed number of publishes in flight. It
//! declares nothing; the exchange must exist.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Confirmation};

use super::connection::connect;
use super::error::AmqpError;
use super::settings::AmqpSettings;

/// What a baseline run did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaselineStats {
    /// Messages the broker confirmed (acked).
    pub messages: usize,
    /// From the first publish to the last confirm.
    pub elapsed: Duration,
}

impl BaselineStats {
    /// Confirmed messages per second.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Publishes `body` `n` times to `exchange` with `routing_key`, persistent,
/// keeping at most `in_flight` unconfirmed, and waits for every confirm.
/// A nack or a lost channel ends the run with an error.
pub async fn raw_publish(
    url: &str,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    n: usize,
    in_flight: usize,
) -> Result<BaselineStats, AmqpError> {
    let settings = AmqpSettings {
        url: url.to_string(),
        connection_name: "cgthub baseline".into(),
        ..AmqpSettings::default()
    };
    let short = |what: &str, v: &str| {
        ShortString::try_new(v).map_err(|e| AmqpError::InvalidSettings(format!("{what}: {e}")))
    };
    let (exchange, routing_key) = (
        short("exchange", exchange)?,
        short("routing key", routing_key)?,
    );
    let conn = connect(&settings, &settings.connection_name).await?;
    let channel = conn
        .create_channel()
        .await
        .map_err(AmqpError::channel("opening a channel"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(AmqpError::channel("enabling publisher confirms"))?;
    let props = BasicProperties::default().with_delivery_mode(2);
    let in_flight = in_flight.max(1);
    let mut window = VecDeque::with_capacity(in_flight);
    let mut acked = 0;
    let start = Instant::now();
    for _ in 0..n {
        if window.len() >= in_flight {
            if let Some(confirm) = window.pop_front() {
                acked += confirmed(confirm).await?;
            }
        }
        let confirm = channel
            .basic_publish(
                exchange.clone(),
                routing_key.clone(),
                BasicPublishOptions::default(),
                body,
                props.clone(),
            )
            .await
            .map_err(|e| AmqpError::Publish(format!("publishing: {e}")))?;
        window.push_back(confirm);
    }
    while let Some(confirm) = window.pop_front() {
        acked += confirmed(confirm).await?;
    }
    let elapsed = start.elapsed();
    let _ = conn.close(200, "OK".into()).await;
    Ok(BaselineStats {
        messages: acked,
        elapsed,
    })
}

async fn confirmed(confirm: lapin::PublisherConfirm) -> Result<usize, AmqpError> {
    match confirm.await {
        Ok(Confirmation::Ack(_)) => Ok(1),
        Ok(other) => Err(AmqpError::Publish(format!(
            "the broker did not ack: {other:?}"
        ))),
        Err(e) => Err(AmqpError::Publish(format!("waiting for a confirm: {e}"))),
    }
}
