//! Property tests: our parser against `hl7-parser` 0.3 as an oracle on
//! random valid messages; escape round trips; no panics on arbitrary input.

use std::borrow::Cow;
use std::collections::HashMap;

use cgthub_hl7v2::escape::{escape, unescape};
use cgthub_hl7v2::{ack, decode_text, AckCode, Delimiters, Hl7Path, Message};
use chrono::{TimeZone, Utc};
use hub_core::mapping::Document;
use proptest::prelude::*;

/// A field: repetitions of components of subcomponents of safe text.
fn field() -> impl Strategy<Value = String> {
    let sub = "[A-Za-z0-9 ]{0,4}";
    let comp = prop::collection::vec(sub, 1..3).prop_map(|s| s.join("&"));
    let rep = prop::collection::vec(comp, 1..4).prop_map(|c| c.join("^"));
    prop::collection::vec(rep, 1..3).prop_map(|r| r.join("~"))
}

fn segment() -> impl Strategy<Value = String> {
    let name = "[A-Z][A-Z0-9]{2}".prop_filter("not MSH", |n| n != "MSH");
    (name, prop::collection::vec(field(), 1..8)).prop_map(|(n, f)| format!("{n}|{}", f.join("|")))
}

fn message() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(field(), 1..12),
        prop::collection::vec(segment(), 0..10),
    )
        .prop_map(|(msh, segs)| {
            let mut s = format!("MSH|^~\\&|{}", msh.join("|"));
            for seg in segs {
                s.push('\r');
                s.push_str(&seg);
            }
            s
        })
}

fn values(m: &Message<'_>, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    m.values(&Hl7Path::parse(path).unwrap(), m.root(), &mut out);
    out.into_iter().map(Cow::into_owned).collect()
}

/// What our path evaluation pushes for a raw value.
fn expected(raw: &str) -> Vec<String> {
    if raw.is_empty() {
        vec![]
    } else {
        vec![raw.to_owned()]
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn agrees_with_hl7_parser(text in message()) {
        let ours = Message::parse(&text).unwrap();
        let theirs = hl7_parser::Message::parse(&text).unwrap();
        let names: Vec<&str> = theirs.segments().map(|s| s.name).collect();
        prop_assert_eq!(ours.segments().collect::<Vec<_>>(), names);
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, seg) in theirs.segments().enumerate() {
            let occurrence = *seen.entry(seg.name).and_modify(|n| *n += 1).or_insert(1);
            prop_assert_eq!(ours.field_count(i), seg.fields.len());
            for (f, field) in seg.fields().enumerate() {
                let n = f + 1;
                prop_assert_eq!(ours.field(i, n), Some(field.raw_value()));
                if seg.name == "MSH" && n <= 2 {
                    continue;
                }
                for (r, rep) in field.repeats().enumerate() {
                    for (c, comp) in rep.components().enumerate() {
                        let path = format!("{}[{occurrence}]-{n}[{}].{}", seg.name, r + 1, c + 1);
                        prop_assert_eq!(values(&ours, &path), expected(comp.raw_value()), "{}", path);
                        for (s, sub) in comp.subcomponents().enumerate() {
                            let path = format!("{path}.{}", s + 1);
                            prop_assert_eq!(values(&ours, &path), expected(sub.raw_value()), "{}", path);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn unescape_inverts_escape(s in any::<String>()) {
        let d = Delimiters::default();
        let escaped = escape(&s, &d);
        prop_assert_eq!(unescape(&escaped, &d), s.as_str());
        let t = Delimiters::from_msh('!', "*~$@#").unwrap();
        let escaped = escape(&s, &t);
        prop_assert_eq!(unescape(&escaped, &t), s.as_str());
    }

    #[test]
    fn unescape_never_panics(s in any::<String>()) {
        let _ = unescape(&s, &Delimiters::default());
    }

    #[test]
    fn paths_never_panic(s in any::<String>(), t in "[A-Z]{3}[-.\\[\\]*=0-9A-Z]{0,12}") {
        let _ = Hl7Path::parse(&s);
        let _ = Hl7Path::parse(&t);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        prefix in prop::sample::select(vec!["", "MSH|^~\\&|", "MSH|^~\\&#|", "\u{feff}MSH!*~$@!"]),
        bytes in any::<Vec<u8>>(),
    ) {
        let mut all = prefix.as_bytes().to_vec();
        all.extend_from_slice(&bytes);
        let Ok(text) = decode_text(&all) else { return Ok(()); };
        let Ok(m) = Message::parse(&text) else { return Ok(()); };
        let _ = (m.message_type(), m.sending_app(), m.charset(), m.version());
        for p in ["MSH-9.2", "PID-3[5=MR].1", "OBX[*].5", "MSH-2", "ZZZ[2]-1[*].1.1"] {
            let _ = values(&m, p);
            for scope in m.scopes(&Hl7Path::parse("OBX").unwrap(), m.root()) {
                let mut out = Vec::new();
                m.values(&Hl7Path::parse(p).unwrap(), scope, &mut out);
            }
        }
        let now = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let a = ack(Some(&m), AckCode::AA, Some("ok"), None, "1", now);
        prop_assert!(Message::parse(&a).is_ok(), "{:?}", a);
    }
}
