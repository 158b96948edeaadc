//! Sluice's transformer: applies an import's mapping to a chunk with DataFusion (renames,
//! casts, date parsing, identity checks) and splits it into accepted and rejected rows.

pub mod functions;
pub mod key_set;
pub mod mapping;
mod metrics;
pub mod number;
pub mod transform;

pub use transform::{transform, Transformer};
