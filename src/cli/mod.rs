//! `cgthub` subcommands: `serve`, `check`, `migrate`, `test`, `events`,
//! `dlq` (list, show, replay, purge), `holds` (list, show, release,
//! reject), `trace`, `send` and `bench`.

mod bench;
mod bench_courier;
mod bench_fhir;
mod bench_files;
mod check;
mod client;
mod dlq;
mod events;
mod holds;
mod send;
mod test;
mod trace;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config;

/// cgthub: an integration hub for cell and gene therapy supply chains.
#[derive(Debug, Parser)]
#[command(name = "cgthub", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub: listeners, pipeline, outbox relays, HTTP.
    Serve(ConfigArg),
    /// Validate the config, routes and mappings, and that the store's schema
    /// is this program's; exit 1 with file and line on a mistake.
    Check(ConfigArg),
    /// Create or upgrade the store's schema (SQLite file or PostgreSQL
    /// database), then exit. `serve` does the same at start.
    Migrate(ConfigArg),
    /// Run mapping fixtures (`*.cases.toml`) and print a line per case.
    Test {
        /// A mappings folder, a format folder or one cases file.
        #[arg(default_value = "mappings")]
        path: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List canonical events from the store, newest first.
    Events {
        #[arg(long)]
        coi: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        /// Only events that matched no route.
        #[arg(long)]
        unmatched: bool,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print the events' JSON, one per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Dead letters: what could not be processed or delivered, with the reason.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Held events: what the identity registry holds until its identity is
    /// settled (or quarantines on a conflict), and an operator's release or
    /// reject, with a reason.
    Holds {
        #[command(subcommand)]
        action: HoldsAction,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// A therapy's chain of identity: its identifiers and where each link
    /// came from, its events in order, custody handoffs, holds and alerts.
    Trace {
        /// The therapy's chain of identity (COI).
        coi: String,
        /// The whole journey as one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Send messages to a hub as a partner would.
    Send {
        #[command(subcommand)]
        protocol: SendProtocol,
    },
    /// Hash a portal password for `[pdf_entry.users.NAME] password_hash`:
    /// reads the password from standard input (one line), prints an
    /// argon2id PHC string. The password itself is never stored.
    Passwd,
    /// Load generators against a running hub.
    Bench {
        #[command(subcommand)]
        protocol: BenchProtocol,
    },
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Config file (default: the embedded config/cgthub.toml).
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// Dead letters, newest first (open ones unless --status says otherwise).
    List {
        /// Only this stage: receive, decode, map, deliver, consume.
        #[arg(long)]
        stage: Option<String>,
        /// Only this reason code (e.g. required_field_missing, unroutable).
        #[arg(long)]
        reason: Option<String>,
        /// open, replayed, purged or all.
        #[arg(long, default_value = "open")]
        status: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// One dead letter: its original payload and error chain (every failure,
    /// replay and purge, with its reason) and the audit records about it.
    Show {
        id: i64,
        /// The whole record as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Replay dead letters from the stage that failed, through the running
    /// hub (http.addr): a failed message is processed again with the current
    /// mappings and routes, a failed delivery is queued again. One line per
    /// dead letter; exit 1 if any was not replayed.
    Replay {
        /// Dead letter ids.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<i64>,
        /// Every open dead letter with the reason code given by --reason.
        #[arg(long, requires = "reason")]
        all: bool,
        /// With --all: the reason code.
        #[arg(long, requires = "all")]
        reason: Option<String>,
    },
    /// Purge dead letters: give up on them, saying why (--because). Nothing
    /// is deleted; they are marked purged and hidden from `dlq list`.
    /// Through the running hub (http.addr); exit 1 if any was not purged.
    Purge {
        /// Dead letter ids.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<i64>,
        /// Every open dead letter with the reason code given by --reason.
        #[arg(long, requires = "reason")]
        all: bool,
        /// With --all: the reason code.
        #[arg(long, requires = "all")]
        reason: Option<String>,
        /// Why they are given up, in words (required; kept in the audit log).
        #[arg(long, value_name = "TEXT")]
        because: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum HoldsAction {
    /// Held events, newest first (still held ones unless --state says
    /// otherwise).
    List {
        /// held, released, rejected, expired, quarantined or all.
        #[arg(long, default_value = "held")]
        state: String,
        /// Only holds of this chain of identity.
        #[arg(long)]
        coi: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// One hold: why it is held, its event and the identifiers it names.
    Show {
        id: i64,
        /// The whole hold as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Release a hold through the running hub (http.addr): its event is
    /// judged again and goes on unless its identity is still unknown or now
    /// contradicts the registry (quarantined). Exit 1 unless released.
    Release {
        id: i64,
        /// Why, in words (required; kept in the audit log).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Reject a hold through the running hub (http.addr): its event never
    /// goes on. Exit 1 unless rejected.
    Reject {
        id: i64,
        /// Why, in words (required; kept in the audit log).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SendProtocol {
    /// HL7v2 files over MLLP; prints each ACK.
    Mllp {
        /// Files, each holding one HL7 message.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:2575")]
        to: String,
        /// Seconds to wait for each ACK.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchProtocol {
    /// Pipelined ORU^R01 messages over MLLP; prints throughput and ACK latency.
    Mllp(bench::MllpBench),
    /// The baseline for the hub on RabbitMQ: a plain lapin publisher with
    /// confirms, sending the event the bench message maps to.
    AmqpBaseline(bench::AmqpBaseline),
    /// Transaction Bundles to `/fhir`; prints Bundles/s and latency.
    Fhir(bench_fhir::FhirBench),
    /// One large CSV export to `/lims/{partner}`; prints rows/s.
    Lims(bench_files::LimsBench),
    /// SegmentResponses to `/b2mml/mes`; prints documents/s and latency.
    B2mml(bench_files::B2mmlBench),
    /// Signed courier webhooks (DHL shape) and logger streams; prints
    /// updates/s and the excursion alert latency.
    Courier(bench_courier::CourierBench),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(c) => {
            let loaded = config::load(c.config.as_deref())?;
            crate::serve::run(loaded).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(c) => check::run(c.config.as_deref()).await,
        Command::Migrate(c) => migrate(c.config.as_deref()).await,
        Command::Test { path, config } => test::run(&path, config.config.as_deref()),
        Command::Events {
            coi,
            kind,
            unmatched,
            limit,
            json,
            config,
        } => events::run(config.config.as_deref(), coi, kind, unmatched, limit, json).await,
        Command::Dlq { action, config } => dlq::run(config.config.as_deref(), action).await,
        Command::Holds { action, config } => holds::run(config.config.as_deref(), action).await,
        Command::Trace { coi, json, config } => {
            trace::run(config.config.as_deref(), &coi, json).await
        }
        Command::Passwd => passwd(),
        Command::Send {
            protocol: SendProtocol::Mllp { files, to, timeout },
        } => send::mllp(&files, &to, timeout).await,
        Command::Bench {
            protocol: BenchProtocol::Mllp(b),
        } => bench::mllp(b).await,
        Command::Bench {
            protocol: BenchProtocol::AmqpBaseline(b),
        } => bench::amqp_baseline(b).await,
        Command::Bench {
            protocol: BenchProtocol::Fhir(b),
        } => bench_fhir::fhir(b).await,
        Command::Bench {
            protocol: BenchProtocol::Lims(b),
        } => bench_files::lims(b).await,
        Command::Bench {
            protocol: BenchProtocol::B2mml(b),
        } => bench_files::b2mml(b).await,
        Command::Bench {
            protocol: BenchProtocol::Courier(b),
        } => bench_courier::courier(b).await,
    }
}

/// `cgthub migrate`.
async fn migrate(config_file: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let loaded = config::load(config_file)?;
    let opts = crate::serve::store_options(&loaded.settings, None);
    let url = hub_core::store::redact_url(&opts.url);
    let (before, after) = hub_core::store::Store::migrate(&opts).await?;
    if before == after {
        println!("store {url}: schema version {after}, up to date");
    } else {
        println!("store {url}: schema version {before} -> {after}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the configured store read-only, beside a running hub: no writer,
/// no migration.
async fn open_read_only(settings: &config::Settings) -> anyhow::Result<hub_core::store::Store> {
    use anyhow::Context;
    hub_core::store::Store::open_read_only(crate::serve::store_options(settings, None))
        .await
        .with_context(|| {
            let url = hub_core::store::redact_url(&settings.store.url);
            format!("opening the store {url} to read")
        })
}

/// A store timestamp (RFC 3339) to the second, as tables show it; as
/// stored when it is not one.
fn short_time(t: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| t.to_string())
}

/// At most `max` characters of `s` on one line, `…` when cut.
fn truncate(s: &str, max: usize) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Opens the configured store for a CLI read.
async fn open_store(
    config_file: Option<&std::path::Path>,
) -> anyhow::Result<hub_core::store::Store> {
    let loaded = config::load(config_file)?;
    let store =
        hub_core::store::Store::open(crate::serve::store_options(&loaded.settings, None)).await?;
    Ok(store)
}

/// `cgthub passwd`: one line of standard input → an argon2id PHC string.
fn passwd() -> anyhow::Result<ExitCode> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!password.is_empty(), "no password on standard input");
    let hash = crate::portal::auth::hash_password(password)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    println!("{hash}");
    Ok(ExitCode::SUCCESS)
}
