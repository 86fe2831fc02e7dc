//! A hub on a test's database (SQLite or PostgreSQL, see
//! `store_fixtures::TestDb`), with one route to sink `file` and a connector
//! whose mapping can be broken and fixed, for the dead-letter tests (`mod
//! store_fixtures; mod dead_letters_support;`).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use hub_core::error::Stage;
use hub_core::event::{Source, TemperatureReading};
use hub_core::identity::{CoiFormats, ProductCoiFormatConfig};
use hub_core::routing::Router;
use hub_core::sink::BoxFuture;
use hub_core::store::Store;
use hub_core::{
    Connector, ConnectorError, Decoded, EventData, Hub, Inbound, Metrics, Problem, Receipt,
    TherapyEvent,
};
use tokio_util::sync::CancellationToken;

use crate::store_fixtures::TestDb;

pub const KIND: &str = "courier";
pub const SINK: &str = "file";
pub const ROUTE: &str = "temps";
/// A sink the routes know but the hub runs no relay for.
pub const GONE_SINK: &str = "gone";
/// The product of every event; its COIs are `COI-` and letters or digits.
pub const PRODUCT: &str = "car-t";

/// Payloads are `ID;COI`. Until `fix()`, mapping fails with
/// `required_field_missing`; after, each gives one `temperature.reading`.
pub struct FlakyConnector {
    fixed: AtomicBool,
}

impl FlakyConnector {
    pub fn fix(&self) {
        self.fixed.store(true, Ordering::SeqCst);
    }
    pub fn brake(&self) {
        self.fixed.store(false, Ordering::SeqCst);
    }
}

impl Connector for FlakyConnector {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn translate(&self, payload: Bytes, origin: &str, partner: Option<&str>) -> (Inbound, Decoded) {
        let text = String::from_utf8_lossy(&payload).into_owned();
        let (id, coi) = text.split_once(';').unwrap_or((text.as_str(), ""));
        let partner = partner.unwrap_or("ACME");
        let inbound = Inbound::new(
            KIND,
            partner,
            "text/plain",
            Some(id.to_string()),
            payload.clone(),
            origin,
        );
        if !self.fixed.load(Ordering::SeqCst) {
            let p = Problem::new(
                Stage::Map,
                "required_field_missing",
                "mapping courier: data.logger_id: required value missing (at LOG-1)",
            );
            return (inbound, Decoded::Failed(p));
        }
        let ev = TherapyEvent {
            schema: (),
            event_id: TherapyEvent::new_id(),
            data: EventData::TemperatureReading(TemperatureReading {
                logger_id: "LOG-7".into(),
                celsius: -150.5,
                tracking_number: None,
                profile: None,
            }),
            coi: Some(coi.to_string()).filter(|c| !c.is_empty()),
            order_id: None,
            product: Some(PRODUCT.into()),
            occurred_at: Utc.with_ymd_and_hms(2026, 11, 21, 9, 14, 0).unwrap(),
            recorded_at: inbound.received_at,
            source: Source {
                connector: KIND.into(),
                partner: partner.into(),
                message_id: Some(id.to_string()),
                payload_sha256: inbound.sha256.clone(),
                entry: None,
            },
            claims: Default::default(),
        };
        (inbound, Decoded::Events(vec![ev]))
    }

    fn run(
        self: Arc<Self>,
        _hub: Hub,
        _shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ConnectorError>> {
        Box::pin(async { Ok(()) })
    }
}

pub struct Setup {
    /// The routes.
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub hub: Hub,
    pub connector: Arc<FlakyConnector>,
}

impl Setup {
    /// A partner sends `ID;COI` (through the connector, as MLLP would).
    pub async fn send(&self, payload: &str) -> Receipt {
        let (inbound, decoded) = self.connector.translate(
            Bytes::copy_from_slice(payload.as_bytes()),
            "127.0.0.1:9",
            None,
        );
        self.hub.submit(inbound, decoded).await.unwrap()
    }

    /// The open dead letter of a message row.
    pub async fn dead_letter_of(&self, message_row: i64) -> i64 {
        self.store
            .dead_letters(1000)
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.message_row == message_row)
            .expect("a dead letter")
            .id
    }
}

/// `temperature.*` → `file`; with `to_gone`, `temperature.*` → `gone` instead.
pub async fn setup_with(db: &TestDb, to_gone: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes");
    std::fs::create_dir_all(&routes).unwrap();
    let sink = if to_gone { GONE_SINK } else { SINK };
    std::fs::write(
        routes.join("r.toml"),
        format!(
            "[[route]]\nname = \"{ROUTE}\"\nkinds = [\"temperature.*\"]\nsink = \"{sink}\"\n\
             routing_key = \"{{product}}.{{kind}}\"\n"
        ),
    )
    .unwrap();
    let known: BTreeSet<String> = [SINK.to_string(), GONE_SINK.to_string()].into();
    let router = Router::load_dir(&routes, &known).unwrap();
    let store = Store::open(db.options()).await.unwrap();
    let hub = Hub::new(
        store.clone(),
        router,
        Metrics::default(),
        [SINK.to_string()],
    );
    let connector = Arc::new(FlakyConnector {
        fixed: AtomicBool::new(false),
    });
    hub.set_connectors(vec![connector.clone() as Arc<dyn Connector>]);
    hub.set_coi_formats(
        CoiFormats::new(&[ProductCoiFormatConfig {
            product: PRODUCT.into(),
            pattern: "COI-[0-9A-Z]+".into(),
            check: None,
        }])
        .unwrap(),
    );
    Setup {
        dir,
        store,
        hub,
        connector,
    }
}

pub async fn setup(db: &TestDb) -> Setup {
    setup_with(db, false).await
}
