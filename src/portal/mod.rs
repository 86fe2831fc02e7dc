//! PDF entry: contract-lab reports keyed in by one person and verified by
//! another before any event leaves the hub. A JSON API under `/pdf-entry`
//! (for scripts and tests) and a server-rendered portal under `/portal`,
//! both over [`workflow::Portal`]; who is signed in is [`auth`]'s business.

pub mod api;
pub mod auth;
pub mod config;
pub mod pages;
pub mod workflow;

use std::path::Path;
use std::sync::Arc;

use axum::http::{header, HeaderMap};
use axum::Router;
use hub_core::Hub;

pub use config::PdfEntryConfig;

use auth::{Auth, Session};
use workflow::Portal;

/// Loads the templates and the session key, and builds both routers.
pub fn router(
    hub: Hub,
    cfg: PdfEntryConfig,
    mappings: &Path,
    data_dir: &Path,
) -> anyhow::Result<Router> {
    let portal = load(hub, cfg, mappings, data_dir)?;
    Ok(api::router(portal.clone()).merge(pages::router(portal)))
}

/// The portal, ready to serve: templates for every partner, the key.
pub fn load(
    hub: Hub,
    cfg: PdfEntryConfig,
    mappings: &Path,
    data_dir: &Path,
) -> anyhow::Result<Arc<Portal>> {
    let errors = cfg.errors();
    anyhow::ensure!(errors.is_empty(), "{}", errors.join("; "));
    let templates = cgthub_pdf_entry::template::load_dir(&mappings.join("pdf"))?;
    for p in &cfg.partners {
        anyhow::ensure!(
            templates.contains_key(p),
            "pdf_entry.partners names {p:?}, but there is no template {}",
            mappings.join("pdf").join(format!("{p}.toml")).display()
        );
    }
    let key = auth::load_key(&cfg.session_key_env, data_dir)?;
    let auth = Auth::new(&cfg, key);
    Ok(Arc::new(Portal {
        hub,
        auth,
        cfg,
        templates,
    }))
}

/// The values of the request's cookies named `name`.
pub(crate) fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(move |(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The session the request's cookie stands for.
pub(crate) fn session_of(portal: &Portal, headers: &HeaderMap) -> Option<Session> {
    cookies(headers, auth::COOKIE).find_map(|v| portal.auth.session(v))
}

/// The `Set-Cookie` value for a new session.
pub(crate) fn session_cookie(value: &str, max_age_secs: i64) -> String {
    format!(
        "{}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}",
        auth::COOKIE
    )
}

/// The `Set-Cookie` value that signs a browser out.
pub(crate) fn expired_cookie() -> String {
    format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        auth::COOKIE
    )
}
