//! Sluice's connectors: one module per warehouse kind, each implementing [`Connector`] — test
//! the connection, discover the source's columns, preview rows, plan a run's range and chunk
//! boundaries on the `(watermark, key)` order, read one chunk as Arrow batches — and its URL
//! check. The coordinator plans and previews through them; the extract stage reads.
// Outside tests a failure is an error with its cause, never a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod bigquery;
pub mod connector;
pub mod databricks;
pub mod endpoint;
pub mod error;
pub mod files;
mod http;
pub mod keyset;
pub mod mysql;
pub mod postgres;
pub mod registry;
pub mod snowflake;
pub mod source;
pub mod tunnel;
pub mod warehouse;

pub use connector::{BatchSink, Canceller, Connector, Source};
pub use endpoint::{Endpoint, HostKeyCheck, SshRoute};
pub use error::SourceError;
pub use registry::{check_url, Kind, Registry};
pub use source::{RangePlan, Rows, SourceShape, SourceSpec};
