//! The mapping paths of B2MML mappings (`format = "b2mml"`): a small,
//! XPath-like subset over element local names.
//!
//! ```text
//! ID                                         the scope element's child ID
//! /ProductionResponse/ID                     from the document element (named first)
//! SegmentResponse[*]                         every SegmentResponse child (a list; foreach)
//! MaterialConsumedActual[*]/MaterialLotID    the lot of every consumed material
//! ProductionData[ID='pH']/Value/ValueString  filter by a child's value
//! MaterialLotProperty[ID!='COI']/ID          … or by its absence of that value
//! SegmentResponse[2]/ID                      the 2nd (1-based, as in XPath)
//! Quantity/@unitCode                         an attribute (last step only)
//! name()                                     the element's own local name
//! ../ID                                      the parent's child ID
//! MaterialProducedActual|MaterialConsumedActual   union, in document order
//! ```
//!
//! A path is steps separated by `/`, evaluated from the scope element (the
//! document element, or what a `foreach` selected). A step is an element's
//! local name — namespace prefixes are never written: the namespace is
//! checked once, at the root, and elements of other namespaces (vendor
//! extensions) are never matched — followed by predicates, each applied in
//! turn to the matching children *of each parent* (as in XPath):
//! `[*]` keeps all and makes the path a list, `[N]` keeps the N-th (1-based),
//! `[SUB='TEXT']` keeps those where the relative path SUB has the value TEXT,
//! `[SUB!='TEXT']` those where it has no such value, `[SUB]` those where SUB
//! selects something. `..` is the parent and `.` the element itself. A path
//! starting with `/` starts at the document element, whose name is its first
//! step (a different name selects nothing). The last step may be `@name`
//! (an attribute, by local name) or `name()` (the element's local name).
//! `A|B` selects what either selects, in document order.
//!
//! A path without `[*]` reads one value: the first non-empty one, paths
//! being flattened (`MaterialConsumedActual/MaterialLotID` is the first
//! consumed material that has a lot). An element's value is its trimmed
//! text; an element with only child elements has none.

use hub_core::mapping::Format;

/// The B2MML mapping format (`format = "b2mml"`).
#[derive(Debug)]
pub struct B2mml;

/// A compiled path: one or more alternatives (`|`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct B2mmlPath {
    pub alts: Vec<Alt>,
}

/// One alternative of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alt {
    /// Starts at the document element (`/Name/…`), whose name is `steps[0]`.
    pub absolute: bool,
    pub steps: Vec<Step>,
    pub end: End,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Child elements with this local name, then the predicates in order.
    Child(Box<str>, Vec<Pred>),
    /// The parent element.
    Parent,
    /// The element itself, then the predicates (`.[ID='x']`).
    This(Vec<Pred>),
}

/// A predicate on the elements a step selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pred {
    /// `[*]`: all, as a list.
    All,
    /// `[N]`: the N-th (1-based).
    Index(u32),
    /// `[SUB='v']` (false) or `[SUB!='v']` (true).
    Value(Box<Alt>, Box<str>, bool),
    /// `[SUB]`: SUB selects something.
    Has(Box<Alt>),
}

/// What the last step reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The element's text.
    Text,
    /// An attribute, by local name.
    Attr(Box<str>),
    /// The element's local name.
    Name,
}

impl B2mmlPath {
    /// Whether the path has `[*]` anywhere: it maps to a list.
    pub fn is_multi(&self) -> bool {
        self.alts
            .iter()
            .any(|a| a.steps.iter().any(|s| step_preds(s).contains(&Pred::All)))
    }

    /// Compiles a path (see the module docs).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut p = Parser { text, at: 0 };
        let mut alts = vec![p.alt(false)?];
        while p.rest().starts_with('|') {
            p.at += 1;
            alts.push(p.alt(false)?);
        }
        if p.at != text.len() {
            return Err(format!(
                "unexpected {:?} at column {} of {text:?}",
                &text[p.at..],
                p.at + 1
            ));
        }
        Ok(B2mmlPath { alts })
    }
}

fn step_preds(s: &Step) -> &[Pred] {
    match s {
        Step::Child(_, p) | Step::This(p) => p,
        Step::Parent => &[],
    }
}

impl Format for B2mml {
    const NAME: &'static str = "b2mml";
    type Dialect = hub_core::mapping::NoDialect;
    type Path = B2mmlPath;

    fn parse_path(text: &str) -> Result<B2mmlPath, String> {
        B2mmlPath::parse(text)
    }

    fn check_foreach(path: &B2mmlPath) -> Result<(), String> {
        for a in &path.alts {
            match &a.end {
                End::Text => {}
                End::Attr(n) => {
                    return Err(format!(
                        "foreach selects elements, and this path ends in the attribute @{n}"
                    ))
                }
                End::Name => {
                    return Err("foreach selects elements, and this path ends in name()".into())
                }
            }
        }
        Ok(())
    }
}

