//! Polling couriers that only offer pull APIs (`[courier.partners.NAME.poll]`).
//!
//! One task per polling partner. Every `interval_secs` it asks the store
//! which tracking numbers the identity registry links to a therapy for the
//! partner's carrier ([`hub_core::store::Store::tracking_to_poll`]: linked
//! within `track_for_hours`, not delivered yet) and GETs each one's URL. A
//! 200's body goes through the webhook's path ([`super::take_updates`]),
//! so a scan pushed and then polled, or polled twice, is taken once.
//!
//! Conditional requests: the `ETag` and `Last-Modified` last seen for a
//! tracking number are sent back as `If-None-Match` and
//! `If-Modified-Since`; a 304 does nothing. They are kept in memory only: a
//! restarted hub fetches each shipment whole once (its scans are then
//! duplicates).
//!
//! Failures are the partner's, not the shipment's: a 429 or 503 with
//! `Retry-After` (seconds or an HTTP date) stops every request to the
//! partner for that long; other errors, timeouts and statuses back off
//! exponentially (1 s, 2 s, 4 s… with jitter, at most `max_backoff_secs`)
//! until a request succeeds. A 404 (the courier does not know the number
//! yet) is skipped. Logs name the partner, tracking number and status, never
//! a body.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use hub_core::Hub;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
    RETRY_AFTER,
};
use reqwest::StatusCode;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::{CourierConfig, PollConfig};
use super::{take_updates, CourierConnector, Taken, KIND};

/// The longest a `Retry-After` is honoured: a day (a larger value is
/// taken as a mistake, not a request to stop for good).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The first wait after a failure; doubled for each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Starts one polling task per partner with a `poll` section; each stops
/// when `stop` is cancelled. The API keys are read from `env` now.
pub fn start(
    hub: &Hub,
    conn: &Arc<CourierConnector>,
    cfg: &CourierConfig,
    env: impl Fn(&str) -> Option<String>,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for (name, p) in &cfg.partners {
        let Some(poll) = &p.poll else { continue };
        let poller = Poller::new(hub.clone(), Arc::clone(conn), name, poll, cfg, &env)
            .with_context(|| format!("courier.partners.{name}.poll"))?;
        tracing::info!(
            connector = KIND,
            partner = %name,
            carrier = %poller.authority,
            interval_secs = poll.interval_secs,
            "polling the courier's tracking API"
        );
        tasks.push(tokio::spawn(poller.run(stop.clone())));
    }
    Ok(tasks)
}

/// The validators of a shipment's last response.
#[derive(Debug, Clone, Default)]
struct Validators {
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
}

/// What one request came to.
#[derive(Debug)]
enum Answer {
    /// 304: nothing new since the validators sent.
    NotModified,
    /// A 2xx with its body and validators.
    Body {
        bytes: Bytes,
        validators: Validators,
    },
    /// 404: the courier does not know the number (yet).
    NotFound,
    /// 429 or 503 with `Retry-After`: no request to the partner for this long.
    Throttled { status: u16, wait: Duration },
    /// Anything else: an error, a timeout, another status.
    Failed { status: Option<u16>, error: String },
    /// A 2xx larger than `courier.max_body_bytes`.
    TooLarge,
}

struct Poller {
    hub: Hub,
    conn: Arc<CourierConnector>,
    partner: String,
    cfg: PollConfig,
    /// The carrier, as registry keys hold it.
    authority: String,
    client: reqwest::Client,
    max_body: u64,
    validators: HashMap<String, Validators>,
    /// Failed requests in a row.
    failures: u32,
    /// No request to the partner before this (`Retry-After`, backoff).
    not_before: Option<Instant>,
}

impl Poller {
    fn new(
        hub: Hub,
        conn: Arc<CourierConnector>,
        partner: &str,
        cfg: &PollConfig,
        courier: &CourierConfig,
        env: &impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Poller> {
        let mut headers = HeaderMap::new();
        for (k, v) in &cfg.headers {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes()).context("a header name")?,
                HeaderValue::from_str(v).context("a header value")?,
            );
        }
        if let (Some(var), Some(header)) = (&cfg.api_key_env, &cfg.api_key_header) {
            match env(var).filter(|v| !v.is_empty()) {
                Some(key) => {
                    let mut v = HeaderValue::from_str(&key)
                        .with_context(|| format!("${var} is not a header value"))?;
                    v.set_sensitive(true);
                    headers.insert(
                        HeaderName::from_bytes(header.as_bytes()).context("api_key_header")?,
                        v,
                    );
                }
                None => tracing::warn!(
                    connector = KIND,
                    partner = %partner,
                    "${var} is not set: polling without an API key"
                ),
            }
        }
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let client = reqwest::Client::builder()
            .user_agent(concat!("cgthub/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .context("building the HTTP client")?;
        Ok(Poller {
            hub,
            conn,
            partner: partner.to_string(),
            authority: cfg.authority(partner),
            cfg: cfg.clone(),
            client,
            max_body: courier.max_body_bytes,
            validators: HashMap::new(),
            failures: 0,
            not_before: None,
        })
    }

    async fn run(mut self, stop: CancellationToken) {
        let interval = Duration::from_secs(self.cfg.interval_secs.max(1));
        loop {
            let started = self.round(&stop).await;
            // From when the round's first request went out: a round that
            // waited for a Retry-After is not followed by another at once.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(started + interval) => {}
            }
        }
    }

