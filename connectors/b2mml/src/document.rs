//! A B2MML message ([`B2mmlMessage`]): its documents (the root, or the
//! nouns of a BOD's `DataArea`), and how each answers [`B2mmlPath`]s.
//!
//! A scope is an element (its index in the tree's arena). The root scope
//! of a [`Noun`] is its document element; `foreach` yields the elements
//! the path selects.

use std::borrow::Cow;

use hub_core::mapping::Document;

use crate::error::DecodeError;
use crate::kind::{bod_noun, DocumentKind, Version};
use crate::path::{Alt, B2mml, B2mmlPath, End, Pred, Step};
use crate::tree::{Tree, NONE};

/// A parsed B2MML message: one document, or the nouns of a BOD.
#[derive(Debug)]
pub struct B2mmlMessage<'a> {
    tree: Tree<'a>,
    kind: DocumentKind,
    version: Version,
    /// The document elements (one, unless a BOD carries several nouns).
    nouns: Vec<u32>,
    /// The BOD's verb (`Process`), when the root is a BOD.
    verb: Option<&'static str>,
}

impl<'a> B2mmlMessage<'a> {
    /// Reads a payload: UTF-8, well-formed, B2MML namespace, a known document.
    pub fn parse(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let payload = payload.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(payload);
        let src = std::str::from_utf8(payload).map_err(|e| {
            let (line, column) = crate::error::line_col(payload, e.valid_up_to());
            DecodeError::Encoding(format!(
                "the payload is not UTF-8 (line {line}, column {column}); cgthub reads B2MML as UTF-8"
            ))
        })?;
        let tree = Tree::parse(src)?;
        Self::from_tree(tree)
    }

    fn from_tree(tree: Tree<'a>) -> Result<Self, DecodeError> {
        let root_name = tree.name(0).to_string();
        let Some(version) = Version::of_namespace(tree.root_ns.as_bytes()) else {
            return Err(DecodeError::NotB2mml {
                root: tree.root_qname.clone(),
                namespace: (!tree.root_ns.is_empty()).then(|| tree.root_ns.clone()),
            });
        };
        let unknown = |detail: String| DecodeError::UnknownDocument {
            root: root_name.clone(),
            namespace: tree.root_ns.clone(),
            detail,
        };
        if let Some(kind) = DocumentKind::from_local_name(root_name.as_bytes()) {
            return Ok(B2mmlMessage {
                tree,
                kind,
                version,
                nouns: vec![0],
                verb: None,
            });
        }
        let Some(noun) = bod_noun(&root_name) else {
            return Err(unknown(String::new()));
        };
        let verb = crate::kind::VERBS
            .iter()
            .copied()
            .find(|v| root_name.starts_with(v));
        let Some(kind) = DocumentKind::from_local_name(noun.as_bytes()) else {
            return Err(unknown(format!(": a BOD whose noun <{noun}> is not one")));
        };
        let nouns: Vec<u32> = tree
            .children(0)
            .filter(|&c| tree.name(c) == "DataArea" && tree.node(c).same_ns)
            .flat_map(|d| tree.children(d))
            .filter(|&c| tree.name(c) == noun && tree.node(c).same_ns)
            .collect();
        if nouns.is_empty() {
            return Err(unknown(format!(": its DataArea has no <{noun}>")));
        }
        Ok(B2mmlMessage {
            tree,
            kind,
            version,
            nouns,
            verb,
        })
    }

    pub fn kind(&self) -> DocumentKind {
        self.kind
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The BOD verb, when the message is a BOD.
    pub fn verb(&self) -> Option<&'static str> {
        self.verb
    }

    pub fn tree(&self) -> &Tree<'a> {
        &self.tree
    }

    /// The documents of the message, in order.
    pub fn documents(&self) -> impl Iterator<Item = Noun<'_, 'a>> + '_ {
        self.nouns.iter().map(move |&n| Noun { msg: self, node: n })
    }

    /// The partner's message id: the BOD's `ApplicationArea/BODID`, else
    /// the first document's `ID`.
    pub fn message_id(&self) -> Option<&str> {
        let t = &self.tree;
        if self.verb.is_some() {
            if let Some(id) = t
                .child(0, "ApplicationArea")
                .and_then(|a| t.child(a, "BODID"))
                .and_then(|b| t.value(b))
            {
                return Some(id);
            }
        }
        self.documents().next().and_then(|d| d.id())
    }
}

/// One document of a message: what a mapping runs on.
#[derive(Debug, Clone, Copy)]
pub struct Noun<'m, 'a> {
    msg: &'m B2mmlMessage<'a>,
    node: u32,
}

impl<'m, 'a> Noun<'m, 'a> {
    pub fn kind(&self) -> DocumentKind {
        self.msg.kind
    }

