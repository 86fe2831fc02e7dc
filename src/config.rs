//! The hub's configuration: `config/cgthub.toml` (embedded as the default),
//! overridden key by key by `CGTHUB__SECTION__KEY` environment variables.
//!
//! The structs are the reference: every field says what it does, and unknown
//! keys are refused (a typo must not silently fall back to a default).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cgthub_fhir::FhirConfig;

use crate::intake::config::{B2mmlSection, FileIntakeConfig, LimsSection};
use crate::intake::courier::config::CourierConfig;
use cgthub_hl7v2::config::MllpConfig;
use hub_core::coldchain::ColdChainConfig;
use hub_core::identity::{PhiKeyConfig, ProductCoiFormatConfig};
use hub_core::registry::{OnUnknown, Rules};
use hub_core::sink::amqp::AmqpSettings;
use serde::Deserialize;

/// The embedded default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("../config/cgthub.toml");

/// Prefix of environment overrides: `CGTHUB__HTTP__ADDR=127.0.0.1:18080`.
pub const ENV_PREFIX: &str = "CGTHUB";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Folder for the database, sink files and inboxes (created if missing).
    pub data_dir: PathBuf,
    /// This process among several hubs sharing one store.
    pub instance: InstanceConfig,
    pub http: HttpConfig,
    pub mllp: MllpConfig,
    /// The FHIR R4 endpoint under `/fhir` on `http.addr`.
    pub fhir: FhirConfig,
    /// B2MML from MES over HTTP and drop folders.
    pub b2mml: FileIntakeConfig<B2mmlSection>,
    /// CSV exports from LIMS over HTTP and drop folders.
    pub lims: FileIntakeConfig<LimsSection>,
    /// Courier and temperature-logger webhooks.
    pub courier: CourierConfig,
    /// The PDF entry portal: people key in contract labs' PDF reports and
    /// others verify them.
    pub pdf_entry: crate::portal::PdfEntryConfig,
    /// Temperature ranges and viability windows the cold-chain sink
    /// watches (a `[sinks.NAME]` of `type = "coldchain"` runs it).
    pub coldchain: ColdChainConfig,
    pub store: StoreConfig,
    pub paths: PathsConfig,
    /// RabbitMQ, for sinks of type `amqp` (see config/rabbitmq.toml).
    pub amqp: AmqpSettings,
    /// Named destinations routes may send to.
    pub sinks: BTreeMap<String, SinkConfig>,
    pub identity: IdentityConfig,
    pub log: LogConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("data"),
            instance: InstanceConfig::default(),
            http: HttpConfig::default(),
            mllp: MllpConfig::default(),
            fhir: FhirConfig::default(),
            b2mml: FileIntakeConfig::default(),
            lims: FileIntakeConfig::default(),
            courier: CourierConfig::default(),
            pdf_entry: crate::portal::PdfEntryConfig::default(),
            coldchain: ColdChainConfig::default(),
            store: StoreConfig::default(),
            paths: PathsConfig::default(),
            amqp: AmqpSettings::default(),
            sinks: BTreeMap::new(),
            identity: IdentityConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// `[instance]`: who this process is among the hubs sharing a store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InstanceConfig {
    /// Stable and unique per process (`hub-a`, `hub-b`…): outbox rows this
    /// instance claims carry it, in the store and in `/metrics`. Default:
    /// `cgthub`, enough for one hub.
    pub id: String,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        InstanceConfig {
            id: "cgthub".into(),
        }
    }
}

/// `[http]`: health, metrics, the operator API and partner endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address. Loopback by default.
    pub addr: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

/// `[store]`: where messages, events and the outbox are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH` (relative to the working directory) or
    /// `postgres://USER[:PASSWORD]@HOST:PORT/DATABASE`.
    pub url: String,
    /// Most messages written in one group commit.
    pub batch_max: usize,
    /// `full`: a commit survives power loss (fsync per group commit).
    /// `normal`: survives a crash of the hub, not of the machine.
    pub synchronous: Synchronous,
    /// Connections for reads (API, CLI, outbox relay); on PostgreSQL also
    /// the outbox claims. The writer has one connection besides.
    pub read_connections: u32,
    /// PostgreSQL: group commits under way at once, each on a connection of
    /// its own (SQLite has one writer).
    pub write_connections: u32,
    /// PostgreSQL: how long outbox rows an instance claimed stay its own;
    /// after that (the instance died) another instance publishes them.
    pub claim_lease_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    Full,
    Normal,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://data/cgthub.db".into(),
            batch_max: 512,
            synchronous: Synchronous::Full,
            read_connections: 4,
            write_connections: 1,
            claim_lease_ms: 30_000,
        }
    }
}

