//! Sluice's transformer: applies an import's mapping to a chunk with DataFusion (renames,
//! casts, date parsing, identity checks) and splits it into accepted and rejected rows.
// Outside tests a failure is an error with its cause, never a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod format_census;
pub mod functions;
pub mod key_set;
pub mod mapping;
mod metrics;
pub mod number;
mod subscriptions;
pub mod transform;
pub mod trial;

pub use transform::{transform, Transformer};
