//! Sealing patient data at rest: AES-256-GCM under a named key, and keyed
//! blind indexes to compare demographics without decrypting them.
//!
//! A sealed value is self-describing text,
//! `v1:<key id>:<base64url nonce>:<base64url ciphertext and tag>`, so that a
//! value sealed before a key rotation still names the key that opens it.
//! The caller's `aad` (e.g. the COI of the row) is authenticated with it:
//! a sealed value copied onto another record does not open there.
//!
//! Keys come from configuration, preferably by environment variable:
//!
//! ```toml
//! [[identity.phi_keys]]
//! id = "2025-01"
//! key_env = "CGTHUB_PHI_KEY_2025_01"   # 64 hexadecimal digits
//! current = true
//!
//! [[identity.phi_keys]]
//! id = "2024-01"                      # still opens older values
//! key_env = "CGTHUB_PHI_KEY_2024_01"
//! ```
//!
//! Neither this module's errors nor its `Debug` output contain key material
//! or plaintext.

use std::collections::HashMap;
use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The format tag of sealed values; a new format gets a new tag.
const VERSION: &str = "v1";
/// Domain separation: the index key must differ from the encryption key.
const INDEX_KEY_LABEL: &[u8] = b"cgthub blind index v1";
/// The id of [`PhiKeys::ephemeral`]'s key.
pub const EPHEMERAL_KEY_ID: &str = "ephemeral";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const MAX_ID_LEN: usize = 64;

/// One PHI key, as written in the configuration.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhiKeyConfig {
    /// The name sealed values carry: `A–Z a–z 0–9 . _ -`, at most 64
    /// characters. Never reuse an id for different key material.
    pub id: String,
    /// The key itself, 64 hexadecimal digits. Prefer `key_env`: a key in a
    /// configuration file ends up in backups and repositories.
    #[serde(default)]
    pub key: Option<String>,
    /// The environment variable holding the key, 64 hexadecimal digits
    /// (surrounding whitespace ignored).
    #[serde(default)]
    pub key_env: Option<String>,
    /// The key that seals new values; exactly one key is current.
    #[serde(default)]
    pub current: bool,
    /// The key blind indexes are derived from, if not the current one: at
    /// a rotation the old key keeps `index = true`, so the registry's keyed
    /// hashes (MRNs, names, birth dates) stay valid. At most one.
    #[serde(default)]
    pub index: bool,
}

impl fmt::Debug for PhiKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhiKeyConfig")
            .field("id", &self.id)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("key_env", &self.key_env)
            .field("current", &self.current)
            .field("index", &self.index)
            .finish()
    }
}

/// A PHI key set that cannot be used. Messages name the key id (and the
/// environment variable), never the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PhiKeyError {
    #[error("no PHI key is configured")]
    NoKeys,

    #[error("no PHI key is marked current (exactly one must be)")]
    NoCurrent,

    #[error("PHI keys {first:?} and {second:?} are both marked current (exactly one must be)")]
    SeveralCurrent { first: String, second: String },

    #[error("PHI keys {first:?} and {second:?} are both marked index (at most one may be)")]
    SeveralIndex { first: String, second: String },

    #[error("PHI key id {id:?} is invalid: it must be 1 to 64 characters among A-Z a-z 0-9 . _ -")]
    InvalidId { id: String },

    #[error("PHI key id {id:?} is configured more than once")]
    DuplicateId { id: String },

    /// Two ids for one key: a rotation that rotated nothing.
    #[error("PHI keys {first:?} and {second:?} have the same key material")]
    SameKey { first: String, second: String },

    #[error("PHI key {id:?}: set exactly one of `key` and `key_env`")]
    KeySource { id: String },

    #[error("PHI key {id:?}: environment variable {var} is {problem}")]
    Env {
        id: String,
        var: String,
        problem: &'static str,
    },

    #[error("PHI key {id:?} ({origin}): the key is not hexadecimal")]
    NotHex { id: String, origin: String },

    #[error(
        "PHI key {id:?} ({origin}): the key must be 64 hexadecimal digits (32 bytes), \
         found {len} characters"
    )]
    Length {
        id: String,
        origin: String,
        len: usize,
    },
}

