//! `sluice errors`: the workspace's error stream, every rejected row across runs in a
//! window, newest first, with counts by reason and by import; as a table, JSON or CSV.

use super::backend::{Access, Backend};
use super::output::{emit, table, write_table, Output};
use crate::settings::Settings;
use chrono::{DateTime, Utc};
use clap::Args;
use sluice_coordinator::api::errors::{ErrorQuery, ErrorStreamPage};
use std::io::Write;

/// `sluice errors` arguments.
#[derive(Debug, Args)]
pub struct ErrorsArgs {
    /// The window's start: a time ago (24h, 7d, 90m) or an ISO-8601 date-time with an
    /// offset.
    #[arg(long, default_value = "24h")]
    since: String,
    /// The window's end, as --since; now by default.
    #[arg(long)]
    until: Option<String>,
    /// Only this import's rows.
    #[arg(long)]
    import: Option<String>,
    /// Only rows rejected for this reason code (invalid_email, type_conflict, ...).
    #[arg(long)]
    reason: Option<String>,
    /// Write every row of the window as CSV instead.
    #[arg(long)]
    csv: bool,
    /// Rows per page (without --csv).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// The page, from 1 (without --csv).
    #[arg(long, default_value_t = 1)]
    page: u32,
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

/// An instant given as `flag`: a time ago, or an ISO-8601 date-time.
fn instant(flag: &str, value: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(ago) = sluice_spec::duration::parse(value) {
        return Ok(now - chrono::Duration::from_std(ago)?);
    }
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            anyhow::anyhow!(
                "{flag} {value:?} is neither a time ago (24h, 7d) nor an ISO-8601 date-time like 2026-11-01T00:00:00Z"
            )
        })
}

/// Runs `sluice errors`.
pub async fn execute(settings: &Settings, args: ErrorsArgs) -> anyhow::Result<i32> {
    let now = Utc::now();
    let mut query = ErrorQuery {
        from: Some(instant("--since", &args.since, now)?),
        to: args
            .until
            .as_deref()
            .map(|u| instant("--until", u, now))
            .transpose()?,
        import: args.import,
        reason: args.reason,
        page: Some(args.page),
        per_page: Some(args.limit),
    };
    let backend = Backend::open(settings, Access::READ).await?;
    if args.csv {
        query.per_page = Some(1000);
        query.page = Some(1);
        let stdout = std::io::stdout();
        let mut writer = csv::Writer::from_writer(stdout.lock());
        writer.write_record([
            "recorded_at",
            "run_id",
            "import",
            "chunk",
            "row_key",
            "column",
            "value",
            "reason",
            "message",
        ])?;
        loop {
            let page = backend.error_stream(&query).await?;
            for e in &page.errors {
                writer.write_record([
                    e.recorded_at.to_rfc3339(),
                    e.run_id.to_string(),
                    e.import.clone(),
                    e.error.chunk.to_string(),
                    e.error.row_key.clone(),
                    e.error.column.clone(),
                    e.error.value.clone().unwrap_or_default(),
                    e.error.reason.clone(),
                    e.error.message.clone(),
                ])?;
            }
            if page.errors.len() < page.per_page as usize {
                break;
            }
            // The window is fixed, so the pages stay put while new rows arrive after it.
            query.to = Some(page.to);
            query.from = Some(page.from);
            query.page = Some(page.page + 1);
        }
        writer.flush()?;
        return Ok(0);
    }
    let page = backend.error_stream(&query).await?;
    emit(args.output, &page, |out| write_page(out, &page))?;
    Ok(0)
}

/// The page for people: the window's counts, then its rows.
fn write_page(out: &mut dyn Write, page: &ErrorStreamPage) -> std::io::Result<()> {
    writeln!(
        out,
        "{} rejected rows from {} to {}",
        page.total,
        page.from.to_rfc3339(),
        page.to.to_rfc3339()
    )?;
    if page.total == 0 {
        return Ok(());
    }
    let reasons: Vec<String> = page
        .by_reason
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    let imports: Vec<String> = page
        .by_import
        .iter()
        .map(|(i, n)| format!("{i} {n}"))
        .collect();
    writeln!(out, "  by reason: {}", reasons.join(", "))?;
    writeln!(out, "  by import: {}", imports.join(", "))?;
    let mut t = table([
        "RECORDED", "IMPORT", "RUN", "ROW", "REASON", "COLUMN", "VALUE",
    ]);
    for e in &page.errors {
        t.add_row([
            e.recorded_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            e.import.clone(),
            e.run_id.to_string(),
            e.error.row_key.clone(),
            e.error.reason.clone(),
            e.error.column.clone(),
            super::runs::shown_value(&e.error.value),
        ]);
    }
    write_table(out, &t)?;
    let shown = (page.page as i64 - 1) * page.per_page as i64 + page.errors.len() as i64;
    if shown < page.total {
        writeln!(
            out,
            "(page {} of rows up to {shown}; `--page {}` shows more, `--csv` writes them all)",
            page.page,
            page.page + 1
        )?;
    }
    Ok(())
}
