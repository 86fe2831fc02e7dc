//! `cgthub holds`: events the identity registry holds until their identity
//! is settled (or quarantined on a conflict), and what an operator does
//! about them.
//!
//! `list` and `show` read the database directly (read-only, beside a
//! running hub). `release` and `reject` ask the running hub over its HTTP
//! API (`http.addr`): every write goes through the hub's single writer,
//! which keeps the audit chain.

use std::path::Path;
use std::process::ExitCode;

use hub_core::store::{HoldDetail, HoldFilter, HoldInfo};
use serde_json::json;

use super::{client, open_read_only, short_time, truncate, HoldsAction};
use crate::config::{self, Settings};
use crate::http::holds::parse_state;

/// How much of a hold's detail the table shows.
const DETAIL_WIDTH: usize = 60;

pub async fn run(config_file: Option<&Path>, action: HoldsAction) -> anyhow::Result<ExitCode> {
    let settings = config::load(config_file)?.settings;
    match action {
        HoldsAction::List {
            state,
            coi,
            limit,
            json,
        } => {
            let state = parse_state(Some(state.as_str())).map_err(anyhow::Error::msg)?;
            let filter = HoldFilter { state, coi, limit };
            let store = open_read_only(&settings).await?;
            let rows = store.holds(&filter).await;
            store.close().await;
            print_list(&rows?, json)?;
            Ok(ExitCode::SUCCESS)
        }
        HoldsAction::Show { id, json } => {
            let store = open_read_only(&settings).await?;
            let detail = store.hold(id).await;
            store.close().await;
            match detail? {
                Some(d) if json => println!("{}", serde_json::to_string(&d)?),
                Some(d) => print_detail(&d)?,
                None => {
                    eprintln!("no hold {id}");
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        HoldsAction::Release { id, reason } => act(&settings, "release", id, &reason).await,
        HoldsAction::Reject { id, reason } => act(&settings, "reject", id, &reason).await,
    }
}

/// Asks the hub to release or reject hold `id`; exit 0 only when it did.
async fn act(s: &Settings, what: &str, id: i64, reason: &str) -> anyhow::Result<ExitCode> {
    if reason.trim().is_empty() {
        anyhow::bail!("--reason needs a reason in words: why {what} hold {id}?");
    }
    let actor = client::actor();
    let addr = client::hub_addr(s.http.addr);
    let path = format!("/api/holds/{id}/{what}");
    let body = json!({ "actor": actor, "reason": reason });
    let (status, answer) = client::post_json(addr, &path, &body).await?;
    let detail = answer["detail"]
        .as_str()
        .map_or_else(|| answer.to_string(), str::to_string);
    let Some(outcome) = answer["outcome"].as_str() else {
        anyhow::bail!("the hub refused the {what} ({status}): {detail}");
    };
    if status == 200 {
        println!("hold {id}: {outcome}");
        eprintln!("{detail} (as {actor})");
        return Ok(ExitCode::SUCCESS);
    }
    // Still held, refused (not open), quarantined, or no such hold.
    let why = answer["reason"].as_str().unwrap_or(&detail);
    println!("hold {id}: {outcome}: {why}");
    Ok(ExitCode::FAILURE)
}

fn print_list(rows: &[HoldInfo], json: bool) -> anyhow::Result<()> {
    if json {
        for h in rows {
            println!("{}", serde_json::to_string(h)?);
        }
        return Ok(());
    }
    if !rows.is_empty() {
        println!(
            "{:>6}  {:<11}  {:<19}  {:<26} {:<16} {:<16} {:<16} {:<19}  {:<19}  DETAIL",
            "ID", "STATE", "REASON", "KIND", "COI", "PARTNER", "MESSAGE ID", "CREATED", "DEADLINE"
        );
    }
    for h in rows {
        println!(
            "{:>6}  {:<11}  {:<19}  {:<26} {:<16} {:<16} {:<16} {:<19}  {:<19}  {}",
            h.id,
            h.state,
            h.reason,
            h.kind,
            h.coi.as_deref().unwrap_or("-"),
            h.partner,
            h.message_id.as_deref().unwrap_or("-"),
            short_time(&h.created_at),
            h.deadline.as_deref().map_or_else(|| "-".into(), short_time),
            truncate(&h.detail, DETAIL_WIDTH),
        );
        if let Some(by) = &h.resolved_by {
            let why = h.resolution.as_deref().unwrap_or_default();
            println!(
                "{:>8}{} by {by} at {}: {why}",
                "",
                h.state,
                short_time(&h.updated_at)
            );
        }
    }
    eprintln!("{} hold(s)", rows.len());
    Ok(())
}

fn print_detail(d: &HoldDetail) -> anyhow::Result<()> {
    let h = &d.hold;
    println!("hold {} ({})", h.id, h.state);
    println!("  reason:     {}", h.reason);
    println!("  detail:     {}", h.detail);
    println!("  event:      {}  {}", h.event_id, h.kind);
    println!("  coi:        {}", h.coi.as_deref().unwrap_or("-"));
    println!("  order:      {}", h.order_id.as_deref().unwrap_or("-"));
    println!("  product:    {}", h.product.as_deref().unwrap_or("-"));
    println!(
        "  message:    row {}  partner {} (connector {})  id {}",
        h.message_row,
        h.partner,
        h.connector,
        h.message_id.as_deref().unwrap_or("-")
    );
    println!("  created:    {}", h.created_at);
    println!("  updated:    {}", h.updated_at);
    if let Some(deadline) = &h.deadline {
        println!("  deadline:   {deadline}");
    }
    if h.resolved_by.is_some() || h.resolution.is_some() {
        println!(
            "  resolved:   by {}: {}",
            h.resolved_by.as_deref().unwrap_or("-"),
            h.resolution.as_deref().unwrap_or_default()
        );
    }
    if d.identifiers.is_empty() {
        println!("identifiers: none");
    } else {
        println!("identifiers:");
        for i in &d.identifiers {
            println!("  {i}");
        }
    }
    println!("event:");
    for line in serde_json::to_string_pretty(&d.event)?.lines() {
        println!("  {line}");
    }
    Ok(())
}
