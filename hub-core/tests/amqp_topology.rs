//! The topology the hub declares on a real RabbitMQ: idempotent, conflicts
//! named for the operator, and the retry queue's round trip.

mod amqp_support;

use std::time::{Duration, Instant};

use amqp_support::*;
use hub_core::sink::amqp::{declare, AmqpError, AmqpSink, Topology, TopologyObject};
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declaring_twice_is_fine() {
    let Some((conn, _ch)) = client().await else {
        return;
    };
    let settings = settings("twice");
    let mut q = queue(
        &settings,
        "results",
        &["*.qc.#", "*.batch.dispositioned"],
        5,
    );
    q.retry_ttl_ms = Some(30_000);
    let retry = q.retry_queue().unwrap();
    let _cleanup = Cleanup::new(&settings, &[&q.name, &retry]);
    let topology = Topology {
        queues: vec![q.clone()],
    };
    declare(&conn, &settings, &topology).await.unwrap();
    declare(&conn, &settings, &topology).await.unwrap();
    // And through the sink, as a restarted hub does.
    let sink = AmqpSink::start("amqp", settings.clone(), topology)
        .await
        .unwrap();
    assert!(sink.health().connected);
    sink.stop().await;
    for name in [&q.name, &retry, &settings.dead_letter_queue] {
        assert!(queue_exists(&conn, name).await.is_some(), "{name} exists");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_queue_stops_the_sink_and_is_named() {
    let Some((conn, ch)) = client().await else {
        return;
    };
    let settings = settings("conflict");
    let classic = queue(&settings, "classic", &["#"], 5);
    let limited = queue(&settings, "limited", &["#"], 5);
    let _cleanup = Cleanup::new(&settings, &[&classic.name, &limited.name]);
    // Someone made one queue classic by hand, and declared the other with
    // another delivery limit.
    ch.queue_declare(
        classic.name.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    declare(
        &conn,
        &settings,
        &Topology {
            queues: vec![limited.clone()],
        },
    )
    .await
    .unwrap();
    let mut other_limit = limited.clone();
    other_limit.delivery_limit = 6;

    let topology = Topology {
        queues: vec![classic.clone(), other_limit],
    };
    let err = match AmqpSink::start("amqp", settings.clone(), topology).await {
        Ok(_) => panic!("a conflicting topology must not start"),
        Err(e) => e,
    };
    assert!(err.needs_operator(), "{err}");
    let AmqpError::Conflict(conflicts) = &err else {
        panic!("a typed conflict: {err:?}")
    };
    let names: Vec<&TopologyObject> = conflicts.iter().map(|c| &c.object).collect();
    assert_eq!(
        names,
        [
            &TopologyObject::Queue(classic.name.clone()),
            &TopologyObject::Queue(limited.name.clone())
        ],
        "both conflicts, each named"
    );
    let text = err.to_string();
    for expected in [
        format!("queue {} exists with different arguments", classic.name),
        format!("queue {} exists with different arguments", limited.name),
        // The broker's own words (which argument it names first is its choice).
        "PRECONDITION_FAILED - inequivalent arg".to_string(),
        "received '6' but current is '5'".to_string(),
        "delete it".to_string(),
    ] {
        assert!(text.contains(&expected), "{expected:?} in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_comes_back_to_its_own_queue_only_after_the_ttl() {
    let Some((conn, ch)) = client().await else {
        return;
    };
    let settings = settings("retry");
    let mut q = queue(&settings, "work", &["car-t.#"], 5);
    q.retry_ttl_ms = Some(700);
    // Another route's queue on the same key must not get the retry.
    let other = queue(&settings, "other", &["car-t.#"], 5);
    let topology = Topology {
        queues: vec![q.clone(), other.clone()],
    };
    declare(&conn, &settings, &topology).await.unwrap();
    let retry = q.retry_queue().unwrap();
    let _cleanup = Cleanup::new(&settings, &[&q.name, &retry, &other.name]);

    // A consumer of `work` puts a message on its retry queue (default
    // exchange, the queue's name as key).
    let mut headers = FieldTable::default();
    headers.insert("coi".into(), AMQPValue::LongString(LongString::from("C1")));
    let sent = Instant::now();
    ch.basic_publish(
        "".into(),
        retry.as_str().into(),
        BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        },
        b"retry me",
        BasicProperties::default()
            .with_message_id("m-1".into())
            .with_delivery_mode(2)
            .with_headers(headers),
    )
    .await
    .unwrap()
    .await
    .unwrap();

    let got = take(&ch, &q.name, 1, Duration::from_secs(10)).await;
    let waited = sent.elapsed();
    assert_eq!(got.len(), 1, "the retry came back to {}", q.name);
    assert!(
        waited >= Duration::from_millis(650),
        "not before the TTL: {waited:?}"
    );
    let d = &got[0];
    assert_eq!(d.data, b"retry me");
    assert_eq!(
        d.properties.message_id().as_ref().map(|s| s.as_str()),
        Some("m-1")
    );
    assert_eq!(header(d, "coi").as_deref(), Some("C1"));
    assert_eq!(
        queue_exists(&conn, &retry).await,
        Some(0),
        "the retry queue is empty"
    );
    assert_eq!(
        queue_exists(&conn, &other.name).await,
        Some(0),
        "a retry does not fan out to other queues"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_exchange_is_named_too() {
    let Some((conn, ch)) = client().await else {
        return;
    };
    let settings = settings("exchange");
    let _cleanup = Cleanup::new(&settings, &[]);
    ch.exchange_declare(
        settings.exchange.as_str().into(),
        lapin::ExchangeKind::Direct,
        lapin::options::ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let err = declare(&conn, &settings, &Topology::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "exchange {} exists with different arguments",
            settings.exchange
        )),
        "{text}"
    );
}
