//! Drop folders: partners (or their file transfer) write files into
//! `{root}/{partner}/`; the hub takes each file once it is complete, hands
//! it to its connector, and moves it to `processed/` or `rejected/` beside
//! a `{file}.report.json` saying what became of it.
//!
//! A file is taken once its size and modification time have not changed
//! for the settle time. Names starting with `.` or ending in `.tmp`,
//! `.part` or `.partial` are never taken: a sender that writes under such
//! a name and renames when done is never read half-written, however slow
//! its link. A file is moved only after its
//! connector's messages are durable, so a crash in between takes it again;
//! the store's dedup (by the partner's id, or the content hash) answers the
//! second time as a duplicate and nothing is processed twice.
//!
//! Polled rather than watched with inotify: polling works on the network
//! shares these folders often are, and the settle check needs a clock
//! anyway. The scan runs on the blocking pool.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Where finished files go.
pub const PROCESSED: &str = "processed";
/// Where refused files go.
pub const REJECTED: &str = "rejected";

/// One connector's drop folders: `{root}/{partner}/` for each partner.
#[derive(Debug, Clone)]
pub struct DropFolder {
    pub root: PathBuf,
    pub partners: Vec<String>,
    /// How long a file's size and time must stay the same.
    pub settle: Duration,
}

/// A complete file, ready to be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub partner: String,
    pub path: PathBuf,
    pub len: u64,
}

/// Where a taken file ends up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Everything in it was taken (or it was a repeat of a file taken before).
    Processed,
    /// Refused as a whole: nothing in it was taken.
    Rejected,
}

impl Settled {
    fn dir(self) -> &'static str {
        match self {
            Settled::Processed => PROCESSED,
            Settled::Rejected => REJECTED,
        }
    }
}

/// What the last scans saw of files not yet ready.
#[derive(Debug, Default)]
pub struct Scanner {
    seen: HashMap<PathBuf, (u64, Option<SystemTime>, Instant)>,
}

impl DropFolder {
    /// The folder of one partner.
    pub fn partner_dir(&self, partner: &str) -> PathBuf {
        self.root.join(partner)
    }

    /// Creates every partner's folder with its `processed/` and `rejected/`.
    pub fn prepare(&self) -> io::Result<()> {
        for p in &self.partners {
            let dir = self.partner_dir(p);
            std::fs::create_dir_all(dir.join(PROCESSED))?;
            std::fs::create_dir_all(dir.join(REJECTED))?;
        }
        Ok(())
    }

    /// The files that are complete now, oldest first within each partner.
    /// Blocking: call it on the blocking pool.
    pub fn scan(&self, s: &mut Scanner, now: Instant) -> io::Result<Vec<Dropped>> {
        let mut ready = Vec::new();
        let mut present = Vec::new();
        for partner in &self.partners {
            let dir = self.partner_dir(partner);
            let mut files: Vec<(SystemTime, Dropped)> = Vec::new();
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if !is_candidate(name) {
                    continue;
                }
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                let path = entry.path();
                let key = (meta.len(), meta.modified().ok());
                present.push(path.clone());
                let stable_since = match s.seen.get(&path) {
                    Some(&(len, mtime, since)) if (len, mtime) == key => since,
                    _ => {
                        s.seen.insert(path.clone(), (key.0, key.1, now));
                        now
                    }
                };
                if now.duration_since(stable_since) >= self.settle {
                    let at = key.1.unwrap_or(SystemTime::UNIX_EPOCH);
                    files.push((
                        at,
                        Dropped {
                            partner: partner.clone(),
                            path,
                            len: key.0,
                        },
                    ));
                }
            }
            files.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.path.cmp(&b.1.path)));
            ready.extend(files.into_iter().map(|(_, d)| d));
        }
        s.seen.retain(|p, _| present.contains(p));
        for d in &ready {
            s.seen.remove(&d.path);
        }
        Ok(ready)
    }

    /// Moves a taken file to `processed/` or `rejected/` (a number added to
    /// its name if one of that name is there already) and writes its report
    /// beside it as `{name}.report.json`. Returns the new path.
    pub fn settle(
        &self,
        file: &Dropped,
        to: Settled,
        report: &serde_json::Value,
    ) -> io::Result<PathBuf> {
        let dir = self.partner_dir(&file.partner).join(to.dir());
        std::fs::create_dir_all(&dir)?;
        let name = file
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("file")
            .to_string();
        let dest = free_name(&dir, &name);
        let report_path = PathBuf::from(format!("{}.report.json", dest.display()));
        let tmp = PathBuf::from(format!("{}.tmp", report_path.display()));
        let body = serde_json::to_vec_pretty(report).map_err(io::Error::other)?;
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, &report_path)?;
        std::fs::rename(&file.path, &dest)?;
        Ok(dest)
    }
}

