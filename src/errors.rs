//! `sluice runs errors RUN [--csv]`: a run's rejected rows with their reasons, as text or as
//! the CSV failure report.

use crate::settings::Settings;
use sluice_coordinator::errors;
use std::io::Write;
use uuid::Uuid;

/// Prints a run's error stream; returns the process exit code.
pub async fn print(settings: &Settings, run: &str, csv: bool, limit: i64) -> anyhow::Result<i32> {
    let run_id: Uuid = run
        .parse()
        .map_err(|_| anyhow::anyhow!("{run:?} is not a run id (a UUID, as `sluice run` prints)"))?;
    let client = settings.control().await?;
    let known = client
        .query_opt("SELECT 1 FROM control.runs WHERE id = $1", &[&run_id])
        .await?;
    if known.is_none() {
        anyhow::bail!("run {run_id} not found");
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if csv {
        errors::write_csv(&client, run_id, &mut out).await?;
        return Ok(0);
    }
    let page = errors::list(&client, run_id, limit, 0).await?;
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
