//! Turns an import's mapping into DataFusion expressions: one projection that reads each mapped
//! column's text, one that normalizes every
//! column (identities, properties, payload), and one that names the first problem of each row
//! (its column, value, reason code and message).

use crate::functions;
use arrow::datatypes::{DataType, Schema};
use chrono::{DateTime, Utc};
use datafusion::functions::core::expr_fn::greatest;
use datafusion::functions::string::expr_fn::{octet_length, split_part};
use datafusion::logical_expr::{cast, ident, lit, try_cast, when, Case, Expr};
use datafusion::prelude::{btrim, lower, trunc};
use datafusion::scalar::ScalarValue;
use sluice_proto::columns::{
    self, REASON_SEPARATOR, SOURCE_KEY, SOURCE_UNREPRESENTABLE, SOURCE_WATERMARK,
};
use sluice_proto::dateformat::{parse_timezone, DateFormat};
use sluice_proto::mapping::{MAX_PROPERTIES, MAX_ROW_BYTES};
use sluice_proto::{
    EventMapping, EventName, IdentityField, Mapping, MissingEventTime, PropertyMapping,
    PropertyType, Reason, Records,
};

const PAYLOAD_PROBLEM: &str = "__payload_problem";
const ITEMS_PROBLEM: &str = "__items_problem";

/// The two projections of a chunk and the names of the accepted outputs and of the source
/// columns a rejected row is reported with.
pub struct MappingPlan {
    /// The source columns the mapping reads, and each one's text.
    pub texts: Vec<Expr>,
    /// Every mapped column normalized: identities, properties, payload.
    pub normalize: Vec<Expr>,
    /// The normalized columns and, for each row, its first problem.
    pub classify: Vec<Expr>,
    /// The columns an accepted row is written with.
    pub accepted: Vec<String>,
    /// (source column, the projected column holding its text).
    pub source_text: Vec<(String, String)>,
    /// With `if_missing: import_time`, the classified column that is true where an event's
    /// time was missing and the run's start was used.
    pub time_imputed: Option<String>,
}

/// The classified column marking events stamped with the run's start.
const TIME_IMPUTED: &str = "__time_imputed";

/// The projected column holding a source column's text.
pub(crate) fn raw(column: &str) -> String {
    format!("src:{column}")
}

fn problem_column(field: IdentityField) -> String {
    format!("idp:{}", field.as_str())
}

/// A reason as carried in `REJECT_REASON`.
fn reason_text(reason: Reason, message: &str) -> String {
    format!("{}{REASON_SEPARATOR}{message}", reason.as_str())
}

/// Three `CASE` expressions (column, value, reason) built up one condition at a time; the
/// first condition that holds names the row's problem.
#[derive(Default)]
pub(crate) struct FirstProblem {
    column: Vec<(Box<Expr>, Box<Expr>)>,
    value: Vec<(Box<Expr>, Box<Expr>)>,
    reason: Vec<(Box<Expr>, Box<Expr>)>,
}

impl FirstProblem {
    pub(crate) fn add(&mut self, condition: Expr, column: &str, value: Expr, reason: Expr) {
        self.add_named(condition, lit(column), value, reason)
    }

    /// Like `add`, with the column named by an expression of the row.
    fn add_named(&mut self, condition: Expr, column: Expr, value: Expr, reason: Expr) {
        let when = Box::new(condition);
        self.column.push((when.clone(), Box::new(column)));
        self.value.push((when.clone(), Box::new(value)));
        self.reason.push((when, Box::new(reason)));
    }

    fn finish(self) -> Vec<Expr> {
        let end = |when_then: Vec<(Box<Expr>, Box<Expr>)>, name: &str| {
            Expr::Case(Case::new(
                None,
                when_then,
                Some(Box::new(lit(ScalarValue::Utf8(None)))),
            ))
            .alias(name)
        };
        vec![
            end(self.column, columns::REJECT_COLUMN),
            end(self.value, columns::REJECT_VALUE),
            end(self.reason, columns::REJECT_REASON),
        ]
    }
}

