//! The consume loop shared by every role: decode, span, call the stage, publish its output with
//! confirms, then ack; retry with backoff up to `max_attempts`, then dead-letter and report.
//! A stage itself is a plain async function of its input, testable without RabbitMQ.

use crate::bus::{Bus, BusError, Reply};
use crate::cancel::{self, CancelledRuns};
use crate::envelope::{encode, Incoming, Message};
use crate::error::{ErrorCode, StageError};
use crate::headers::{self, TraceContext};
use crate::health::Readiness;
use crate::messages::ChunkRef;
use crate::topology::{QueueRole, Topology};
use crate::{metrics, trace};
use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// A message a stage wants published once its work is durable.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Where the message goes.
    pub routing_key: &'static str,
    /// The encoded envelope.
    pub payload: Vec<u8>,
    /// A reply to a request's `reply_to` queue instead of a message on the topic exchange.
    pub reply: Option<Reply>,
    /// The span the message is published from, when not the stage's own (a run's chunk).
    pub trace: Option<TraceContext>,
}

impl Outgoing {
    /// Encodes a message for publishing.
    pub fn message<M: Message>(message: &M) -> Result<Self, StageError> {
        let payload = encode(message)
            .map_err(|e| StageError::permanent(ErrorCode::Internal, e.to_string()))?;
        Ok(Outgoing {
            routing_key: M::ROUTING_KEY,
            payload,
            reply: None,
            trace: None,
        })
    }

    /// Publishes the message from the span `trace` names instead of the stage's.
    pub fn from_span(mut self, trace: TraceContext) -> Self {
        self.trace = Some(trace);
        self
    }

    /// A reply to the request that was `delivered`, if it asked for one.
    pub fn reply_to<M: Message>(
        delivered: &Delivered,
        message: &M,
    ) -> Result<Option<Self>, StageError> {
        let Some(queue) = &delivered.reply.reply_to else {
            return Ok(None);
        };
        let mut out = Outgoing::message(message)?;
        out.reply = Some(Reply {
            reply_to: Some(queue.clone()),
            correlation_id: delivered.reply.correlation_id.clone(),
        });
        Ok(Some(out))
    }
}

/// The `ChunkFailed` report a pipeline stage publishes when it gives up on a chunk.
pub fn report_failure(
    chunk: &crate::messages::ChunkRef,
    stage: crate::messages::StageName,
    attempts: u32,
    error: &StageError,
) -> Vec<Outgoing> {
    let failed = crate::messages::ChunkFailed {
        chunk: chunk.clone(),
        stage,
        attempts,
        error: error.clone(),
    };
    Outgoing::message(&failed).into_iter().collect()
}

/// What a stage call knows about its delivery.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The trace the delivered message carried.
    pub trace: TraceContext,
    /// How many times this message was delivered before (0 the first time).
    pub attempt: u32,
    /// Where the requester wants a reply, if anywhere.
    pub reply: Reply,
}

/// One step of the pipeline (or a coordinator consumer) as the shared loop sees it.
pub trait Stage: Send + Sync + 'static {
    /// The message this stage consumes.
    type Input: Incoming;
    /// The stage's name in logs and spans.
    const NAME: &'static str;
    /// The queue it consumes.
    const QUEUE: QueueRole;

    /// Does the work for one message and returns what to publish next.
    fn handle(
        &self,
        input: Self::Input,
        delivered: &Delivered,
    ) -> impl Future<Output = Result<Vec<Outgoing>, StageError>> + Send;

    /// The chunk a message is about: its run's messages are discarded once the run is
    /// cancelled, and the stage's span and metrics are labelled with it.
    fn chunk_of(_input: &Self::Input) -> Option<&ChunkRef> {
        None
    }

    /// What to publish when the message is given up on (after dead-lettering it).
    fn on_give_up(
        &self,
        _input: &Self::Input,
        _attempts: u32,
        _error: &StageError,
    ) -> Vec<Outgoing> {
        Vec::new()
    }
}

/// How a stage loop runs.
#[derive(Debug, Clone)]
pub struct StageOptions {
    /// Messages handled at once; also the prefetch.
    pub concurrency: usize,
    /// Attempts before a message is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, capped at 30 s.
    pub retry_base: Duration,
    /// Where the loop reports whether it is connected to the broker.
    pub readiness: Readiness,
}

impl Default for StageOptions {
    fn default() -> Self {
        StageOptions {
            concurrency: 2,
            max_attempts: 5,
            retry_base: Duration::from_millis(500),
            readiness: Readiness::default(),
        }
    }
}