/// Why a sealed value does not open. No variant carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Sealed under a key id this hub does not have: retired too early, or
    /// sealed elsewhere.
    #[error("sealed with PHI key {key_id:?}, which is not configured")]
    UnknownKey { key_id: String },

    /// Not a sealed value in a format this version reads.
    #[error("not a sealed value: {reason}")]
    Malformed { reason: &'static str },

    /// Altered, sealed for another record (different `aad`), or sealed
    /// under other key material with the same id, such as an
    /// [`ephemeral`](PhiKeys::ephemeral) key before a restart.
    #[error("sealed value with PHI key {key_id:?} failed authentication (altered, or sealed for another record)")]
    Authentication { key_id: String },
}

/// The keys that seal and open PHI: one current key, and older keys kept
/// to open values sealed before a rotation.
///
/// Blind indexes are keyed by a key derived from the current key, so
/// rotating the current key changes every blind index: recompute stored
/// indexes (open, normalise, index) when rotating, or comparisons against
/// them will fail (a false mismatch, never a false match).
#[derive(Clone)]
pub struct PhiKeys {
    current_id: String,
    ciphers: HashMap<String, Aes256Gcm>,
    index: HmacSha256,
    /// Older ids, sorted, for `Debug`.
    older_ids: Vec<String>,
}

impl fmt::Debug for PhiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhiKeys")
            .field("current", &self.current_id)
            .field("older", &self.older_ids)
            .finish_non_exhaustive()
    }
}

impl PhiKeys {
    /// A key set from raw keys: `current` seals, `older` only open.
    pub fn new(
        current: (String, [u8; 32]),
        older: Vec<(String, [u8; 32])>,
    ) -> Result<Self, PhiKeyError> {
        let mut ciphers = HashMap::with_capacity(older.len() + 1);
        let mut seen: Vec<(&str, &[u8; 32])> = Vec::with_capacity(older.len() + 1);
        for (id, key) in std::iter::once(&current).chain(&older) {
            check_id(id)?;
            if seen.iter().any(|(other, _)| *other == id.as_str()) {
                return Err(PhiKeyError::DuplicateId { id: id.clone() });
            }
            if let Some((other, _)) = seen.iter().find(|(_, k)| *k == key) {
                return Err(PhiKeyError::SameKey {
                    first: (*other).to_owned(),
                    second: id.clone(),
                });
            }
            seen.push((id, key));
            ciphers.insert(
                id.clone(),
                Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
            );
        }
        let mut older_ids: Vec<String> = older.into_iter().map(|(id, _)| id).collect();
        older_ids.sort();
        Ok(Self {
            index: index_mac(&current.1),
            current_id: current.0,
            ciphers,
            older_ids,
        })
    }

    /// A key set from configuration, reading `key_env` variables now.
    pub fn from_config(keys: &[PhiKeyConfig]) -> Result<Self, PhiKeyError> {
        if keys.is_empty() {
            return Err(PhiKeyError::NoKeys);
        }
        let mut current: Option<(String, [u8; 32])> = None;
        let mut older = Vec::with_capacity(keys.len());
        for c in keys {
            check_id(&c.id)?;
            let key = load_key(c)?;
            if c.current {
                if let Some((first, _)) = &current {
                    return Err(PhiKeyError::SeveralCurrent {
                        first: first.clone(),
                        second: c.id.clone(),
                    });
                }
                current = Some((c.id.clone(), key));
            } else {
                older.push((c.id.clone(), key));
            }
        }
        let current = current.ok_or(PhiKeyError::NoCurrent)?;
        let flagged: Vec<&PhiKeyConfig> = keys.iter().filter(|c| c.index).collect();
        if let [first, second, ..] = flagged.as_slice() {
            return Err(PhiKeyError::SeveralIndex {
                first: first.id.clone(),
                second: second.id.clone(),
            });
        }
        let index_key = match flagged.first() {
            Some(c) if !c.current => older.iter().find(|(id, _)| *id == c.id).map(|(_, k)| *k),
            _ => None,
        };
        let mut set = Self::new(current, older)?;
        if let Some(k) = index_key {
            set.index = index_mac(&k);
        }
        Ok(set)
    }

    /// A random key with id `ephemeral`, for tests and for a hub started
    /// without keys. It lives only in memory: values sealed with it cannot
    /// be opened, and its blind indexes cannot be reproduced, after a
    /// restart.
    pub fn ephemeral() -> Self {
        let key: [u8; 32] = Aes256Gcm::generate_key(OsRng).into();
        Self::new((EPHEMERAL_KEY_ID.to_owned(), key), Vec::new())
            .expect("a single key with a valid id is a valid key set")
    }

    /// The id of the key that seals new values and keys blind indexes;
    /// store it beside blind indexes to know when they need recomputing.
    pub fn current_key_id(&self) -> &str {
        &self.current_id
    }

