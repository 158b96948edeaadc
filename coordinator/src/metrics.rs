//! The coordinator's metrics: runs active, runs finished by outcome and how long they took,
//! chunks waiting for their run's window, and every queue's depth and consumers (dead-letter
//! queues included), sampled every few seconds from the control plane and the broker. The
//! consumers counted size the chunk window.

use crate::window::ChunkWindow;
use deadpool_postgres::Pool;
use opentelemetry::metrics::{Counter, Gauge, Histogram};
use opentelemetry::KeyValue;
use sluice_proto::metrics::{meter, seconds_histogram};
use sluice_proto::topology::QueueRole;
use sluice_proto::{Bus, Topology};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often queues and active runs are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

struct CoordinatorMetrics {
    runs_active: Gauge<u64>,
    runs_finished: Counter<u64>,
    run_duration: Histogram<f64>,
    queue_messages: Gauge<u64>,
    queue_consumers: Gauge<u64>,
    chunks_waiting: Gauge<u64>,
}

fn metrics() -> &'static CoordinatorMetrics {
    static METRICS: OnceLock<CoordinatorMetrics> = OnceLock::new();
    METRICS.get_or_init(|| CoordinatorMetrics {
        runs_active: meter()
            .u64_gauge("sluice_runs_active")
            .with_description("Runs queued, planning or running")
            .build(),
        runs_finished: meter()
            .u64_counter("sluice_runs_finished_total")
            .with_description(
                "Runs that ended, by outcome: succeeded, partially_succeeded, failed, cancelled",
            )
            .build(),
        run_duration: seconds_histogram(
            "sluice_run_duration_seconds",
            "Time from a run's request to its end, by outcome",
        ),
        queue_messages: meter()
            .u64_gauge("sluice_queue_messages")
            .with_description("Messages ready in each queue, dead-letter queues included")
            .build(),
        queue_consumers: meter()
            .u64_gauge("sluice_queue_consumers")
            .with_description("Consumers of each queue")
            .build(),
        chunks_waiting: meter()
            .u64_gauge("sluice_chunks_waiting")
            .with_description("Chunks of running runs waiting for a place in their run's window")
            .build(),
    })
}

/// Records a run that ended with `outcome` after `seconds`.
pub fn run_finished(outcome: &str, seconds: f64) {
    let outcome = [KeyValue::new("outcome", outcome.to_string())];
    metrics().runs_finished.add(1, &outcome);
    metrics().run_duration.record(seconds.max(0.0), &outcome);
}

/// Samples active runs and queue depths until `shutdown` fires, and sizes the chunk window to
/// the workers it counts on the stages' queues.
pub async fn watch(
    pool: Pool,
    amqp_url: String,
    topology: Topology,
    window: Arc<ChunkWindow>,
    shutdown: CancellationToken,
) {
    let mut bus: Option<Bus> = None;
    loop {
        if let Err(e) = sample_runs(&pool).await {
            tracing::debug!(error = %e, "could not count active runs");
        }
        if bus.is_none() {
            bus = Bus::connect(&amqp_url, &topology).await.ok();
        }
        if let Some(connected) = &bus {
            if let Err(e) = sample_queues(connected, &topology, &window).await {
                tracing::debug!(error = %e, "could not sample queue depths");
                bus = None;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
    if let Some(bus) = bus {
        bus.close().await;
    }
}

async fn sample_runs(pool: &Pool) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let client = pool.get().await?;
    let active: i64 = client
        .query_one(
            "SELECT count(*) FROM control.runs WHERE status IN ('queued', 'planning', 'running')",
            &[],
        )
        .await?
        .get(0);
    metrics().runs_active.record(active.max(0) as u64, &[]);
    let waiting: i64 = client
        .query_one(
            "SELECT count(*) FROM control.chunks WHERE released_at IS NULL AND status = 'pending'",
            &[],
        )
        .await?
        .get(0);
    metrics().chunks_waiting.record(waiting.max(0) as u64, &[]);
    Ok(())
}

async fn sample_queues(
    bus: &Bus,
    topology: &Topology,
    window: &ChunkWindow,
) -> Result<(), sluice_proto::bus::BusError> {
    let mut workers = 0;
    for role in QueueRole::ALL {
        for queue in [topology.queue(role), topology.dead_letter_queue(role)] {
            let stats = bus.queue_stats(&queue).await?;
            if queue == topology.queue(role)
                && matches!(
                    role,
                    QueueRole::Extract | QueueRole::Transform | QueueRole::Load
                )
            {
                workers = workers.max(stats.consumers);
            }
            let label = [KeyValue::new("queue", queue)];
            metrics()
                .queue_messages
                .record(u64::from(stats.messages), &label);
            metrics()
                .queue_consumers
                .record(u64::from(stats.consumers), &label);
        }
    }
    window.set_workers(workers);
    Ok(())
}
