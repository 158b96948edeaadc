//! The queue topology: one topic exchange, a quorum queue per stage with a delivery limit and a
//! dead-letter queue, and the bindings from routing keys to queues.

use crate::envelope::Message;
use crate::messages::{
    ChunkExtracted, ChunkFailed, ChunkLoaded, ChunkTask, ChunkTransformed, RunRequested,
};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

/// The queues of the fleet, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRole {
    /// Chunks to read from their sources.
    Extract,
    /// Chunks to map.
    Transform,
    /// Chunks to load into the stores.
    Load,
    /// Every stage's results, for the coordinator.
    Results,
    /// Run requests and cancellations, for the coordinator.
    Commands,
}

impl QueueRole {
    /// Every queue, in declaration order.
    pub const ALL: [QueueRole; 5] = [
        QueueRole::Extract,
        QueueRole::Transform,
        QueueRole::Load,
        QueueRole::Results,
        QueueRole::Commands,
    ];

    fn suffix(self) -> &'static str {
        match self {
            QueueRole::Extract => "extract",
            QueueRole::Transform => "transform",
            QueueRole::Load => "load",
            QueueRole::Results => "results",
            QueueRole::Commands => "commands",
        }
    }

    /// The routing keys bound to this queue.
    pub fn routing_keys(self) -> &'static [&'static str] {
        match self {
            QueueRole::Extract => &[ChunkTask::ROUTING_KEY],
            QueueRole::Transform => &[ChunkExtracted::ROUTING_KEY],
            QueueRole::Load => &[ChunkTransformed::ROUTING_KEY],
            QueueRole::Results => &[
                ChunkExtracted::ROUTING_KEY,
                ChunkTransformed::ROUTING_KEY,
                ChunkLoaded::ROUTING_KEY,
                ChunkFailed::ROUTING_KEY,
            ],
            QueueRole::Commands => &[RunRequested::ROUTING_KEY],
        }
    }
}

/// Names and limits of the topology. The prefix (default `sluice`) lets several fleets, or
/// parallel tests, share one broker without seeing each other's messages.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The prefix of every exchange and queue name, so fleets can share a broker.
    pub prefix: String,
    /// Deliveries after which the broker itself dead-letters a message (a crash-loop backstop;
    /// workers give up earlier, after `max_attempts`).
    pub delivery_limit: i64,
}

impl Default for Topology {
    fn default() -> Self {
        Topology::new("sluice")
    }
}

impl Topology {
    /// A topology whose names all start with `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Topology {
            prefix: prefix.into(),
            delivery_limit: 20,
        }
    }

    /// The topic exchange every message is published to.
    pub fn exchange(&self) -> String {
        self.prefix.clone()
    }

    /// The exchange dead letters go to.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    /// A role's queue.
    pub fn queue(&self, role: QueueRole) -> String {
        format!("{}.{}", self.prefix, role.suffix())
    }

    /// A role's dead-letter queue.
    pub fn dead_letter_queue(&self, role: QueueRole) -> String {
        format!("{}.{}.dlq", self.prefix, role.suffix())
    }

    /// Declares exchanges, queues and bindings; safe to repeat.
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                self.exchange().into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                self.dead_letter_exchange().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        let queue_options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for role in QueueRole::ALL {
            let queue = self.queue(role);
            let dlq = self.dead_letter_queue(role);
            let mut dlq_args = FieldTable::default();
            dlq_args.insert("x-queue-type".into(), text("quorum"));
            channel
                .queue_declare(dlq.clone().into(), queue_options, dlq_args)
                .await?;
            channel
                .queue_bind(
                    dlq.into(),
                    self.dead_letter_exchange().into(),
                    queue.clone().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;

            let mut args = FieldTable::default();
            args.insert("x-queue-type".into(), text("quorum"));
            args.insert(
                "x-dead-letter-exchange".into(),
                text(&self.dead_letter_exchange()),
            );
            args.insert("x-dead-letter-routing-key".into(), text(&queue));
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(self.delivery_limit),
            );
            channel
                .queue_declare(queue.clone().into(), queue_options, args)
                .await?;
            for key in role.routing_keys() {
                channel
                    .queue_bind(
                        queue.clone().into(),
                        self.exchange().into(),
                        (*key).into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Deletes every queue and exchange of this topology (used by tests to leave nothing behind).
    pub async fn delete(&self, channel: &Channel) -> lapin::Result<()> {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        for role in QueueRole::ALL {
            for queue in [self.queue(role), self.dead_letter_queue(role)] {
                channel
                    .queue_delete(queue.into(), QueueDeleteOptions::default())
                    .await?;
            }
        }
        for exchange in [self.exchange(), self.dead_letter_exchange()] {
            channel
                .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_queue_hears_every_stage_outcome() {
        let keys = QueueRole::Results.routing_keys();
        for key in [
            ChunkExtracted::ROUTING_KEY,
            ChunkTransformed::ROUTING_KEY,
            ChunkLoaded::ROUTING_KEY,
            ChunkFailed::ROUTING_KEY,
        ] {
            assert!(keys.contains(&key), "{key} is not bound to results");
        }
        assert_eq!(Topology::new("t1").queue(QueueRole::Load), "t1.load");
        assert_eq!(
            Topology::new("t1").dead_letter_queue(QueueRole::Load),
            "t1.load.dlq"
        );
    }
}
