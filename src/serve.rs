//! `cgthub serve`: opens the store, loads routes and mappings, starts the
//! sinks' relays, the connectors and HTTP, and stops them in order on
//! SIGTERM or Ctrl-C (stop taking messages, finish those in flight, close the
//! store).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use hub_core::hub::RegistrySettings;
use hub_core::routing::Router;
use hub_core::sink::{AmqpSink, FhirTaskSink, JsonlSink, Sink};
use hub_core::store::{BatchStats, Store, StoreOptions};
use hub_core::{Hub, Metrics};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::config::{Loaded, LogFormat, Settings, SinkConfig, Synchronous};

/// Store options from settings; `metrics` records group-commit sizes.
pub fn store_options(s: &Settings, metrics: Option<Metrics>) -> StoreOptions {
    let on_batch = metrics.map(|m| {
        Arc::new(move |b: BatchStats| {
            m.batch_size.observe(b.messages as f64);
            m.commit_seconds.observe(b.commit.as_secs_f64());
        }) as Arc<dyn Fn(BatchStats) + Send + Sync>
    });
    StoreOptions {
        url: s.store.url.clone(),
        batch_max: s.store.batch_max,
        read_connections: s.store.read_connections,
        write_connections: s.store.write_connections,
        instance_id: s.instance.id.clone(),
        claim_lease: std::time::Duration::from_millis(s.store.claim_lease_ms),
        synchronous_full: s.store.synchronous == Synchronous::Full,
        on_batch,
    }
}

