//! Planning and reading for warehouses reached by SQL over HTTP (Snowflake, BigQuery,
//! Databricks SQL): each warehouse runs a statement and hands back plain Arrow batches, and
//! the keyset planning on `(watermark, key)`, the previews and the chunk reads are written
//! once here, as SQL text with literals the warehouse formats itself.

use crate::connector::{feed, BatchSink, Connector};
use crate::error::SourceError;
use crate::keyset::{Binder, Keyset};
pub use crate::source::chunk_schema;
use crate::source::{
    ColumnShape, KeyKind, RangePlan, Rows, SourceShape, SourceSpec, Unreadable, UNREADABLE_SAMPLES,
};
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use sluice_proto::{Bound, KeyValue, Reason, SourceRelation};
use std::future::Future;
use std::time::Duration;

/// A query's answer: the columns' types (known even when no row came back) and the rows.
pub struct QueryResult {
    /// The answer's columns.
    pub schema: SchemaRef,
    /// The answer's rows.
    pub batches: Vec<RecordBatch>,
}

/// How a warehouse's SQL spells identifiers, instants and casts.
pub trait SqlDialect {
    /// One identifier part as this dialect reads it.
    fn quote_part(&self, part: &str) -> String;

    /// An identifier as this dialect reads it, each dotted part on its own.
    fn quote(&self, ident: &str) -> String {
        ident
            .split('.')
            .map(|part| self.quote_part(part))
            .collect::<Vec<_>>()
            .join(".")
    }

    /// A UTC instant as a literal comparable with the watermark column, at full precision.
    fn timestamp_literal(&self, t: &DateTime<Utc>) -> String;

    /// An expression for the warehouse's current time in UTC.
    fn now_utc(&self) -> &'static str;

    /// A text key as this dialect reads it.
    fn text_cast(&self, expr: &str) -> String;
}

/// A warehouse that runs SQL and answers in Arrow with plain types: Int64, Float64, Utf8,
/// Boolean, Date32 and UTC nanosecond timestamps.
pub trait SqlWarehouse: SqlDialect + Send + Sync {
    /// Runs a statement and hands its rows over batch by batch, as the warehouse sends them;
    /// returns the answer's columns, known even when no row came back.
    fn stream_query<F, Fut>(
        &self,
        sql: &str,
        on_batch: F,
    ) -> impl Future<Output = Result<SchemaRef, SourceError>> + Send
    where
        F: FnMut(RecordBatch) -> Fut + Send,
        Fut: Future<Output = Result<(), SourceError>> + Send;

    /// Runs a statement whose answer fits in memory.
    fn query(&self, sql: &str) -> impl Future<Output = Result<QueryResult, SourceError>> + Send {
        async move {
            let mut batches = Vec::new();
            let schema = self
                .stream_query(sql, |b| {
                    batches.push(b);
                    async { Ok(()) }
                })
                .await?;
            Ok(QueryResult { schema, batches })
        }
    }
}

/// A string literal in standard SQL: quotes doubled.
pub fn text_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Values written as the warehouse's own literals.
struct Literals<'a, W>(&'a W);

impl<W: SqlDialect> Binder for Literals<'_, W> {
    fn instant(&mut self, t: &DateTime<Utc>) -> String {
        self.0.timestamp_literal(t)
    }

    fn key(&mut self, k: &KeyValue) -> String {
        match k {
            KeyValue::Int(v) => v.to_string(),
            KeyValue::Text(v) => text_literal(v),
        }
    }
}

/// Planning and reads on one warehouse.
pub struct SqlSource<W> {
    /// The warehouse's session.
    pub warehouse: W,
}

impl<W: SqlWarehouse> SqlSource<W> {
    fn relation(&self, r: &SourceRelation) -> String {
        match r {
            SourceRelation::Table(t) => self.warehouse.quote(t),
            SourceRelation::Query(q) => format!("({q}) AS sluice_source"),
        }
    }

