//! Reading one chunk from PostgreSQL in a read-only snapshot, as Arrow record batches.

use super::plan::{as_refs as param_refs, rows_clause};
use super::sql::{key_select, quote_ident, relation, watermark_select};
use super::{classify, Dialect, PostgresSource};
use crate::error::SourceError;
use crate::source::{KeyKind, Rows, SourceShape};
use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use futures::{pin_mut, TryStreamExt};
use std::future::Future;
use std::sync::Arc;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::Row;

use sluice_proto::columns::{
    REASON_SEPARATOR, SOURCE_KEY as KEY_COLUMN, SOURCE_UNREPRESENTABLE,
    SOURCE_WATERMARK as WATERMARK_COLUMN,
};

/// How one selected column is decoded into Arrow.
#[derive(Debug, Clone, Copy)]
enum Decode {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    TimestampTz,
    Timestamp,
    Date,
}

impl Decode {
    /// The decoding for a PostgreSQL type; `None` means the column is selected as text.
    fn for_type(type_name: &str) -> Option<Decode> {
        Some(match type_name {
            "bool" => Decode::Bool,
            "int2" => Decode::Int2,
            "int4" => Decode::Int4,
            "int8" => Decode::Int8,
            "float4" => Decode::Float4,
            "float8" => Decode::Float8,
            "text" | "varchar" | "bpchar" | "name" => Decode::Text,
            "timestamptz" => Decode::TimestampTz,
            "timestamp" => Decode::Timestamp,
            "date" => Decode::Date,
            _ => return None,
        })
    }

    fn data_type(self) -> DataType {
        match self {
            Decode::Bool => DataType::Boolean,
            Decode::Int2 | Decode::Int4 | Decode::Int8 => DataType::Int64,
            Decode::Float4 | Decode::Float8 => DataType::Float64,
            Decode::Text => DataType::Utf8,
            Decode::TimestampTz | Decode::Timestamp => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            Decode::Date => DataType::Date32,
        }
    }
}

/// A `timestamp` or `timestamptz` as PostgreSQL sends it: microseconds since 2000-01-01, the
/// extremes standing for `±infinity`, which chrono cannot decode.
struct PgTime(i64);

/// A `date` as PostgreSQL sends it: days since 2000-01-01, the extremes standing for
/// `±infinity`.
struct PgDate(i32);

impl<'a> FromSql<'a> for PgTime {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgTime(i64::from_be_bytes(raw.try_into()?)))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::TIMESTAMP | Type::TIMESTAMPTZ)
    }
}

impl<'a> FromSql<'a> for PgDate {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgDate(i32::from_be_bytes(raw.try_into()?)))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::DATE
    }
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const UNIX_FROM_PG_MICROS: i64 = 946_684_800_000_000;
/// Days from the Unix epoch to PostgreSQL's.
const UNIX_FROM_PG_DAYS: i32 = 10_957;

/// A time or date as sent, or the infinity its extreme stands for.
fn finite<T: PartialEq + Copy>(value: T, max: T, min: T) -> Result<T, &'static str> {
    if value == max {
        Err("infinity")
    } else if value == min {
        Err("-infinity")
    } else {
        Ok(value)
    }
}

/// An Arrow builder for one column.
enum Builder {
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Text(StringBuilder),
    Time(TimestampMicrosecondBuilder),
    Date(Date32Builder),
}

impl Builder {
    fn new(decode: Decode, capacity: usize) -> Self {
        match decode {
            Decode::Bool => Builder::Bool(BooleanBuilder::with_capacity(capacity)),
            Decode::Int2 | Decode::Int4 | Decode::Int8 => {
                Builder::Int(Int64Builder::with_capacity(capacity))
            }
            Decode::Float4 | Decode::Float8 => {
                Builder::Float(Float64Builder::with_capacity(capacity))
            }
            Decode::Text => Builder::Text(StringBuilder::with_capacity(capacity, capacity * 16)),
            Decode::TimestampTz | Decode::Timestamp => Builder::Time(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            ),
            Decode::Date => Builder::Date(Date32Builder::with_capacity(capacity)),
        }
    }

