//! The transform stage's metrics: rows accepted by the mapping and rows rejected, per
//! workspace.

use opentelemetry::metrics::Counter;
use opentelemetry::KeyValue;
use sluice_proto::metrics::meter;
use std::sync::OnceLock;

struct TransformMetrics {
    accepted: Counter<u64>,
    rejected: Counter<u64>,
}

fn metrics() -> &'static TransformMetrics {
    static METRICS: OnceLock<TransformMetrics> = OnceLock::new();
    METRICS.get_or_init(|| TransformMetrics {
        accepted: meter()
            .u64_counter("sluice_rows_transformed_total")
            .with_description("Rows the mapping accepted")
            .build(),
        rejected: meter()
            .u64_counter("sluice_rows_rejected_total")
            .with_description(
                "Rows rejected into the run's error stream, by the stage that rejected them",
            )
            .build(),
    })
}

/// Records one transformed chunk, on the metrics and on the stage's span.
pub fn record_chunk(workspace: i64, accepted: u64, rejected: u64) {
    metrics()
        .accepted
        .add(accepted, &[KeyValue::new("workspace", workspace)]);
    metrics().rejected.add(
        rejected,
        &[
            KeyValue::new("workspace", workspace),
            KeyValue::new("stage", "transform"),
        ],
    );
    tracing::Span::current().record("sluice.rows", accepted + rejected);
}
