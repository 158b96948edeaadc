//! `sluice imports …`: list and show imports, preview their source, and the lifecycle and
//! watermark operations, each recorded with who made it.

use super::backend::{Access, Backend};
use super::runs::{self, RunRequest};
use super::Output;
use crate::settings::Settings;
use chrono::{DateTime, Utc};
use sluice_coordinator::imports::ImportView;

/// `sluice imports` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ImportsCommand {
    /// List a workspace's imports with their state and next fire time.
    List {
        #[arg(long)]
        workspace: String,
    },
    /// Show an import: state, schedule, the next 5 fire times (UTC and local), last run and
    /// state changes.
    Show {
        import: String,
        #[arg(long)]
        workspace: String,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Print the source's schema and first rows, as the extractor reads them.
    Preview {
        import: String,
        #[arg(long)]
        workspace: String,
        #[arg(long, default_value_t = 10)]
        rows: usize,
    },
    /// Stop firing the import's schedule; an active run finishes.
    Pause {
        import: String,
        #[arg(long)]
        workspace: String,
    },
    /// Schedule a paused or stopped import again from now.
    Resume {
        import: String,
        #[arg(long)]
        workspace: String,
    },
    /// Stop the schedule and cancel an active run; its remaining chunks are discarded.
    Stop {
        import: String,
        #[arg(long)]
        workspace: String,
    },
    /// Delete an import with its schedule, watermark and run history; refused while a run
    /// is active. What it loaded stays in the stores.
    Delete {
        import: String,
        #[arg(long)]
        workspace: String,
    },
    /// Read the rows whose watermark is in [--from, --until) again, without moving the
    /// watermark (audited).
    Replay {
        import: String,
        #[arg(long)]
        workspace: String,
        /// ISO-8601 with an offset; inclusive.
        #[arg(long)]
        from: String,
        /// ISO-8601 with an offset; exclusive.
        #[arg(long)]
        until: String,
        /// Follow the run until it ends.
        #[arg(long)]
        wait: bool,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Reset the watermark: the next run reads every row (audited).
    Resync {
        import: String,
        #[arg(long)]
        workspace: String,
    },
    /// Move the watermark back: the next run reads every row from this time on (audited).
    Rewind {
        import: String,
        #[arg(long)]
        workspace: String,
        /// An ISO-8601 date-time with an offset, like 2026-11-01T00:00:00Z.
        #[arg(long)]
        to: String,
    },
}

/// An ISO-8601 instant given as `flag`.
fn instant(flag: &str, value: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            anyhow::anyhow!(
                "{flag} {value:?} is not an ISO-8601 date-time with an offset, like 2026-11-01T00:00:00Z"
            )
        })
}