fn init_logging(s: &Settings) {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&s.log.level));
    // lapin logs a returned message with its body (event JSON, a COI) at
    // WARN; the sink reports those itself, without the body.
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("lapin")) {
        if let Ok(d) = "lapin=error".parse() {
            filter = filter.add_directive(d);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match s.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

pub async fn run(loaded: Loaded) -> anyhow::Result<()> {
    let s = loaded.settings;
    init_logging(&s);
    std::fs::create_dir_all(&s.data_dir)
        .with_context(|| format!("creating {}", s.data_dir.display()))?;

    let sink_names: BTreeSet<String> = s.sinks.keys().cloned().collect();
    let router = Router::load_dir(&s.paths.routes, &sink_names).map_err(load_errors)?;
    let misplaced = crate::broker::misplaced_queues(&router, &s.sinks);
    if !misplaced.is_empty() {
        anyhow::bail!("cannot start:\n  {}", misplaced.join("\n  "));
    }
    let mut intake_problems = s.fhir.check();
    intake_problems.extend(s.b2mml.check());
    intake_problems.extend(s.lims.check());
    intake_problems.extend(s.courier.check());
    intake_problems.extend(s.coldchain.check());
    if !intake_problems.is_empty() {
        anyhow::bail!("cannot start:\n  {}", intake_problems.join("\n  "));
    }
    let loaded_connectors = crate::registry::load(&s, &s.paths.mappings).map_err(load_errors)?;
    let connectors = loaded_connectors.all.clone();
    let coi_formats = hub_core::identity::CoiFormats::new(&s.identity.coi_formats)
        .map_err(|e| anyhow::anyhow!("cannot start:\n  identity.coi_formats: {e}"))?;
    let registry_rules = s
        .identity
        .rules()
        .map_err(|e| anyhow::anyhow!("cannot start:\n  {e}"))?;

    let metrics = Metrics::default();
    let store = Store::open(store_options(&s, Some(metrics.clone())))
        .await
        .with_context(|| format!("opening the store {}", s.store.url))?;
    let hub = Hub::new(store.clone(), router, metrics, sink_names.iter().cloned());
    hub.set_connectors(connectors.clone());
    hub.set_coi_formats(coi_formats);
    let (phi_keys, key_file) = crate::phi::keys(&s)?;
    let phi_fingerprint = phi_keys.index_fingerprint();
    hub.set_registry(RegistrySettings {
        rules: registry_rules,
        keys: phi_keys,
        hold_timeout: chrono::Duration::seconds(
            i64::try_from(s.identity.hold_timeout_secs).unwrap_or(i64::MAX / 1000),
        ),
    });
    let ours = phi_fingerprint;
    let recorded = hub.store().index_key(&ours).await?;
    if recorded != ours {
        anyhow::bail!(
            "cannot start: the identity registry in {} was keyed with another key (fingerprint {recorded}, this hub's is {ours}): \
             every hub on one store needs the same identity.phi_keys, and a rotation keeps the old key with index = true (see README, \"Chain of identity\")",
            hub_core::store::redact_url(&s.store.url)
        );
    }
    if let Some(f) = key_file {
        tracing::info!(file = %f.display(), "patient data in the identity registry is sealed with the key in this file");
    }
    hub.store()
        .audit(
            "system",
            "hub.started",
            "hub",
            serde_json::json!({"version": env!("CARGO_PKG_VERSION")}),
        )
        .await?;

    let shutdown = CancellationToken::new();
    let relays_stop = CancellationToken::new();
    let mut relays = Vec::new();
    let mut brokers: Vec<Arc<AmqpSink>> = Vec::new();
    for (name, cfg) in &s.sinks {
        let sink: Arc<dyn Sink> = match cfg {
            SinkConfig::Jsonl { path } => Arc::new(
                JsonlSink::open(name, path)
                    .with_context(|| format!("opening sink {name} at {}", path.display()))?,
            ),
            SinkConfig::Amqp => {
                let topology = crate::broker::topology(&hub.router(), name);
                let sink = AmqpSink::start(name, s.amqp.clone(), topology)
                    .await
                    .with_context(|| {
                        format!("starting sink {name} on RabbitMQ {}", s.amqp.redacted_url())
                    })?;
                let sink = Arc::new(sink);
                let h = Arc::clone(&sink);
                hub.add_health_check(
                    format!("sink:{name}"),
                    Arc::new(move || crate::broker::component(h.health())),
                );
                brokers.push(Arc::clone(&sink));
                sink
            }
            SinkConfig::Coldchain => {
                let sink = hub_core::sink::ColdChainSink::start(
                    name,
                    hub.clone(),
                    s.coldchain.clone(),
                    relays_stop.clone(),
                )
                .await
                .with_context(|| format!("starting sink {name} (the cold chain monitor)"))?;
                sink
            }
            SinkConfig::FhirTask(c) => {
                let config = c
                    .resolve()
                    .map_err(|e| anyhow::anyhow!("sinks.{name}: {e}"))?;
                Arc::new(
                    FhirTaskSink::new(name, config)
                        .with_context(|| format!("starting sink {name}"))?,
                )
            }
        };
        relays.push(tokio::spawn(hub_core::outbox::run_relay(
            hub.clone(),
            sink,
            relays_stop.clone(),
        )));
    }

    let drain = if crate::broker::wanted(&s) {
        Some(crate::broker::start_drain(&s, &hub).await?)
    } else {
        None
    };

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(expire_holds(hub.clone(), shutdown.clone())));
    if s.b2mml.enabled {
        let (hub, conn, cfg, dir, stop) = (
            hub.clone(),
            loaded_connectors.b2mml.clone(),
            s.b2mml.clone(),
            s.data_dir.clone(),
            shutdown.clone(),
        );
        tasks.push(tokio::spawn(async move {
            crate::intake::b2mml::watch(hub, conn, cfg, &dir, stop).await
        }));
    }
    if s.lims.enabled {
        let (hub, conn, cfg, dir, stop) = (
            hub.clone(),
            loaded_connectors.lims.clone(),
            s.lims.clone(),
            s.data_dir.clone(),
            shutdown.clone(),
        );
        tasks.push(tokio::spawn(async move {
            crate::intake::lims::watch(hub, conn, cfg, &dir, stop).await
        }));
    }
    if s.courier.enabled {
        tasks.extend(crate::intake::courier::poll::start(
            &hub,
            &loaded_connectors.courier,
            &s.courier,
            |v| std::env::var(v).ok(),
            &shutdown,
        )?);
    }
    for c in connectors {
        let kind = c.kind();
        let (hub, stop) = (hub.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = c.run(hub, stop.clone()).await {
                tracing::error!(connector = kind, error = %e, "connector stopped");
                stop.cancel();
            }
        }));
    }

    let listener = tokio::net::TcpListener::bind(s.http.addr)
        .await
        .with_context(|| format!("binding http.addr {}", s.http.addr))?;
    tracing::info!(addr = %s.http.addr, "HTTP listening");
    let http = {
        let stop = shutdown.clone();
        let mut app = crate::http::router(hub.clone());
        if s.fhir.enabled {
            app = app.nest(
                "/fhir",
                cgthub_fhir::http::router(hub.clone(), loaded_connectors.fhir.clone()),
            );
        }
        if s.b2mml.enabled {
            app = app.merge(crate::intake::b2mml::router(
                hub.clone(),
                loaded_connectors.b2mml.clone(),
                s.b2mml.clone(),
            ));
        }
        if s.courier.enabled {
            for w in s.courier.warnings(|v| std::env::var(v).ok()) {
                tracing::warn!("{w}");
            }
            let secrets = crate::intake::courier::secrets(&s.courier, |v| std::env::var(v).ok());
            app = app.merge(crate::intake::courier::router(
                hub.clone(),
                loaded_connectors.courier.clone(),
                s.courier.clone(),
                secrets,
            ));
        }
        if s.pdf_entry.enabled {
            for w in s.pdf_entry.warnings() {
                tracing::warn!("{w}");
            }
            app = app.merge(
                crate::portal::router(
                    hub.clone(),
                    s.pdf_entry.clone(),
                    &s.paths.mappings,
                    &s.data_dir,
                )
                .context("starting the PDF entry portal ([pdf_entry])")?,
            );
        }
        if s.lims.enabled {
            app = app.merge(crate::intake::lims::router(
                hub.clone(),
                loaded_connectors.lims.clone(),
                s.lims.clone(),
                &s.data_dir,
            ));
        }
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        })
    };
    tasks.push(tokio::spawn(watch_routes(
        hub.clone(),
        s.clone(),
        sink_names,
        brokers.clone(),
        shutdown.clone(),
    )));

    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        _ = shutdown.cancelled() => tracing::warn!("a component failed; shutting down"),
    }
    shutdown.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let _ = http.await;
    // Connectors are done: let the relays drain briefly, then stop them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    relays_stop.cancel();
    for r in relays {
        let _ = r.await;
    }
    if let Some(d) = drain {
        d.stop().await;
    }
    for b in brokers {
        b.stop().await;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

fn load_errors(errors: Vec<hub_core::mapping::LoadError>) -> anyhow::Error {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    anyhow::anyhow!("cannot start:\n  {}", lines.join("\n  "))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Reloads the route files when they change. A bad file, or a queue the
/// broker refuses, is refused with its line and the routes in force stay.
async fn watch_routes(
    hub: Hub,
    s: Settings,
    sinks: BTreeSet<String>,
    brokers: Vec<Arc<AmqpSink>>,
    shutdown: CancellationToken,
) {
    let dir = s.paths.routes.clone();
    let stamp = || -> Vec<(std::path::PathBuf, Option<SystemTime>, u64)> {
        hub_core::mapping::mapping_files(&dir)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let md = std::fs::metadata(&p).ok();
                let m = md.as_ref().and_then(|m| m.modified().ok());
                let len = md.map_or(0, |m| m.len());
                (p, m, len)
            })
            .collect()
    };
    let mut last = stamp();
    let every = Duration::from_secs(s.paths.reload_interval_secs.max(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        let now = stamp();
        if now == last {
            continue;
        }
        last = now;
        let loaded = Router::load_dir(&dir, &sinks)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>());
        let loaded = match loaded {
            Ok(r) => declare_routes(r, &s, &brokers).await,
            Err(e) => Err(e),
        };
        match loaded {
            Ok(r) => {
                let names: Vec<String> = r.routes().iter().map(|r| r.name.clone()).collect();
                tracing::info!(routes = names.len(), "routes reloaded");
                hub.replace_router(r);
                let _ = hub
                    .store()
                    .audit(
                        "system",
                        "routes.reloaded",
                        &dir.display().to_string(),
                        serde_json::json!({ "routes": names }),
                    )
                    .await;
            }
            Err(errors) => {
                for e in &errors {
                    tracing::error!(error = %e, "route file refused; the routes in force stay");
                }
            }
        }
    }
}

/// Checks new routes' queues and declares them on their brokers before the
/// routes are put in force.
async fn declare_routes(
    r: Router,
    s: &Settings,
    brokers: &[Arc<AmqpSink>],
) -> Result<Router, Vec<String>> {
    let misplaced = crate::broker::misplaced_queues(&r, &s.sinks);
    if !misplaced.is_empty() {
        return Err(misplaced);
    }
    for b in brokers {
        let topology = crate::broker::topology(&r, b.name());
        if let Err(e) = b.set_topology(topology).await {
            return Err(vec![format!("sink {}: {e}", b.name())]);
        }
    }
    Ok(r)
}

/// Every few seconds, holds past their deadline become dead letters with
/// an alert (several instances share the work: each takes due rows with
/// `SKIP LOCKED`).
async fn expire_holds(hub: Hub, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
        }
        match hub.expire_holds().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                expired = n,
                "held events expired into dead letters (identity not settled in time)"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot expire held events; retrying"),
        }
    }
}