    /// Appends column `i` of `row`; a value Arrow cannot hold (an infinite time) is appended
    /// as NULL and returned as PostgreSQL spells it.
    fn push(&mut self, decode: Decode, row: &Row, i: usize) -> Option<&'static str> {
        match (self, decode) {
            (Builder::Bool(b), _) => b.append_option(row.get::<_, Option<bool>>(i)),
            (Builder::Int(b), Decode::Int2) => {
                b.append_option(row.get::<_, Option<i16>>(i).map(i64::from))
            }
            (Builder::Int(b), Decode::Int4) => {
                b.append_option(row.get::<_, Option<i32>>(i).map(i64::from))
            }
            (Builder::Int(b), _) => b.append_option(row.get::<_, Option<i64>>(i)),
            (Builder::Float(b), Decode::Float4) => {
                b.append_option(row.get::<_, Option<f32>>(i).map(f64::from))
            }
            (Builder::Float(b), _) => b.append_option(row.get::<_, Option<f64>>(i)),
            (Builder::Text(b), _) => b.append_option(row.get::<_, Option<&str>>(i)),
            (Builder::Time(b), _) => match row.get::<_, Option<PgTime>>(i) {
                Some(PgTime(micros)) => match finite(micros, i64::MAX, i64::MIN) {
                    Ok(micros) => b.append_value(micros + UNIX_FROM_PG_MICROS),
                    Err(infinity) => {
                        b.append_null();
                        return Some(infinity);
                    }
                },
                None => b.append_null(),
            },
            (Builder::Date(b), _) => match row.get::<_, Option<PgDate>>(i) {
                Some(PgDate(days)) => match finite(days, i32::MAX, i32::MIN) {
                    Ok(days) => b.append_value(days + UNIX_FROM_PG_DAYS),
                    Err(infinity) => {
                        b.append_null();
                        return Some(infinity);
                    }
                },
                None => b.append_null(),
            },
        }
        None
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
        }
    }
}

/// The select list and Arrow schema for a chunk read: key, watermark, then mapped columns.
fn projection(shape: &SourceShape) -> (String, Vec<Decode>, SchemaRef) {
    let key_decode = match shape.key {
        KeyKind::Int => Decode::Int8,
        KeyKind::Text { .. } => Decode::Text,
    };
    let mut select = vec![
        format!("{} AS {}", key_select(shape), quote_ident(KEY_COLUMN)),
        format!(
            "{} AS {}",
            watermark_select(shape),
            quote_ident(WATERMARK_COLUMN)
        ),
    ];
    let mut decodes = vec![key_decode, Decode::TimestampTz];
    let mut fields = vec![
        Field::new(KEY_COLUMN, key_decode.data_type(), false),
        Field::new(WATERMARK_COLUMN, Decode::TimestampTz.data_type(), false),
    ];
    for column in &shape.columns {
        let name = quote_ident(&column.name);
        let decode = match Decode::for_type(&column.type_name) {
            Some(decode) => {
                select.push(name);
                decode
            }
            None => {
                select.push(format!("{name}::text AS {name}"));
                Decode::Text
            }
        };
        decodes.push(decode);
        fields.push(Field::new(&column.name, decode.data_type(), true));
    }
    fields.push(Field::new(SOURCE_UNREPRESENTABLE, DataType::Utf8, true));
    (select.join(", "), decodes, Arc::new(Schema::new(fields)))
}

/// The Arrow schema a chunk read produces for this source.
pub fn chunk_schema(shape: &SourceShape) -> SchemaRef {
    projection(shape).2
}

impl PostgresSource {
    /// Reads `rows` in one repeatable-read, read-only snapshot, handing each batch of at most
    /// `batch_rows` rows to `on_batch`. Returns the number of rows read.
    pub(super) async fn read_rows<F, Fut>(
        &self,
        shape: &SourceShape,
        rows: Rows<'_>,
        batch_rows: usize,
        on_batch: F,
    ) -> Result<u64, SourceError>
    where
        F: FnMut(RecordBatch) -> Fut,
        Fut: Future<Output = Result<(), SourceError>>,
    {
        let (clause, params) = rows_clause(shape, self.dialect(), rows, 1);
        self.stream(
            shape,
            &format!("WHERE {clause}"),
            &params,
            batch_rows,
            on_batch,
        )
        .await
    }

    /// The first `rows` rows in `(watermark, key)` order, as the extractor would read them.
    pub(super) async fn preview_inner(
        &self,
        shape: &SourceShape,
        rows: usize,
    ) -> Result<RecordBatch, SourceError> {
        let tail = format!(
            "ORDER BY {}, {} LIMIT {}",
            quote_ident(&shape.spec.watermark_column),
            quote_ident(&shape.spec.key_column),
            rows.max(1)
        );
        let mut batches = Vec::new();
        self.stream(shape, &tail, &[], rows.max(1), |batch| {
            batches.push(batch);
            async { Ok(()) }
        })
        .await?;
        let schema = chunk_schema(shape);
        let mut batch = arrow::compute::concat_batches(&schema, &batches)
            .map_err(|e| SourceError::Query(format!("building a record batch: {e}")))?;
        // The source's own columns only.
        batch.remove_column(schema.fields().len() - 1);
        Ok(batch)
    }

