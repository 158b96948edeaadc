//! `sluice run` (and the replay of `imports replay`): requests a run and, with `--wait`,
//! follows it to its end; `sluice runs list|show|watch|cancel|errors`: a workspace's runs,
//! one run, following one that is under way, cancelling it, and its rejected rows.

use super::backend::{Access, Backend};
use super::follow::{follow, Followed, OnInterrupt};
use super::output::{emit, outln, table, write_table, Output};
use crate::settings::Settings;
use sluice_coordinator::api::runs::RunFilter;
use sluice_coordinator::lineage::LineageFilter;
use sluice_coordinator::runs::{status, RunSummary};
use std::io::Write;
use std::path::PathBuf;
use uuid::Uuid;

/// `sluice run`'s arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The import's name.
    import: String,
    /// A spec file: the run acts in its `workspace:` (unless --workspace is given).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Go through every stage but write nothing; report what would change.
    #[arg(long)]
    dry_run: bool,
    /// Follow the run until it ends; exit 0 if it succeeded.
    #[arg(long)]
    wait: bool,
    /// With --wait, Ctrl-C cancels the run without asking (for scripts).
    #[arg(long)]
    cancel_on_interrupt: bool,
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
    /// The same key for the same import always names the same run: a repeated trigger
    /// returns that run instead of starting another.
    #[arg(long)]
    idempotency_key: Option<String>,
}

/// `sluice runs` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RunsCommand {
    /// List the workspace's runs, newest first.
    List {
        /// Only this import's runs.
        #[arg(long)]
        import: Option<String>,
        /// Only runs in this status (queued, planning, running, succeeded,
        /// partially_succeeded, failed, cancelled, skipped).
        #[arg(long)]
        status: Option<String>,
        /// How many runs to list (1 to 200).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Show one run: its status, counts, rejected rows by reason and any advice.
    Show {
        /// The run's id, as `sluice run` prints it.
        run: String,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Follow a run until it ends, with the progress bar of `run --wait`.
    Watch {
        /// The run's id.
        run: String,
        /// Ctrl-C cancels the run without asking (for scripts).
        #[arg(long)]
        cancel_on_interrupt: bool,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Cancel a queued or running run; its remaining chunks are discarded and the import's
    /// schedule goes on.
    Cancel {
        /// The run's id.
        run: String,
    },
    /// Print a run's rejected rows with their reason codes.
    Errors {
        /// The run's id, as `sluice run` prints it.
        run: String,
        /// Write every rejected row as CSV: the source row's mapped columns, the reason last.
        #[arg(long)]
        csv: bool,
        /// Rows to print (without --csv).
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// What happened to each row of a run: the identity and profile it matched and its
    /// outcome, with the counts by outcome (kept for the import's lineage_retention).
    Lineage {
        /// The run's id, as `sluice run` prints it.
        run: String,
        /// Only the row with this source key.
        #[arg(long)]
        key: Option<String>,
        /// Only the rows of this profile id.
        #[arg(long)]
        profile: Option<i64>,
        /// Only rows with this outcome (created, updated, unchanged, superseded, skipped,
        /// rejected, inserted, duplicate, deleted, not_found).
        #[arg(long)]
        outcome: Option<String>,
        /// Rows to print (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
}

/// A run to request and how to report it.
pub struct RunRequest<'a> {
    pub import: &'a str,
    pub dry_run: bool,
    pub wait: bool,
    pub output: Output,
    pub idempotency_key: Option<&'a str>,
    /// Read this window of rows again without moving the watermark.
    pub replay: Option<sluice_proto::ReplayWindow>,
    pub on_interrupt: OnInterrupt,
}

/// A spec file's workspace, for `run -f`.
fn spec_workspace(file: &std::path::Path) -> anyhow::Result<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        workspace: String,
    }
    let shown = file.display();
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("reading {shown}: {e}"))?;
    let head: Head = serde_norway::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{shown}: no workspace in the spec: {e}"))?;
    Ok(head.workspace)
}

/// `sluice run`.
pub async fn run(settings: &Settings, args: RunArgs) -> anyhow::Result<i32> {
    let mut settings = settings.clone();
    if let (None, Some(file)) = (&settings.workspace, &args.file) {
        settings.workspace = Some(spec_workspace(file)?);
    }
    let backend = Backend::open(&settings, Access::WRITE).await?;
    request(
        &backend,
        &RunRequest {
            import: &args.import,
            dry_run: args.dry_run,
            wait: args.wait,
            output: args.output,
            idempotency_key: args.idempotency_key.as_deref(),
            replay: None,
            on_interrupt: interrupt(args.cancel_on_interrupt),
        },
    )
    .await
}

