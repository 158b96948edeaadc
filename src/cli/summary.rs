//! A run's outcome for people: what it did (or, for a dry run, would do), the rejected rows by
//! reason, the date-format advice and what happened to a draft import, and where to look next.

use sluice_coordinator::runs::RunSummary;
use sluice_proto::format_hint::thousands;
use std::io::Write;

fn n(value: i64) -> String {
    thousands(value.max(0) as u64)
}

/// Writes a run's outcome.
pub fn write_summary(out: &mut dyn Write, s: &RunSummary) -> std::io::Result<()> {
    let seconds = s.duration_ms.unwrap_or(0) as f64 / 1000.0;
    if s.dry_run {
        writeln!(
            out,
            "dry run {} of {}/{}: {} in {seconds:.1}s; nothing was written",
            s.run_id, s.workspace, s.import, s.status
        )?;
    } else {
        writeln!(
            out,
            "run {} of {}/{}: {} in {seconds:.1}s",
            s.run_id, s.workspace, s.import, s.status
        )?;
    }
    let would = if s.dry_run { "would be " } else { "" };
    writeln!(
        out,
        "  rows: {} read, {} rejected, {} {would}loaded, {} skipped ({} chunks)",
        n(s.rows_read),
        n(s.rows_rejected),
        n(s.rows_loaded),
        n(s.rows_skipped),
        s.chunks
    )?;
    if let Some(destination) = &s.destination {
        let sent = if s.dry_run {
            "would be sent"
        } else {
            "delivered"
        };
        writeln!(
            out,
            "  destination {destination}: {} records {sent} in {} requests",
            n(s.records_delivered),
            n(s.delivery_requests)
        )?;
    }
    let stored = s.destination.is_none() && !s.dry_run;
    if s.profiles_created + s.profiles_updated + s.profiles_unchanged > 0 || stored {
        writeln!(
            out,
            "  profiles: {} {would}created, {} {would}updated, {} unchanged; {} stale values; identities {} ambiguous, {} conflicting",
            n(s.profiles_created),
            n(s.profiles_updated),
            n(s.profiles_unchanged),
            n(s.properties_stale),
            n(s.identities_ambiguous),
            n(s.identities_conflicting)
        )?;
    }
    if s.events_inserted + s.events_duplicate > 0 {
        writeln!(
            out,
            "  events: {} {would}inserted, {} duplicates skipped, {} stamped with the run's start",
            n(s.events_inserted),
            n(s.events_duplicate),
            n(s.events_time_imputed)
        )?;
    }
    if !s.subscriptions_changed.is_empty() || s.subscriptions_stale > 0 {
        let changes: Vec<String> = s
            .subscriptions_changed
            .iter()
            .flat_map(|(topic, statuses)| {
                statuses
                    .iter()
                    .map(move |(status, count)| format!("{topic} {status} {}", n(*count)))
            })
            .collect();
        let changes = match changes.is_empty() {
            true => "none".to_string(),
            false => changes.join(", "),
        };
        writeln!(
            out,
            "  subscriptions {would}changed: {changes}; {} stale",
            n(s.subscriptions_stale)
        )?;
    }
    if s.profiles_removed_from_source > 0 {
        writeln!(
            out,
            "  profiles whose rows left the source (properties unset): {}",
            n(s.profiles_removed_from_source)
        )?;
    }
    if s.profiles_deleted + s.deletes_not_found > 0 {
        writeln!(
            out,
            "  profiles {would}deleted {}, not found {}",
            n(s.profiles_deleted),
            n(s.deletes_not_found)
        )?;
    }
    if s.rows_retried + s.rows_retry_expired > 0 {
        writeln!(
            out,
            "  rejected rows read again: {}, {} {would}recovered; {} dropped after retry_rejected_for",
            n(s.rows_retried),
            n(s.rows_recovered),
            n(s.rows_retry_expired)
        )?;
    }
    for (reason, rows) in &s.rejected_by_reason {
        writeln!(out, "  rejected {reason}: {}", n(*rows))?;
    }
    if s.rows_held_back_future > 0 {
        writeln!(
            out,
            "  {} rows stamped in the future held back until their time",
            n(s.rows_held_back_future)
        )?;
    }
    if s.rows_without_watermark > 0 {
        writeln!(
            out,
            "  {} source rows have no watermark (NULL or infinite) and are read by no run: give them one, or coalesce it in a query source",
            n(s.rows_without_watermark)
        )?;
    }
    if let Some(error) = &s.error {
        writeln!(out, "  error: {error}")?;
    }
    for hint in &s.format_hints {
        writeln!(out, "  hint: {}", hint.message)?;
    }
    if let Some(promotion) = &s.promotion {
        writeln!(out, "  {promotion}")?;
    }
    if !s.sample.is_empty() {
        let mut table = super::output::table(["ROW", "OUTCOME", "IDENTITY", "PROPERTIES"]);
        for row in &s.sample {
            let mut properties = row.properties.to_string();
            if properties.chars().count() > 70 {
                properties = properties.chars().take(69).collect::<String>() + "…";
            }
            table.add_row([
                row.row_key.clone(),
                row.outcome.clone(),
                format!(
                    "{} {}",
                    row.identity_kind.as_deref().unwrap_or("-"),
                    row.identity_value.as_deref().unwrap_or("-")
                ),
                properties,
            ]);
        }
        writeln!(out, "  sample of what the run would do:")?;
        for line in table.lines() {
            writeln!(out, "    {}", line.trim_end())?;
        }
    }
    if let Some(request) = &s.delivery_sample {
        writeln!(
            out,
            "  the first request, as it would be sent (credentials masked):"
        )?;
        let text = serde_json::to_string_pretty(request).unwrap_or_default();
        for line in text.lines() {
            writeln!(out, "    {line}")?;
        }
    }
    if s.rows_rejected + s.rows_without_watermark > 0 {
        writeln!(
            out,
            "  rejected rows: `sluice runs errors {}` (--csv for the failure report)",
            s.run_id
        )?;
    }
    Ok(())
}
