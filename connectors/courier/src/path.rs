//! The mapping paths of courier mappings (`format = "courier"`): JSON
//! Pointer (RFC 6901) with wildcards, filters and relative pointers.
//!
//! ```text
//! /output/completeTrackResults/*/trackResults/*/scanEvents/*   every scan event
//! /shipments/*/events/*[statusCode=delivered]                  the delivered ones
//! /trackResponse/shipment/*/package/*/activity/*[status/type!=M]
//! /logData/*[temperature]                                      readings that have one
//! 0/date                       the scope's own `date`
//! 2/trackingNumberInfo/trackingNumber   two levels up from the scope
//! 1#                           the scope's index (or key) in its parent
//! ```
//!
//! - A path starting with `/` is a JSON Pointer from the document root,
//!   wherever it is evaluated. `~0` is `~` and `~1` is `/` inside a name.
//!   A name that is a number (`/items/0`) indexes an array.
//! - `*` as a whole segment: every element of an array, in document order
//!   (or every member of an object, in serde_json's map order: document
//!   order in the binary, where `preserve_order` is on, name order
//!   otherwise). A path with a `*` selects a list.
//! - `*[POINTER=TEXT]` keeps the elements where the relative pointer
//!   (`statusCode`, `status/type`) has the value TEXT; `*[POINTER!=TEXT]`
//!   those where it has not (also when it has no value); `*[POINTER]` those
//!   where it has a value. TEXT runs to the `]` that ends the segment and is
//!   compared with the value's text (numbers and booleans as their JSON text).
//! - A path starting with a number N is a Relative JSON Pointer
//!   (draft-bhutton-relative-json-pointer), evaluated from the `foreach`
//!   scope: up N levels (an array counts as a level: from a scan event,
//!   `1` is the `scanEvents` array and `2` the object holding it), then the
//!   pointer that follows; `N#` is the name or index of that node.
//!
//! Values: strings as they are; numbers and booleans as their JSON text;
//! null, objects, arrays and empty strings are no value.

use std::fmt;

use hub_core::mapping::Format;

/// The courier mapping format (`format = "courier"`).
#[derive(Debug)]
pub struct Courier;

/// A compiled path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CourierPath {
    pub start: Start,
    pub steps: Vec<Step>,
    /// `N#`: the name or index of the node reached, not its value.
    pub key_of: bool,
}

/// Where evaluation starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// `/…`: the document root.
    Root,
    /// `N…`: N levels up from the scope.
    Up(u32),
}

/// One segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A member name, or an array index when it is one (`0`, `12`).
    Key { name: String, index: Option<usize> },
    /// `*`, optionally filtered.
    All(Option<Filter>),
}

/// `[POINTER=TEXT]`, `[POINTER!=TEXT]` or `[POINTER]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub pointer: Vec<Step>,
    pub test: Test,
}

/// What a filter asks of the value at its pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    Present,
    Equals(String),
    NotEquals(String),
}

impl CourierPath {
    /// Whether the path has a `*`: it selects a list.
    pub fn is_multi(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::All(_)))
    }

    /// Whether the path starts at the document root.
    pub fn is_absolute(&self) -> bool {
        self.start == Start::Root
    }
}

impl Format for Courier {
    const NAME: &'static str = "courier";
    type Dialect = crate::dialect::CourierDialect;
    type Path = CourierPath;

    fn parse_path(text: &str) -> Result<CourierPath, String> {
        parse(text)
    }

    fn check_foreach(path: &CourierPath) -> Result<(), String> {
        if path.key_of {
            return Err("foreach needs nodes, not a name (`#`)".into());
        }
        Ok(())
    }
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Test::Present => Ok(()),
            Test::Equals(v) => write!(f, "={v}"),
            Test::NotEquals(v) => write!(f, "!={v}"),
        }
    }
}

