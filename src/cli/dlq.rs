//! `cgthub dlq`: dead letters, why, and what an operator does about them.
//!
//! `list` and `show` read the database directly (read-only, beside a
//! running hub). `replay` and `purge` ask the running hub over its HTTP API
//! (`http.addr`): every write goes through the hub's single writer, which
//! keeps the audit chain.

use super::client;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use hub_core::store::{DeadLetter, DeadLetterDetail, DeadLetterFilter, Store};
use serde_json::{json, Value};

use super::DlqAction;
use crate::config::{self, Settings};
use crate::http::dead_letters::{audit_json, dead_letter_json, history_json, parse_status};

pub async fn run(config_file: Option<&Path>, action: DlqAction) -> anyhow::Result<ExitCode> {
    let settings = config::load(config_file)?.settings;
    match action {
        DlqAction::List {
            stage,
            reason,
            status,
            limit,
            json,
        } => {
            let status = parse_status(Some(status.as_str())).map_err(anyhow::Error::msg)?;
            let filter = DeadLetterFilter {
                status,
                stage,
                code: reason,
                limit,
            };
            let store = open_read_only(&settings).await?;
            let rows = store.list_dead_letters(&filter).await;
            store.close().await;
            print_list(&rows?, json);
            Ok(ExitCode::SUCCESS)
        }
        DlqAction::Show { id, json } => {
            let store = open_read_only(&settings).await?;
            let detail = store.dead_letter_detail(id).await;
            store.close().await;
            match detail? {
                Some(d) if json => println!("{}", detail_json(&d)),
                Some(d) => print_detail(&d),
                None => {
                    eprintln!("no dead letter {id}");
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqAction::Replay { ids, all, reason } => {
            let body = json!({
                "ids": ids, "all": all, "code": reason, "actor": client::actor(),
            });
            act(&settings, "replay", body).await
        }
        DlqAction::Purge {
            ids,
            all,
            reason,
            because,
        } => {
            if because.trim().is_empty() {
                anyhow::bail!("--because needs a reason in words: why are these given up?");
            }
            let body = json!({
                "ids": ids, "all": all, "code": reason, "reason": because,
                "actor": client::actor(),
            });
            act(&settings, "purge", body).await
        }
    }
}

async fn open_read_only(s: &Settings) -> anyhow::Result<Store> {
    Store::open_read_only(crate::serve::store_options(s, None))
        .await
        .with_context(|| format!("opening the store {} to read", s.store.url))
}

/// Asks the hub to replay or purge; one line per dead letter.
async fn act(s: &Settings, what: &str, body: Value) -> anyhow::Result<ExitCode> {
    let actor = body["actor"].as_str().unwrap_or_default().to_string();
    let addr = client::hub_addr(s.http.addr);
    let path = format!("/api/dead-letters/{what}");
    let (status, answer) = client::post_json(addr, &path, &body).await?;
    if status != 200 {
        let detail = answer["detail"]
            .as_str()
            .map_or_else(|| answer.to_string(), str::to_string);
        anyhow::bail!("the hub refused the {what} ({status}): {detail}");
    }
    let results = answer["results"].as_array().cloned().unwrap_or_default();
    if results.is_empty() {
        eprintln!("no open dead letters matched; nothing to {what}");
        return Ok(ExitCode::SUCCESS);
    }
    let done = if what == "replay" {
        "replayed"
    } else {
        "purged"
    };
    let mut failed = 0usize;
    for r in &results {
        let outcome = r["outcome"].as_str().unwrap_or("?");
        if outcome != done {
            failed += 1;
        }
        println!(
            "{}: {outcome}: {}",
            r["id"],
            r["detail"].as_str().unwrap_or_default()
        );
    }
    eprintln!(
        "{} {done}, {failed} not (as {actor})",
        results.len() - failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn short(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn print_list(rows: &[DeadLetter], json: bool) {
    if json {
        for d in rows {
            println!("{}", dead_letter_json(d));
        }
        return;
    }
    if !rows.is_empty() {
        println!(
            "{:>6}  {:<8}  {:<8} {:<26} {:<16} {:<16} {:>5}  {:<19}  {:<19}  REASON",
            "ID", "STATUS", "STAGE", "CODE", "PARTNER", "COI", "TRIES", "FIRST", "LAST"
        );
    }
    for d in rows {
        println!(
            "{:>6}  {:<8}  {:<8} {:<26} {:<16} {:<16} {:>5}  {:<19}  {:<19}  {}",
            d.id,
            d.status,
            d.stage,
            d.code,
            d.partner,
            d.coi.as_deref().unwrap_or("-"),
            d.attempts,
            short(d.first_attempt_at),
            short(d.last_attempt_at),
            d.reason
        );
        if let (Some(by), Some(at)) = (&d.replayed_by, d.replayed_at) {
            println!("{:>8}replayed by {by} at {}", "", short(at));
        }
        if let (Some(by), Some(at)) = (&d.purged_by, d.purged_at) {
            let why = d.purge_reason.as_deref().unwrap_or_default();
            println!("{:>8}purged by {by} at {}: {why}", "", short(at));
        }
    }
    eprintln!("{} dead letter(s)", rows.len());
}

fn detail_json(d: &DeadLetterDetail) -> Value {
    let m = &d.message;
    json!({
        "dead_letter": dead_letter_json(&d.dead_letter),
        "message": {
            "id": m.id, "connector": m.connector, "partner": m.partner,
            "message_id": m.message_id, "content_type": m.content_type, "sha256": m.sha256,
            "status": m.status.as_str(), "received_at": m.received_at, "origin": m.origin,
            "size": m.payload.len(), "payload": String::from_utf8_lossy(&m.payload),
        },
        "history": d.history.iter().map(history_json).collect::<Vec<_>>(),
        "audit": d.audit.iter().map(audit_json).collect::<Vec<_>>(),
    })
}

fn print_detail(detail: &DeadLetterDetail) {
    let (d, m) = (&detail.dead_letter, &detail.message);
    println!("dead letter {} ({})", d.id, d.status);
    println!("  stage:     {} ({})", d.stage, d.class);
    println!("  code:      {}", d.code);
    println!("  reason:    {}", d.reason);
    println!("  partner:   {}  (connector {})", d.partner, d.connector);
    if let Some(coi) = &d.coi {
        println!("  coi:       {coi}");
    }
    if let Some(e) = &d.event_id {
        println!(
            "  event:     {e} route={} sink={} routing key={}",
            d.route.as_deref().unwrap_or("-"),
            d.sink.as_deref().unwrap_or("-"),
            d.routing_key.as_deref().unwrap_or("-")
        );
    }
    if let Some(o) = d.outbox_id {
        println!("  outbox:    row {o}");
    }
    println!(
        "  attempts:  {}  first {}  last {}",
        d.attempts, d.first_attempt_at, d.last_attempt_at
    );
    if let (Some(by), Some(at)) = (&d.replayed_by, d.replayed_at) {
        println!("  replayed:  by {by} at {at}");
    }
    if let (Some(by), Some(at)) = (&d.purged_by, d.purged_at) {
        let why = d.purge_reason.as_deref().unwrap_or_default();
        println!("  purged:    by {by} at {at}: {why}");
    }
    println!("error chain:");
    for h in &detail.history {
        let code = h
            .code
            .as_deref()
            .map(|c| format!("{c}: "))
            .unwrap_or_default();
        println!(
            "  {}  {:<14} {:<20} {code}{}",
            h.at, h.action, h.actor, h.note
        );
    }
    if !detail.audit.is_empty() {
        println!("audit:");
        for a in &detail.audit {
            println!(
                "  #{} {}  {}  {}  {}",
                a.id, a.at, a.actor, a.action, a.detail
            );
        }
    }
    println!("message {}", m.id);
    println!(
        "  connector: {}  partner: {}  id: {}  status: {}",
        m.connector,
        m.partner,
        m.message_id.as_deref().unwrap_or("-"),
        m.status.as_str()
    );
    println!("  received:  {} from {}", m.received_at, m.origin);
    println!("  sha256:    {}  ({} bytes)", m.sha256, m.payload.len());
    println!("payload:");
    for line in String::from_utf8_lossy(&m.payload)
        .split(['\r', '\n'])
        .filter(|l| !l.is_empty())
    {
        println!("  {line}");
    }
}
