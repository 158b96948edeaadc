//! The per-workspace rate limit on rows written to the stores (governor's keyed limiter).

use governor::{DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;

/// Limits rows per second per workspace; a load waits for permits before writing.
pub struct RowRateLimiter {
    limiter: DefaultKeyedRateLimiter<i64>,
    burst: NonZeroU32,
}

impl RowRateLimiter {
    /// A limiter allowing `rows_per_second` rows per workspace, with one second of burst.
    pub fn new(rows_per_second: NonZeroU32) -> Self {
        RowRateLimiter {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(rows_per_second)),
            burst: rows_per_second,
        }
    }

    /// Waits until `rows` rows may be written for `workspace`; the wait is measured.
    pub async fn acquire(&self, workspace: i64, rows: usize) {
        let started = std::time::Instant::now();
        let mut left = rows as u64;
        while left > 0 {
            let take = left.min(self.burst.get() as u64) as u32;
            let n = NonZeroU32::new(take).expect("take > 0");
            if let Err(e) = self.limiter.until_key_n_ready(&workspace, n).await {
                unreachable!("request within burst was refused: {e}");
            }
            left -= take as u64;
        }
        crate::metrics::record_rate_wait(workspace, started.elapsed());
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
        limiter.acquire(1, 1000).await; // the burst
        limiter.acquire(1, 500).await; // must wait about half a second
        assert!(start.elapsed().as_millis() >= 400, "{:?}", start.elapsed());
        let other = Instant::now();
        limiter.acquire(2, 1000).await; // another workspace has its own burst: no wait
        limiter.acquire(2, 1).await; // ...until it is spent
        assert!(other.elapsed().as_millis() < 400, "{:?}", other.elapsed());
    }
}
