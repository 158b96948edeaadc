//! Deleting the chunk objects of runs whose import's `object_retention` has passed since they
//! ended (those objects are the source's rows at rest, and they get a documented lifetime), and
//! their lineage once `lineage_retention` has.
//! Every coordinator sweeps; a run is claimed by one of them at a time.

use deadpool_postgres::Pool;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sluice_proto::{lineage, ChunkObjects};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often each coordinator looks for runs whose objects are due.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Runs claimed per sweep.
const BATCH: i64 = 100;

/// What a run leaves in the object store for a documented time.
#[derive(Debug, Clone, Copy)]
enum Kept {
    /// The chunk objects: the source's rows as read, normalized and rejected.
    Objects,
    /// The lineage: what happened to each row.
    Lineage,
}

impl Kept {
    /// Claims due runs: marked deleted now, so no other coordinator takes them too.
    fn claim(self) -> &'static str {
        match self {
            Kept::Objects => {
                "UPDATE control.runs SET objects_deleted_at = now()
 WHERE id IN (SELECT id FROM control.runs
               WHERE objects_deleted_at IS NULL AND objects_expire_at <= now()
               ORDER BY objects_expire_at LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING id, workspace_id, import_id"
            }
            Kept::Lineage => {
                "UPDATE control.runs SET lineage_deleted_at = now()
 WHERE id IN (SELECT id FROM control.runs
               WHERE lineage_deleted_at IS NULL AND lineage_expire_at <= now()
               ORDER BY lineage_expire_at LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING id, workspace_id, import_id"
            }
        }
    }

    /// Gives a claimed run back, for the next sweep to try again.
    fn release(self) -> &'static str {
        match self {
            Kept::Objects => "UPDATE control.runs SET objects_deleted_at = NULL WHERE id = $1",
            Kept::Lineage => "UPDATE control.runs SET lineage_deleted_at = NULL WHERE id = $1",
        }
    }

    fn prefix(self, workspace_id: i64, import_id: i64, run_id: Uuid) -> String {
        match self {
            Kept::Objects => ChunkObjects::run_prefix(workspace_id, import_id, run_id),
            Kept::Lineage => lineage::run_prefix(workspace_id, import_id, run_id),
        }
    }
}

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

/// Deletes the chunk objects and the lineage of the runs whose retention has passed; returns
/// how many runs were swept.
pub async fn sweep(pool: &Pool, store: &dyn ObjectStore) -> Result<usize, SweepError> {
    Ok(sweep_kept(pool, store, Kept::Objects).await?
        + sweep_kept(pool, store, Kept::Lineage).await?)
}

async fn sweep_kept(pool: &Pool, store: &dyn ObjectStore, kept: Kept) -> Result<usize, SweepError> {
    let client = pool.get().await?;
    let due = client.query(kept.claim(), &[&BATCH]).await?;
    for row in &due {
        let (run_id, workspace_id, import_id): (Uuid, i64, i64) =
            (row.get(0), row.get(1), row.get(2));
        let prefix = Path::from(kept.prefix(workspace_id, import_id, run_id));
        match delete_under(store, &prefix).await {
            Ok(n) => tracing::debug!(run = %run_id, objects = n, ?kept, "run objects deleted"),
            Err(e) => {
                client.execute(kept.release(), &[&run_id]).await?;
                return Err(e.into());
            }
        }
    }
    Ok(due.len())
}

/// Deletes every object under `prefix`; returns how many there were.
async fn delete_under(
    store: &dyn ObjectStore,
    prefix: &Path,
) -> Result<usize, object_store::Error> {
    let objects: Vec<Path> = store
        .list(Some(prefix))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await?;
    for location in &objects {
        match store.delete(location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(objects.len())
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