    /// Runs `SELECT <projection> FROM <relation> <tail>` in a read-only snapshot and hands
    /// its rows to `on_batch` in batches of `batch_rows`.
    async fn stream<F, Fut>(
        &self,
        shape: &SourceShape,
        tail: &str,
        params: &[Box<dyn tokio_postgres::types::ToSql + Sync + Send>],
        batch_rows: usize,
        mut on_batch: F,
    ) -> Result<u64, SourceError>
    where
        F: FnMut(RecordBatch) -> Fut,
        Fut: Future<Output = Result<(), SourceError>>,
    {
        let (select, decodes, schema) = projection(shape);
        let sql = format!(
            "SELECT {select} FROM {} {tail}",
            relation(&shape.spec.relation)
        );
        let client = self.client();
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(classify)?;
        let result = async {
            let mut batches = Batches::new(decodes, schema, batch_rows);
            match self.dialect() {
                Dialect::Postgres => {
                    let rows = client
                        .query_raw(&sql, param_refs(params))
                        .await
                        .map_err(classify)?;
                    pin_mut!(rows);
                    while let Some(row) = rows.try_next().await.map_err(classify)? {
                        if let Some(batch) = batches.push(&row)? {
                            on_batch(batch).await?;
                        }
                    }
                }
                Dialect::Redshift => {
                    client
                        .execute(
                            &format!("DECLARE sluice_chunk NO SCROLL CURSOR FOR {sql}"),
                            &param_refs(params),
                        )
                        .await
                        .map_err(classify)?;
                    let fetch = format!("FETCH FORWARD {batch_rows} FROM sluice_chunk");
                    loop {
                        let rows = client.query(&fetch, &[]).await.map_err(classify)?;
                        if rows.is_empty() {
                            break;
                        }
                        for row in &rows {
                            if let Some(batch) = batches.push(row)? {
                                on_batch(batch).await?;
                            }
                        }
                    }
                }
            }
            if let Some(batch) = batches.rest()? {
                on_batch(batch).await?;
            }
            Ok(batches.total)
        }
        .await;
        // Read-only mode does not stop every write (large objects): nothing is ever committed.
        let _ = client.batch_execute("ROLLBACK").await;
        result
    }
}

/// Rows turned into record batches of at most `batch_rows` rows.
struct Batches {
    decodes: Vec<Decode>,
    builders: Vec<Builder>,
    /// The `SOURCE_UNREPRESENTABLE` column.
    unrepresentable: StringBuilder,
    schema: SchemaRef,
    batch_rows: usize,
    pending: usize,
    total: u64,
}

impl Batches {
    fn new(decodes: Vec<Decode>, schema: SchemaRef, batch_rows: usize) -> Self {
        let builders = decodes
            .iter()
            .map(|d| Builder::new(*d, batch_rows))
            .collect();
        Batches {
            decodes,
            builders,
            unrepresentable: StringBuilder::new(),
            schema,
            batch_rows,
            pending: 0,
            total: 0,
        }
    }

    /// Adds a row; returns a batch when one is full.
    fn push(&mut self, row: &Row) -> Result<Option<RecordBatch>, SourceError> {
        let mut unrepresentable = None;
        for (i, (builder, decode)) in self.builders.iter_mut().zip(&self.decodes).enumerate() {
            if let Some(value) = builder.push(*decode, row, i) {
                unrepresentable.get_or_insert((i, value));
            }
        }
        match unrepresentable {
            Some((i, value)) => self.unrepresentable.append_value(format!(
                "{}{REASON_SEPARATOR}{value}",
                self.schema.field(i).name()
            )),
            None => self.unrepresentable.append_null(),
        }
        self.pending += 1;
        if self.pending == self.batch_rows {
            return self.rest();
        }
        Ok(None)
    }

    /// The rows not yet handed out, as a batch.
    fn rest(&mut self) -> Result<Option<RecordBatch>, SourceError> {
        if self.pending == 0 {
            return Ok(None);
        }
        self.total += self.pending as u64;
        self.pending = 0;
        let mut columns: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        columns.push(Arc::new(self.unrepresentable.finish()));
        RecordBatch::try_new(self.schema.clone(), columns)
            .map(Some)
            .map_err(|e| SourceError::Query(format!("building a record batch: {e}")))
    }
}
