//! A parsed courier payload as the mapping engine reads it.
//!
//! A scope is an index into the document's list of nodes. Every node a
//! `foreach` reached is kept with its parent and its name or index in that
//! parent, so a relative pointer (`2/trackingNumberInfo/trackingNumber`)
//! can climb from a scan event back to its track result.

use std::borrow::Cow;
use std::cell::RefCell;

use hub_core::mapping::Document;
use serde_json::Value;

use crate::path::{Courier, CourierPath, Filter, Start, Step, Test};

/// No parent: the root.
const NONE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Node<'a> {
    value: &'a Value,
    parent: u32,
    key: Key<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Key<'a> {
    Root,
    Name(&'a str),
    Index(usize),
}

/// One payload, with the message type of the mapping chosen for it.
#[derive(Debug)]
pub struct CourierDocument<'a> {
    nodes: RefCell<Vec<Node<'a>>>,
    message_type: Option<&'a str>,
}

impl<'a> CourierDocument<'a> {
    pub fn new(root: &'a Value) -> Self {
        CourierDocument {
            nodes: RefCell::new(vec![Node {
                value: root,
                parent: NONE,
                key: Key::Root,
            }]),
            message_type: None,
        }
    }

    /// Names the message type (the chosen mapping's first).
    pub fn with_message_type(mut self, message_type: Option<&'a str>) -> Self {
        self.message_type = message_type;
        self
    }

    fn root_value(&self) -> &'a Value {
        self.nodes.borrow()[0].value
    }

    /// Whether an absolute path selects anything (`null` included): what a
    /// mapping's `when` asks.
    pub fn exists(&self, path: &CourierPath) -> bool {
        let mut found = false;
        walk(self.root_value(), &path.steps, &mut |_, _| {
            found = true;
            false
        });
        found
    }

    /// The node id `path` starts from, seen from `scope`.
    fn start(&self, path: &CourierPath, scope: u32) -> Option<u32> {
        match path.start {
            Start::Root => Some(0),
            Start::Up(n) => {
                let nodes = self.nodes.borrow();
                let mut at = scope;
                for _ in 0..n {
                    at = nodes.get(at as usize)?.parent;
                    if at == NONE {
                        return None;
                    }
                }
                Some(at)
            }
        }
    }
}

/// Calls `f` with every node `steps` select from `from`, in document
/// order, until it returns false. Returns false when stopped.
fn walk<'a>(
    from: &'a Value,
    steps: &[Step],
    f: &mut dyn FnMut(&'a Value, Key<'a>) -> bool,
) -> bool {
    walk_keyed(from, Key::Root, steps, f)
}

fn walk_keyed<'a>(
    from: &'a Value,
    key: Key<'a>,
    steps: &[Step],
    f: &mut dyn FnMut(&'a Value, Key<'a>) -> bool,
) -> bool {
    let Some((step, rest)) = steps.split_first() else {
        return f(from, key);
    };
    match step {
        Step::Key { name, index } => match child(from, name, *index) {
            Some((v, k)) => walk_keyed(v, k, rest, f),
            None => true,
        },
        Step::All(filter) => {
            let keep = |v: &Value| filter.as_ref().is_none_or(|flt| passes(v, flt));
            match from {
                Value::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        if keep(v) && !walk_keyed(v, Key::Index(i), rest, f) {
                            return false;
                        }
                    }
                    true
                }
                Value::Object(members) => {
                    for (name, v) in members {
                        if keep(v) && !walk_keyed(v, Key::Name(name), rest, f) {
                            return false;
                        }
                    }
                    true
                }
                _ => true,
            }
        }
    }
}

fn child<'a>(from: &'a Value, name: &str, index: Option<usize>) -> Option<(&'a Value, Key<'a>)> {
    match from {
        Value::Object(m) => m
            .get_key_value(name)
            .map(|(k, v)| (v, Key::Name(k.as_str()))),
        Value::Array(a) => {
            let i = index?;
            a.get(i).map(|v| (v, Key::Index(i)))
        }
        _ => None,
    }
}