    /// The watermark, key and relation as SQL, the key selected as the shape reads it.
    fn keyset(&self, shape: &SourceShape) -> Keyset {
        let key = self.warehouse.quote(&shape.spec.key_column);
        Keyset {
            wm: self.warehouse.quote(&shape.spec.watermark_column),
            key_select: match shape.key {
                KeyKind::Int => key.clone(),
                KeyKind::Text { .. } => self.warehouse.text_cast(&key),
            },
            key,
            from: self.relation(&shape.spec.relation),
        }
    }

    /// The number `sql` counts.
    async fn count(&self, sql: &str) -> Result<u64, SourceError> {
        let result = self.warehouse.query(sql).await?;
        let count = result
            .batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .map(|b| cast(b.column(0), &DataType::Int64))
            .transpose()
            .map_err(|e| SourceError::Query(e.to_string()))?
            .map_or(0, |c| {
                c.as_primitive::<arrow::datatypes::Int64Type>().value(0)
            });
        Ok(count.max(0) as u64)
    }

    /// The rows no range can hold: without a watermark (every run), and without a key among
    /// those whose watermark is past `lo` up to `upper`.
    async fn unreadable(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        upper: DateTime<Utc>,
    ) -> Result<Unreadable, SourceError> {
        let Keyset { wm, key, from, .. } = self.keyset(shape);
        let mut no_key = format!(
            "{key} IS NULL AND {wm} <= {}",
            self.warehouse.timestamp_literal(&upper)
        );
        if let Some(lo) = lo {
            no_key.push_str(&format!(
                " AND {wm} > {}",
                self.warehouse.timestamp_literal(&lo.watermark)
            ));
        }
        let mut found = Unreadable::default();
        for (reason, condition) in [
            (Reason::MissingWatermark, format!("{wm} IS NULL")),
            (Reason::MissingKey, no_key),
        ] {
            let count = self
                .count(&format!("SELECT COUNT(*) FROM {from} WHERE {condition}"))
                .await?;
            if count == 0 {
                continue;
            }
            let sample = self
                .warehouse
                .query(&format!(
                    "SELECT {}, {} FROM {from} WHERE {condition} LIMIT {UNREADABLE_SAMPLES}",
                    self.warehouse.text_cast(&key),
                    self.warehouse.text_cast(&wm)
                ))
                .await?;
            let mut rows = Vec::new();
            for batch in &sample.batches {
                let text = |i: usize| {
                    cast(batch.column(i), &DataType::Utf8)
                        .map_err(|e| SourceError::Query(e.to_string()))
                };
                let (keys, watermarks) = (text(0)?, text(1)?);
                let (keys, watermarks) = (keys.as_string::<i32>(), watermarks.as_string::<i32>());
                let value = |a: &arrow::array::StringArray, row: usize| {
                    a.is_valid(row).then(|| a.value(row).to_string())
                };
                rows.extend((0..batch.num_rows()).map(|r| (value(keys, r), value(watermarks, r))));
            }
            found.add(reason, count, rows);
        }
        Ok(found)
    }

    /// The first row's `(watermark, key)` of a query selecting those two.
    async fn position(
        &self,
        sql: String,
        shape: &SourceShape,
    ) -> Result<Option<Bound>, SourceError> {
        let result = self.warehouse.query(&sql).await?;
        let Some(batch) = result.batches.iter().find(|b| b.num_rows() > 0) else {
            return Ok(None);
        };
        Ok(Some(Bound {
            watermark: instant(batch.column(0), 0)?,
            key: match shape.key {
                KeyKind::Int => KeyValue::Int(
                    cast(batch.column(1), &DataType::Int64)
                        .map_err(|e| SourceError::Query(e.to_string()))?
                        .as_primitive::<arrow::datatypes::Int64Type>()
                        .value(0),
                ),
                KeyKind::Text { .. } => KeyValue::Text(
                    cast(batch.column(1), &DataType::Utf8)
                        .map_err(|e| SourceError::Query(e.to_string()))?
                        .as_string::<i32>()
                        .value(0)
                        .to_string(),
                ),
            },
        }))
    }

