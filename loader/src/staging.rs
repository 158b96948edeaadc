//! Turns normalized Arrow rows into staging rows: key, updated_at, the row's identities (and
//! the one it would create a profile by), the properties to set (mapped, payload and
//! constants, as one JSON object), the properties to remove (NULL values), and for events
//! their name, time, dedup key and purchase fields.

use crate::props::Props;
use crate::registry;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::datatypes::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use serde_json::{Number, Value};
use sluice_proto::subscription::{SubscriptionMapping, Topic};
use sluice_proto::{
    columns, EventMapping, IdentityField, IdentityKind, Mapping, PropertyType, Records,
};
use std::io::Write;
use std::sync::Arc;

/// One row for the staging table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StagedRow {
    /// The row's source key, as text.
    pub key: String,
    /// The row's watermark: its freshness stamp.
    pub updated_at: DateTime<Utc>,
    /// The platform's user id.
    pub identity: Option<String>,
    /// The customer's own id.
    pub external_id: Option<String>,
    /// `alias:<label>`, the identity kind an alias is stored under.
    pub alias_kind: Option<String>,
    /// The alias's value.
    pub alias_name: Option<String>,
    /// The normalized email.
    pub email: Option<String>,
    /// The phone number in E.164.
    pub phone: Option<String>,
    /// The store's own profile id, when the row names one.
    pub profile_ref: Option<i64>,
    /// The identity a new profile is created by: the first in precedence the row carries
    /// (never `profile_id`).
    pub create_kind: Option<String>,
    /// The value of that identity.
    pub create_value: Option<String>,
    /// The properties to set: mapped, payload and constants.
    pub props: Props,
    /// The properties to remove (the row's value is NULL).
    pub unset: Vec<Arc<str>>,
    /// An event's name.
    pub event_name: Option<String>,
    /// An event's time.
    pub event_time: Option<DateTime<Utc>>,
    /// The event's dedup key: the mapped column's value, or a hash of the import id and the
    /// row's source key.
    pub dedup_key: Option<String>,
    /// A purchase's price, as a canonical decimal.
    pub price: Option<String>,
    /// Consent statuses by channel or group, as a JSON object; `None` when the row has none.
    pub subs: Option<Value>,
    /// When the row's consent was given or withdrawn, when the import maps it.
    pub consented_at: Option<DateTime<Utc>>,
    /// Whether the row subscribes a channel whose address it does not carry itself.
    pub addressless: bool,
}

/// The names email and phone are stamped under in a profile's freshness (names starting with
/// `$` belong to the store, so no property can take them).
pub const EMAIL_STAMP: &str = "$email";
/// See [`EMAIL_STAMP`].
pub const PHONE_STAMP: &str = "$phone";