/// Builds the projections for `mapping` over a chunk whose schema is `input`; `run_started_at`
/// is the time of events stamped for want of their own.
pub fn plan(
    mapping: &Mapping,
    input: &Schema,
    run_started_at: Option<DateTime<Utc>>,
) -> Result<MappingPlan, String> {
    let column_type = |name: &str| -> Result<DataType, String> {
        input
            .field_with_name(name)
            .map(|f| f.data_type().clone())
            .map_err(|_| format!("the chunk has no column {name:?}"))
    };
    column_type(SOURCE_KEY)?;
    column_type(SOURCE_WATERMARK)?;
    let identity_fields = mapping.identity.fields();
    if identity_fields.is_empty() {
        return Err("the mapping names no identity column".to_string());
    }

    let mut normalize = vec![
        cast(ident(SOURCE_KEY), DataType::Utf8).alias(columns::KEY),
        cast(ident(SOURCE_WATERMARK), functions::datetime_type()).alias(columns::UPDATED_AT),
    ];
    let mut accepted = vec![columns::KEY.to_string(), columns::UPDATED_AT.to_string()];
    let mut source_text = Vec::new();
    let mut texts = vec![ident(SOURCE_KEY), ident(SOURCE_WATERMARK)];
    for column in mapping.columns() {
        let source_type = column_type(&column)?;
        texts.push(ident(&column));
        texts.push(functions::text(ident(&column), &source_type)?.alias(raw(&column)));
        normalize.push(ident(raw(&column)));
        source_text.push((column.clone(), raw(&column)));
    }

    let mut problems = FirstProblem::default();
    let all_missing = identity_fields
        .iter()
        .map(|(_, c)| ident(raw(c)).is_null())
        .reduce(Expr::and)
        .expect("at least one identity");
    let names: Vec<&str> = identity_fields.iter().map(|(_, c)| *c).collect();
    problems.add(
        all_missing,
        identity_fields[0].1,
        lit(ScalarValue::Utf8(None)),
        lit(reason_text(
            Reason::MissingIdentity,
            &format!("no identity column has a value ({})", names.join(", ")),
        )),
    );
    for (field, column) in &identity_fields {
        let text = ident(raw(column));
        normalize.push(
            functions::identity_value(*field)
                .call(vec![text.clone()])
                .alias(columns::identity(*field)),
        );
        normalize.push(
            functions::identity_problem(*field)
                .call(vec![text])
                .alias(problem_column(*field)),
        );
        accepted.push(columns::identity(*field));
        problems.add(
            ident(problem_column(*field)).is_not_null(),
            column,
            ident(raw(column)),
            ident(problem_column(*field)),
        );
    }
    if let (Some(name), Some(label)) = (&mapping.identity.alias_name, &mapping.identity.alias_label)
    {
        let (n, l) = (ident(raw(name)), ident(raw(label)));
        problems.add(
            n.clone().is_null().and(l.clone().is_not_null()),
            name,
            lit(ScalarValue::Utf8(None)),
            lit(reason_text(
                Reason::InvalidIdentity,
                "alias_label has a value but alias_name has none; an alias needs both",
            )),
        );
        problems.add(
            n.is_not_null().and(l.is_null()),
            label,
            lit(ScalarValue::Utf8(None)),
            lit(reason_text(
                Reason::InvalidIdentity,
                "alias_name has a value but alias_label has none; an alias needs both",
            )),
        );
    }

    // A value the extractor could not represent (an infinite time) is no value a property
    // can hold.
    if input.field_with_name(SOURCE_UNREPRESENTABLE).is_ok() {
        let unrepresentable = ident(SOURCE_UNREPRESENTABLE);
        texts.push(unrepresentable.clone());
        normalize.push(unrepresentable.clone());
        let separator = REASON_SEPARATOR.to_string();
        problems.add_named(
            unrepresentable.clone().is_not_null(),
            split_part(unrepresentable.clone(), lit(separator.clone()), lit(1i64)),
            split_part(unrepresentable, lit(separator), lit(2i64)),
            lit(reason_text(
                Reason::InvalidValue,
                "the value is an infinite time, which no property can hold",
            )),
        );
    }

    // The row's size, and the column that weighs most in it: the one a rejection names.
    let lengths: Vec<Expr> = source_text
        .iter()
        .map(|(_, text)| datafusion::prelude::coalesce(vec![octet_length(ident(text)), lit(0i32)]))
        .collect();
    let row_bytes = lengths
        .iter()
        .cloned()
        .reduce(|a, b| a + b)
        .expect("at least one column");
    let longest = match lengths.len() {
        1 => lengths[0].clone(),
        _ => greatest(lengths.clone()),
    };
    let heaviest = |of: &dyn Fn(&str, &str) -> Expr| {
        let arms = source_text
            .iter()
            .zip(&lengths)
            .map(|((column, text), length)| {
                (
                    Box::new(length.clone().eq(longest.clone())),
                    Box::new(of(column, text)),
                )
            })
            .collect();
        Expr::Case(Case::new(None, arms, None))
    };
    problems.add_named(
        row_bytes.gt(lit(MAX_ROW_BYTES as i64)),
        heaviest(&|column, _| lit(column)),
        heaviest(&|_, text| ident(text)),
        lit(reason_text(
            Reason::RowTooLarge,
            &format!("the row's mapped values are over {MAX_ROW_BYTES} bytes; this column is the largest"),
        )),
    );

    if let Some(payload) = &mapping.payload {
        let declared: Vec<String> = mapping
            .properties
            .keys()
            .chain(mapping.constants.keys())
            .cloned()
            .collect();
        let budget = MAX_PROPERTIES.saturating_sub(declared.len());
        let text = ident(raw(payload));
        normalize.push(
            functions::payload(declared.clone())
                .call(vec![text.clone()])
                .alias(columns::PAYLOAD),
        );
        normalize.push(
            functions::payload_problem(declared, budget)
                .call(vec![text])
                .alias(PAYLOAD_PROBLEM),
        );
        accepted.push(columns::PAYLOAD.to_string());
        problems.add(
            ident(PAYLOAD_PROBLEM).is_not_null(),
            payload,
            ident(raw(payload)),
            ident(PAYLOAD_PROBLEM),
        );
    }

    let mut time_imputed = None;
    if let Records::Events(events) = &mapping.records {
        if events.time.if_missing == MissingEventTime::ImportTime {
            let started = run_started_at.ok_or(
                "the chunk does not carry its run's start, which if_missing: import_time needs",
            )?;
            normalize.push(
                ident(raw(&events.time.column))
                    .is_null()
                    .alias(TIME_IMPUTED),
            );
            time_imputed = Some((TIME_IMPUTED.to_string(), started));
        }
        plan_event(
            events,
            mapping.timezone.as_deref(),
            time_imputed.as_ref().map(|(_, started)| *started),
            &column_type,
            &mut normalize,
            &mut accepted,
            &mut problems,
        )?;
    }

    for (index, (name, property)) in mapping.properties.iter().enumerate() {
        let source_type = column_type(&property.column)?;
        let output = columns::property(name);
        let timezone = property.timezone.as_deref().or(mapping.timezone.as_deref());
        normalize
            .push(convert(&index.to_string(), property, timezone, &source_type)?.alias(&output));
        let text = ident(raw(&property.column));
        let failed = text.clone().is_not_null().and(ident(&output).is_null());
        problems.add(
            failed,
            &property.column,
            text,
            lit(reason_text(Reason::InvalidValue, &reason(name, property))),
        );
        accepted.push(output);
    }

    if let Some(subscriptions) = &mapping.subscriptions {
        crate::subscriptions::plan(
            subscriptions,
            mapping.timezone.as_deref(),
            &column_type,
            &mut normalize,
            &mut accepted,
            &mut problems,
        )?;
    }

    let mut classify: Vec<Expr> = accepted.iter().map(ident).collect();
    classify.extend(source_text.iter().map(|(_, text)| ident(text)));
    classify.extend(time_imputed.iter().map(|(column, _)| ident(column)));
    classify.extend(problems.finish());
    Ok(MappingPlan {
        texts,
        normalize,
        classify,
        accepted,
        source_text,
        time_imputed: time_imputed.map(|(column, _)| column),
    })
}

