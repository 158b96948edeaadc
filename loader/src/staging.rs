//! Turns normalized Arrow rows into staging rows: key, updated_at, external id, the properties
//! to set (as one JSON object) and the properties to remove (mapped columns that are NULL).

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::datatypes::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::{Map, Number, Value};
use sluice_proto::{columns, Mapping, PropertyType};

/// One row for the staging table.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedRow {
    pub key: String,
    pub updated_at: DateTime<Utc>,
    pub external_id: String,
    pub props: Value,
    pub unset: Vec<String>,
}

/// Why a normalized batch could not be staged.
#[derive(Debug, thiserror::Error)]
#[error("normalized chunk: {0}")]
pub struct StagingError(pub String);

/// A column of the batch, with text of any encoding (Utf8View, LargeUtf8) read as Utf8.
fn column(batch: &RecordBatch, name: &str) -> Result<ArrayRef, StagingError> {
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| StagingError(format!("missing column {name:?}")))?;
    match array.data_type() {
        DataType::Utf8View | DataType::LargeUtf8 => {
            cast(array, &DataType::Utf8).map_err(|e| StagingError(format!("column {name:?}: {e}")))
        }
        _ => Ok(array.clone()),
    }
}

/// Converts a batch of the transformer's output into staging rows.
pub fn stage_rows(batch: &RecordBatch, mapping: &Mapping) -> Result<Vec<StagedRow>, StagingError> {
    let (keys, times, ids) = (
        column(batch, columns::KEY)?,
        column(batch, columns::UPDATED_AT)?,
        column(batch, columns::EXTERNAL_ID)?,
    );
    let keys = keys.as_string::<i32>();
    let times = times.as_primitive::<TimestampMicrosecondType>();
    let ids = ids.as_string::<i32>();
    let properties: Vec<(&String, PropertyType, ArrayRef)> = mapping
        .properties
        .iter()
        .map(|(name, p)| Ok((name, p.kind, column(batch, &columns::property(name))?)))
        .collect::<Result<_, StagingError>>()?;

    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut props = Map::new();
        let mut unset = Vec::new();
        for (name, kind, array) in &properties {
            match value(*kind, array.as_ref(), row) {
                Some(v) => {
                    props.insert((*name).clone(), v);
                }
                None => unset.push((*name).clone()),
            }
        }
        let updated_at = DateTime::from_timestamp_micros(times.value(row)).ok_or_else(|| {
            StagingError(format!("row {}: updated_at out of range", keys.value(row)))
        })?;
        rows.push(StagedRow {
            key: keys.value(row).to_string(),
            updated_at,
            external_id: ids.value(row).to_string(),
            props: Value::Object(props),
            unset,
        });
    }
    Ok(rows)
}

/// A property's JSON value, or `None` when it is NULL (the property is then removed).
fn value(kind: PropertyType, array: &dyn Array, row: usize) -> Option<Value> {
    if array.is_null(row) {
        return None;
    }
    Some(match kind {
        PropertyType::String => Value::String(array.as_string::<i32>().value(row).to_string()),
        PropertyType::Integer => Value::from(array.as_primitive::<Int64Type>().value(row)),
        PropertyType::Number => Value::Number(Number::from_f64(
            array.as_primitive::<Float64Type>().value(row),
        )?),
        PropertyType::Boolean => Value::Bool(array.as_boolean().value(row)),
        PropertyType::Date => {
            let days = array.as_primitive::<Date32Type>().value(row);
            let date = NaiveDate::from_ymd_opt(1970, 1, 1)? + chrono::Duration::days(days as i64);
            Value::String(date.format("%Y-%m-%d").to_string())
        }
        PropertyType::Datetime => {
            let micros = array.as_primitive::<TimestampMicrosecondType>().value(row);
            let time = DateTime::from_timestamp_micros(micros)?;
            Value::String(time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        }
        PropertyType::Json => serde_json::from_str(array.as_string::<i32>().value(row)).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Date32Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema, TimeUnit};
    use std::sync::Arc;

    #[test]
    fn nulls_become_removals_and_values_keep_their_types() {
        let mapping: Mapping = serde_json::from_value(serde_json::json!({
            "identity": {"external_id": "ext"},
            "properties": {
                "name": {"column": "n", "type": "string"},
                "points": {"column": "p", "type": "integer"},
                "birthday": {"column": "b", "type": "date"}
            }
        }))
        .unwrap();
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let schema = Schema::new(vec![
            Field::new(columns::KEY, DataType::Utf8, false),
            Field::new(columns::UPDATED_AT, ts, false),
            Field::new(columns::EXTERNAL_ID, DataType::Utf8, false),
            Field::new(columns::property("name"), DataType::Utf8, true),
            Field::new(columns::property("points"), DataType::Int64, true),
            Field::new(columns::property("birthday"), DataType::Date32, true),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["1"])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![1_700_000_000_000_000]).with_timezone("UTC"),
            ),
            Arc::new(StringArray::from(vec!["u1"])),
            Arc::new(StringArray::from(vec![Some("Ada")])),
            Arc::new(Int64Array::from(vec![None::<i64>])),
            Arc::new(Date32Array::from(vec![Some(19_000)])),
        ];
        let batch = RecordBatch::try_new(Arc::new(schema), columns).unwrap();
        let rows = stage_rows(&batch, &mapping).unwrap();
        assert_eq!(
            rows[0].props,
            serde_json::json!({"name": "Ada", "birthday": "2022-01-08"})
        );
        assert_eq!(rows[0].unset, vec!["points".to_string()]);
        assert_eq!(rows[0].external_id, "u1");
    }
}
