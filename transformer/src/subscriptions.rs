//! The consent columns of a profiles import: each channel's and group's status read exactly
//! (the import's own `values`, a boolean column's true and false, or the status words
//! themselves) and the consent time; a value that reads as no status rejects the row.

use crate::mapping::{convert, problem, raw, FirstProblem};
use arrow::datatypes::DataType;
use datafusion::logical_expr::{ident, lit, Case, Expr};
use datafusion::prelude::{btrim, lower};
use datafusion::scalar::ScalarValue;
use sluice_proto::columns;
use sluice_proto::subscription::{Status, StatusColumn, SubscriptionMapping};
use sluice_proto::{PropertyMapping, PropertyType, Reason};

/// Adds the status of every mapped topic and the consent time to `normalize` and
/// `accepted`, and their problems to `problems`.
pub(crate) fn plan(
    subscriptions: &SubscriptionMapping,
    timezone: Option<&str>,
    column_type: &dyn Fn(&str) -> Result<DataType, String>,
    normalize: &mut Vec<Expr>,
    accepted: &mut Vec<String>,
    problems: &mut FirstProblem,
) -> Result<(), String> {
    for (topic, status) in subscriptions.topics() {
        let output = columns::subscription(&topic.key());
        let source = column_type(&status.column)?;
        normalize.push(read_status(status, &source).alias(&output));
        accepted.push(output.clone());
        let text = ident(raw(&status.column));
        problems.add(
            text.clone().is_not_null().and(ident(&output).is_null()),
            &status.column,
            text,
            problem(
                Reason::InvalidSubscriptionStatus,
                &format!(
                    "subscriptions.{}: the value is not a status ({})",
                    topic.key(),
                    accepted_values(status, &source)
                ),
            ),
        );
    }
    if let Some(time) = &subscriptions.consented_at {
        let as_property = PropertyMapping {
            column: time.column.clone(),
            kind: PropertyType::Datetime,
            format: time.format.clone(),
            timezone: time.timezone.clone(),
        };
        let zone = time.timezone.as_deref().or(timezone);
        let source = column_type(&time.column)?;
        normalize.push(
            convert("consented_at", &as_property, zone, &source)?.alias(columns::CONSENTED_AT),
        );
        accepted.push(columns::CONSENTED_AT.to_string());
        let text = ident(raw(&time.column));
        problems.add(
            text.clone()
                .is_not_null()
                .and(ident(columns::CONSENTED_AT).is_null()),
            &time.column,
            text,
            problem(
                Reason::InvalidValue,
                &match &time.format {
                    Some(f) => format!(
                        "subscriptions.consented_at: the value is not a valid datetime in format {f}"
                    ),
                    None => "subscriptions.consented_at: the value is not a valid ISO-8601 datetime"
                        .to_string(),
                },
            ),
        );
    }
    Ok(())
}

/// The status a column's value reads as, NULL where it reads as none.
fn read_status(status: &StatusColumn, source: &DataType) -> Expr {
    let text = ident(raw(&status.column));
    let arms: Vec<(Box<Expr>, Box<Expr>)> = if !status.values.is_empty() {
        status
            .values
            .iter()
            .map(|(value, s)| {
                (
                    Box::new(text.clone().eq(lit(value.as_str()))),
                    Box::new(lit(s.as_str())),
                )
            })
            .collect()
    } else if *source == DataType::Boolean {
        vec![
            (
                Box::new(ident(&status.column).is_true()),
                Box::new(lit(Status::Subscribed.as_str())),
            ),
            (
                Box::new(ident(&status.column).is_false()),
                Box::new(lit(Status::Unsubscribed.as_str())),
            ),
        ]
    } else {
        let word = lower(btrim(vec![text]));
        Status::ALL
            .into_iter()
            .map(|s| {
                (
                    Box::new(word.clone().eq(lit(s.as_str()))),
                    Box::new(lit(s.as_str())),
                )
            })
            .collect()
    };
    Expr::Case(Case::new(
        None,
        arms,
        Some(Box::new(lit(ScalarValue::Utf8(None)))),
    ))
}

/// What a column accepts, for the rejection's message.
fn accepted_values(status: &StatusColumn, source: &DataType) -> String {
    if !status.values.is_empty() {
        let values: Vec<String> = status.values.keys().map(|v| format!("{v:?}")).collect();
        format!("its values are {}", values.join(", "))
    } else if *source == DataType::Boolean {
        "true or false".to_string()
    } else {
        "subscribed, unsubscribed or opted_in".to_string()
    }
}
