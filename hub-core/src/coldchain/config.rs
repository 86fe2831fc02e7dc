//! The `[coldchain]` configuration section: temperature profiles, the
//! viability window each therapy travels against, and when to warn.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

/// Cold-chain monitoring (`[coldchain]`). Without the section the monitor is
/// off and has no profiles; `cgthub check` runs [`ColdChainConfig::check`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColdChainConfig {
    /// Whether the hub runs the monitor at all. Off by default.
    pub enabled: bool,
    /// The profile for readings, shipments and therapies that nothing else
    /// places (no `profile` on the reading, no shipment container claimed
    /// by a profile, no profile listing the therapy's product).
    pub default_profile: String,
    /// How much of each logger's history is kept to place late readings,
    /// in hours of event time behind its latest reading. A reading older
    /// than that is not judged.
    pub retain_hours: i64,
    /// At most this many readings are kept per logger (the oldest go
    /// first); about 50 bytes each. 1,500 is 25 hours at one a minute.
    pub max_readings_per_logger: usize,
    /// The profiles, by name (`[coldchain.profiles.NAME]`).
    pub profiles: BTreeMap<String, Profile>,
}

impl Default for ColdChainConfig {
    fn default() -> Self {
        ColdChainConfig {
            enabled: false,
            default_profile: "fresh_apheresis".into(),
            retain_hours: 48,
            max_readings_per_logger: 1500,
            profiles: BTreeMap::new(),
        }
    }
}

/// One temperature profile (`[coldchain.profiles.NAME]`): a range, how far
/// and how long readings may stray from it, and (for fresh material) the
/// viability window of the therapies it governs.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Lowest allowed temperature, °C; absent: no lower limit.
    #[serde(default)]
    pub min_celsius: Option<f64>,
    /// Highest allowed temperature, °C; absent: no upper limit.
    #[serde(default)]
    pub max_celsius: Option<f64>,
    /// A reading beyond the range by more than this many degrees opens an
    /// excursion at once. Default 0.
    #[serde(default)]
    pub tolerance_celsius: f64,
    /// Readings out of range (within `tolerance_celsius`) for this many
    /// minutes, first to last reading of the run, open an excursion.
    /// Default 0: any reading out of range opens one.
    #[serde(default)]
    pub tolerance_minutes: i64,
    /// The viability window, hours from `collection.completed`'s
    /// `occurred_at`, of the therapies this profile governs (`products`).
    /// Absent: those therapies have no countdown (cryopreserved material).
    #[serde(default)]
    pub viability_hours: Option<i64>,
    /// Alert when this many hours of the viability window are left, once
    /// each. Each must be positive and less than `viability_hours`. The
    /// smallest is raised as `high`, the others as `warning`.
    #[serde(default)]
    pub alert_remaining_hours: Vec<i64>,
    /// Therapy products (the event's `product`) whose viability window this
    /// profile governs; `"*"` any product that no profile names exactly.
    #[serde(default)]
    pub products: Vec<String>,
    /// `shipment.created` `container` values (compared trimmed, ignoring
    /// case) that put the shipment's logger readings on this profile.
    #[serde(default)]
    pub containers: Vec<String>,
}

impl Profile {
    /// How far `celsius` lies outside the range (0 inside it, at the limits
    /// included).
    pub fn deviation(&self, celsius: f64) -> f64 {
        match (self.min_celsius, self.max_celsius) {
            (Some(min), _) if celsius < min => min - celsius,
            (_, Some(max)) if celsius > max => celsius - max,
            _ => 0.0,
        }
    }

    /// The range as text: `2 to 8 °C`, `at most -150 °C`.
    pub(super) fn range_text(&self) -> String {
        match (self.min_celsius, self.max_celsius) {
            (Some(min), Some(max)) => format!("{min} to {max} °C"),
            (Some(min), None) => format!("at least {min} °C"),
            (None, Some(max)) => format!("at most {max} °C"),
            (None, None) => "any temperature".into(),
        }
    }
}

/// The example in DESIGN/README form; a test parses and checks it.
pub const EXAMPLE: &str = r#"
[coldchain]
enabled = true
default_profile = "fresh_apheresis"

