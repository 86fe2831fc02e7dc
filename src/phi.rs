//! The keys that seal patient data in the identity registry: from
//! `[identity] phi_keys`, or, when none are configured, one key generated
//! once into `<data_dir>/phi.key` (mode 0600) so that the embedded default
//! runs with one command. Production should configure its own key (from
//! an environment variable or a secret store): whoever reads `phi.key` can
//! open the registry's sealed values.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hub_core::identity::PhiKeys;

use crate::config::Settings;

/// Id of the generated key.
pub const LOCAL_KEY_ID: &str = "local";

/// The key set in force, and the key file when one was used.
pub fn keys(s: &Settings) -> anyhow::Result<(PhiKeys, Option<PathBuf>)> {
    if !s.identity.phi_keys.is_empty() {
        let keys = PhiKeys::from_config(&s.identity.phi_keys)
            .map_err(|e| anyhow::anyhow!("identity.phi_keys: {e}"))?;
        return Ok((keys, None));
    }
    let path = s.data_dir.join("phi.key");
    let key = local_key(&path)?;
    let keys = PhiKeys::new((LOCAL_KEY_ID.to_string(), key), Vec::new())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((keys, Some(path)))
}

/// Reads the key in `path`, creating it (32 random bytes, hex) if absent.
fn local_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(text.trim()).with_context(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(hex::encode(key).as_bytes())?;
            f.sync_all()?;
            tracing::info!(file = %path.display(), "generated the key that seals patient data; configure identity.phi_keys in production");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn parse(hex_text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(hex_text).map_err(|_| anyhow::anyhow!("not 64 hex digits"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| anyhow::anyhow!("{} bytes, not 32", b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_and_read_back_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phi.key");
        let a = local_key(&path).unwrap();
        let b = local_key(&path).unwrap();
        assert_eq!(a, b, "the same key on every start");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "abcd").unwrap();
        let e = local_key(&path).unwrap_err();
        assert!(format!("{e:#}").contains("2 bytes, not 32"), "{e:#}");
    }
}
