//! The verdict on one event against the registry: go on with this COI,
//! conflict, hold until its identifiers are known, or hold as out of
//! sequence.
//!
//! Pure: the store gives a [`View`] of the rows the batch touches and
//! applies the verdict's effects (new links, a new therapy, a state
//! change) to it before the next event is judged, so events of one batch
//! see each other in arrival order.

use std::collections::BTreeMap;

use crate::event::EventKind;

use super::claims::{Claimed, IdKind};

/// What the registry knows of one identifier: the COI it belongs to and
/// who first said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub coi: String,
    /// `connector/partner` that asserted it.
    pub asserted_by: String,
    /// The partner's message id, when it had one.
    pub message_id: Option<String>,
    /// Stored timestamp text.
    pub at: String,
}

/// A therapy order's state in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TherapyState {
    Active,
    Cancelled,
    Completed,
}

impl TherapyState {
    pub const fn as_str(self) -> &'static str {
        match self {
            TherapyState::Active => "active",
            TherapyState::Cancelled => "cancelled",
            TherapyState::Completed => "completed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(TherapyState::Active),
            "cancelled" => Some(TherapyState::Cancelled),
            "completed" => Some(TherapyState::Completed),
            _ => None,
        }
    }
}

/// One therapy (one order, one COI) as the rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Therapy {
    pub coi: String,
    pub state: TherapyState,
    /// Kinds of the events that went on for it, for the sequence rules.
    pub milestones: Vec<String>,
    /// Keyed hashes of the normalised name and birth date (never the values).
    pub name_index: Option<String>,
    pub birth_date_index: Option<String>,
}

impl Therapy {
    pub fn has(&self, kind: &str) -> bool {
        self.milestones.iter().any(|m| m == kind)
    }
}

/// What the rules read: links by key, therapies by COI.
pub trait View {
    fn link(&self, key: &str) -> Option<&Link>;
    fn therapy(&self, coi: &str) -> Option<&Therapy>;
}

/// What an event whose identifiers are not known yet does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnknown {
    /// Held, re-evaluated when a link arrives, dead-lettered after the timeout.
    #[default]
    Hold,
    /// Routed without a COI (and linked to nothing): for feeds that carry
    /// material outside any therapy (a general lab). Conflicts still stop.
    Route,
}

/// The rules in force.
#[derive(Debug, Clone)]
pub struct Rules {
    pub on_unknown: OnUnknown,
    /// Kind → kinds that must have gone on for the same COI before it.
    pub sequence: BTreeMap<String, Vec<String>>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            on_unknown: OnUnknown::Hold,
            sequence: default_sequence(),
        }
    }
}

/// The vein-to-vein order cgthub enforces out of the box: no infusion
/// before the product was received at the site, no disposition (release)
/// before a QC result.
pub fn default_sequence() -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([
        (
            EventKind::InfusionCompleted.as_str().to_string(),
            vec![EventKind::MaterialReceived.as_str().to_string()],
        ),
        (
            EventKind::BatchDispositioned.as_str().to_string(),
            vec![EventKind::QcResultReported.as_str().to_string()],
        ),
    ])
}

/// One identifier of an event, ready for lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKey {
    /// `kind|authority|value`; an MRN's value is its keyed hash.
    pub key: String,
    /// The identifier as stated (an MRN's value blanked), for operators.
    pub claimed: Claimed,
}

impl EventKey {
    /// The key of a claimed identifier. `mrn_hash` turns an MRN (with its
    /// authority) into its keyed hash; other values are used as they are.
    pub fn new(claimed: &Claimed, mrn_hash: impl Fn(&str) -> String) -> EventKey {
        let value = if claimed.kind.is_phi() {
            mrn_hash(&format!("{}|{}", claimed.authority, claimed.value))
        } else {
            claimed.value.clone()
        };
        let mut shown = claimed.clone();
        if claimed.kind.is_phi() {
            shown.value = String::new();
        }
        // A tracking number's authority is its carrier, which an EHR
        // writes as "UPS" and a courier mapping as "ups": compared as
        // lowercase letters and digits only.
        let authority = if claimed.kind == IdKind::Tracking {
            claimed
                .authority
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase())
                .collect()
        } else {
            claimed.authority.clone()
        };
        EventKey {
            key: format!("{}|{authority}|{value}", claimed.kind),
            claimed: shown,
        }
    }
}

