//! A toy connector kind, whole in this folder: `toy://ROWS` is a table of ROWS rows generated
//! in memory (`id` 0.., ten rows to each `updated_at` second, a `name` column). It implements
//! the `Connector` trait like any warehouse and shares the keyset walk; the test adds it with
//! one registry line.

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use sluice_connectors::source::{chunk_schema, keyset_boundaries, read_cap, ColumnShape, KeyKind};
use sluice_connectors::{
    BatchSink, Connector, Kind, RangePlan, Rows, SourceError, SourceShape, SourceSpec,
};
use sluice_proto::{Bound, KeyValue};
use std::sync::Arc;
use std::time::Duration;

/// The toy kind's registry entry.
pub static TOY: Kind = Kind {
    name: "toy",
    tunnel_port: None,
    check_url: |url| rows(url).map(|_| ()),
    open: |url| {
        Box::pin(async move {
            let rows = rows(&url).map_err(SourceError::InvalidSpec)?;
            Ok(Box::new(Toy { rows }) as Box<dyn Connector>)
        })
    },
};

fn rows(url: &str) -> Result<i64, String> {
    url.strip_prefix("toy://")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| "a toy connection takes a toy://ROWS URL".to_string())
}

struct Toy {
    rows: i64,
}

fn watermark(id: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(id / 10)
}

fn bound(id: i64) -> Bound {
    Bound {
        watermark: watermark(id),
        key: KeyValue::Int(id),
    }
}

/// Rows are ordered by `(watermark, key)` as by `id`, so a bound is the id it names.
fn id_of(b: &Bound) -> i64 {
    match b.key {
        KeyValue::Int(id) => id,
        KeyValue::Text(_) => unreachable!("toy keys are integers"),
    }
}

impl Toy {
    /// The ids of `(lo, hi]`.
    fn range(&self, lo: Option<&Bound>, hi: &Bound) -> std::ops::Range<i64> {
        lo.map_or(0, |b| id_of(b) + 1)..(id_of(hi) + 1).min(self.rows)
    }

    fn batch(&self, shape: &SourceShape, ids: impl IntoIterator<Item = i64>) -> RecordBatch {
        let ids: Vec<i64> = ids.into_iter().collect();
        RecordBatch::try_new(
            chunk_schema(shape),
            vec![
                Arc::new(Int64Array::from(ids.clone())),
                Arc::new(
                    TimestampMicrosecondArray::from(
                        ids.iter()
                            .map(|id| watermark(*id).timestamp_micros())
                            .collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(
                    ids.iter().map(|id| format!("row {id}")).collect::<Vec<_>>(),
                )),
            ],
        )
        .expect("the toy's batch fits its schema")
    }
}

#[async_trait]
impl Connector for Toy {
    async fn test(&self) -> Result<(), SourceError> {
        Ok(())
    }

    async fn describe(&self, spec: &SourceSpec) -> Result<SourceShape, SourceError> {
        if spec.key_column != "id" || spec.watermark_column != "updated_at" {
            return Err(SourceError::MissingObject(
                "the toy table has id and updated_at".into(),
            ));
        }
        if let Some(c) = spec.columns.iter().find(|c| c.as_str() != "name") {
            return Err(SourceError::MissingObject(format!("no column {c:?}")));
        }
        Ok(SourceShape {
            spec: spec.clone(),
            key: KeyKind::Int,
            watermark_type: "Timestamp".into(),
            columns: spec
                .columns
                .iter()
                .map(|name| ColumnShape {
                    name: name.clone(),
                    type_name: "Utf8".into(),
                })
                .collect(),
        })
    }

    async fn preview(&self, shape: &SourceShape, rows: usize) -> Result<RecordBatch, SourceError> {
        Ok(self.batch(shape, 0..(rows as i64).min(self.rows)))
    }

    async fn plan_range(
        &self,
        _: &SourceShape,
        lo: Option<&Bound>,
        settle_lag: Duration,
        until: Option<DateTime<Utc>>,
    ) -> Result<RangePlan, SourceError> {
        let cap = read_cap(Utc::now(), settle_lag, until);
        let last = (0..self.rows).rev().find(|id| watermark(*id) < cap);
        let after_lo = last.filter(|id| lo.is_none_or(|b| *id > id_of(b)));
        Ok(RangePlan {
            hi: after_lo.map(bound),
            cap,
            held_back_future: 0,
            unreadable: Default::default(),
        })
    }

    async fn chunk_boundaries(
        &self,
        _: &SourceShape,
        lo: Option<&Bound>,
        hi: &Bound,
        chunk_rows: u64,
    ) -> Result<Vec<Bound>, SourceError> {
        keyset_boundaries(lo, hi, |previous| {
            let next = previous.as_ref().map_or(-1, id_of) + chunk_rows.max(1) as i64;
            async move { Ok((next <= id_of(hi)).then(|| bound(next))) }
        })
        .await
    }

    async fn position_before(
        &self,
        _: &SourceShape,
        at: DateTime<Utc>,
    ) -> Result<Option<Bound>, SourceError> {
        Ok((0..self.rows)
            .rev()
            .find(|id| watermark(*id) < at)
            .map(bound))
    }

    async fn read(
        &self,
        shape: &SourceShape,
        rows: Rows<'_>,
        batch_rows: usize,
        sink: &mut dyn BatchSink,
    ) -> Result<u64, SourceError> {
        let ids: Vec<i64> = match rows {
            Rows::Range { lo, hi } => self.range(lo, hi).collect(),
            Rows::Keys { keys, upto } => self
                .range(None, upto)
                .filter(|id| keys.contains(&KeyValue::Int(*id)))
                .collect(),
        };
        for part in ids.chunks(batch_rows.max(1)) {
            sink.put(self.batch(shape, part.iter().copied())).await?;
        }
        Ok(ids.len() as u64)
    }
}
