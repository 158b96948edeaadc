//! `sluice imports …`: list and show imports, preview their source, and the lifecycle and
//! watermark operations, each recorded with who made it.

use super::backend::{Access, Backend};
use super::follow::OnInterrupt;
use super::output::{emit, outln, table, write_table, Output};
use super::runs::{self, RunRequest};
use crate::settings::Settings;
use chrono::{DateTime, Utc};
use sluice_coordinator::imports::ImportView;
use std::io::Write;

/// `sluice imports` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ImportsCommand {
    /// List the workspace's imports with their state, last run and next fire time.
    List {
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Show an import: state, watermark, last run and its counts, mapping, schedule, the
    /// next 5 fire times (UTC and local) and state changes.
    Show {
        import: String,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Print the source's schema and first rows, as the extractor reads them.
    Preview {
        import: String,
        #[arg(long, default_value_t = 10)]
        rows: usize,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Stop firing the import's schedule; an active run finishes.
    Pause { import: String },
    /// Schedule a paused or stopped import again from now.
    Resume { import: String },
    /// Stop the schedule and cancel an active run; its remaining chunks are discarded.
    Stop { import: String },
    /// Delete an import with its schedule, watermark and run history; refused while a run
    /// is active. What it loaded stays in the stores.
    Delete { import: String },
    /// Read the rows whose watermark is in [--from, --until) again, without moving the
    /// watermark (audited).
    Replay {
        import: String,
        /// ISO-8601 with an offset; inclusive.
        #[arg(long)]
        from: String,
        /// ISO-8601 with an offset; exclusive.
        #[arg(long)]
        until: String,
        /// Follow the run until it ends.
        #[arg(long)]
        wait: bool,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Reset the watermark: the next run reads every row (audited).
    Resync { import: String },
    /// Move the watermark back: the next run reads every row from this time on (audited).
    Rewind {
        import: String,
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
    let access = match &command {
        C::List { .. } | C::Show { .. } => Access::READ,
        C::Preview { .. } => Access::READ_SECRETS,
        C::Rewind { .. } => Access::WRITE_SECRETS,
        _ => Access::WRITE,
    };
    let backend = Backend::open(settings, access).await?;
    let workspace = backend.workspace().to_string();
    match command {
        C::List { output } => {
            let imports = backend.imports().await?;
            emit(output, &imports, |out| {
                if imports.is_empty() {
                    return writeln!(
                        out,
                        "workspace {workspace:?} has no imports; declare some with `sluice apply -f spec.yaml`"
                    );
                }
                let mut t = table(["NAME", "TYPE", "STATE", "LAST RUN", "NEXT FIRE (UTC)"]);
                for i in &imports {
                    t.add_row([
                        i.name.clone(),
                        i.data_type.clone(),
                        i.state.clone(),
                        i.last_run_status.clone().unwrap_or_else(|| "-".to_string()),
                        i.next_fire_at.map_or("-".to_string(), |t| {
                            t.format("%Y-%m-%d %H:%M:%S").to_string()
                        }),
                    ]);
                }
                write_table(out, &t)
            })?;
        }
        C::Show { import, output } => {
            let view = backend.import(&import).await?;
            emit(output, &view, |out| write_view(out, &view))?;
        }
        C::Preview {
            import,
            rows,
            output,
        } => {
            let preview = backend.preview(&import, rows).await?;
            emit(output, &preview, |out| write_preview(out, &preview))?;
        }
        C::Pause { import } => {
            backend.set_paused(&import, true).await?;
            outln!("import {workspace}/{import} paused; an active run finishes, the schedule stops");
        }
        C::Resume { import } => {
            backend.set_paused(&import, false).await?;
            outln!("import {workspace}/{import} resumed");
        }
        C::Stop { import } => match backend.stop(&import).await?.cancelled_run {
            None => outln!("import {workspace}/{import} stopped; no run was active"),
            Some(run_id) => outln!(
                "import {workspace}/{import} stopped; run {run_id} cancelled, its remaining chunks are discarded"
            ),
        },
        C::Delete { import } => {
            let deleted = backend.delete_import(&import).await?;
            outln!(
                "import {workspace}/{import} deleted with {} runs",
                deleted.runs
            );
        }
        C::Replay {
            import,
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
                &backend,
                &RunRequest {
                    import: &import,
                    dry_run: false,
                    wait,
                    output,
                    idempotency_key: None,
                    replay: Some(window),
                    on_interrupt: OnInterrupt::Ask,
                },
            )
            .await;
        }
        C::Resync { import } => {
            let moved = backend.resync(&import).await?;
            outln!(
                "import {workspace}/{import}: watermark reset from {}; the next run reads every row",
                moved.from.as_deref().unwrap_or("the start")
            );
        }
        C::Rewind { import, to } => {
            let at = instant("--to", &to)?;
            let moved = backend.rewind(&import, at).await?;
            match moved.from {
                None => outln!(
                    "import {workspace}/{import} has no watermark yet; its next run reads every row"
                ),
                Some(from) => outln!(
                    "import {workspace}/{import}: watermark moved back from {from} to {}; the next run reads every row from {to} on",
                    moved.to.as_deref().unwrap_or("the start")
                ),
            }
        }
    }
    Ok(0)
}

/// Writes one import for people.
fn write_view(out: &mut dyn Write, view: &ImportView) -> std::io::Result<()> {
    writeln!(
        out,
        "import {}/{} ({}): {}",
        view.workspace, view.name, view.data_type, view.state
    )?;
    match (&view.watermark, view.watermark_updated_at) {
        (Some(w), Some(at)) => writeln!(
            out,
            "  watermark {w}, moved {}",
            at.format("%Y-%m-%d %H:%M:%S UTC")
        )?,
        (Some(w), None) => writeln!(out, "  watermark {w}")?,
        _ => writeln!(out, "  no watermark yet: the next run reads every row")?,
    }
    if let Some(run) = &view.last_run {
        writeln!(
            out,
            "  last {} {} {} at {}: {} rows read, {} rejected, {} loaded{}",
            if run.dry_run { "dry run" } else { "run" },
            run.run_id,
            run.status,
            run.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
            run.rows_read,
            run.rows_rejected,
            run.rows_loaded,
            run.duration_ms
                .map(|ms| format!(" in {:.1}s", ms as f64 / 1000.0))
                .unwrap_or_default()
        )?;
    } else {
        writeln!(out, "  no runs yet")?;
    }
    write_mapping(out, &view.spec)?;
    match &view.schedule {
        Some(s) => writeln!(out, "  schedule {s}")?,
        None => writeln!(out, "  no schedule: runs only when triggered")?,
    }
    for t in &view.upcoming {
        writeln!(out, "  fires at {}  ({})", t.utc, t.local)?;
    }
    for t in &view.transitions {
        writeln!(
            out,
            "  {} {} -> {} by {}{}",
            t.at.format("%Y-%m-%dT%H:%M:%SZ"),
            t.from.as_deref().unwrap_or("-"),
            t.to,
            t.actor,
            t.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )?;
    }
    Ok(())
}

/// The mapping as declared: source, key and watermark, identities, properties.
fn write_mapping(out: &mut dyn Write, spec: &serde_json::Value) -> std::io::Result<()> {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if let Some(source) = spec["source"].as_object() {
        for (kind, what) in source {
            writeln!(out, "  source {kind} {}", text(what))?;
        }
    }
    writeln!(
        out,
        "  key {}, watermark {}",
        text(&spec["key"]),
        text(&spec["watermark"])
    )?;
    if let Some(identity) = spec["identity"].as_object() {
        let fields: Vec<String> = identity
            .iter()
            .filter(|(_, c)| !c.is_null())
            .map(|(field, column)| format!("{field} <- {}", text(column)))
            .collect();
        writeln!(out, "  identity {}", fields.join(", "))?;
    }
    if let Some(properties) = spec["properties"].as_object() {
        for (name, p) in properties {
            let format = p["format"]
                .as_str()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default();
            writeln!(
                out,
                "  property {name} <- {} as {}{format}",
                text(&p["column"]),
                text(&p["type"])
            )?;
        }
    }
    if let Some(payload) = spec["payload"].as_str() {
        writeln!(out, "  payload <- {payload}")?;
    }
    Ok(())
}

/// Writes a preview: the schema, the rows as a table, and any date-format advice.
fn write_preview(
    out: &mut dyn Write,
    preview: &sluice_coordinator::api::steering::Preview,
) -> std::io::Result<()> {
    writeln!(out, "schema:")?;
    for column in &preview.columns {
        writeln!(out, "  {}: {}", column.name, column.data_type)?;
    }
    let mut t = table(preview.columns.iter().map(|c| c.name.as_str()));
    for row in &preview.rows {
        t.add_row(preview.columns.iter().map(|c| match &row[&c.name] {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }));
    }
    write_table(out, &t)?;
    for hint in &preview.format_hints {
        writeln!(out, "hint: {}", hint.message)?;
    }
    Ok(())
}
