//! `cgthub trace COI`: one therapy's chain of identity, from the identity
//! registry (read-only, beside a running hub): its identifiers and where
//! each link came from, its events in the order they happened, custody
//! handoffs, the holds that name it and the identity alerts about it.
//! Patient demographics are sealed in the registry and never shown.

use std::path::Path;
use std::process::ExitCode;

use hub_core::store::{Journey, JourneyEvent};

use super::{open_read_only, short_time, truncate};
use crate::config;

/// How much of a hold's detail or an alert's message a line shows.
const TEXT_WIDTH: usize = 80;

pub async fn run(config_file: Option<&Path>, coi: &str, json: bool) -> anyhow::Result<ExitCode> {
    let settings = config::load(config_file)?.settings;
    let store = open_read_only(&settings).await?;
    let journey = store.journey(coi).await;
    store.close().await;
    match journey? {
        Some(j) if json => println!("{}", serde_json::to_string(&j)?),
        Some(j) => print_journey(&j),
        None => {
            eprintln!("no therapy with COI {coi}");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn or_dash(s: Option<&str>) -> &str {
    s.filter(|s| !s.is_empty()).unwrap_or("-")
}

/// `partner/message id`, as a line names an event's source.
fn source(e: &JourneyEvent) -> String {
    format!("{}/{}", e.partner, or_dash(e.message_id.as_deref()))
}

fn print_journey(j: &Journey) {
    println!("therapy {}", j.coi);
    println!("  product:      {}", or_dash(j.product.as_deref()));
    println!("  order:        {}", or_dash(j.order_id.as_deref()));
    println!("  state:        {}", j.state);
    println!(
        "  registered:   {} by message row {}",
        j.registered_at, j.registered_by_message
    );
    println!("  demographics: {}", j.demographics);

    if j.identifiers.is_empty() {
        println!("identifiers: none");
    } else {
        println!("identifiers ({}):", j.identifiers.len());
        println!(
            "  {:<12} {:<16} {:<24} {:<24} {:<24} LINKED",
            "KIND", "AUTHORITY", "VALUE", "ASSERTED BY", "MESSAGE"
        );
        for i in &j.identifiers {
            // An MRN is kept only as a keyed hash: its value is not shown.
            let value = if i.value.is_empty() { "…" } else { &i.value };
            println!(
                "  {:<12} {:<16} {:<24} {:<24} {:<24} {}",
                i.kind,
                or_dash(Some(&i.authority)),
                value,
                i.asserted_by,
                format!(
                    "{} (row {})",
                    or_dash(i.message_id.as_deref()),
                    i.message_row
                ),
                short_time(&i.linked_at),
            );
        }
    }

    if j.events.is_empty() {
        println!("events: none");
    } else {
        println!("events ({}):", j.events.len());
        println!(
            "  {:<19}  {:<28} {:<32} {:>7}  EVENT ID",
            "OCCURRED", "KIND", "PARTNER/MESSAGE ID", "MSG ROW"
        );
        for e in &j.events {
            println!(
                "  {:<19}  {:<28} {:<32} {:>7}  {}",
                short_time(&e.occurred_at),
                e.kind,
                source(e),
                e.message_row,
                e.event_id
            );
        }
    }

    if j.custody.is_empty() {
        println!("custody handoffs: none");
    } else {
        println!("custody handoffs ({}):", j.custody.len());
        for e in &j.custody {
            let d = &e.event["data"];
            let mut line = format!(
                "  {:<19}  {} -> {}",
                short_time(&e.occurred_at),
                d["from"].as_str().unwrap_or("?"),
                d["to"].as_str().unwrap_or("?"),
            );
            for (label, key) in [
                ("at", "location"),
                ("tracking", "tracking_number"),
                ("signed by", "signed_by"),
            ] {
                if let Some(v) = d[key].as_str() {
                    line.push_str(&format!("  {label} {v}"));
                }
            }
            println!("{line}  ({}, event {})", source(e), e.event_id);
        }
    }

    if j.holds.is_empty() {
        println!("holds: none");
    } else {
        println!("holds ({}):", j.holds.len());
        for h in &j.holds {
            println!(
                "  {:>6}  {:<11}  {:<19}  {:<26} {}",
                h.id,
                h.state,
                h.reason,
                h.kind,
                truncate(&h.detail, TEXT_WIDTH)
            );
        }
    }

    if j.alerts.is_empty() {
        println!("alerts: none");
    } else {
        println!("alerts ({}):", j.alerts.len());
        for a in &j.alerts {
            let d = &a.event["data"];
            println!(
                "  {:<19}  {:<24} {}",
                short_time(&a.occurred_at),
                d["alert"].as_str().unwrap_or("?"),
                truncate(d["message"].as_str().unwrap_or_default(), TEXT_WIDTH)
            );
        }
    }
}
