//! The FHIR Task sink: keeps one FHIR R4 `Task` per therapy order up to
//! date on an EHR's FHIR server, so the care team sees where the patient's
//! therapy is (ordered, collected, shipped, released, infused).
//!
//! # Layout
//!
//! - this file: [`FhirTaskConfig`], [`FhirTaskSink`] and the HTTP exchange.
//! - [`resource`]: the Task's id and body, and reading the server's answers.
//! - `auth`: bearer tokens (fixed, or OAuth 2.0 client credentials).
//!
//! # What the EHR sees
//!
//! Each event becomes `PUT {base_url}/Task/{id}` (`application/fhir+json`),
//! the id from the event's `order_id`, else its `coi` ([`task_id`]). The
//! body ([`TaskUpdate::body`]) has the status the event's kind gives
//! ([`resource::task_status`]; a step that is not a milestone never
//! reopens a Task the sink knows is completed or cancelled),
//! `businessStatus` = the kind, the COI as an identifier, the order as
//! `basedOn`, `lastModified` = `occurred_at`, and the event id as an
//! extension. No patient data: events carry none.
//!
//! # Versions and conflicts
//!
//! The sink remembers, per Task, the version of its last successful PUT or
//! GET (from the `ETag`, else `meta.versionId`; in memory, so not across a
//! restart) and sends it as `If-Match: W/"<version>"`. Without one it
//! updates as create (no `If-Match`). On 409 or 412 it reads the Task,
//! applies the event to what the server holds
//! ([`TaskUpdate::merged_into`]: what the EHR added is kept) and tries again,
//! at most [`MAX_REREADS`] times.
//!
//! # Outcomes
//!
//! 200/201 (any 2xx): delivered. 5xx, 408, 429, timeouts, connection errors, and 401
//! (after one new client-credentials token): transient, the relay retries.
//! Other 4xx: permanent, with the server's OperationOutcome diagnostics.
//! An event without order or COI: permanent. Events of one Task are sent
//! in batch order, one at a time; once one fails transiently, the later
//! ones of that Task wait (transient) so they are not applied before it.
//! Different Tasks go [`CONCURRENT_TASKS`] at a time.

mod auth;
pub mod resource;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use futures_util::{stream, StreamExt};
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, ETAG, IF_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use self::auth::Auth;
pub use self::resource::{task_id, TaskUpdate};
use super::{BoxFuture, Sink, SinkError};
use crate::store::OutboxItem;
pub use reqwest::Url;

/// FHIR's JSON media type, sent as `Content-Type` and `Accept`.
pub const FHIR_JSON: &str = "application/fhir+json";
/// Reads after a version conflict, per event, before it is retried later.
pub const MAX_REREADS: u32 = 3;
/// Tasks updated at once (each Task's events stay in order).
pub const CONCURRENT_TASKS: usize = 8;
/// Tasks whose version the sink remembers; past it, it forgets them all
/// (their next PUT has no `If-Match`).
const MAX_KNOWN_TASKS: usize = 100_000;

/// A secret (token, client secret): its `Debug` shows no part of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How the sink authenticates to the FHIR server.
#[derive(Debug, Clone)]
pub enum FhirAuth {
    None,
    /// A fixed bearer token.
    Bearer(Secret),
    /// OAuth 2.0 client credentials (RFC 6749 §4.4).
    ClientCredentials(ClientCredentials),
}

/// The client-credentials grant.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: Secret,
    pub scope: Option<String>,
}

/// The sink's settings (the binary's `[sinks.NAME]` with `type = "fhir_task"`).
#[derive(Debug, Clone)]
pub struct FhirTaskConfig {
    /// The FHIR server's base, e.g. `https://ehr.example.org/fhir`.
    pub base_url: Url,
    /// For each request (connecting, sending, reading the answer).
    pub timeout: Duration,
    pub auth: FhirAuth,
}

/// Why the sink cannot start.
#[derive(Debug, thiserror::Error)]
pub enum FhirTaskError {
    #[error("base_url {0}: must be an http or https URL")]
    BaseUrl(Url),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// What the sink last saw of a Task.
#[derive(Debug, Clone, Default)]
struct Known {
    version: Option<String>,
    status: Option<String>,
}

pub struct FhirTaskSink {
    name: String,
    /// `base_url` without its trailing `/`.
    base: String,
    http: reqwest::Client,
    auth: Auth,
    known: Mutex<HashMap<String, Known>>,
}

/// One request's outcome, before it is classified.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
}

/// What one `deliver` call shares between its Tasks: once the server does
/// not answer, the rest of the batch is not sent.
#[derive(Default)]
struct Round {
    stalled: OnceLock<String>,
}