    /// The document's `ID`.
    pub fn id(&self) -> Option<&'m str> {
        let t = &self.msg.tree;
        t.child(self.node, "ID").and_then(|i| t.value(i))
    }

    /// Every value `path` selects in `scope` (see [`crate::path`]).
    pub fn select(&self, path: &B2mmlPath, scope: u32) -> Vec<&'m str> {
        let mut out = Vec::new();
        self.values_into(path, scope, &mut |v| out.push(v));
        out
    }

    fn tree(&self) -> &'m Tree<'a> {
        &self.msg.tree
    }

    /// Calls `f` on every element `steps` select from `from`, in document
    /// order; stops when `f` returns false. Returns false if stopped.
    fn walk(&self, steps: &[Step], from: u32, f: &mut dyn FnMut(u32) -> bool) -> bool {
        let Some((step, rest)) = steps.split_first() else {
            return f(from);
        };
        let t = self.tree();
        match step {
            Step::Parent => {
                let p = t.node(from).parent;
                p == NONE || self.walk(rest, p, f)
            }
            Step::This(preds) => {
                if self.keep(preds, from, 1) {
                    self.walk(rest, from, f)
                } else {
                    true
                }
            }
            Step::Child(name, preds) => {
                // Predicates apply in turn; an index counts the elements the
                // predicates before it kept, so count per predicate.
                let mut counts = [0u32; 8];
                for c in t.children(from) {
                    let n = t.node(c);
                    if !n.same_ns || t.text(n.name) != &**name {
                        continue;
                    }
                    if self.keep_counting(preds, c, &mut counts) && !self.walk(rest, c, f) {
                        return false;
                    }
                }
                true
            }
        }
    }

    /// Whether element `c` passes every predicate (index = `pos`).
    fn keep(&self, preds: &[Pred], c: u32, pos: u32) -> bool {
        preds.iter().all(|p| match p {
            Pred::All => true,
            Pred::Index(n) => *n == pos,
            _ => self.test(p, c),
        })
    }

    /// As [`Self::keep`], counting positions per predicate among the
    /// siblings that passed the predicates before it.
    fn keep_counting(&self, preds: &[Pred], c: u32, counts: &mut [u32; 8]) -> bool {
        for (i, p) in preds.iter().enumerate() {
            let pass = match p {
                Pred::All => true,
                Pred::Index(n) => {
                    let slot = i.min(7);
                    counts[slot] += 1;
                    counts[slot] == *n
                }
                _ => self.test(p, c),
            };
            if !pass {
                return false;
            }
        }
        true
    }

    fn test(&self, p: &Pred, c: u32) -> bool {
        match p {
            Pred::Has(sub) => {
                let mut found = false;
                self.alt_values(sub, c, &mut |_| {
                    found = true;
                    false
                });
                found
            }
            Pred::Value(sub, want, negate) => {
                let mut found = false;
                self.alt_values(sub, c, &mut |v| {
                    found = v == &**want;
                    !found
                });
                found != *negate
            }
            Pred::All | Pred::Index(_) => true,
        }
    }

    /// The start of an alternative: the scope, or the document element.
    fn start(&self, alt: &Alt, scope: u32) -> Option<(u32, usize)> {
        if !alt.absolute {
            return Some((scope, 0));
        }
        match alt.steps.first() {
            Some(Step::Child(name, preds)) => {
                let t = self.tree();
                (t.name(self.node) == &**name && self.keep(preds, self.node, 1))
                    .then_some((self.node, 1))
            }
            _ => None,
        }
    }

    /// Calls `f` on every non-empty value of `alt` from `scope`, until it returns false.
    fn alt_values(&self, alt: &Alt, scope: u32, f: &mut dyn FnMut(&'m str) -> bool) -> bool {
        let Some((from, skip)) = self.start(alt, scope) else {
            return true;
        };
        let t = self.tree();
        self.walk(&alt.steps[skip..], from, &mut |e| {
            let v = match &alt.end {
                End::Text => t.value(e),
                End::Attr(a) => t.attr(e, a).filter(|v| !v.trim().is_empty()),
                End::Name => Some(t.name(e)),
            };
            match v {
                Some(v) => f(v),
                None => true,
            }
        })
    }

    /// The elements `path` selects in `scope`, in document order.
    fn elements(&self, path: &B2mmlPath, scope: u32) -> Vec<u32> {
        let mut out = Vec::new();
        for alt in &path.alts {
            if let Some((from, skip)) = self.start(alt, scope) {
                self.walk(&alt.steps[skip..], from, &mut |e| {
                    out.push(e);
                    true
                });
            }
        }
        if path.alts.len() > 1 || path.alts.iter().any(|a| a.steps.contains(&Step::Parent)) {
            out.sort_unstable();
            out.dedup();
        }
        out
    }
}