/// `[paths]`: operator-managed files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathsConfig {
    /// Route files (`*.toml`), reloaded when they change.
    pub routes: PathBuf,
    /// Mapping files, one folder per format (`mappings/hl7v2/*.toml`).
    pub mappings: PathBuf,
    /// Seconds between checks of the route files for changes.
    pub reload_interval_secs: u64,
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig {
            routes: PathBuf::from("routes"),
            mappings: PathBuf::from("mappings"),
            reload_interval_secs: 2,
        }
    }
}

/// `[sinks.NAME]`: one destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// Append events as JSON lines to a file, fsynced per batch.
    Jsonl {
        /// The file (relative to the working directory).
        path: PathBuf,
    },
    /// Publish to RabbitMQ as `[amqp]` says, with publisher confirms; the
    /// routes' `[route.queue]` sections are declared for it.
    Amqp,
    /// Keep a FHIR R4 `Task` per therapy order up to date on an EHR's FHIR
    /// server (`PUT {base_url}/Task/{id}`).
    FhirTask(FhirTaskSinkConfig),
    /// Watch temperatures and viability windows as `[coldchain]` says, and
    /// raise `temperature.excursion` and `alert.raised` events (routes
    /// send it readings, collections, receipts and shipment scans).
    Coldchain,
}

impl SinkConfig {
    pub fn is_broker(&self) -> bool {
        matches!(self, SinkConfig::Amqp)
    }
}

/// `[sinks.NAME]` with `type = "fhir_task"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirTaskSinkConfig {
    /// The FHIR server's base URL, e.g. `https://ehr.example.org/fhir`.
    pub base_url: String,
    /// Per request: connecting, sending and reading the answer.
    #[serde(default = "FhirTaskSinkConfig::default_timeout_ms")]
    pub timeout_ms: u64,
    /// A fixed bearer token, read from this environment variable at start
    /// (the hub refuses to start without it).
    #[serde(default)]
    pub token_env: Option<String>,
    /// Or tokens from an OAuth 2.0 client-credentials grant.
    #[serde(default)]
    pub client_credentials: Option<ClientCredentialsConfig>,
}

/// `[sinks.NAME.client_credentials]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsConfig {
    /// The authorization server's token endpoint.
    pub token_url: String,
    pub client_id: String,
    /// The environment variable holding the client secret (read at start).
    pub client_secret_env: String,
    /// Space-separated scopes, e.g. `system/Task.write system/Task.read`.
    #[serde(default)]
    pub scope: Option<String>,
}

impl FhirTaskSinkConfig {
    fn default_timeout_ms() -> u64 {
        10_000
    }

    /// The sink's settings, with secrets read from the environment.
    pub fn resolve(&self) -> Result<hub_core::sink::FhirTaskConfig, String> {
        use hub_core::sink::{ClientCredentials, FhirAuth, Secret};
        let url = |key: &str, v: &str| {
            v.parse::<hub_core::sink::fhir_task::Url>()
                .map_err(|e| format!("{key} = {v:?}: {e}"))
        };
        let secret = |key: &str, var: &str| match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
            _ => Err(format!(
                "{key} = {var:?}: the environment variable {var} is not set"
            )),
        };
        if self.timeout_ms == 0 {
            return Err("timeout_ms = 0: must be at least 1".into());
        }
        let auth = match (&self.token_env, &self.client_credentials) {
            (Some(_), Some(_)) => {
                return Err("token_env and client_credentials: give one or the other".into())
            }
            (Some(var), None) => FhirAuth::Bearer(secret("token_env", var)?),
            (None, Some(cc)) => FhirAuth::ClientCredentials(ClientCredentials {
                token_url: url("client_credentials.token_url", &cc.token_url)?,
                client_id: cc.client_id.clone(),
                client_secret: secret(
                    "client_credentials.client_secret_env",
                    &cc.client_secret_env,
                )?,
                scope: cc.scope.clone(),
            }),
            (None, None) => FhirAuth::None,
        };
        Ok(hub_core::sink::FhirTaskConfig {
            base_url: url("base_url", &self.base_url)?,
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            auth,
        })
    }
}

