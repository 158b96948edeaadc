//! A mapping tried on rows held in memory (a source's preview) with the plan a chunk is
//! transformed with, so a mapping being written shows what each previewed value becomes, or
//! why its row would be rejected, before anything runs.

use crate::mapping::{plan, raw};
use crate::transform::TransformError;
use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use datafusion::prelude::{SessionConfig, SessionContext};
use sluice_proto::columns::{self, REASON_SEPARATOR};
use sluice_proto::Mapping;
use std::collections::BTreeMap;

/// What a mapping made of the rows it was tried on.
#[derive(Debug, Clone, Default)]
pub struct Trial {
    /// Rows tried.
    pub rows: usize,
    /// Rows the mapping would reject, by reason code.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Each property's values, in the mapping's order of names.
    pub properties: Vec<PropertyTrial>,
    /// The first rejected rows: row number (from 0), column, value and message.
    pub rejections: Vec<TrialRejection>,
}

/// One property's previewed values.
#[derive(Debug, Clone, Default)]
pub struct PropertyTrial {
    /// The property's name.
    pub name: String,
    /// Rows whose value converted (NULLs included).
    pub converted: usize,
    /// Each row's value: the source's text and what it becomes, or `None` where it does not
    /// convert.
    pub values: Vec<(Option<String>, Option<String>)>,
}

impl PropertyTrial {
    /// The values that do not convert, with their row numbers.
    pub fn failures(&self) -> impl Iterator<Item = (usize, &str)> {
        self.values
            .iter()
            .enumerate()
            .filter_map(|(row, (text, value))| match (text, value) {
                (Some(text), None) => Some((row, text.as_str())),
                _ => None,
            })
    }
}

/// One rejected row of a trial.
#[derive(Debug, Clone)]
pub struct TrialRejection {
    /// The row's place in the rows tried, from 0.
    pub row: usize,
    /// The column at fault.
    pub column: String,
    /// Its value, as text.
    pub value: Option<String>,
    /// The reason code.
    pub reason: String,
    /// What is wrong, in words.
    pub message: String,
}

/// At most this many rejected rows are kept in a trial.
const KEPT_REJECTIONS: usize = 50;

/// Tries `mapping` on `batch`, which has the columns a chunk read has (key, watermark and the
/// mapped columns, as a source's preview gives them).
pub async fn try_mapping(mapping: &Mapping, batch: RecordBatch) -> Result<Trial, TransformError> {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    let now = chrono::Utc::now();
    let plan =
        plan(mapping, batch.schema().as_ref(), Some(now)).map_err(TransformError::Mapping)?;
    let frame = ctx
        .read_batch(batch)?
        .select(plan.texts)?
        .select(plan.normalize)?
        .select(plan.classify)?;
    let batches = frame.collect().await?;
    let mut trial = Trial {
        properties: mapping
            .properties
            .keys()
            .map(|name| PropertyTrial {
                name: name.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    for batch in &batches {
        let column = |name: &str| -> Result<Vec<Option<String>>, TransformError> {
            let array = batch.column_by_name(name).ok_or_else(|| {
                TransformError::Mapping(format!("the trial lost column {name:?}"))
            })?;
            texts(array)
        };
        let reject_column = column(columns::REJECT_COLUMN)?;
        let reject_value = column(columns::REJECT_VALUE)?;
        let reject_reason = column(columns::REJECT_REASON)?;
        for (property, shown) in mapping.properties.iter().zip(&mut trial.properties) {
            let text = column(&raw(&property.1.column))?;
            let value = column(&columns::property(property.0))?;
            for (text, value) in text.into_iter().zip(value) {
                if text.is_none() || value.is_some() {
                    shown.converted += 1;
                }
                shown.values.push((text, value));
            }
        }
        for (i, reason) in reject_reason.iter().enumerate() {
            let Some(reason) = reason else { continue };
            let (code, message) = reason
                .split_once(REASON_SEPARATOR)
                .unwrap_or((reason.as_str(), ""));
            *trial
                .rejected_by_reason
                .entry(code.to_string())
                .or_default() += 1;
            if trial.rejections.len() < KEPT_REJECTIONS {
                trial.rejections.push(TrialRejection {
                    row: trial.rows + i,
                    column: reject_column[i].clone().unwrap_or_default(),
                    value: reject_value[i].clone(),
                    reason: code.to_string(),
                    message: message.to_string(),
                });
            }
        }
        trial.rows += batch.num_rows();
    }
    Ok(trial)
}

/// A column's values as text (date-times in ISO-8601).
fn texts(array: &ArrayRef) -> Result<Vec<Option<String>>, TransformError> {
    let text = match array.data_type() {
        DataType::Utf8 => array.clone(),
        _ => arrow::compute::cast(array, &DataType::Utf8)?,
    };
    Ok(text
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema, TimeUnit};
    use sluice_proto::columns::{SOURCE_KEY, SOURCE_WATERMARK};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_date_in_another_format_is_shown_as_the_row_it_would_reject() {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let schema = Schema::new(vec![
            Field::new(SOURCE_KEY, DataType::Int64, false),
            Field::new(SOURCE_WATERMARK, ts, false),
            Field::new("id", DataType::Int64, true),
            Field::new("signup", DataType::Utf8, true),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(TimestampMicrosecondArray::from(vec![0, 1, 2]).with_timezone("UTC")),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![
                    Some("24/12/2025"),
                    Some("2025-12-24"),
                    None,
                ])),
            ],
        )
        .unwrap();
        let mapping: Mapping = serde_json::from_value(serde_json::json!({
        "identity": {"external_id": "id"},
        "properties": {"signup": {"column": "signup", "type": "date", "format": "dd/MM/yyyy"}},
                }))
        .unwrap();
        let trial = try_mapping(&mapping, batch).await.unwrap();
        assert_eq!(trial.rows, 3);
        let signup = &trial.properties[0];
        assert_eq!(signup.converted, 2);
        assert_eq!(
            signup.values[0],
            (Some("24/12/2025".into()), Some("2025-12-24".into()))
        );
        assert_eq!(
            signup.failures().collect::<Vec<_>>(),
            vec![(1, "2025-12-24")]
        );
        assert_eq!(trial.rejected_by_reason["invalid_value"], 1);
        assert_eq!(trial.rejections[0].row, 1);
        assert_eq!(trial.rejections[0].column, "signup");
        assert!(trial.rejections[0].message.contains("dd/MM/yyyy"));
    }
}
