//! How an import maps source columns to identities and typed properties; read by the
//! transformer (to normalise and validate rows) and the loader (to resolve and write them).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// At most this many properties in one row (mapped, constant and payload together).
pub const MAX_PROPERTIES: usize = 250;

/// A row whose mapped values add up to more bytes than this is rejected.
pub const MAX_ROW_BYTES: usize = 1024 * 1024;

/// Property names the store owns; a row or spec may not write them.
pub const RESERVED_PROPERTIES: &[&str] = &[
    "profile_id",
    "identity",
    "external_id",
    "alias_name",
    "alias_label",
    "first_seen",
    "last_seen",
    "created_at",
    "updated_at",
    "first_event_at",
    "last_event_at",
    "event_count",
];

/// Why a property name cannot be used, or `None` when it can.
pub fn property_name_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        Some("property names must not be empty".to_string())
    } else if name.starts_with("__") || name.starts_with('$') {
        Some(format!(
            "property name {name:?} is reserved: names starting with __ or $ belong to the store"
        ))
    } else if RESERVED_PROPERTIES.contains(&name) {
        Some(format!(
            "property name {name:?} is reserved for the store's system fields"
        ))
    } else {
        None
    }
}

/// The mapping of one import: identities, properties, constants and payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mapping {
    /// The columns a row's profile is found by.
    pub identity: IdentityMapping,
    /// The order in which a row's identities are tried; the default order when empty.
    #[serde(default)]
    pub precedence: Vec<IdentityKind>,
    /// Whether rows may create profiles or only update them.
    #[serde(default)]
    pub mode: ImportMode,
    /// Properties by name, each from a column.
    pub properties: BTreeMap<String, PropertyMapping>,
    /// Properties set to the same value on every row.
    #[serde(default)]
    pub constants: BTreeMap<String, serde_json::Value>,
    /// A column holding a JSON object (text, jsonb or struct) whose keys become properties.
    #[serde(default)]
    pub payload: Option<String>,
    /// IANA timezone of zone-less date-times, unless the property names its own; UTC when absent.
    #[serde(default)]
    pub timezone: Option<String>,
    /// What the rows become: profiles (the default), events, or deletions.
    #[serde(default)]
    pub records: Records,
    /// Profiles: consent per channel and group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<crate::subscription::SubscriptionMapping>,
}

/// What an import's rows become in the stores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Records {
    /// Each row updates (or creates) a profile.
    #[default]
    Profiles,
    /// Each row is an event of the profile it names (purchases are events with a purchase).
    Events(Box<EventMapping>),
    /// Each row names a profile to delete.
    UserDeletes {
        /// Delete the profile's events as well.
        delete_events: bool,
    },
}

/// How a row becomes an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMapping {
    /// The event's name: a column, or one value for every row.
    pub name: EventName,
    /// When the event happened.
    pub time: EventTime,
    /// A column whose value identifies the event; by default a hash of the import id and the
    /// row's source key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
    /// What to do with an event whose profile does not exist.
    #[serde(default)]
    pub unknown_identity: UnknownIdentity,
    /// Set for purchases: the product, price and currency columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase: Option<PurchaseMapping>,
    /// Events older than this many days are rejected (the workspace's retention policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

/// Where an event's name comes from; names are case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum EventName {
    /// Read from this column.
    Column(String),
    /// This value for every row.
    Value(String),
}

/// The column holding an event's time, and how to read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTime {
    /// The column holding the time.
    pub column: String,
    /// Its date format, when it is text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The timezone of times written without an offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// What an event whose time column is NULL becomes.
    #[serde(default, skip_serializing_if = "MissingEventTime::is_reject")]
    pub if_missing: MissingEventTime,
}

/// What happens to an event without a time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingEventTime {
    /// Reject the row (`missing_event_time`).
    #[default]
    Reject,
    /// Stamp it with the start of the run that imports it, and count it.
    ImportTime,
}

impl MissingEventTime {
    fn is_reject(&self) -> bool {
        *self == MissingEventTime::Reject
    }
}

