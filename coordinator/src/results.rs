//! The results consumer: records each chunk's progress, stats and rejected rows, fails the run
//! when a chunk gives up, publishes the chunks that take a loaded chunk's place in its run's
//! window, and when every chunk is loaded ends the run and advances the watermark, in one
//! transaction. Every update is idempotent, so redelivered results change nothing.

use crate::errors::{self, ErrorStreamError};
use crate::planner::{self, Released};
use crate::run_state::{transition_if_allowed, RunEvent};
use crate::runs;
use crate::window::{self, ChunkWindow};
use deadpool_postgres::Pool;
use object_store::{ObjectStore, ObjectStoreExt};
use sluice_proto::cancel::RunCancelled;
use sluice_proto::stage::{Delivered, Outgoing, Stage};
use sluice_proto::topology::QueueRole;
use sluice_proto::{
    ChunkObjects, ChunkRef, ChunkResult, ErrorCode, RowRejection, StageError, StageName,
};
use std::sync::Arc;
use tokio_postgres::Transaction;
use uuid::Uuid;

/// What the results consumer needs: the control plane, and the object store the stages write
/// rejected rows to.
pub struct Results {
    /// The control plane.
    pub pool: Pool,
    /// Where chunk objects are, for reading rejected rows.
    pub store: Arc<dyn ObjectStore>,
    /// How many chunks of a run are kept out; a loaded chunk's place goes to the next.
    pub window: Arc<ChunkWindow>,
}

/// A control-plane failure, retried, with the server's own message (the error's causes).
fn store_error<E: std::error::Error + 'static>(e: E) -> StageError {
    StageError::retryable(
        ErrorCode::Internal,
        format!("control plane: {}", sluice_proto::error::chain(&e)),
    )
}

const EXTRACTED: &str = "UPDATE control.chunks
    SET rows_read = $3, bytes = $4, updated_at = now(),
        status = CASE WHEN status = 'pending' THEN 'extracted' ELSE status END
  WHERE run_id = $1 AND seq = $2";

const TRANSFORMED: &str = "UPDATE control.chunks
    SET rows_accepted = $3, rows_rejected = $4, rejected_by_reason = $5,
        events_time_imputed = $6, date_formats = $7, updated_at = now(),
        status = CASE WHEN status IN ('pending', 'extracted') THEN 'transformed' ELSE status END
  WHERE run_id = $1 AND seq = $2";

const LOADED: &str = "UPDATE control.chunks
    SET rows_loaded = $3, profiles_created = $4, profiles_updated = $5, profiles_unchanged = $6,
        rows_skipped = $7, identities_ambiguous = $8, rows_rejected_load = $9,
        load_rejected_by_reason = $10, sample = $11, events_inserted = $12, events_duplicate = $13,
        profiles_deleted = $14, deletes_not_found = $15, properties_stale = $16,
        identities_conflicting = $17, profiles_removed_from_source = $18,
        subscriptions_changed = $19, subscriptions_stale = $20, records_delivered = $21,
        delivery_requests = $22, delivery_sample = $23, updated_at = now(), status = CASE WHEN status = 'failed' THEN status ELSE 'loaded' END
  WHERE run_id = $1 AND seq = $2";

const FAILED: &str = "UPDATE control.chunks
    SET status = 'failed', attempts = $3, error_stage = $4, error_code = $5, error_message = $6,
        updated_at = now()
  WHERE run_id = $1 AND seq = $2 AND status NOT IN ('loaded', 'cancelled')";