fn passes(element: &Value, filter: &Filter) -> bool {
    let mut at = element;
    let mut found = true;
    for step in &filter.pointer {
        match step {
            Step::Key { name, index } => match child(at, name, *index) {
                Some((v, _)) => at = v,
                None => {
                    found = false;
                    break;
                }
            },
            // The parser allows no `*` in a filter.
            Step::All(_) => return false,
        }
    }
    let value = if found { text(at) } else { None };
    match &filter.test {
        Test::Present => value.is_some(),
        Test::Equals(want) => value.as_deref() == Some(want.as_str()),
        Test::NotEquals(want) => value.as_deref() != Some(want.as_str()),
    }
}

/// A value's text: strings as they are, numbers and booleans as their JSON
/// text (serde_json keeps a number's text as written: `arbitrary_precision`
/// is on in this workspace). Null, objects, arrays and `""` have none.
pub fn text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn key_text<'a>(k: Key<'a>) -> Option<Cow<'a, str>> {
    match k {
        Key::Root => None,
        Key::Name("") => None,
        Key::Name(n) => Some(Cow::Borrowed(n)),
        Key::Index(i) => Some(Cow::Owned(i.to_string())),
    }
}

impl<'a> Document for CourierDocument<'a> {
    type Format = Courier;
    type Scope = u32;

    fn root(&self) -> u32 {
        0
    }

    fn message_type(&self) -> Option<Cow<'_, str>> {
        self.message_type.map(Cow::Borrowed)
    }

    fn values<'s>(&'s self, path: &CourierPath, scope: u32, out: &mut Vec<Cow<'s, str>>) {
        let Some(start) = self.start(path, scope) else {
            return;
        };
        let node = self.nodes.borrow()[start as usize];
        if path.key_of {
            out.extend(key_text(node.key));
            return;
        }
        let multi = path.is_multi();
        walk(node.value, &path.steps, &mut |v, _| {
            if let Some(t) = text(v) {
                out.push(t);
                return multi;
            }
            true
        });
    }

    fn scopes(&self, path: &CourierPath, scope: u32) -> Vec<u32> {
        let Some(start) = self.start(path, scope) else {
            return Vec::new();
        };
        let from = self.nodes.borrow()[start as usize].value;
        let mut nodes = self.nodes.borrow_mut();
        let mut found = Vec::new();
        scopes_from(&mut nodes, start, from, &path.steps, &mut found);
        found
    }

    fn is_multi(path: &CourierPath) -> bool {
        path.is_multi()
    }
}