struct Parser<'t> {
    text: &'t str,
    at: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn err(&self, what: &str) -> String {
        format!("{what} at column {} of {:?}", self.at + 1, self.text)
    }

    /// One alternative; `nested` inside a predicate (no `/` start, stops at `=`, `!`, `]`).
    fn alt(&mut self, nested: bool) -> Result<Alt, String> {
        let absolute = !nested && self.rest().starts_with('/');
        if absolute {
            self.at += 1;
        }
        let mut steps = Vec::new();
        let mut end = End::Text;
        loop {
            if self.rest().starts_with('@') {
                self.at += 1;
                end = End::Attr(self.name()?.into());
                break;
            }
            if self.rest().starts_with("name()") {
                self.at += "name()".len();
                end = End::Name;
                break;
            }
            if self.rest().starts_with("..") {
                self.at += 2;
                steps.push(Step::Parent);
            } else if self.rest().starts_with('.') {
                self.at += 1;
                let preds = self.preds()?;
                steps.push(Step::This(preds));
            } else {
                let name = self.name()?;
                if self.rest().starts_with(':') {
                    return Err(
                        self.err("namespace prefixes are not written in paths (local names only)")
                    );
                }
                let preds = self.preds()?;
                steps.push(Step::Child(name.into(), preds));
            }
            if self.rest().starts_with('/') {
                self.at += 1;
            } else {
                break;
            }
        }
        if absolute && !matches!(steps.first(), Some(Step::Child(..))) {
            return Err(format!(
                "a path starting with / names the document element first (column 2 of {:?})",
                self.text
            ));
        }
        Ok(Alt {
            absolute,
            steps,
            end,
        })
    }

    fn preds(&mut self) -> Result<Vec<Pred>, String> {
        let mut preds = Vec::new();
        while self.rest().starts_with('[') {
            self.at += 1;
            let r = self.rest();
            if let Some(stripped) = r.strip_prefix('*') {
                if !stripped.starts_with(']') {
                    return Err(self.err("expected ] after [*"));
                }
                self.at += 2;
                preds.push(Pred::All);
                continue;
            }
            let digits = r.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 {
                let n: u32 = r[..digits]
                    .parse()
                    .map_err(|_| self.err("index too large"))?;
                if n == 0 {
                    return Err(self.err("indexes are 1-based, as in XPath: [1] is the first"));
                }
                self.at += digits;
                if !self.rest().starts_with(']') {
                    return Err(self.err("expected ] after the index"));
                }
                self.at += 1;
                preds.push(Pred::Index(n));
                continue;
            }
            let sub = self.alt(true)?;
            let negate = self.rest().starts_with("!=");
            let pred = if negate || self.rest().starts_with('=') {
                self.at += if negate { 2 } else { 1 };
                let v = self.quoted()?;
                Pred::Value(Box::new(sub), v.into(), negate)
            } else {
                Pred::Has(Box::new(sub))
            };
            if !self.rest().starts_with(']') {
                return Err(self.err("expected ], = or != in a predicate"));
            }
            self.at += 1;
            preds.push(pred);
        }
        Ok(preds)
    }

    fn name(&mut self) -> Result<String, String> {
        let len = self
            .rest()
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'))
            .unwrap_or(self.rest().len());
        if len == 0 || self.rest().starts_with(['-', '.']) {
            return Err(self.err("expected an element name"));
        }
        let start = self.at;
        self.at += len;
        Ok(self.text[start..self.at].to_string())
    }

    fn quoted(&mut self) -> Result<String, String> {
        let q = match self.rest().chars().next() {
            Some(c @ ('\'' | '"')) => c,
            _ => return Err(self.err("expected a 'quoted' value")),
        };
        let end = self.rest()[1..]
            .find(q)
            .ok_or_else(|| self.err("unterminated 'quoted' value"))?;
        let v = self.rest()[1..=end].to_string();
        self.at += end + 2;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str) -> B2mmlPath {
        B2mml::parse_path(t).unwrap()
    }

    #[test]
    fn paths_parse_into_steps() {
        let path = p("/ProductionResponse/SegmentResponse[*]");
        assert!(path.alts[0].absolute);
        assert!(path.is_multi());
        assert_eq!(
            path.alts[0].steps[1],
            Step::Child("SegmentResponse".into(), vec![Pred::All])
        );
        let path = p("ProductionData[ID='pH']/Value/ValueString");
        assert!(!path.is_multi());
        let Step::Child(name, preds) = &path.alts[0].steps[0] else {
            panic!("a child step")
        };
        assert_eq!(&**name, "ProductionData");
        assert!(
            matches!(&preds[0], Pred::Value(sub, v, false) if &**v == "pH" && sub.steps.len() == 1)
        );
        assert_eq!(
            p("Quantity/@unitCode").alts[0].end,
            End::Attr("unitCode".into())
        );
        assert_eq!(p("name()").alts[0].end, End::Name);
        assert_eq!(p("../ID").alts[0].steps[0], Step::Parent);
        assert_eq!(p("A|B").alts.len(), 2);
        assert_eq!(
            p("X[2][Y]").alts[0].steps[0],
            Step::Child(
                "X".into(),
                vec![
                    Pred::Index(2),
                    Pred::Has(Box::new(Alt {
                        absolute: false,
                        steps: vec![Step::Child("Y".into(), vec![])],
                        end: End::Text
                    }))
                ]
            )
        );
        assert!(matches!(
            &p("X[ID!=\"a b\"]").alts[0].steps[0],
            Step::Child(_, preds) if matches!(&preds[0], Pred::Value(_, v, true) if &**v == "a b")
        ));
    }

    #[test]
    fn bad_paths_say_where() {
        for (bad, says) in [
            ("", "expected an element name at column 1"),
            ("A//B", "expected an element name at column 3"),
            ("A[0]", "1-based"),
            ("A[x='1'", "expected ], = or != in a predicate at column 8"),
            ("A[x=1]", "expected a 'quoted' value at column 5"),
            ("b:ID", "namespace prefixes are not written"),
            ("A B", "unexpected \" B\" at column 2"),
            ("/..", "names the document element first"),
        ] {
            let e = B2mml::parse_path(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        assert!(B2mml::check_foreach(&p("A/@x")).is_err());
        assert!(B2mml::check_foreach(&p("A[*]")).is_ok());
    }
}
