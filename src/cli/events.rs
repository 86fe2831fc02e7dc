//! `cgthub events`: canonical events from the store.

use std::path::Path;
use std::process::ExitCode;

use hub_core::store::EventFilter;

pub async fn run(
    config_file: Option<&Path>,
    coi: Option<String>,
    kind: Option<String>,
    unmatched: bool,
    limit: u32,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(k) = &kind {
        if hub_core::EventKind::parse(k).is_none() {
            anyhow::bail!("unknown event kind {k:?}");
        }
    }
    let store = super::open_store(config_file).await?;
    let rows = store
        .events(&EventFilter {
            coi,
            kind,
            message_row: None,
            unmatched_only: unmatched,
            limit,
        })
        .await?;
    for r in &rows {
        if json {
            println!("{}", r.body);
        } else {
            let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
            println!(
                "{}  {:<28} coi={:<16} order={:<12} msg={:<6} {}{}",
                v["occurred_at"].as_str().unwrap_or("?"),
                r.kind,
                r.coi.as_deref().unwrap_or("-"),
                v["order_id"].as_str().unwrap_or("-"),
                r.message_row,
                r.event_id,
                if r.routing == hub_core::store::Routing::Unmatched {
                    "  (unmatched)"
                } else {
                    ""
                },
            );
        }
    }
    if !json {
        eprintln!("{} event(s)", rows.len());
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
