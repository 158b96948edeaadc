//! Sluice's extractor: warehouse connectors that plan watermark ranges (called by the
//! coordinator) and read one chunk's rows into a Parquet object (the extractor stage).
// Outside tests a failure is an error with its cause, never a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod bigquery;
pub mod cloud;
pub mod connector;
pub mod databricks;
pub mod error;
pub mod extract;
pub mod files;
mod http;
mod metrics;
pub mod mysql;
pub mod postgres;
pub mod snowflake;
pub mod source;
mod url_check;
pub mod warehouse;

pub use connector::{Connector, Source};
pub use error::SourceError;
pub use extract::{extract, Extractor};
pub use source::{RangePlan, SourceShape, SourceSpec};
pub use url_check::check_url;
