//! The shared consume loop against a real RabbitMQ: a message that keeps failing is retried
//! `max_attempts` times, then dead-lettered with its error and reported; a good one is acked.

use serde::{Deserialize, Serialize};
use sluice_proto::headers::{TraceContext, LAST_ERROR};
use sluice_proto::stage::{run_stage, Delivered, Outgoing, Stage, StageOptions};
use sluice_proto::topology::QueueRole;
use sluice_proto::{Bus, ErrorCode, Message, StageError, Topology};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[derive(Debug, Serialize, Deserialize)]
struct Work {
    poison: bool,
}
impl Message for Work {
    const ROUTING_KEY: &'static str = "chunk.task";
}

#[derive(Debug, Serialize, Deserialize)]
struct GaveUp {
    attempts: u32,
}
impl Message for GaveUp {
    const ROUTING_KEY: &'static str = "chunk.failed";
}

struct Flaky {
    calls: AtomicU32,
}

impl Stage for Flaky {
    type Input = Work;
    const NAME: &'static str = "flaky";
    const QUEUE: QueueRole = QueueRole::Extract;

    async fn handle(&self, work: Work, _: &Delivered) -> Result<Vec<Outgoing>, StageError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if work.poison {
            Err(StageError::retryable(
                ErrorCode::SourceQuery,
                "the source is on fire",
            ))
        } else {
            Ok(Vec::new())
        }
    }

    fn on_give_up(&self, _: &Work, attempts: u32, _: &StageError) -> Vec<Outgoing> {
        vec![Outgoing::message(&GaveUp { attempts }).unwrap()]
    }
}

async fn wait_depth(bus: &Bus, queue: &str, depth: u32) {
    let start = Instant::now();
    while bus.queue_depth(queue).await.unwrap() != depth {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{queue} never reached {depth}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_messages_are_dead_lettered_after_max_attempts_and_reported() {
    let topology = Topology::new(format!("stage_{}", uuid::Uuid::new_v4().simple()));
    let bus = Bus::connect(AMQP, &topology).await.unwrap();
    let stage = Arc::new(Flaky {
        calls: AtomicU32::new(0),
    });
    let shutdown = CancellationToken::new();
    let options = StageOptions {
        concurrency: 2,
        max_attempts: 3,
        retry_base: Duration::from_millis(20),
        readiness: Default::default(),
    };
    let readiness = options.readiness.clone();
    let loop_task = tokio::spawn(run_stage(
        stage.clone(),
        AMQP.to_string(),
        topology.clone(),
        options,
        shutdown.clone(),
    ));

    bus.publish(&Work { poison: false }, &TraceContext::new_trace())
        .await
        .unwrap();
    // The poisoned message carries properties of its own, which every copy keeps.
    bus.publish_copy(
        &topology.exchange(),
        Work::ROUTING_KEY,
        &sluice_proto::envelope::encode(&Work { poison: true }).unwrap(),
        &lapin::BasicProperties::default()
            .with_message_id("poison-1".into())
            .with_correlation_id("case-7".into()),
        sluice_proto::headers::build(&TraceContext::new_trace(), 1, None),
    )
    .await
    .unwrap();

    let dlq = topology.dead_letter_queue(QueueRole::Extract);
    wait_depth(&bus, &dlq, 1).await;
    assert!(
        readiness.broker_ready(),
        "the consuming loop says it is connected"
    );
    wait_depth(&bus, &topology.queue(QueueRole::Results), 1).await;
    wait_depth(&bus, &topology.queue(QueueRole::Extract), 0).await;
    assert_eq!(
        stage.calls.load(Ordering::SeqCst),
        1 + 3,
        "one good call, three poisoned attempts"
    );

    let channel = bus.channel().await.unwrap();
    let dead = channel
        .basic_get(
            dlq.as_str().into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("a dead letter");
    let properties = &dead.delivery.properties;
    assert_eq!(
        (
            properties.message_id().as_ref().map(|s| s.as_str()),
            properties.correlation_id().as_ref().map(|s| s.as_str())
        ),
        (Some("poison-1"), Some("case-7")),
        "the dead letter keeps the message's properties"
    );
    let headers = dead.delivery.properties.headers().clone().unwrap();
    let error = match headers.inner().get(LAST_ERROR) {
        Some(lapin::types::AMQPValue::LongString(s)) => {
            String::from_utf8_lossy(s.as_bytes()).to_string()
        }
        other => panic!("no error header: {other:?}"),
    };
    assert!(error.contains("the source is on fire"), "{error}");
    let report = channel
        .basic_get(
            topology.queue(QueueRole::Results).as_str().into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("a failure report");
    let gave_up: GaveUp = sluice_proto::envelope::decode(&report.delivery.data).unwrap();
    assert_eq!(gave_up.attempts, 3);

    shutdown.cancel();
    loop_task.await.unwrap();
    assert!(!readiness.broker_ready(), "a stopped loop is not ready");
    topology.delete(&channel).await.unwrap();
    bus.close().await;
}
