//! The hub on RabbitMQ, as partners and consumers see it: corpus messages
//! over MLLP come out of the routes' quorum queues with the right properties
//! and routing keys; what cannot be delivered or is refused by a consumer
//! ends up in `cgthub dlq list` and can be replayed.

use std::time::Duration;

use contract_tests::rabbit::Vhost;
use contract_tests::{fixture, repo, Hub, Partner, Setup};

const WAIT: Duration = Duration::from_secs(20);

fn rabbit_hub(v: &Vhost, routes: &str) -> Hub {
    let extra = format!(
        "[amqp]\nurl = \"{}\"\nconfirm_timeout_ms = 5000\n[sinks.rabbitmq]\ntype = \"amqp\"\n",
        v.url()
    );
    Hub::start_with(Setup {
        routes: Some(routes),
        config_extra: Some(&extra),
        ..Setup::default()
    })
}

fn shipped_routes() -> String {
    std::fs::read_to_string(repo().join("routes/rabbitmq/default.toml")).expect("routes")
}

fn stdout(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The dead letters `cgthub dlq list --json` shows.
fn dlq(hub: &Hub) -> Vec<serde_json::Value> {
    stdout(&hub.cli(&["dlq", "list", "--json"]))
        .lines()
        .map(|l| serde_json::from_str(l).expect("dlq list --json line"))
        .collect()
}

#[test]
fn corpus_events_arrive_in_the_route_queues_with_their_properties() {
    let mut v = Vhost::new();
    let hub = rabbit_hub(&v, &shipped_routes());
    // The topology the hub declared at start.
    for q in ["cgt.orders", "cgt.qc-results", "cgt.patients", "cgt.dead"] {
        let info = v.queue_info(q);
        assert!(info.contains("quorum"), "{q} is a quorum queue: {info:?}");
    }
    let qc = v.queue_info("cgt.qc-results");
    assert!(
        qc.contains("x-delivery-limit") && qc.contains("cgt.dlx"),
        "{qc}"
    );
    assert!(v
        .queue_info("cgt.qc-results.retry")
        .contains("x-message-ttl"));

    let mut p = Partner::connect(hub.mllp);
    for (file, code) in [
        (
            "nodehl7complete_nist_ORU_R01_2.5.1_SampleTestCase1.hl7",
            "AA",
        ),
        ("rethinkhealth_bench_oru_r01_v2.5_multiOBX.hl7", "AA"),
        ("nwgmsa_ORU_R01_genomic_report_ED_pdf_v2.5.1.hl7", "AA"),
        ("nwgmsa_OML_O21_genomics_order_coded_v2.5.1.hl7", "AA"),
        ("mirth_export_ADT_A08_v2.3_extra_fields.hl7", "AE"),
    ] {
        let ack = p.send(&fixture(&format!("hl7v2/{file}")));
        assert_eq!(ack.code(), code, "{file}: {}", ack.0);
    }
    hub.wait_delivered();

    let results = v.take("cgt.qc-results", 3, WAIT);
    assert_eq!(results.len(), 3, "one event per ORU result group");
    let orders = v.take("cgt.orders", 1, WAIT);
    assert_eq!(orders.len(), 1);
    assert_eq!(v.queue_len("cgt.patients"), Some(0), "the A08 was refused");

    let nist = results
        .iter()
        .find(|m| m.json()["source"]["message_id"] == "NIST-100929110701660")
        .expect("the NIST result arrived");
    let ev = nist.json();
    assert_eq!(nist.routing_key, "none.qc.result_reported");
    assert_eq!(nist.message_id.as_deref(), ev["event_id"].as_str());
    assert_eq!(nist.kind.as_deref(), Some("qc.result_reported"));
    assert_eq!(nist.content_type.as_deref(), Some("application/json"));
    assert_eq!(nist.delivery_mode, Some(2), "persistent");
    assert!(nist.timestamp.unwrap_or(0) > 1_700_000_000, "timestamp set");
    assert_eq!(nist.headers["schema"], "cgt.event/v1");
    assert_eq!(nist.headers["partner"], "EHR Facility");
    assert_eq!(
        nist.headers.get("coi"),
        ev["coi"].as_str().map(String::from).as_ref()
    );
    assert_eq!(ev["data"]["results"][0]["numeric_value"], 50.0);
    let order = orders[0].json();
    assert_eq!(
        orders[0].routing_key, "R240_1.order.placed",
        "product R240.1"
    );
    assert_eq!(order["order_id"], "1601737");
    assert_eq!(orders[0].headers["product"], "R240.1");
    assert_eq!(
        nist.headers.get("product"),
        None,
        "no header for an absent product"
    );
}

#[test]
fn unroutable_events_are_dead_letters_and_replay_once_a_queue_is_bound() {
    let mut v = Vhost::new();
    // A route whose routing key no queue is bound for.
    let routes = "[[route]]\nname = \"orphan\"\nkinds = [\"qc.*\"]\nsink = \"rabbitmq\"\n\
                  routing_key = \"nobody.{kind}\"\n";
    let hub = rabbit_hub(&v, routes);
    let mut p = Partner::connect(hub.mllp);
    let ack = p.send(&fixture(
        "hl7v2/rethinkhealth_bench_oru_r01_v2.5_multiOBX.hl7",
    ));
    assert_eq!(
        ack.code(),
        "AA",
        "the partner is not blamed for our routing"
    );
    hub.wait_for("the unroutable dead letter", || {
        dlq(&hub).iter().any(|d| d["code"] == "unroutable")
    });
    let dead = dlq(&hub);
    let d = dead.iter().find(|d| d["code"] == "unroutable").unwrap();
    assert_eq!(d["stage"], "deliver");
    assert_eq!(d["partner"], "HOSPITAL");
    let id = d["id"].as_i64().unwrap().to_string();

    // The operator binds a queue for the key (a route with a queue), and
    // replays.
    hub.write_routes(&format!(
        "{routes}[route.queue]\nname = \"cgt.orphan\"\nbindings = [\"nobody.#\"]\n"
    ));
    // The queue shows before its binding is made: wait until the hub says
    // the new routes (queue declared and bound) are in force.
    hub.wait_for("the reloaded route's queue, bound", || {
        v.queue_len("cgt.orphan").is_some() && hub.log().contains("routes reloaded")
    });
    let out = stdout(&hub.cli(&["dlq", "replay", &id]));
    assert!(out.contains(&id), "{out}");
    let got = v.take("cgt.orphan", 1, WAIT);
    assert_eq!(got.len(), 1, "the replayed event arrived:\n{}", hub.log());
    assert_eq!(got[0].json()["source"]["message_id"], "MSG00002");
    assert!(
        dlq(&hub).iter().all(|d| d["code"] != "unroutable"),
        "no longer open"
    );
    let all = stdout(&hub.cli(&["dlq", "list", "--status", "all", "--json"]));
    assert!(all.contains("replayed"), "{all}");
    let metrics = contract_tests::http_get(hub.http, "/metrics").unwrap().1;
    assert!(
        metrics
            .contains(r#"cgthub_dead_letter_actions_total{action="replay",outcome="replayed"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"cgthub_component_up{component="sink:rabbitmq"} 1"#));
}

#[test]
fn consumer_rejections_and_exhausted_redeliveries_reach_the_dlq_and_replay() {
    let mut v = Vhost::new();
    let routes = "[[route]]\nname = \"qc\"\nkinds = [\"qc.*\"]\nsink = \"rabbitmq\"\n\
                  routing_key = \"{product}.{kind}\"\n[route.queue]\nname = \"cgt.qc\"\n\
                  delivery_limit = 2\n";
    let hub = rabbit_hub(&v, routes);
    let base = String::from_utf8(fixture(
        "hl7v2/rethinkhealth_bench_oru_r01_v2.5_multiOBX.hl7",
    ))
    .unwrap();
    let mut p = Partner::connect(hub.mllp);
    for id in ["REJ-1", "LIMIT-1"] {
        let ack = p.send(contract_tests::with_control_id(&base, id).as_bytes());
        assert_eq!(ack.code(), "AA");
    }
    hub.wait_delivered();

    // A consumer refuses the first outright; the second keeps failing until
    // the queue's delivery limit sends it to cgt.dead.
    let rejected = v.reject_one("cgt.qc", WAIT).expect("a message to reject");
    let mut returns = 0;
    while v.requeue_one("cgt.qc", Duration::from_secs(3)).is_some() {
        returns += 1;
        assert!(returns < 10, "delivery_limit = 2 ends the redeliveries");
    }
    assert!(returns >= 2, "{returns}");
    hub.wait_for("two consumer dead letters", || {
        dlq(&hub).iter().filter(|d| d["stage"] == "consume").count() == 2
    });
    let dead = dlq(&hub);
    let by_code = |c: &str| {
        dead.iter()
            .find(|d| d["stage"] == "consume" && d["code"] == c)
            .unwrap_or_else(|| panic!("a consume dead letter with code {c}: {dead:?}"))
    };
    let rej = by_code("rejected");
    assert_eq!(rej["event_id"].as_str(), Some(rejected.as_str()));
    assert_eq!(rej["partner"], "HOSPITAL");
    by_code("delivery_limit");
    assert_eq!(v.queue_len("cgt.dead"), Some(0), "the hub drained cgt.dead");

    // Replay both: they are published again and a consumer gets them.
    let out = stdout(&hub.cli(&["dlq", "replay", "--all", "--reason", "rejected"]));
    assert!(out.contains("replayed"), "{out}");
    let out = stdout(&hub.cli(&["dlq", "replay", "--all", "--reason", "delivery_limit"]));
    assert!(out.contains("replayed"), "{out}");
    let again = v.take("cgt.qc", 2, WAIT);
    assert_eq!(again.len(), 2, "{}", hub.log());
    assert!(again
        .iter()
        .any(|m| m.message_id.as_deref() == Some(rejected.as_str())));
    assert!(dlq(&hub).iter().all(|d| d["stage"] != "consume"));
}

#[test]
fn a_conflicting_existing_queue_stops_the_hub_with_a_clear_error() {
    let mut v = Vhost::new();
    // Someone declared cgt.orders as a classic queue before the hub ran.
    v.declare_classic("cgt.orders");
    let extra = format!(
        "[amqp]\nurl = \"{}\"\n[sinks.rabbitmq]\ntype = \"amqp\"\n",
        v.url()
    );
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes");
    std::fs::create_dir_all(&routes).unwrap();
    std::fs::write(routes.join("default.toml"), shipped_routes()).unwrap();
    let config = dir.path().join("cgthub.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{d}/data\"\n[http]\naddr = \"127.0.0.1:0\"\n[mllp]\naddr = \"127.0.0.1:0\"\n\
             [store]\nurl = \"sqlite://{d}/data/cgthub.db\"\n[paths]\nroutes = \"{r}\"\nmappings = \"{m}\"\n{extra}",
            d = dir.path().display(),
            r = routes.display(),
            m = repo().join("mappings").display(),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(contract_tests::binary())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the hub must not start: {err}");
    assert!(err.contains("cgt.orders"), "names the queue: {err}");
    assert!(!err.contains("guest:guest"), "no password in errors: {err}");
}
