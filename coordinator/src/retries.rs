//! The retry set of an import: its rows rejected for a cause that can go away without the row
//! changing (`Reason::retryable`), by source key. Planning reads them again in retry chunks
//! (each key's row at or before the run's start, so no row is read twice in a run) and drops
//! the keys retried for longer than `retry_rejected_for`; a run's end adds its retryable
//! rejections to the set and takes out the keys that passed.

use crate::planner::RunContext;
use sluice_proto::{Bound, Reason};
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// The most keys one retry chunk reads (fewer when the import's chunks are smaller).
const MAX_KEYS_PER_CHUNK: u64 = 10_000;

/// The retry chunks of a run.
pub struct RetryChunks {
    /// Every key's row is read at or before this position: the run's lower bound.
    pub upto: Bound,
    /// The keys of each chunk, each a JSON array of keys as the source types them.
    pub batches: Vec<serde_json::Value>,
}

/// Whether the run reads the import's retry set: not a replay (it reads a window of the past),
/// not a run from the source's start (it reads every row anyway), and only when the import
/// keeps its rejected rows.
fn reads_retries(ctx: &RunContext) -> Option<&Bound> {
    if ctx.replay.is_some() || !ctx.import.retries_rejected() {
        return None;
    }
    ctx.watermark.as_ref()
}

fn seconds(ctx: &RunContext) -> f64 {
    ctx.import.retry_rejected_for.as_secs_f64()
}

/// The keys the run reads again, in chunks, or `None`.
pub async fn chunks(
    client: &impl GenericClient,
    ctx: &RunContext,
) -> Result<Option<RetryChunks>, tokio_postgres::Error> {
    let Some(upto) = reads_retries(ctx) else {
        return Ok(None);
    };
    let rows = client
        .query(
            "SELECT key FROM control.retry_rows
              WHERE import_id = $1 AND first_rejected_at >= now() - make_interval(secs => $2)
              ORDER BY key",
            &[&ctx.import_id, &seconds(ctx)],
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let per_chunk = ctx.import.chunk_rows.min(MAX_KEYS_PER_CHUNK) as usize;
    let batches = rows
        .chunks(per_chunk)
        .map(|batch| serde_json::Value::Array(batch.iter().map(|r| r.get(0)).collect()))
        .collect();
    Ok(Some(RetryChunks {
        upto: upto.clone(),
        batches,
    }))
}

/// At planning, for runs that write: drops the keys retried for longer than the import
/// allows and counts them on the run (an import that no longer keeps its rejected rows drops
/// them all, uncounted), and records whether the run keeps its own.
pub async fn expire(
    client: &impl GenericClient,
    ctx: &RunContext,
) -> Result<u64, tokio_postgres::Error> {
    if ctx.dry_run {
        return Ok(0);
    }
    let keeps = ctx.import.retries_rejected();
    client
        .execute(
            "UPDATE control.runs SET retries_rejected = $2 WHERE id = $1",
            &[&ctx.run_id, &keeps],
        )
        .await?;
    if !keeps {
        client
            .execute(
                "DELETE FROM control.retry_rows WHERE import_id = $1",
                &[&ctx.import_id],
            )
            .await?;
        return Ok(0);
    }
    let expired = client
        .execute(
            "DELETE FROM control.retry_rows
              WHERE import_id = $1 AND first_rejected_at < now() - make_interval(secs => $2)",
            &[&ctx.import_id, &seconds(ctx)],
        )
        .await?;
    client
        .execute(
            "UPDATE control.runs SET rows_retry_expired = $2 WHERE id = $1",
            &[&ctx.run_id, &(expired as i64)],
        )
        .await?;
    if expired > 0 {
        tracing::info!(run = %ctx.run_id, expired, "rejected rows retried past retry_rejected_for dropped");
    }
    Ok(expired)
}

/// The key of a rejected row as its chunk's bounds type it (a number for integer keys).
const TYPED_KEY: &str = "CASE jsonb_typeof(c.hi -> 'key')
    WHEN 'number' THEN to_jsonb(e.row_key::int8) ELSE to_jsonb(e.row_key) END";

/// At the end of a run that wrote: a key its retry chunks read and rejected again counts one
/// more attempt with its new reason; a row its range chunks rejected (new, or a new version of
/// a kept row) starts its retries now; the kept keys the run read again and did not reject
/// again leave the set, as do all others when the run read the source from its start.
pub async fn settle(
    client: &impl GenericClient,
    run_id: Uuid,
) -> Result<(), tokio_postgres::Error> {
    let Some(run) = client
        .query_opt(
            "SELECT import_id, lo IS NULL AND replay_from IS NULL
               FROM control.runs WHERE id = $1 AND retries_rejected AND NOT dry_run",
            &[&run_id],
        )
        .await?
    else {
        return Ok(());
    };
    let (import_id, from_start): (i64, bool) = (run.get(0), run.get(1));
    let retryable = Reason::retryable_codes();
    client
        .execute(
            "UPDATE control.retry_rows r
                SET attempts = r.attempts + 1, reason_code = x.reason_code, last_run_id = $1
               FROM (SELECT DISTINCT ON (e.row_key) e.row_key, e.reason_code
                       FROM control.run_errors e
                       JOIN control.chunks c ON c.run_id = e.run_id AND c.seq = e.chunk_seq
                      WHERE e.run_id = $1 AND c.kind = 'retry' AND e.reason_code = ANY($3)
                      ORDER BY e.row_key, e.stage DESC) x
              WHERE r.import_id = $2 AND r.row_key = x.row_key",
            &[&run_id, &import_id, &retryable],
        )
        .await?;
    client
        .execute(
            &format!(
                "INSERT INTO control.retry_rows (import_id, row_key, key, reason_code, last_run_id)
                 SELECT DISTINCT ON (e.row_key) $2, e.row_key, {TYPED_KEY}, e.reason_code, $1
                   FROM control.run_errors e
                   JOIN control.chunks c ON c.run_id = e.run_id AND c.seq = e.chunk_seq
                  WHERE e.run_id = $1 AND c.kind = 'rows' AND e.reason_code = ANY($3)
                  ORDER BY e.row_key, e.stage DESC
                 ON CONFLICT (import_id, row_key) DO UPDATE
                    SET key = EXCLUDED.key, reason_code = EXCLUDED.reason_code, attempts = 1,
                        first_rejected_at = now(), last_run_id = EXCLUDED.last_run_id"
            ),
            &[&run_id, &import_id, &retryable],
        )
        .await?;
    let left = if from_start {
        client
            .execute(
                "DELETE FROM control.retry_rows WHERE import_id = $2 AND last_run_id <> $1",
                &[&run_id, &import_id],
            )
            .await?
    } else {
        client
            .execute(
                "DELETE FROM control.retry_rows r
                  USING (SELECT DISTINCT k.key
                           FROM control.chunks c, jsonb_array_elements(c.keys) AS k(key)
                          WHERE c.run_id = $1 AND c.kind = 'retry') x
                  WHERE r.import_id = $2 AND r.key = x.key AND r.last_run_id <> $1",
                &[&run_id, &import_id],
            )
            .await?
    };
    tracing::debug!(run = %run_id, left, "retry set settled");
    Ok(())
}