/// A hash of a row's stamped names, the same for the same set of names in any order and in
/// every process: the sum of each name's mixed FNV-1a hash, so no sorting per row. It is a
/// shortcut only: a profile whose stored hash differs has its names compared one by one.
pub fn names_hash(names: &[&str]) -> i64 {
    let mut sum: u64 = 0;
    for name in names {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in name.bytes() {
            hash ^= byte as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        sum = sum.wrapping_add(hash);
    }
    sum as i64
}

/// Every name a row sets or removes, and email and phone when it carries them: the names
/// whose freshness the row claims when it is applied.
pub fn stamped_names(row: &StagedRow) -> Vec<&str> {
    let mut names: Vec<&str> = row.props.fields().iter().map(|f| &*f.name).collect();
    names.extend(row.unset.iter().map(|n| &**n));
    if row.email.is_some() {
        names.push(EMAIL_STAMP);
    }
    if row.phone.is_some() {
        names.push(PHONE_STAMP);
    }
    names
}

/// The default dedup key of an event: a hash of the import id and the row's source key, so a
/// re-read or replayed row has the same key and another import's rows never do.
pub fn default_dedup_key(import_id: i64, key: &str) -> String {
    use sha2::{Digest, Sha256};
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(format!("{import_id}:{key}").as_bytes());
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
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

/// The text of a row in an optional text column, borrowed.
fn str_at(array: &Option<ArrayRef>, row: usize) -> Option<&str> {
    let array = array.as_ref()?;
    (!array.is_null(row)).then(|| array.as_string::<i32>().value(row))
}

/// The text of a row in an optional text column.
fn text_at(array: &Option<ArrayRef>, row: usize) -> Option<String> {
    str_at(array, row).map(str::to_string)
}

/// Converts a batch of the transformer's output for import `import_id` into staging rows.
pub fn stage_rows(
    batch: &RecordBatch,
    mapping: &Mapping,
    import_id: i64,
) -> Result<Vec<StagedRow>, StagingError> {
    let keys = column(batch, columns::KEY)?;
    let times = column(batch, columns::UPDATED_AT)?;
    let keys = keys.as_string::<i32>();
    let times = times.as_primitive::<TimestampMicrosecondType>();
    let identity_column = |field: IdentityField| -> Result<Option<ArrayRef>, StagingError> {
        match mapping.identity.column(field) {
            Some(_) => column(batch, &columns::identity(field)).map(Some),
            None => Ok(None),
        }
    };
    let ids: Vec<(IdentityField, Option<ArrayRef>)> = IdentityField::ALL
        .iter()
        .map(|f| Ok((*f, identity_column(*f)?)))
        .collect::<Result<_, StagingError>>()?;
    let id = |field: IdentityField, row: usize| {
        ids.iter()
            .find(|(f, _)| *f == field)
            .and_then(|(_, array)| text_at(array, row))
    };
    let properties: Vec<(Arc<str>, PropertyType, ArrayRef)> = mapping
        .properties
        .iter()
        .map(|(name, p)| {
            Ok((
                Arc::from(name.as_str()),
                p.kind,
                column(batch, &columns::property(name))?,
            ))
        })
        .collect::<Result<_, StagingError>>()?;
    let constants: Vec<(Arc<str>, Option<PropertyType>, String)> = mapping
        .constants
        .iter()
        .map(|(name, value)| {
            let kind = registry::value_type(mapping, name, value);
            (Arc::from(name.as_str()), kind, value.to_string())
        })
        .collect();
    // Mapped properties and constants take the place of payload keys of the same name.
    let shadows =
        |name: &str| mapping.properties.contains_key(name) || mapping.constants.contains_key(name);
    let payload = match &mapping.payload {
        Some(_) => Some(column(batch, columns::PAYLOAD)?),
        None => None,
    };
    let precedence = mapping.precedence();
    let events = match &mapping.records {
        Records::Events(events) => Some(EventColumns::read(batch, events)?),
        _ => None,
    };
    let consent = match &mapping.subscriptions {
        Some(s) => Some(ConsentColumns::read(batch, s)?),
        None => None,
    };

    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let key = keys.value(row).to_string();
        let mut props = Props::with_capacity(64 + 24 * properties.len());
        let mut unset = Vec::new();
        if let Some(text) = str_at(&payload, row) {
            let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
                return Err(StagingError(format!(
                    "row {key}: the payload is not a JSON object"
                )));
            };
            for (name, value) in map {
                if shadows(&name) {
                    continue;
                }
                if value.is_null() {
                    unset.push(Arc::from(name));
                } else {
                    let kind = PropertyType::of_json(&value);
                    props.push(Arc::from(name), kind, &value);
                }
            }
        }
        for (name, kind, array) in &properties {
            if !write_value(&mut props, name, *kind, array.as_ref(), row) {
                unset.push(name.clone());
            }
        }
        for (name, kind, text) in &constants {
            props.push_with(name.clone(), *kind, |out| {
                out.extend_from_slice(text.as_bytes())
            });
        }
        let updated_at = DateTime::from_timestamp_micros(times.value(row))
            .ok_or_else(|| StagingError(format!("row {key}: updated_at out of range")))?;
        let alias_name = id(IdentityField::AliasName, row);
        let alias_kind = id(IdentityField::AliasLabel, row).map(|label| format!("alias:{label}"));
        let mut staged = StagedRow {
            key,
            updated_at,
            identity: id(IdentityField::Identity, row),
            external_id: id(IdentityField::ExternalId, row),
            alias_kind,
            alias_name,
            email: id(IdentityField::Email, row),
            phone: id(IdentityField::Phone, row),
            profile_ref: id(IdentityField::ProfileId, row).and_then(|v| v.parse().ok()),
            create_kind: None,
            create_value: None,
            props,
            unset,
            event_name: None,
            event_time: None,
            dedup_key: None,
            price: None,
            subs: None,
            consented_at: None,
            addressless: false,
        };
        if let Some(events) = &events {
            events.fill(row, import_id, &mut staged);
        }
        if let Some(consent) = &consent {
            consent.fill(row, &mut staged);
        }
        (staged.create_kind, staged.create_value) = creating_identity(&staged, &precedence);
        rows.push(staged);
    }
    Ok(rows)
}