/// What happens to an event whose identity names no profile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownIdentity {
    /// Create a profile with that identity (CleverTap's behaviour).
    #[default]
    Create,
    /// Reject the row.
    Reject,
}

/// The purchase columns of a purchase event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurchaseMapping {
    /// The column holding the product's id.
    pub product_id: String,
    /// ISO-4217 code.
    pub currency: String,
    /// A decimal.
    pub price: String,
    /// A JSON array of items, each with product_id, currency, price and an optional quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<String>,
}

impl EventMapping {
    /// The source columns the event reads besides identities and properties.
    pub fn columns(&self) -> Vec<&str> {
        let mut columns = Vec::new();
        if let EventName::Column(c) = &self.name {
            columns.push(c.as_str());
        }
        columns.push(self.time.column.as_str());
        if let Some(c) = &self.dedup_key {
            columns.push(c.as_str());
        }
        if let Some(p) = &self.purchase {
            columns.extend([p.product_id.as_str(), p.currency.as_str(), p.price.as_str()]);
            if let Some(items) = &p.items {
                columns.push(items.as_str());
            }
        }
        columns
    }
}

/// Whether rows may create profiles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportMode {
    /// Update the matching profile, or create one.
    #[default]
    Upsert,
    /// Update the matching profile; rows matching none are skipped and counted.
    UpdateOnly,
}

/// The kinds of identity a row can name its profile by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    /// The platform's user id.
    Identity,
    /// The customer's id in the user's own systems.
    ExternalId,
    /// `alias_name` + `alias_label`.
    Alias,
    /// An email address, normalized.
    Email,
    /// A phone number, normalized to E.164.
    Phone,
    /// The store's own profile id; it can update a profile but never creates one.
    ProfileId,
}

impl IdentityKind {
    /// Identity > external_id > alias > email > phone, then profile_id.
    pub const DEFAULT_PRECEDENCE: [IdentityKind; 6] = [
        IdentityKind::Identity,
        IdentityKind::ExternalId,
        IdentityKind::Alias,
        IdentityKind::Email,
        IdentityKind::Phone,
        IdentityKind::ProfileId,
    ];

    /// The kind's name as written in specs and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Identity => "identity",
            IdentityKind::ExternalId => "external_id",
            IdentityKind::Alias => "alias",
            IdentityKind::Email => "email",
            IdentityKind::Phone => "phone",
            IdentityKind::ProfileId => "profile_id",
        }
    }

    /// True for kinds that name at most one profile (email and phone may be shared).
    pub fn is_unique(self) -> bool {
        !matches!(self, IdentityKind::Email | IdentityKind::Phone)
    }
}

/// Which source columns hold the row's identities; at least one must be mapped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityMapping {
    /// The column holding the platform's user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The column holding the external id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The column holding the alias's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias_name: Option<String>,
    /// The column holding the alias's label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias_label: Option<String>,
    /// The column holding the email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The column holding the phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The column holding the store's profile id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_id: Option<String>,
}

/// One identity field of a row: the column it is read from and how it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityField {
    /// `identity`.
    Identity,
    /// `external_id`.
    ExternalId,
    /// `alias_name`.
    AliasName,
    /// `alias_label`.
    AliasLabel,
    /// `email`.
    Email,
    /// `phone`.
    Phone,
    /// `profile_id`.
    ProfileId,
}

impl IdentityField {
    /// Every field, in a fixed order.
    pub const ALL: [IdentityField; 7] = [
        IdentityField::Identity,
        IdentityField::ExternalId,
        IdentityField::AliasName,
        IdentityField::AliasLabel,
        IdentityField::Email,
        IdentityField::Phone,
        IdentityField::ProfileId,
    ];

    /// The field's name in specs and in chunk columns.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityField::Identity => "identity",
            IdentityField::ExternalId => "external_id",
            IdentityField::AliasName => "alias_name",
            IdentityField::AliasLabel => "alias_label",
            IdentityField::Email => "email",
            IdentityField::Phone => "phone",
            IdentityField::ProfileId => "profile_id",
        }
    }

    /// The identity kind the field belongs to.
    pub fn kind(self) -> IdentityKind {
        match self {
            IdentityField::Identity => IdentityKind::Identity,
            IdentityField::ExternalId => IdentityKind::ExternalId,
            IdentityField::AliasName | IdentityField::AliasLabel => IdentityKind::Alias,
            IdentityField::Email => IdentityKind::Email,
            IdentityField::Phone => IdentityKind::Phone,
            IdentityField::ProfileId => IdentityKind::ProfileId,
        }
    }
}