/// A problem reason as a literal.
pub(crate) fn problem(reason: Reason, message: &str) -> Expr {
    lit(reason_text(reason, message))
}

/// True where a text column is NULL or blank.
fn blank(text: Expr) -> Expr {
    text.clone().is_null().or(btrim(vec![text]).eq(lit("")))
}

/// The event columns (name, time, dedup key, purchase fields) and their problems. With
/// `import_time`, an event without a time takes it instead of being rejected.
fn plan_event(
    events: &EventMapping,
    timezone: Option<&str>,
    import_time: Option<DateTime<Utc>>,
    column_type: &dyn Fn(&str) -> Result<DataType, String>,
    normalize: &mut Vec<Expr>,
    accepted: &mut Vec<String>,
    problems: &mut FirstProblem,
) -> Result<(), String> {
    let no_value = || lit(ScalarValue::Utf8(None));
    match &events.name {
        EventName::Value(name) => normalize.push(lit(name.as_str()).alias(columns::EVENT_NAME)),
        EventName::Column(column) => {
            let text = ident(raw(column));
            normalize.push(btrim(vec![text.clone()]).alias(columns::EVENT_NAME));
            problems.add(
                blank(text.clone()),
                column,
                text,
                problem(Reason::MissingEventName, "the event has no name"),
            );
        }
    }
    accepted.push(columns::EVENT_NAME.to_string());

    let time = &events.time;
    let as_property = PropertyMapping {
        column: time.column.clone(),
        kind: PropertyType::Datetime,
        format: time.format.clone(),
        timezone: time.timezone.clone(),
    };
    let zone = time.timezone.as_deref().or(timezone);
    let source_type = column_type(&time.column)?;
    let converted = convert("event_time", &as_property, zone, &source_type)?;
    let raw_time = ident(raw(&time.column));
    match import_time {
        Some(started) => {
            let started = lit(ScalarValue::TimestampMicrosecond(
                Some(started.timestamp_micros()),
                Some("UTC".into()),
            ));
            normalize.push(
                when(raw_time.clone().is_null(), started)
                    .otherwise(converted)
                    .map_err(|e| e.to_string())?
                    .alias(columns::EVENT_TIME),
            );
        }
        None => {
            normalize.push(converted.alias(columns::EVENT_TIME));
            problems.add(
                raw_time.clone().is_null(),
                &time.column,
                no_value(),
                problem(
                    Reason::MissingEventTime,
                    "the event has no time (with event_time if_missing: import_time it would take the run's start)",
                ),
            );
        }
    }
    accepted.push(columns::EVENT_TIME.to_string());
    problems.add(
        ident(columns::EVENT_TIME).is_null(),
        &time.column,
        raw_time,
        problem(
            Reason::InvalidEventTime,
            &match &time.format {
                Some(f) => format!("the event time is not a valid datetime in format {f}"),
                None => "the event time is not a valid ISO-8601 datetime".to_string(),
            },
        ),
    );
    if let Some(days) = events.retention_days {
        let cutoff = chrono::Utc::now() - chrono::Duration::days(days as i64);
        problems.add(
            ident(columns::EVENT_TIME).lt(lit(ScalarValue::TimestampMicrosecond(
                Some(cutoff.timestamp_micros()),
                Some("UTC".into()),
            ))),
            &time.column,
            ident(raw(&time.column)),
            problem(
                Reason::OutsideRetention,
                &format!("the event is older than the workspace's retention of {days} days"),
            ),
        );
    }

    if let Some(column) = &events.dedup_key {
        let text = ident(raw(column));
        normalize.push(btrim(vec![text.clone()]).alias(columns::DEDUP_KEY));
        accepted.push(columns::DEDUP_KEY.to_string());
        problems.add(
            blank(text),
            column,
            no_value(),
            problem(Reason::MissingDedupKey, "the event's dedup key is empty"),
        );
    }

    if let Some(purchase) = &events.purchase {
        let product = ident(raw(&purchase.product_id));
        normalize.push(btrim(vec![product.clone()]).alias(columns::PRODUCT_ID));
        problems.add(
            blank(product.clone()),
            &purchase.product_id,
            product,
            problem(Reason::InvalidProduct, "the purchase has no product_id"),
        );
        let currency = ident(raw(&purchase.currency));
        normalize.push(
            functions::currency()
                .call(vec![currency.clone()])
                .alias(columns::CURRENCY),
        );
        problems.add(
            ident(columns::CURRENCY).is_null(),
            &purchase.currency,
            currency,
            problem(
                Reason::InvalidCurrency,
                "the currency is not an ISO-4217 code",
            ),
        );
        let price = ident(raw(&purchase.price));
        normalize.push(
            functions::price()
                .call(vec![price.clone()])
                .alias(columns::PRICE),
        );
        problems.add(
            ident(columns::PRICE).is_null(),
            &purchase.price,
            price,
            problem(
                Reason::InvalidPrice,
                "the price is not a non-negative decimal",
            ),
        );
        accepted.extend([
            columns::PRODUCT_ID.to_string(),
            columns::CURRENCY.to_string(),
            columns::PRICE.to_string(),
        ]);
        if let Some(items) = &purchase.items {
            let text = ident(raw(items));
            normalize.push(
                functions::items()
                    .call(vec![text.clone()])
                    .alias(columns::ITEMS),
            );
            normalize.push(
                functions::items_problem()
                    .call(vec![text.clone()])
                    .alias(ITEMS_PROBLEM),
            );
            accepted.push(columns::ITEMS.to_string());
            problems.add(
                ident(ITEMS_PROBLEM).is_not_null(),
                items,
                text,
                ident(ITEMS_PROBLEM),
            );
        }
    }
    Ok(())
}