fn interrupt(cancel: bool) -> OnInterrupt {
    if cancel {
        OnInterrupt::Cancel
    } else {
        OnInterrupt::Ask
    }
}

/// Requests a run and reports it; returns the process exit code.
pub async fn request(backend: &Backend, request: &RunRequest<'_>) -> anyhow::Result<i32> {
    let accepted = backend
        .trigger(
            request.import,
            request.dry_run,
            request.idempotency_key,
            request.replay,
        )
        .await
        .map_err(|e| {
            with_remedy(
                e,
                request,
                backend.workspace(),
                matches!(backend, Backend::Host(_)),
            )
        })?;
    if !request.wait {
        emit(request.output, &accepted, |out| {
            let what = if request.dry_run { "dry run" } else { "run" };
            writeln!(
                out,
                "{what} {} requested; follow it with `sluice runs watch {}`",
                accepted.run_id, accepted.run_id
            )
        })?;
        return Ok(0);
    }
    finish(
        follow(
            backend,
            accepted.run_id,
            !request.output.json(),
            request.on_interrupt,
        )
        .await?,
        request.output,
    )
}

/// Reports how following ended; the exit code says whether the run succeeded.
fn finish(followed: Followed, output: Output) -> anyhow::Result<i32> {
    match followed {
        Followed::Ended(summary) => report(&summary, output),
        Followed::Detached(run_id) => {
            eprintln!("run {run_id} goes on; follow it with `sluice runs watch {run_id}`, cancel it with `sluice runs cancel {run_id}`");
            Ok(130)
        }
    }
}

/// A refused run request with the command that removes the cause. The causes are told apart
/// by the service's own wording (`TriggerError`), the same on the host and over the API; the
/// broker's remedy applies only on the host, whose broker it is.
fn with_remedy(
    e: anyhow::Error,
    request: &RunRequest<'_>,
    workspace: &str,
    on_host: bool,
) -> anyhow::Error {
    let message = e.to_string();
    let import = request.import;
    if message.contains(" is a draft: ") {
        anyhow::anyhow!("{message}: `sluice run {import} --workspace {workspace} --dry-run --wait`")
    } else if message.contains(" is stopped; ") {
        anyhow::anyhow!("{message}: `sluice imports resume {import} --workspace {workspace}`")
    } else if on_host && message.contains("could not reach RabbitMQ") {
        anyhow::anyhow!("{message}; start it with deploy/services.sh")
    } else {
        e
    }
}

/// Prints a finished run; the exit code says whether it succeeded (a dry run that left its
/// draft import a draft did not).
pub fn report(summary: &RunSummary, output: Output) -> anyhow::Result<i32> {
    emit(output, summary, |out| {
        super::summary::write_summary(out, summary)
    })?;
    Ok(match summary.status.as_str() {
        _ if summary.promoted == Some(false) => 1,
        status::SUCCEEDED | status::PARTIALLY_SUCCEEDED => 0,
        _ => 1,
    })
}

fn run_id(run: &str) -> anyhow::Result<Uuid> {
    run.parse()
        .map_err(|_| anyhow::anyhow!("{run:?} is not a run id (a UUID, as `sluice run` prints)"))
}