/// What the rules need to know of one event.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub kind: &'static str,
    /// The event's own COI, canonical.
    pub coi: Option<String>,
    pub keys: Vec<EventKey>,
    /// Keyed hashes of the normalised name and birth date it states.
    pub name_index: Option<String>,
    pub birth_date_index: Option<String>,
}

/// One identifier and the COI the registry ties it to, for alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disagreement {
    /// The identifier as operators may see it, or `coi` for the event's own.
    pub identifier: String,
    pub coi: String,
    /// Where the registry's link came from (`None`: the event's own COI).
    pub link: Option<Link>,
}

/// Why an event is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldReason {
    /// None of its identifiers is linked to a registered therapy yet.
    UnknownIdentifiers,
    /// Its therapy is cancelled or completed, or a step it needs first has
    /// not happened.
    OutOfSequence(String),
}

impl HoldReason {
    pub const fn code(&self) -> &'static str {
        match self {
            HoldReason::UnknownIdentifiers => "unknown_identifiers",
            HoldReason::OutOfSequence(_) => "out_of_sequence",
        }
    }
}

/// The registry's verdict on one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Goes on, carrying `coi` (none only under [`OnUnknown::Route`]).
    /// `link` are its keys not linked yet; `create` means it registers its
    /// COI's therapy.
    Pass {
        coi: Option<String>,
        link: Vec<EventKey>,
        create: bool,
    },
    /// Never routed: an alert instead, and a negative answer.
    Conflict {
        reason: String,
        disagreements: Vec<Disagreement>,
    },
    /// Kept until released (by a new link, or by an operator).
    Hold {
        coi: Option<String>,
        reason: HoldReason,
    },
}

