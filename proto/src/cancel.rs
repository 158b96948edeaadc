//! Run cancellations: when an import is stopped, its active run is cancelled and a
//! `RunCancelled` is broadcast; every worker process listening remembers the run and
//! acknowledges and discards that run's remaining chunk messages instead of working on them.

use crate::bus::{Bus, BusError};
use crate::envelope::{decode, Message};
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Broadcast when a run is cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCancelled {
    /// The cancelled run.
    pub run_id: Uuid,
    /// Why it was cancelled, as recorded.
    pub reason: String,
}

impl Message for RunCancelled {
    const ROUTING_KEY: &'static str = "run.cancelled";
}

/// How many cancelled runs a process remembers.
const REMEMBERED: usize = 10_000;

/// The runs this process has heard were cancelled (the most recent `REMEMBERED`).
#[derive(Debug, Clone, Default)]
pub struct CancelledRuns {
    inner: Arc<Mutex<(HashSet<Uuid>, VecDeque<Uuid>)>>,
}

impl CancelledRuns {
    /// Remembers a cancelled run.
    pub fn insert(&self, run: Uuid) {
        let mut guard = self.inner.lock().expect("lock");
        let (set, order) = &mut *guard;
        if set.insert(run) {
            order.push_back(run);
            if order.len() > REMEMBERED {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
        }
    }

    /// True when `run` was cancelled.
    pub fn contains(&self, run: &Uuid) -> bool {
        self.inner.lock().expect("lock").0.contains(run)
    }
}

/// Listens for cancellations on a queue of this connection's own (exclusive, deleted with
/// it), bound to `run.cancelled`, until the connection closes.
pub async fn listen(bus: &Bus, runs: CancelledRuns) -> Result<(), BusError> {
    let channel = bus.channel().await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.name().as_str().into(),
            bus.topology().exchange().as_str().into(),
            RunCancelled::ROUTING_KEY.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.name().as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            if let Ok(cancelled) = decode::<RunCancelled>(&delivery.data) {
                tracing::info!(run = %cancelled.run_id, reason = %cancelled.reason, "run cancelled; its chunks will be discarded");
                runs.insert(cancelled.run_id);
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_recent_cancellations_are_remembered() {
        let runs = CancelledRuns::default();
        let first = Uuid::new_v4();
        runs.insert(first);
        assert!(runs.contains(&first));
        for _ in 0..REMEMBERED {
            runs.insert(Uuid::new_v4());
        }
        assert!(!runs.contains(&first), "the oldest is forgotten");
    }
}
