//! Scalar functions the mapping needs beyond DataFusion's own: date parsing in a declared
//! format and timezone, JSON validation, payload expansion, identity checks and struct-to-JSON.
//! Each returns NULL for a value it cannot accept, and a companion names the problem, so the
//! caller can turn it into a row-level rejection.

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Builder, Float64Array, Float64Builder, RecordBatch,
    StringArray, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Float64Type, TimeUnit};
use chrono::NaiveDate;
use chrono_tz::Tz;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{cast, create_udf, ColumnarValue, Expr, ScalarUDF, Volatility};
use sluice_proto::columns::REASON_SEPARATOR;
use sluice_proto::dateformat::DateFormat;
use sluice_proto::identity;
use sluice_proto::{payload, purchase};
use sluice_proto::{IdentityField, Reason};
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

/// `sluice_number(text) -> double`: the decimal as the double that holds it exactly, NULL when
/// it is not finite or a double would round it.
pub fn number() -> ScalarUDF {
    create_udf(
        "sluice_number",
        vec![DataType::Utf8],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args| {
            let (array, len) = strings(args)?;
            let values = as_strings(&array)?;
            let mut out = Float64Builder::with_capacity(len);
            for value in values.iter() {
                out.append_option(value.and_then(crate::number::exact));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

/// `sluice_finite(double) -> double`: the value, NULL for `NaN` and the infinities.
pub fn finite() -> ScalarUDF {
    create_udf(
        "sluice_finite",
        vec![DataType::Float64],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let values = arrays[0].as_primitive::<Float64Type>();
            let out: Float64Array = values.iter().map(|v| v.filter(|v| v.is_finite())).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// A text-to-text function applying `f` to each value (`f` sees NULL as `None`).
fn text_udf(
    name: &str,
    f: impl Fn(Option<&str>) -> Option<String> + Send + Sync + 'static,
) -> ScalarUDF {
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

/// A source column as text: structs become JSON objects, everything else is cast.
pub fn text(column: Expr, source: &DataType) -> Result<Expr, String> {
    Ok(match source {
        DataType::Utf8 => column,
        DataType::Struct(_) => struct_json(source.clone()).call(vec![column]),
        _ => cast(column, DataType::Utf8),
    })
}

/// `sluice_struct_json(struct) -> text`: each struct value as a JSON object.
fn struct_json(input: DataType) -> ScalarUDF {
    create_udf(
        "sluice_struct_json",
        vec![input],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let array = arrays[0].as_struct();
            let batch = RecordBatch::from(array.clone());
            let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
            writer.write(&batch)?;
            writer.finish()?;
            let lines = writer.into_inner();
            let mut out = StringBuilder::with_capacity(array.len(), lines.len());
            for (row, line) in lines.split(|b| *b == b'\n').take(array.len()).enumerate() {
                if array.is_null(row) {
                    out.append_null();
                } else {
                    out.append_value(String::from_utf8_lossy(line));
                }
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

/// `sluice_identity_<field>(text) -> text`: the normalized identity, NULL if absent or unusable.
pub fn identity_value(field: IdentityField) -> ScalarUDF {
    text_udf(&format!("sluice_identity_{}", field.as_str()), move |v| {
        v.and_then(|v| identity::normalize(field, v).ok())
    })
}

/// `sluice_identity_problem_<field>(text) -> text`: why a present identity is unusable
/// (reason code, separator, message), or NULL.
pub fn identity_problem(field: IdentityField) -> ScalarUDF {
    text_udf(
        &format!("sluice_identity_problem_{}", field.as_str()),
        move |v| {
            v.and_then(|v| identity::normalize(field, v).err())
                .map(|(reason, message)| format!("{}{REASON_SEPARATOR}{message}", reason.as_str()))
        },
    )
}

/// `sluice_payload(text) -> text`: the payload's object without declared keys, or NULL.
pub fn payload(declared: Vec<String>) -> ScalarUDF {
    text_udf("sluice_payload", move |v| {
        v.and_then(|v| payload::object(v, &declared).ok())
            .map(|map| serde_json::Value::Object(map).to_string())
    })
}

/// `sluice_payload_problem(text) -> text`: why a payload cannot be used (not an object, a
/// reserved key, more keys than `budget`), or NULL.
pub fn payload_problem(declared: Vec<String>, budget: usize) -> ScalarUDF {
    text_udf("sluice_payload_problem", move |v| {
        payload::expand(v?, &declared, budget)
            .err()
            .map(|(reason, message)| format!("{}{REASON_SEPARATOR}{message}", reason.as_str()))
    })
}

/// `sluice_currency(text) -> text`: the ISO-4217 code upper-cased, or NULL.
pub fn currency() -> ScalarUDF {
    text_udf("sluice_currency", |v| v.and_then(purchase::currency))
}

/// `sluice_price(text) -> text`: a non-negative decimal in canonical form, or NULL.
pub fn price() -> ScalarUDF {
    text_udf("sluice_price", |v| v.and_then(purchase::price))
}

/// `sluice_items(text) -> text`: a valid items array (currencies upper-cased), or NULL.
pub fn items() -> ScalarUDF {
    text_udf("sluice_items", |v| {
        v.and_then(|v| purchase::items(v).ok())
            .map(|v| v.to_string())
    })
}

/// `sluice_items_problem(text) -> text`: why an items value is not valid, or NULL.
pub fn items_problem() -> ScalarUDF {
    text_udf("sluice_items_problem", |v| {
        v.and_then(|v| purchase::items(v).err()).map(|message| {
            format!(
                "{}{REASON_SEPARATOR}{message}",
                Reason::InvalidItems.as_str()
            )
        })
    })
}
