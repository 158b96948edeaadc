//! BigQuery's JSON rows (`{"f": [{"v": ...}]}`, every scalar a string) to plain Arrow:
//! INT64 to Int64, FLOAT64 and NUMERIC to Float64, TIMESTAMP (read as int64 microseconds) and
//! DATETIME (taken as UTC) to nanosecond UTC timestamps, DATE to Date32, records and repeated
//! fields to JSON text, everything else to text.

use crate::error::SourceError;
use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampNanosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{NaiveDate, NaiveDateTime};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;

/// One column of an answer's schema.
#[derive(Debug, Clone, Deserialize)]
pub struct TableField {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub fields: Vec<TableField>,
}

impl TableField {
    fn repeated(&self) -> bool {
        self.mode.as_deref() == Some("REPEATED")
    }
}

/// One row of an answer.
#[derive(Debug, Deserialize)]
pub struct TableRow {
    pub f: Vec<Cell>,
}

/// One value of a row.
#[derive(Debug, Deserialize)]
pub struct Cell {
    #[serde(default)]
    pub v: Value,
}

/// The plain type a BigQuery column becomes.
fn plain_type(field: &TableField) -> DataType {
    if field.repeated() {
        return DataType::Utf8;
    }
    match field.kind.as_str() {
        "INTEGER" | "INT64" => DataType::Int64,
        "FLOAT" | "FLOAT64" | "NUMERIC" => DataType::Float64,
        "BOOLEAN" | "BOOL" => DataType::Boolean,
        "DATE" => DataType::Date32,
        "TIMESTAMP" | "DATETIME" => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        _ => DataType::Utf8,
    }
}

/// The plain Arrow schema of an answer.
pub fn plain_schema(fields: &[TableField]) -> SchemaRef {
    Arc::new(Schema::new(
        fields
            .iter()
            .map(|f| Field::new(&f.name, plain_type(f), true))
            .collect::<Vec<_>>(),
    ))
}