/// Like [`walk`], but records every node on the way (so the scopes found
/// know their ancestors) and collects the ids of the non-null nodes reached.
fn scopes_from<'a>(
    nodes: &mut Vec<Node<'a>>,
    at: u32,
    value: &'a Value,
    steps: &[Step],
    found: &mut Vec<u32>,
) {
    let Some((step, rest)) = steps.split_first() else {
        if !value.is_null() {
            found.push(at);
        }
        return;
    };
    let push = |nodes: &mut Vec<Node<'a>>, v: &'a Value, key: Key<'a>| -> u32 {
        nodes.push(Node {
            value: v,
            parent: at,
            key,
        });
        u32::try_from(nodes.len() - 1).unwrap_or(NONE)
    };
    match step {
        Step::Key { name, index } => {
            if let Some((v, k)) = child(value, name, *index) {
                let id = push(nodes, v, k);
                scopes_from(nodes, id, v, rest, found);
            }
        }
        Step::All(filter) => {
            let keep = |v: &Value| filter.as_ref().is_none_or(|flt| passes(v, flt));
            match value {
                Value::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        if keep(v) {
                            let id = push(nodes, v, Key::Index(i));
                            scopes_from(nodes, id, v, rest, found);
                        }
                    }
                }
                Value::Object(members) => {
                    for (name, v) in members {
                        if keep(v) {
                            let id = push(nodes, v, Key::Name(name));
                            scopes_from(nodes, id, v, rest, found);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_core::mapping::Format;
    use serde_json::json;

    fn path(t: &str) -> CourierPath {
        Courier::parse_path(t).unwrap()
    }

    fn values(doc: &CourierDocument<'_>, p: &str, scope: u32) -> Vec<String> {
        let mut out = Vec::new();
        doc.values(&path(p), scope, &mut out);
        out.into_iter().map(Cow::into_owned).collect()
    }

    /// Parsed from text, as payloads are (`json!` would make 2.50 a float).
    fn sample() -> Value {
        serde_json::from_str(&json!({
            "output": {"completeTrackResults": [
                {"trackingNumber": "111", "trackResults": [
                    {"trackingNumberInfo": {"trackingNumber": "111"},
                     "scanEvents": [
                        {"date": "d1", "derivedStatusCode": "OC", "n": 1},
                        {"date": "d2", "derivedStatusCode": "DL", "n": 2.50, "ok": true}
                     ]}
                ]},
                {"trackingNumber": "222", "trackResults": [
                    {"trackingNumberInfo": {"trackingNumber": "222"},
                     "scanEvents": [{"date": "d3", "derivedStatusCode": "DL", "empty": "", "nil": null}]}
                ]}
            ]},
            "a/b": {"m~n": "escaped"},
            "list": ["x", "", null, 7]
        })
        .to_string()
        .replace("2.5,", "2.50,"))
        .unwrap()
    }

    #[test]
    fn absolute_pointers_wildcards_and_filters() {
        let v = sample();
        let doc = CourierDocument::new(&v);
        let r = doc.root();
        assert_eq!(
            values(&doc, "/output/completeTrackResults/*/trackingNumber", r),
            ["111", "222"]
        );
        assert_eq!(
            values(&doc, "/output/completeTrackResults/1/trackingNumber", r),
            ["222"]
        );
        assert_eq!(
            values(&doc, "/output/completeTrackResults/0/trackingNumber", r),
            ["111"]
        );
        assert!(values(&doc, "/output/completeTrackResults/2/trackingNumber", r).is_empty());
        let dl =
            "/output/completeTrackResults/*/trackResults/*/scanEvents/*[derivedStatusCode=DL]/date";
        assert_eq!(values(&doc, dl, r), ["d2", "d3"]);
        let not_dl = "/output/completeTrackResults/*/trackResults/*/scanEvents/*[derivedStatusCode!=DL]/date";
        assert_eq!(values(&doc, not_dl, r), ["d1"]);
        // Numbers and booleans compare by their JSON text.
        let n = "/output/completeTrackResults/*/trackResults/*/scanEvents/*[n=2.50]/date";
        assert_eq!(values(&doc, n, r), ["d2"]);
        let ok = "/output/completeTrackResults/*/trackResults/*/scanEvents/*[ok=true]/date";
        assert_eq!(values(&doc, ok, r), ["d2"]);
        // Presence: empty strings and null are no value.
        let has = "/output/completeTrackResults/*/trackResults/*/scanEvents/*[ok]/date";
        assert_eq!(values(&doc, has, r), ["d2"]);
        let empty = "/output/completeTrackResults/*/trackResults/*/scanEvents/*[empty]/date";
        assert!(values(&doc, empty, r).is_empty());
        assert_eq!(values(&doc, "/a~1b/m~0n", r), ["escaped"]);
        // A single path takes the first value; empty, null and containers are none.
        assert_eq!(values(&doc, "/list/*", r), ["x", "7"]);
        assert!(values(&doc, "/list/1", r).is_empty());
        assert!(values(&doc, "/output", r).is_empty());
        assert!(values(&doc, "/nothing/here", r).is_empty());
    }

    #[test]
    fn relative_pointers_climb_from_the_scope() {
        let v = sample();
        let doc = CourierDocument::new(&v);
        let scans = doc.scopes(
            &path("/output/completeTrackResults/*/trackResults/*/scanEvents/*"),
            doc.root(),
        );
        assert_eq!(scans.len(), 3);
        assert_eq!(values(&doc, "0/date", scans[1]), ["d2"]);
        assert_eq!(
            values(&doc, "0/n", scans[1]),
            ["2.50"],
            "JSON text, as written"
        );
        assert_eq!(values(&doc, "0#", scans[1]), ["1"], "index in scanEvents");
        assert_eq!(values(&doc, "1#", scans[1]), ["scanEvents"]);
        assert_eq!(
            values(&doc, "2/trackingNumberInfo/trackingNumber", scans[2]),
            ["222"]
        );
        assert_eq!(values(&doc, "4/trackingNumber", scans[0]), ["111"]);
        // Absolute paths ignore the scope.
        assert_eq!(
            values(
                &doc,
                "/output/completeTrackResults/0/trackingNumber",
                scans[2]
            ),
            ["111"]
        );
        // Above the root: nothing.
        assert!(values(&doc, "9/x", scans[0]).is_empty());
        assert!(values(&doc, "7#", scans[0]).is_empty());
        // Nested scopes keep their ancestry.
        let results = doc.scopes(&path("/output/completeTrackResults/*"), doc.root());
        let inner = doc.scopes(&path("0/trackResults/*/scanEvents/*"), results[1]);
        assert_eq!(inner.len(), 1);
        assert_eq!(values(&doc, "4/trackingNumber", inner[0]), ["222"]);
        assert_eq!(values(&doc, "0/derivedStatusCode", inner[0]), ["DL"]);
    }

    #[test]
    fn numbers_keep_their_json_text() {
        // `arbitrary_precision` is on (hub-core enables it): a number reads
        // as written, even beyond what f64 or u64 hold.
        let v: Value = serde_json::from_str(
            r#"{"id": 7777777770, "t": -18.50, "big": 123456789012345678901234567890, "e": 1.5e3, "z": 0}"#,
        )
        .unwrap();
        let doc = CourierDocument::new(&v);
        let r = doc.root();
        assert_eq!(values(&doc, "/id", r), ["7777777770"]);
        assert_eq!(values(&doc, "/t", r), ["-18.50"]);
        assert_eq!(values(&doc, "/big", r), ["123456789012345678901234567890"]);
        assert_eq!(values(&doc, "/e", r), ["1.5e+3"], "as serde_json keeps it");
        assert_eq!(values(&doc, "/z", r), ["0"]);
        let filtered: Value =
            serde_json::from_str(r#"{"s": [{"id": 10.0, "x": "a"}, {"id": 10, "x": "b"}]}"#)
                .unwrap();
        let doc = CourierDocument::new(&filtered);
        assert_eq!(values(&doc, "/s/*[id=10]/x", doc.root()), ["b"]);
    }

    #[test]
    fn exists_counts_null_and_wildcards() {
        let v = json!({"a": null, "b": [{"c": 1}], "e": []});
        let doc = CourierDocument::new(&v);
        assert!(doc.exists(&path("/a")));
        assert!(doc.exists(&path("/b/*/c")));
        assert!(doc.exists(&path("/e")));
        assert!(!doc.exists(&path("/e/*")));
        assert!(!doc.exists(&path("/b/*[c=2]")));
        assert!(!doc.exists(&path("/x")));
    }

    #[test]
    fn scopes_over_objects_and_null_elements() {
        let v = json!({"r": [{"t": 1}, null, {"t": 2}], "m": {"k1": {"t": 3}, "k2": {"t": 4}}});
        let doc = CourierDocument::new(&v);
        let s = doc.scopes(&path("/r/*"), doc.root());
        assert_eq!(s.len(), 2, "null elements are no scope");
        assert_eq!(values(&doc, "0#", s[1]), ["2"]);
        let s = doc.scopes(&path("/m/*"), doc.root());
        assert_eq!(values(&doc, "0#", s[1]), ["k2"]);
        assert_eq!(values(&doc, "0/t", s[1]), ["4"]);
    }
}