/// Parses a path, or says what is wrong with it and where.
pub fn parse(text: &str) -> Result<CourierPath, String> {
    let err = |at: usize, what: &str| format!("{what} at column {} of {text:?}", at + 1);
    if text.is_empty() {
        return Err("empty path: use \"/…\" from the document root or \"0\" for the scope".into());
    }
    let bytes = text.as_bytes();
    let (start, mut at) = if bytes[0] == b'/' {
        (Start::Root, 0)
    } else if bytes[0].is_ascii_digit() {
        let len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        let digits = &text[..len];
        if len > 1 && digits.starts_with('0') {
            return Err(err(0, "a relative pointer's level has no leading zero"));
        }
        let up: u32 = digits
            .parse()
            .map_err(|_| err(0, "the level of a relative pointer is too large"))?;
        (Start::Up(up), len)
    } else {
        return Err(err(
            0,
            "a path starts with \"/\" (from the document root) or a number \
             (relative to the foreach scope: \"0/date\")",
        ));
    };
    let rest = &text[at..];
    if rest.starts_with(['+', '-']) {
        return Err(err(at, "index manipulation (N+1, N-1) is not supported"));
    }
    if rest == "#" {
        if start == Start::Root {
            return Err(err(at, "# goes after a relative level (\"0#\")"));
        }
        return Ok(CourierPath {
            start,
            steps: Vec::new(),
            key_of: true,
        });
    }
    if !rest.is_empty() && !rest.starts_with('/') {
        return Err(err(at, "expected \"/\" or \"#\" after the level"));
    }
    let mut steps = Vec::new();
    while at < text.len() {
        // `text[at]` is the '/' that opens a segment.
        at += 1;
        let seg_start = at;
        if text[at..].starts_with("*[") {
            let inner_start = at + 2;
            let close = find_filter_end(text, inner_start)
                .ok_or_else(|| err(at + 1, "[ without a ] that ends the segment"))?;
            let filter = parse_filter(text, inner_start, close)?;
            steps.push(Step::All(Some(filter)));
            at = close + 1;
        } else {
            let end = text[at..].find('/').map_or(text.len(), |i| at + i);
            let raw = &text[at..end];
            if raw == "*" {
                steps.push(Step::All(None));
            } else {
                if raw.starts_with('*') || (raw.contains('[') && raw.ends_with(']')) {
                    return Err(err(
                        seg_start,
                        "a filter is a segment of its own: \"*[name=value]\"",
                    ));
                }
                steps.push(key(&unescape(raw)
                    .map_err(|o| err(seg_start + o, "bad escape (only ~0 and ~1)"))?));
            }
            at = end;
        }
    }
    Ok(CourierPath {
        start,
        steps,
        key_of: false,
    })
}

/// The `]` that closes a filter opened before `from`: the first one
/// followed by `/` or the end of the path.
fn find_filter_end(text: &str, from: usize) -> Option<usize> {
    let b = text.as_bytes();
    (from..b.len()).find(|&i| b[i] == b']' && (i + 1 == b.len() || b[i + 1] == b'/'))
}

fn parse_filter(text: &str, from: usize, to: usize) -> Result<Filter, String> {
    let err = |at: usize, what: &str| format!("{what} at column {} of {text:?}", at + 1);
    let inner = &text[from..to];
    let (ptr, test, value_at) = match inner.find('=') {
        None => (inner, Test::Present, to),
        Some(i) if i > 0 && inner.as_bytes()[i - 1] == b'!' => (
            &inner[..i - 1],
            Test::NotEquals(inner[i + 1..].to_string()),
            from + i + 1,
        ),
        Some(i) => (
            &inner[..i],
            Test::Equals(inner[i + 1..].to_string()),
            from + i + 1,
        ),
    };
    if ptr.is_empty() {
        return Err(err(
            from,
            "a filter needs a pointer before = (\"*[statusCode=delivered]\")",
        ));
    }
    if ptr.starts_with('/') {
        return Err(err(
            from,
            "a filter's pointer is relative to the element: write \"status/type\", not \"/status/type\"",
        ));
    }
    if matches!(&test, Test::Equals(v) | Test::NotEquals(v) if v.is_empty()) {
        return Err(err(value_at, "a filter needs a value after = (empty strings are no value: use \"*[name]\" or \"*[name!=…]\")"));
    }
    let mut pointer = Vec::new();
    let mut at = from;
    for raw in ptr.split('/') {
        if raw == "*" || raw.starts_with("*[") {
            return Err(err(at, "no * inside a filter"));
        }
        if raw.is_empty() {
            return Err(err(at, "empty name in a filter's pointer"));
        }
        pointer.push(key(
            &unescape(raw).map_err(|o| err(at + o, "bad escape (only ~0 and ~1)"))?
        ));
        at += raw.len() + 1;
    }
    Ok(Filter { pointer, test })
}

fn key(name: &str) -> Step {
    // RFC 6901: an array index is `0` or digits without a leading zero.
    let is_index = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_digit())
        && (name == "0" || !name.starts_with('0'));
    Step::Key {
        name: name.to_string(),
        index: if is_index { name.parse().ok() } else { None },
    }
}

