//! Sluice's connectors: one module per warehouse kind, each implementing [`Connector`] — test
//! the connection, discover the source's columns, preview rows, plan a run's range and chunk
//! boundaries on the `(watermark, key)` order, read one chunk as Arrow batches — and its URL
//! check. The coordinator plans and previews through them; the extract stage reads.
// Outside tests a failure is an error with its cause, never a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod bigquery;
pub mod cloud;
pub mod connector;
pub mod databricks;
pub mod error;
pub mod files;
mod http;
pub mod mysql;
pub mod postgres;
pub mod snowflake;
pub mod source;
mod url_check;
pub mod warehouse;

pub use connector::{Connector, Source};
pub use error::SourceError;
pub use source::{RangePlan, SourceShape, SourceSpec};
pub use url_check::check_url;