/// A record or repeated value as plain JSON, without BigQuery's `f`/`v` wrapping.
fn plain_json(value: &Value, field: &TableField, in_array: bool) -> Value {
    if field.repeated() && !in_array {
        return match value {
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| plain_json(item.get("v").unwrap_or(&Value::Null), field, true))
                    .collect(),
            ),
            other => other.clone(),
        };
    }
    match (field.kind.as_str(), value.get("f")) {
        ("RECORD" | "STRUCT", Some(Value::Array(cells))) => Value::Object(
            field
                .fields
                .iter()
                .zip(cells)
                .map(|(sub, cell)| {
                    (
                        sub.name.clone(),
                        plain_json(cell.get("v").unwrap_or(&Value::Null), sub, false),
                    )
                })
                .collect::<Map<_, _>>(),
        ),
        _ => value.clone(),
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Nanoseconds since the epoch of a TIMESTAMP (int64 microseconds, or float seconds from
/// older answers) or a DATETIME (`YYYY-MM-DDTHH:MM:SS[.ffffff]`, taken as UTC).
fn nanos(kind: &str, s: &str) -> Option<i64> {
    if kind == "DATETIME" {
        let t = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
            .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
            .ok()?;
        return t.and_utc().timestamp_nanos_opt();
    }
    match s.parse::<i64>() {
        Ok(micros) => micros.checked_mul(1_000),
        Err(_) => s
            .parse::<f64>()
            .ok()
            .map(|secs| (secs * 1e6).round() as i64 * 1_000),
    }
}

fn days(s: &str) -> Option<i32> {
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some((date - NaiveDate::from_ymd_opt(1970, 1, 1)?).num_days() as i32)
}

/// One page of rows in the plain schema.
pub fn decode_page(
    rows: &[TableRow],
    fields: &[TableField],
    schema: &SchemaRef,
) -> Result<RecordBatch, SourceError> {
    let columns = fields
        .iter()
        .enumerate()
        .map(|(i, field)| decode_column(rows, i, field))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| SourceError::Query(format!("building a record batch: {e}")))
}

fn decode_column(rows: &[TableRow], i: usize, field: &TableField) -> Result<ArrayRef, SourceError> {
    let values = rows
        .iter()
        .map(|row| row.f.get(i).map_or(&Value::Null, |c| &c.v));
    let bad = |value: &str| {
        SourceError::Query(format!(
            "BigQuery column {:?} ({}) holds {value:?}",
            field.name, field.kind
        ))
    };
    macro_rules! build {
        ($builder:expr, $parse:expr) => {{
            let mut b = $builder;
            for v in values {
                match text(v) {
                    None => b.append_null(),
                    Some(s) => b.append_value($parse(&s).ok_or_else(|| bad(&s))?),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match plain_type(field) {
        DataType::Int64 => build!(Int64Builder::new(), |s: &str| s.parse::<i64>().ok()),
        DataType::Float64 => build!(Float64Builder::new(), |s: &str| s.parse::<f64>().ok()),
        DataType::Boolean => build!(BooleanBuilder::new(), |s: &str| match s {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }),
        DataType::Date32 => build!(Date32Builder::new(), days),
        DataType::Timestamp(..) => build!(
            TimestampNanosecondBuilder::new().with_timezone("UTC"),
            |s: &str| nanos(&field.kind, s)
        ),
        _ => {
            let mut b = StringBuilder::new();
            for v in values {
                match v {
                    Value::Null => b.append_null(),
                    Value::String(s) if !field.repeated() => b.append_value(s),
                    other => b.append_value(plain_json(other, field, false).to_string()),
                }
            }
            Arc::new(b.finish())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;

    fn field(name: &str, kind: &str) -> TableField {
        TableField {
            name: name.into(),
            kind: kind.into(),
            mode: None,
            fields: vec![],
        }
    }

    #[test]
    fn scalars_become_plain_arrow_at_full_precision() {
        let fields = vec![
            field("id", "INTEGER"),
            field("at", "TIMESTAMP"),
            field("local", "DATETIME"),
            field("day", "DATE"),
            field("ok", "BOOLEAN"),
        ];
        let rows: Vec<TableRow> = serde_json::from_str(
            r#"[{"f":[{"v":"7"},{"v":"1709294400123456"},{"v":"2024-03-01T12:00:00.5"},{"v":"2024-03-01"},{"v":"true"}]},
                {"f":[{"v":null},{"v":null},{"v":null},{"v":null},{"v":null}]}]"#,
        )
        .unwrap();
        let batch = decode_page(&rows, &fields, &plain_schema(&fields)).unwrap();
        assert_eq!(
            batch
                .column(0)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0),
            7
        );
        let at = batch
            .column(1)
            .as_primitive::<arrow::datatypes::TimestampNanosecondType>();
        assert_eq!(at.value(0), 1_709_294_400_123_456_000);
        let local = batch
            .column(2)
            .as_primitive::<arrow::datatypes::TimestampNanosecondType>();
        assert_eq!(local.value(0), 1_709_294_400_500_000_000);
        assert!(batch.column(4).as_boolean().value(0));
        assert_eq!(batch.column(0).null_count(), 1);
    }

    #[test]
    fn records_and_arrays_become_json_text() {
        let mut tags = field("tags", "STRING");
        tags.mode = Some("REPEATED".into());
        let mut address = field("address", "RECORD");
        address.fields = vec![field("city", "STRING"), field("zip", "STRING")];
        let fields = vec![tags, address];
        let rows: Vec<TableRow> = serde_json::from_str(
            r#"[{"f":[{"v":[{"v":"a"},{"v":"b"}]},{"v":{"f":[{"v":"Oslo"},{"v":"0150"}]}}]}]"#,
        )
        .unwrap();
        let batch = decode_page(&rows, &fields, &plain_schema(&fields)).unwrap();
        assert_eq!(batch.column(0).as_string::<i32>().value(0), r#"["a","b"]"#);
        assert_eq!(
            batch.column(1).as_string::<i32>().value(0),
            r#"{"city":"Oslo","zip":"0150"}"#
        );
    }

    #[test]
    fn a_value_of_the_wrong_shape_names_its_column() {
        let fields = vec![field("points", "INTEGER")];
        let rows: Vec<TableRow> = serde_json::from_str(r#"[{"f":[{"v":"lots"}]}]"#).unwrap();
        let e = decode_page(&rows, &fields, &plain_schema(&fields)).unwrap_err();
        assert!(e.to_string().contains("\"points\""), "{e}");
    }
}
