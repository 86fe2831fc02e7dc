//! Nothing acknowledged is lost on the way to RabbitMQ: not when the
//! broker's connections drop mid-stream, not when the hub is killed. Partners
//! keep getting AA meanwhile; after recovery every AA'd message's event is in
//! the queue, and a duplicate only ever repeats the same message_id. A
//! broker that merely stalls costs no event a delivery attempt.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use contract_tests::load::{Load, MESSAGE};
use contract_tests::proxy::Proxy;
use contract_tests::rabbit::{assert_all_arrived, drain, drain_ids, Vhost, BROKER};
use contract_tests::{fixture, http_get, with_control_id, Hub, Partner, Setup};

const ROUTES: &str = "[[route]]\nname = \"qc\"\nkinds = [\"qc.*\"]\nsink = \"rabbitmq\"\n\
                      routing_key = \"{product}.{kind}\"\n[route.queue]\nname = \"cgt.qc\"\n";

fn rabbit_hub(v: &Vhost) -> Hub {
    let extra = format!(
        "[amqp]\nurl = \"{}\"\nconfirm_timeout_ms = 3000\nreconnect_max_ms = 1000\n\
         [sinks.rabbitmq]\ntype = \"amqp\"\n",
        v.url()
    );
    Hub::start_with(Setup {
        routes: Some(ROUTES),
        config_extra: Some(&extra),
        ..Setup::default()
    })
}

