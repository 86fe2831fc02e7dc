//! `[pdf_entry]`: the portal where people key in PDF reports and others
//! verify them, and who may do which.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A role a portal user can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Uploads documents and keys in their values (the first entry).
    DataEntry,
    /// Verifies someone else's entry (re-entry or review) and resolves
    /// mismatches; verifying is an electronic signature.
    Verifier,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::DataEntry => "data_entry",
            Role::Verifier => "verifier",
        }
    }
}

/// `[pdf_entry.users.NAME]`: one person. The name is the login and what
/// the audit log, provenance and signatures record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Full name, shown in the portal and in signatures.
    #[serde(default)]
    pub display_name: String,
    pub roles: Vec<Role>,
    /// An argon2 PHC string (`$argon2id$v=19$…`); `cgthub passwd` makes one.
    /// Plain passwords are never configured.
    pub password_hash: String,
}

/// `[pdf_entry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PdfEntryConfig {
    /// Serve the portal (`/portal`) and its API (`/pdf-entry`).
    pub enabled: bool,
    /// Partners whose PDFs may be uploaded; each needs a template
    /// `{paths.mappings}/pdf/{partner}.toml`.
    pub partners: Vec<String>,
    /// Larger uploads are refused with 413 (their first 4 KiB are kept).
    pub max_body_bytes: u64,
    /// A login lasts this long; then the user signs in again.
    pub session_minutes: u64,
    /// The environment variable holding the key sessions are signed with
    /// (at least 32 bytes). Unset: a key generated once into
    /// `{data_dir}/portal.key` (mode 0600). Hubs sharing a store need one
    /// key, so that a login on one is valid on the others.
    pub session_key_env: String,
    /// Failed logins a user may have in `lockout_minutes` before further
    /// attempts are refused (429) until that window has passed.
    pub max_failed_logins: u32,
    pub lockout_minutes: u64,
    pub users: BTreeMap<String, UserConfig>,
}

impl Default for PdfEntryConfig {
    fn default() -> Self {
        PdfEntryConfig {
            enabled: true,
            partners: vec!["coa_lab".into()],
            max_body_bytes: 20 * 1024 * 1024,
            session_minutes: 30,
            session_key_env: "CGTHUB_PORTAL_KEY".into(),
            max_failed_logins: 5,
            lockout_minutes: 15,
            users: BTreeMap::new(),
        }
    }
}

impl PdfEntryConfig {
    /// What `cgthub check` should say about this section.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.enabled && self.users.is_empty() {
            w.push(
                "pdf_entry: no [pdf_entry.users.NAME]: nobody can sign in to the portal \
                 (add users with `cgthub passwd` hashes)"
                    .to_string(),
            );
        }
        if self.enabled
            && !self
                .users
                .values()
                .any(|u| u.roles.contains(&Role::Verifier))
            && !self.users.is_empty()
        {
            w.push("pdf_entry: no user has role verifier: no document can be verified".into());
        }
        w
    }

    /// Errors that stop the hub: a user without a usable hash or role.
    pub fn errors(&self) -> Vec<String> {
        let mut e = Vec::new();
        for (name, u) in &self.users {
            if argon2::PasswordHash::new(&u.password_hash).is_err() {
                e.push(format!(
                    "pdf_entry.users.{name}.password_hash is not an argon2 PHC string \
                     (make one with `cgthub passwd`)"
                ));
            }
            if u.roles.is_empty() {
                e.push(format!("pdf_entry.users.{name}.roles is empty"));
            }
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                e.push(format!(
                    "pdf_entry.users.{name:?}: a login is ASCII letters, digits, '.', '_' or '-'"
                ));
            }
        }
        if self.session_minutes == 0 {
            e.push("pdf_entry.session_minutes must be at least 1".into());
        }
        e
    }
}