/// Judges one event. `view` must already include what earlier events of
/// the same batch did.
pub fn judge(rules: &Rules, view: &dyn View, ev: &Facts) -> Verdict {
    // Borrowed on the way: owned copies only for a conflict's alert (this
    // runs in the store's serial stage, once per event).
    let mut first: Option<&str> = ev.coi.as_deref();
    let mut split = false;
    for k in &ev.keys {
        if let Some(l) = view.link(&k.key) {
            match first {
                None => first = Some(&l.coi),
                Some(c) if c != l.coi => split = true,
                Some(_) => {}
            }
        }
    }
    let disagreements = || -> Vec<Disagreement> {
        let own = ev.coi.iter().map(|c| Disagreement {
            identifier: "coi".into(),
            coi: c.clone(),
            link: None,
        });
        let linked = ev.keys.iter().filter_map(|k| {
            view.link(&k.key).map(|l| Disagreement {
                identifier: k.claimed.display(),
                coi: l.coi.clone(),
                link: Some(l.clone()),
            })
        });
        own.chain(linked).collect()
    };
    if split {
        let found = disagreements();
        let mut cois: Vec<&str> = found.iter().map(|d| d.coi.as_str()).collect();
        cois.sort_unstable();
        cois.dedup();
        return Verdict::Conflict {
            reason: format!(
                "identifiers belong to {} different chains of identity ({})",
                cois.len(),
                cois.join(", ")
            ),
            disagreements: found,
        };
    }
    let Some(coi) = first else {
        return match rules.on_unknown {
            OnUnknown::Hold => Verdict::Hold {
                coi: None,
                reason: HoldReason::UnknownIdentifiers,
            },
            OnUnknown::Route => Verdict::Pass {
                coi: None,
                link: Vec::new(),
                create: false,
            },
        };
    };
    let coi = coi.to_string();
    let unlinked = || -> Vec<EventKey> {
        ev.keys
            .iter()
            .filter(|k| view.link(&k.key).is_none())
            .cloned()
            .collect()
    };
    let Some(therapy) = view.therapy(&coi) else {
        // Orders create the record; anything else waits for one.
        if ev.kind == EventKind::OrderPlaced.as_str() {
            return Verdict::Pass {
                coi: Some(coi),
                link: unlinked(),
                create: true,
            };
        }
        return match rules.on_unknown {
            OnUnknown::Hold => Verdict::Hold {
                coi: Some(coi),
                reason: HoldReason::UnknownIdentifiers,
            },
            OnUnknown::Route => Verdict::Pass {
                coi: Some(coi),
                link: Vec::new(),
                create: false,
            },
        };
    };
    for (what, stated, known) in [
        ("name", &ev.name_index, &therapy.name_index),
        (
            "birth date",
            &ev.birth_date_index,
            &therapy.birth_date_index,
        ),
    ] {
        if let (Some(s), Some(k)) = (stated, known) {
            if s != k {
                return Verdict::Conflict {
                    reason: format!(
                        "the patient's {what} in the message does not match the registry for COI {coi}"
                    ),
                    disagreements: disagreements(),
                };
            }
        }
    }
    let is_order = ev.kind.starts_with("order.");
    if !is_order && therapy.state != TherapyState::Active {
        return Verdict::Hold {
            coi: Some(coi.clone()),
            reason: HoldReason::OutOfSequence(format!(
                "{} for COI {coi}, whose order is {}",
                ev.kind,
                therapy.state.as_str()
            )),
        };
    }
    if let Some(needs) = rules.sequence.get(ev.kind) {
        let missing: Vec<&str> = needs
            .iter()
            .filter(|k| !therapy.has(k))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Verdict::Hold {
                coi: Some(coi.clone()),
                reason: HoldReason::OutOfSequence(format!(
                    "{} for COI {coi} before {}",
                    ev.kind,
                    missing.join(" and ")
                )),
            };
        }
    }
    Verdict::Pass {
        coi: Some(coi),
        link: unlinked(),
        create: false,
    }
}

/// The therapy state an event that went on leaves behind.
pub fn next_state(current: TherapyState, kind: &str) -> TherapyState {
    if kind == EventKind::OrderCancelled.as_str() {
        TherapyState::Cancelled
    } else if kind == EventKind::InfusionCompleted.as_str() {
        TherapyState::Completed
    } else {
        current
    }
}