impl IdentityMapping {
    /// The source column of a field, if mapped.
    pub fn column(&self, field: IdentityField) -> Option<&str> {
        match field {
            IdentityField::Identity => self.identity.as_deref(),
            IdentityField::ExternalId => self.external_id.as_deref(),
            IdentityField::AliasName => self.alias_name.as_deref(),
            IdentityField::AliasLabel => self.alias_label.as_deref(),
            IdentityField::Email => self.email.as_deref(),
            IdentityField::Phone => self.phone.as_deref(),
            IdentityField::ProfileId => self.profile_id.as_deref(),
        }
    }

    /// The mapped fields and their columns.
    pub fn fields(&self) -> Vec<(IdentityField, &str)> {
        IdentityField::ALL
            .iter()
            .filter_map(|f| self.column(*f).map(|c| (*f, c)))
            .collect()
    }

    /// True when the mapping names a kind (an alias needs both of its columns).
    pub fn has(&self, kind: IdentityKind) -> bool {
        match kind {
            IdentityKind::Alias => self.alias_name.is_some() && self.alias_label.is_some(),
            _ => self.fields().iter().any(|(f, _)| f.kind() == kind),
        }
    }
}

/// One property: the column it comes from and the type it is stored as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropertyMapping {
    /// The source column.
    pub column: String,
    /// The type the value must have.
    #[serde(rename = "type")]
    pub kind: PropertyType,
    /// Date format for `date` and `datetime` (`yyyy-MM-dd`, `dd/MM/yyyy HH:mm:ss`,
    /// `epoch_seconds`, `epoch_millis`, `iso8601`); ISO-8601 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// IANA timezone of zone-less date-times; the import's, or UTC, when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// The types a property can be stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PropertyType {
    /// Text, as given.
    String,
    /// A whole number.
    Integer,
    /// A decimal number.
    Number,
    /// True or false.
    Boolean,
    /// A calendar date.
    Date,
    /// An instant, stored in UTC.
    Datetime,
    /// A JSON value.
    Json,
}

impl PropertyType {
    /// The type's name as written in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            PropertyType::String => "string",
            PropertyType::Integer => "integer",
            PropertyType::Number => "number",
            PropertyType::Boolean => "boolean",
            PropertyType::Date => "date",
            PropertyType::Datetime => "datetime",
            PropertyType::Json => "json",
        }
    }

    /// Reads a type name as stored.
    pub fn parse(name: &str) -> Option<PropertyType> {
        Some(match name {
            "string" => PropertyType::String,
            "integer" => PropertyType::Integer,
            "number" => PropertyType::Number,
            "boolean" => PropertyType::Boolean,
            "date" => PropertyType::Date,
            "datetime" => PropertyType::Datetime,
            "json" => PropertyType::Json,
            _ => return None,
        })
    }

    /// The type of a JSON value that carries no declared type (payload keys, constants).
    pub fn of_json(value: &serde_json::Value) -> Option<PropertyType> {
        use serde_json::Value;
        Some(match value {
            Value::Null => return None,
            Value::Bool(_) => PropertyType::Boolean,
            Value::Number(n) if n.is_i64() || n.is_u64() => PropertyType::Integer,
            Value::Number(_) => PropertyType::Number,
            Value::String(_) => PropertyType::String,
            Value::Array(_) | Value::Object(_) => PropertyType::Json,
        })
    }

    /// True when a value of type `value` may be stored in a property registered as `self`
    /// (an integer fits a number; nothing else is converted).
    pub fn accepts(self, value: PropertyType) -> bool {
        self == value || (self == PropertyType::Number && value == PropertyType::Integer)
    }
}