/// `~1` → `/`, `~0` → `~`; the offset of a bad `~` otherwise.
fn unescape(raw: &str) -> Result<String, usize> {
    if !raw.contains('~') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some((_, '0')) => out.push('~'),
                Some((_, '1')) => out.push('/'),
                _ => return Err(i),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str) -> CourierPath {
        parse(t).unwrap_or_else(|e| panic!("{t}: {e}"))
    }

    fn k(n: &str) -> Step {
        key(n)
    }

    #[test]
    fn pointers_wildcards_and_filters() {
        let path = p("/output/completeTrackResults/*/trackResults/0/scanEvents/*");
        assert_eq!(path.start, Start::Root);
        assert_eq!(path.steps.len(), 7);
        assert_eq!(path.steps[2], Step::All(None));
        assert_eq!(
            path.steps[4],
            Step::Key {
                name: "0".into(),
                index: Some(0)
            }
        );
        assert!(path.is_multi());
        assert!(!p("/a/b").is_multi());

        let path = p("/shipments/*/events/*[statusCode=delivered]/timestamp");
        assert_eq!(
            path.steps[3],
            Step::All(Some(Filter {
                pointer: vec![k("statusCode")],
                test: Test::Equals("delivered".into())
            }))
        );
        assert_eq!(path.steps[4], k("timestamp"));
        let path = p("/a/*[status/type!=M]");
        assert_eq!(
            path.steps[1],
            Step::All(Some(Filter {
                pointer: vec![k("status"), k("type")],
                test: Test::NotEquals("M".into())
            }))
        );
        let path = p("/logData/*[temperature]");
        assert!(matches!(&path.steps[1], Step::All(Some(f)) if f.test == Test::Present));
        // The value runs to the `]` that ends the segment: `=` and `/` inside.
        let path = p("/a/*[url=/x?y=1]/b");
        assert!(
            matches!(&path.steps[1], Step::All(Some(f)) if f.test == Test::Equals("/x?y=1".into()))
        );
        assert_eq!(path.steps[2], k("b"));
    }

    #[test]
    fn escapes_and_indexes_follow_rfc_6901() {
        let path = p("/a~1b/m~0n/dgf:routes/007/10");
        assert_eq!(path.steps[0], k("a/b"));
        assert_eq!(path.steps[1], k("m~n"));
        assert_eq!(path.steps[2], k("dgf:routes"));
        // A leading zero is a member name, not an index.
        assert_eq!(
            path.steps[3],
            Step::Key {
                name: "007".into(),
                index: None
            }
        );
        assert_eq!(
            path.steps[4],
            Step::Key {
                name: "10".into(),
                index: Some(10)
            }
        );
        // An empty name is a member named "" (RFC 6901).
        assert_eq!(p("/a//b").steps[1], k(""));
    }

    #[test]
    fn relative_pointers() {
        let path = p("0/date");
        assert_eq!((path.start, path.steps.len()), (Start::Up(0), 1));
        let path = p("2/trackingNumberInfo/trackingNumber");
        assert_eq!(path.start, Start::Up(2));
        assert!(!path.is_absolute());
        let path = p("0");
        assert_eq!(
            (path.start, path.steps.len(), path.key_of),
            (Start::Up(0), 0, false)
        );
        let path = p("1#");
        assert_eq!((path.start, path.key_of), (Start::Up(1), true));
        assert!(Courier::check_foreach(&path).is_err());
        assert!(Courier::check_foreach(&p("0/readings/*")).is_ok());
    }

    #[test]
    fn bad_paths_say_what_and_where() {
        for (bad, says) in [
            ("", "empty path"),
            ("output/x", "starts with \"/\""),
            ("01/x", "no leading zero"),
            ("0+1/x", "index manipulation"),
            ("2x", "expected \"/\" or \"#\" after the level at column 2"),
            ("/#", "nothing"),
            (
                "/a/*[b=c",
                "[ without a ] that ends the segment at column 5",
            ),
            ("/a/*[=c]", "needs a pointer before ="),
            ("/a/*[b=]", "at column 8 of"),
            ("/a/*[b!=]", "needs a value after ="),
            ("/a/*[/b=c]", "relative to the element"),
            ("/a/*[b/*=c]", "no * inside a filter"),
            ("/a/*[b//c=d]", "empty name"),
            ("/a/*[b=c]x", "[ without a ] that ends the segment"),
            ("/a/*x", "a filter is a segment of its own"),
            ("/a/b[0]", "\"*[name=value]\" at column 4"),
            ("/a~2b", "bad escape (only ~0 and ~1) at column 3"),
            ("/a/*[b~=c]", "bad escape"),
            ("99999999999/a", "too large"),
        ] {
            let e = match parse(bad) {
                Err(e) => e,
                Ok(p) if says == "nothing" => {
                    // `/#` is a member named "#": valid JSON Pointer.
                    assert_eq!(p.steps, vec![k("#")]);
                    continue;
                }
                Ok(p) => panic!("{bad:?} parsed: {p:?}"),
            };
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
