//! Fixtures shared by the store's integration tests (`mod store_fixtures;`).
//! Cargo also builds this file as a test target of its own, with no tests.
#![allow(dead_code)]

use std::path::Path;

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use hub_core::event::{Source, TemperatureReading};
use hub_core::store::{Destination, IntakeOutcome, IntakeRecord, PreparedEvent, StoreOptions};
use hub_core::{EventData, Inbound, TherapyEvent};
use sqlx::ConnectOptions;

/// A `temperature.reading` event for `coi`, with a fresh id.
pub fn event(coi: &str) -> TherapyEvent {
    TherapyEvent {
        schema: (),
        event_id: TherapyEvent::new_id(),
        data: EventData::TemperatureReading(TemperatureReading {
            logger_id: "LOG-7".into(),
            celsius: -150.5,
            tracking_number: None,
        }),
        coi: Some(coi.into()),
        order_id: Some("ORD-1".into()),
        product: None,
        occurred_at: Utc.with_ymd_and_hms(2026, 11, 21, 9, 14, 0).unwrap(),
        recorded_at: Utc.with_ymd_and_hms(2026, 11, 21, 9, 14, 2).unwrap(),
        source: Source {
            connector: "courier".into(),
            partner: "ACME".into(),
            message_id: None,
            payload_sha256: "00".repeat(32),
        },
    }
}

pub fn inbound(partner: &str, message_id: Option<&str>, payload: &str) -> Inbound {
    Inbound::new(
        "courier",
        partner,
        "application/json",
        message_id.map(str::to_owned),
        Bytes::copy_from_slice(payload.as_bytes()),
        "127.0.0.1:5000",
    )
}

pub fn dest(sink: &str) -> Destination {
    Destination {
        route: format!("to-{sink}"),
        sink: sink.into(),
        routing_key: "none.qc.result_reported".into(),
    }
}

pub fn routed(partner: &str, message_id: &str, sinks: &[&str]) -> IntakeRecord {
    let ev = event("COI-1");
    IntakeRecord {
        inbound: inbound(
            partner,
            Some(message_id),
            &format!("{{\"id\":\"{message_id}\"}}"),
        ),
        outcome: IntakeOutcome::Events(vec![PreparedEvent::new(
            &ev,
            sinks.iter().map(|s| dest(s)).collect(),
        )]),
    }
}

pub fn options(dir: &Path) -> StoreOptions {
    StoreOptions {
        url: format!("sqlite://{}", dir.join("cgthub.db").display()),
        ..StoreOptions::default()
    }
}

/// Holds the database's write lock from a second connection until dropped
/// (rolled back), so that everything submitted meanwhile lands in one batch.
pub async fn hold_write_lock(dir: &Path) -> sqlx::SqliteConnection {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.join("cgthub.db"))
        .connect()
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}