impl Mapping {
    /// The identity kinds in the order rows are resolved by.
    pub fn precedence(&self) -> Vec<IdentityKind> {
        let mut order: Vec<IdentityKind> = self.precedence.clone();
        for kind in IdentityKind::DEFAULT_PRECEDENCE {
            if !order.contains(&kind) {
                order.push(kind);
            }
        }
        order.retain(|k| self.identity.has(*k));
        order
    }

    /// The same import reduced to its identities: how a mirror import's key chunk reads and
    /// resolves the rows that left the source.
    pub fn identities_only(&self) -> Mapping {
        Mapping {
            identity: self.identity.clone(),
            precedence: self.precedence.clone(),
            mode: ImportMode::UpdateOnly,
            properties: BTreeMap::new(),
            constants: BTreeMap::new(),
            payload: None,
            timezone: self.timezone.clone(),
            records: Records::Profiles,
            subscriptions: None,
        }
    }

    /// The property names the import writes itself (mapped and constant), which a mirror
    /// import unsets on the profiles of rows that left the source.
    pub fn own_properties(&self) -> Vec<String> {
        self.properties
            .keys()
            .chain(self.constants.keys())
            .cloned()
            .collect()
    }

    /// The source columns the mapping reads (identities first, then properties, then the
    /// payload), without repeats.
    pub fn columns(&self) -> Vec<String> {
        let mut columns: Vec<String> = Vec::new();
        let mut add = |c: &str| {
            if !columns.iter().any(|x| x == c) {
                columns.push(c.to_string());
            }
        };
        for (_, column) in self.identity.fields() {
            add(column);
        }
        for property in self.properties.values() {
            add(&property.column);
        }
        if let Some(payload) = &self.payload {
            add(payload);
        }
        if let Records::Events(events) = &self.records {
            for column in events.columns() {
                add(column);
            }
        }
        if let Some(subscriptions) = &self.subscriptions {
            for (_, status) in subscriptions.topics() {
                add(&status.column);
            }
            if let Some(time) = &subscriptions.consented_at {
                add(&time.column);
            }
        }
        columns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_listed_once_identities_first() {
        let mapping: Mapping = serde_json::from_value(serde_json::json!({
            "identity": {"external_id": "ext", "email": "mail"},
            "properties": {
                "a": {"column": "x", "type": "string"},
                "b": {"column": "x", "type": "integer"},
                "c": {"column": "ext", "type": "string"}
            },
            "payload": "extra"
        }))
        .unwrap();
        assert_eq!(mapping.columns(), vec!["ext", "mail", "x", "extra"]);
    }

    #[test]
    fn precedence_defaults_and_reorders_over_mapped_kinds_only() {
        let mut mapping: Mapping = serde_json::from_value(serde_json::json!({
            "identity": {"phone": "p", "email": "e", "alias_name": "n"},
            "properties": {}
        }))
        .unwrap();
        assert_eq!(
            mapping.precedence(),
            vec![IdentityKind::Email, IdentityKind::Phone],
            "an alias needs both columns; email beats phone"
        );
        mapping.precedence = vec![IdentityKind::Phone];
        assert_eq!(
            mapping.precedence(),
            vec![IdentityKind::Phone, IdentityKind::Email]
        );
    }

    #[test]
    fn an_integer_fits_a_number_and_nothing_else_converts() {
        assert!(PropertyType::Number.accepts(PropertyType::Integer));
        assert!(!PropertyType::Integer.accepts(PropertyType::Number));
        assert!(!PropertyType::String.accepts(PropertyType::Integer));
        assert_eq!(
            PropertyType::of_json(&serde_json::json!(1.5)),
            Some(PropertyType::Number)
        );
        assert_eq!(
            PropertyType::of_json(&serde_json::json!([1])),
            Some(PropertyType::Json)
        );
    }

    #[test]
    fn reserved_property_names_are_refused() {
        assert!(property_name_problem("__x").is_some());
        assert!(property_name_problem("profile_id").is_some());
        assert!(property_name_problem("$email").is_some());
        assert!(property_name_problem("email").is_none());
        assert!(property_name_problem("first_name").is_none());
    }
}
