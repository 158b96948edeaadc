//! Scalar functions the mapping needs beyond DataFusion's own: date parsing in a declared
//! format and timezone, JSON validation, and identity checks. Each returns NULL for a value it
//! cannot accept, so the caller can turn that into a row-level rejection.

use arrow::array::{
    Array, ArrayRef, Date32Builder, StringArray, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::NaiveDate;
use chrono_tz::Tz;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
use sluice_proto::dateformat::DateFormat;
use sluice_proto::mapping::identity_problem;
use std::sync::Arc;

/// The Arrow type of normalized date-times.
pub fn datetime_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn strings(args: &[ColumnarValue]) -> Result<(ArrayRef, usize)> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let array = arrays
        .into_iter()
        .next()
        .ok_or_else(|| DataFusionError::Internal("function called without arguments".into()))?;
    let len = array.len();
    Ok((array, len))
}

fn as_strings(array: &ArrayRef) -> Result<&StringArray> {
    array.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
        DataFusionError::Internal(format!("expected Utf8, got {}", array.data_type()))
    })
}

/// `name(text) -> timestamp`: parses date-times in `format`, zone-less ones in `tz`.
pub fn parse_datetime(name: &str, format: DateFormat, tz: Tz) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Utf8],
        datetime_type(),
        Volatility::Immutable,
        Arc::new(move |args| {
            let (array, len) = strings(args)?;
            let values = as_strings(&array)?;
            let mut out = TimestampMicrosecondBuilder::with_capacity(len).with_timezone("UTC");
            for value in values.iter() {
                out.append_option(
                    value
                        .and_then(|v| format.parse_datetime(v, tz))
                        .map(|t| t.timestamp_micros()),
                );
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

/// `name(text) -> date`: parses calendar dates in `format`.
pub fn parse_date(name: &str, format: DateFormat, tz: Tz) -> ScalarUDF {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    create_udf(
        name,
        vec![DataType::Utf8],
        DataType::Date32,
        Volatility::Immutable,
        Arc::new(move |args| {
            let (array, len) = strings(args)?;
            let values = as_strings(&array)?;
            let mut out = Date32Builder::with_capacity(len);
            for value in values.iter() {
                out.append_option(
                    value
                        .and_then(|v| format.parse_date(v, tz))
                        .map(|d| (d - epoch).num_days() as i32),
                );
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

/// A text-to-text function applying `f` to each non-NULL value (`f` sees NULL as `None`).
fn text_udf(name: &str, f: fn(Option<&str>) -> Option<String>) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args| {
            let (array, len) = strings(args)?;
            let values = as_strings(&array)?;
            let mut out = StringBuilder::with_capacity(len, len * 16);
            for value in values.iter() {
                out.append_option(f(value));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

/// `sluice_json(text) -> text`: the value re-serialized if it is valid JSON, else NULL.
pub fn json() -> ScalarUDF {
    text_udf("sluice_json", |value| {
        value
            .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
            .map(|v| v.to_string())
    })
}

/// `sluice_identity_problem(text) -> text`: why an identity is unusable, or NULL if it is fine.
pub fn identity_check() -> ScalarUDF {
    text_udf("sluice_identity_problem", |value| match value {
        None => Some("identity is missing".to_string()),
        Some(v) => identity_problem(v).map(str::to_string),
    })
}