    /// Seals `plaintext` under the current key, bound to `aad`.
    pub fn seal(&self, plaintext: &str, aad: &[u8]) -> String {
        let cipher = &self.ciphers[&self.current_id];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad,
                },
            )
            .expect("AES-GCM encrypts any message shorter than 64 GiB");
        format!(
            "{VERSION}:{}:{}:{}",
            self.current_id,
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(sealed)
        )
    }

    /// Opens a value from [`seal`](Self::seal) with the key it names and the
    /// `aad` it was sealed with.
    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<String, SealError> {
        let malformed = |reason| SealError::Malformed { reason };
        let mut parts = sealed.split(':');
        let (Some(version), Some(key_id), Some(nonce), Some(body), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(malformed("expected four `:`-separated parts"));
        };
        if version != VERSION {
            return Err(malformed("unknown version"));
        }
        // Checked before echoing it in an error.
        if check_id(key_id).is_err() {
            return Err(malformed("invalid key id"));
        }
        let cipher = self
            .ciphers
            .get(key_id)
            .ok_or_else(|| SealError::UnknownKey {
                key_id: key_id.to_owned(),
            })?;
        let nonce = URL_SAFE_NO_PAD
            .decode(nonce)
            .ok()
            .filter(|n| n.len() == NONCE_LEN)
            .ok_or(malformed("the nonce is not 12 bytes of base64url"))?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .ok()
            .filter(|b| b.len() >= TAG_LEN)
            .ok_or(malformed(
                "the ciphertext is not base64url with a 16-byte tag",
            ))?;
        let plain = cipher
            .decrypt(Nonce::from_slice(&nonce), Payload { msg: &body, aad })
            .map_err(|_| SealError::Authentication {
                key_id: key_id.to_owned(),
            })?;
        String::from_utf8(plain).map_err(|_| malformed("the plaintext is not UTF-8"))
    }

    /// A keyed hash (HMAC-SHA256, lowercase hex) of an already normalised
    /// value, to find equal values without decrypting. Keyed so that a
    /// leaked table cannot be reversed by hashing every plausible birth
    /// date; see [`PhiKeys`] on rotation.
    /// Names the key blind indexes are made with, without revealing it (a
    /// blind index of a fixed label): stores record it, so that hubs whose
    /// hashes would not match are told before they link anything.
    pub fn index_fingerprint(&self) -> String {
        self.blind_index("cgthub index key fingerprint v1")[..16].to_string()
    }

    pub fn blind_index(&self, normalised: &str) -> String {
        let mut mac = self.index.clone();
        mac.update(normalised.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// HMAC keyed with HMAC(current key, label): never the encryption key itself.
fn index_mac(current: &[u8; 32]) -> HmacSha256 {
    let mut derive =
        <HmacSha256 as Mac>::new_from_slice(current).expect("HMAC takes any key length");
    derive.update(INDEX_KEY_LABEL);
    let index_key = derive.finalize().into_bytes();
    <HmacSha256 as Mac>::new_from_slice(&index_key).expect("HMAC takes any key length")
}

/// Ids go into sealed values between `:`s, and into logs: keep them plain.
fn check_id(id: &str) -> Result<(), PhiKeyError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PhiKeyError::InvalidId { id: id.to_owned() })
    }
}