/// Runs one `sluice imports` command.
pub async fn execute(settings: &Settings, command: ImportsCommand) -> anyhow::Result<i32> {
    use ImportsCommand as C;
    match command {
        C::List { workspace } => {
            let backend = Backend::open(settings, &workspace, Access::READ).await?;
            let imports = backend.imports().await?;
            if imports.is_empty() {
                println!(
                    "workspace {workspace:?} has no imports; declare some with `sluice apply -f spec.yaml`"
                );
            }
            for i in imports {
                let next = i.next_fire_at.map_or("-".to_string(), |t| {
                    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
                });
                println!("{}\t{}\t{}\tnext {next}", i.name, i.data_type, i.state);
            }
        }
        C::Show {
            import,
            workspace,
            output,
        } => {
            let backend = Backend::open(settings, &workspace, Access::READ).await?;
            let view = backend.import(&import).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string(&view)?),
                Output::Text => print_view(&view),
            }
        }
        C::Preview {
            import,
            workspace,
            rows,
        } => {
            let backend = Backend::open(settings, &workspace, Access::READ_SECRETS).await?;
            let preview = backend.preview(&import, rows).await?;
            print_preview(&preview);
        }
        C::Pause { import, workspace } => {
            let backend = Backend::open(settings, &workspace, Access::WRITE).await?;
            backend.set_paused(&import, true).await?;
            println!(
                "import {workspace}/{import} paused; an active run finishes, the schedule stops"
            );
        }
        C::Resume { import, workspace } => {
            let backend = Backend::open(settings, &workspace, Access::WRITE).await?;
            backend.set_paused(&import, false).await?;
            println!("import {workspace}/{import} resumed");
        }
        C::Stop { import, workspace } => {
            let backend = Backend::open(settings, &workspace, Access::WRITE).await?;
            match backend.stop(&import).await?.cancelled_run {
                None => println!("import {workspace}/{import} stopped; no run was active"),
                Some(run_id) => println!(
                    "import {workspace}/{import} stopped; run {run_id} cancelled, its remaining chunks are discarded"
                ),
            }
        }
        C::Delete { import, workspace } => {
            let backend = Backend::open(settings, &workspace, Access::WRITE).await?;
            let deleted = backend.delete_import(&import).await?;
            println!(
                "import {workspace}/{import} deleted with {} runs",
                deleted.runs
            );
        }
        C::Replay {
            import,
            workspace,
            from,
            until,
            wait,
            output,
        } => {
            let window = sluice_proto::ReplayWindow {
                from: instant("--from", &from)?,
                until: instant("--until", &until)?,
            };
            if window.until <= window.from {
                anyhow::bail!("--until must be after --from");
            }
            return runs::request(
                settings,
                &RunRequest {
                    workspace: &workspace,
                    import: &import,
                    dry_run: false,
                    wait,
                    json: matches!(output, Output::Json),
                    idempotency_key: None,
                    replay: Some(window),
                },
            )
            .await;
        }
        C::Resync { import, workspace } => {
            let backend = Backend::open(settings, &workspace, Access::WRITE).await?;
            let moved = backend.resync(&import).await?;
            println!(
                "import {workspace}/{import}: watermark reset from {}; the next run reads every row",
                moved.from.as_deref().unwrap_or("the start")
            );
        }
        C::Rewind {
            import,
            workspace,
            to,
        } => {
            let at = instant("--to", &to)?;
            let backend = Backend::open(settings, &workspace, Access::WRITE_SECRETS).await?;
            let moved = backend.rewind(&import, at).await?;
            match moved.from {
                None => println!(
                    "import {workspace}/{import} has no watermark yet; its next run reads every row"
                ),
                Some(from) => println!(
                    "import {workspace}/{import}: watermark moved back from {from} to {}; the next run reads every row from {to} on",
                    moved.to.as_deref().unwrap_or("the start")
                ),
            }
        }
    }
    Ok(0)
}

/// Prints one import for people.
fn print_view(view: &ImportView) {
    println!(
        "import {}/{} ({}): {}",
        view.workspace, view.name, view.data_type, view.state
    );
    match &view.schedule {
        Some(s) => println!("  schedule {s}"),
        None => println!("  no schedule: runs only when triggered"),
    }
    for t in &view.upcoming {
        println!("  fires at {}  ({})", t.utc, t.local);
    }
    if let Some(run) = &view.last_run {
        println!(
            "  last run {} {} at {}",
            run.run_id,
            run.status,
            run.created_at.format("%Y-%m-%dT%H:%M:%SZ")
        );
    }
    for t in &view.transitions {
        println!(
            "  {} {} -> {} by {}{}",
            t.at.format("%Y-%m-%dT%H:%M:%SZ"),
            t.from.as_deref().unwrap_or("-"),
            t.to,
            t.actor,
            t.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
    }
}

/// Prints a preview: the schema, then the rows as a table.
fn print_preview(preview: &sluice_coordinator::api::steering::Preview) {
    println!("schema:");
    for column in &preview.columns {
        println!("  {}: {}", column.name, column.data_type);
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::ASCII_FULL_CONDENSED);
    table.set_header(preview.columns.iter().map(|c| c.name.as_str()));
    for row in &preview.rows {
        table.add_row(preview.columns.iter().map(|c| match &row[&c.name] {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }));
    }
    println!("{table}");
}
