//! The broker itself is stopped and started while partners send (its own
//! test binary: the whole broker goes away, so nothing else may share the
//! moment). Partners keep getting AA; afterwards every AA'd message's event
//! is in the queue, duplicates only ever under the same message_id.

use contract_tests::load::Load;
use contract_tests::rabbit::{assert_all_arrived, drain, rabbitmqctl, Vhost};
use contract_tests::{Hub, Setup};

/// Starts the broker's application again however the test ends.
struct StartAgain;

impl Drop for StartAgain {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .arg("start_app")
            .output();
    }
}

#[test]
fn a_broker_stopped_and_started_mid_stream_loses_nothing() {
    let mut v = Vhost::new();
    let extra = format!(
        "[amqp]\nurl = \"{}\"\nconfirm_timeout_ms = 3000\nreconnect_max_ms = 1000\n\
         [sinks.rabbitmq]\ntype = \"amqp\"\n",
        v.url()
    );
    let hub = Hub::start_with(Setup {
        routes: Some(
            "[[route]]\nname = \"qc\"\nkinds = [\"qc.*\"]\nsink = \"rabbitmq\"\n\
             routing_key = \"{product}.{kind}\"\n[route.queue]\nname = \"cgt.qc\"\n",
        ),
        config_extra: Some(&extra),
        ..Setup::default()
    });
    let load = Load::start(hub.mllp, "R", 4, 8, 1000);
    load.wait_acked(500);
    let guard = StartAgain;
    rabbitmqctl(&["stop_app"]);
    load.wait_acked(2000);
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);
    drop(guard);
    let acked = load.finish(false);
    assert_eq!(
        acked.len(),
        4000,
        "partners kept getting AA while it was down"
    );
    hub.wait_delivered();
    assert!(
        hub.log().contains("reconnect"),
        "the hub saw the broker go and come back:\n{}",
        hub.log()
    );

    let got = drain(&mut v, "cgt.qc", &acked);
    assert_all_arrived(&acked, &got);
}
