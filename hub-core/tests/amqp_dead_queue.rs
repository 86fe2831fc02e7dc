//! The dead-queue drain on a real RabbitMQ: what consumers refuse, or
//! cannot take within the delivery limit, reaches the hub's handler with
//! the broker's reason; a failing handler loses nothing.

mod amqp_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use amqp_support::*;
use futures_util::StreamExt;
use hub_core::sink::amqp::{AmqpSettings, DeadDelivery, DeadHandler, DeadQueueDrain};
use hub_core::sink::Sink;
use lapin::options::{
    BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use tokio::sync::mpsc;

/// A handler that passes every dead delivery to the test.
fn forward() -> (DeadHandler, mpsc::UnboundedReceiver<DeadDelivery>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler: DeadHandler = Arc::new(move |d| {
        let tx = tx.clone();
        Box::pin(async move { tx.send(d).map_err(|e| e.to_string()) })
    });
    (handler, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<DeadDelivery>, within: Duration) -> DeadDelivery {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("the drain handler got it in time")
        .expect("handler alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_over_the_limit_messages_reach_the_handler_with_their_reason() {
    let Some((conn, _ch)) = client().await else {
        return;
    };
    let settings = settings("drain");
    let q = queue(&settings, "results", &["car-t.#"], 2);
    let _cleanup = Cleanup::new(&settings, &[&q.name]);
    let sink = start_sink(&settings, &q).await;
    let (handler, mut rx) = forward();
    let drain = DeadQueueDrain::start(settings.clone(), handler)
        .await
        .unwrap();
    assert!(drain.health().connected);

    // A consumer refuses the first message outright.
    let refused = item(1, "car-t.qc.result_reported");
    // x-death times are whole seconds.
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    assert_eq!(
        sink.deliver(std::slice::from_ref(&refused)).await,
        vec![Ok(())]
    );
    let consumer_ch = conn.create_channel().await.unwrap();
    let mut consumer = consumer_ch
        .basic_consume(
            q.name.as_str().into(),
            "refuser".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let d = consumer.next().await.unwrap().unwrap();
    d.acker
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let dead = next(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(dead.reason, "rejected");
    assert_eq!(
        dead.queue.as_deref(),
        Some(q.name.as_str()),
        "the queue it died in"
    );
    assert_eq!(dead.message_id.as_deref(), Some(refused.event_id.as_str()));
    assert_eq!(dead.kind.as_deref(), Some("qc.result_reported"));
    assert_eq!(dead.routing_key, "car-t.qc.result_reported");
    assert_eq!(dead.body, refused.body.as_bytes());
    assert_eq!(
        (dead.coi, dead.product, dead.partner),
        (
            refused.coi.clone(),
            refused.product.clone(),
            Some("LAB".to_string())
        )
    );
    assert_eq!(dead.death_count, 1);
    let at = dead.first_death_at.expect("when it died");
    assert!(at >= before && at <= chrono::Utc::now(), "{at}");

    // The second keeps being put back until the broker gives up on it.
    let poison = item(2, "car-t.qc.result_reported");
    assert_eq!(
        sink.deliver(std::slice::from_ref(&poison)).await,
        vec![Ok(())]
    );
    let seen = Arc::new(Mutex::new(0u32));
    let counter = Arc::clone(&seen);
    let nacker = tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            *counter.lock().unwrap() += 1;
            let _ = d
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await;
        }
    });
    let dead = next(&mut rx, Duration::from_secs(15)).await;
    assert_eq!(dead.reason, "delivery_limit");
    assert_eq!(dead.queue.as_deref(), Some(q.name.as_str()));
    assert_eq!(dead.message_id.as_deref(), Some(poison.event_id.as_str()));
    let deliveries = *seen.lock().unwrap();
    assert!(
        deliveries > 2 && deliveries <= 3,
        "dead-lettered after the limit of 2 redeliveries, not before: {deliveries} deliveries"
    );
    nacker.abort();
    assert!(
        eventually(Duration::from_secs(5), || async {
            queue_exists(&conn, &settings.dead_letter_queue).await == Some(0)
        })
        .await,
        "acked once handled"
    );

    drain.stop().await;
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_loses_nothing_and_the_drain_reconnects() {
    let Some((conn, ch)) = client().await else {
        return;
    };
    let settings = AmqpSettings {
        reconnect_initial_ms: 50,
        reconnect_max_ms: 400,
        ..settings("drainfail")
    };
    let _cleanup = Cleanup::new(&settings, &[]);
    // Fails the first two tries of every message, like a store that is
    // briefly down.
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = Arc::clone(&calls);
    let handler: DeadHandler = Arc::new(move |d: DeadDelivery| {
        let log = Arc::clone(&log);
        Box::pin(async move {
            let id = d.message_id.unwrap_or_default();
            let mut log = log.lock().unwrap();
            log.push(id.clone());
            if log.iter().filter(|c| **c == id).count() <= 2 {
                Err("store unavailable".to_string())
            } else {
                Ok(())
            }
        })
    });
    let drain = DeadQueueDrain::start(settings.clone(), handler)
        .await
        .unwrap();
    let publish_dead = |id: &'static str| {
        let ch = ch.clone();
        let dlx = settings.dead_letter_exchange.clone();
        async move {
            ch.basic_publish(
                dlx.as_str().into(),
                "any.key".into(),
                BasicPublishOptions::default(),
                b"{}",
                BasicProperties::default().with_message_id(id.into()),
            )
            .await
            .unwrap();
        }
    };
    publish_dead("m-1").await;
    let count = |id: &str| calls.lock().unwrap().iter().filter(|c| *c == id).count();
    assert!(
        eventually(Duration::from_secs(10), || async { count("m-1") >= 3 }).await,
        "redelivered to the handler until it succeeds: {:?}",
        calls.lock().unwrap()
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            queue_exists(&conn, &settings.dead_letter_queue).await == Some(0)
        })
        .await,
        "acked after the handler succeeded"
    );
    assert_eq!(count("m-1"), 3, "and not handled again");

    // The drain's own connection is cut: it comes back by itself.
    let name = format!("{} (dead-queue drain)", settings.connection_name);
    assert_eq!(close_connection(&name), 1);
    publish_dead("m-2").await;
    assert!(
        eventually(Duration::from_secs(15), || async { count("m-2") >= 3 }).await,
        "handled after the reconnect: {:?} {:?}",
        calls.lock().unwrap(),
        drain.health()
    );
    assert!(drain.health().connected);
    drain.stop().await;
}