impl<'m> Noun<'m, '_> {
    fn values_into(&self, path: &B2mmlPath, scope: u32, push: &mut dyn FnMut(&'m str)) {
        let multi = path.is_multi();
        if path.alts.len() == 1 {
            let alt = &path.alts[0];
            self.alt_values(alt, scope, &mut |v| {
                push(v);
                multi
            });
            return;
        }
        // A union: values in document order of their elements.
        let mut found: Vec<(u32, &'m str)> = Vec::new();
        let t = self.tree();
        for alt in &path.alts {
            if let Some((from, skip)) = self.start(alt, scope) {
                self.walk(&alt.steps[skip..], from, &mut |e| {
                    let v = match &alt.end {
                        End::Text => t.value(e),
                        End::Attr(a) => t.attr(e, a).filter(|v| !v.trim().is_empty()),
                        End::Name => Some(t.name(e)),
                    };
                    if let Some(v) = v {
                        found.push((e, v));
                    }
                    true
                });
            }
        }
        found.sort_by_key(|(e, _)| *e);
        for (_, v) in found.into_iter().take(if multi { usize::MAX } else { 1 }) {
            push(v);
        }
    }
}

impl<'m> Document for Noun<'m, '_> {
    type Format = B2mml;
    type Scope = u32;

    fn root(&self) -> u32 {
        self.node
    }

    fn message_type(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(self.msg.kind.as_str()))
    }

    fn values<'s>(&'s self, path: &B2mmlPath, scope: u32, out: &mut Vec<Cow<'s, str>>) {
        self.values_into(path, scope, &mut |v| out.push(Cow::Borrowed(v)));
    }

    fn scopes(&self, path: &B2mmlPath, scope: u32) -> Vec<u32> {
        self.elements(path, scope)
    }

    fn is_multi(path: &B2mmlPath) -> bool {
        path.is_multi()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_core::mapping::Format;

    const SR: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<b2mml:ProductionResponse xmlns:b2mml="http://www.mesa.org/xml/B2MML-V0600" xmlns:x="urn:vendor">
  <b2mml:ID>PR-1</b2mml:ID>
  <b2mml:SegmentResponse>
    <b2mml:ID>SR-1</b2mml:ID>
    <b2mml:ProductionData><b2mml:ID>pH</b2mml:ID><b2mml:Value><b2mml:ValueString>7.2</b2mml:ValueString></b2mml:Value></b2mml:ProductionData>
    <b2mml:ProductionData><b2mml:ID>Temp</b2mml:ID><b2mml:Value><b2mml:ValueString>37</b2mml:ValueString><b2mml:UnitOfMeasure>Cel</b2mml:UnitOfMeasure></b2mml:Value></b2mml:ProductionData>
    <b2mml:MaterialConsumedActual><b2mml:MaterialLotID>L-1</b2mml:MaterialLotID><b2mml:Quantity unitCode="mL"><b2mml:QuantityString>5</b2mml:QuantityString></b2mml:Quantity></b2mml:MaterialConsumedActual>
    <b2mml:MaterialProducedActual><b2mml:MaterialLotID>L-2</b2mml:MaterialLotID></b2mml:MaterialProducedActual>
    <b2mml:MaterialConsumedActual><b2mml:MaterialLotID>L-3</b2mml:MaterialLotID></b2mml:MaterialConsumedActual>
    <x:ID>vendor</x:ID>
  </b2mml:SegmentResponse>
  <b2mml:SegmentResponse><b2mml:ID>SR-2</b2mml:ID></b2mml:SegmentResponse>
</b2mml:ProductionResponse>"#;

    fn vals(doc: &Noun<'_, '_>, scope: u32, path: &str) -> Vec<String> {
        let p = B2mml::parse_path(path).unwrap();
        let mut out = Vec::new();
        Document::values(doc, &p, scope, &mut out);
        out.into_iter().map(Cow::into_owned).collect()
    }

    #[test]
    fn paths_select_filter_and_union() {
        let msg = B2mmlMessage::parse(SR.as_bytes()).unwrap();
        assert_eq!(msg.kind(), DocumentKind::ProductionResponse);
        assert_eq!(msg.version(), Version::V0600);
        assert_eq!(msg.message_id(), Some("PR-1"));
        let doc = msg.documents().next().unwrap();
        let r = doc.root();
        assert_eq!(vals(&doc, r, "ID"), ["PR-1"]);
        assert_eq!(vals(&doc, r, "/ProductionResponse/ID"), ["PR-1"]);
        assert!(vals(&doc, r, "/SegmentResponse/ID").is_empty());
        assert_eq!(vals(&doc, r, "SegmentResponse/ID"), ["SR-1"]);
        assert_eq!(vals(&doc, r, "SegmentResponse[*]/ID"), ["SR-1", "SR-2"]);
        assert_eq!(vals(&doc, r, "SegmentResponse[2]/ID"), ["SR-2"]);
        let sr = B2mml::parse_path("SegmentResponse").unwrap();
        let scopes = doc.scopes(&sr, r);
        assert_eq!(scopes.len(), 2);
        let s = scopes[0];
        assert_eq!(
            vals(&doc, s, "ProductionData[ID='Temp']/Value/UnitOfMeasure"),
            ["Cel"]
        );
        assert_eq!(vals(&doc, s, "ProductionData[ID!='pH']/ID"), ["Temp"]);
        assert_eq!(
            vals(&doc, s, "ProductionData[Value/UnitOfMeasure]/ID"),
            ["Temp"]
        );
        assert_eq!(
            vals(&doc, s, "MaterialConsumedActual[*]/MaterialLotID"),
            ["L-1", "L-3"]
        );
        assert_eq!(
            vals(
                &doc,
                s,
                "MaterialProducedActual[*]/MaterialLotID|MaterialConsumedActual[*]/MaterialLotID"
            ),
            ["L-1", "L-2", "L-3"]
        );
        let m = B2mml::parse_path("MaterialProducedActual|MaterialConsumedActual").unwrap();
        let mats = doc.scopes(&m, s);
        assert_eq!(mats.len(), 3);
        assert_eq!(vals(&doc, mats[1], "name()"), ["MaterialProducedActual"]);
        assert_eq!(vals(&doc, mats[0], "Quantity/@unitCode"), ["mL"]);
        assert_eq!(vals(&doc, mats[0], "../ID"), ["SR-1"]);
        assert_eq!(vals(&doc, mats[0], "/ProductionResponse/ID"), ["PR-1"]);
        // The vendor extension's x:ID is never matched.
        assert_eq!(vals(&doc, s, "ID"), ["SR-1"]);
        assert_eq!(vals(&doc, s, "ID[*]"), ["SR-1"]);
        assert_eq!(
            doc.select(&B2mml::parse_path("SegmentResponse[*]/ID").unwrap(), r),
            ["SR-1", "SR-2"]
        );
    }

    #[test]
    fn bods_carry_their_nouns() {
        let bod = r#"<ProcessMaterialLot xmlns="http://www.mesa.org/xml/B2MML-V0700" releaseID="7.0">
  <ApplicationArea><Sender><LogicalID>MES</LogicalID></Sender><BODID>BOD-42</BODID></ApplicationArea>
  <DataArea><Process/>
    <MaterialLot><ID>LOT-1</ID></MaterialLot>
    <MaterialLot><ID>LOT-2</ID></MaterialLot>
  </DataArea>
</ProcessMaterialLot>"#;
        let msg = B2mmlMessage::parse(bod.as_bytes()).unwrap();
        assert_eq!(msg.kind(), DocumentKind::MaterialLot);
        assert_eq!(msg.version(), Version::V0700);
        assert_eq!(msg.verb(), Some("Process"));
        assert_eq!(msg.message_id(), Some("BOD-42"));
        let ids: Vec<_> = msg.documents().filter_map(|d| d.id()).collect();
        assert_eq!(ids, ["LOT-1", "LOT-2"]);
        let d = msg.documents().next().unwrap();
        assert_eq!(d.message_type().as_deref(), Some("MaterialLot"));
        assert_eq!(vals(&d, d.root(), "/MaterialLot/ID"), ["LOT-1"]);
    }

    #[test]
    fn documents_cgthub_does_not_read_are_named() {
        let e = B2mmlMessage::parse(
            br#"<ProductDefinition xmlns="http://www.mesa.org/xml/B2MML-V0600"><ID>P</ID></ProductDefinition>"#,
        )
        .unwrap_err();
        assert_eq!(e.code(), "unknown_document");
        let m = e.to_string();
        assert!(
            m.contains("<ProductDefinition>") && m.contains("B2MML-V0600"),
            "{m}"
        );
        let e = B2mmlMessage::parse(br#"<ProductionResponse><ID>P</ID></ProductionResponse>"#)
            .unwrap_err();
        assert_eq!(e.code(), "not_b2mml");
        assert!(e.to_string().contains("in no namespace"), "{e}");
        let e = B2mmlMessage::parse(br#"<a:ProductionResponse xmlns:a="urn:acme"/>"#).unwrap_err();
        assert_eq!(e.code(), "not_b2mml");
        assert!(e.to_string().contains("\"urn:acme\""), "{e}");
        let e = B2mmlMessage::parse(
            br#"<SyncProductionSchedule xmlns="http://www.mesa.org/xml/B2MML-V0600"><DataArea><Sync/></DataArea></SyncProductionSchedule>"#,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("DataArea has no <ProductionSchedule>"),
            "{e}"
        );
        let e = B2mmlMessage::parse(b"<A>\xFF</A>").unwrap_err();
        assert_eq!(e.code(), "unsupported_encoding");
    }
}
