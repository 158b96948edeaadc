//! The per-workspace rate limit on rows written to the stores (governor's direct limiters, one
//! per workspace). A workspace's own limit is fleet-wide, so each loader takes its share of it:
//! the limit divided by the number of loaders consuming the load queue.

use governor::{DefaultDirectRateLimiter, Quota};
use sluice_proto::topology::QueueRole;
use sluice_proto::{Bus, Topology};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a loader counts the loaders sharing the load queue.
const COUNT_LOADERS_EVERY: Duration = Duration::from_secs(2);

/// Limits rows per second per workspace; a load waits for permits before writing.
pub struct RowRateLimiter {
    /// Rows per second for a workspace without a limit of its own (per loader process).
    default: NonZeroU32,
    /// Loaders sharing each workspace's fleet-wide limit; at least 1.
    loaders: AtomicU32,
    limiters: Mutex<HashMap<i64, (NonZeroU32, Arc<Bucket>)>>,
}

/// One workspace's bucket in this loader. Chunks take their permits one chunk at a time, in
/// the order they asked, so a workspace's writes are spread evenly at its rate instead of
/// several chunks finishing their waits together.
struct Bucket {
    turn: tokio::sync::Mutex<()>,
    limiter: DefaultDirectRateLimiter,
    /// The most permits one wait may ask for.
    burst: NonZeroU32,
}

impl RowRateLimiter {
    /// A limiter allowing `default` rows per second to each workspace without its own limit.
    pub fn new(default: NonZeroU32) -> Self {
        RowRateLimiter {
            default,
            loaders: AtomicU32::new(1),
            limiters: Mutex::new(HashMap::new()),
        }
    }

    /// Records how many loaders share the fleet-wide limits (0 counts as 1).
    pub fn set_loaders(&self, loaders: u32) {
        let before = self.loaders.swap(loaders.max(1), Ordering::Relaxed);
        if before != loaders.max(1) {
            tracing::info!(
                loaders = loaders.max(1),
                "loaders sharing the workspace limits"
            );
        }
    }

    /// This loader's rate for a workspace whose fleet-wide limit is `limit`.
    pub fn rate(&self, limit: Option<u32>) -> NonZeroU32 {
        let loaders = self.loaders.load(Ordering::Relaxed).max(1);
        limit
            .and_then(|l| NonZeroU32::new(l.div_ceil(loaders)))
            .unwrap_or(self.default)
    }

    /// The workspace's limiter at `rate`, made anew when its rate changed.
    fn limiter(&self, workspace: i64, rate: NonZeroU32) -> Arc<Bucket> {
        let mut limiters = self.limiters.lock().expect("limiter map lock");
        match limiters.get(&workspace) {
            Some((current, limiter)) if *current == rate => limiter.clone(),
            _ => {
                // A tenth of a second of burst: short enough that a run's rate is its limit.
                let burst = NonZeroU32::new((rate.get() / 10).max(1)).expect("at least 1");
                let limiter = Arc::new(Bucket {
                    turn: tokio::sync::Mutex::new(()),
                    limiter: DefaultDirectRateLimiter::direct(
                        Quota::per_second(rate).allow_burst(burst),
                    ),
                    burst,
                });
                limiters.insert(workspace, (rate, limiter.clone()));
                limiter
            }
        }
    }

    /// Waits until `rows` rows may be written for `workspace`, whose fleet-wide limit is
    /// `limit`; the wait is measured.
    pub async fn acquire(&self, workspace: i64, limit: Option<u32>, rows: usize) {
        let started = std::time::Instant::now();
        let rate = self.rate(limit);
        let bucket = self.limiter(workspace, rate);
        let _turn = bucket.turn.lock().await;
        let mut left = rows as u64;
        while left > 0 {
            let take = left.min(bucket.burst.get() as u64) as u32;
            let n = NonZeroU32::new(take).expect("take > 0");
            if let Err(e) = bucket.limiter.until_n_ready(n).await {
                unreachable!("request within burst was refused: {e}");
            }
            left -= take as u64;
        }
        crate::metrics::record_rate_wait(workspace, started.elapsed());
    }
}

/// Counts the consumers of the load queue every few seconds and gives the count to `limiter`,
/// so that loaders added or removed share the workspaces' limits anew.
pub async fn count_loaders(
    limiter: Arc<RowRateLimiter>,
    amqp_url: String,
    topology: Topology,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let queue = topology.queue(QueueRole::Load);
    let mut bus: Option<Bus> = None;
    loop {
        if bus.is_none() {
            bus = Bus::connect(&amqp_url, &topology).await.ok();
        }
        if let Some(connected) = &bus {
            match connected.queue_stats(&queue).await {
                Ok(stats) => limiter.set_loaders(stats.consumers),
                Err(e) => {
                    tracing::debug!(error = %e, "could not count the loaders");
                    bus = None;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(COUNT_LOADERS_EVERY) => {}
        }
    }
    if let Some(bus) = bus {
        bus.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn waits_when_a_workspace_exceeds_its_rate() {
        let limiter = RowRateLimiter::new(NonZeroU32::new(1000).unwrap());
        let start = Instant::now();
        limiter.acquire(1, None, 100).await; // the burst
        limiter.acquire(1, None, 500).await; // must wait about half a second
        assert!(start.elapsed().as_millis() >= 400, "{:?}", start.elapsed());
    }

    #[test]
    fn each_workspace_has_its_own_bucket_remade_when_its_rate_changes() {
        let limiter = RowRateLimiter::new(NonZeroU32::new(1000).unwrap());
        let rate = limiter.rate(None);
        let first = limiter.limiter(1, rate);
        assert!(Arc::ptr_eq(&first, &limiter.limiter(1, rate)));
        assert!(!Arc::ptr_eq(&first, &limiter.limiter(2, rate)));
        let slower = limiter.rate(Some(10));
        assert!(!Arc::ptr_eq(&first, &limiter.limiter(1, slower)));
    }

    #[test]
    fn a_workspace_limit_is_shared_by_the_loaders() {
        let limiter = RowRateLimiter::new(NonZeroU32::new(200_000).unwrap());
        assert_eq!(limiter.rate(None).get(), 200_000);
        assert_eq!(limiter.rate(Some(3000)).get(), 3000);
        limiter.set_loaders(4);
        assert_eq!(limiter.rate(Some(3000)).get(), 750);
        assert_eq!(
            limiter.rate(Some(3)).get(),
            1,
            "never below one row per second"
        );
        assert_eq!(
            limiter.rate(None).get(),
            200_000,
            "the default is per loader"
        );
        limiter.set_loaders(0);
        assert_eq!(limiter.rate(Some(3000)).get(), 3000);
    }
}
