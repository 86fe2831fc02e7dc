//! The chain-of-identity check at intake: after mapping, before the store
//! and routing, every event's COI is parsed with the hub's [`CoiFormats`]
//! and replaced by its canonical form, and every DIN it claims (ISBT 128
//! Data Structure 001, its check character or flags verified) likewise; one
//! malformed identifier fails the whole message, which is stored and
//! dead-lettered with [`INVALID_COI`] or [`INVALID_DIN`] and the reason the
//! parser gives (answered like any other bad value: HL7 `AE`).

use crate::identity::{CoiError, CoiFormats};
use crate::inbound::{Decoded, Problem};

/// Problem code of a message whose COI is malformed.
pub const INVALID_COI: &str = "invalid_coi";
/// Problem code of a message whose donation identification number (an
/// identity claim of kind `din`) is not a valid ISBT 128 DIN.
pub const INVALID_DIN: &str = "invalid_din";

/// Normalises the COI of every mapped event, or fails the message with the
/// first COI refused. Messages that already failed are returned as they are.
pub fn normalise(formats: &CoiFormats, decoded: Decoded) -> Decoded {
    let Decoded::Events(mut events) = decoded else {
        return decoded;
    };
    for ev in &mut events {
        // A DIN is linked in its canonical form (13 characters, no flags):
        // the same donation written with and without its check character
        // or flags is one identifier.
        for id in &mut ev.claims.identifiers {
            if id.kind != crate::registry::IdKind::Din {
                continue;
            }
            match crate::identity::Din::parse(&id.value) {
                Ok(din) => id.value = din.as_str().to_string(),
                Err(e) => {
                    return Decoded::Failed(Problem::new(
                        crate::error::Stage::Identity,
                        INVALID_DIN,
                        format!("DIN is not an ISBT 128 donation identification number: {e}"),
                    ))
                }
            }
        }
        let Some(raw) = ev.coi.as_deref() else {
            continue;
        };
        match formats.parse(ev.product.as_deref(), raw) {
            Ok(coi) => ev.coi = Some(coi.into_string()),
            Err(e) => return Decoded::Failed(problem(&e)),
        }
    }
    Decoded::Events(events)
}

fn problem(e: &CoiError) -> Problem {
    Problem::new(e.stage(), INVALID_COI, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Stage;
    use crate::event::{Source, TemperatureReading};
    use crate::identity::ProductCoiFormatConfig;
    use crate::{EventData, TherapyEvent};
    use chrono::{TimeZone, Utc};

    fn event(coi: Option<&str>, product: Option<&str>) -> TherapyEvent {
        TherapyEvent {
            schema: (),
            event_id: TherapyEvent::new_id(),
            data: EventData::TemperatureReading(TemperatureReading {
                logger_id: "LOG-7".into(),
                celsius: -150.5,
                tracking_number: None,
                profile: None,
            }),
            coi: coi.map(str::to_string),
            order_id: None,
            product: product.map(str::to_string),
            occurred_at: Utc.with_ymd_and_hms(2026, 1, 2, 8, 30, 0).unwrap(),
            recorded_at: Utc.with_ymd_and_hms(2026, 1, 2, 8, 31, 0).unwrap(),
            source: Source {
                connector: "hl7v2".into(),
                partner: "LAB".into(),
                message_id: Some("M1".into()),
                payload_sha256: "00".into(),
                entry: None,
            },
            claims: Default::default(),
        }
    }

    fn formats() -> CoiFormats {
        CoiFormats::new(&[ProductCoiFormatConfig {
            product: "K9".into(),
            pattern: "K9[0-9]{6}".into(),
            check: None,
        }])
        .unwrap()
    }

    fn events(d: Decoded) -> Vec<TherapyEvent> {
        match d {
            Decoded::Events(evs) => evs,
            other => panic!("expected events, got {other:?}"),
        }
    }

    #[test]
    fn accepted_cois_are_canonical_and_events_without_one_pass() {
        let out = events(normalise(
            &formats(),
            Decoded::Events(vec![
                event(Some(" &/CHW000126000001"), None),
                event(None, None),
                event(Some("K9123456 "), Some("K9")),
            ]),
        ));
        let cois: Vec<Option<&str>> = out.iter().map(|e| e.coi.as_deref()).collect();
        assert_eq!(
            cois,
            [Some("CHW000126000001"), None, Some("K9123456")],
            "normalised in place, in order"
        );
    }

    #[test]
    fn one_malformed_coi_fails_the_whole_message_with_the_reason() {
        let decoded = Decoded::Events(vec![
            event(Some("CHW000126000001"), None),
            event(Some("CHW00012600000"), None),
        ]);
        let Decoded::Failed(p) = normalise(&formats(), decoded) else {
            panic!("a malformed COI fails the message");
        };
        assert_eq!((p.code, p.stage), (INVALID_COI, Stage::Identity));
        assert!(
            p.reason
                .starts_with("COI is not an ISBT 128 Chain of Identity Identifier: data content has 14 characters"),
            "{}",
            p.reason
        );
        // A product format applies to its product only.
        let Decoded::Failed(p) = normalise(
            &formats(),
            Decoded::Events(vec![event(Some("K9123456"), None)]),
        ) else {
            panic!("K9's format is not ISBT 128's");
        };
        assert_eq!(p.code, INVALID_COI);
        let Decoded::Failed(p) = normalise(
            &formats(),
            Decoded::Events(vec![event(Some("K912345"), Some("K9"))]),
        ) else {
            panic!("not in K9's format");
        };
        assert!(p.reason.contains("product K9"), "{}", p.reason);
        assert!(matches!(
            normalise(&formats(), Decoded::Events(vec![event(Some(" "), None)])),
            Decoded::Failed(Problem {
                code: INVALID_COI,
                ..
            })
        ));
    }

    #[test]
    fn dins_are_linked_canonical_and_a_bad_one_fails_the_message() {
        use crate::registry::{Claimed, IdKind};
        // ST-001 v6.2.2 Appendix A: DIN G1234 17 654321 with Type 3 flags 70.
        let mut ev = event(None, None);
        ev.claims
            .identifiers
            .push(Claimed::new(IdKind::Din, "", "=G12341765432170"));
        let out = events(normalise(&formats(), Decoded::Events(vec![ev.clone()])));
        assert_eq!(out[0].claims.identifiers[0].value, "G123417654321");
        // The same DIN with a wrong check character (A is right): refused.
        ev.claims.identifiers[0].value = "G123417654321B".into();
        let Decoded::Failed(p) = normalise(&formats(), Decoded::Events(vec![ev])) else {
            panic!("a malformed DIN fails the message");
        };
        assert_eq!((p.code, p.stage), (INVALID_DIN, Stage::Identity));
        assert!(
            p.reason.starts_with("DIN is not an ISBT 128"),
            "{}",
            p.reason
        );
    }

    #[test]
    fn failed_and_rejected_messages_are_left_alone() {
        let p = Problem::new(Stage::Map, "bad_value", "x");
        assert!(matches!(
            normalise(&formats(), Decoded::Failed(p.clone())),
            Decoded::Failed(q) if q == p
        ));
        assert!(matches!(
            normalise(&formats(), Decoded::Rejected(p.clone())),
            Decoded::Rejected(q) if q == p
        ));
    }
}
