//! Nothing acknowledged is lost on the way to RabbitMQ: not when the
//! broker's connections drop mid-stream, not when the hub is killed. Partners
//! keep getting AA meanwhile; after recovery every AA'd message's event is in
//! the queue, and a duplicate only ever repeats the same message_id.

use contract_tests::load::Load;
use contract_tests::rabbit::{assert_all_arrived, drain, Vhost};
use contract_tests::{http_get, Hub, Setup};

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
