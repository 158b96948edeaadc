//! The load stage's metrics: rows written to the stores, rows the loader rejected, values left
//! aside as older than the store's, chunks resolved on a guess, and time spent waiting on the
//! workspace's rate limit.

use opentelemetry::metrics::{Counter, Histogram};
use opentelemetry::KeyValue;
use sluice_proto::metrics::{meter, seconds_histogram};
use sluice_proto::LoadStats;
use std::sync::OnceLock;
use std::time::Duration;

struct LoadMetrics {
    written: Counter<u64>,
    rejected: Counter<u64>,
    stale: Counter<u64>,
    guesses: Counter<u64>,
    rate_wait: Histogram<f64>,
}

fn metrics() -> &'static LoadMetrics {
    static METRICS: OnceLock<LoadMetrics> = OnceLock::new();
    METRICS.get_or_init(|| LoadMetrics {
        written: meter()
            .u64_counter("sluice_rows_written_total")
            .with_description("Rows written to the profile or event store (dry runs write none)")
            .build(),
        rejected: meter()
            .u64_counter("sluice_rows_rejected_total")
            .with_description(
                "Rows rejected into the run's error stream, by the stage that rejected them",
            )
            .build(),
        stale: meter()
            .u64_counter("sluice_properties_stale_total")
            .with_description(
                "Property values not applied because a newer source row had set the property",
            )
            .build(),
        guesses: meter()
            .u64_counter("sluice_resolution_guesses_total")
            .with_description(
                "Chunks resolved without probes on the guess that they match nothing, by whether the guess held",
            )
            .build(),
        rate_wait: seconds_histogram(
            "sluice_rate_limiter_wait_seconds",
            "Time a load waited for its workspace's rate limit",
        ),
    })
}

/// Records one loaded chunk, on the metrics and on the stage's span.
pub fn record_chunk(workspace: i64, store: &'static str, dry_run: bool, stats: &LoadStats) {
    if !dry_run {
        metrics().written.add(
            stats.rows_loaded,
            &[
                KeyValue::new("workspace", workspace),
                KeyValue::new("store", store),
            ],
        );
        metrics().stale.add(
            stats.properties_stale,
            &[KeyValue::new("workspace", workspace)],
        );
    }
    metrics().rejected.add(
        stats.rows_rejected,
        &[
            KeyValue::new("workspace", workspace),
            KeyValue::new("stage", "load"),
        ],
    );
    tracing::Span::current().record("sluice.rows", stats.rows_loaded);
}

/// Records a chunk resolved on a guess: `held` when it matched nothing, as guessed.
pub fn record_guess(held: bool) {
    let outcome = if held { "right" } else { "wrong" };
    metrics()
        .guesses
        .add(1, &[KeyValue::new("outcome", outcome)]);
}

/// Records a wait on the rate limit.
pub fn record_rate_wait(workspace: i64, waited: Duration) {
    metrics().rate_wait.record(
        waited.as_secs_f64(),
        &[KeyValue::new("workspace", workspace)],
    );
}