/// The consent columns of a normalized batch: each topic's status, and the consent time.
struct ConsentColumns {
    /// Each topic, its key as staged (made once per batch), and its status column.
    topics: Vec<(Topic, String, ArrayRef)>,
    consented_at: Option<ArrayRef>,
}

impl ConsentColumns {
    fn read(batch: &RecordBatch, mapping: &SubscriptionMapping) -> Result<Self, StagingError> {
        let topics = mapping
            .topics()
            .into_iter()
            .map(|(topic, _)| {
                let key = topic.key();
                let array = column(batch, &columns::subscription(&key))?;
                Ok((topic, key, array))
            })
            .collect::<Result<_, StagingError>>()?;
        let consented_at = match &mapping.consented_at {
            Some(_) => Some(column(batch, columns::CONSENTED_AT)?),
            None => None,
        };
        Ok(ConsentColumns {
            topics,
            consented_at,
        })
    }

    /// Sets the consent fields of a staged row.
    fn fill(&self, row: usize, staged: &mut StagedRow) {
        let statuses: Vec<(&Topic, &String, &str)> = self
            .topics
            .iter()
            .filter(|(_, _, a)| !a.is_null(row))
            .map(|(t, k, a)| (t, k, a.as_string::<i32>().value(row)))
            .collect();
        if statuses.is_empty() {
            return;
        }
        staged.addressless = crate::subscriptions::addressless(
            statuses.iter().map(|(t, _, s)| (*t, *s)),
            staged.email.is_some(),
            staged.phone.is_some(),
        );
        staged.subs = Some(Value::Object(
            statuses
                .iter()
                .map(|(_, k, s)| ((*k).clone(), Value::String(s.to_string())))
                .collect(),
        ));
        staged.consented_at = self
            .consented_at
            .as_ref()
            .filter(|a| !a.is_null(row))
            .and_then(|a| {
                DateTime::from_timestamp_micros(
                    a.as_primitive::<TimestampMicrosecondType>().value(row),
                )
            });
    }
}

/// The event columns of a normalized batch.
struct EventColumns {
    name: ArrayRef,
    time: ArrayRef,
    dedup_key: Option<ArrayRef>,
    purchase: Option<[ArrayRef; 3]>,
    items: Option<ArrayRef>,
}

impl EventColumns {
    fn read(batch: &RecordBatch, events: &EventMapping) -> Result<Self, StagingError> {
        let purchase = match &events.purchase {
            Some(_) => Some([
                column(batch, columns::PRODUCT_ID)?,
                column(batch, columns::CURRENCY)?,
                column(batch, columns::PRICE)?,
            ]),
            None => None,
        };
        let items = match events.purchase.as_ref().and_then(|p| p.items.as_ref()) {
            Some(_) => Some(column(batch, columns::ITEMS)?),
            None => None,
        };
        Ok(EventColumns {
            name: column(batch, columns::EVENT_NAME)?,
            time: column(batch, columns::EVENT_TIME)?,
            dedup_key: match &events.dedup_key {
                Some(_) => Some(column(batch, columns::DEDUP_KEY)?),
                None => None,
            },
            purchase,
            items,
        })
    }

    /// Sets the event fields of a staged row; purchase fields become event properties.
    fn fill(&self, row: usize, import_id: i64, staged: &mut StagedRow) {
        let text = |a: &ArrayRef| text_at(&Some(a.clone()), row);
        staged.event_name = text(&self.name);
        staged.event_time = (!self.time.is_null(row))
            .then(|| {
                self.time
                    .as_primitive::<TimestampMicrosecondType>()
                    .value(row)
            })
            .and_then(DateTime::from_timestamp_micros);
        staged.dedup_key = Some(match &self.dedup_key {
            Some(a) => text(a).unwrap_or_default(),
            None => default_dedup_key(import_id, &staged.key),
        });
        if let Some([product, currency, price]) = &self.purchase {
            for (name, array) in [("product_id", product), ("currency", currency)] {
                if let Some(v) = text(array) {
                    staged.props.replace(name);
                    staged
                        .props
                        .push(Arc::from(name), Some(PropertyType::String), &v);
                }
            }
            staged.price = text(price);
        }
        if let Some(items) = self.items.as_ref().and_then(text) {
            if let Ok(value) = serde_json::from_str::<Value>(&items) {
                let kind = PropertyType::of_json(&value);
                staged.props.replace("items");
                staged.props.push(Arc::from("items"), kind, &value);
            }
        }
    }
}