/// Runs a stage until `shutdown` fires: reconnects with backoff when the broker goes away, and
/// lets in-flight messages finish before returning.
pub async fn run_stage<S: Stage>(
    stage: Arc<S>,
    amqp_url: String,
    topology: Topology,
    options: StageOptions,
    shutdown: CancellationToken,
) {
    let queue = topology.queue(S::QUEUE);
    let cancelled = CancelledRuns::default();
    options.readiness.set(S::NAME, false);
    loop {
        let Some(bus) = Bus::connect_with_retry(&amqp_url, &topology, &shutdown).await else {
            return;
        };
        if let Err(e) = cancel::listen(&bus, cancelled.clone()).await {
            tracing::warn!(stage = S::NAME, error = %e, "could not listen for run cancellations");
        }
        let bus = Arc::new(bus);
        tracing::info!(stage = S::NAME, %queue, concurrency = options.concurrency, "consuming");
        let consumed = consume(&stage, &bus, &queue, &options, &cancelled, &shutdown).await;
        options.readiness.set(S::NAME, false);
        match consumed {
            Ok(()) => {
                bus.close().await;
                return;
            }
            Err(e) => tracing::warn!(stage = S::NAME, error = %e, "lost RabbitMQ; reconnecting"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn consume<S: Stage>(
    stage: &Arc<S>,
    bus: &Arc<Bus>,
    queue: &str,
    options: &StageOptions,
    cancelled: &CancelledRuns,
    shutdown: &CancellationToken,
) -> Result<(), BusError> {
    let prefetch = options.concurrency.clamp(1, u16::MAX as usize) as u16;
    let mut consumer = bus.consume(queue, prefetch).await?;
    options.readiness.set(S::NAME, true);
    let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut in_flight = JoinSet::new();
    let outcome = loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            next = consumer.next() => next,
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(e)) => break Err(BusError::Amqp(e)),
            None => {
                break Err(BusError::Amqp(lapin::Error::from(
                    lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed),
                )))
            }
        };
        let permit = slots.clone().acquire_owned().await.expect("semaphore open");
        let (stage, bus, options, queue, cancelled) = (
            stage.clone(),
            bus.clone(),
            options.clone(),
            queue.to_string(),
            cancelled.clone(),
        );
        in_flight.spawn(async move {
            process(&*stage, &bus, &queue, &options, &cancelled, delivery).await;
            drop(permit);
        });
        while in_flight.try_join_next().is_some() {}
    };
    while in_flight.join_next().await.is_some() {}
    outcome
}

async fn process<S: Stage>(
    stage: &S,
    bus: &Bus,
    queue: &str,
    options: &StageOptions,
    cancelled: &CancelledRuns,
    delivery: Delivery,
) {
    let headers = delivery.properties.headers().as_ref();
    let delivered = Delivered {
        trace: headers::trace_of(headers),
        attempt: headers::attempt_of(headers),
        reply: Reply {
            reply_to: delivery
                .properties
                .reply_to()
                .as_ref()
                .map(|q| q.to_string()),
            correlation_id: delivery
                .properties
                .correlation_id()
                .as_ref()
                .map(|c| c.to_string()),
        },
    };
    if let Some(waited) = headers::waited(headers) {
        metrics::record_wait(queue, waited);
    }
    let span = tracing::info_span!(
        "stage",
        otel.name = S::NAME,
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        messaging.system = "rabbitmq",
        messaging.operation.type = "process",
        messaging.destination.name = queue,
        sluice.attempt = delivered.attempt,
        sluice.workspace_id = tracing::field::Empty,
        sluice.import_id = tracing::field::Empty,
        sluice.run = tracing::field::Empty,
        sluice.chunk = tracing::field::Empty,
        sluice.rows = tracing::field::Empty,
        sluice.bytes = tracing::field::Empty,
        sluice.outcome = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    trace::adopt(&span, &delivered.trace);
    let own = trace::own(&span, &delivered.trace);
    let started = Instant::now();
    let outcome = async {
        let input = match S::Input::decode(&delivery.data) {
            Ok(input) => input,
            Err(e) => {
                tracing::error!(error = %e, "undecodable message; dead-lettering it");
                dead_letter(bus, queue, &delivery, &delivered, &e.to_string()).await;
                return Outcome::DeadLettered;
            }
        };
        if let Some(chunk) = S::chunk_of(&input) {
            let span = tracing::Span::current();
            span.record("sluice.workspace_id", chunk.workspace_id);
            span.record("sluice.import_id", chunk.import_id);
            span.record("sluice.run", tracing::field::display(chunk.run_id));
            span.record("sluice.chunk", chunk.seq);
            if cancelled.contains(&chunk.run_id) {
                tracing::info!(run = %chunk.run_id, "the run was cancelled; message acknowledged and discarded");
                ack(&delivery).await;
                return Outcome::Discarded;
            }
        }
        // A panic in a stage is a bug, not a reason to hold the message forever.
        let result = match std::panic::AssertUnwindSafe(stage.handle(input, &delivered))
            .catch_unwind()
            .await
        {
            Ok(result) => result,
            Err(_) => Err(StageError::permanent(ErrorCode::Internal, format!("{} stage panicked", S::NAME))),
        };
        match result {
            Ok(outgoing) => match publish_all(bus, &own, &outgoing).await {
                Ok(()) => {
                    ack(&delivery).await;
                    Outcome::Ok
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not publish the stage's output; requeueing");
                    let _ = delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await;
                    Outcome::Requeued
                }
            },
            // Another worker, holding the fleet's key, can do what this one cannot.
            Err(error) if error.code == ErrorCode::WrongKey => {
                tracing::error!(error = %error, "this process cannot open what the fleet sealed; handing the message back and saying not-ready");
                options.readiness.set(MASTER_KEY_CHECK, false);
                tokio::time::sleep(WRONG_KEY_PAUSE).await;
                let _ = delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await;
                Outcome::Requeued
            }
            Err(error) if error.retryable && delivered.attempt < options.max_attempts => {
                let delay = retry_delay(options.retry_base, delivered.attempt);
                tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "stage failed; will retry");
                tokio::time::sleep(delay).await;
                let retry = headers::build(&delivered.trace, delivered.attempt + 1, Some(&error.to_string()));
                match bus
                    .publish_copy("", queue, &delivery.data, &delivery.properties, retry)
                    .await
                {
                    Ok(()) => ack(&delivery).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not requeue for retry");
                        let _ = delivery
                            .nack(BasicNackOptions {
                                requeue: true,
                                ..Default::default()
                            })
                            .await;
                    }
                }
                Outcome::Retried
            }
            Err(error) => {
                tracing::error!(error = %error, "stage gave up; dead-lettering the message");
                // Decode again: the input was moved into `handle`.
                if let Ok(input) = S::Input::decode(&delivery.data) {
                    let report = stage.on_give_up(&input, delivered.attempt, &error);
                    if let Err(e) = publish_all(bus, &own, &report).await {
                        tracing::warn!(error = %e, "could not report the failure; requeueing");
                        let _ = delivery
                            .nack(BasicNackOptions {
                                requeue: true,
                                ..Default::default()
                            })
                            .await;
                        return Outcome::Requeued;
                    }
                }
                dead_letter(bus, queue, &delivery, &delivered, &error.to_string()).await;
                Outcome::DeadLettered
            }
        }
    }
    .instrument(span.clone())
    .await;
    span.record("sluice.outcome", outcome.as_str());
    if matches!(outcome, Outcome::Retried | Outcome::DeadLettered) {
        span.record("otel.status_code", "ERROR");
    }
    metrics::record_message(S::NAME, queue, outcome.as_str(), started.elapsed());
}