/// Runs one `sluice runs` command.
pub async fn execute(settings: &Settings, command: RunsCommand) -> anyhow::Result<i32> {
    match command {
        RunsCommand::List {
            import,
            status,
            limit,
            output,
        } => {
            let backend = Backend::open(settings, Access::READ).await?;
            let filter = RunFilter {
                import,
                status,
                per_page: Some(limit.clamp(1, 200)),
                ..RunFilter::default()
            };
            let page = backend.runs(&filter).await?;
            emit(output, &page, |out| {
                let mut t = table([
                    "RUN", "IMPORT", "STATUS", "DRY RUN", "BY", "CREATED", "ENDED",
                ]);
                for r in &page.runs {
                    t.add_row([
                        r.run_id.to_string(),
                        r.import.clone(),
                        r.status.clone(),
                        if r.dry_run { "yes" } else { "" }.to_string(),
                        r.created_by.clone(),
                        r.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        r.finished_at
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                            .unwrap_or_default(),
                    ]);
                }
                if page.runs.is_empty() {
                    return writeln!(out, "no runs in workspace {}", backend.workspace());
                }
                write_table(out, &t)?;
                if page.total > page.runs.len() as i64 {
                    writeln!(
                        out,
                        "({} of {} runs; --limit shows more)",
                        page.runs.len(),
                        page.total
                    )?;
                }
                Ok(())
            })?;
            Ok(0)
        }
        RunsCommand::Show { run, output } => {
            let run_id = run_id(&run)?;
            let backend = Backend::for_run(settings, run_id).await?;
            let summary = backend
                .run(run_id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("run {run_id} not found"))?;
            emit(output, &summary, |out| {
                super::summary::write_summary(out, &summary)
            })?;
            Ok(0)
        }
        RunsCommand::Watch {
            run,
            cancel_on_interrupt,
            output,
        } => {
            let run_id = run_id(&run)?;
            let backend = Backend::for_run(settings, run_id).await?;
            let followed = follow(
                &backend,
                run_id,
                !output.json(),
                interrupt(cancel_on_interrupt),
            )
            .await?;
            finish(followed, output)
        }
        RunsCommand::Cancel { run } => {
            let run_id = run_id(&run)?;
            let backend = Backend::for_run(settings, run_id).await?;
            let summary = backend.cancel_run(run_id).await?;
            outln!(
                "run {run_id} of {}/{} {}; its remaining chunks are discarded",
                summary.workspace,
                summary.import,
                summary.status
            );
            Ok(0)
        }
        RunsCommand::Errors {
            run,
            csv,
            limit,
            output,
        } => errors(settings, &run, csv, limit, output).await,
        RunsCommand::Lineage {
            run,
            key,
            profile,
            outcome,
            limit,
            output,
        } => {
            let filter = LineageFilter {
                key,
                profile,
                outcome,
                page: Some(1),
                per_page: Some(limit),
            };
            lineage(settings, &run, &filter, output).await
        }
    }
}

/// `sluice runs lineage`.
async fn lineage(
    settings: &Settings,
    run: &str,
    filter: &LineageFilter,
    output: Output,
) -> anyhow::Result<i32> {
    let run_id = run_id(run)?;
    let backend = Backend::for_run(settings, run_id).await?;
    let found = backend.run_lineage(run_id, filter).await?;
    emit(output, &found, |out| {
        if found.counts.is_empty() {
            return writeln!(
                out,
                "run {run_id} has no lineage for these rows (none matched, the import keeps none, or its lineage_retention has passed)"
            );
        }
        let counts: Vec<String> = found
            .counts
            .iter()
            .map(|(outcome, n)| format!("{outcome} {n}"))
            .collect();
        writeln!(out, "rows by outcome: {}", counts.join(", "))?;
        let mut t = table([
            "CHUNK", "ROW", "OUTCOME", "REASON", "IDENTITY", "PROFILE", "STALE",
        ]);
        for e in &found.rows {
            t.add_row([
                e.chunk.to_string(),
                e.row_key.clone(),
                e.outcome.clone(),
                e.reason.clone().unwrap_or_else(|| "-".into()),
                match (&e.identity_kind, &e.identity_value) {
                    (Some(k), Some(v)) => format!("{k} {v}"),
                    _ => "-".into(),
                },
                e.profile_id.map_or("-".into(), |p| p.to_string()),
                e.properties_stale.to_string(),
            ]);
        }
        write_table(out, &t)
    })?;
    Ok(0)
}

/// A rejected value as a table shows it: quoted, or NULL.
pub fn shown_value(value: &Option<String>) -> String {
    value
        .as_deref()
        .map_or("NULL".to_string(), |v| format!("{v:?}"))
}

/// `sluice runs errors`.
async fn errors(
    settings: &Settings,
    run: &str,
    csv: bool,
    limit: i64,
    output: Output,
) -> anyhow::Result<i32> {
    let run_id = run_id(run)?;
    let backend = Backend::for_run(settings, run_id).await?;
    if csv {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        out.write_all(&backend.run_errors_csv(run_id).await?)?;
        out.flush()?;
        return Ok(0);
    }
    let limit = limit.clamp(1, 1000);
    let page = backend.run_errors(run_id, limit).await?;
    emit(output, &page, |out| {
        if page.is_empty() {
            return writeln!(out, "run {run_id} rejected no rows");
        }
        let mut t = table(["CHUNK", "ROW", "REASON", "COLUMN", "VALUE", "MESSAGE"]);
        for e in &page {
            t.add_row([
                e.chunk.to_string(),
                e.row_key.clone(),
                e.reason.clone(),
                e.column.clone(),
                shown_value(&e.value),
                e.message.clone(),
            ]);
        }
        write_table(out, &t)?;
        if page.len() as i64 == limit {
            writeln!(
                out,
                "(first {limit} rows; `--limit` shows more, `--csv` writes them all)"
            )?;
        }
        Ok(())
    })?;
    Ok(0)
}