[coldchain.profiles.fresh_apheresis]
min_celsius = 2.0
max_celsius = 8.0
tolerance_celsius = 0.5
tolerance_minutes = 10
viability_hours = 72
alert_remaining_hours = [24, 12, 4]
products = ["*"]
containers = ["2-8C"]

[coldchain.profiles.cryopreserved]
max_celsius = -150.0
tolerance_celsius = 10.0
tolerance_minutes = 15
containers = ["LN2 dry shipper"]
"#;

/// A `container` value as compared: trimmed, lower case.
pub(super) fn container_key(container: &str) -> String {
    container.trim().to_lowercase()
}

impl ColdChainConfig {
    /// Everything wrong with the section, one line each, naming its key;
    /// empty when it is usable. A disabled section with no profiles is fine.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.profiles.is_empty() {
            if self.enabled {
                problems.push("coldchain.profiles: no profile is defined".to_string());
            }
            return problems;
        }
        if !self.profiles.contains_key(&self.default_profile) {
            let known: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
            problems.push(format!(
                "coldchain.default_profile: unknown profile {:?} (known: {})",
                self.default_profile,
                known.join(", ")
            ));
        }
        if self.retain_hours <= 0 {
            problems.push(format!(
                "coldchain.retain_hours: must be positive, is {}",
                self.retain_hours
            ));
        }
        if self.max_readings_per_logger < 2 {
            problems.push(format!(
                "coldchain.max_readings_per_logger: must be at least 2, is {}",
                self.max_readings_per_logger
            ));
        }
        for (name, p) in &self.profiles {
            check_profile(&format!("coldchain.profiles.{name}"), p, &mut problems);
        }
        let mut claims: BTreeMap<(&str, String), Vec<&str>> = BTreeMap::new();
        for (name, p) in &self.profiles {
            for c in &p.containers {
                claims
                    .entry(("container", container_key(c)))
                    .or_default()
                    .push(name);
            }
            for product in &p.products {
                claims
                    .entry(("product", product.clone()))
                    .or_default()
                    .push(name);
            }
        }
        for ((what, value), mut names) in claims {
            names.dedup();
            if names.len() > 1 {
                problems.push(format!(
                    "coldchain.profiles: {what} {value:?} is claimed by more than one profile ({})",
                    names.join(", ")
                ));
            }
        }
        problems
    }
}

fn check_profile(at: &str, p: &Profile, problems: &mut Vec<String>) {
    let mut bad = |msg: String| problems.push(format!("{at}: {msg}"));
    for (key, value) in [
        ("min_celsius", p.min_celsius),
        ("max_celsius", p.max_celsius),
        ("tolerance_celsius", Some(p.tolerance_celsius)),
    ] {
        if value.is_some_and(|v| !v.is_finite()) {
            bad(format!("{key} is not a finite number"));
        }
    }
    match (p.min_celsius, p.max_celsius) {
        (None, None) => bad("neither min_celsius nor max_celsius is set".into()),
        (Some(min), Some(max)) if min > max => {
            bad(format!("min_celsius {min} is above max_celsius {max}"))
        }
        _ => {}
    }
    if p.tolerance_celsius < 0.0 {
        bad(format!(
            "tolerance_celsius must not be negative, is {}",
            p.tolerance_celsius
        ));
    }
    if p.tolerance_minutes < 0 {
        bad(format!(
            "tolerance_minutes must not be negative, is {}",
            p.tolerance_minutes
        ));
    }
    match p.viability_hours {
        Some(h) if h <= 0 => bad(format!("viability_hours must be positive, is {h}")),
        None if !p.alert_remaining_hours.is_empty() => {
            bad("alert_remaining_hours is set but viability_hours is not".into())
        }
        _ => {}
    }
    let window = p.viability_hours.filter(|&h| h > 0);
    let mut seen = Vec::new();
    for &h in &p.alert_remaining_hours {
        if h <= 0 {
            bad(format!("alert_remaining_hours: {h} is not positive"));
        } else if let Some(w) = window.filter(|&w| h >= w) {
            bad(format!(
                "alert_remaining_hours: {h} is not less than viability_hours {w}"
            ));
        }
        if seen.contains(&h) {
            bad(format!("alert_remaining_hours: {h} is listed twice"));
        }
        seen.push(h);
    }
}

