//! The JSONL file sink: one event per line, appended and fsynced before the
//! outbox row is marked delivered.
//!
//! Exactly once per event id, even across a crash: if the hub dies after the
//! fsync but before the outbox row is marked, the row is sent again after a
//! restart. On open the sink therefore reads the file's tail (the last few
//! batches), remembers the event ids it holds, and skips them when they come
//! again. A torn last line (a crash mid-write) is cut off.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{BoxFuture, Sink, SinkError};
use crate::store::OutboxItem;

/// How much of the file's end is scanned on open: far more than the one
/// batch that can be written but unconfirmed at a crash.
const TAIL_SCAN_BYTES: u64 = 16 * 1024 * 1024;

pub struct JsonlSink {
    name: String,
    path: PathBuf,
    state: Arc<Mutex<State>>,
}

struct State {
    file: std::fs::File,
    /// Event ids found in the file's tail at open that may come again.
    seen_at_open: HashSet<String>,
}

impl JsonlSink {
    /// Opens (creating folders and file) and recovers the tail.
    pub fn open(name: &str, path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let seen_at_open = recover(&mut file)?;
        Ok(JsonlSink {
            name: name.to_string(),
            path: path.to_path_buf(),
            state: Arc::new(Mutex::new(State { file, seen_at_open })),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn recover(file: &mut std::fs::File) -> std::io::Result<HashSet<String>> {
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_SCAN_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity((len - start) as usize);
    // Read no more than the file's length: a device (/dev/full) never ends.
    (&mut *file).take(len - start).read_to_end(&mut tail)?;
    // A last line without its newline was torn by a crash: cut it off.
    let complete = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < tail.len() {
        file.set_len(start + complete as u64)?;
        file.sync_all()?;
    }
    #[derive(serde::Deserialize)]
    struct Id {
        event_id: String,
    }
    let mut ids = HashSet::new();
    // The first line may be cut by the scan window; it simply fails to parse.
    for line in tail[..complete].split(|&b| b == b'\n') {
        if let Ok(id) = serde_json::from_slice::<Id>(line) {
            ids.insert(id.event_id);
        }
    }
    Ok(ids)
}

impl Sink for JsonlSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, batch: &'a [OutboxItem]) -> BoxFuture<'a, Vec<Result<(), SinkError>>> {
        let state = Arc::clone(&self.state);
        let mut buf = Vec::with_capacity(batch.iter().map(|i| i.body.len() + 1).sum());
        let ids: Vec<String> = batch.iter().map(|i| i.event_id.clone()).collect();
        let bodies: Vec<&str> = batch.iter().map(|i| i.body.as_str()).collect();
        let n = batch.len();
        Box::pin(async move {
            {
                let st = state.lock().expect("sink state");
                for (id, body) in ids.iter().zip(&bodies) {
                    if !st.seen_at_open.contains(id) {
                        buf.extend_from_slice(body.as_bytes());
                        buf.push(b'\n');
                    }
                }
            }
            // File I/O and fsync block: keep them off the async workers.
            let res = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let mut st = state.lock().expect("sink state");
                for id in &ids {
                    st.seen_at_open.remove(id);
                }
                if !buf.is_empty() {
                    st.file.write_all(&buf)?;
                    st.file.sync_data()?;
                }
                Ok(())
            })
            .await;
            let err = match res {
                Ok(Ok(())) => return vec![Ok(()); n],
                Ok(Err(e)) => SinkError::transient(format!("writing {}: {e}", self.path.display())),
                Err(e) => SinkError::transient(format!("writer task failed: {e}")),
            };
            vec![Err(err); n]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str) -> OutboxItem {
        OutboxItem {
            id: 1,
            event_id: id.into(),
            route: "r".into(),
            sink: "s".into(),
            attempts: 0,
            routing_key: "k".into(),
            kind: "qc.result_reported".into(),
            coi: None,
            product: None,
            partner: "p".into(),
            body: format!(r#"{{"schema":"cgt.event/v1","event_id":"{id}"}}"#),
        }
    }

    #[tokio::test]
    async fn appends_lines_and_skips_what_a_crash_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/events.jsonl");
        let sink = JsonlSink::open("s", &path).unwrap();
        let r = sink.deliver(&[item("a"), item("b")]).await;
        assert!(r.iter().all(Result::is_ok));
        drop(sink);
        // A crash mid-write leaves a torn line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(br#"{"schema":"cgt.ev"#)
            .unwrap();
        let sink = JsonlSink::open("s", &path).unwrap();
        // "b" was written but (say) never marked delivered: it comes again.
        sink.deliver(&[item("b"), item("c")]).await;
        sink.deliver(&[item("b")]).await;
        let text = std::fs::read_to_string(&path).unwrap();
        let ids: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["event_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            ids,
            ["a", "b", "c", "b"],
            "once per id after recovery; a later resend is written: {text}"
        );
    }
}
