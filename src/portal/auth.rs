//! Who is signed in: argon2 passwords, signed session cookies, CSRF
//! tokens, and a lockout after repeated failed logins.
//!
//! A session is a cookie `cgthub_portal=<user>.<expiry>.<nonce>.<mac>`,
//! the MAC an HMAC-SHA256 under the portal key, so any hub holding the key
//! can check it and a restart keeps people signed in. Signing out revokes
//! the nonce in this process; the expiry bounds the rest. The CSRF token of
//! a session is an HMAC of its nonce: forms and API calls that change
//! anything must carry it (`_csrf` field or `X-CSRF-Token` header).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::config::{PdfEntryConfig, Role, UserConfig};

/// Name of the session cookie.
pub const COOKIE: &str = "cgthub_portal";
/// Name of the cookie a login form is bound to.
pub const LOGIN_COOKIE: &str = "cgthub_login";

type HmacSha256 = Hmac<Sha256>;

/// A signed-in person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub display_name: String,
    pub roles: Vec<Role>,
    pub expires: DateTime<Utc>,
    /// Identifies the session (revocation, CSRF).
    pub nonce: String,
}

impl Session {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("unknown user or wrong password")]
    BadCredentials,
    #[error("too many failed logins; try again after {0}")]
    LockedOut(DateTime<Utc>),
}

/// Users, the key, and the state one process keeps (revocations, failures).
pub struct Auth {
    users: HashMap<String, UserConfig>,
    key: Vec<u8>,
    session: Duration,
    max_failed: u32,
    lockout: Duration,
    revoked: Mutex<HashMap<String, DateTime<Utc>>>,
    failures: Mutex<HashMap<String, Vec<DateTime<Utc>>>>,
    /// Verified against when the user is unknown, so that a wrong name
    /// costs as long as a wrong password.
    dummy_hash: String,
}

impl Auth {
    pub fn new(cfg: &PdfEntryConfig, key: Vec<u8>) -> Arc<Auth> {
        Arc::new(Auth {
            users: cfg.users.clone().into_iter().collect(),
            key,
            session: Duration::minutes(cfg.session_minutes as i64),
            max_failed: cfg.max_failed_logins.max(1),
            lockout: Duration::minutes(cfg.lockout_minutes as i64),
            revoked: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            dummy_hash: hash_password("not a password").unwrap_or_default(),
        })
    }

    pub fn display_name(&self, user: &str) -> String {
        match self.users.get(user) {
            Some(u) if !u.display_name.is_empty() => u.display_name.clone(),
            _ => user.to_string(),
        }
    }

    /// Checks a password (argon2, on a blocking thread: it costs tens of
    /// milliseconds by design) and counts failures toward the lockout.
    pub async fn check_password(
        self: &Arc<Self>,
        user: &str,
        password: &str,
    ) -> Result<(), LoginError> {
        let now = Utc::now();
        if let Some(until) = self.locked_until(user, now) {
            return Err(LoginError::LockedOut(until));
        }
        let hash = self
            .users
            .get(user)
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| self.dummy_hash.clone());
        let known = self.users.contains_key(user);
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
            .await
            .unwrap_or(false);
        if ok && known {
            self.failures.lock().expect("failures").remove(user);
            Ok(())
        } else {
            let mut f = self.failures.lock().expect("failures");
            let list = f.entry(user.to_string()).or_default();
            list.retain(|t| *t > now - self.lockout);
            list.push(now);
            Err(LoginError::BadCredentials)
        }
    }

    fn locked_until(&self, user: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let f = self.failures.lock().expect("failures");
        let recent: Vec<_> = f
            .get(user)?
            .iter()
            .filter(|t| **t > now - self.lockout)
            .copied()
            .collect();
        if recent.len() as u32 >= self.max_failed {
            recent.iter().min().map(|first| *first + self.lockout)
        } else {
            None
        }
    }

    /// A new session for `user` (whose password was checked), and its cookie value.
    pub fn open(&self, user: &str) -> Option<(Session, String)> {
        let u = self.users.get(user)?;
        // Whole seconds: what the cookie carries, so a session read back
        // from its cookie is the same session.
        let expires = DateTime::from_timestamp((Utc::now() + self.session).timestamp(), 0)?;
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let body = format!("{user}.{}.{nonce}", expires.timestamp());
        let cookie = format!("{body}.{}", self.mac(&body));
        let session = Session {
            user: user.to_string(),
            display_name: self.display_name(user),
            roles: u.roles.clone(),
            expires,
            nonce,
        };
        Some((session, cookie))
    }

    /// The session a cookie value stands for, if it is genuine, current,
    /// not signed out, and its user still configured.
    pub fn session(&self, cookie: &str) -> Option<Session> {
        let (body, mac) = cookie.rsplit_once('.')?;
        let mut m = HmacSha256::new_from_slice(&self.key).ok()?;
        m.update(body.as_bytes());
        m.verify_slice(&hex::decode(mac).ok()?).ok()?;
        let mut parts = body.splitn(3, '.');
        let (user, exp, nonce) = (parts.next()?, parts.next()?, parts.next()?);
        let expires = DateTime::from_timestamp(exp.parse().ok()?, 0)?;
        if expires <= Utc::now() || self.revoked.lock().expect("revoked").contains_key(nonce) {
            return None;
        }
        let u = self.users.get(user)?;
        Some(Session {
            user: user.to_string(),
            display_name: self.display_name(user),
            roles: u.roles.clone(),
            expires,
            nonce: nonce.to_string(),
        })
    }

    /// Signs a session out (in this process; other hubs honour the expiry).
    pub fn close(&self, s: &Session) {
        let mut r = self.revoked.lock().expect("revoked");
        let now = Utc::now();
        r.retain(|_, exp| *exp > now);
        r.insert(s.nonce.clone(), s.expires);
    }

    /// The CSRF token of a session.
    pub fn csrf(&self, s: &Session) -> String {
        self.mac(&format!("csrf.{}", s.nonce))
    }

    /// Whether `token` is the session's CSRF token (constant time).
    pub fn csrf_ok(&self, s: &Session, token: &str) -> bool {
        let Ok(tag) = hex::decode(token) else {
            return false;
        };
        let Ok(mut m) = HmacSha256::new_from_slice(&self.key) else {
            return false;
        };
        m.update(format!("csrf.{}", s.nonce).as_bytes());
        m.verify_slice(&tag).is_ok()
    }

    /// The hidden field of a login form whose browser holds `nonce` in
    /// its login cookie (login CSRF: nobody else's page can sign a browser
    /// in as someone else).
    pub fn login_token(&self, nonce: &str) -> String {
        self.mac(&format!("login.{nonce}"))
    }

    pub fn login_token_ok(&self, nonce: &str, token: &str) -> bool {
        let Ok(tag) = hex::decode(token) else {
            return false;
        };
        let Ok(mut m) = HmacSha256::new_from_slice(&self.key) else {
            return false;
        };
        m.update(format!("login.{nonce}").as_bytes());
        !nonce.is_empty() && m.verify_slice(&tag).is_ok()
    }

    fn mac(&self, body: &str) -> String {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(body.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }
}