    /// One request per shipment to poll; when the first went out (or the
    /// round began, when it sent none).
    async fn round(&mut self, stop: &CancellationToken) -> Instant {
        let mut started = Instant::now();
        let since = Utc::now()
            - chrono::Duration::hours(
                i64::try_from(self.cfg.track_for_hours).unwrap_or(i64::MAX / 7200),
            );
        let numbers = match self
            .hub
            .store()
            .tracking_to_poll(&self.authority, since)
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(connector = KIND, partner = %self.partner, error = %e,
                    "cannot read the shipments to poll; trying again next round");
                return started;
            }
        };
        // Delivered or too old: forget their validators.
        let polled: HashSet<&str> = numbers.iter().map(String::as_str).collect();
        self.validators.retain(|k, _| polled.contains(k.as_str()));
        for (i, tracking) in numbers.iter().enumerate() {
            if let Some(t) = self.not_before {
                tokio::select! {
                    _ = stop.cancelled() => return started,
                    _ = tokio::time::sleep_until(t) => {}
                }
            }
            if i == 0 {
                started = Instant::now();
            }
            let url = self.cfg.url_for(tracking);
            let answer = tokio::select! {
                _ = stop.cancelled() => return started,
                a = self.fetch(&url, tracking) => a,
            };
            self.handle(tracking, &url, answer).await;
        }
        started
    }

    async fn fetch(&self, url: &str, tracking: &str) -> Answer {
        let mut req = self.client.get(url);
        if let Some(v) = self.validators.get(tracking) {
            if let Some(e) = &v.etag {
                req = req.header(IF_NONE_MATCH, e.clone());
            }
            if let Some(m) = &v.last_modified {
                req = req.header(IF_MODIFIED_SINCE, m.clone());
            }
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return failed(None, &e),
        };
        let status = resp.status();
        match status {
            StatusCode::NOT_MODIFIED => Answer::NotModified,
            StatusCode::NOT_FOUND => Answer::NotFound,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                let wait = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, Utc::now()));
                match wait {
                    Some(wait) => Answer::Throttled {
                        status: status.as_u16(),
                        wait,
                    },
                    None => Answer::Failed {
                        status: Some(status.as_u16()),
                        error: "no usable Retry-After".into(),
                    },
                }
            }
            s if s.is_success() => {
                let header = |n| resp.headers().get(n).cloned();
                let validators = Validators {
                    etag: header(ETAG),
                    last_modified: header(LAST_MODIFIED),
                };
                if resp.content_length().is_some_and(|n| n > self.max_body) {
                    return Answer::TooLarge;
                }
                let mut body = BytesMut::new();
                loop {
                    match resp.chunk().await {
                        Ok(Some(c)) => {
                            body.extend_from_slice(&c);
                            if body.len() as u64 > self.max_body {
                                return Answer::TooLarge;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return failed(Some(s.as_u16()), &e),
                    }
                }
                Answer::Body {
                    bytes: body.freeze(),
                    validators,
                }
            }
            s => Answer::Failed {
                status: Some(s.as_u16()),
                error: s.canonical_reason().unwrap_or("unexpected status").into(),
            },
        }
    }

    async fn handle(&mut self, tracking: &str, url: &str, answer: Answer) {
        let partner = self.partner.as_str();
        match answer {
            Answer::NotModified => {
                self.failures = 0;
                tracing::debug!(
                    connector = KIND,
                    partner,
                    tracking,
                    status = 304,
                    "poll: not modified"
                );
            }
            Answer::NotFound => {
                self.failures = 0;
                tracing::debug!(
                    connector = KIND,
                    partner,
                    tracking,
                    status = 404,
                    "poll: the courier does not know this tracking number (yet)"
                );
            }
            Answer::TooLarge => {
                self.failures = 0;
                tracing::warn!(
                    connector = KIND,
                    partner,
                    tracking,
                    max_body_bytes = self.max_body,
                    "poll: response larger than courier.max_body_bytes; skipped"
                );
            }
            Answer::Throttled { status, wait } => {
                let wait = wait.min(MAX_RETRY_AFTER);
                self.not_before = Some(Instant::now() + wait);
                tracing::warn!(
                    connector = KIND,
                    partner,
                    tracking,
                    status,
                    retry_after_secs = wait.as_secs_f64(),
                    "poll: the courier asks to wait; no request to it before then"
                );
            }
            Answer::Failed { status, error } => {
                self.failures = self.failures.saturating_add(1);
                let wait = backoff(
                    self.failures,
                    Duration::from_secs(self.cfg.max_backoff_secs),
                    rand::random::<f64>(),
                );
                self.not_before = Some(Instant::now() + wait);
                tracing::warn!(connector = KIND, partner, tracking, status, error = %error,
                    failures = self.failures, backoff_secs = wait.as_secs_f64(),
                    "poll failed; backing off");
            }
            Answer::Body { bytes, validators } => {
                self.failures = 0;
                if bytes.is_empty() {
                    tracing::debug!(connector = KIND, partner, tracking, "poll: empty response");
                    return;
                }
                let origin = format!("poll GET {url}");
                match take_updates(&self.hub, &self.conn, bytes, &origin, partner).await {
                    Ok(Taken::Updates(u)) => {
                        if u.new > 0 || !u.failed.is_empty() {
                            tracing::info!(
                                connector = KIND,
                                partner,
                                tracking,
                                status = 200,
                                updates = u.updates,
                                new = u.new,
                                duplicates = u.duplicates,
                                held = u.held,
                                failed = u.failed.len(),
                                "poll: updates taken"
                            );
                        } else {
                            tracing::debug!(
                                connector = KIND,
                                partner,
                                tracking,
                                status = 200,
                                updates = u.updates,
                                duplicates = u.duplicates,
                                "poll: nothing new"
                            );
                        }
                        self.validators.insert(tracking.to_string(), validators);
                    }
                    Ok(Taken::Whole { receipt, problem }) => {
                        let code = problem.or(receipt.problem).map(|p| p.code);
                        tracing::warn!(
                            connector = KIND,
                            partner,
                            tracking,
                            status = 200,
                            message = receipt.message_row,
                            code = code.unwrap_or("none"),
                            "poll: the response carries no update (kept as a message)"
                        );
                        // The same body would come to the same: ask again
                        // only when it changed.
                        self.validators.insert(tracking.to_string(), validators);
                    }
                    Err(e) => {
                        // Not the courier's fault; fetched whole next round.
                        self.validators.remove(tracking);
                        tracing::error!(connector = KIND, partner, tracking, error = %e,
                            "poll: the store is unavailable; the response is asked for again next round");
                    }
                }
            }
        }
    }
}

