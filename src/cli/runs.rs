//! `sluice run` (and the replay of `imports replay`): requests a run and, with `--wait`,
//! follows it with a progress bar until it ends; `sluice runs errors`: a run's rejected rows.

use super::backend::{Access, Backend};
use super::Output;
use crate::settings::Settings;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sluice_coordinator::runs::{status, RunSummary};
use std::io::Write;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// `sluice run`'s arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The import's name.
    import: String,
    #[arg(long, default_value = "demo")]
    workspace: String,
    /// Go through every stage but write nothing; report what would change.
    #[arg(long)]
    dry_run: bool,
    /// Follow the run until it ends; exit 0 if it succeeded.
    #[arg(long)]
    wait: bool,
    /// Print the result as one JSON object.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
    /// The same key for the same import always names the same run: a repeated trigger
    /// returns that run instead of starting another.
    #[arg(long)]
    idempotency_key: Option<String>,
}

/// `sluice runs` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RunsCommand {
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
    },
}

/// A run to request and how to report it.
pub struct RunRequest<'a> {
    pub workspace: &'a str,
    pub import: &'a str,
    pub dry_run: bool,
    pub wait: bool,
    pub json: bool,
    pub idempotency_key: Option<&'a str>,
    /// Read this window of rows again without moving the watermark.
    pub replay: Option<sluice_proto::ReplayWindow>,
}

/// `sluice run`.
pub async fn run(settings: &Settings, args: RunArgs) -> anyhow::Result<i32> {
    request(
        settings,
        &RunRequest {
            workspace: &args.workspace,
            import: &args.import,
            dry_run: args.dry_run,
            wait: args.wait,
            json: matches!(args.output, Output::Json),
            idempotency_key: args.idempotency_key.as_deref(),
            replay: None,
        },
    )
    .await
}

/// Requests a run and reports it; returns the process exit code.
pub async fn request(settings: &Settings, request: &RunRequest<'_>) -> anyhow::Result<i32> {
    let backend = Backend::open(settings, request.workspace, Access::WRITE).await?;
    let accepted = backend
        .trigger(
            request.import,
            request.dry_run,
            request.idempotency_key,
            request.replay,
        )
        .await
        .map_err(|e| with_remedy(e, request, matches!(backend, Backend::Host(_))))?;
    if !request.wait {
        if request.json {
            println!("{}", serde_json::to_string(&accepted)?);
        } else {
            println!(
                "run {} requested; follow it with `sluice run ... --wait` or the run listing",
                accepted.run_id
            );
        }
        return Ok(0);
    }
    let summary = follow(&backend, accepted.run_id, !request.json).await?;
    report(&summary, request.json)
}

