//! The extract stage's metrics: rows and bytes read from sources, per workspace.

use opentelemetry::metrics::Counter;
use opentelemetry::KeyValue;
use sluice_proto::metrics::meter;
use std::sync::OnceLock;

struct ExtractMetrics {
    rows: Counter<u64>,
    bytes: Counter<u64>,
}

fn metrics() -> &'static ExtractMetrics {
    static METRICS: OnceLock<ExtractMetrics> = OnceLock::new();
    METRICS.get_or_init(|| ExtractMetrics {
        rows: meter()
            .u64_counter("sluice_rows_read_total")
            .with_description("Rows read from sources into staged chunks")
            .build(),
        bytes: meter()
            .u64_counter("sluice_bytes_read_total")
            .with_description("Bytes of the Parquet objects staged from sources")
            .build(),
    })
}

/// Records one extracted chunk, on the metrics and on the stage's span.
pub fn record_chunk(workspace: i64, rows: u64, bytes: u64) {
    let labels = [KeyValue::new("workspace", workspace)];
    metrics().rows.add(rows, &labels);
    metrics().bytes.add(bytes, &labels);
    let span = tracing::Span::current();
    span.record("sluice.rows", rows);
    span.record("sluice.bytes", bytes);
}
