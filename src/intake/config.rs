//! `[b2mml]` and `[lims]`: the settings of intakes that take whole files,
//! by HTTP POST and from drop folders.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hub_core::inbox::DropFolder;
use hub_core::tokens::TokenConfig;
use serde::Deserialize;

/// Which intake a [`FileIntakeConfig`] is: its section and defaults.
pub trait Section: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The config section and connector folder name: `b2mml`, `lims`.
    const NAME: &'static str;
    /// The partner the shipped config names.
    const PARTNER: &'static str;
    const MAX_BODY_BYTES: u64;
}

/// `[b2mml]`.
#[derive(Debug, Clone, Copy)]
pub struct B2mmlSection;
impl Section for B2mmlSection {
    const NAME: &'static str = "b2mml";
    const PARTNER: &'static str = "mes";
    const MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
}

/// `[lims]`.
#[derive(Debug, Clone, Copy)]
pub struct LimsSection;
impl Section for LimsSection {
    const NAME: &'static str = "lims";
    const PARTNER: &'static str = "lims";
    const MAX_BODY_BYTES: u64 = 1024 * 1024 * 1024;
}

/// One file intake's settings; a key left out takes the section's default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, bound = "")]
pub struct FileIntakeConfig<S: Section> {
    /// Take files at all (HTTP and drop folders).
    pub enabled: bool,
    /// The partners that may send: each has a drop folder
    /// `{data_dir}/inbox/{section}/{partner}/` and may POST to
    /// `/{section}/{partner}` with its token.
    pub partners: Vec<String>,
    /// Bearer tokens for HTTP (kept as SHA-256); a token posts only for its
    /// own partner. Empty: HTTP refuses every request (401); the drop
    /// folders still work (the file system's permissions guard them).
    pub tokens: Vec<TokenConfig>,
    /// Larger bodies or files are refused with 413 / moved to `rejected/`
    /// (their first 4 KiB are kept with the reason).
    pub max_body_bytes: u64,
    /// A dropped file is taken once its size and time stayed the same this
    /// long (names starting with `.` or ending in `.tmp`, `.part`,
    /// `.partial` are never taken: write under one and rename).
    pub settle_ms: u64,
    /// How often the drop folders are looked at.
    pub poll_ms: u64,
    #[serde(skip)]
    section: std::marker::PhantomData<S>,
}

impl<S: Section> Default for FileIntakeConfig<S> {
    fn default() -> Self {
        FileIntakeConfig {
            enabled: true,
            partners: vec![S::PARTNER.to_string()],
            tokens: Vec::new(),
            max_body_bytes: S::MAX_BODY_BYTES,
            settle_ms: 1000,
            poll_ms: 500,
            section: std::marker::PhantomData,
        }
    }
}

impl<S: Section> FileIntakeConfig<S> {
    /// The drop folders under `data_dir`.
    pub fn drop_folder(&self, data_dir: &Path) -> DropFolder {
        DropFolder {
            root: inbox_root(data_dir, S::NAME),
            partners: self.partners.clone(),
            settle: Duration::from_millis(self.settle_ms),
        }
    }

    /// The drop folders, made (with `processed/` and `rejected/`), and how
    /// often to look at them; `None`, logged, when they cannot be made.
    pub fn ready_folders(&self, data_dir: &Path) -> Option<(DropFolder, Duration)> {
        let folder = self.drop_folder(data_dir);
        if let Err(e) = folder.prepare() {
            tracing::error!(section = S::NAME, folder = %folder.root.display(), error = %e, "drop folders cannot be made; not watching them");
            return None;
        }
        tracing::info!(section = S::NAME, folder = %folder.root.display(), partners = ?self.partners, "drop folders watched");
        Some((folder, Duration::from_millis(self.poll_ms)))
    }

    /// Problems an operator must fix before the hub starts.
    pub fn check(&self) -> Vec<String> {
        let section = S::NAME;
        let mut out = hub_core::tokens::check(section, &self.tokens);
        for p in &self.partners {
            let bad = p.is_empty()
                || p == "."
                || p == ".."
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
            if bad {
                out.push(format!(
                    "{section}.partners: {p:?} is not usable as a folder name (letters, digits, '_', '-', '.')"
                ));
            }
        }
        for t in &self.tokens {
            if !self.partners.contains(&t.partner) {
                out.push(format!(
                    "{section}.tokens: partner {:?} is not in {section}.partners",
                    t.partner
                ));
            }
        }
        if self.max_body_bytes < 1024 {
            out.push(format!("{section}.max_body_bytes: at least 1024"));
        }
        if self.poll_ms == 0 {
            out.push(format!("{section}.poll_ms: at least 1"));
        }
        out
    }
}

/// `{data_dir}/inbox/{kind}`.
pub fn inbox_root(data_dir: &Path, kind: &str) -> PathBuf {
    data_dir.join("inbox").join(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_section_has_its_partner_and_limit_and_mistakes_are_named() {
        let b = FileIntakeConfig::<B2mmlSection>::default();
        let l = FileIntakeConfig::<LimsSection>::default();
        assert_eq!(
            (b.partners[0].as_str(), b.max_body_bytes),
            ("mes", 16 << 20)
        );
        assert_eq!(
            (l.partners[0].as_str(), l.max_body_bytes),
            ("lims", 1 << 30)
        );
        assert!(b.check().is_empty() && l.check().is_empty());
        assert_eq!(
            l.drop_folder(Path::new("data")).partner_dir("lims"),
            Path::new("data/inbox/lims/lims")
        );

        // A key left out keeps the section's default.
        let partial: FileIntakeConfig<LimsSection> =
            toml::from_str("partners = [\"lab-2\", \"../etc\"]\ntokens = [{ partner = \"other\", sha256 = \"00\" }]").unwrap();
        assert_eq!(partial.max_body_bytes, 1 << 30);
        let errs = partial.check();
        assert!(
            errs.iter()
                .any(|e| e.contains("\"../etc\" is not usable as a folder name")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("partner \"other\" is not in lims.partners")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.starts_with("lims.tokens[0]")),
            "{errs:?}"
        );
        assert!(toml::from_str::<FileIntakeConfig<B2mmlSection>>("partner = [\"x\"]").is_err());
    }
}
