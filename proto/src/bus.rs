//! The bus over RabbitMQ: one connection, a confirm-mode channel for publishing persistent
//! messages, and consumer channels with manual acks and a bounded prefetch.

use crate::envelope::{encode, Message};
use crate::headers::{self, TraceContext};
use crate::topology::Topology;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Why the bus could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker could not be reached.
    #[error("RabbitMQ at {url}: {source}")]
    Connect {
        /// The broker's address, without its password.
        url: String,
        /// Why.
        source: lapin::Error,
    },
    /// The broker's URL could not be read.
    #[error("the RabbitMQ URL {url} is not valid: {reason}")]
    Url {
        /// The URL, without its password.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The broker failed an operation.
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker refused a message.
    #[error("the broker refused message {routing_key} (nack)")]
    Nacked {
        /// The message's routing key.
        routing_key: String,
    },
    /// No queue takes the message: the topology is missing.
    #[error("no queue is bound to routing key {routing_key}; the topology is not declared")]
    Unroutable {
        /// The message's routing key.
        routing_key: String,
    },
    /// The message could not be encoded.
    #[error(transparent)]
    Encode(#[from] crate::envelope::EnvelopeError),
}

/// The request/reply properties of a message (AMQP `reply_to` and `correlation_id`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// The queue a reply goes to, for a request that wants one.
    pub reply_to: Option<String>,
    /// Ties a reply to its request.
    pub correlation_id: Option<String>,
}

/// A connection to RabbitMQ with the topology declared and a publisher channel in confirm mode.
pub struct Bus {
    connection: Connection,
    publisher: Channel,
    topology: Topology,
}

/// Delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

/// What the broker says of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages ready for delivery (not counting those delivered and not yet acked).
    pub messages: u32,
    /// Consumers attached to the queue.
    pub consumers: u32,
}

/// The largest AMQP frame a connection asks for, unless its URL sets `frame_max`. The
/// client keeps 32 frames of the negotiated size for each direction of a connection, zeroed
/// at connect: RabbitMQ's default of 128 KiB holds 8 MiB in every process, 32 KiB holds 2.
/// The fleet's messages are a few KiB; a larger one is sent as several frames.
const FRAME_MAX: u32 = 32 * 1024;

/// The broker's URL as the client reads it, with the fleet's frame size unless it names one.
fn amqp_uri(url: &str) -> Result<AMQPUri, BusError> {
    let mut uri: AMQPUri = url.parse().map_err(|reason| BusError::Url {
        url: redact_url(url),
        reason,
    })?;
    uri.query.frame_max.get_or_insert(FRAME_MAX);
    Ok(uri)
}

/// Times a nacked publish is tried before the nack is an error.
const NACK_RETRIES: u32 = 6;

