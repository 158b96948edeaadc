//! MySQL values to Arrow: how each column is selected and decoded, and the batches a chunk
//! read produces.

use super::quote_ident;
use crate::error::SourceError;
use crate::source::{KeyKind, SourceShape};
use arrow::array::{
    ArrayRef, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use mysql_async::consts::ColumnType;
use mysql_async::{Row, Value};
use sluice_proto::columns::{SOURCE_KEY, SOURCE_WATERMARK};
use std::sync::Arc;

/// How one column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    Int,
    Float,
    Text,
    Timestamp,
    Date,
}

impl Decode {
    /// The decoding of a column the server describes.
    pub fn for_column(t: ColumnType) -> Decode {
        use ColumnType::*;
        match t {
            MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_LONG | MYSQL_TYPE_INT24
            | MYSQL_TYPE_LONGLONG | MYSQL_TYPE_YEAR => Decode::Int,
            MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => Decode::Float,
            MYSQL_TYPE_DATETIME
            | MYSQL_TYPE_TIMESTAMP
            | MYSQL_TYPE_DATETIME2
            | MYSQL_TYPE_TIMESTAMP2 => Decode::Timestamp,
            MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => Decode::Date,
            _ => Decode::Text,
        }
    }

    /// The name kept in the source shape.
    pub fn name(self) -> &'static str {
        match self {
            Decode::Int => "int",
            Decode::Float => "float",
            Decode::Text => "text",
            Decode::Timestamp => "datetime",
            Decode::Date => "date",
        }
    }

    fn from_name(name: &str) -> Decode {
        match name {
            "int" => Decode::Int,
            "float" => Decode::Float,
            "datetime" => Decode::Timestamp,
            "date" => Decode::Date,
            _ => Decode::Text,
        }
    }

    fn data_type(self) -> DataType {
        match self {
            Decode::Int => DataType::Int64,
            Decode::Float => DataType::Float64,
            Decode::Text => DataType::Utf8,
            Decode::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Decode::Date => DataType::Date32,
        }
    }
}

/// The select list of a chunk read and how each column is decoded.
pub fn projection(shape: &SourceShape) -> (String, Vec<Decode>) {
    let key = quote_ident(&shape.spec.key_column);
    let wm = quote_ident(&shape.spec.watermark_column);
    let (key_select, key_decode) = match shape.key {
        KeyKind::Int => (key, Decode::Int),
        KeyKind::Text { .. } => (format!("CAST({key} AS CHAR)"), Decode::Text),
    };
    let mut select = vec![key_select, format!("CAST({wm} AS DATETIME(6))")];
    let mut decodes = vec![key_decode, Decode::Timestamp];
    for column in &shape.columns {
        select.push(quote_ident(&column.name));
        decodes.push(Decode::from_name(&column.type_name));
    }
    (select.join(", "), decodes)
}

/// The Arrow schema a chunk read produces.
pub fn chunk_schema(shape: &SourceShape) -> SchemaRef {
    let (_, decodes) = projection(shape);
    let mut fields = vec![
        Field::new(SOURCE_KEY, decodes[0].data_type(), false),
        Field::new(SOURCE_WATERMARK, decodes[1].data_type(), false),
    ];
    for (column, decode) in shape.columns.iter().zip(&decodes[2..]) {
        fields.push(Field::new(&column.name, decode.data_type(), true));
    }
    Arc::new(Schema::new(fields))
}

pub fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::UInt(u) => i64::try_from(*u).ok(),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Double(d) => Some(*d),
        Value::Float(f) => Some(*f as f64),
        Value::Int(i) => Some(*i as f64),
        Value::UInt(u) => Some(*u as f64),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Double(d) => Some(d.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Date(..) => timestamp(v).map(|t| t.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
        Value::Time(..) => Some(v.as_sql(true).trim_matches('\'').to_string()),
    }
}

/// Reads `YYYY-MM-DD HH:MM:SS[.ffffff]` as UTC.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

pub fn timestamp(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::Date(y, m, d, h, mi, s, us) => {
            NaiveDate::from_ymd_opt(*y as i32, *m as u32, *d as u32)?
                .and_hms_micro_opt(*h as u32, *mi as u32, *s as u32, *us)
                .map(|t| t.and_utc())
        }
        Value::Bytes(b) => parse_timestamp(std::str::from_utf8(b).ok()?),
        _ => None,
    }
}

fn date(v: &Value) -> Option<i32> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    let day = match v {
        Value::Date(y, m, d, ..) => NaiveDate::from_ymd_opt(*y as i32, *m as u32, *d as u32)?,
        Value::Bytes(b) => {
            NaiveDate::parse_from_str(std::str::from_utf8(b).ok()?, "%Y-%m-%d").ok()?
        }
        _ => return None,
    };
    Some((day - epoch).num_days() as i32)
}

enum Builder {
    Int(Int64Builder),
    Float(Float64Builder),
    Text(StringBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Date(Date32Builder),
}

impl Builder {
    fn new(d: Decode, capacity: usize) -> Builder {
        match d {
            Decode::Int => Builder::Int(Int64Builder::with_capacity(capacity)),
            Decode::Float => Builder::Float(Float64Builder::with_capacity(capacity)),
            Decode::Text => Builder::Text(StringBuilder::with_capacity(capacity, capacity * 16)),
            Decode::Timestamp => Builder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            ),
            Decode::Date => Builder::Date(Date32Builder::with_capacity(capacity)),
        }
    }

    fn push(&mut self, v: &Value) {
        match self {
            Builder::Int(b) => b.append_option(int(v)),
            Builder::Float(b) => b.append_option(float(v)),
            Builder::Text(b) => b.append_option(text(v)),
            Builder::Timestamp(b) => b.append_option(timestamp(v).map(|t| t.timestamp_micros())),
            Builder::Date(b) => b.append_option(date(v)),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
        }
    }
}

/// Rows turned into record batches of at most `batch_rows` rows.
pub struct Batches {
    builders: Vec<Builder>,
    schema: SchemaRef,
    batch_rows: usize,
    pending: usize,
    pub total: u64,
}

impl Batches {
    pub fn new(decodes: Vec<Decode>, schema: SchemaRef, batch_rows: usize) -> Self {
        Batches {
            builders: decodes
                .iter()
                .map(|d| Builder::new(*d, batch_rows))
                .collect(),
            schema,
            batch_rows,
            pending: 0,
            total: 0,
        }
    }

    /// Adds a row; returns a batch when one is full.
    pub fn push(&mut self, row: Row) -> Result<Option<RecordBatch>, SourceError> {
        let values = row.unwrap();
        for (builder, value) in self.builders.iter_mut().zip(&values) {
            builder.push(value);
        }
        self.pending += 1;
        if self.pending == self.batch_rows {
            return self.rest();
        }
        Ok(None)
    }

    /// The rows not yet handed out, as a batch.
    pub fn rest(&mut self) -> Result<Option<RecordBatch>, SourceError> {
        if self.pending == 0 {
            return Ok(None);
        }
        self.total += self.pending as u64;
        self.pending = 0;
        let columns = self.builders.iter_mut().map(Builder::finish).collect();
        RecordBatch::try_new(self.schema.clone(), columns)
            .map(Some)
            .map_err(|e| SourceError::Query(format!("building a record batch: {e}")))
    }
}