/// The message given when a property's value cannot be converted.
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

/// The expression converting a source column to a property's declared type; NULL where the
/// value does not convert.
pub(crate) fn convert(
    tag: &str,
    property: &PropertyMapping,
    timezone: Option<&str>,
    source: &DataType,
) -> Result<Expr, String> {
    let src = ident(&property.column);
    let text = || ident(raw(&property.column));
    Ok(match property.kind {
        PropertyType::String => text(),
        PropertyType::Integer => {
            if source.is_integer() || *source == DataType::Boolean {
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
        // Never coerced: non-finite values, and decimals a double would round, do not convert.
        PropertyType::Number => {
            if source.is_floating() {
                functions::finite().call(vec![cast(src, DataType::Float64)])
            } else if *source == DataType::Boolean {
                cast(src, DataType::Float64)
            } else {
                functions::number().call(vec![text()])
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
            let tz = parse_timezone(timezone)?;
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
                    functions::parse_datetime(&format!("sluice_parse_datetime_{tag}"), format, tz)
                        .call(vec![text()])
                }
                _ => functions::parse_date(&format!("sluice_parse_date_{tag}"), format, tz)
                    .call(vec![text()]),
            }
        }
        PropertyType::Json => {
            if source.is_integer() || source.is_floating() || *source == DataType::Boolean {
                text()
            } else {
                functions::json().call(vec![text()])
            }
        }
    })
}
