//! `sluice run`: publishes a run request, and with `--wait` follows the run with a progress bar
//! until it ends.

use crate::settings::Settings;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sluice_coordinator::runs::{self, status, RunSummary};
use sluice_coordinator::trigger::TriggerError;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What to run and how to report it.
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

/// Requests a run; returns the process exit code.
pub async fn run(settings: &Settings, request: &RunRequest<'_>) -> anyhow::Result<i32> {
    let client = settings.control_for_writes().await?;
    let requested_by = std::env::var("USER").unwrap_or_else(|_| "cli".to_string());
    let run_id = sluice_coordinator::trigger::request(
        &client,
        &settings.amqp_url,
        &settings.topology(),
        &sluice_coordinator::trigger::Trigger {
            workspace: request.workspace,
            import: request.import,
            dry_run: request.dry_run,
            requested_by: &requested_by,
            idempotency_key: request.idempotency_key,
            replay: request.replay,
        },
    )
    .await
    .map_err(|e| match e {
        TriggerError::Draft { .. } => anyhow::anyhow!(
            "{e}: `sluice run {} --workspace {} --dry-run --wait`",
            request.import,
            request.workspace
        ),
        TriggerError::Stopped { .. } => anyhow::anyhow!(
            "{e}: `sluice imports resume {} --workspace {}`",
            request.import,
            request.workspace
        ),
        TriggerError::Broker(_) => anyhow::anyhow!("{e}; start it with deploy/services.sh"),
        other => anyhow::anyhow!("{other}"),
    })?;
    if !request.wait {
        if request.json {
            println!(
                "{}",
                serde_json::json!({ "run_id": run_id, "status": status::QUEUED })
            );
        } else {
            println!(
                "run {run_id} requested; follow it with `sluice run ... --wait` or the run listing"
            );
        }
        return Ok(0);
    }
    let summary = follow(&client, run_id, !request.json).await?;
    report(&summary, request.json)
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
pub async fn follow(
    client: &tokio_postgres::Client,
    run_id: Uuid,
    show: bool,
) -> anyhow::Result<RunSummary> {
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
        match runs::summary(client, run_id).await? {
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