fn load_key(c: &PhiKeyConfig) -> Result<[u8; 32], PhiKeyError> {
    let id = || c.id.clone();
    let (text, origin) = match (&c.key, &c.key_env) {
        (Some(key), None) => (key.clone(), "`key`".to_owned()),
        (None, Some(var)) => {
            let env_err = |problem| PhiKeyError::Env {
                id: id(),
                var: var.clone(),
                problem,
            };
            let value = std::env::var(var).map_err(|e| match e {
                std::env::VarError::NotPresent => env_err("not set"),
                std::env::VarError::NotUnicode(_) => env_err("not valid Unicode"),
            })?;
            (value, format!("environment variable {var}"))
        }
        _ => return Err(PhiKeyError::KeySource { id: id() }),
    };
    let text = text.trim();
    // Own messages: `hex`'s name the offending character, a piece of the key.
    if text.len() != 64 {
        return Err(PhiKeyError::Length {
            id: id(),
            origin,
            len: text.chars().count(),
        });
    }
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key).map_err(|_| PhiKeyError::NotHex { id: id(), origin })?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: [u8; 32] = [0x11; 32];
    const K2: [u8; 32] = [0x22; 32];
    const K1_HEX: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    fn keys(current: (&str, [u8; 32]), older: &[(&str, [u8; 32])]) -> PhiKeys {
        PhiKeys::new(
            (current.0.to_owned(), current.1),
            older.iter().map(|(id, k)| ((*id).to_owned(), *k)).collect(),
        )
        .unwrap()
    }

    fn cfg(id: &str, key: Option<&str>, key_env: Option<&str>, current: bool) -> PhiKeyConfig {
        PhiKeyConfig {
            id: id.into(),
            key: key.map(Into::into),
            key_env: key_env.map(Into::into),
            current,
            index: false,
        }
    }

    fn config_err(c: &[PhiKeyConfig]) -> String {
        let e = PhiKeys::from_config(c).unwrap_err().to_string();
        assert!(!e.contains("1111111"), "{e}");
        assert!(!e.contains("zzzz"), "{e}");
        e
    }

    #[test]
    fn round_trip() {
        let k = keys(("k1", K1), &[]);
        let sealed = k.seal("EVERYWOMAN|EVE", b"COI-1");
        assert!(sealed.starts_with("v1:k1:"), "{sealed}");
        assert!(!sealed.contains("EVE"));
        assert_eq!(k.open(&sealed, b"COI-1").unwrap(), "EVERYWOMAN|EVE");
        assert_eq!(k.open(&k.seal("", b""), b"").unwrap(), "");
        assert_eq!(k.open(&k.seal("Seán", b"x"), b"x").unwrap(), "Seán");
    }

    #[test]
    fn nonces_are_fresh() {
        let k = PhiKeys::ephemeral();
        assert_ne!(k.seal("1980-01-01", b"c"), k.seal("1980-01-01", b"c"));
    }

    #[test]
    fn other_aad_fails() {
        let k = keys(("k1", K1), &[]);
        let sealed = k.seal("1980-01-01", b"COI-1");
        assert_eq!(
            k.open(&sealed, b"COI-2"),
            Err(SealError::Authentication {
                key_id: "k1".into()
            })
        );
    }

    #[test]
    fn tampering_fails() {
        let k = keys(("k1", K1), &[]);
        let sealed = k.seal("1980-01-01", b"c");
        let (head, body) = sealed.rsplit_once(':').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(body).unwrap();
        for i in [0, bytes.len() - 1] {
            bytes[i] ^= 1;
            let forged = format!("{head}:{}", URL_SAFE_NO_PAD.encode(&bytes));
            assert!(matches!(
                k.open(&forged, b"c"),
                Err(SealError::Authentication { .. })
            ));
            bytes[i] ^= 1;
        }
        // Truncated tag.
        bytes.truncate(bytes.len() - 1);
        let forged = format!("{head}:{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert!(matches!(
            k.open(&forged, b"c"),
            Err(SealError::Authentication { .. })
        ));
        // Another nonce.
        let parts: Vec<&str> = sealed.split(':').collect();
        let nonce = URL_SAFE_NO_PAD.encode([0u8; 12]);
        let forged = format!("v1:k1:{nonce}:{}", parts[3]);
        assert!(matches!(
            k.open(&forged, b"c"),
            Err(SealError::Authentication { .. })
        ));
    }

    #[test]
    fn unknown_key() {
        let sealed = keys(("k1", K1), &[]).seal("x", b"");
        assert_eq!(
            keys(("k2", K2), &[]).open(&sealed, b""),
            Err(SealError::UnknownKey {
                key_id: "k1".into()
            })
        );
        assert!(matches!(
            PhiKeys::ephemeral().open(&PhiKeys::ephemeral().seal("x", b""), b""),
            Err(SealError::Authentication { .. })
        ));
    }

    #[test]
    fn malformed() {
        let k = keys(("k1", K1), &[]);
        let good = k.seal("x", b"");
        let parts: Vec<&str> = good.split(':').collect();
        for bad in [
            "",
            "EVERYWOMAN^EVE",
            "v1:k1:abc",
            &format!("{good}:extra"),
            &format!("v2:k1:{}:{}", parts[2], parts[3]),
            &format!("v1:Eve Everywoman:{}:{}", parts[2], parts[3]),
            &format!("v1:k1:{}:{}", &parts[2][1..], parts[3]),
            &format!("v1:k1:{}=:{}", parts[2], parts[3]),
            &format!("v1:k1:{}:{}", parts[2], "AAAA"),
            &format!("v1:k1:{}:{}!", parts[2], parts[3]),
        ] {
            let e = k.open(bad, b"").unwrap_err();
            assert!(matches!(e, SealError::Malformed { .. }), "{bad}: {e:?}");
            assert!(!e.to_string().contains("Eve"), "{e}");
        }
    }

    #[test]
    fn rotation() {
        let old = keys(("2024", K1), &[]);
        let sealed = old.seal("O'BRIEN|SEAN", b"COI-7");
        let rotated = keys(("2025", K2), &[("2024", K1)]);
        assert_eq!(rotated.open(&sealed, b"COI-7").unwrap(), "O'BRIEN|SEAN");
        let resealed = rotated.seal("O'BRIEN|SEAN", b"COI-7");
        assert!(resealed.starts_with("v1:2025:"));
        assert!(matches!(
            old.open(&resealed, b"COI-7"),
            Err(SealError::UnknownKey { .. })
        ));
        assert_eq!(rotated.current_key_id(), "2025");
        // The index follows the current key.
        assert_ne!(old.blind_index("X"), rotated.blind_index("X"));
    }

    #[test]
    fn from_config_reads_key_and_env() {
        let var = "CGTHUB_TEST_SEAL_KEY_OK";
        std::env::set_var(var, format!("  {}\n", hex::encode(K2)));
        let k = PhiKeys::from_config(&[
            cfg("old", Some(K1_HEX), None, false),
            cfg("new", None, Some(var), true),
        ])
        .unwrap();
        assert_eq!(k.current_key_id(), "new");
        let from_raw = keys(("new", K2), &[("old", K1)]);
        assert_eq!(
            k.open(&from_raw.seal("a", b"r"), b"r").unwrap(),
            "a",
            "env key is K2"
        );
        let sealed_old = keys(("old", K1), &[]).seal("b", b"r");
        assert_eq!(k.open(&sealed_old, b"r").unwrap(), "b");
        assert_eq!(k.blind_index("A"), from_raw.blind_index("A"));
    }

    #[test]
    fn from_config_deserialises() {
        #[derive(Deserialize)]
        struct Doc {
            phi_keys: Vec<PhiKeyConfig>,
        }
        let doc: Doc = toml::from_str(&format!(
            "[[phi_keys]]\nid = \"a\"\nkey = \"{K1_HEX}\"\ncurrent = true\n"
        ))
        .unwrap();
        assert_eq!(
            PhiKeys::from_config(&doc.phi_keys)
                .unwrap()
                .current_key_id(),
            "a"
        );
        assert!(toml::from_str::<Doc>("[[phi_keys]]\nid = \"a\"\nkye = \"00\"\n").is_err());
    }

    #[test]
    fn config_errors() {
        let other = "2222222222222222222222222222222222222222222222222222222222222222";
        assert_eq!(config_err(&[]), "no PHI key is configured");
        assert_eq!(
            config_err(&[cfg("a", Some(K1_HEX), None, false)]),
            "no PHI key is marked current (exactly one must be)"
        );
        assert_eq!(
            config_err(&[
                cfg("a", Some(K1_HEX), None, true),
                cfg("b", Some(other), None, true),
            ]),
            r#"PHI keys "a" and "b" are both marked current (exactly one must be)"#
        );
        assert_eq!(
            config_err(&[
                cfg("a", Some(K1_HEX), None, true),
                cfg("a", Some(other), None, false),
            ]),
            r#"PHI key id "a" is configured more than once"#
        );
        assert_eq!(
            config_err(&[
                cfg("a", Some(K1_HEX), None, true),
                cfg("b", Some(&K1_HEX.to_uppercase()), None, false),
            ]),
            r#"PHI keys "a" and "b" have the same key material"#
        );
        assert!(config_err(&[cfg("a:b", Some(K1_HEX), None, true)])
            .starts_with(r#"PHI key id "a:b" is invalid"#));
        assert!(config_err(&[cfg("", Some(K1_HEX), None, true)]).contains("is invalid"));
        assert_eq!(
            config_err(&[cfg("a", Some(&format!("{}zz", &K1_HEX[2..])), None, true)]),
            r#"PHI key "a" (`key`): the key is not hexadecimal"#
        );
        assert_eq!(
            config_err(&[cfg("a", Some(&K1_HEX[..62]), None, true)]),
            r#"PHI key "a" (`key`): the key must be 64 hexadecimal digits (32 bytes), found 62 characters"#
        );
        assert_eq!(
            config_err(&[cfg("a", Some(&format!("{K1_HEX}11")), None, true)]),
            r#"PHI key "a" (`key`): the key must be 64 hexadecimal digits (32 bytes), found 66 characters"#
        );
        assert_eq!(
            config_err(&[cfg("a", Some(K1_HEX), Some("X"), true)]),
            r#"PHI key "a": set exactly one of `key` and `key_env`"#
        );
        assert_eq!(
            config_err(&[cfg("a", None, None, true)]),
            r#"PHI key "a": set exactly one of `key` and `key_env`"#
        );
        assert_eq!(
            config_err(&[cfg("a", None, Some("CGTHUB_TEST_SEAL_KEY_UNSET"), true)]),
            r#"PHI key "a": environment variable CGTHUB_TEST_SEAL_KEY_UNSET is not set"#
        );
        let var = "CGTHUB_TEST_SEAL_KEY_BAD";
        std::env::set_var(var, format!("{}zzzz", &K1_HEX[4..]));
        assert_eq!(
            config_err(&[cfg("a", None, Some(var), true)]),
            r#"PHI key "a" (environment variable CGTHUB_TEST_SEAL_KEY_BAD): the key is not hexadecimal"#
        );
    }

    #[test]
    fn new_rejects_bad_sets() {
        let dup = PhiKeys::new(("a".into(), K1), vec![("a".into(), K2)]);
        assert_eq!(
            dup.unwrap_err(),
            PhiKeyError::DuplicateId { id: "a".into() }
        );
        let same = PhiKeys::new(("a".into(), K1), vec![("b".into(), K1)]);
        assert_eq!(
            same.unwrap_err(),
            PhiKeyError::SameKey {
                first: "a".into(),
                second: "b".into()
            }
        );
    }

    #[test]
    fn debug_hides_keys() {
        let k = keys(("k1", K1), &[("k0", K2)]);
        let d = format!("{k:?}");
        assert_eq!(d, r#"PhiKeys { current: "k1", older: ["k0"], .. }"#);
        let c = format!("{:?}", cfg("k1", Some(K1_HEX), None, true));
        assert!(!c.contains("1111111"), "{c}");
        assert!(c.contains("<redacted>"), "{c}");
        assert!(format!("{:?}", PhiKeys::ephemeral()).contains("\"ephemeral\""));
    }

    #[test]
    fn blind_index() {
        let k = keys(("k1", K1), &[]);
        let a = k.blind_index("EVERYWOMAN|EVE");
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(a, k.blind_index("EVERYWOMAN|EVE"));
        assert_eq!(a, keys(("other-id", K1), &[]).blind_index("EVERYWOMAN|EVE"));
        assert_ne!(a, k.blind_index("EVERYWOMAN|EVA"));
        assert_ne!(a, keys(("k1", K2), &[]).blind_index("EVERYWOMAN|EVE"));
        // Keyed: not a plain SHA-256, nor an HMAC under the encryption key.
        use sha2::Digest;
        assert_ne!(a, hex::encode(Sha256::digest(b"EVERYWOMAN|EVE")));
        let mut raw = <HmacSha256 as Mac>::new_from_slice(&K1).unwrap();
        raw.update(b"EVERYWOMAN|EVE");
        assert_ne!(a, hex::encode(raw.finalize().into_bytes()));
    }

    #[test]
    fn blind_indexes_survive_a_rotation_when_the_old_key_keeps_index() {
        let k0 = "00".repeat(31) + "01";
        let k1 = "00".repeat(31) + "02";
        let cfg = |id: &str, key: &str, current: bool, index: bool| PhiKeyConfig {
            id: id.into(),
            key: Some(key.into()),
            key_env: None,
            current,
            index,
        };
        let before = PhiKeys::from_config(&[cfg("k0", &k0, true, false)]).unwrap();
        let after =
            PhiKeys::from_config(&[cfg("k0", &k0, false, true), cfg("k1", &k1, true, false)])
                .unwrap();
        assert_eq!(
            before.blind_index("SMITH|JANE"),
            after.blind_index("SMITH|JANE")
        );
        assert_eq!(after.current_key_id(), "k1", "the new key seals");
        let unflagged =
            PhiKeys::from_config(&[cfg("k0", &k0, false, false), cfg("k1", &k1, true, false)])
                .unwrap();
        assert_ne!(
            before.blind_index("SMITH|JANE"),
            unflagged.blind_index("SMITH|JANE")
        );
        let e = PhiKeys::from_config(&[cfg("k0", &k0, false, true), cfg("k1", &k1, true, true)])
            .unwrap_err();
        assert!(matches!(e, PhiKeyError::SeveralIndex { .. }), "{e}");
    }
}