fn health(hub: &Hub) -> serde_json::Value {
    let (status, body) = http_get(hub.http, "/healthz").expect("healthz");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn connections_dropped_mid_stream_lose_nothing() {
    let mut v = Vhost::new();
    let hub = rabbit_hub(&v);
    let load = Load::start(hub.mllp, "D", 4, 8, 1500);
    load.wait_acked(500);
    v.close_connections();
    load.wait_acked(2000);
    v.close_connections();
    let acked = load.finish(false);
    assert_eq!(acked.len(), 6000, "partners kept getting AA");
    hub.wait_delivered();
    let h = health(&hub);
    assert_eq!(h["status"], "ok", "recovered: {h}");
    let got = drain(&mut v, "cgt.qc", &acked);
    assert_all_arrived(&acked, &got);
    assert!(
        hub.log().contains("reconnect"),
        "the hub says it lost and regained the broker"
    );
}

#[test]
fn a_hub_killed_mid_stream_publishes_every_acked_event_after_restart() {
    let mut v = Vhost::new();
    let mut hub = rabbit_hub(&v);
    let load = Load::start(hub.mllp, "K", 4, 8, 2000);
    load.wait_acked(400);
    hub.kill();
    let acked = load.finish(true);
    assert!(acked.len() < 8000, "the kill landed mid-stream");
    hub.restart();
    hub.wait_delivered();
    let got = drain(&mut v, "cgt.qc", &acked);
    assert_all_arrived(&acked, &got);
}

#[test]
fn a_broker_that_is_down_degrades_health_but_not_intake() {
    let mut v = Vhost::new();
    let hub = rabbit_hub(&v);
    // Take the vhost's permissions away: every (re)connection is refused,
    // as if the broker were down for this hub only.
    contract_tests::rabbit::rabbitmqctl(&["clear_permissions", "-p", &v.name, "guest"]);
    v.close_connections();
    hub.wait_for("health to report the broker degraded", || {
        health(&hub)["status"] == "degraded"
    });
    let load = Load::start(hub.mllp, "B", 2, 4, 100);
    let acked = load.finish(false);
    assert_eq!(acked.len(), 200, "partners are acknowledged from the store");
    let h = health(&hub);
    assert!(h["outbox_pending"].as_u64().unwrap() > 0, "{h}");
    let metrics = http_get(hub.http, "/metrics").unwrap().1;
    assert!(metrics.contains("cgthub_outbox_pending"), "{metrics}");

    contract_tests::rabbit::rabbitmqctl(&[
        "set_permissions",
        "-p",
        &v.name,
        "guest",
        ".*",
        ".*",
        ".*",
    ]);
    hub.wait_delivered();
    hub.wait_for("health to recover", || health(&hub)["status"] == "ok");
    let got = drain(&mut v, "cgt.qc", &acked);
    assert_all_arrived(&acked, &got);
}

/// A route that gives each event a single delivery attempt: any failure
/// counted against an event dead-letters it.
const ONE_ATTEMPT_ROUTES: &str = "[[route]]\nname = \"stall\"\nkinds = [\"*\"]\n\
    sink = \"rabbitmq\"\nrouting_key = \"{product}.{kind}\"\n\
    retry = { max_attempts = 1, initial_backoff_ms = 100 }\n\
    [route.queue]\nname = \"cgt.stall\"\n";
/// `ONE_ATTEMPT_ROUTES`' queue.
const QUEUE: &str = "cgt.stall";

/// The broker stalls (the link hangs: nothing confirmed, nothing closed)
/// while events are being published. The confirm timeout is the link's
/// failure, not the events': none of them spends a delivery attempt on it,
/// so even a route with a single attempt dead-letters nothing, and every
/// event reaches RabbitMQ once the link moves again.
#[test]
fn a_stalled_broker_costs_no_delivery_attempt() {
    const MESSAGES: usize = 6;
    let started = Instant::now();
    let mut v = Vhost::new();
    let link = Proxy::start(BROKER);
    let extra = format!(
        "[amqp]\nurl = \"{}\"\nconfirm_timeout_ms = 1000\nconnect_timeout_ms = 2000\n\
         reconnect_max_ms = 500\n[sinks.rabbitmq]\ntype = \"amqp\"\n",
        v.url_via(link.addr)
    );
    let hub = Hub::start_with(Setup {
        routes: Some(ONE_ATTEMPT_ROUTES),
        config_extra: Some(&extra),
        ..Setup::default()
    });
    assert_eq!(health(&hub)["status"], "ok", "connected through the proxy");

    // The link hangs; partners keep sending and keep getting AA.
    link.freeze();
    let base = String::from_utf8(fixture(MESSAGE)).expect("UTF-8 fixture");
    let mut partner = Partner::connect(hub.mllp);
    let ids: Vec<String> = (0..MESSAGES).map(|i| format!("STALL-{i}")).collect();
    for id in &ids {
        let ack = partner.send(with_control_id(&base, id).as_bytes());
        assert_eq!(ack.code(), "AA", "{id}: {}", ack.0);
    }
    // The relay published into the hung link and gave up on the confirms.
    hub.wait_for("a publisher confirm to time out", || {
        hub.log().contains("no publisher confirm within 1000 ms")
    });
    link.thaw();

    hub.wait_delivered();
    let dead = hub.get_json("/api/dead-letters?status=all");
    let dead = dead["dead_letters"]
        .as_array()
        .expect("dead_letters")
        .clone();
    assert!(
        dead.is_empty(),
        "{} event(s) dead-lettered although only the broker stalled, e.g. {}\n{}",
        dead.len(),
        dead[0],
        hub.log()
    );
    let events = hub.get_json("/api/events?limit=1000");
    let want: HashSet<String> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id").to_string())
        .collect();
    assert!(
        want.len() >= MESSAGES,
        "every message made an event: {events}"
    );
    let got = drain_ids(&mut v, QUEUE, &want, Duration::from_secs(10));
    assert_all_arrived(&ids, &got);
    let arrived: HashSet<String> = got.iter().filter_map(|m| m.message_id.clone()).collect();
    let lost: Vec<&String> = want.difference(&arrived).collect();
    assert!(lost.is_empty(), "events never reached RabbitMQ: {lost:?}");
    hub.wait_for("health to recover", || health(&hub)["status"] == "ok");
    eprintln!(
        "stalled broker: {} events, {} messages taken from {QUEUE} (repeats included), {:.1} s",
        want.len(),
        got.len(),
        started.elapsed().as_secs_f64()
    );
}
