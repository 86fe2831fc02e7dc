//! Routes: operator-managed TOML files under `routes/` that send events to sinks.
//!
//! ```toml
//! [[route]]
//! name = "qc-results"            # unique across all route files
//! kinds = ["qc.*", "batch.dispositioned"]   # exact, "prefix.*" or "*"
//! products = ["*"]               # optional; default any
//! partners = ["*"]               # optional; default any
//! sink = "events_file"           # a sink from the config's [sinks.NAME]
//! routing_key = "{product}.{kind}"   # for brokers; {kind} {product} {partner} {coi}
//! retry = { max_attempts = 8, initial_backoff_ms = 500, max_backoff_ms = 60000 }
//!
//! # Broker sinks only: the queue the hub declares and binds for this route.
//! [route.queue]
//! name = "cgt.qc-results"        # default "cgt.<route name>"
//! bindings = ["*.qc.*"]          # default: from routing_key and kinds
//! delivery_limit = 20            # redeliveries before cgt.dead
//! retry_ttl_ms = 30000           # optional: a "<name>.retry" delay queue
//! ```
//!
//! An event goes to every route that matches it (at most once per sink). An
//! event that matches none is kept as *unmatched*, visible to operators, never
//! dropped.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::event::{EventKind, TherapyEvent};
use crate::mapping::LoadError;
use crate::store::Destination;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    #[serde(default)]
    route: Vec<Spanned<RouteSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSpec {
    name: String,
    kinds: Vec<String>,
    #[serde(default)]
    products: Vec<String>,
    #[serde(default)]
    partners: Vec<String>,
    sink: String,
    #[serde(default)]
    routing_key: Option<String>,
    #[serde(default)]
    retry: RetryPolicy,
    #[serde(default)]
    queue: Option<QueueSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueSpec {
    name: Option<String>,
    bindings: Option<Vec<String>>,
    #[serde(default = "default_delivery_limit")]
    delivery_limit: u32,
    retry_ttl_ms: Option<u64>,
}

fn default_delivery_limit() -> u32 {
    20
}

/// A route's queue on a broker sink: declared durable at start, bound to
/// the events exchange with `bindings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteQueue {
    pub name: String,
    /// Topic patterns (`*` one word, `#` any).
    pub bindings: Vec<String>,
    /// Deliveries a consumer may refuse before the broker dead-letters it.
    pub delivery_limit: u32,
    /// When set, a `<name>.retry` queue delays redeliveries by this much.
    pub retry_ttl_ms: Option<u64>,
}

/// How often and how patiently delivery to a sink is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts before the event becomes a dead letter.
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            initial_backoff_ms: 500,
            max_backoff_ms: 300_000,
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff for the attempt that just failed (1-based), with
    /// up to 20% jitter from `jitter` in [0, 1).
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let base = self
            .initial_backoff_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(30))
            .min(self.max_backoff_ms);
        Duration::from_millis(base + (base as f64 * 0.2 * jitter) as u64)
    }
}

/// One loaded route.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub file: PathBuf,
    pub line: usize,
    kinds: Vec<Pattern>,
    products: Vec<String>,
    partners: Vec<String>,
    pub sink: String,
    pub routing_key: String,
    pub retry: RetryPolicy,
    /// The queue to declare when the sink is a broker.
    pub queue: Option<RouteQueue>,
}

#[derive(Debug, Clone)]
enum Pattern {
    Any,
    Prefix(String),
    Exact(EventKind),
}

impl Pattern {
    fn parse(s: &str) -> Result<Pattern, String> {
        if s == "*" {
            return Ok(Pattern::Any);
        }
        if let Some(prefix) = s.strip_suffix(".*") {
            let known = EventKind::ALL
                .iter()
                .any(|k| k.as_str().starts_with(&format!("{prefix}.")));
            return if known {
                Ok(Pattern::Prefix(format!("{prefix}.")))
            } else {
                Err(format!("no event kind starts with {prefix:?}"))
            };
        }
        EventKind::parse(s)
            .map(Pattern::Exact)
            .ok_or_else(|| format!("unknown event kind {s:?}"))
    }

