//! Sluice's extractor: the extract stage, which reads one chunk's rows through its connector
//! (`sluice-connectors`) into a Parquet object.
// Outside tests a failure is an error with its cause, never a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod extract;
mod metrics;

pub use extract::{extract, Extractor};
