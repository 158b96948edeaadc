//! Turns an import's mapping into DataFusion expressions: one projection that normalizes every
//! column, and one that names the first problem of each row (its column, value and reason).

use crate::functions;
use arrow::datatypes::{DataType, Schema};
use datafusion::functions::unicode::expr_fn::substring;
use datafusion::logical_expr::{cast, ident, lit, try_cast, when, Expr};
use datafusion::prelude::{btrim, concat, lower, trunc};
use datafusion::scalar::ScalarValue;
use sluice_proto::columns::{self, SOURCE_KEY, SOURCE_WATERMARK};
use sluice_proto::dateformat::{parse_timezone, DateFormat};
use sluice_proto::{Mapping, PropertyMapping, PropertyType};

const IDENTITY_PROBLEM: &str = "__identity_problem";

const IDENTITY_RAW: &str = "src:identity";

/// The two projections of a chunk and the names of the accepted and rejected outputs.
pub struct MappingPlan {
    pub normalize: Vec<Expr>,
    pub classify: Vec<Expr>,
    pub accepted: Vec<String>,
    pub rejected: Vec<String>,
}

/// Builds the projections for `mapping` over a chunk whose schema is `input`.
pub fn plan(mapping: &Mapping, input: &Schema) -> Result<MappingPlan, String> {
    let column_type = |name: &str| -> Result<DataType, String> {
        input
            .field_with_name(name)
            .map(|f| f.data_type().clone())
            .map_err(|_| format!("the chunk has no column {name:?}"))
    };
    column_type(SOURCE_KEY)?;
    column_type(SOURCE_WATERMARK)?;
    let external = &mapping.identity.external_id;
    column_type(external)?;

    let mut normalize = vec![
        cast(ident(SOURCE_KEY), DataType::Utf8).alias(columns::KEY),
        cast(ident(SOURCE_WATERMARK), functions::datetime_type()).alias(columns::UPDATED_AT),
        btrim(vec![cast(ident(external), DataType::Utf8)]).alias(columns::EXTERNAL_ID),
        functions::identity_check()
            .call(vec![cast(ident(external), DataType::Utf8)])
            .alias(IDENTITY_PROBLEM),
        cast(ident(external), DataType::Utf8).alias(IDENTITY_RAW),
    ];
    let mut accepted = vec![
        columns::KEY.to_string(),
        columns::UPDATED_AT.to_string(),
        columns::EXTERNAL_ID.to_string(),
    ];
    let problem = ident(IDENTITY_PROBLEM).is_not_null();
    let mut reject_column = when(problem.clone(), lit(external.as_str()));
    let mut reject_value = when(problem.clone(), ident(IDENTITY_RAW));
    let mut reject_reason = when(
        problem,
        concat(vec![lit("identity external_id: "), ident(IDENTITY_PROBLEM)]),
    );

    for (index, (name, property)) in mapping.properties.iter().enumerate() {
        let source_type = column_type(&property.column)?;
        let output = columns::property(name);
        let raw_name = format!("src:{index}");
        normalize.push(convert(index, property, &source_type)?.alias(&output));
        normalize.push(cast(ident(&property.column), DataType::Utf8).alias(&raw_name));
        let failed = ident(&raw_name).is_not_null().and(ident(&output).is_null());
        reject_column = reject_column.when(failed.clone(), lit(property.column.as_str()));
        reject_value = reject_value.when(failed.clone(), ident(&raw_name));
        reject_reason = reject_reason.when(failed, lit(reason(name, property)));
        accepted.push(output);
    }

    let null_text = || lit(ScalarValue::Utf8(None));
    let truncate = |e: Expr| substring(e, lit(1i64), lit(columns::MAX_VALUE_CHARS));
    let mut classify: Vec<Expr> = accepted.iter().map(ident).collect();
    classify.push(
        reject_column
            .otherwise(null_text())
            .map_err(|e| e.to_string())?
            .alias(columns::REJECT_COLUMN),
    );
    classify.push(
        truncate(
            reject_value
                .otherwise(null_text())
                .map_err(|e| e.to_string())?,
        )
        .alias(columns::REJECT_VALUE),
    );
    classify.push(
        reject_reason
            .otherwise(null_text())
            .map_err(|e| e.to_string())?
            .alias(columns::REJECT_REASON),
    );
    let rejected = vec![
        columns::KEY.to_string(),
        columns::REJECT_COLUMN.to_string(),
        columns::REJECT_VALUE.to_string(),
        columns::REJECT_REASON.to_string(),
    ];
    Ok(MappingPlan {
        normalize,
        classify,
        accepted,
        rejected,
    })
}

/// The reason given when a property's value cannot be converted.
fn reason(name: &str, property: &PropertyMapping) -> String {
    match (&property.kind, &property.format) {
        (PropertyType::Date | PropertyType::Datetime, Some(format)) => format!(
            "property {name}: value is not a valid {} in format {format}",
            property.kind.as_str()
        ),
        (kind, _) => format!("property {name}: value is not a valid {}", kind.as_str()),
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_integer(t: &DataType) -> bool {
    t.is_integer()
}

/// The expression converting a source column to a property's declared type; NULL where the
/// value does not convert.
fn convert(index: usize, property: &PropertyMapping, source: &DataType) -> Result<Expr, String> {
    let src = ident(&property.column);
    let text = || cast(ident(&property.column), DataType::Utf8);
    Ok(match property.kind {
        PropertyType::String => text(),
        PropertyType::Integer => {
            if is_integer(source) || *source == DataType::Boolean {
                cast(src, DataType::Int64)
            } else if source.is_floating() {
                when(
                    src.clone().eq(trunc(vec![src.clone()])),
                    try_cast(src, DataType::Int64),
                )
                .end()
                .map_err(|e| e.to_string())?
            } else {
                try_cast(btrim(vec![text()]), DataType::Int64)
            }
        }
        PropertyType::Number => {
            if is_text(source) {
                try_cast(btrim(vec![src]), DataType::Float64)
            } else {
                try_cast(src, DataType::Float64)
            }
        }
        PropertyType::Boolean => {
            if is_text(source) {
                try_cast(lower(btrim(vec![src])), DataType::Boolean)
            } else {
                try_cast(src, DataType::Boolean)
            }
        }
        PropertyType::Date | PropertyType::Datetime => {
            let tz = parse_timezone(property.timezone.as_deref())?;
            let format = DateFormat::parse(property.format.as_deref())?;
            let is_datetime = property.kind == PropertyType::Datetime;
            match source {
                DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => {
                    if is_datetime {
                        cast(src, functions::datetime_type())
                    } else {
                        cast(src, DataType::Date32)
                    }
                }
                _ if is_datetime => {
                    functions::parse_datetime(&format!("sluice_parse_datetime_{index}"), format, tz)
                        .call(vec![text()])
                }
                _ => functions::parse_date(&format!("sluice_parse_date_{index}"), format, tz)
                    .call(vec![text()]),
            }
        }
        PropertyType::Json => {
            if is_integer(source) || source.is_floating() || *source == DataType::Boolean {
                text()
            } else {
                functions::json().call(vec![text()])
            }
        }
    })
}