/// `[identity]`: how chain of identity identifiers are checked at intake.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Therapy products' own COI formats, one per product:
    /// `{ product = "R240", pattern = "R240-[0-9]{8}-[0-9A-Z*]", check = "mod37_2" }`.
    /// An event's COI is accepted as an ISBT 128 Chain of Identity
    /// Identifier (with or without `&/`) always, or in the format of the
    /// event's `product`. Empty (the default): ISBT 128 only.
    pub coi_formats: Vec<ProductCoiFormatConfig>,
    /// An event whose identifiers no registered therapy knows yet: `hold`
    /// (until a link arrives, dead-lettered with an alert after
    /// `hold_timeout_secs`) or `route` (routed without a COI; for feeds
    /// that carry material outside any therapy). Conflicts stop either way.
    pub on_unknown: OnUnknown,
    /// How long an event may wait for its identifiers to become known.
    pub hold_timeout_secs: u64,
    /// Kind → kinds that must have gone on for the same COI first; an
    /// event out of this order is held for an operator. Absent: cgthub's
    /// defaults (no infusion before material.received, no disposition
    /// before a QC result); `{}` turns the checks off.
    pub sequence: Option<BTreeMap<String, Vec<String>>>,
    /// Keys that seal patient data in the registry (AES-256-GCM) and key
    /// its hashes: `{ id = "k1", key_env = "CGTHUB_PHI_KEY", current = true }`.
    /// Empty: a key generated once into `<data_dir>/phi.key`.
    pub phi_keys: Vec<PhiKeyConfig>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            coi_formats: Vec::new(),
            on_unknown: OnUnknown::Hold,
            hold_timeout_secs: 4 * 3600,
            sequence: None,
            phi_keys: Vec::new(),
        }
    }
}

impl IdentityConfig {
    /// The longest `hold_timeout_secs` taken (90 days).
    pub const MAX_HOLD_TIMEOUT_SECS: u64 = 90 * 24 * 3600;