/// The readiness check that says whether this process holds the fleet's master key.
pub const MASTER_KEY_CHECK: &str = "master_key";

/// How long a process that cannot open a message waits before handing it back, so a fleet
/// of such processes does not spin on it.
const WRONG_KEY_PAUSE: Duration = Duration::from_secs(2);

/// How a consumed message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// Failed and published again for a later attempt.
    Retried,
    DeadLettered,
    /// Its run was cancelled.
    Discarded,
    /// Handed back to the broker (its output could not be published).
    Requeued,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Retried => "retried",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Discarded => "discarded",
            Outcome::Requeued => "requeued",
        }
    }
}

/// Publishes a stage's output from the span `from` (or each message's own span).
async fn publish_all(
    bus: &Bus,
    from: &TraceContext,
    outgoing: &[Outgoing],
) -> Result<(), BusError> {
    let exchange = bus.topology().exchange();
    for message in outgoing {
        let headers = headers::build(message.trace.as_ref().unwrap_or(from), 1, None);
        match &message.reply {
            None => {
                bus.publish_raw(&exchange, message.routing_key, &message.payload, headers)
                    .await?
            }
            Some(reply) => {
                let queue = reply.reply_to.as_deref().unwrap_or_default();
                let answer = Reply {
                    reply_to: None,
                    correlation_id: reply.correlation_id.clone(),
                };
                // A requester that went away does not make the request fail.
                match bus
                    .publish_with("", queue, &message.payload, headers, &answer)
                    .await
                {
                    Err(BusError::Unroutable { .. }) => {
                        tracing::warn!(queue, "the reply queue does not exist; reply dropped")
                    }
                    other => other?,
                }
            }
        }
    }
    Ok(())
}

/// Moves a message to its queue's dead-letter queue with the error in a header, then acks it.
async fn dead_letter(
    bus: &Bus,
    queue: &str,
    delivery: &Delivery,
    delivered: &Delivered,
    error: &str,
) {
    let headers = headers::build(&delivered.trace, delivered.attempt, Some(error));
    match bus
        .publish_copy(
            &bus.topology().dead_letter_exchange(),
            queue,
            &delivery.data,
            &delivery.properties,
            headers,
        )
        .await
    {
        Ok(()) => ack(delivery).await,
        Err(e) => {
            tracing::warn!(error = %e, "could not dead-letter; rejecting to the broker's dead-letter route");
            let _ = delivery
                .nack(BasicNackOptions {
                    requeue: false,
                    ..Default::default()
                })
                .await;
        }
    }
}

async fn ack(delivery: &Delivery) {
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        tracing::warn!(error = %e, "ack failed; the message will be redelivered");
    }
}

/// Exponential backoff: `base * 2^(attempt-1)`, capped at 30 seconds.
pub fn retry_delay(base: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    (base * factor).min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_and_is_capped() {
        let base = Duration::from_millis(500);
        assert_eq!(retry_delay(base, 1), Duration::from_millis(500));
        assert_eq!(retry_delay(base, 3), Duration::from_secs(2));
        assert_eq!(retry_delay(base, 40), Duration::from_secs(30));
    }
}