/// An argon2id PHC string for `password` (what `cgthub passwd` prints).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// The portal key: from the environment variable `env` (at least 32
/// bytes), else `{data_dir}/portal.key`, generated once (mode 0600).
pub fn load_key(env: &str, data_dir: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(v) = std::env::var(env) {
        anyhow::ensure!(
            v.len() >= 32,
            "{env} must hold at least 32 bytes (it signs portal sessions)"
        );
        return Ok(v.into_bytes());
    }
    let path = data_dir.join("portal.key");
    match std::fs::read(&path) {
        Ok(k) if k.len() >= 32 => return Ok(k),
        Ok(_) => anyhow::bail!("{} is shorter than 32 bytes", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
    std::fs::create_dir_all(data_dir)?;
    let key = hex::encode(rand::random::<[u8; 32]>()).into_bytes();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(&path) {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(&key)?;
            f.sync_all()?;
            tracing::info!(file = %path.display(), "generated the key that signs portal sessions; set {env} when several hubs share a store");
            Ok(key)
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(std::fs::read(&path)?),
        Err(e) => Err(anyhow::anyhow!("writing {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Arc<Auth> {
        let mut cfg = PdfEntryConfig::default();
        cfg.users.insert(
            "alice".into(),
            UserConfig {
                display_name: "Alice A".into(),
                roles: vec![Role::DataEntry],
                password_hash: hash_password("correct horse").unwrap(),
            },
        );
        cfg.max_failed_logins = 3;
        Auth::new(&cfg, b"0123456789abcdef0123456789abcdef".to_vec())
    }

    #[tokio::test]
    async fn passwords_sessions_and_csrf() {
        let a = auth();
        assert!(a.check_password("alice", "correct horse").await.is_ok());
        assert_eq!(
            a.check_password("alice", "wrong").await,
            Err(LoginError::BadCredentials)
        );
        assert_eq!(
            a.check_password("mallory", "correct horse").await,
            Err(LoginError::BadCredentials)
        );
        let (s, cookie) = a.open("alice").unwrap();
        assert_eq!(a.session(&cookie), Some(s.clone()));
        // Tampering with any part breaks the MAC.
        let forged = cookie.replacen("alice", "bobby", 1);
        assert_eq!(a.session(&forged), None);
        let csrf = a.csrf(&s);
        assert!(a.csrf_ok(&s, &csrf));
        assert!(!a.csrf_ok(&s, &a.csrf(&a.open("alice").unwrap().0)));
        assert!(!a.csrf_ok(&s, "zz"));
        a.close(&s);
        assert_eq!(a.session(&cookie), None, "signed out");
        let t = a.login_token("n1");
        assert!(a.login_token_ok("n1", &t));
        assert!(!a.login_token_ok("n2", &t));
        assert!(!a.login_token_ok("", &a.login_token("")));
    }

    #[test]
    fn an_expired_or_unconfigured_session_is_no_session() {
        let a = auth();
        let past = (Utc::now() - Duration::minutes(1)).timestamp();
        let body = format!("alice.{past}.n0");
        let expired = format!("{body}.{}", a.mac(&body));
        assert_eq!(a.session(&expired), None, "expired");
        let future = (Utc::now() + Duration::minutes(5)).timestamp();
        let body = format!("mallory.{future}.n1");
        let gone = format!("{body}.{}", a.mac(&body));
        assert_eq!(a.session(&gone), None, "a user no longer configured");
        let body = format!("alice.{future}.n2");
        let fine = format!("{body}.{}", a.mac(&body));
        assert_eq!(a.session(&fine).map(|s| s.user), Some("alice".into()));
    }

    #[tokio::test]
    async fn lockout_after_failures() {
        let a = auth();
        for _ in 0..3 {
            assert_eq!(
                a.check_password("alice", "nope").await,
                Err(LoginError::BadCredentials)
            );
        }
        assert!(matches!(
            a.check_password("alice", "correct horse").await,
            Err(LoginError::LockedOut(_))
        ));
    }
}
