//! The versioned envelope every message travels in, encoded with MessagePack (rmp-serde).

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Version of the message schema this build writes; readers accept the same major version.
pub const MESSAGE_VERSION: u16 = 1;

/// A message type that crosses a process boundary, with the routing key it is published under.
pub trait Message: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Routing key on the topic exchange; the topology binds queues to these keys.
    const ROUTING_KEY: &'static str;
}

/// Anything a consumer can decode from a payload: a single message type, or an enum of several
/// (the results queue hears every stage's outcome).
pub trait Incoming: Sized + Send + 'static {
    /// Decodes a payload.
    fn decode(payload: &[u8]) -> Result<Self, EnvelopeError>;
}

impl<M: Message> Incoming for M {
    fn decode(payload: &[u8]) -> Result<Self, EnvelopeError> {
        decode::<M>(payload)
    }
}

/// The kind written in a payload's envelope, without decoding its body.
pub fn kind_of(payload: &[u8]) -> Result<String, EnvelopeError> {
    let head: Envelope<serde::de::IgnoredAny> = rmp_serde::from_slice(payload)?;
    if head.version != MESSAGE_VERSION {
        return Err(EnvelopeError::Version {
            found: head.version,
        });
    }
    Ok(head.kind)
}

/// The wire form of a message: schema version, kind (the routing key) and body.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// The envelope's format version.
    pub version: u16,
    /// The message's kind, which names its body's type.
    pub kind: String,
    /// The message itself.
    pub body: T,
}

/// Why a payload could not be read as the expected message.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error(
        "message version {found} is not supported (this build reads version {MESSAGE_VERSION})"
    )]
    /// A message of a version this build does not read.
    Version {
        /// The version the message has.
        found: u16,
    },
    /// A message of another kind than the queue carries.
    #[error("expected a {expected} message, got {found}")]
    Kind {
        /// The kind the queue carries.
        expected: &'static str,
        /// The kind the message has.
        found: String,
    },
    /// The body could not be decoded.
    #[error("message body could not be decoded: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// The body could not be encoded.
    #[error("message could not be encoded: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

/// Encodes a message in its envelope (named fields, so fields can be added compatibly).
pub fn encode<M: Message>(body: &M) -> Result<Vec<u8>, EnvelopeError> {
    let envelope = Envelope {
        version: MESSAGE_VERSION,
        kind: M::ROUTING_KEY.to_string(),
        body,
    };
    Ok(rmp_serde::to_vec_named(&envelope)?)
}

/// Decodes an envelope, checking its version and kind first.
pub fn decode<M: Message>(payload: &[u8]) -> Result<M, EnvelopeError> {
    let head: Envelope<serde::de::IgnoredAny> = rmp_serde::from_slice(payload)?;
    if head.version != MESSAGE_VERSION {
        return Err(EnvelopeError::Version {
            found: head.version,
        });
    }
    if head.kind != M::ROUTING_KEY {
        return Err(EnvelopeError::Kind {
            expected: M::ROUTING_KEY,
            found: head.kind,
        });
    }
    let envelope: Envelope<M> = rmp_serde::from_slice(payload)?;
    Ok(envelope.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ping {
        n: u32,
    }
    impl Message for Ping {
        const ROUTING_KEY: &'static str = "test.ping";
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Pong {
        n: u32,
    }
    impl Message for Pong {
        const ROUTING_KEY: &'static str = "test.pong";
    }

    #[test]
    fn round_trips_and_checks_kind() {
        let bytes = encode(&Ping { n: 7 }).unwrap();
        assert_eq!(decode::<Ping>(&bytes).unwrap(), Ping { n: 7 });
        assert!(matches!(
            decode::<Pong>(&bytes),
            Err(EnvelopeError::Kind { .. })
        ));
    }

    #[test]
    fn rejects_other_versions() {
        let envelope = Envelope {
            version: MESSAGE_VERSION + 1,
            kind: "test.ping".to_string(),
            body: Ping { n: 1 },
        };
        let bytes = rmp_serde::to_vec_named(&envelope).unwrap();
        assert!(matches!(
            decode::<Ping>(&bytes),
            Err(EnvelopeError::Version { .. })
        ));
    }
}
