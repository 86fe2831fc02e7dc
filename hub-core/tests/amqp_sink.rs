//! The AMQP sink against a real RabbitMQ: what a consumer receives, what
//! comes back unroutable, and what happens when the connection is cut.

mod amqp_support;

use std::time::{Duration, Instant};

use amqp_support::*;
use hub_core::error::ErrorClass;
use hub_core::sink::amqp::{raw_publish, AmqpSettings, AmqpSink, Topology};
use hub_core::sink::{Sink, UNROUTABLE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_property_header_key_and_body_arrive() {
    let Some((_conn, ch)) = client().await else {
        return;
    };
    let settings = settings("props");
    let q = queue(&settings, "results", &["*.qc.#"], 5);
    let _cleanup = Cleanup::new(&settings, &[&q.name]);
    let sink = start_sink(&settings, &q).await;
    assert!(sink.health().connected, "{:?}", sink.health());
    let full = item(1, "car-t.qc.result_reported");
    let mut sparse = item(2, "car-t.qc.result_reported");
    (sparse.coi, sparse.product) = (None, None);
    let before = chrono::Utc::now().timestamp() as u64;
    let results = sink.deliver(&[full.clone(), sparse.clone()]).await;
    assert_eq!(results, vec![Ok(()), Ok(())]);

    let got = take(&ch, &q.name, 2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2, "both confirmed events are in the queue");
    for (d, sent) in got.iter().zip([&full, &sparse]) {
        let p = &d.properties;
        assert_eq!(d.exchange.as_str(), settings.exchange);
        assert_eq!(d.routing_key.as_str(), "car-t.qc.result_reported");
        assert_eq!(d.data, sent.body.as_bytes(), "the body byte for byte");
        assert_eq!(p.delivery_mode(), &Some(2), "persistent");
        assert_eq!(
            p.message_id().as_ref().map(|s| s.as_str()),
            Some(sent.event_id.as_str())
        );
        assert_eq!(
            p.kind().as_ref().map(|s| s.as_str()),
            Some("qc.result_reported")
        );
        assert_eq!(
            p.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        let ts = p.timestamp().expect("a timestamp");
        assert!(
            ts >= before && ts <= before + 60,
            "timestamp {ts} is now ({before})"
        );
        assert_eq!(header(d, "schema").as_deref(), Some("cgt.event/v1"));
        assert_eq!(header(d, "partner").as_deref(), Some("LAB"));
        assert_eq!(header(d, "coi"), sent.coi);
        assert_eq!(header(d, "product"), sent.product);
    }
    let headers = got[1].properties.headers().as_ref().unwrap().inner();
    assert!(
        !headers.contains_key("coi") && !headers.contains_key("product"),
        "a header without a value is omitted: {headers:?}"
    );
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_items_are_told_apart_from_routable_ones_in_one_batch() {
    let Some((_conn, ch)) = client().await else {
        return;
    };
    let settings = AmqpSettings {
        max_in_flight: 64,
        ..settings("unroutable")
    };
    let q = queue(&settings, "bound", &["bound.#"], 5);
    let _cleanup = Cleanup::new(&settings, &[&q.name]);
    let sink = start_sink(&settings, &q).await;
    // A pipelined batch (several windows) with unroutable items scattered
    // through it, and one event sent to both a bound and an unbound key.
    let mut batch = Vec::new();
    let mut expect_unroutable = Vec::new();
    for n in 0..300i64 {
        let unroutable = n % 7 == 3 || n % 11 == 0;
        let key = if unroutable {
            "nobody.listens"
        } else {
            "bound.qc.x"
        };
        batch.push(item(n, key));
        expect_unroutable.push(unroutable);
    }
    let mut twin = batch[5].clone();
    twin.routing_key = "nobody.listens".into();
    batch.push(twin);
    expect_unroutable.push(true);

    let results = sink.deliver(&batch).await;
    assert_eq!(results.len(), batch.len());
    for (i, (r, unroutable)) in results.iter().zip(&expect_unroutable).enumerate() {
        if *unroutable {
            let e = r.as_ref().expect_err("unroutable");
            assert_eq!(
                (e.code, e.class),
                (UNROUTABLE, ErrorClass::Permanent),
                "item {i}: {e}"
            );
            assert!(e.message.contains("nobody.listens"), "{e}");
        } else {
            assert_eq!(r, &Ok(()), "item {i}");
        }
    }
    let routable = expect_unroutable.iter().filter(|u| !**u).count();
    let got = take(&ch, &q.name, routable + 1, Duration::from_secs(3)).await;
    assert_eq!(got.len(), routable, "exactly the routable items are queued");
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_without_a_broker_starts_degraded_and_fails_fast() {
    let settings = AmqpSettings {
        url: "amqp://guest:secret-pw@127.0.0.1:1/%2f".into(),
        ..AmqpSettings::default()
    };
    let sink = AmqpSink::start("amqp", settings, Topology::default())
        .await
        .expect("an unreachable broker does not stop the hub");
    let h = sink.health();
    assert!(!h.connected);
    let last = h.last_error.expect("why it is not connected");
    assert!(
        last.contains("127.0.0.1:1") && !last.contains("secret-pw"),
        "{last}"
    );
    let t = Instant::now();
    let results = sink.deliver(&[item(1, "k"), item(2, "k")]).await;
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    for r in results {
        let e = r.unwrap_err();
        assert_eq!(e.class, ErrorClass::Transient, "{e}");
        assert!(e.message.contains("not connected"), "{e}");
    }
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_fails_fast_then_recovers_and_redeclares() {
    let Some((conn, ch)) = client().await else {
        return;
    };
    let settings = AmqpSettings {
        // Wide enough to look at the sink while it is down.
        reconnect_initial_ms: 1500,
        ..settings("reconnect")
    };
    let q = queue(&settings, "work", &["#"], 5);
    let _cleanup = Cleanup::new(&settings, &[&q.name]);
    let sink = start_sink(&settings, &q).await;
    assert_eq!(sink.deliver(&[item(1, "a.b")]).await, vec![Ok(())]);

    assert_eq!(
        close_connection(&settings.connection_name),
        1,
        "our one connection"
    );
    // Mid-stream: whatever is delivered now fails transiently, fast.
    let t = Instant::now();
    for r in sink.deliver(&[item(2, "a.b"), item(3, "a.b")]).await {
        assert_eq!(r.unwrap_err().class, ErrorClass::Transient);
    }
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(
        eventually(Duration::from_secs(5), || async {
            !sink.health().connected
        })
        .await,
        "health shows the loss"
    );
    let h = sink.health();
    assert!(h.last_error.is_some(), "{h:?}");
    let t = Instant::now();
    for r in sink.deliver(&[item(4, "a.b")]).await {
        let e = r.unwrap_err();
        assert_eq!(e.class, ErrorClass::Transient, "{e}");
    }
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "no waiting for the reconnect"
    );

    // While it is down, the queue goes; the reconnect must declare it again.
    ch.queue_delete(q.name.as_str().into(), Default::default())
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(15), || async {
            sink.health().connected
        })
        .await,
        "reconnected by itself: {:?}",
        sink.health()
    );
    assert!(
        queue_exists(&conn, &q.name).await.is_some(),
        "re-declared on reconnect"
    );
    assert_eq!(sink.deliver(&[item(5, "a.b")]).await, vec![Ok(())]);
    let got = take(&ch, &q.name, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    sink.stop().await;
    assert!(!sink.health().connected);
}

/// Not a test: a quick throughput comparison, run by hand with
/// `cargo test --release -p hub-core --test amqp_sink -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_confirmed_publish_rate() {
    let Some((_conn, ch)) = client().await else {
        return;
    };
    let settings = settings("rate");
    let q = queue(&settings, "sink", &["#"], 5);
    let _cleanup = Cleanup::new(&settings, &[&q.name]);
    let sink = start_sink(&settings, &q).await;
    let n = 50_000usize;
    let items: Vec<_> = (0..n as i64)
        .map(|i| item(i, "car-t.qc.result_reported"))
        .collect();
    let body_len = items[0].body.len();
    let body = vec![b'x'; body_len];
    let purge = || async {
        ch.queue_purge(q.name.as_str().into(), Default::default())
            .await
            .unwrap();
    };
    println!("quorum queue, {body_len}-byte bodies, {n} messages each:");
    for batch in [512, 5000] {
        purge().await;
        let t = Instant::now();
        for chunk in items.chunks(batch) {
            assert!(sink.deliver(chunk).await.iter().all(Result::is_ok));
        }
        let rate = n as f64 / t.elapsed().as_secs_f64();
        println!("  sink, deliver() batches of {batch}: {rate:.0} msg/s");
    }
    for in_flight in [512, 1000] {
        purge().await;
        let base = raw_publish(
            &settings.url,
            &settings.exchange,
            "car-t.qc.x",
            &body,
            n,
            in_flight,
        )
        .await
        .unwrap();
        assert_eq!(base.messages, n);
        println!(
            "  raw lapin, {in_flight} in flight: {:.0} msg/s",
            base.rate()
        );
    }
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_urls_go_through_tls() {
    // The plain AMQP port does not speak TLS: the handshake fails, which
    // shows the URL took the rustls path (not an unsupported scheme).
    let Some(_client) = client().await else {
        return;
    };
    let settings = AmqpSettings {
        url: broker_url().replacen("amqp://", "amqps://", 1),
        connect_timeout_ms: 3000,
        ..AmqpSettings::default()
    };
    let sink = AmqpSink::start("amqp", settings, Topology::default())
        .await
        .unwrap();
    let h = sink.health();
    assert!(!h.connected);
    let error = h.last_error.unwrap();
    assert!(error.contains("amqps://"), "{error}");
    // rustls's own words for a peer that answered in plain AMQP.
    assert!(
        error.contains("InvalidContentType"),
        "a TLS handshake failure: {error}"
    );
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_comes_late_or_goes_mid_batch_loses_nothing() {
    let Some((_conn, ch)) = client().await else {
        return;
    };
    let proxy = Proxy::start(false).await;
    let settings = AmqpSettings {
        url: url_via(proxy.addr),
        reconnect_initial_ms: 100,
        reconnect_max_ms: 300,
        confirm_timeout_ms: 2000,
        ..settings("outage")
    };
    let q = queue(&settings, "work", &["#"], 5);
    let _cleanup = Cleanup::new(&settings, &[&q.name]);

    // The broker is down when the hub starts: the sink starts degraded.
    let sink = start_sink(&settings, &q).await;
    assert!(!sink.health().connected);
    let items: Vec<_> = (0..3000).map(|n| item(n, "car-t.qc.x")).collect();
    for r in sink.deliver(&items[..10]).await {
        assert_eq!(r.unwrap_err().class, ErrorClass::Transient);
    }
    // It comes: the sink connects and declares by itself.
    proxy.up();
    assert!(
        eventually(Duration::from_secs(10), || async {
            sink.health().connected
        })
        .await,
        "{:?}",
        sink.health()
    );

    // It goes in the middle of a batch: what was confirmed is Ok, the rest
    // fails transiently; nothing else.
    let delivering = sink.deliver(&items);
    let cut = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        proxy.down();
    };
    let (results, ()) = tokio::join!(delivering, cut);
    let mut pending: Vec<_> = Vec::new();
    for (item, r) in items.iter().zip(&results) {
        match r {
            Ok(()) => {}
            Err(e) => {
                assert_eq!(e.class, ErrorClass::Transient, "{e}");
                pending.push(item.clone());
            }
        }
    }
    assert!(!pending.is_empty(), "the cut came mid-batch");
    proxy.up();
    // The outbox sends the failed ones again until they are confirmed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pending.is_empty() && Instant::now() < deadline {
        let results = sink.deliver(&pending).await;
        pending = pending
            .into_iter()
            .zip(results)
            .filter_map(|(i, r)| r.is_err().then_some(i))
            .collect();
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(
        pending.is_empty(),
        "all confirmed after the broker came back"
    );
    // Every event is in the queue at least once (a resend may duplicate).
    let got = take(&ch, &q.name, 4000, Duration::from_secs(3)).await;
    let ids: std::collections::HashSet<String> = got
        .iter()
        .filter_map(|d| d.properties.message_id().as_ref().map(|m| m.to_string()))
        .collect();
    let missing = items.iter().filter(|i| !ids.contains(&i.event_id)).count();
    assert_eq!(
        missing,
        0,
        "{} delivered, {} distinct",
        got.len(),
        ids.len()
    );
    sink.stop().await;
}