    fn matches(&self, k: EventKind) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Prefix(p) => k.as_str().starts_with(p.as_str()),
            Pattern::Exact(e) => *e == k,
        }
    }

    /// The topic pattern for `{kind}`: kinds are two dot-separated words.
    fn topic(&self) -> String {
        match self {
            Pattern::Any => "*.*".into(),
            Pattern::Prefix(p) => format!("{p}*"),
            Pattern::Exact(e) => e.as_str().into(),
        }
    }
}

/// The default bindings of a route's queue: its routing key template with
/// `{kind}` filled from each kind pattern and every other placeholder a
/// one-word wildcard.
fn default_bindings(template: &str, kinds: &[Pattern]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for k in kinds {
        let b = template
            .replace("{kind}", &k.topic())
            .replace("{product}", "*")
            .replace("{partner}", "*")
            .replace("{coi}", "*");
        if !out.contains(&b) {
            out.push(b);
        }
    }
    out
}

fn any_of(list: &[String], value: Option<&str>) -> bool {
    list.is_empty() || list.iter().any(|p| p == "*" || Some(p.as_str()) == value)
}

impl Route {
    pub fn matches(&self, ev: &TherapyEvent) -> bool {
        self.kinds.iter().any(|p| p.matches(ev.kind()))
            && any_of(&self.products, ev.product.as_deref())
            && any_of(&self.partners, Some(&ev.source.partner))
    }

    /// Fills the routing key template for an event. A value fills one
    /// topic word: its dots become `_` (product `R240.1` → `R240_1`), so
    /// bindings such as `*.order.*` see the key's shape the template gives.
    pub fn key_for(&self, ev: &TherapyEvent) -> String {
        let word = |v: Option<&str>| v.unwrap_or("none").replace('.', "_");
        self.routing_key
            .replace("{kind}", ev.kind().as_str())
            .replace("{product}", &word(ev.product.as_deref()))
            .replace("{partner}", &word(Some(&ev.source.partner)))
            .replace("{coi}", &word(ev.coi.as_deref()))
    }
}

/// All routes in force.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
    by_name: HashMap<String, usize>,
}

