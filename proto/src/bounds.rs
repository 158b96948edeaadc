//! Keyset watermark positions: `(watermark, key)` pairs that bound runs and chunks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The value of a source row's unique key, typed so that comparisons match the source's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeyValue {
    /// An integer key.
    Int(i64),
    /// Any other key, as text.
    Text(String),
}

impl fmt::Display for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyValue::Int(v) => write!(f, "{v}"),
            KeyValue::Text(v) => write!(f, "{v}"),
        }
    }
}

/// A position in the source's `(watermark, key)` order, at the source's full (microsecond)
/// precision and in UTC. Rows are ordered by watermark first and key second, so rows sharing a
/// watermark value are never skipped or read twice at a boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bound {
    /// The row's watermark.
    pub watermark: DateTime<Utc>,
    /// The row's key, which orders rows with the same watermark.
    pub key: KeyValue,
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "({}, {})",
            self.watermark
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            self.key
        )
    }
}
