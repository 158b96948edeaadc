//! The chunk window: how many of one run's chunks are out in the fleet at once. A run's chunks
//! are released a window at a time and refilled as they load, so the queues never hold a large
//! run's whole plan and a small run's chunks wait behind a few of its chunks, not thousands.

use std::sync::atomic::{AtomicU32, Ordering};
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// Chunks a run may have released and not yet loaded: at least the configured size, and more
/// when the fleet has more workers than that keeps busy.
#[derive(Debug)]
pub struct ChunkWindow {
    least: u32,
    /// The most consumers on any one stage's queue, as last counted.
    workers: AtomicU32,
}

/// Chunks kept out per worker of the busiest stage: one in hand, one prefetched, and two on
/// their way through the other stages.
const PER_WORKER: u32 = 4;

impl ChunkWindow {
    /// A window of at least `least` chunks (0 counts as 1).
    pub fn new(least: u32) -> Self {
        ChunkWindow {
            least: least.max(1),
            workers: AtomicU32::new(0),
        }
    }

    /// Records the most consumers counted on one stage's queue.
    pub fn set_workers(&self, workers: u32) {
        self.workers.store(workers, Ordering::Relaxed);
    }

    /// The window's size now.
    pub fn size(&self) -> u32 {
        self.least.max(
            self.workers
                .load(Ordering::Relaxed)
                .saturating_mul(PER_WORKER),
        )
    }
}

/// Releases a running run's next chunks, in order, until `size` are out and not loaded; `by` is
/// the loaded chunk whose place they take (`None` for the planning). The caller holds the run's
/// row locked, so two releases of one run never count the same outstanding chunks.
pub async fn release(
    client: &impl GenericClient,
    run_id: Uuid,
    size: u32,
    by: Option<u32>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "WITH next AS (
                 SELECT seq FROM control.chunks
                  WHERE run_id = $1 AND released_at IS NULL AND status = 'pending'
                  ORDER BY seq
                  LIMIT greatest(0, $2 - (SELECT count(*) FROM control.chunks
                                           WHERE run_id = $1 AND released_at IS NOT NULL
                                             AND status IN ('pending', 'extracted', 'transformed'))))
             UPDATE control.chunks c SET released_at = now(), released_by = $3
               FROM next WHERE c.run_id = $1 AND c.seq = next.seq",
            &[&run_id, &i64::from(size), &by.map(|seq| seq as i32)],
        )
        .await?;
    Ok(())
}

/// After `seq` of a run loaded, releases what takes its place if the run is still running, and
/// says whether chunks it released are still to be published (also when its result is
/// delivered again after they were released).
pub async fn refill(
    client: &impl GenericClient,
    run_id: Uuid,
    seq: u32,
    size: u32,
) -> Result<bool, tokio_postgres::Error> {
    let running = client
        .query_opt(
            "SELECT 1 FROM control.runs WHERE id = $1 AND status = 'running' FOR UPDATE",
            &[&run_id],
        )
        .await?;
    if running.is_none() {
        return Ok(false);
    }
    release(client, run_id, size, Some(seq)).await?;
    let waiting: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM control.chunks
                             WHERE run_id = $1 AND released_by = $2 AND status = 'pending')",
            &[&run_id, &(seq as i32)],
        )
        .await?
        .get(0);
    Ok(waiting)
}