/// The profiles as the monitor uses them: by index (in name order), with
/// the lookups for containers and products.
#[derive(Debug)]
pub(super) struct Profiles {
    list: Vec<(String, Profile)>,
    by_name: HashMap<String, usize>,
    default: Option<usize>,
    by_container: HashMap<String, usize>,
    by_product: HashMap<String, usize>,
    any_product: Option<usize>,
}

impl Profiles {
    /// Indexes the profiles. Where two profiles claim one container or
    /// product (a problem [`ColdChainConfig::check`] reports), the first
    /// by name wins.
    pub(super) fn new(config: &ColdChainConfig) -> Self {
        let list: Vec<(String, Profile)> = config
            .profiles
            .iter()
            .map(|(n, p)| (n.clone(), p.clone()))
            .collect();
        let mut by_container = HashMap::new();
        let mut by_product = HashMap::new();
        let mut any_product = None;
        for (i, (_, p)) in list.iter().enumerate() {
            for c in &p.containers {
                by_container.entry(container_key(c)).or_insert(i);
            }
            for product in &p.products {
                if product == "*" {
                    any_product.get_or_insert(i);
                } else {
                    by_product.entry(product.clone()).or_insert(i);
                }
            }
        }
        let by_name: HashMap<String, usize> = list
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), i))
            .collect();
        Profiles {
            default: by_name.get(&config.default_profile).copied(),
            by_name,
            list,
            by_container,
            by_product,
            any_product,
        }
    }

    pub(super) fn get(&self, i: usize) -> &Profile {
        &self.list[i].1
    }

    pub(super) fn name(&self, i: usize) -> &str {
        &self.list[i].0
    }

    pub(super) fn by_name(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub(super) fn default(&self) -> Option<usize> {
        self.default
    }

    pub(super) fn for_container(&self, container: &str) -> Option<usize> {
        self.by_container.get(&container_key(container)).copied()
    }

    /// The profile governing a therapy's viability: the one naming its
    /// product, else the one with `"*"`, else the default.
    pub(super) fn for_product(&self, product: Option<&str>) -> Option<usize> {
        product
            .and_then(|p| self.by_product.get(p).copied())
            .or(self.any_product)
            .or(self.default)
    }
}