    async fn now(&self) -> Result<DateTime<Utc>, SourceError> {
        let result = self
            .warehouse
            .query(&format!("SELECT {}", self.warehouse.now_utc()))
            .await?;
        let batch = result
            .batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .ok_or_else(|| {
                SourceError::Query("the warehouse did not say what time it is".into())
            })?;
        instant(batch.column(0), 0)
    }

    async fn stream<F, Fut>(
        &self,
        shape: &SourceShape,
        tail: &str,
        batch_rows: usize,
        mut on_batch: F,
    ) -> Result<u64, SourceError>
    where
        F: FnMut(RecordBatch) -> Fut + Send,
        Fut: Future<Output = Result<(), SourceError>> + Send,
    {
        let Keyset {
            key_select, from, ..
        } = self.keyset(shape);
        let mut select = vec![
            key_select,
            self.warehouse.quote(&shape.spec.watermark_column),
        ];
        select.extend(shape.columns.iter().map(|c| self.warehouse.quote(&c.name)));
        let sql = format!("SELECT {} FROM {from} {tail}", select.join(", "));
        let schema = chunk_schema(shape);
        let mut total = 0u64;
        self.warehouse
            .stream_query(&sql, |batch| {
                let conformed = conform(&batch, &schema);
                let mut parts = Vec::new();
                if let Ok(batch) = &conformed {
                    total += batch.num_rows() as u64;
                    let step = batch_rows.max(1);
                    let mut offset = 0;
                    while offset < batch.num_rows() {
                        let len = step.min(batch.num_rows() - offset);
                        parts.push(batch.slice(offset, len));
                        offset += len;
                    }
                }
                let sends: Vec<Fut> = parts.into_iter().map(&mut on_batch).collect();
                async move {
                    conformed?;
                    for send in sends {
                        send.await?;
                    }
                    Ok(())
                }
            })
            .await?;
        Ok(total)
    }
}

/// A warehouse batch in the chunk schema, column by column in select order.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, SourceError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            cast(column, field.data_type())
                .map_err(|e| SourceError::Query(format!("reading column {:?}: {e}", field.name())))
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| SourceError::Query(format!("building a record batch: {e}")))
}

/// Row `i` of a timestamp or date column as a UTC instant, at full precision.
fn instant(column: &ArrayRef, i: usize) -> Result<DateTime<Utc>, SourceError> {
    let ns = cast(column, &DataType::Timestamp(TimeUnit::Nanosecond, None))
        .map_err(|e| SourceError::Query(format!("reading a watermark: {e}")))?;
    let ns = ns.as_primitive::<arrow::datatypes::TimestampNanosecondType>();
    if ns.is_null(i) {
        return Err(SourceError::Query("the watermark is NULL".into()));
    }
    Ok(DateTime::from_timestamp_nanos(ns.value(i)))
}

/// Opens a SQL-over-HTTP warehouse as a connector: what each such kind's registry entry does.
pub fn connector<W: SqlWarehouse + 'static>(warehouse: W) -> Box<dyn Connector> {
    Box::new(SqlSource { warehouse })
}

