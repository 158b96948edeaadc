//! Snowflake's Arrow result format to plain Arrow: scaled integers for NUMBER, timestamps as
//! scaled integers or `{epoch, fraction[, timezone]}` structs, semi-structured values as
//! text. The column types come from the answer's `rowtype`, known even when no row came back.

use crate::error::SourceError;
use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch, TimestampNanosecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;
use std::sync::Arc;

/// One result column as the answer's `rowtype` describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct RowType {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub scale: Option<i64>,
}

fn nanos_utc() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The plain type a Snowflake column becomes.
fn plain_type(column: &RowType) -> DataType {
    match column.kind.to_ascii_lowercase().as_str() {
        "fixed" if column.scale.unwrap_or(0) == 0 => DataType::Int64,
        "fixed" | "real" => DataType::Float64,
        "boolean" => DataType::Boolean,
        "date" => DataType::Date32,
        "timestamp_ntz" | "timestamp_ltz" | "timestamp_tz" => nanos_utc(),
        _ => DataType::Utf8,
    }
}

/// The plain Arrow schema of an answer.
pub fn plain_schema(rowtype: &[RowType]) -> SchemaRef {
    Arc::new(Schema::new(
        rowtype
            .iter()
            .map(|c| Field::new(&c.name, plain_type(c), true))
            .collect::<Vec<_>>(),
    ))
}

fn fail(column: &RowType, e: impl std::fmt::Display) -> SourceError {
    SourceError::Query(format!("decoding Snowflake column {:?}: {e}", column.name))
}

/// One batch of a Snowflake answer in the plain schema.
pub fn decode_batch(
    batch: &RecordBatch,
    rowtype: &[RowType],
    schema: &SchemaRef,
) -> Result<RecordBatch, SourceError> {
    if batch.num_columns() != rowtype.len() {
        return Err(SourceError::Query(format!(
            "Snowflake sent {} columns for {} described",
            batch.num_columns(),
            rowtype.len()
        )));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(rowtype)
        .map(|(array, column)| decode_column(array, column))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| SourceError::Query(e.to_string()))
}

fn decode_column(array: &ArrayRef, column: &RowType) -> Result<ArrayRef, SourceError> {
    let scale = column.scale.unwrap_or(0);
    let target = plain_type(column);
    match (column.kind.to_ascii_lowercase().as_str(), array.data_type()) {
        ("fixed", t) if t.is_integer() && scale > 0 => {
            let ints = cast(array, &DataType::Int64).map_err(|e| fail(column, e))?;
            let divisor = 10f64.powi(scale as i32);
            let floats: Float64Array = ints
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map(|v| v as f64 / divisor))
                .collect();
            Ok(Arc::new(floats))
        }
        (kind, _) if kind.starts_with("timestamp") => timestamp(array, scale, column),
        _ => cast(array, &target).map_err(|e| fail(column, e)),
    }
}

/// Timestamps to UTC nanoseconds: an integer scaled by `10^-scale` seconds, or a struct of
/// whole seconds (`epoch`) and nanoseconds (`fraction`); `timezone`, when present, only says
/// which offset the value was written in, the epoch being UTC already.
fn timestamp(array: &ArrayRef, scale: i64, column: &RowType) -> Result<ArrayRef, SourceError> {
    let nanos: Vec<Option<i64>> = match array.data_type() {
        DataType::Struct(_) => {
            let s = array.as_struct();
            let epoch = s
                .column_by_name("epoch")
                .ok_or_else(|| fail(column, "no epoch field"))?;
            let epoch = cast(epoch, &DataType::Int64).map_err(|e| fail(column, e))?;
            let epoch = epoch.as_primitive::<Int64Type>();
            let fraction = match s.column_by_name("fraction") {
                Some(f) => Some(cast(f, &DataType::Int64).map_err(|e| fail(column, e))?),
                None => None,
            };
            (0..s.len())
                .map(|i| {
                    if s.is_null(i) {
                        return None;
                    }
                    match &fraction {
                        Some(f) => Some(
                            epoch.value(i) * 1_000_000_000 + f.as_primitive::<Int64Type>().value(i),
                        ),
                        None => Some(scaled(epoch.value(i), scale)),
                    }
                })
                .collect()
        }
        t if t.is_integer() => {
            let ints = cast(array, &DataType::Int64).map_err(|e| fail(column, e))?;
            ints.as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map(|v| scaled(v, scale)))
                .collect()
        }
        DataType::Timestamp(_, _) => {
            return cast(array, &nanos_utc()).map_err(|e| fail(column, e));
        }
        other => return Err(fail(column, format!("unexpected Arrow type {other}"))),
    };
    Ok(Arc::new(
        TimestampNanosecondArray::from(nanos).with_timezone("UTC"),
    ))
}

/// An integer in units of `10^-scale` seconds, in nanoseconds.
fn scaled(value: i64, scale: i64) -> i64 {
    let scale = scale.clamp(0, 9) as u32;
    value * 10i64.pow(9 - scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, Int64Array, StructArray};

    fn ints(values: &[i64]) -> ArrayRef {
        Arc::new(Int64Array::from(values.to_vec()))
    }

    fn rowtype(kind: &str, scale: i64) -> RowType {
        RowType {
            name: "c".into(),
            kind: kind.into(),
            scale: Some(scale),
        }
    }

    #[test]
    fn scaled_numbers_and_timestamps_keep_their_precision() {
        let numbers = decode_column(&ints(&[12345]), &rowtype("fixed", 2)).unwrap();
        assert_eq!(
            numbers
                .as_primitive::<arrow::datatypes::Float64Type>()
                .value(0),
            123.45
        );
        let micros = decode_column(
            &ints(&[1_700_000_000_123_456]),
            &rowtype("timestamp_ntz", 6),
        )
        .unwrap();
        assert_eq!(
            micros
                .as_primitive::<arrow::datatypes::TimestampNanosecondType>()
                .value(0),
            1_700_000_000_123_456_000
        );
        let structs: ArrayRef = Arc::new(StructArray::from(vec![
            (
                Arc::new(Field::new("epoch", DataType::Int64, false)),
                ints(&[1_700_000_000]),
            ),
            (
                Arc::new(Field::new("fraction", DataType::Int32, false)),
                Arc::new(Int32Array::from(vec![123_456_789])) as ArrayRef,
            ),
        ]));
        let nanos = decode_column(&structs, &rowtype("timestamp_tz", 9)).unwrap();
        assert_eq!(
            nanos
                .as_primitive::<arrow::datatypes::TimestampNanosecondType>()
                .value(0),
            1_700_000_000_123_456_789
        );
    }
}