impl FhirTaskSink {
    pub fn new(name: &str, config: FhirTaskConfig) -> Result<Self, FhirTaskError> {
        if !matches!(config.base_url.scheme(), "http" | "https") {
            return Err(FhirTaskError::BaseUrl(config.base_url));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            // A redirected PUT is a misconfigured base_url, not a delivery.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cgthub/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(FhirTaskSink {
            name: name.to_string(),
            base: config.base_url.as_str().trim_end_matches('/').to_string(),
            http,
            auth: Auth::new(config.auth),
            known: Mutex::new(HashMap::new()),
        })
    }

    fn known(&self, id: &str) -> Known {
        let known = self.known.lock().expect("known tasks");
        known.get(id).cloned().unwrap_or_default()
    }

    fn remember(&self, id: &str, k: Option<Known>) {
        let mut known = self.known.lock().expect("known tasks");
        match k {
            Some(k) => {
                if known.len() >= MAX_KNOWN_TASKS && !known.contains_key(id) {
                    known.clear();
                }
                known.insert(id.to_string(), k);
            }
            None => {
                known.remove(id);
            }
        }
    }

    /// Delivers one Task's events in order.
    async fn task_events(
        &self,
        events: Vec<(usize, TaskUpdate)>,
        round: &Round,
    ) -> Vec<(usize, Result<(), SinkError>)> {
        let mut out = Vec::with_capacity(events.len());
        let mut waiting = false;
        for (i, update) in events {
            let r = if waiting {
                Err(SinkError::transient(format!(
                    "not sent: an earlier event for Task/{} is still to be delivered",
                    update.id
                )))
            } else if let Some(why) = round.stalled.get() {
                Err(SinkError::transient(format!("not sent: {why}")))
            } else {
                self.apply(&update, round).await
            };
            if matches!(&r, Err(e) if e.class == crate::error::ErrorClass::Transient) {
                waiting = true;
            }
            out.push((i, r));
        }
        out
    }

    /// PUTs one event's Task, through version conflicts.
    async fn apply(&self, update: &TaskUpdate, round: &Round) -> Result<(), SinkError> {
        let url = format!("{}/Task/{}", self.base, update.id);
        let what = format!("PUT Task/{}", update.id);
        let mut reauthed = false;
        let mut rereads = 0;
        let mut known = self.known(&update.id);
        let mut body = update.body(known.status.as_deref());
        loop {
            let bytes = serde_json::to_vec(&body).expect("a Task serialises");
            let version = known.version.as_deref().map(resource::if_match);
            let a = self
                .send(
                    Method::PUT,
                    &url,
                    Some(bytes),
                    version,
                    round,
                    &mut reauthed,
                )
                .await?;
            match a.status {
                // 200 updated, 201 created (any 2xx: the server took it).
                s if s.is_success() => {
                    let version = header_version(&a.headers).or_else(|| {
                        serde_json::from_slice::<Value>(&a.body)
                            .ok()
                            .and_then(|v| resource::version_from_body(&v))
                    });
                    let status = body
                        .get("status")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    self.remember(&update.id, Some(Known { version, status }));
                    tracing::debug!(sink = %self.name, task = %update.id, event_id = %update.event_id, status = a.status.as_u16(), "Task updated");
                    return Ok(());
                }
                StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED => {
                    if rereads == MAX_REREADS {
                        return Err(SinkError::transient(format!(
                            "{what}: {} again after {MAX_REREADS} reads of the Task: it keeps changing",
                            a.status
                        )));
                    }
                    rereads += 1;
                    let (k, current) = self.read(&update.id, &url, round, &mut reauthed).await?;
                    body = match &current {
                        Some(c) => update.merged_into(c),
                        None => update.body(None),
                    };
                    known = k.clone().unwrap_or_default();
                    self.remember(&update.id, k);
                }
                _ => return Err(refused(&what, &a)),
            }
        }
    }

    /// GETs the Task: what the sink then knows of it and its body, or
    /// `None` for both when the server has no such Task.
    async fn read(
        &self,
        id: &str,
        url: &str,
        round: &Round,
        reauthed: &mut bool,
    ) -> Result<(Option<Known>, Option<Value>), SinkError> {
        let a = self
            .send(Method::GET, url, None, None, round, reauthed)
            .await?;
        match a.status {
            StatusCode::OK => {
                let task: Value = serde_json::from_slice(&a.body).map_err(|e| {
                    SinkError::transient(format!("GET Task/{id}: the answer is not JSON: {e}"))
                })?;
                let known = Known {
                    version: header_version(&a.headers)
                        .or_else(|| resource::version_from_body(&task)),
                    status: task
                        .get("status")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                };
                Ok((Some(known), Some(task)))
            }
            StatusCode::NOT_FOUND | StatusCode::GONE => Ok((None, None)),
            _ => Err(refused(&format!("GET Task/{id}"), &a)),
        }
    }

    /// One request with the bearer token; a 401 fetches a new
    /// client-credentials token once per event, then is transient.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        if_match: Option<String>,
        round: &Round,
        reauthed: &mut bool,
    ) -> Result<Answer, SinkError> {
        let what = format!(
            "{method} {}",
            url.strip_prefix(&self.base)
                .unwrap_or(url)
                .trim_start_matches('/')
        );
        loop {
            let token = match self.auth.token(&self.http).await {
                Ok(t) => t,
                Err(e) => {
                    let _ = round
                        .stalled
                        .set("no access token for the FHIR server".into());
                    return Err(e);
                }
            };
            let mut req = self
                .http
                .request(method.clone(), url)
                .header(ACCEPT, FHIR_JSON);
            if let Some(b) = &body {
                req = req.header(CONTENT_TYPE, FHIR_JSON).body(b.clone());
            }
            if let Some(v) = &if_match {
                req = req.header(IF_MATCH, v);
            }
            if let Some(t) = &token {
                req = req.bearer_auth(t.expose());
            }
            let answer = async {
                let resp = req.send().await?;
                let status = resp.status();
                let headers = resp.headers().clone();
                let body = resp.bytes().await?;
                Ok::<_, reqwest::Error>(Answer {
                    status,
                    headers,
                    body,
                })
            }
            .await;
            let a = match answer {
                Ok(a) => a,
                Err(e) => {
                    let e = e.without_url();
                    let why = if e.is_timeout() {
                        format!("{} did not answer in time", self.base)
                    } else if e.is_connect() {
                        format!("cannot connect to {}: {e}", self.base)
                    } else {
                        return Err(SinkError::transient(format!("{what}: {e}")));
                    };
                    let _ = round.stalled.set(why.clone());
                    return Err(SinkError::transient(format!("{what}: {why}")));
                }
            };
            if a.status == StatusCode::UNAUTHORIZED {
                if let (Some(t), false, true) = (&token, *reauthed, self.auth.can_refresh()) {
                    *reauthed = true;
                    self.auth.refused(t).await;
                    tracing::info!(sink = %self.name, "the FHIR server refused the access token; fetching a new one");
                    continue;
                }
                return Err(SinkError::transient(format!(
                    "{what}: 401 Unauthorized: the FHIR server refused the sink's credentials"
                )));
            }
            return Ok(a);
        }
    }
}

