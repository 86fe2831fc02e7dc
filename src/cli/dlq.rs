//! `cgthub dlq`: dead letters and why.

use std::path::Path;
use std::process::ExitCode;

use super::DlqAction;

pub async fn run(config_file: Option<&Path>, action: DlqAction) -> anyhow::Result<ExitCode> {
    let store = super::open_store(config_file).await?;
    let code = match action {
        DlqAction::List { limit } => {
            let rows = store.dead_letters(limit).await?;
            for d in &rows {
                println!(
                    "{:>6}  {}  {:<8} {:<9} {:<28} msg={:<6} {}",
                    d.id, d.created_at, d.stage, d.class, d.code, d.message_row, d.reason
                );
            }
            eprintln!("{} dead letter(s)", rows.len());
            ExitCode::SUCCESS
        }
        DlqAction::Show { id } => match store.dead_letter(id).await? {
            Some((d, m)) => {
                println!("dead letter {}", d.id);
                println!("  created:   {}", d.created_at);
                println!("  stage:     {} ({})", d.stage, d.class);
                println!("  code:      {}", d.code);
                println!("  reason:    {}", d.reason);
                if let Some(e) = &d.event_id {
                    println!("  event:     {e} route={:?} sink={:?}", d.route, d.sink);
                }
                println!("  attempts:  {}", d.attempts);
                println!("message {}", m.id);
                println!(
                    "  connector: {}  partner: {}  id: {}",
                    m.connector,
                    m.partner,
                    m.message_id.as_deref().unwrap_or("-")
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
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("no dead letter {id}");
                ExitCode::FAILURE
            }
        },
    };
    store.close().await;
    Ok(code)
}