impl Bus {
    /// Connects, declares the topology and opens the publisher channel.
    pub async fn connect(url: &str, topology: &Topology) -> Result<Self, BusError> {
        let connection = Connection::connect_uri(amqp_uri(url)?, ConnectionProperties::default())
            .await
            .map_err(|source| BusError::Connect {
                url: redact_url(url),
                source,
            })?;
        let publisher = connection.create_channel().await?;
        topology.declare(&publisher).await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Bus {
            connection,
            publisher,
            topology: topology.clone(),
        })
    }

    /// Refuses a broker URL the client cannot read: such a URL never connects, so a role
    /// checks it before it starts instead of retrying it forever.
    pub fn check_url(url: &str) -> Result<(), BusError> {
        amqp_uri(url).map(|_| ())
    }

    /// Connects, retrying with exponential backoff until it works or `shutdown` fires.
    pub async fn connect_with_retry(
        url: &str,
        topology: &Topology,
        shutdown: &CancellationToken,
    ) -> Option<Self> {
        let mut delay = Duration::from_millis(200);
        loop {
            match Bus::connect(url, topology).await {
                Ok(bus) => return Some(bus),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "waiting for RabbitMQ");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    /// The topology this bus declared.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Publishes a message on the topic exchange and waits for the broker's confirm.
    pub async fn publish<M: Message>(
        &self,
        message: &M,
        trace: &TraceContext,
    ) -> Result<(), BusError> {
        let payload = encode(message)?;
        self.publish_raw(
            &self.topology.exchange(),
            M::ROUTING_KEY,
            &payload,
            headers::build(trace, 1, None),
        )
        .await
    }

    /// Publishes bytes with the given headers and waits for the confirm; unroutable messages
    /// are an error, so a message is never silently dropped. A nack (a quorum queue that is
    /// still electing its leader, for one) is retried with backoff a few times: the broker
    /// took no responsibility for the message, and every consumer is idempotent.
    pub async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        headers: FieldTable,
    ) -> Result<(), BusError> {
        self.publish_with(exchange, routing_key, payload, headers, &Reply::default())
            .await
    }

    /// Publishes as `publish_raw` does, with the request/reply properties of `reply`.
    pub async fn publish_with(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        headers: FieldTable,
        reply: &Reply,
    ) -> Result<(), BusError> {
        let mut properties = BasicProperties::default()
            .with_content_type("application/msgpack".into())
            .with_headers(headers);
        if let Some(queue) = &reply.reply_to {
            properties = properties.with_reply_to(queue.as_str().into());
        }
        if let Some(id) = &reply.correlation_id {
            properties = properties.with_correlation_id(id.as_str().into());
        }
        self.publish_properties(exchange, routing_key, payload, properties)
            .await
    }

    /// Publishes a copy of a delivered message: its own properties (message id, correlation
    /// id, reply-to, type, ...) with `headers` in place of its headers.
    pub async fn publish_copy(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        original: &BasicProperties,
        headers: FieldTable,
    ) -> Result<(), BusError> {
        let properties = original.clone().with_headers(headers);
        self.publish_properties(exchange, routing_key, payload, properties)
            .await
    }

    async fn publish_properties(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<(), BusError> {
        let properties = properties.with_delivery_mode(PERSISTENT);
        let mut delay = std::time::Duration::from_millis(50);
        for _ in 1..NACK_RETRIES {
            match self
                .publish_once(exchange, routing_key, payload, properties.clone())
                .await
            {
                Err(BusError::Nacked { .. }) => {
                    tracing::debug!(routing_key, "publish nacked; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
        self.publish_once(exchange, routing_key, payload, properties)
            .await
    }

    async fn publish_once(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<(), BusError> {
        let confirm = self
            .publisher
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                payload,
                properties,
            )
            .await?
            .await?;
        if confirm.is_nack() {
            return Err(BusError::Nacked {
                routing_key: routing_key.to_string(),
            });
        }
        if confirm.take_message().is_some() {
            return Err(BusError::Unroutable {
                routing_key: routing_key.to_string(),
            });
        }
        Ok(())
    }

    /// Starts consuming `queue` on a channel of its own with manual acks and `prefetch` unacked
    /// messages at most.
    pub async fn consume(&self, queue: &str, prefetch: u16) -> Result<Consumer, BusError> {
        let channel = self.connection.create_channel().await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(consumer)
    }

    /// A plain channel, for administrative work (counting or purging queues).
    pub async fn channel(&self) -> Result<Channel, BusError> {
        Ok(self.connection.create_channel().await?)
    }

    /// Number of ready messages in a queue.
    pub async fn queue_depth(&self, queue: &str) -> Result<u32, BusError> {
        Ok(self.queue_stats(queue).await?.messages)
    }

    /// A queue's ready messages and consumers.
    pub async fn queue_stats(&self, queue: &str) -> Result<QueueStats, BusError> {
        let channel = self.connection.create_channel().await?;
        let declared = channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let _ = channel.close(200, "OK".into()).await;
        Ok(QueueStats {
            messages: declared.message_count(),
            consumers: declared.consumer_count(),
        })
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let _ = self.connection.close(200, "OK".into()).await;
    }
}

/// Whether a URL parameter holds a secret: keys, tokens, passwords, credentials.
fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["key", "secret", "token", "password", "credential", "sas"]
        .iter()
        .any(|word| name.contains(word))
        && !name.ends_with("key_id")
}

/// The URL with its password and secret parameters replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "<unparseable url>".to_string();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_param(&k) {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::{amqp_uri, redact_url, BusError, FRAME_MAX};

    #[test]
    fn connections_ask_for_small_frames_unless_the_url_names_a_size() {
        let uri = amqp_uri("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(uri.query.frame_max, Some(FRAME_MAX));
        assert_eq!(uri.authority.port, 5672);
        let own = amqp_uri("amqp://127.0.0.1:5672/%2f?frame_max=131072").unwrap();
        assert_eq!(own.query.frame_max, Some(131072));
        let Err(BusError::Url { url, reason }) = amqp_uri("amqp://u:secret@host:port/") else {
            panic!("a URL with a port that is not a number is refused");
        };
        assert!(
            !url.contains("secret") && !reason.is_empty(),
            "{url}: {reason}"
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert!(!redact_url("postgres://u:pw@h/db").contains("pw"));
        let s3 =
            redact_url("s3://lake/x?aws_access_key_id=AK&aws_secret_access_key=SK&aws_region=eu");
        assert!(
            s3.contains("AK") && !s3.contains("SK") && s3.contains("eu"),
            "{s3}"
        );
        let bq = redact_url("bigquery://p/d?credentials=eyJ&location=US");
        assert!(!bq.contains("eyJ"), "{bq}");
    }
}