/// The first identity in `precedence` the row carries that can create a profile.
fn creating_identity(
    row: &StagedRow,
    precedence: &[IdentityKind],
) -> (Option<String>, Option<String>) {
    for kind in precedence {
        let found = match kind {
            IdentityKind::Identity => row.identity.clone().map(|v| ("identity".to_string(), v)),
            IdentityKind::ExternalId => row
                .external_id
                .clone()
                .map(|v| ("external_id".to_string(), v)),
            IdentityKind::Alias => row.alias_kind.clone().zip(row.alias_name.clone()),
            IdentityKind::Email => row.email.clone().map(|v| ("email".to_string(), v)),
            IdentityKind::Phone => row.phone.clone().map(|v| ("phone".to_string(), v)),
            IdentityKind::ProfileId => None,
        };
        if let Some((kind, value)) = found {
            return (Some(kind), Some(value));
        }
    }
    (None, None)
}

/// Adds a mapped property's value to `props` as JSON text; false when it is NULL, or a
/// number JSON cannot hold or a JSON text that does not parse (the property is then removed).
fn write_value(
    props: &mut Props,
    name: &Arc<str>,
    kind: PropertyType,
    array: &dyn Array,
    row: usize,
) -> bool {
    if array.is_null(row) {
        return false;
    }
    let declared = Some(kind);
    let name = name.clone();
    match kind {
        PropertyType::String => props.push(name, declared, array.as_string::<i32>().value(row)),
        PropertyType::Integer => props.push(
            name,
            declared,
            &array.as_primitive::<Int64Type>().value(row),
        ),
        PropertyType::Number => {
            let v = array.as_primitive::<Float64Type>().value(row);
            let Some(number) = Number::from_f64(v) else {
                return false;
            };
            props.push(name, declared, &number);
        }
        PropertyType::Boolean => props.push(name, declared, &array.as_boolean().value(row)),
        PropertyType::Date => {
            let days = array.as_primitive::<Date32Type>().value(row);
            let Some(date) = NaiveDate::from_ymd_opt(1970, 1, 1)
                .and_then(|epoch| epoch.checked_add_signed(chrono::Duration::days(days as i64)))
            else {
                return false;
            };
            props.push_with(name, declared, |out| write_date(out, date));
        }
        PropertyType::Datetime => {
            let micros = array.as_primitive::<TimestampMicrosecondType>().value(row);
            let Some(time) = DateTime::from_timestamp_micros(micros) else {
                return false;
            };
            let text = time.to_rfc3339_opts(SecondsFormat::AutoSi, true);
            props.push(name, declared, &text);
        }
        PropertyType::Json => {
            let text = array.as_string::<i32>().value(row);
            let Ok(value) = serde_json::from_str::<Value>(text) else {
                return false;
            };
            props.push(name, declared, &value);
        }
    }
    true
}

