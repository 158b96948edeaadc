//! Everything two Sluice processes must agree on: message types and their envelope, the queue
//! topology, message headers, the bus over RabbitMQ and the consume loop every role shares.
// Outside tests a failure is an error with its cause, never a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod bounds;
pub mod bus;
pub mod cancel;
pub mod chunk_file;
pub mod columns;

pub mod dateformat;
pub mod destination;
pub mod envelope;
pub mod error;
pub mod format_hint;
pub mod headers;
pub mod health;
pub mod identity;
pub mod key_probe;
pub mod lineage;
pub mod mapping;
pub mod messages;
pub mod metrics;
pub mod payload;
pub mod prefixed_store;
pub mod purchase;
pub mod rejection;
pub mod secrets;
pub mod stage;
pub mod storage;
pub mod subscription;
pub mod topology;
pub mod trace;

pub use bounds::{Bound, KeyValue};
pub use bus::Bus;
pub use envelope::{Envelope, Message};
pub use error::{ErrorCode, StageError};
pub use mapping::{
    EventMapping, EventName, EventTime, IdentityField, IdentityKind, IdentityMapping, ImportMode,
    Mapping, MissingEventTime, PropertyMapping, PropertyType, PurchaseMapping, Records,
    UnknownIdentity,
};
pub use messages::*;
pub use rejection::{Reason, RowRejection};
pub use topology::Topology;