/// Ends the run if every chunk is loaded, and advances the watermark and a mirror import's key
/// set (not for dry runs and replays). Returns the key set no run will read again (the one
/// the run superseded, or a dry run's own), to delete.
async fn complete_if_done(
    tx: &Transaction<'_>,
    chunk: &ChunkRef,
) -> Result<Option<String>, tokio_postgres::Error> {
    let Some(run) = tx
        .query_opt(
            "SELECT status, dry_run OR replay_from IS NOT NULL, hi, dry_run FROM control.runs WHERE id = $1 FOR UPDATE",
            &[&chunk.run_id],
        )
        .await?
    else {
        tracing::warn!(run = %chunk.run_id, "result for a run the control plane does not know; ignored");
        return Ok(None);
    };
    let status: String = run.get(0);
    if status != runs::status::RUNNING {
        return Ok(None);
    }
    let counts = tx
        .query_one(
            "SELECT count(*) FILTER (WHERE status <> 'loaded'),
                    coalesce(sum(rows_rejected + rows_rejected_load), 0)::int8
                    + (SELECT rows_without_watermark + rows_without_key
                         FROM control.runs WHERE id = $1)
               FROM control.chunks WHERE run_id = $1",
            &[&chunk.run_id],
        )
        .await?;
    let (unfinished, rejected): (i64, i64) = (counts.get(0), counts.get(1));
    if unfinished > 0 {
        return Ok(None);
    }
    let loaded = RunEvent::AllLoaded {
        rejected: rejected > 0,
    };
    let Some(moved) = transition_if_allowed(tx, chunk.run_id, &loaded).await? else {
        return Ok(None);
    };
    let outcome = moved.to.as_str();
    if run.get::<_, bool>(3) {
        crate::dry_run::conclude(tx, chunk.run_id).await?;
    } else {
        crate::retries::settle(tx, chunk.run_id).await?;
    }
    // Dry runs and replays leave the watermark where it is.
    let keeps_watermark: bool = run.get(1);
    let hi: Option<serde_json::Value> = run.get(2);
    if let (false, Some(hi)) = (keeps_watermark, hi) {
        crate::watermark::advance(tx, chunk.import_id, &hi, chunk.run_id).await?;
    }
    let superseded = if keeps_watermark {
        // A dry run's key set served its run only.
        tx.query_opt(
            "SELECT 1 FROM control.chunks WHERE run_id = $1 AND kind = 'keys'",
            &[&chunk.run_id],
        )
        .await?
        .map(|_| ChunkObjects::key_set(chunk))
    } else {
        // A mirror run's key set becomes the one the next run compares its own with.
        tx
            .query_opt(
                "WITH old AS MATERIALIZED (SELECT key_set FROM control.imports WHERE id = $1)
                 UPDATE control.imports i SET key_set = $2
                  WHERE i.id = $1
                    AND EXISTS (SELECT 1 FROM control.chunks c WHERE c.run_id = $3 AND c.kind = 'keys')
                 RETURNING (SELECT key_set FROM old)",
                &[
                    &chunk.import_id,
                    &ChunkObjects::key_set(chunk),
                    &chunk.run_id,
                ],
            )
            .await?
            .and_then(|row| row.get::<_, Option<String>>(0))
    };
    tracing::info!(run = %chunk.run_id, status = outcome, "run finished");
    Ok(superseded)
}

/// Rejections a result points at, read from the object store before the transaction opens.
async fn rejections_of(
    store: &dyn ObjectStore,
    result: &ChunkResult,
) -> Result<Vec<RowRejection>, ErrorStreamError> {
    match result {
        ChunkResult::Transformed(m) if m.rows_rejected > 0 => {
            errors::read_rejections(store, &m.work.objects.rejected).await
        }
        ChunkResult::Loaded(m) if m.stats.rows_rejected + m.stats.identities_conflicting > 0 => {
            let objects = ChunkObjects::for_chunk(&m.chunk);
            errors::read_rejections(store, &objects.load_rejected).await
        }
        _ => Ok(Vec::new()),
    }
}

fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("stats serialize")
}

/// What recording a result changed beyond the chunk.
#[derive(Default)]
struct Recorded {
    /// A key set the run superseded.
    superseded: Option<String>,
    /// The run the result failed: its remaining chunks are to be discarded.
    failed: Option<Uuid>,
    /// The loaded chunk that released others still to be published.
    released_by: Option<(Uuid, u32)>,
}

