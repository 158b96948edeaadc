//! Deleting the chunk objects of runs whose import's `object_retention` has passed since they
//! ended: those objects are the source's rows at rest, and they get a documented lifetime.
//! Every coordinator sweeps; a run is claimed by one of them at a time.

use deadpool_postgres::Pool;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sluice_proto::ChunkObjects;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often each coordinator looks for runs whose objects are due.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Runs claimed per sweep.
const BATCH: i64 = 100;

/// Claims due runs: marked deleted now, so no other coordinator takes them too.
const CLAIM: &str = "UPDATE control.runs SET objects_deleted_at = now()
 WHERE id IN (SELECT id FROM control.runs
               WHERE objects_deleted_at IS NULL AND objects_expire_at <= now()
               ORDER BY objects_expire_at LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING id, workspace_id, import_id";

/// Why a sweep stopped.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The store failed.
    #[error("control plane: {0}")]
    Store(#[from] tokio_postgres::Error),
    /// No store connection was free.
    #[error("control plane pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The object store failed.
    #[error("object store: {0}")]
    Objects(#[from] object_store::Error),
}

/// Deletes the objects of the runs that are due; returns how many runs were swept.
pub async fn sweep(pool: &Pool, store: &dyn ObjectStore) -> Result<usize, SweepError> {
    let client = pool.get().await?;
    let due = client.query(CLAIM, &[&BATCH]).await?;
    for row in &due {
        let (run_id, workspace_id, import_id): (Uuid, i64, i64) =
            (row.get(0), row.get(1), row.get(2));
        let deleted = async {
            let prefix = Path::from(ChunkObjects::run_prefix(workspace_id, import_id, run_id));
            let objects: Vec<Path> = store
                .list(Some(&prefix))
                .map_ok(|meta| meta.location)
                .try_collect()
                .await?;
            for location in &objects {
                match store.delete(location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok::<usize, object_store::Error>(objects.len())
        }
        .await;
        match deleted {
            Ok(n) => tracing::debug!(run = %run_id, objects = n, "run objects deleted"),
            Err(e) => {
                // The next sweep tries again.
                client
                    .execute(
                        "UPDATE control.runs SET objects_deleted_at = NULL WHERE id = $1",
                        &[&run_id],
                    )
                    .await?;
                return Err(e.into());
            }
        }
    }
    Ok(due.len())
}

/// Sweeps every `SWEEP_EVERY` until `shutdown`.
pub async fn run(pool: Pool, store: Arc<dyn ObjectStore>, shutdown: CancellationToken) {
    loop {
        if let Err(e) = sweep(&pool, store.as_ref()).await {
            tracing::warn!(error = %sluice_proto::error::chain(&e), "deleting expired run objects; trying again later");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
        }
    }
}