/// Scans every `poll` until `shutdown`, handing each complete file to
/// `take` one at a time and settling it as `take` says. Files are taken in
/// turn, so a file is moved before the next scan could see it again.
pub async fn watch<F, Fut>(
    folder: DropFolder,
    poll: Duration,
    shutdown: tokio_util::sync::CancellationToken,
    mut take: F,
) where
    F: FnMut(Dropped) -> Fut,
    Fut: std::future::Future<Output = Option<(Settled, serde_json::Value)>>,
{
    let mut scanner = Scanner::default();
    let mut warned = false;
    loop {
        let f = folder.clone();
        let scanned = tokio::task::spawn_blocking(move || {
            let r = f.scan(&mut scanner, Instant::now());
            (scanner, r)
        })
        .await;
        let ready = match scanned {
            Ok((s, Ok(ready))) => {
                scanner = s;
                warned = false;
                ready
            }
            Ok((s, Err(e))) => {
                scanner = s;
                if !warned {
                    tracing::warn!(folder = %folder.root.display(), error = %e, "drop folder cannot be read; trying again");
                    warned = true;
                }
                Vec::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "drop folder scan panicked");
                scanner = Scanner::default();
                Vec::new()
            }
        };
        for file in ready {
            if shutdown.is_cancelled() {
                return;
            }
            // `None`: the hub could not take it now (the store is down); it
            // stays where it is and is taken again later.
            let Some((to, report)) = take(file.clone()).await else {
                continue;
            };
            let f = folder.clone();
            let moved = tokio::task::spawn_blocking(move || {
                f.settle(&file, to, &report).map(|p| (file, p))
            })
            .await;
            match moved {
                Ok(Ok((file, dest))) => {
                    tracing::info!(partner = %file.partner, file = %dest.display(), "drop folder: file settled")
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "drop folder: a taken file could not be moved; it will be taken again and answered as a duplicate")
                }
                Err(e) => tracing::error!(error = %e, "drop folder: settling panicked"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Whether a file name may be a finished drop (not a temporary name, not a report).
pub fn is_candidate(name: &str) -> bool {
    !(name.starts_with('.')
        || name.ends_with(".tmp")
        || name.ends_with(".part")
        || name.ends_with(".partial")
        || name.ends_with(".report.json"))
}

fn free_name(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    (1..)
        .map(|n| dir.join(format!("{name}.{n}")))
        .find(|p| !p.exists())
        .expect("some number is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(root: &Path) -> DropFolder {
        let f = DropFolder {
            root: root.to_path_buf(),
            partners: vec!["lims".into(), "mes".into()],
            settle: Duration::from_secs(1),
        };
        f.prepare().unwrap();
        f
    }

    #[test]
    fn a_file_is_ready_once_it_stopped_changing_for_the_settle_time() {
        let dir = tempfile::tempdir().unwrap();
        let f = folder(dir.path());
        let mut s = Scanner::default();
        let t0 = Instant::now();
        let file = dir.path().join("lims/results.csv");
        std::fs::write(&file, "a,b\n").unwrap();
        assert!(f.scan(&mut s, t0).unwrap().is_empty(), "just seen");
        // Still being written: the clock starts again.
        std::fs::write(&file, "a,b\n1,2\n").unwrap();
        assert!(f
            .scan(&mut s, t0 + Duration::from_millis(900))
            .unwrap()
            .is_empty());
        assert!(f
            .scan(&mut s, t0 + Duration::from_millis(1500))
            .unwrap()
            .is_empty());
        let ready = f.scan(&mut s, t0 + Duration::from_millis(2000)).unwrap();
        assert_eq!(
            ready,
            vec![Dropped {
                partner: "lims".into(),
                path: file.clone(),
                len: 8
            }]
        );
        // Handed out once; a later scan sees it afresh only if it is still there.
        assert!(f
            .scan(&mut s, t0 + Duration::from_millis(2100))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn temporary_names_reports_and_folders_are_never_taken() {
        let dir = tempfile::tempdir().unwrap();
        let f = folder(dir.path());
        for name in [
            ".upload",
            "x.csv.tmp",
            "x.csv.part",
            "x.partial",
            "y.csv.report.json",
        ] {
            std::fs::write(dir.path().join("mes").join(name), "x").unwrap();
        }
        std::fs::create_dir(dir.path().join("mes/sub")).unwrap();
        // A partner folder the config does not name is not looked at.
        std::fs::create_dir(dir.path().join("other")).unwrap();
        std::fs::write(dir.path().join("other/z.xml"), "x").unwrap();
        let mut s = Scanner::default();
        let t0 = Instant::now();
        f.scan(&mut s, t0).unwrap();
        assert!(f
            .scan(&mut s, t0 + Duration::from_secs(5))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn settling_moves_the_file_and_writes_its_report_without_overwriting() {
        let dir = tempfile::tempdir().unwrap();
        let f = folder(dir.path());
        for round in 0..2 {
            let path = dir.path().join("mes/batch.xml");
            std::fs::write(&path, format!("<x>{round}</x>")).unwrap();
            let d = Dropped {
                partner: "mes".into(),
                path: path.clone(),
                len: 8,
            };
            let report = serde_json::json!({"accepted": 1, "round": round});
            let dest = f.settle(&d, Settled::Rejected, &report).unwrap();
            assert!(!path.exists());
            let want = if round == 0 {
                "mes/rejected/batch.xml"
            } else {
                "mes/rejected/batch.xml.1"
            };
            assert_eq!(dest, dir.path().join(want));
            assert_eq!(
                std::fs::read_to_string(&dest).unwrap(),
                format!("<x>{round}</x>")
            );
            let written: serde_json::Value = serde_json::from_slice(
                &std::fs::read(format!("{}.report.json", dest.display())).unwrap(),
            )
            .unwrap();
            assert_eq!(written, report);
        }
    }
}