fn failed(status: Option<u16>, e: &reqwest::Error) -> Answer {
    // Without the URL: it may carry what the operator put in its query.
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    Answer::Failed {
        status,
        error: format!("{kind}: {}", error_chain(e)),
    }
}

/// An error and its sources, without the URL.
fn error_chain(e: &reqwest::Error) -> String {
    let mut out = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s.to_string());
        source = s.source();
    }
    if out.is_empty() {
        "no detail".into()
    } else {
        out
    }
}

/// How long a `Retry-After` asks to wait at `now`: delay-seconds, or an
/// HTTP date (a date past is no wait). `None` when it is neither.
pub fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok().map(Duration::from_secs);
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// The wait after `failures` failed requests in a row: 1 s doubled for
/// each, at most `max`, scaled by `jitter` (0 ≤ jitter < 1) into its upper
/// half, so that hubs polling one courier spread out.
pub fn backoff(failures: u32, max: Duration, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    let full = FIRST_BACKOFF.saturating_mul(1 << doublings).min(max);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn retry_after_in_seconds_or_as_an_http_date() {
        let now = Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap();
        assert_eq!(retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("Sat, 05 Dec 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date already past: no wait.
        assert_eq!(
            retry_after("Sat, 05 Dec 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in ["", "-1", "1.5", "soon", "99999999999999999999999"] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_in_the_upper_half() {
        let max = Duration::from_secs(60);
        assert_eq!(backoff(1, max, 0.999_999).as_millis(), 999);
        assert_eq!(backoff(1, max, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(3, max, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(7, max, 0.0), Duration::from_secs(30));
        assert_eq!(backoff(40, max, 0.0), Duration::from_secs(30));
        assert!(backoff(40, max, 0.99) <= max);
        assert!(backoff(u32::MAX, Duration::from_secs(3600), 1.0) <= Duration::from_secs(3600));
    }
}
