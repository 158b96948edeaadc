//! What every connector shares: the source an import reads, its shape as discovered, and a
//! planned range.

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use sluice_proto::columns::{SOURCE_KEY, SOURCE_WATERMARK};
use sluice_proto::{Bound, KeyValue, SourceRelation};
use std::sync::Arc;

/// What an import reads: a table or query, its unique key, its watermark and mapped columns.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// The table or query.
    pub relation: SourceRelation,
    /// The column that is unique per row and orders rows with the same watermark.
    pub key_column: String,
    /// The date-time column a row's changes move forward.
    pub watermark_column: String,
    /// Mapped columns besides key and watermark.
    pub columns: Vec<String>,
}

impl SourceSpec {
    /// The columns a chunk reads, in its order: key, watermark, then the mapped columns.
    pub fn read_columns(&self) -> Vec<String> {
        let mut names = vec![self.key_column.clone(), self.watermark_column.clone()];
        names.extend(self.columns.iter().cloned());
        names
    }
}

/// Whether a table can read its chunks in `(watermark, key)` order without sorting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderingIndex {
    /// An index leads with the watermark, then the key.
    pub present: bool,
    /// The statement that creates such an index.
    pub statement: String,
}

/// Which of a source's rows a read takes.
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    /// A chunk: the rows of `(lo, hi]` in `(watermark, key)` order.
    Range {
        /// The exclusive lower bound; `None` from the source's first row.
        lo: Option<&'a Bound>,
        /// The inclusive upper bound.
        hi: &'a Bound,
    },
    /// The rows with these keys at or before `upto`: rows read again by key (a row past
    /// `upto` has changed, and the run's chunks read it).
    Keys {
        /// The keys, each naming at most one row.
        keys: &'a [KeyValue],
        /// The inclusive upper bound.
        upto: &'a Bound,
    },
}

/// The instant a run reads below: `settle_lag` before the source's `now`, and no later than
/// `until` when given.
pub fn read_cap(
    now: DateTime<Utc>,
    settle_lag: std::time::Duration,
    until: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    let settled = now - chrono::Duration::from_std(settle_lag).unwrap_or_default();
    until.map_or(settled, |u| u.min(settled))
}

/// How the key is compared and bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// Integer keys, bound as `int8`.
    Int,
    /// Any other ordered type, bound as text and cast to this type name.
    Text {
        /// The source's name for the key's type.
        type_name: String,
    },
}

/// A source column's name and how it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnShape {
    /// The column's name in the source.
    pub name: String,
    /// The source's name for its type, which decides how it is decoded.
    pub type_name: String,
}

/// The source as discovered: key and watermark types, and the mapped columns' types.
#[derive(Debug, Clone)]
pub struct SourceShape {
    /// What the import asked to read.
    pub spec: SourceSpec,
    /// How the key compares.
    pub key: KeyKind,
    /// The source's name for the watermark's type.
    pub watermark_type: String,
    /// The mapped columns, in the order a chunk holds them.
    pub columns: Vec<ColumnShape>,
}

/// The range a run will read, fixed at planning time.
#[derive(Debug, Clone, PartialEq)]
pub struct RangePlan {
    /// Inclusive upper bound; `None` when no row is past the lower bound and below the cap.
    pub hi: Option<Bound>,
    /// Rows are read only below this instant: `now − settle_lag`, lowered to the start of the
    /// oldest open transaction when the source can tell.
    pub cap: DateTime<Utc>,
    /// Rows whose watermark lies in the future, held back from this run.
    pub held_back_future: u64,
    /// Rows no run can read, found while planning.
    pub unreadable: Unreadable,
}

/// Sample rows of each kind of unreadable row a plan carries for the error stream.
pub const UNREADABLE_SAMPLES: usize = 100;

/// Rows no range can hold, counted at planning so they are reported instead of skipped
/// without a word.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Unreadable {
    /// Rows whose watermark is NULL (or infinite, where the source has such values): below
    /// no cap and in no range, so every run counts them until the source gives them one.
    pub without_watermark: u64,
    /// Rows without a key among those whose watermark the run's range covers.
    pub without_key: u64,
    /// Up to `UNREADABLE_SAMPLES` rows of each kind.
    pub samples: Vec<UnreadableRow>,
}

impl Unreadable {
    /// Records `count` rows of one kind (`missing_key` or `missing_watermark`) with their
    /// samples, as `(key, watermark)` in the source's own text.
    pub fn add(
        &mut self,
        reason: sluice_proto::Reason,
        count: u64,
        samples: impl IntoIterator<Item = (Option<String>, Option<String>)>,
    ) {
        match reason {
            sluice_proto::Reason::MissingKey => self.without_key = count,
            _ => self.without_watermark = count,
        }
        self.samples
            .extend(samples.into_iter().map(|(key, watermark)| UnreadableRow {
                reason,
                key,
                watermark,
            }));
    }
}

/// One unreadable row, as the source shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct UnreadableRow {
    /// `missing_watermark` or `missing_key`.
    pub reason: sluice_proto::Reason,
    /// The row's key, as the source writes it; `None` when NULL.
    pub key: Option<String>,
    /// The row's watermark, as the source writes it; `None` when NULL.
    pub watermark: Option<String>,
}

/// The chunk schema of sources whose column types are kept as Arrow type names (files, Delta,
/// SQL-over-HTTP warehouses): key, watermark as UTC microseconds, and the mapped columns as
/// Int64, Float64, Boolean, Date32, timestamps or text.
pub fn chunk_schema(shape: &SourceShape) -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let key_type = match shape.key {
        KeyKind::Int => DataType::Int64,
        KeyKind::Text { .. } => DataType::Utf8,
    };
    let mut fields = vec![
        Field::new(SOURCE_KEY, key_type, false),
        Field::new(SOURCE_WATERMARK, ts(), false),
    ];
    for c in &shape.columns {
        let t = match c.type_name.as_str() {
            "Int64" => DataType::Int64,
            "Float64" => DataType::Float64,
            "Boolean" => DataType::Boolean,
            "Date32" => DataType::Date32,
            t if t.starts_with("Timestamp") => ts(),
            _ => DataType::Utf8,
        };
        fields.push(Field::new(&c.name, t, true));
    }
    Arc::new(Schema::new(fields))
}

/// Boundaries cutting `(lo, hi]` into chunks, found one keyset query at a time:
/// `position_after(previous)` answers the position a chunk's rows after `previous` (after `lo`
/// at first) and within `hi`; the walk ends when it reaches `hi` or finds no row.
pub async fn keyset_boundaries<F, Fut>(
    lo: Option<&Bound>,
    hi: &Bound,
    mut position_after: F,
) -> Result<Vec<Bound>, crate::SourceError>
where
    F: FnMut(Option<Bound>) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Bound>, crate::SourceError>>,
{
    let mut boundaries = Vec::new();
    let mut previous = lo.cloned();
    loop {
        match position_after(previous.clone()).await? {
            Some(b) if &b != hi => {
                boundaries.push(b.clone());
                previous = Some(b);
            }
            _ => return Ok(boundaries),
        }
    }
}