/// The SQL-over-HTTP warehouses (Snowflake, BigQuery, Databricks SQL) read through the one
/// connector interface.
#[async_trait::async_trait]
impl<W: SqlWarehouse + 'static> Connector for SqlSource<W> {
    /// Runs a trivial query.
    async fn test(&self) -> Result<(), SourceError> {
        self.warehouse.query("SELECT 1").await.map(|_| ())
    }

    /// Checks that the source and its columns exist and reads their types.
    async fn columns(&self, spec: &SourceSpec) -> Result<Vec<String>, SourceError> {
        let sql = format!("SELECT * FROM {} LIMIT 0", self.relation(&spec.relation));
        let schema = self.warehouse.query(&sql).await?.schema;
        Ok(schema.fields().iter().map(|f| f.name().clone()).collect())
    }

    async fn describe(&self, spec: &SourceSpec) -> Result<SourceShape, SourceError> {
        let names = spec.read_columns();
        let select: Vec<String> = names.iter().map(|n| self.warehouse.quote(n)).collect();
        let sql = format!(
            "SELECT {} FROM {} LIMIT 0",
            select.join(", "),
            self.relation(&spec.relation)
        );
        let schema = self.warehouse.query(&sql).await?.schema;
        let type_of = |i: usize| schema.field(i).data_type().clone();
        let key = match type_of(0) {
            DataType::Int64 => KeyKind::Int,
            t => KeyKind::Text {
                type_name: t.to_string(),
            },
        };
        let watermark_type = match type_of(1) {
            t @ (DataType::Timestamp(..) | DataType::Date32) => t.to_string(),
            t => {
                return Err(SourceError::InvalidSpec(format!(
                    "watermark column {:?} is {t}, not a date-time",
                    spec.watermark_column
                )))
            }
        };
        Ok(SourceShape {
            spec: spec.clone(),
            key,
            watermark_type,
            columns: names
                .iter()
                .enumerate()
                .skip(2)
                .map(|(i, name)| ColumnShape {
                    name: name.clone(),
                    type_name: type_of(i).to_string(),
                })
                .collect(),
        })
    }

    /// The run's upper bound after `lo`, below `now − settle_lag` and `until`.
    async fn plan_range(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        settle_lag: Duration,
        until: Option<DateTime<Utc>>,
    ) -> Result<RangePlan, SourceError> {
        let now = self.now().await?;
        let cap = crate::source::read_cap(now, settle_lag, until);
        let keyset = self.keyset(shape);
        let literals = &mut Literals(&self.warehouse);
        let hi = self
            .position(keyset.last_below(&cap, lo, literals), shape)
            .await?;
        let held_back_future = self.count(&keyset.count_after(&now, literals)).await?;
        let upper = hi.as_ref().map_or(cap, |h| h.watermark);
        let unreadable = self.unreadable(shape, lo, upper).await?;
        Ok(RangePlan {
            hi,
            cap,
            held_back_future,
            unreadable,
        })
    }

    /// Boundaries cutting `(lo, hi]` into chunks of about `chunk_rows` rows: one keyset query
    /// per boundary, each starting after the previous one.
    async fn chunk_boundaries(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        hi: &Bound,
        chunk_rows: u64,
    ) -> Result<Vec<Bound>, SourceError> {
        let keyset = self.keyset(shape);
        crate::source::keyset_boundaries(lo, hi, |previous| {
            let sql = keyset.step(
                previous.as_ref(),
                hi,
                chunk_rows,
                &mut Literals(&self.warehouse),
            );
            self.position(sql, shape)
        })
        .await
    }

    /// The position just before the first row at or after `at`.
    async fn position_before(
        &self,
        shape: &SourceShape,
        at: DateTime<Utc>,
    ) -> Result<Option<Bound>, SourceError> {
        let sql = self
            .keyset(shape)
            .last_before(&at, &mut Literals(&self.warehouse));
        self.position(sql, shape).await
    }

    /// Reads `rows`, in batches of at most `batch_rows` rows.
    async fn read(
        &self,
        shape: &SourceShape,
        rows: Rows<'_>,
        batch_rows: usize,
        sink: &mut dyn BatchSink,
    ) -> Result<u64, SourceError> {
        let filter = self
            .keyset(shape)
            .selecting(rows, &mut Literals(&self.warehouse));
        let sink = tokio::sync::Mutex::new(sink);
        self.stream(shape, &format!("WHERE {filter}"), batch_rows, feed(&sink))
            .await
    }

    /// The first `rows` rows in `(watermark, key)` order.
    async fn preview(&self, shape: &SourceShape, rows: usize) -> Result<RecordBatch, SourceError> {
        let mut batches = Vec::new();
        self.stream(
            shape,
            &self.keyset(shape).first(rows),
            rows.max(1),
            |batch| {
                batches.push(batch);
                async { Ok(()) }
            },
        )
        .await?;
        arrow::compute::concat_batches(&chunk_schema(shape), &batches)
            .map_err(|e| SourceError::Query(format!("building a record batch: {e}")))
    }
}
