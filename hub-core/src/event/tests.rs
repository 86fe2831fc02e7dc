use super::*;
use chrono::TimeZone;

fn envelope(data: EventData) -> TherapyEvent {
    TherapyEvent {
        schema: (),
        event_id: TherapyEvent::new_id(),
        data,
        coi: Some("W1234 26 000001".into()),
        order_id: Some("ORD-1".into()),
        product: None,
        occurred_at: Utc.with_ymd_and_hms(2026, 11, 21, 9, 14, 0).unwrap(),
        recorded_at: Utc.with_ymd_and_hms(2026, 11, 21, 9, 14, 2).unwrap(),
        source: Source {
            connector: "hl7v2".into(),
            partner: "LAB".into(),
            message_id: Some("MSG00002".into()),
            payload_sha256: "00".repeat(32),
            entry: None,
        },
        claims: Default::default(),
    }
}

#[test]
fn serialises_to_the_documented_shape() {
    let ev = envelope(EventData::QcResultReported(QcResultReported {
        results: vec![QcResult {
            test: Coded {
                code: "WBC".into(),
                ..Default::default()
            },
            value: Some("7.2".into()),
            numeric_value: Some(7.2),
            status: Some(ResultStatus::Final),
            ..Default::default()
        }],
        ..Default::default()
    }));
    let json: serde_json::Value = serde_json::to_value(&ev).unwrap();
    assert_eq!(json["schema"], "cgt.event/v1");
    assert_eq!(json["kind"], "qc.result_reported");
    assert_eq!(json["data"]["results"][0]["status"], "final");
    assert_eq!(json["occurred_at"], "2026-11-21T09:14:00Z");
    assert!(json.get("product").is_none(), "absent fields are omitted");
    assert_eq!(json["event_id"].as_str().unwrap().len(), 36);
}

/// One event of every kind (with a COI), for tests elsewhere in the crate.
pub(crate) fn one_of_each_kind() -> Vec<TherapyEvent> {
    EventKind::ALL
        .iter()
        .map(|&k| envelope(sample(k)))
        .collect()
}

/// One sample payload per kind; the match makes this fail to compile when a
/// kind is added without a sample.
fn sample(kind: EventKind) -> EventData {
    let t = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
    let s = |v: &str| v.to_string();
    match kind {
        EventKind::OrderPlaced => EventData::OrderPlaced(Order {
            placer_order_id: Some(s("P1")),
            patient_ids: vec![Identifier {
                value: s("633"),
                id_type: Some(s("MR")),
                authority: Some(s("R0A")),
            }],
            ..Default::default()
        }),
        EventKind::OrderUpdated => EventData::OrderUpdated(Order {
            order_status: Some(s("IP")),
            ..Default::default()
        }),
        EventKind::OrderCancelled => EventData::OrderCancelled(Order {
            reason: Some(s("patient ineligible")),
            ..Default::default()
        }),
        EventKind::CollectionScheduled => EventData::CollectionScheduled(CollectionScheduled {
            scheduled_start: t,
            ..Default::default()
        }),
        EventKind::CollectionCompleted => EventData::CollectionCompleted(CollectionCompleted {
            donation_id: Some(s("W123426000001")),
            volume: Some(Quantity {
                value: 212.5,
                unit: s("mL"),
            }),
            ..Default::default()
        }),
        EventKind::CustodyTransferred => EventData::CustodyTransferred(CustodyTransferred {
            from: s("site-a"),
            to: s("courier"),
            ..Default::default()
        }),
        EventKind::ShipmentCreated => EventData::ShipmentCreated(ShipmentCreated {
            tracking_number: s("1Z"),
            carrier: s("ups"),
            ..Default::default()
        }),
        EventKind::ShipmentStatus => EventData::ShipmentStatus(ShipmentStatus {
            tracking_number: s("1Z"),
            carrier: s("ups"),
            status: s("in_transit"),
            ..Default::default()
        }),
        EventKind::ShipmentDelivered => EventData::ShipmentDelivered(ShipmentDelivered {
            tracking_number: s("1Z"),
            carrier: s("ups"),
            ..Default::default()
        }),
        EventKind::TemperatureReading => EventData::TemperatureReading(TemperatureReading {
            logger_id: s("L1"),
            celsius: -150.25,
            ..Default::default()
        }),
        EventKind::TemperatureExcursion => EventData::TemperatureExcursion(TemperatureExcursion {
            logger_id: s("L1"),
            peak_celsius: -110.0,
            started_at: t,
            ..Default::default()
        }),
        EventKind::MaterialReceived => EventData::MaterialReceived(MaterialReceived {
            material_id: s("M1"),
            ..Default::default()
        }),
        EventKind::ManufacturingStepCompleted => {
            EventData::ManufacturingStepCompleted(ManufacturingStepCompleted {
                batch_id: s("B1"),
                step: s("transduction"),
                equipment: vec![s("BSC-2")],
                ..Default::default()
            })
        }
        EventKind::ManufacturingScheduled => {
            EventData::ManufacturingScheduled(ManufacturingScheduled {
                schedule_id: Some(s("PS-1")),
                step: Some(s("transduction")),
                scheduled_start: Some(t),
                equipment: vec![s("BSC-2")],
                ..Default::default()
            })
        }
        EventKind::BatchRecordUpdated => EventData::BatchRecordUpdated(BatchRecordUpdated {
            batch_id: s("B1"),
            status: s("in_review"),
            ..Default::default()
        }),
        EventKind::QcResultReported => EventData::QcResultReported(QcResultReported::default()),
        EventKind::DeviationRaised => EventData::DeviationRaised(DeviationRaised {
            deviation_id: s("D1"),
            description: s("late"),
            ..Default::default()
        }),
        EventKind::BatchDispositioned => EventData::BatchDispositioned(BatchDispositioned {
            batch_id: s("B1"),
            disposition: Disposition::Released,
            decided_by: None,
            comment: None,
        }),
        EventKind::IdentityVerified => EventData::IdentityVerified(IdentityVerified {
            verified_by: s("nurse-1"),
            ..Default::default()
        }),
        EventKind::InfusionCompleted => EventData::InfusionCompleted(InfusionCompleted::default()),
        EventKind::AlertRaised => EventData::AlertRaised(AlertRaised {
            alert: s("viability"),
            severity: s("high"),
            message: s("2h left"),
            ..Default::default()
        }),
        EventKind::PatientUpdated => EventData::PatientUpdated(PatientUpdated {
            patient_ids: vec![],
            trigger: Some(s("A08")),
            effective_date: None,
        }),
    }
}

#[test]
fn every_kind_round_trips() {
    for &kind in EventKind::ALL {
        let ev = envelope(sample(kind));
        assert_eq!(ev.kind(), kind);
        let text = serde_json::to_string(&ev).unwrap();
        let back: TherapyEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ev, "{kind} did not round-trip: {text}");
        assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
    }
}

#[test]
fn rejects_another_schema_and_unknown_data_fields() {
    let ev = envelope(sample(EventKind::OrderPlaced));
    let mut json = serde_json::to_value(&ev).unwrap();
    json["schema"] = "cgt.event/v2".into();
    let err = serde_json::from_value::<TherapyEvent>(json).unwrap_err();
    assert!(err.to_string().contains("unsupported schema"), "{err}");

    let bad = serde_json::json!({"placer_order_id": "1", "placer_ordr_id": "2"});
    let err = EventData::from_json(EventKind::OrderPlaced, bad).unwrap_err();
    assert!(err.to_string().contains("placer_ordr_id"), "{err}");
}