/// [`EXAMPLE`], parsed.
#[cfg(test)]
pub(crate) fn example_config() -> ColdChainConfig {
    #[derive(Deserialize)]
    struct File {
        coldchain: ColdChainConfig,
    }
    toml::from_str::<File>(EXAMPLE).unwrap().coldchain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        #[allow(dead_code)]
        coldchain: ColdChainConfig,
    }

    fn example() -> ColdChainConfig {
        example_config()
    }

    #[test]
    fn the_example_parses_and_passes() {
        let c = example();
        assert!(c.enabled);
        assert_eq!(c.profiles.len(), 2);
        assert_eq!(c.profiles["cryopreserved"].min_celsius, None);
        assert_eq!(c.retain_hours, 48, "defaults fill what the file leaves out");
        assert_eq!(c.check(), Vec::<String>::new());
    }

    #[test]
    fn an_absent_section_is_off_and_fine() {
        let c: ColdChainConfig = toml::from_str("").unwrap();
        assert!(!c.enabled);
        assert!(c.check().is_empty());
        let on = ColdChainConfig { enabled: true, ..c };
        assert_eq!(on.check(), ["coldchain.profiles: no profile is defined"]);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let bad = EXAMPLE.replace("tolerance_minutes = 10", "tolerance_mins = 10");
        let err = toml::from_str::<File>(&bad).err().unwrap().to_string();
        assert!(err.contains("tolerance_mins"), "{err}");
    }

    fn problems_with(edit: impl FnOnce(&mut ColdChainConfig)) -> Vec<String> {
        let mut c = example();
        edit(&mut c);
        c.check()
    }

    fn fresh(c: &mut ColdChainConfig) -> &mut Profile {
        c.profiles.get_mut("fresh_apheresis").unwrap()
    }

    #[test]
    fn check_finds_each_problem() {
        type Edit = Box<dyn FnOnce(&mut ColdChainConfig)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "coldchain.default_profile: unknown profile \"fresh\" (known: cryopreserved, fresh_apheresis)",
                Box::new(|c| c.default_profile = "fresh".into()),
            ),
            (
                "coldchain.profiles.fresh_apheresis: min_celsius 9 is above max_celsius 8",
                Box::new(|c| fresh(c).min_celsius = Some(9.0)),
            ),
            (
                "coldchain.profiles.fresh_apheresis: neither min_celsius nor max_celsius is set",
                Box::new(|c| {
                    fresh(c).min_celsius = None;
                    fresh(c).max_celsius = None;
                }),
            ),
            (
                "coldchain.profiles.fresh_apheresis: tolerance_celsius must not be negative, is -0.5",
                Box::new(|c| fresh(c).tolerance_celsius = -0.5),
            ),
            (
                "coldchain.profiles.fresh_apheresis: tolerance_minutes must not be negative, is -1",
                Box::new(|c| fresh(c).tolerance_minutes = -1),
            ),
            (
                "coldchain.profiles.fresh_apheresis: max_celsius is not a finite number",
                Box::new(|c| fresh(c).max_celsius = Some(f64::NAN)),
            ),
            (
                "coldchain.profiles.fresh_apheresis: alert_remaining_hours: 0 is not positive",
                Box::new(|c| fresh(c).alert_remaining_hours = vec![24, 0]),
            ),
            (
                "coldchain.profiles.fresh_apheresis: alert_remaining_hours: 72 is not less than viability_hours 72",
                Box::new(|c| fresh(c).alert_remaining_hours = vec![72, 4]),
            ),
            (
                "coldchain.profiles.fresh_apheresis: alert_remaining_hours: 4 is listed twice",
                Box::new(|c| fresh(c).alert_remaining_hours = vec![4, 12, 4]),
            ),
            (
                "coldchain.profiles.fresh_apheresis: viability_hours must be positive, is 0",
                Box::new(|c| {
                    fresh(c).viability_hours = Some(0);
                    fresh(c).alert_remaining_hours.clear();
                }),
            ),
            (
                "coldchain.profiles.fresh_apheresis: alert_remaining_hours is set but viability_hours is not",
                Box::new(|c| fresh(c).viability_hours = None),
            ),
            (
                "coldchain.profiles: container \"ln2 dry shipper\" is claimed by more than one profile (cryopreserved, fresh_apheresis)",
                Box::new(|c| fresh(c).containers.push("  ln2 DRY shipper".into())),
            ),
            (
                "coldchain.profiles: product \"*\" is claimed by more than one profile (cryopreserved, fresh_apheresis)",
                Box::new(|c| {
                    c.profiles.get_mut("cryopreserved").unwrap().products = vec!["*".into()]
                }),
            ),
            (
                "coldchain.retain_hours: must be positive, is 0",
                Box::new(|c| c.retain_hours = 0),
            ),
            (
                "coldchain.max_readings_per_logger: must be at least 2, is 1",
                Box::new(|c| c.max_readings_per_logger = 1),
            ),
        ];
        for (expected, edit) in cases {
            assert_eq!(problems_with(edit), [expected]);
        }
    }

    #[test]
    fn lookups_follow_the_config() {
        let mut c = example();
        c.profiles.get_mut("cryopreserved").unwrap().products = vec!["KYM".into()];
        let p = Profiles::new(&c);
        let cryo = p.by_name("cryopreserved");
        let fresh = p.by_name("fresh_apheresis");
        assert_eq!(p.for_container(" ln2 dry SHIPPER "), cryo);
        assert_eq!(p.for_container("2-8c"), fresh);
        assert_eq!(p.for_container("ambient"), None);
        assert_eq!(p.for_product(Some("KYM")), cryo, "an exact name beats *");
        assert_eq!(p.for_product(Some("OTHER")), fresh);
        assert_eq!(p.for_product(None), fresh);
        assert_eq!(p.default(), fresh);
    }

    #[test]
    fn deviation_and_range_text() {
        let c = example();
        let f = &c.profiles["fresh_apheresis"];
        assert_eq!(f.deviation(8.0), 0.0);
        assert_eq!(f.deviation(9.5), 1.5);
        assert_eq!(f.deviation(1.0), 1.0);
        assert_eq!(f.range_text(), "2 to 8 °C");
        assert_eq!(c.profiles["cryopreserved"].range_text(), "at most -150 °C");
    }
}