/// A refused run request with the command that removes the cause. The causes are told apart
/// by the service's own wording (`TriggerError`), the same on the host and over the API; the
/// broker's remedy applies only on the host, whose broker it is.
fn with_remedy(e: anyhow::Error, request: &RunRequest<'_>, on_host: bool) -> anyhow::Error {
    let message = e.to_string();
    let (import, workspace) = (request.import, request.workspace);
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

/// Prints a finished run (as JSON or for people); the exit code says whether it succeeded.
pub fn report(summary: &RunSummary, json: bool) -> anyhow::Result<i32> {
    if json {
        println!("{}", serde_json::to_string(summary)?);
    } else {
        print_summary(summary);
    }
    Ok(match summary.status.as_str() {
        status::SUCCEEDED | status::PARTIALLY_SUCCEEDED => 0,
        _ => 1,
    })
}

/// Polls the run until it ends, drawing chunks and rows on a progress bar.
async fn follow(backend: &Backend, run_id: Uuid, show: bool) -> anyhow::Result<RunSummary> {
    let bar = ProgressBar::new(0);
    if !show {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} chunks  {msg}",
        )
        .expect("valid template"),
    );
    let started = Instant::now();
    let mut warned = false;
    loop {
        match backend.run(run_id).await? {
            Some(summary) => {
                bar.set_length(summary.chunks.max(0) as u64);
                bar.set_position(summary.chunks_loaded.max(0) as u64);
                bar.set_message(format!(
                    "{} — {} rows read",
                    summary.status, summary.rows_read
                ));
                if status::is_final(&summary.status) {
                    bar.finish_and_clear();
                    return Ok(summary);
                }
            }
            None if !warned && started.elapsed() > Duration::from_secs(10) => {
                bar.println("waiting for a coordinator to pick up the run (is `sluice coordinator` or `sluice all` running?)");
                warned = true;
            }
            None => {}
        }
        bar.tick();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `sluice runs errors`.
pub async fn execute(settings: &Settings, command: RunsCommand) -> anyhow::Result<i32> {
    let RunsCommand::Errors { run, csv, limit } = command;
    let run_id: Uuid = run
        .parse()
        .map_err(|_| anyhow::anyhow!("{run:?} is not a run id (a UUID, as `sluice run` prints)"))?;
    let backend = Backend::for_run(settings, run_id).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if csv {
        out.write_all(&backend.run_errors_csv(run_id).await?)?;
        out.flush()?;
        return Ok(0);
    }
    let limit = limit.clamp(1, 1000);
    let page = backend.run_errors(run_id, limit).await?;
    if page.is_empty() {
        writeln!(out, "run {run_id} rejected no rows")?;
    }
    for e in &page {
        writeln!(
            out,
            "chunk {} row {} [{}] {}: {} (value {})",
            e.chunk,
            e.row_key,
            e.reason,
            e.column,
            e.message,
            e.value
                .as_deref()
                .map_or("NULL".to_string(), |v| format!("{v:?}"))
        )?;
    }
    if page.len() as i64 == limit {
        writeln!(
            out,
            "(first {limit} rows; `--limit` shows more, `--csv` writes them all)"
        )?;
    }
    out.flush()?;
    Ok(0)
}
/// Prints a run's outcome for people.
pub fn print_summary(s: &RunSummary) {
    println!(
        "run {} of {}/{}: {}",
        s.run_id, s.workspace, s.import, s.status
    );
    println!(
        "  rows read {}, rejected {}, loaded {}, skipped {}; profiles created {}, updated {}, unchanged {}; stale values {}; ambiguous identities {}, conflicting {}",
        s.rows_read,
        s.rows_rejected,
        s.rows_loaded,
        s.rows_skipped,
        s.profiles_created,
        s.profiles_updated,
        s.profiles_unchanged,
        s.properties_stale,
        s.identities_ambiguous,
        s.identities_conflicting
    );
    if s.events_inserted + s.events_duplicate > 0 {
        println!(
            "  events inserted {}, duplicates skipped {}, stamped with the run's start {}",
            s.events_inserted, s.events_duplicate, s.events_time_imputed
        );
    }
    if s.profiles_removed_from_source > 0 {
        println!(
            "  profiles whose rows left the source (properties unset) {}",
            s.profiles_removed_from_source
        );
    }
    if s.profiles_deleted + s.deletes_not_found > 0 {
        println!(
            "  profiles deleted {}, not found {}",
            s.profiles_deleted, s.deletes_not_found
        );
    }
    for (reason, rows) in &s.rejected_by_reason {
        println!("    rejected {reason}: {rows}");
    }
    println!(
        "  {} chunks in {:.1}s; {} rows stamped in the future held back",
        s.chunks,
        s.duration_ms.unwrap_or(0) as f64 / 1000.0,
        s.rows_held_back_future
    );
    if s.rows_without_watermark > 0 {
        println!(
            "  {} source rows have no watermark (NULL or infinite) and are read by no run: give them one, or coalesce it in a query source",
            s.rows_without_watermark
        );
    }
    if let Some(error) = &s.error {
        println!("  error: {error}");
    }
    for row in &s.sample {
        println!(
            "    sample row {}: {} via {} {} -> {}",
            row.row_key,
            row.outcome,
            row.identity_kind.as_deref().unwrap_or("-"),
            row.identity_value.as_deref().unwrap_or("-"),
            row.properties
        );
    }
    if s.rows_rejected + s.rows_without_watermark > 0 {
        println!(
            "  rejected rows: `sluice runs errors {}` (add --csv for the failure report)",
            s.run_id
        );
    }
}