/// Records one result, and the rejected rows it reports, in one transaction.
async fn record(
    client: &mut tokio_postgres::Client,
    result: &ChunkResult,
    rejections: &[RowRejection],
    window: u32,
) -> Result<Recorded, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let mut superseded = None;
    let mut failed = None;
    let mut released_by = None;
    match result {
        ChunkResult::Extracted(m) => {
            let c = &m.work.chunk;
            tx.execute(
                EXTRACTED,
                &[
                    &c.run_id,
                    &(c.seq as i32),
                    &(m.rows_read as i64),
                    &(m.bytes as i64),
                ],
            )
            .await?;
        }
        ChunkResult::Transformed(m) => {
            let c = &m.work.chunk;
            tx.execute(
                TRANSFORMED,
                &[
                    &c.run_id,
                    &(c.seq as i32),
                    &(m.rows_accepted as i64),
                    &(m.rows_rejected as i64),
                    &json(&m.rejected_by_reason),
                    &(m.events_time_imputed as i64),
                    &(!m.date_formats.is_empty()).then(|| json(&m.date_formats)),
                ],
            )
            .await?;
            errors::record(&tx, c.run_id, c.seq, StageName::Transform, rejections).await?;
        }
        ChunkResult::Loaded(m) => {
            let c = &m.chunk;
            let s = &m.stats;
            let sample = (!s.sample.is_empty()).then(|| json(&s.sample));
            tx.execute(
                LOADED,
                &[
                    &c.run_id,
                    &(c.seq as i32),
                    &(s.rows_loaded as i64),
                    &(s.profiles_created as i64),
                    &(s.profiles_updated as i64),
                    &(s.profiles_unchanged as i64),
                    &(s.rows_skipped as i64),
                    &(s.identities_ambiguous as i64),
                    &(s.rows_rejected as i64),
                    &json(&s.rejected_by_reason),
                    &sample,
                    &(s.events_inserted as i64),
                    &(s.events_duplicate as i64),
                    &(s.profiles_deleted as i64),
                    &(s.deletes_not_found as i64),
                    &(s.properties_stale as i64),
                    &(s.identities_conflicting as i64),
                    &(s.profiles_removed_from_source as i64),
                    &(!s.subscriptions_changed.is_empty()).then(|| json(&s.subscriptions_changed)),
                    &(s.subscriptions_stale as i64),
                    &(s.records_delivered as i64),
                    &(s.delivery_requests as i64),
                    &s.delivery_sample,
                ],
            )
            .await?;
            errors::record(&tx, c.run_id, c.seq, StageName::Load, rejections).await?;
            if window::refill(&tx, c.run_id, c.seq, window).await? {
                released_by = Some((c.run_id, c.seq));
            }
            superseded = complete_if_done(&tx, c).await?;
        }
        ChunkResult::Failed(m) => {
            let c = &m.chunk;
            tx.execute(
                FAILED,
                &[
                    &c.run_id,
                    &(c.seq as i32),
                    &(m.attempts as i32),
                    &m.stage.as_str(),
                    &m.error.code.as_str(),
                    &m.error.message,
                ],
            )
            .await?;
            let message = format!(
                "chunk {} failed in {} after {} attempts: {}",
                c.seq,
                m.stage.as_str(),
                m.attempts,
                m.error.message
            );
            if runs::fail(&tx, c.run_id, m.error.code.as_str(), &message).await? {
                failed = Some(c.run_id);
            }
            tracing::warn!(run = %c.run_id, chunk = c.seq, error = %m.error, "chunk failed; run failed");
        }
    }
    tx.commit().await?;
    Ok(Recorded {
        superseded,
        failed,
        released_by,
    })
}

impl Stage for Results {
    type Input = ChunkResult;
    const NAME: &'static str = "results";
    const QUEUE: QueueRole = QueueRole::Results;

    async fn handle(
        &self,
        result: ChunkResult,
        _: &Delivered,
    ) -> Result<Vec<Outgoing>, StageError> {
        let rejections = rejections_of(self.store.as_ref(), &result)
            .await
            .map_err(|e| StageError::retryable(ErrorCode::Storage, e.to_string()))?;
        let mut client = self.pool.get().await.map_err(store_error)?;
        let recorded = record(&mut client, &result, &rejections, self.window.size())
            .await
            .map_err(store_error)?;
        if let Some(key_set) = recorded.superseded {
            // The import now compares with the newer set; a failed delete leaves garbage only.
            if let Err(e) = self
                .store
                .delete(&object_store::path::Path::from(key_set.as_str()))
                .await
            {
                tracing::warn!(key_set, error = %e, "could not delete a superseded key set");
            }
        }
        // Workers discard a failed run's chunks still queued, as they do a stopped import's.
        if let Some(run_id) = recorded.failed {
            return Ok(vec![Outgoing::message(&RunCancelled {
                run_id,
                reason: "the run failed".into(),
            })?]);
        }
        match recorded.released_by {
            Some((run_id, seq)) => {
                let ctx = planner::context(&**client, run_id)
                    .await
                    .map_err(store_error)?;
                planner::pending_tasks(&**client, &ctx, Released::By(seq))
                    .await
                    .map_err(store_error)?
                    .iter()
                    .map(Outgoing::message)
                    .collect()
            }
            None => Ok(Vec::new()),
        }
    }
}