    /// The sequence rules in force; an unknown kind is an error naming it.
    pub fn rules(&self) -> Result<Rules, String> {
        if !(1..=Self::MAX_HOLD_TIMEOUT_SECS).contains(&self.hold_timeout_secs) {
            return Err(format!(
                "identity.hold_timeout_secs = {}: must be from 1 to {} (90 days)",
                self.hold_timeout_secs,
                Self::MAX_HOLD_TIMEOUT_SECS
            ));
        }
        let sequence = match &self.sequence {
            None => hub_core::registry::default_sequence(),
            Some(s) => {
                for (kind, needs) in s {
                    for k in std::iter::once(kind).chain(needs) {
                        if hub_core::EventKind::parse(k).is_none() {
                            return Err(format!("identity.sequence: {k:?} is not an event kind"));
                        }
                    }
                }
                s.clone()
            }
        };
        Ok(Rules {
            on_unknown: self.on_unknown,
            sequence,
        })
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `cgthub=debug,info`. `RUST_LOG` wins.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Where the settings came from, for messages to operators.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    /// The file, or `None` for the embedded default.
    pub file: Option<PathBuf>,
    pub text: String,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(hub_core::mapping::LoadError),
    #[error("environment override: {0}")]
    Env(String),
}

/// Loads a config file (or the embedded default) and applies environment
/// overrides. The file is checked first on its own so that a mistake is
/// reported with its line.
pub fn load(file: Option<&Path>) -> Result<Loaded, ConfigError> {
    let (text, name) = match file {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?,
            p.to_path_buf(),
        ),
        None => (
            DEFAULT_CONFIG.to_string(),
            PathBuf::from("config/cgthub.toml (embedded)"),
        ),
    };
    toml::from_str::<Settings>(&text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        ConfigError::Invalid(hub_core::mapping::LoadError::at(
            &name,
            &text,
            at,
            e.message().to_string(),
        ))
    })?;
    let settings = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
        .build()
        .and_then(|c| c.try_deserialize::<Settings>())
        .map_err(|e| ConfigError::Env(e.to_string()))?;
    Ok(Loaded {
        settings,
        file: file.map(Path::to_path_buf),
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_parses_and_is_loopback_only() {
        let s: Settings = toml::from_str(DEFAULT_CONFIG).unwrap();
        assert!(s.http.addr.ip().is_loopback());
        assert!(s.mllp.addr.ip().is_loopback());
        assert_eq!(s.mllp.addr.port(), 2575);
        assert_eq!(s.store.url, "sqlite://data/cgthub.db");
        assert!(!s.sinks.is_empty(), "the default routes need sinks");
    }

    #[test]
    fn a_hold_timeout_out_of_range_is_refused_with_its_key() {
        for bad in ["0", "7776001", "18446744073709551615"] {
            let s: Settings = toml::from_str(&format!("[identity]\nhold_timeout_secs = {bad}\n"))
                .unwrap_or_else(|_| Settings::default());
            if let Err(e) = s.identity.rules() {
                assert!(e.contains("identity.hold_timeout_secs"), "{e}");
            } else {
                // u64::MAX does not fit TOML's i64: refused while parsing.
                assert_eq!(bad, "18446744073709551615");
            }
        }
        let s: Settings = toml::from_str("[identity]\nhold_timeout_secs = 3600\n").unwrap();
        assert!(s.identity.rules().is_ok());
    }

    #[test]
    fn identity_defaults_to_isbt128_only_and_takes_product_formats() {
        let s: Settings = toml::from_str(DEFAULT_CONFIG).unwrap();
        assert!(s.identity.coi_formats.is_empty());
        let s: Settings = toml::from_str(
            "[identity]\ncoi_formats = [\n  { product = \"R240\", pattern = \"R240-[0-9]{8}-[0-9A-Z*]\", check = \"mod37_2\" },\n  { product = \"K9\", pattern = \"K9[0-9]{6}\" },\n]\n",
        )
        .unwrap();
        let formats = hub_core::identity::CoiFormats::new(&s.identity.coi_formats).unwrap();
        assert!(formats.product("R240").is_some() && formats.product("K9").is_some());
        assert!(toml::from_str::<Settings>("[identity]\ncoi_format = []\n").is_err());
    }

    #[test]
    fn a_typo_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[http]\naddr = \"127.0.0.1:1\"\n\n[mllp]\nmax_conections = 3\n",
        )
        .unwrap();
        let err = load(Some(&p)).unwrap_err().to_string();
        assert!(err.contains("c.toml:5:"), "{err}");
        assert!(err.contains("max_conections"), "{err}");
    }

    #[test]
    fn the_fhir_task_example_parses_and_needs_its_secrets() {
        // The commented example in the embedded default, uncommented.
        let start = DEFAULT_CONFIG.find("# [sinks.ehr_tasks]").unwrap();
        let example: String = DEFAULT_CONFIG[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l)))
            .collect();
        // Through the loader too (the `config` crate, environment overrides).
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, &example).unwrap();
        let s = load(Some(&p)).unwrap().settings;
        let SinkConfig::FhirTask(c) = &s.sinks["ehr_tasks"] else {
            panic!("{:?}", s.sinks)
        };
        assert_eq!(c.timeout_ms, 10_000);
        let err = c.resolve().unwrap_err();
        assert!(err.contains("CGTHUB_EHR_CLIENT_SECRET is not set"), "{err}");
        // Any variable that is set stands in for the secret.
        let mut c = c.clone();
        c.client_credentials.as_mut().unwrap().client_secret_env = "PATH".into();
        let hub = c.resolve().unwrap();
        assert_eq!(hub.base_url.as_str(), "https://ehr.example.org/fhir");
        assert!(!format!("{hub:?}").contains(&std::env::var("PATH").unwrap()));

        let bearer = "[sinks.e]\ntype = \"fhir_task\"\nbase_url = \"http://127.0.0.1:1/fhir\"\ntoken_env = \"CGTHUB_TEST_UNSET_TOKEN\"\n";
        let s: Settings = toml::from_str(bearer).unwrap();
        let SinkConfig::FhirTask(c) = &s.sinks["e"] else {
            panic!()
        };
        let err = c.resolve().unwrap_err();
        assert!(
            err.contains("token_env") && err.contains("CGTHUB_TEST_UNSET_TOKEN"),
            "{err}"
        );
        let typo = bearer.replace("token_env", "token_envv");
        assert!(toml::from_str::<Settings>(&typo).is_err());
    }
}
