//! Bearer tokens for the FHIR server: a fixed one, or one fetched with the
//! OAuth 2.0 client-credentials grant and kept until shortly before it
//! expires. Tokens and secrets never reach a log or an error message.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use super::{ClientCredentials, FhirAuth, Secret};
use crate::sink::SinkError;

/// A token is fetched again this long before it expires (at most half its life).
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// How long a token whose response gave no `expires_in` is used.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

pub(super) struct Auth {
    how: FhirAuth,
    /// The client-credentials token and when to stop using it. A tokio
    /// mutex: one fetch at a time; the others wait for its token.
    cached: Mutex<Option<(Secret, Instant)>>,
}

impl Auth {
    pub(super) fn new(how: FhirAuth) -> Self {
        Auth {
            how,
            cached: Mutex::new(None),
        }
    }

    /// Whether a 401 can be answered by fetching a new token.
    pub(super) fn can_refresh(&self) -> bool {
        matches!(self.how, FhirAuth::ClientCredentials(_))
    }

    /// The token to send, if any.
    pub(super) async fn token(&self, http: &reqwest::Client) -> Result<Option<Secret>, SinkError> {
        match &self.how {
            FhirAuth::None => Ok(None),
            FhirAuth::Bearer(t) => Ok(Some(t.clone())),
            FhirAuth::ClientCredentials(cc) => {
                let mut cached = self.cached.lock().await;
                if let Some((token, until)) = cached.as_ref() {
                    if Instant::now() < *until {
                        return Ok(Some(token.clone()));
                    }
                }
                let (token, lifetime) = fetch(http, cc).await?;
                let margin = EXPIRY_MARGIN.min(lifetime / 2);
                *cached = Some((token.clone(), Instant::now() + lifetime - margin));
                Ok(Some(token))
            }
        }
    }

    /// The server refused `used`: forget it, unless another request has
    /// already replaced it.
    pub(super) async fn refused(&self, used: &Secret) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|(t, _)| t == used) {
            *cached = None;
        }
    }
}

/// `POST token_url` with `grant_type=client_credentials` and the client's
/// id and secret in the form (`client_secret_post`). Every failure is
/// transient: a wrong secret is an operator's to fix, and the events wait.
async fn fetch(
    http: &reqwest::Client,
    cc: &ClientCredentials,
) -> Result<(Secret, Duration), SinkError> {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", cc.client_id.as_str()),
        ("client_secret", cc.client_secret.expose()),
    ];
    if let Some(scope) = &cc.scope {
        form.push(("scope", scope.as_str()));
    }
    let failed = |why: String| {
        SinkError::transient(format!(
            "cannot get an access token from {}: {why}",
            cc.token_url
        ))
    };
    let resp = http
        .post(cc.token_url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&form)
        .send()
        .await
        .map_err(|e| failed(e.without_url().to_string()))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| failed(e.without_url().to_string()))?;
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !status.is_success() {
        // RFC 6749 §5.2: `error` and `error_description`, never the secret.
        let code = json.get("error").and_then(Value::as_str).unwrap_or("");
        let text = json
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or("");
        return Err(failed(format!("{status} {code} {text}").trim().to_string()));
    }
    let Some(token) = json.get("access_token").and_then(Value::as_str) else {
        return Err(failed(format!("{status} without an access_token")));
    };
    // A number, or (some servers) a string of one.
    let lifetime = match json.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .map_or(DEFAULT_LIFETIME, Duration::from_secs);
    Ok((Secret::new(token), lifetime))
}