impl Router {
    /// Loads `dir/*.toml`. `sinks` are the configured sink names; a route to
    /// any other sink is an error. All errors are reported at once.
    pub fn load_dir(dir: &Path, sinks: &BTreeSet<String>) -> Result<Router, Vec<LoadError>> {
        let files = crate::mapping::mapping_files(dir).map_err(|e| {
            vec![LoadError::file(
                dir,
                format!("cannot read the routes folder: {e}"),
            )]
        })?;
        let mut router = Router::default();
        let mut errors = Vec::new();
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => router.add_file(&file, &text, sinks, &mut errors),
                Err(e) => errors.push(LoadError::file(&file, format!("cannot read: {e}"))),
            }
        }
        if errors.is_empty() {
            Ok(router)
        } else {
            Err(errors)
        }
    }

    fn add_file(
        &mut self,
        file: &Path,
        text: &str,
        sinks: &BTreeSet<String>,
        errors: &mut Vec<LoadError>,
    ) {
        let spec: RoutesFile = match toml::from_str(text) {
            Ok(s) => s,
            Err(e) => {
                let at = e.span().map_or(0, |s| s.start);
                errors.push(LoadError::at(file, text, at, e.message().to_string()));
                return;
            }
        };
        for r in spec.route {
            let at = r.span().start;
            let err = |m: String| LoadError::at(file, text, at, m);
            let r = r.into_inner();
            if let Some(&i) = self.by_name.get(&r.name) {
                let other = &self.routes[i];
                errors.push(err(format!(
                    "route {:?} is already defined at {}:{}",
                    r.name,
                    other.file.display(),
                    other.line
                )));
                continue;
            }
            if !sinks.contains(&r.sink) {
                let known: Vec<_> = sinks.iter().map(String::as_str).collect();
                errors.push(err(format!(
                    "route {:?}: no sink {:?} in the config (sinks: {})",
                    r.name,
                    r.sink,
                    known.join(", ")
                )));
                continue;
            }
            if r.kinds.is_empty() {
                errors.push(err(format!("route {:?}: kinds is empty", r.name)));
                continue;
            }
            let kinds: Result<Vec<_>, _> = r.kinds.iter().map(|k| Pattern::parse(k)).collect();
            let kinds = match kinds {
                Ok(k) => k,
                Err(e) => {
                    errors.push(err(format!("route {:?}: {e}", r.name)));
                    continue;
                }
            };
            if r.retry.max_attempts == 0 {
                errors.push(err(format!(
                    "route {:?}: retry.max_attempts must be at least 1",
                    r.name
                )));
                continue;
            }
            let routing_key = r.routing_key.unwrap_or_else(|| "{kind}".to_string());
            let queue = match r.queue {
                None => None,
                Some(q) => {
                    let bindings = q
                        .bindings
                        .unwrap_or_else(|| default_bindings(&routing_key, &kinds));
                    if bindings.is_empty() {
                        errors.push(err(format!("route {:?}: queue.bindings is empty", r.name)));
                        continue;
                    }
                    if q.delivery_limit == 0 {
                        errors.push(err(format!(
                            "route {:?}: queue.delivery_limit must be at least 1",
                            r.name
                        )));
                        continue;
                    }
                    Some(RouteQueue {
                        name: q.name.unwrap_or_else(|| format!("cgt.{}", r.name)),
                        bindings,
                        delivery_limit: q.delivery_limit,
                        retry_ttl_ms: q.retry_ttl_ms,
                    })
                }
            };
            if let Some(q) = &queue {
                if let Some(other) = self
                    .routes
                    .iter()
                    .find(|o| o.queue.as_ref().is_some_and(|oq| oq.name == q.name))
                {
                    errors.push(err(format!(
                        "route {:?}: queue {:?} is already route {:?}'s ({}:{})",
                        r.name,
                        q.name,
                        other.name,
                        other.file.display(),
                        other.line
                    )));
                    continue;
                }
            }
            let line = LoadError::at(file, text, at, "").line;
            self.by_name.insert(r.name.clone(), self.routes.len());
            self.routes.push(Route {
                name: r.name,
                file: file.to_path_buf(),
                line,
                kinds,
                products: r.products,
                partners: r.partners,
                sink: r.sink,
                routing_key,
                retry: r.retry,
                queue,
            });
        }
    }

    /// Where an event goes: every matching route, at most once per sink.
    /// Empty means unmatched.
    pub fn route(&self, ev: &TherapyEvent) -> Vec<Destination> {
        let mut out: Vec<Destination> = Vec::new();
        for r in &self.routes {
            if r.matches(ev) && !out.iter().any(|d| d.sink == r.sink) {
                out.push(Destination {
                    route: r.name.clone(),
                    sink: r.sink.clone(),
                    routing_key: r.key_for(ev),
                });
            }
        }
        out
    }

    /// Whether some route's routing key names the COI (then an event that
    /// gets its COI from the registry is routed again).
    pub fn keys_on_coi(&self) -> bool {
        self.routes.iter().any(|r| r.routing_key.contains("{coi}"))
    }

    pub fn get(&self, name: &str) -> Option<&Route> {
        self.by_name.get(name).map(|&i| &self.routes[i])
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventData, Order, Source};

    fn sinks() -> BTreeSet<String> {
        ["file_a", "file_b"].iter().map(|s| s.to_string()).collect()
    }

    fn load(text: &str) -> Result<Router, Vec<LoadError>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("r.toml"), text).unwrap();
        Router::load_dir(dir.path(), &sinks())
    }

    fn order(product: Option<&str>, partner: &str) -> TherapyEvent {
        TherapyEvent {
            schema: (),
            event_id: TherapyEvent::new_id(),
            data: EventData::OrderPlaced(Order::default()),
            coi: None,
            order_id: None,
            product: product.map(str::to_string),
            occurred_at: chrono::Utc::now(),
            recorded_at: chrono::Utc::now(),
            source: Source {
                connector: "hl7v2".into(),
                partner: partner.into(),
                message_id: None,
                payload_sha256: String::new(),
                entry: None,
            },
            claims: Default::default(),
        }
    }

    #[test]
    fn wildcards_products_partners_and_fan_out() {
        let r = load(
            r#"
[[route]]
name = "orders"
kinds = ["order.*"]
sink = "file_a"
[[route]]
name = "everything-from-lab"
kinds = ["*"]
partners = ["LAB"]
products = ["kymriah"]
sink = "file_b"
routing_key = "{product}.{kind}"
[[route]]
name = "orders-again"
kinds = ["order.placed"]
sink = "file_a"
"#,
        )
        .unwrap();
        let dests =
            |ev: &TherapyEvent| r.route(ev).into_iter().map(|d| d.route).collect::<Vec<_>>();
        assert_eq!(
            dests(&order(None, "EHR")),
            ["orders"],
            "same sink only once"
        );
        assert_eq!(
            dests(&order(Some("kymriah"), "LAB")),
            ["orders", "everything-from-lab"]
        );
        assert_eq!(dests(&order(Some("other"), "LAB")), ["orders"]);
        let route = r.get("everything-from-lab").unwrap();
        assert_eq!(
            route.key_for(&order(Some("kymriah"), "LAB")),
            "kymriah.order.placed"
        );
        assert_eq!(
            route.key_for(&order(Some("R240.1"), "LAB")),
            "R240_1.order.placed",
            "a value is one topic word"
        );
    }

    #[test]
    fn bad_routes_are_reported_with_their_line() {
        let errs = load("[[route]]\nname = \"a\"\nkinds = [\"order.*\"]\nsink = \"file_a\"\n\n[[route]]\nname = \"b\"\nkinds = [\"qc.result\"]\nsink = \"file_a\"\n[[route]]\nname = \"c\"\nkinds = [\"*\"]\nsink = \"nowhere\"\n").unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].line, 6, "{}", errs[0]);
        assert!(errs[0].message.contains("unknown event kind \"qc.result\""));
        assert_eq!(errs[1].line, 10);
        assert!(
            errs[1].message.contains("no sink \"nowhere\""),
            "{}",
            errs[1]
        );
        let errs =
            load("[[route]]\nname = \"a\"\nkinds = [\"order.*\"]\nsink = \"file_a\"\nsnk = 1\n")
                .unwrap_err();
        assert_eq!(errs[0].line, 5, "{}", errs[0]);
    }

    #[test]
    fn route_queues_default_their_name_and_bindings() {
        let r = load(
            r##"
[[route]]
name = "orders"
kinds = ["order.*", "qc.result_reported"]
sink = "file_a"
routing_key = "{product}.{kind}"
queue = {}
[[route]]
name = "all"
kinds = ["*"]
sink = "file_b"
[route.queue]
name = "mes.inbox"
bindings = ["#"]
delivery_limit = 5
retry_ttl_ms = 30000
[[route]]
name = "no-queue"
kinds = ["*"]
sink = "file_b"
"##,
        )
        .unwrap();
        let q = r.get("orders").unwrap().queue.clone().unwrap();
        assert_eq!(q.name, "cgt.orders");
        assert_eq!(q.bindings, ["*.order.*", "*.qc.result_reported"]);
        assert_eq!((q.delivery_limit, q.retry_ttl_ms), (20, None));
        let q = r.get("all").unwrap().queue.clone().unwrap();
        assert_eq!(
            (
                q.name.as_str(),
                q.bindings,
                q.delivery_limit,
                q.retry_ttl_ms
            ),
            ("mes.inbox", vec!["#".to_string()], 5, Some(30000))
        );
        assert!(r.get("no-queue").unwrap().queue.is_none());

        let errs = load(
            "[[route]]\nname = \"a\"\nkinds = [\"*\"]\nsink = \"file_a\"\nqueue = { name = \"q\" }\n\
             [[route]]\nname = \"b\"\nkinds = [\"*\"]\nsink = \"file_b\"\nqueue = { name = \"q\", delivery_limit = 0 }\n\
             [[route]]\nname = \"c\"\nkinds = [\"*\"]\nsink = \"file_b\"\nqueue = { name = \"q\" }\n",
        )
        .unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].message.contains("delivery_limit"), "{}", errs[0]);
        assert_eq!(errs[1].line, 11, "{}", errs[1]);
        assert!(
            errs[1].message.contains("already route \"a\"'s"),
            "{}",
            errs[1]
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
        };
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(100));
        assert_eq!(p.backoff(3, 0.0), Duration::from_millis(400));
        assert_eq!(p.backoff(9, 0.0), Duration::from_millis(1000));
        assert_eq!(p.backoff(1, 0.5), Duration::from_millis(110));
    }
}