/// Whether a key is of this kind (keys start with the kind's name).
pub fn key_kind(key: &str) -> Option<IdKind> {
    IdKind::parse(key.split('|').next()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Mem {
        links: HashMap<String, Link>,
        therapies: HashMap<String, Therapy>,
    }

    impl View for Mem {
        fn link(&self, key: &str) -> Option<&Link> {
            self.links.get(key)
        }
        fn therapy(&self, coi: &str) -> Option<&Therapy> {
            self.therapies.get(coi)
        }
    }

    const COI_A: &str = "CHW000126000001";
    const COI_B: &str = "CHW000126000002";

    fn key(kind: IdKind, value: &str) -> EventKey {
        EventKey::new(&Claimed::new(kind, "LAB", value), |v| format!("h({v})"))
    }

    fn link(coi: &str) -> Link {
        Link {
            coi: coi.into(),
            asserted_by: "hl7v2/EHR".into(),
            message_id: Some("M1".into()),
            at: "2026-12-01T00:00:00.000Z".into(),
        }
    }

    fn registered() -> Mem {
        let mut m = Mem::default();
        m.therapies.insert(
            COI_A.into(),
            Therapy {
                coi: COI_A.into(),
                state: TherapyState::Active,
                milestones: vec!["order.placed".into()],
                name_index: Some("n1".into()),
                birth_date_index: Some("d1".into()),
            },
        );
        m.therapies.insert(
            COI_B.into(),
            Therapy {
                coi: COI_B.into(),
                state: TherapyState::Active,
                milestones: vec!["order.placed".into()],
                name_index: None,
                birth_date_index: None,
            },
        );
        m.links.insert(key(IdKind::Specimen, "S1").key, link(COI_A));
        m.links.insert(key(IdKind::Mrn, "111").key, link(COI_B));
        m
    }

    fn facts(kind: EventKind, coi: Option<&str>, keys: Vec<EventKey>) -> Facts {
        Facts {
            kind: kind.as_str(),
            coi: coi.map(str::to_string),
            keys,
            ..Facts::default()
        }
    }

    #[test]
    fn mrn_keys_hold_a_hash_and_show_no_value() {
        let k = key(IdKind::Mrn, "12345");
        assert_eq!(k.key, "mrn|LAB|h(LAB|12345)");
        assert!(
            !k.claimed.display().contains("12345"),
            "{}",
            k.claimed.display()
        );
        assert_eq!(key(IdKind::Specimen, "S1").key, "specimen|LAB|S1");
    }

    #[test]
    fn a_carrier_is_the_same_authority_however_it_is_written() {
        let k = |a: &str| EventKey::new(&Claimed::new(IdKind::Tracking, a, "1Z9"), |v| v.into());
        assert_eq!(k("UPS").key, "tracking|ups|1Z9");
        assert_eq!(k(" ups ").key, k("Ups").key);
        assert_eq!(k("World Courier").key, k("world_courier").key);
        assert_ne!(k("fedex").key, k("ups").key);
        // Other identifiers keep their authority as written.
        let s = |a: &str| EventKey::new(&Claimed::new(IdKind::Specimen, a, "S1"), |v| v.into());
        assert_ne!(s("LAB").key, s("lab").key);
    }

    #[test]
    fn a_known_specimen_gives_its_coi_and_new_keys_are_linked() {
        let v = registered();
        let verdict = judge(
            &Rules::default(),
            &v,
            &facts(
                EventKind::QcResultReported,
                None,
                vec![key(IdKind::Specimen, "S1"), key(IdKind::Batch, "B9")],
            ),
        );
        assert_eq!(
            verdict,
            Verdict::Pass {
                coi: Some(COI_A.into()),
                link: vec![key(IdKind::Batch, "B9")],
                create: false
            }
        );
    }

    #[test]
    fn identifiers_of_two_chains_conflict_and_name_both_links() {
        let v = registered();
        let Verdict::Conflict {
            reason,
            disagreements,
        } = judge(
            &Rules::default(),
            &v,
            &facts(
                EventKind::QcResultReported,
                None,
                vec![key(IdKind::Specimen, "S1"), key(IdKind::Mrn, "111")],
            ),
        )
        else {
            panic!("specimen of A with MRN of B must conflict");
        };
        assert!(reason.contains(COI_A) && reason.contains(COI_B), "{reason}");
        assert_eq!(disagreements.len(), 2);
        assert_eq!(disagreements[1].identifier, "mrn … (LAB)");
        assert_eq!(
            disagreements[1].link.as_ref().unwrap().asserted_by,
            "hl7v2/EHR"
        );
        // The event's own COI against a linked specimen of another chain.
        assert!(matches!(
            judge(
                &Rules::default(),
                &v,
                &facts(
                    EventKind::QcResultReported,
                    Some(COI_B),
                    vec![key(IdKind::Specimen, "S1")]
                )
            ),
            Verdict::Conflict { .. }
        ));
    }

    #[test]
    fn a_different_name_or_birth_date_is_a_conflict_and_absent_ones_are_not() {
        let v = registered();
        let mut f = facts(
            EventKind::QcResultReported,
            None,
            vec![key(IdKind::Specimen, "S1")],
        );
        f.name_index = Some("n1".into());
        f.birth_date_index = Some("d2".into());
        let Verdict::Conflict { reason, .. } = judge(&Rules::default(), &v, &f) else {
            panic!("birth date differs");
        };
        assert!(reason.contains("birth date"), "{reason}");
        f.birth_date_index = None;
        assert!(matches!(
            judge(&Rules::default(), &v, &f),
            Verdict::Pass { .. }
        ));
    }

    #[test]
    fn unknown_identifiers_hold_or_route_by_policy() {
        let v = registered();
        let f = facts(
            EventKind::QcResultReported,
            None,
            vec![key(IdKind::Specimen, "S404")],
        );
        assert_eq!(
            judge(&Rules::default(), &v, &f),
            Verdict::Hold {
                coi: None,
                reason: HoldReason::UnknownIdentifiers
            }
        );
        let route = Rules {
            on_unknown: OnUnknown::Route,
            ..Rules::default()
        };
        assert_eq!(
            judge(&route, &v, &f),
            Verdict::Pass {
                coi: None,
                link: vec![],
                create: false
            }
        );
        // A COI with no order registered yet waits for the order.
        let f = facts(EventKind::QcResultReported, Some("CHW000126000009"), vec![]);
        assert!(matches!(
            judge(&Rules::default(), &v, &f),
            Verdict::Hold {
                reason: HoldReason::UnknownIdentifiers,
                ..
            }
        ));
    }

    #[test]
    fn an_order_with_a_new_coi_creates_its_therapy() {
        let v = registered();
        let f = facts(
            EventKind::OrderPlaced,
            Some("CHW000126000009"),
            vec![key(IdKind::Order, "O1")],
        );
        assert_eq!(
            judge(&Rules::default(), &v, &f),
            Verdict::Pass {
                coi: Some("CHW000126000009".into()),
                link: vec![key(IdKind::Order, "O1")],
                create: true
            }
        );
        // An order reusing a specimen linked to another chain conflicts.
        let f = facts(
            EventKind::OrderPlaced,
            Some("CHW000126000009"),
            vec![key(IdKind::Specimen, "S1")],
        );
        assert!(matches!(
            judge(&Rules::default(), &v, &f),
            Verdict::Conflict { .. }
        ));
    }

    #[test]
    fn steps_out_of_order_and_closed_orders_hold_as_out_of_sequence() {
        let mut v = registered();
        let f = facts(EventKind::InfusionCompleted, Some(COI_A), vec![]);
        let Verdict::Hold {
            reason: HoldReason::OutOfSequence(why),
            ..
        } = judge(&Rules::default(), &v, &f)
        else {
            panic!("infusion before receipt");
        };
        assert_eq!(
            why,
            format!("infusion.completed for COI {COI_A} before material.received")
        );
        v.therapies
            .get_mut(COI_A)
            .unwrap()
            .milestones
            .push("material.received".into());
        assert!(matches!(
            judge(&Rules::default(), &v, &f),
            Verdict::Pass { .. }
        ));
        v.therapies.get_mut(COI_A).unwrap().state = TherapyState::Cancelled;
        let f = facts(EventKind::QcResultReported, Some(COI_A), vec![]);
        assert!(matches!(
            judge(&Rules::default(), &v, &f),
            Verdict::Hold { reason: HoldReason::OutOfSequence(w), .. } if w.contains("cancelled")
        ));
        // Order messages about a closed order still go on.
        let f = facts(EventKind::OrderUpdated, Some(COI_A), vec![]);
        assert!(matches!(
            judge(&Rules::default(), &v, &f),
            Verdict::Pass { .. }
        ));
    }

    #[test]
    fn states_follow_cancellation_and_infusion() {
        use TherapyState::*;
        assert_eq!(next_state(Active, "order.cancelled"), Cancelled);
        assert_eq!(next_state(Active, "infusion.completed"), Completed);
        assert_eq!(next_state(Active, "qc.result_reported"), Active);
    }
}