/// The version in a response's `ETag`.
fn header_version(h: &HeaderMap) -> Option<String> {
    h.get(ETAG)
        .and_then(|v| v.to_str().ok())
        .and_then(resource::version_from_etag)
}

/// A failed answer, classified: what can clear by itself is transient,
/// what the server refuses as such is permanent.
fn refused(what: &str, a: &Answer) -> SinkError {
    let s = a.status;
    let text = resource::outcome_text(&a.body);
    let message = if text.is_empty() {
        format!("{what}: {s}")
    } else {
        format!("{what}: {s}: {text}")
    };
    if s.is_server_error()
        || s == StatusCode::TOO_MANY_REQUESTS
        || s == StatusCode::REQUEST_TIMEOUT
        || !s.is_client_error()
    {
        SinkError::transient(message)
    } else {
        SinkError::permanent(message)
    }
}

impl Sink for FhirTaskSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, batch: &'a [OutboxItem]) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        Box::pin(async move {
            let mut results: Vec<Option<Result<(), SinkError>>> = vec![None; batch.len()];
            // Events grouped by Task, each group in batch order.
            let mut groups: Vec<Vec<(usize, TaskUpdate)>> = Vec::new();
            let mut group_of: HashMap<String, usize> = HashMap::new();
            for (i, item) in batch.iter().enumerate() {
                match TaskUpdate::from_event(&item.body) {
                    Ok(u) => {
                        let g = *group_of.entry(u.id.clone()).or_insert_with(|| {
                            groups.push(Vec::new());
                            groups.len() - 1
                        });
                        groups[g].push((i, u));
                    }
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
            let round = Round::default();
            let round = &round;
            let done: Vec<Vec<(usize, Result<(), SinkError>)>> = stream::iter(groups)
                .map(|g| self.task_events(g, round))
                .buffer_unordered(CONCURRENT_TASKS)
                .collect()
                .await;
            for (i, r) in done.into_iter().flatten() {
                results[i] = Some(r);
            }
            results
                .into_iter()
                .map(|r| r.expect("every item has a result"))
                .collect()
        })
    }
}
