//! The mapping paths of FHIR mappings: a small subset of FHIRPath.
//!
//! ```text
//! ServiceRequest.identifier.where(system='urn:oid:1.2.3').value
//! subject.resolve().birthDate
//! code.coding[0].code
//! note[*].text
//! ```
//!
//! A path is steps separated by dots. A step is an element name (JSON
//! name, so choice elements are written `valueQuantity`, `occurrenceDateTime`),
//! optionally followed by `[N]` (the N-th item, 0-based, of what the
//! path selected so far) or `[*]` (all of them, as a list); or
//! `where(PATH='TEXT')` (keeps the items where PATH has the value TEXT;
//! `!=`: where it has no such value);
//! or `resolve()` (follows a Reference to the resource it names: a
//! `urn:uuid:` full URL in the same Bundle, `Type/id` in the Bundle or
//! among the resources cgthub already holds). A first step that starts
//! with a capital letter names the resource type and is checked, not
//! followed. As in FHIRPath, arrays are flattened: `identifier.value`
//! selects the value of every identifier; a single field takes the first.
//!
//! Written by hand: the FHIRPath crates on crates.io evaluate over their
//! own element models, not the JSON a mapping reads, and this subset is
//! what mappings need.

use hub_core::mapping::Format;

/// The FHIR mapping format (`format = "fhir"`).
#[derive(Debug)]
pub struct Fhir;

/// A compiled path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirPath {
    /// The resource type the path starts with, if it names one.
    pub resource_type: Option<String>,
    pub steps: Vec<Step>,
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An element of each item (arrays flattened).
    Child(String),
    /// The N-th item selected so far.
    Index(usize),
    /// All items selected so far, as a list.
    All,
    /// The items where the sub-path has the value (`=`), or where it has
    /// no such value (`!=`, also true when the sub-path selects nothing).
    Where(Box<FhirPath>, String, bool),
    /// Follow each Reference to its resource.
    Resolve,
}

impl FhirPath {
    /// Whether the path ends in `[*]` anywhere: it maps to a list.
    pub fn is_multi(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::All))
    }
}

impl Format for Fhir {
    const NAME: &'static str = "fhir";
    type Dialect = hub_core::mapping::NoDialect;
    type Path = FhirPath;

    fn parse_path(text: &str) -> Result<FhirPath, String> {
        let mut p = Parser { text, at: 0 };
        let path = p.path()?;
        if p.at != text.len() {
            return Err(format!(
                "unexpected {:?} at column {} of {text:?}",
                &text[p.at..],
                p.at + 1
            ));
        }
        Ok(path)
    }
}

struct Parser<'t> {
    text: &'t str,
    at: usize,
}

impl<'t> Parser<'t> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn err(&self, what: &str) -> String {
        format!("{what} at column {} of {:?}", self.at + 1, self.text)
    }

    fn path(&mut self) -> Result<FhirPath, String> {
        let mut path = FhirPath {
            resource_type: None,
            steps: Vec::new(),
        };
        loop {
            let name = self.name()?;
            match name {
                "where" if self.rest().starts_with('(') => {
                    self.at += 1;
                    let sub = self.path()?;
                    let negate = self.rest().starts_with("!=");
                    if negate {
                        self.at += 2;
                    } else if self.rest().starts_with('=') {
                        self.at += 1;
                    } else {
                        return Err(self.err("expected = or != in where(…)"));
                    }
                    let value = self.quoted()?;
                    if !self.rest().starts_with(')') {
                        return Err(self.err("expected ) closing where(…)"));
                    }
                    self.at += 1;
                    path.steps.push(Step::Where(Box::new(sub), value, negate));
                }
                "resolve" if self.rest().starts_with("()") => {
                    self.at += 2;
                    path.steps.push(Step::Resolve);
                }
                _ if path.steps.is_empty()
                    && path.resource_type.is_none()
                    && name.starts_with(|c: char| c.is_ascii_uppercase()) =>
                {
                    path.resource_type = Some(name.to_string());
                }
                _ => path.steps.push(Step::Child(name.to_string())),
            }
            while self.rest().starts_with('[') {
                let close = self
                    .rest()
                    .find(']')
                    .ok_or_else(|| self.err("[ without ]"))?;
                let inner = &self.rest()[1..close];
                let step = if inner == "*" {
                    Step::All
                } else {
                    Step::Index(
                        inner
                            .parse()
                            .map_err(|_| self.err("expected [N] (0-based) or [*]"))?,
                    )
                };
                path.steps.push(step);
                self.at += close + 1;
            }
            if self.rest().starts_with('.') {
                self.at += 1;
            } else {
                break;
            }
        }
        if path.steps.is_empty() && path.resource_type.is_none() {
            return Err(self.err("empty path"));
        }
        Ok(path)
    }

    fn name(&mut self) -> Result<&'t str, String> {
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.err("expected an element name"));
        }
        let start = self.at;
        self.at += len;
        Ok(&self.text[start..self.at])
    }

    fn quoted(&mut self) -> Result<String, String> {
        if !self.rest().starts_with('\'') {
            return Err(self.err("expected a 'quoted' value"));
        }
        let end = self.rest()[1..]
            .find('\'')
            .ok_or_else(|| self.err("unterminated 'quoted' value"))?;
        let v = self.rest()[1..=end].to_string();
        self.at += end + 2;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str) -> FhirPath {
        Fhir::parse_path(t).unwrap()
    }

    #[test]
    fn paths_parse_into_steps() {
        let path = p("ServiceRequest.identifier.where(system='urn:oid:1.2').value");
        assert_eq!(path.resource_type.as_deref(), Some("ServiceRequest"));
        assert_eq!(
            path.steps,
            vec![
                Step::Child("identifier".into()),
                Step::Where(
                    Box::new(FhirPath {
                        resource_type: None,
                        steps: vec![Step::Child("system".into())]
                    }),
                    "urn:oid:1.2".into(),
                    false
                ),
                Step::Child("value".into()),
            ]
        );
        let path = p("subject.resolve().identifier[0].value");
        assert_eq!(path.steps[1], Step::Resolve);
        assert_eq!(path.steps[3], Step::Index(0));
        assert!(p("note[*].text").is_multi());
        assert!(!p("note.text").is_multi());
        // A nested where() with a dotted sub-path.
        let path = p("identifier.where(type.coding.code='MR').value");
        assert!(
            matches!(&path.steps[1], Step::Where(sub, v, false) if sub.steps.len() == 3 && v == "MR")
        );
        let path = p("identifier.where(type.coding.code!='COI').value");
        assert!(matches!(&path.steps[1], Step::Where(_, v, true) if v == "COI"));
    }

    #[test]
    fn bad_paths_say_where() {
        for (bad, says) in [
            ("", "expected an element name at column 1"),
            ("a..b", "expected an element name at column 3"),
            ("a[x]", "expected [N] (0-based) or [*]"),
            ("a.where(b='c'", "expected ) closing where"),
            ("a.where(b<'c')", "expected = or != in where"),
            ("a.where(b=c)", "expected a 'quoted' value"),
            ("a b", "unexpected \" b\" at column 2"),
        ] {
            let e = Fhir::parse_path(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