/// Appends a date as a JSON string `"YYYY-MM-DD"`, as chrono's `%Y-%m-%d` writes it.
fn write_date(out: &mut Vec<u8>, date: NaiveDate) {
    let (y, m, d) = (date.year(), date.month(), date.day());
    let written = if (0..=9999).contains(&y) {
        write!(out, "\"{y:04}-{m:02}-{d:02}\"")
    } else {
        write!(out, "\"{}\"", date.format("%Y-%m-%d"))
    };
    written.expect("writes to memory");
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Date32Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema, TimeUnit};
    use std::sync::Arc;

    fn batch(fields: Vec<(String, ArrayRef)>) -> RecordBatch {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let mut schema = vec![
            Field::new(columns::KEY, DataType::Utf8, false),
            Field::new(columns::UPDATED_AT, ts, false),
        ];
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["1"])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![1_700_000_000_000_000]).with_timezone("UTC"),
            ),
        ];
        for (name, array) in fields {
            schema.push(Field::new(name, array.data_type().clone(), true));
            arrays.push(array);
        }
        RecordBatch::try_new(Arc::new(Schema::new(schema)), arrays).unwrap()
    }

    #[test]
    fn the_names_hash_is_of_the_set_of_names() {
        assert_eq!(names_hash(&["a", "b", "c"]), names_hash(&["c", "a", "b"]));
        assert_ne!(names_hash(&["a", "b"]), names_hash(&["a"]));
        assert_ne!(names_hash(&["a", "b"]), names_hash(&["a", "c"]));
        assert_ne!(names_hash(&["ab"]), names_hash(&["a", "b"]));
    }

    #[test]
    fn nulls_become_removals_and_values_keep_their_types() {
        let mapping: Mapping = serde_json::from_value(serde_json::json!({
            "identity": {"external_id": "ext"},
            "properties": {
                "name": {"column": "n", "type": "string"},
                "points": {"column": "p", "type": "integer"},
                "birthday": {"column": "b", "type": "date"}
            },
            "constants": {"source": "warehouse"}
        }))
        .unwrap();
        let rows = stage_rows(
            &batch(vec![
                (
                    columns::identity(IdentityField::ExternalId),
                    Arc::new(StringArray::from(vec!["u1"])),
                ),
                (
                    columns::property("name"),
                    Arc::new(StringArray::from(vec![Some("Ada")])),
                ),
                (
                    columns::property("points"),
                    Arc::new(Int64Array::from(vec![None::<i64>])),
                ),
                (
                    columns::property("birthday"),
                    Arc::new(Date32Array::from(vec![Some(19_000)])),
                ),
            ]),
            &mapping,
            7,
        )
        .unwrap();
        assert_eq!(
            rows[0].props.to_value(),
            serde_json::json!({"name": "Ada", "birthday": "2022-01-08", "source": "warehouse"})
        );
        assert_eq!(rows[0].unset, vec![Arc::<str>::from("points")]);
        assert_eq!(rows[0].external_id.as_deref(), Some("u1"));
        assert_eq!(rows[0].create_kind.as_deref(), Some("external_id"));
    }

    #[test]
    fn a_mapped_property_or_constant_takes_the_place_of_the_payload_key_of_its_name() {
        let mapping: Mapping = serde_json::from_value(serde_json::json!({
            "identity": {"external_id": "ext"},
            "properties": {"tier": {"column": "t", "type": "string"}},
            "constants": {"source": "warehouse"},
            "payload": "extra"
        }))
        .unwrap();
        let rows = stage_rows(
            &batch(vec![
                (
                    columns::identity(IdentityField::ExternalId),
                    Arc::new(StringArray::from(vec!["u1"])),
                ),
                (
                    columns::property("tier"),
                    Arc::new(StringArray::from(vec![None::<&str>])),
                ),
                (
                    columns::PAYLOAD.to_string(),
                    Arc::new(StringArray::from(vec![Some(
                        r#"{"tier": "gold", "source": "crm", "visits": 3}"#,
                    )])),
                ),
            ]),
            &mapping,
            7,
        )
        .unwrap();
        assert_eq!(
            rows[0].props.to_value(),
            serde_json::json!({"visits": 3, "source": "warehouse"})
        );
        assert_eq!(rows[0].unset, vec![Arc::<str>::from("tier")]);
        assert_eq!(stamped_names(&rows[0]), ["visits", "source", "tier"]);
    }

    #[test]
    fn payload_keys_expand_and_email_creates_when_it_comes_first() {
        let mapping: Mapping = serde_json::from_value(serde_json::json!({
            "identity": {"phone": "p", "email": "e", "alias_name": "an", "alias_label": "al"},
            "precedence": ["email"],
            "properties": {},
            "payload": "extra"
        }))
        .unwrap();
        let text = |v: Option<&str>| Arc::new(StringArray::from(vec![v])) as ArrayRef;
        let rows = stage_rows(
            &batch(vec![
                (
                    columns::identity(IdentityField::AliasName),
                    text(Some("crm-1")),
                ),
                (
                    columns::identity(IdentityField::AliasLabel),
                    text(Some("crm")),
                ),
                (
                    columns::identity(IdentityField::Email),
                    text(Some("a@example.com")),
                ),
                (
                    columns::identity(IdentityField::Phone),
                    text(Some("+4712345678")),
                ),
                (
                    columns::PAYLOAD.to_string(),
                    text(Some(r#"{"tier": 2, "gone": null}"#)),
                ),
            ]),
            &mapping,
            7,
        )
        .unwrap();
        assert_eq!(rows[0].props.to_value(), serde_json::json!({"tier": 2}));
        assert_eq!(rows[0].unset, vec![Arc::<str>::from("gone")]);
        assert_eq!(rows[0].alias_kind.as_deref(), Some("alias:crm"));
        assert_eq!(
            (
                rows[0].create_kind.as_deref(),
                rows[0].create_value.as_deref()
            ),
            (Some("email"), Some("a@example.com"))
        );
    }
}
