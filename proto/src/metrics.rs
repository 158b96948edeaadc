//! Metrics every role shares, recorded by the consume loop: how long each stage took, how each
//! message ended, and how long messages waited in their queues. Instruments come from the
//! process's global meter provider, so they cost nothing until the binary installs one.

use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};
use opentelemetry::KeyValue;
use std::sync::OnceLock;
use std::time::Duration;

/// The meter every Sluice crate defines its instruments on.
pub fn meter() -> Meter {
    opentelemetry::global::meter("sluice")
}

/// Bucket bounds, in seconds, for everything from a quick stage to a long run.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
    3600.0,
];

/// A histogram of seconds with [`SECONDS_BUCKETS`].
pub fn seconds_histogram(name: &'static str, description: &'static str) -> Histogram<f64> {
    meter()
        .f64_histogram(name)
        .with_description(description)
        .with_unit("s")
        .with_boundaries(SECONDS_BUCKETS.to_vec())
        .build()
}

struct StageMetrics {
    duration: Histogram<f64>,
    messages: Counter<u64>,
    wait: Histogram<f64>,
    lag: Gauge<f64>,
}

fn stage_metrics() -> &'static StageMetrics {
    static METRICS: OnceLock<StageMetrics> = OnceLock::new();
    METRICS.get_or_init(|| StageMetrics {
        duration: seconds_histogram(
            "sluice_stage_duration_seconds",
            "Time a stage took to handle one message (a chunk, for extract, transform and load)",
        ),
        messages: meter()
            .u64_counter("sluice_messages_total")
            .with_description(
                "Messages consumed, by how they ended: ok, retried, dead_lettered, discarded",
            )
            .build(),
        wait: seconds_histogram(
            "sluice_queue_wait_seconds",
            "Time a message waited in its queue before a worker took it",
        ),
        lag: meter()
            .f64_gauge("sluice_consumer_lag_seconds")
            .with_description("How long the last message a worker took had waited in its queue")
            .with_unit("s")
            .build(),
    })
}

/// Records one handled message.
pub fn record_message(stage: &'static str, queue: &str, outcome: &'static str, took: Duration) {
    let metrics = stage_metrics();
    metrics.duration.record(
        took.as_secs_f64(),
        &[
            KeyValue::new("stage", stage),
            KeyValue::new("outcome", outcome),
        ],
    );
    metrics.messages.add(
        1,
        &[
            KeyValue::new("queue", queue.to_string()),
            KeyValue::new("outcome", outcome),
        ],
    );
}

/// Records how long a message waited in `queue` before it was taken.
pub fn record_wait(queue: &str, waited: Duration) {
    let metrics = stage_metrics();
    let queue = [KeyValue::new("queue", queue.to_string())];
    metrics.wait.record(waited.as_secs_f64(), &queue);
    metrics.lag.record(waited.as_secs_f64(), &queue);
}
