//! The declarative spec file (`sluice apply -f spec.yaml`): its format, `${VAR}` interpolation,
//! and validation that names the field at fault before anything is written.
// Outside tests a failure is an error with its cause, never a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod destinations;
pub mod duration;
pub mod schedule;
mod subscriptions;
pub mod suggest;

use crate::schedule::ScheduleDecl;
use serde::{Deserialize, Serialize};
use sluice_proto::dateformat::{parse_timezone, DateFormat};
use sluice_proto::mapping::{property_name_problem, MAX_PROPERTIES};
use sluice_proto::{
    ConnectionKind, EventMapping, EventName, EventTime, IdentityKind, IdentityMapping, ImportMode,
    Mapping, PropertyMapping, PropertyType, PurchaseMapping, Records, SourceRelation,
    UnknownIdentity,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// A spec file: one workspace's connections and imports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    /// The workspace everything declared belongs to.
    pub workspace: String,
    /// The workspace's data retention policy: events older than this are rejected.
    #[serde(default, with = "crate::duration::serde_text_opt")]
    pub event_retention: Option<Duration>,
    #[serde(default)]
    /// The warehouses imports read from.
    pub connections: Vec<ConnectionDecl>,
    #[serde(default)]
    /// The imports.
    pub imports: Vec<ImportDecl>,
    /// The engagement platforms imports may deliver to instead of the built-in stores.
    #[serde(default)]
    pub destinations: Vec<destinations::DestinationDecl>,
}

/// A warehouse connection as declared.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionDecl {
    /// The name imports refer to it by.
    pub name: String,
    /// The connector kind (`postgres`, `snowflake`, ...).
    pub kind: ConnectionKind,
    /// Holds the credentials: never printed.
    pub url: String,
    /// The SSH bastion the database is reached through, when it is in a private network.
    #[serde(default)]
    pub ssh: Option<SshDecl>,
}

/// An SSH bastion a connection goes through: the key is one Sluice generates for the
/// connection (`sluice connections keygen NAME --ssh`); passwords are not offered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshDecl {
    /// The bastion's host name or address.
    pub host: String,
    /// Its SSH port.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// The user whose `authorized_keys` holds the connection's public key.
    pub user: String,
}

fn default_ssh_port() -> u16 {
    22
}

/// The connection kinds that can be reached through an SSH bastion.
pub const TUNNEL_KINDS: [&str; 3] = ["postgres", "redshift", "mysql"];

impl std::fmt::Debug for ConnectionDecl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionDecl")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &sluice_proto::bus::redact_url(&self.url))
            .field("ssh", &self.ssh)
            .finish()
    }
}

/// What an import's rows become.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    /// Rows become profiles, merged by identity.
    Profiles,
    /// Rows become events, each imported exactly once.
    Events,
    /// Rows become purchase events, with product and price.
    Purchases,
    /// Rows name profiles to delete.
    UserDeletes,
}

impl DataType {
    /// The name as written in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Profiles => "profiles",
            DataType::Events => "events",
            DataType::Purchases => "purchases",
            DataType::UserDeletes => "user_deletes",
        }
    }
}

fn default_chunk_rows() -> u64 {
    50_000
}

fn default_settle_lag() -> Duration {
    Duration::from_secs(10)
}

/// How long a run's chunk objects (the source rows as read, normalized, and rejected) are kept
/// after it ends, for debugging, unless an import says otherwise.
pub const DEFAULT_OBJECT_RETENTION: Duration = Duration::from_secs(7 * 86_400);

fn default_object_retention() -> Duration {
    DEFAULT_OBJECT_RETENTION
}

/// How long a rejected row is read again by later runs before it is dropped, unless an
/// import says otherwise.
pub const DEFAULT_RETRY_REJECTED_FOR: Duration = Duration::from_secs(7 * 86_400);

fn default_retry_rejected_for() -> Duration {
    DEFAULT_RETRY_REJECTED_FOR
}

/// How long a run's lineage (what happened to each row) is kept after it ends, unless an
/// import says otherwise.
pub const DEFAULT_LINEAGE_RETENTION: Duration = Duration::from_secs(30 * 86_400);

fn default_lineage_retention() -> Duration {
    DEFAULT_LINEAGE_RETENTION
}

/// What a profiles import does when a source row it loaded is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Removals {
    /// Unset the import's own properties (mapped and constant) that the row had set.
    Unset,
}

/// An import as declared; stored as the import's spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportDecl {
    /// The import's name, unique in its workspace.
    pub name: String,
    /// The connection it reads through.
    pub connection: String,
    /// The destination its rows are delivered to instead of the built-in stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// `{ table: name }` or `{ query: "SELECT ..." }`.
    #[serde(with = "serde_norway::with::singleton_map")]
    pub source: SourceRelation,
    /// What its rows become.
    pub data_type: DataType,
    /// A unique key in the source; breaks ties on the watermark.
    pub key: String,
    /// The "updated on" column.
    pub watermark: String,
    /// Columns holding the row's identities: any of identity, external_id, alias_name +
    /// alias_label, email, phone, profile_id.
    pub identity: IdentityMapping,
    /// The order identities are tried in; identity > external_id > alias > email > phone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity_precedence: Vec<IdentityKind>,
    /// `upsert` (default) or `update_only`.
    #[serde(default)]
    pub mode: ImportMode,
    /// Profiles: `unset` mirrors the source: each run also reads every key, and the
    /// properties that rows gone from the source had set are unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removals: Option<Removals>,
    #[serde(default)]
    /// Profile properties or event properties, by name, each from a column.
    pub properties: BTreeMap<String, PropertyMapping>,
    /// Properties given the same value on every row.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub constants: BTreeMap<String, serde_json::Value>,
    /// Profiles: consent per channel (email, sms, whatsapp, push) and named group, each
    /// from a status column, and when it was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<sluice_proto::subscription::SubscriptionMapping>,
    /// A column holding a JSON object whose keys become properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// Timezone of zone-less date-times for every property that names none; UTC by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Events and purchases: where the event's name comes from, `{ column: C }` or
    /// `{ value: "Name" }`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_norway::with::singleton_map"
    )]
    pub event_name: Option<EventName>,
    /// Events and purchases: the event's time (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<EventTime>,
    /// Events and purchases: a column identifying each event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
    /// Events and purchases: `create` (default) or `reject`.
    #[serde(default)]
    pub unknown_identity: UnknownIdentity,
    /// Purchases: the product, currency, price and items columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase: Option<PurchaseMapping>,
    /// User deletes: must be true, a guard against deleting by accident.
    #[serde(default)]
    pub allow_deletes: bool,
    /// User deletes: delete the profiles' events as well.
    #[serde(default)]
    pub delete_events: bool,
    /// Imports whose run for the same schedule slot must finish before this one's starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// When the import runs by itself; manual runs only when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleDecl>,
    #[serde(default = "default_chunk_rows")]
    /// Rows per chunk, about.
    pub chunk_rows: u64,
    #[serde(default = "default_settle_lag", with = "crate::duration::serde_text")]
    /// How far behind the source's clock a run reads, so rows still being written settle.
    pub settle_lag: Duration,
    /// How long a run's chunk objects are kept after the run ends.
    #[serde(
        default = "default_object_retention",
        with = "crate::duration::serde_text"
    )]
    pub object_retention: Duration,
    /// How long a run's lineage (what happened to each row) is kept after the run ends; `0s`
    /// writes none.
    #[serde(
        default = "default_lineage_retention",
        with = "crate::duration::serde_text"
    )]
    pub lineage_retention: Duration,
    /// Whether rows rejected for a cause outside the row (a type conflict, an unknown
    /// identity, a missing channel address) are read again by later runs; on by default for
    /// profiles, events and purchases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_rejected: Option<bool>,
    /// How long a rejected row is read again before it is dropped, from its first rejection.
    #[serde(
        default = "default_retry_rejected_for",
        with = "crate::duration::serde_text"
    )]
    pub retry_rejected_for: Duration,
    /// Where the import's run events are sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifyDecl>,
    /// Failed runs in a row that pause the import (5 by default; 0 never pauses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_after_failures: Option<u32>,
    /// The share of rows (0 to 1) a dry run may reject and still take the import out of
    /// draft; 0.01 (1%) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote_max_rejected: Option<f64>,
}

/// Where an import's events go: webhooks, email addresses and Slack channels, each hearing
/// the events it chooses, and the alert rules that watch for what a green run can hide.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyDecl {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    /// Webhooks told of the import's events (every event unless `on` says otherwise).
    pub webhooks: Vec<WebhookDecl>,
    /// Addresses sent an email per event, through the fleet's SMTP server (failures, pauses
    /// and alerts unless `on` says otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<EmailDecl>,
    /// Slack incoming webhooks (failures, pauses and alerts unless `on` says otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slack: Vec<SlackDecl>,
    /// A partially succeeded run is notified when more than this share of its rows (0 to 1)
    /// was rejected; 0, the default, notifies every one. A target may set its own.
    #[serde(default)]
    pub partial_threshold: f64,
    /// Alert rules, evaluated by the coordinator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertsDecl>,
}

/// Every event a target can hear.
pub const EVENTS: [&str; 7] = [
    "run.started",
    "run.succeeded",
    "run.partially_succeeded",
    "run.failed",
    "import.paused",
    "alert.firing",
    "alert.resolved",
];

/// The events email and Slack targets hear unless they choose: what on-call acts on.
pub const ON_CALL_EVENTS: [&str; 4] = [
    "run.failed",
    "import.paused",
    "alert.firing",
    "alert.resolved",
];

/// A webhook: each event is POSTed as JSON, signed with the secret.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookDecl {
    /// Where events are posted.
    pub url: String,
    /// Signs each delivery (HMAC-SHA256). Kept sealed beside the import, never in its stored
    /// spec.
    #[serde(default, skip_serializing)]
    pub secret: String,
    /// The events it hears; every one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Vec<String>>,
    /// Its own partial threshold, instead of the import's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_threshold: Option<f64>,
}

impl std::fmt::Debug for WebhookDecl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookDecl")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("on", &self.on)
            .finish()
    }
}

/// An email target: an address, or `{ address, on, partial_threshold }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmailDecl {
    /// An address hearing failures, pauses and alerts.
    Address(String),
    /// An address with the events it chooses.
    Target {
        /// The address.
        address: String,
        /// The events it hears; failures, pauses and alerts when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        on: Option<Vec<String>>,
        /// Its own partial threshold, instead of the import's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partial_threshold: Option<f64>,
    },
}

impl EmailDecl {
    /// The address.
    pub fn address(&self) -> &str {
        match self {
            EmailDecl::Address(a) | EmailDecl::Target { address: a, .. } => a,
        }
    }

    /// The events chosen, if any.
    pub fn on(&self) -> Option<&Vec<String>> {
        match self {
            EmailDecl::Address(_) => None,
            EmailDecl::Target { on, .. } => on.as_ref(),
        }
    }

    /// Its own partial threshold, if any.
    pub fn partial_threshold(&self) -> Option<f64> {
        match self {
            EmailDecl::Address(_) => None,
            EmailDecl::Target {
                partial_threshold, ..
            } => *partial_threshold,
        }
    }
}

/// A Slack channel's incoming webhook: a short formatted message per event.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackDecl {
    /// The incoming-webhook URL, a secret: sealed beside the import, never in its stored spec.
    #[serde(default, skip_serializing)]
    pub url: String,
    /// The events it hears; failures, pauses and alerts when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Vec<String>>,
    /// Its own partial threshold, instead of the import's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_threshold: Option<f64>,
}

impl std::fmt::Debug for SlackDecl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackDecl")
            .field("url", &"<redacted>")
            .field("on", &self.on)
            .finish()
    }
}

/// Alert rules: each fires once when it becomes true and resolves once when it stops.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsDecl {
    /// The import read no row for this long (`24h`).
    #[serde(
        default,
        with = "crate::duration::serde_text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub no_rows_for: Option<Duration>,
    /// The latest run read less than this share of the median of the 10 before it (`50%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_drop: Option<Share>,
    /// A scheduled slot has not succeeded this long after it (`30m`).
    #[serde(
        default,
        with = "crate::duration::serde_text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub late_by: Option<Duration>,
    /// The latest run rejected more than this share of its rows (`1%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_rate: Option<Share>,
}

/// A share from 0 to 1, written `50%` or `0.5`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share(pub f64);

impl std::fmt::Display for Share {
    /// As a percentage (`50%`), which deserializes back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let percent = (self.0 * 1e6).round() / 1e4;
        write!(f, "{percent}%")
    }
}

impl Serialize for Share {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Share, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(f64),
            Text(String),
        }
        let value = match Written::deserialize(d)? {
            Written::Number(n) => n,
            Written::Text(t) => match t.trim().strip_suffix('%') {
                Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0).map_err(|_| {
                    serde::de::Error::custom(format!("{t:?} is not a share like 50% or 0.5"))
                })?,
                None => t.trim().parse::<f64>().map_err(|_| {
                    serde::de::Error::custom(format!("{t:?} is not a share like 50% or 0.5"))
                })?,
            },
        };
        if !(0.0..=1.0).contains(&value) || value.is_nan() {
            return Err(serde::de::Error::custom(format!(
                "{value} is not a share from 0 (0%) to 1 (100%)"
            )));
        }
        Ok(Share(value))
    }
}

/// Checks an import's notification targets and alert rules.
fn validate_notify(field: &str, notify: &NotifyDecl) -> Result<(), SpecError> {
    let share = |field: String, value: Option<f64>| match value {
        Some(v) if !(0.0..=1.0).contains(&v) => Err(invalid(field, "a share of rows, from 0 to 1")),
        _ => Ok(()),
    };
    share(
        format!("{field}.partial_threshold"),
        Some(notify.partial_threshold),
    )?;
    let events = |field: String, on: Option<&Vec<String>>| -> Result<(), SpecError> {
        for (i, event) in on.into_iter().flatten().enumerate() {
            if !EVENTS.contains(&event.as_str()) {
                let hint = suggest::nearest(event, &EVENTS)
                    .map(|e| format!("; did you mean {e}?"))
                    .unwrap_or_default();
                return Err(invalid(
                    format!("{field}.on[{i}]"),
                    format!(
                        "{event:?} is not an event (events: {}){hint}",
                        EVENTS.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    };
    for (i, email) in notify.emails.iter().enumerate() {
        let field = format!("{field}.emails[{i}]");
        if email.address().parse::<lettre::Address>().is_err() {
            return Err(invalid(
                field,
                format!("{:?} is not an email address", email.address()),
            ));
        }
        events(field.clone(), email.on())?;
        share(
            format!("{field}.partial_threshold"),
            email.partial_threshold(),
        )?;
    }
    for (i, hook) in notify.webhooks.iter().enumerate() {
        let field = format!("{field}.webhooks[{i}]");
        match url::Url::parse(&hook.url) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
            _ => {
                return Err(invalid(
                    format!("{field}.url"),
                    format!("{:?} is not an http(s) URL", hook.url),
                ))
            }
        }
        if hook.secret.len() < 16 {
            return Err(invalid(
                format!("{field}.secret"),
                "give a signing secret of at least 16 characters (e.g. `openssl rand -hex 32`)",
            ));
        }
        events(field.clone(), hook.on.as_ref())?;
        share(format!("{field}.partial_threshold"), hook.partial_threshold)?;
    }
    for (i, slack) in notify.slack.iter().enumerate() {
        let field = format!("{field}.slack[{i}]");
        match url::Url::parse(&slack.url) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
            _ => return Err(invalid(
                format!("{field}.url"),
                "give the channel's incoming-webhook URL (https://hooks.slack.com/services/...)",
            )),
        }
        events(field.clone(), slack.on.as_ref())?;
        share(
            format!("{field}.partial_threshold"),
            slack.partial_threshold,
        )?;
    }
    if let Some(alerts) = &notify.alerts {
        for (name, value) in [
            ("no_rows_for", alerts.no_rows_for),
            ("late_by", alerts.late_by),
        ] {
            if value.is_some_and(|d| d < Duration::from_secs(60)) {
                return Err(invalid(
                    format!("{field}.alerts.{name}"),
                    "at least 1m: the rules are evaluated every 30 seconds",
                ));
            }
        }
    }
    Ok(())
}

/// The event name purchases get when the spec names none.
pub const PURCHASE_EVENT: &str = "Charged";

impl ImportDecl {
    /// Whether later runs read this import's retryable rejected rows again.
    pub fn retries_rejected(&self) -> bool {
        self.retry_rejected
            .unwrap_or(self.data_type != DataType::UserDeletes)
    }

    /// What the rows become.
    pub fn records(&self) -> Records {
        match self.data_type {
            DataType::Profiles => Records::Profiles,
            DataType::UserDeletes => Records::UserDeletes {
                delete_events: self.delete_events,
            },
            DataType::Events | DataType::Purchases => Records::Events(Box::new(EventMapping {
                name: self
                    .event_name
                    .clone()
                    .unwrap_or_else(|| EventName::Value(PURCHASE_EVENT.to_string())),
                time: self.event_time.clone().unwrap_or_else(|| EventTime {
                    column: String::new(),
                    format: None,
                    timezone: None,
                    if_missing: Default::default(),
                }),
                dedup_key: self.dedup_key.clone(),
                unknown_identity: self.unknown_identity,
                purchase: self.purchase.clone(),
                retention_days: None,
            })),
        }
    }

    /// Every source column the import names, with the field that names it, relative to the
    /// import (`key`, `identity.email`, `properties.plan.column`, ...).
    pub fn column_fields(&self) -> Vec<(String, &str)> {
        let mut fields = vec![
            ("key".to_string(), self.key.as_str()),
            ("watermark".to_string(), self.watermark.as_str()),
        ];
        for (field, column) in self.identity.fields() {
            fields.push((format!("identity.{}", field.as_str()), column));
        }
        for (name, p) in &self.properties {
            fields.push((format!("properties.{name}.column"), p.column.as_str()));
        }
        if let Some(payload) = &self.payload {
            fields.push(("payload".to_string(), payload));
        }
        if let Some(subscriptions) = &self.subscriptions {
            for (topic, status) in subscriptions.topics() {
                let at = match &topic {
                    sluice_proto::subscription::Topic::Channel(c) => c.as_str().to_string(),
                    sluice_proto::subscription::Topic::Group(g) => format!("groups.{g}"),
                };
                fields.push((format!("subscriptions.{at}.column"), &status.column));
            }
            if let Some(time) = &subscriptions.consented_at {
                fields.push((
                    "subscriptions.consented_at.column".to_string(),
                    &time.column,
                ));
            }
        }
        if let Some(EventName::Column(c)) = &self.event_name {
            fields.push(("event_name.column".to_string(), c));
        }
        if let Some(time) = &self.event_time {
            fields.push(("event_time.column".to_string(), &time.column));
        }
        if let Some(c) = &self.dedup_key {
            fields.push(("dedup_key".to_string(), c));
        }
        if let Some(p) = &self.purchase {
            fields.push(("purchase.product_id".to_string(), &p.product_id));
            fields.push(("purchase.currency".to_string(), &p.currency));
            fields.push(("purchase.price".to_string(), &p.price));
            if let Some(items) = &p.items {
                fields.push(("purchase.items".to_string(), items));
            }
        }
        fields
    }

    /// The mapping the transformer and loader apply.
    pub fn mapping(&self) -> Mapping {
        Mapping {
            records: self.records(),
            identity: self.identity.clone(),
            precedence: self.identity_precedence.clone(),
            mode: self.mode,
            properties: self.properties.clone(),
            constants: self.constants.clone(),
            payload: self.payload.clone(),
            timezone: self.timezone.clone(),
            subscriptions: self.subscriptions.clone(),
        }
    }
}

/// A spec that cannot be applied, with the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpecError {
    /// The field at fault, as a path (`imports[0].mapping.email`).
    pub field: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// One import as a spec file `sluice apply -f` takes, so an import set up on the web page can
/// move to git: its workspace is `${SLUICE_WORKSPACE:-name}`, the one `apply` acts in or, when
/// none is given, the import's own. Secrets (webhook secrets) are never part of it.
pub fn import_file(workspace: &str, import: &ImportDecl) -> Result<String, String> {
    #[derive(Serialize)]
    struct File<'a> {
        workspace: String,
        imports: [&'a ImportDecl; 1],
    }
    let text = serde_norway::to_string(&File {
        workspace: format!("${{SLUICE_WORKSPACE:-{workspace}}}"),
        imports: [import],
    })
    .map_err(|e| e.to_string())?;
    Ok(format!(
        "# Import {}: sluice apply -f <this file> [--workspace NAME]\n{text}",
        import.name
    ))
}

/// Replaces `${NAME}` with the environment variable `NAME`, and `${NAME:-default}` with it or,
/// where it is unset or empty, with `default`; an unset variable without a default is an error.
pub fn interpolate(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, SpecError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| invalid("spec", "an unclosed ${ in the file"))?;
        let reference = &after[..end];
        // `${NAME:-default}` falls back to its default where NAME is unset or empty.
        let (name, default) = match reference.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (reference, None),
        };
        let value = env(name)
            .filter(|v| default.is_none() || !v.is_empty())
            .or_else(|| default.map(str::to_string))
            .ok_or_else(|| invalid(format!("${{{name}}}"), "environment variable is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses and validates a spec file's text, `${NAME}` taken from this process's environment.
pub fn parse(text: &str, check_connection: ConnectionCheck) -> Result<SpecFile, SpecError> {
    parse_with(text, |name| std::env::var(name).ok(), check_connection)
}

/// Parses and validates a spec's text, `${NAME}` taken from `env`. The HTTP API passes an
/// empty one: a client's spec must never read the server's environment.
pub fn parse_with(
    text: &str,
    env: impl Fn(&str) -> Option<String>,
    check_connection: ConnectionCheck,
) -> Result<SpecFile, SpecError> {
    let text = interpolate(text, env)?;
    let document = serde_norway::Deserializer::from_str(&text);
    let spec: SpecFile = serde_path_to_error::deserialize(document).map_err(|e| {
        // The YAML parser's message may start with a path of its own, shorter than the one
        // tracked (it stops at the list item when a field's own check fails).
        let tracked = e.path().to_string();
        let message = e.into_inner().to_string();
        let (prefix, detail) = match message.split_once(": ") {
            Some((path, detail)) if !path.contains(' ') && !path.is_empty() => (path, detail),
            _ => ("spec", message.as_str()),
        };
        let field = match (tracked.as_str(), prefix) {
            (".", "") | ("", "") => "spec",
            (".", prefix) | ("", prefix) => prefix,
            (tracked, _) => tracked,
        };
        invalid(field, suggest::unknown_name(detail))
    })?;
    validate(&spec, check_connection)?;
    Ok(spec)
}

fn check_name(field: &str, name: &str) -> Result<(), SpecError> {
    if name.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if name.len() > 200 || name.chars().any(char::is_control) {
        return Err(invalid(field, "must be at most 200 printable characters"));
    }
    Ok(())
}

/// Checks the name of a workspace, connection or import: it appears in API paths, web page
/// addresses and CLI arguments, so it is kept to letters, digits, `_`, `-` and `.`.
pub fn check_object_name(field: &str, name: &str) -> Result<(), SpecError> {
    let fits = (1..=100).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if fits {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{name:?} is not a name: use 1 to 100 letters, digits, '_', '-' or '.', starting with a letter or digit"),
        ))
    }
}

/// What a connection check found wrong, so the error names the right field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionProblem {
    /// No connector of that kind; the message lists the kinds there are.
    Kind(String),
    /// The kind's connector refuses the URL, saying why (never echoing a secret).
    Url(String),
}

/// Checks a connection's kind and URL; the connectors' registry knows both (the coordinator
/// passes its check).
pub type ConnectionCheck = fn(&ConnectionKind, &str) -> Result<(), ConnectionProblem>;

/// A [`ConnectionCheck`] that takes every kind and URL: for tools that check a spec's shape
/// without the connectors.
pub fn any_connection(_: &ConnectionKind, _: &str) -> Result<(), ConnectionProblem> {
    Ok(())
}

/// A bastion needs a host, a user and a port, and a kind that speaks over one TCP port.
fn validate_ssh(field: &str, kind: &ConnectionKind, ssh: &SshDecl) -> Result<(), SpecError> {
    if !TUNNEL_KINDS.contains(&kind.as_str()) {
        return Err(invalid(
            field,
            format!(
                "a {} connection cannot go through an SSH bastion; {} connections can",
                kind.as_str(),
                TUNNEL_KINDS.join(", ")
            ),
        ));
    }
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == '@' || c == '/';
    if ssh.host.is_empty() || ssh.host.contains(bad) {
        return Err(invalid(
            format!("{field}.host"),
            format!("{:?} is not a host name or address", ssh.host),
        ));
    }
    if ssh.user.is_empty() || ssh.user.contains(bad) || ssh.user.contains(':') {
        return Err(invalid(
            format!("{field}.user"),
            format!("{:?} is not a user name", ssh.user),
        ));
    }
    if ssh.port == 0 {
        return Err(invalid(format!("{field}.port"), "must be 1 to 65535"));
    }
    Ok(())
}

/// Checks everything that can be checked without a source: names, references, types,
/// date formats, timezones and limits, and each connection's kind and URL with `check_connection`.
pub fn validate(spec: &SpecFile, check_connection: ConnectionCheck) -> Result<(), SpecError> {
    check_object_name("workspace", &spec.workspace)?;
    if let Some(retention) = spec.event_retention {
        if retention < Duration::from_secs(86_400) {
            return Err(invalid("event_retention", "must be at least 1d"));
        }
    }
    let mut connection_names = Vec::new();
    for (i, c) in spec.connections.iter().enumerate() {
        let field = format!("connections[{i}]");
        check_object_name(&format!("{field}.name"), &c.name)?;
        if connection_names.contains(&&c.name) {
            return Err(invalid(
                format!("{field}.name"),
                format!("connection {:?} is declared twice", c.name),
            ));
        }
        connection_names.push(&c.name);
        check_connection(&c.kind, &c.url).map_err(|problem| match problem {
            ConnectionProblem::Kind(e) => invalid(format!("{field}.kind"), e),
            ConnectionProblem::Url(e) => invalid(format!("{field}.url"), e),
        })?;
        if let Some(ssh) = &c.ssh {
            validate_ssh(&format!("{field}.ssh"), &c.kind, ssh)?;
        }
    }
    let mut destination_names = Vec::new();
    for (i, d) in spec.destinations.iter().enumerate() {
        let field = format!("destinations[{i}]");
        destinations::validate(&field, d)?;
        if destination_names.contains(&&d.name) {
            return Err(invalid(
                format!("{field}.name"),
                format!("destination {:?} is declared twice", d.name),
            ));
        }
        destination_names.push(&d.name);
    }
    let mut import_names = Vec::new();
    for (i, import) in spec.imports.iter().enumerate() {
        let field = format!("imports[{i}]");
        check_object_name(&format!("{field}.name"), &import.name)?;
        if let Some(notify) = &import.notify {
            validate_notify(&format!("{field}.notify"), notify)?;
        }
        if import_names.contains(&&import.name) {
            return Err(invalid(
                format!("{field}.name"),
                format!("import {:?} is declared twice", import.name),
            ));
        }
        import_names.push(&import.name);
        check_name(&format!("{field}.connection"), &import.connection)?;
        if let Some(name) = &import.destination {
            check_object_name(&format!("{field}.destination"), name)?;
            // One stored earlier is checked by apply, which knows the workspace's.
            if let Some(d) = spec.destinations.iter().find(|d| &d.name == name) {
                destinations::check_import(&field, import, d.kind)?;
            }
        }
        validate_records(&field, import)?;
        for (i, other) in import.after.iter().enumerate() {
            if other == &import.name {
                return Err(invalid(
                    format!("{field}.after[{i}]"),
                    "an import cannot wait for itself",
                ));
            }
            if !spec.imports.iter().any(|d| &d.name == other) {
                return Err(invalid(
                    format!("{field}.after[{i}]"),
                    format!("{other:?} is not an import of this spec"),
                ));
            }
        }
        if let Some(schedule) = &import.schedule {
            schedule.compile().map_err(|e| {
                let at = if e.field == "schedule" {
                    format!("{field}.schedule")
                } else {
                    format!("{field}.schedule.{}", e.field)
                };
                invalid(at, e.reason)
            })?;
        }
        match &import.source {
            SourceRelation::Table(t) => check_name(&format!("{field}.source.table"), t)?,
            SourceRelation::Query(q) => {
                let head = q.trim_start().to_ascii_lowercase();
                if !(head.starts_with("select") || head.starts_with("with")) {
                    return Err(invalid(
                        format!("{field}.source.query"),
                        "must be a SELECT (or WITH ... SELECT) statement",
                    ));
                }
            }
        }
        check_name(&format!("{field}.key"), &import.key)?;
        check_name(&format!("{field}.watermark"), &import.watermark)?;
        validate_identity(&field, import)?;
        if import.key == import.watermark {
            return Err(invalid(
                format!("{field}.key"),
                "the key and the watermark must be different columns",
            ));
        }
        if !(100..=10_000_000).contains(&import.chunk_rows) {
            return Err(invalid(
                format!("{field}.chunk_rows"),
                "must be between 100 and 10000000",
            ));
        }
        if let Some(share) = import.promote_max_rejected {
            if !(0.0..=1.0).contains(&share) {
                return Err(invalid(
                    format!("{field}.promote_max_rejected"),
                    "a share of rows, from 0 to 1 (0.05 lets a dry run reject 5%)",
                ));
            }
        }
        if import.settle_lag > Duration::from_secs(86_400) {
            return Err(invalid(format!("{field}.settle_lag"), "must be at most 1d"));
        }
        if import.object_retention > Duration::from_secs(365 * 86_400) {
            return Err(invalid(
                format!("{field}.object_retention"),
                "must be at most 365d: the objects hold the source's rows as read",
            ));
        }
        if import.lineage_retention > Duration::from_secs(365 * 86_400) {
            return Err(invalid(
                format!("{field}.lineage_retention"),
                "must be at most 365d (0s keeps no lineage)",
            ));
        }
        if import.retry_rejected == Some(true) && import.data_type == DataType::UserDeletes {
            return Err(invalid(
                format!("{field}.retry_rejected"),
                "user deletes reject no row for a cause that can change; remove it",
            ));
        }
        if import.retry_rejected_for > Duration::from_secs(90 * 86_400)
            || import.retry_rejected_for < Duration::from_secs(60)
        {
            return Err(invalid(
                format!("{field}.retry_rejected_for"),
                "must be between 1m and 90d",
            ));
        }
        validate_values(&field, import)?;
        subscriptions::validate(&field, import)?;
        for (name, p) in &import.properties {
            let pfield = format!("{field}.properties.{name}");
            check_name(&pfield, name)?;
            if let Some(problem) = property_name_problem(name) {
                return Err(invalid(pfield, problem));
            }
            check_name(&format!("{pfield}.column"), &p.column)?;
            let dated = matches!(p.kind, PropertyType::Date | PropertyType::Datetime);
            if p.format.is_some() && !dated {
                return Err(invalid(
                    format!("{pfield}.format"),
                    "only date and datetime properties take a format",
                ));
            }
            if dated {
                DateFormat::parse(p.format.as_deref())
                    .map_err(|e| invalid(format!("{pfield}.format"), e))?;
            }
            parse_timezone(p.timezone.as_deref())
                .map_err(|e| invalid(format!("{pfield}.timezone"), e))?;
        }
    }
    Ok(())
}

/// Checks the identity columns and their precedence.
fn validate_identity(field: &str, import: &ImportDecl) -> Result<(), SpecError> {
    let identity = &import.identity;
    for (f, column) in identity.fields() {
        check_name(&format!("{field}.identity.{}", f.as_str()), column)?;
    }
    match (&identity.alias_name, &identity.alias_label) {
        (Some(_), None) => {
            return Err(invalid(
                format!("{field}.identity.alias_label"),
                "an alias needs both alias_name and alias_label",
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                format!("{field}.identity.alias_name"),
                "an alias needs both alias_name and alias_label",
            ))
        }
        _ => {}
    }
    if identity.fields().is_empty() {
        return Err(invalid(
            format!("{field}.identity"),
            "map at least one identity column: identity, external_id, alias_name + alias_label, email, phone or profile_id",
        ));
    }
    let mut seen = Vec::new();
    for (i, kind) in import.identity_precedence.iter().enumerate() {
        let pfield = format!("{field}.identity_precedence[{i}]");
        if seen.contains(kind) {
            return Err(invalid(
                pfield,
                format!("{} is listed twice", kind.as_str()),
            ));
        }
        if !identity.has(*kind) {
            return Err(invalid(
                pfield,
                format!("{} is not mapped under identity", kind.as_str()),
            ));
        }
        seen.push(*kind);
    }
    Ok(())
}

/// Checks what the data type needs and refuses what it does not take.
fn validate_records(field: &str, import: &ImportDecl) -> Result<(), SpecError> {
    let event_fields = [
        ("event_name", import.event_name.is_some()),
        ("event_time", import.event_time.is_some()),
        ("dedup_key", import.dedup_key.is_some()),
        ("purchase", import.purchase.is_some()),
        (
            "unknown_identity",
            import.unknown_identity != UnknownIdentity::Create,
        ),
    ];
    let delete_fields = [
        ("allow_deletes", import.allow_deletes),
        ("delete_events", import.delete_events),
    ];
    let refuse = |fields: &[(&str, bool)], what: &str| -> Result<(), SpecError> {
        match fields.iter().find(|(_, set)| *set) {
            Some((name, _)) => Err(invalid(
                format!("{field}.{name}"),
                format!("{what} imports do not take {name}"),
            )),
            None => Ok(()),
        }
    };
    let data_type = import.data_type.as_str();
    if import.removals.is_some() && import.data_type != DataType::Profiles {
        return Err(invalid(
            format!("{field}.removals"),
            format!(
                "{data_type} imports do not take removals: only a profiles import mirrors rows that left the source"
            ),
        ));
    }
    match import.data_type {
        DataType::Profiles => {
            refuse(&event_fields, data_type)?;
            refuse(&delete_fields, data_type)?;
        }
        DataType::Events | DataType::Purchases => {
            refuse(&delete_fields, data_type)?;
            if import.mode != ImportMode::Upsert {
                return Err(invalid(
                    format!("{field}.mode"),
                    "events are inserted; use unknown_identity: reject to refuse unknown profiles",
                ));
            }
            match &import.event_name {
                None if import.data_type == DataType::Events => {
                    return Err(invalid(
                        format!("{field}.event_name"),
                        "is required: { column: C } or { value: \"Name\" }",
                    ))
                }
                Some(EventName::Column(c)) => check_name(&format!("{field}.event_name.column"), c)?,
                Some(EventName::Value(v)) => check_name(&format!("{field}.event_name.value"), v)?,
                None => {}
            }
            let Some(time) = &import.event_time else {
                return Err(invalid(
                    format!("{field}.event_time"),
                    "is required: { column: C, format: F }; events are never stamped with the import's time",
                ));
            };
            check_name(&format!("{field}.event_time.column"), &time.column)?;
            DateFormat::parse(time.format.as_deref())
                .map_err(|e| invalid(format!("{field}.event_time.format"), e))?;
            parse_timezone(time.timezone.as_deref())
                .map_err(|e| invalid(format!("{field}.event_time.timezone"), e))?;
            if let Some(c) = &import.dedup_key {
                check_name(&format!("{field}.dedup_key"), c)?;
            }
            match (&import.purchase, import.data_type) {
                (Some(p), DataType::Purchases) => {
                    check_name(&format!("{field}.purchase.product_id"), &p.product_id)?;
                    check_name(&format!("{field}.purchase.currency"), &p.currency)?;
                    check_name(&format!("{field}.purchase.price"), &p.price)?;
                    if let Some(items) = &p.items {
                        check_name(&format!("{field}.purchase.items"), items)?;
                    }
                    for name in ["product_id", "currency", "price", "items"] {
                        if import.properties.contains_key(name)
                            || import.constants.contains_key(name)
                        {
                            return Err(invalid(
                                format!("{field}.properties.{name}"),
                                "is a purchase field; map it under purchase",
                            ));
                        }
                    }
                }
                (None, DataType::Purchases) => {
                    return Err(invalid(
                        format!("{field}.purchase"),
                        "is required: { product_id: C, currency: C, price: C, items: C }",
                    ))
                }
                (Some(_), _) => {
                    return Err(invalid(
                        format!("{field}.purchase"),
                        "only purchases imports take purchase; use data_type: purchases",
                    ))
                }
                (None, _) => {}
            }
        }
        DataType::UserDeletes => {
            refuse(&event_fields, data_type)?;
            if !import.allow_deletes {
                return Err(invalid(
                    format!("{field}.allow_deletes"),
                    "must be true: user_deletes removes the profiles its rows name",
                ));
            }
            let mapped = [
                ("properties", !import.properties.is_empty()),
                ("constants", !import.constants.is_empty()),
                ("payload", import.payload.is_some()),
            ];
            if let Some((name, _)) = mapped.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    format!("{field}.{name}"),
                    "a user_deletes import must map no properties (a guard against deleting by accident)",
                ));
            }
            if import.mode != ImportMode::Upsert {
                return Err(invalid(
                    format!("{field}.mode"),
                    "user_deletes imports take no mode",
                ));
            }
        }
    }
    Ok(())
}

/// Checks constants, the payload column, the import's timezone and the property count.
fn validate_values(field: &str, import: &ImportDecl) -> Result<(), SpecError> {
    for (name, value) in &import.constants {
        let cfield = format!("{field}.constants.{name}");
        check_name(&cfield, name)?;
        if let Some(problem) = property_name_problem(name) {
            return Err(invalid(cfield, problem));
        }
        if import.properties.contains_key(name) {
            return Err(invalid(cfield, "is also mapped under properties"));
        }
        if value.is_null() {
            return Err(invalid(cfield, "a constant must have a value"));
        }
    }
    if let Some(payload) = &import.payload {
        check_name(&format!("{field}.payload"), payload)?;
    }
    parse_timezone(import.timezone.as_deref())
        .map_err(|e| invalid(format!("{field}.timezone"), e))?;
    let count = import.properties.len() + import.constants.len();
    if count > MAX_PROPERTIES {
        return Err(invalid(
            format!("{field}.properties"),
            format!("{count} properties and constants; at most {MAX_PROPERTIES} are allowed"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses without the connectors' URL checks, which their crate tests.
    fn parse(text: &str) -> Result<SpecFile, SpecError> {
        super::parse(text, any_connection)
    }

    const GOOD: &str = r#"
workspace: demo
connections:
  - name: wh
    kind: postgres
    url: postgres://postgres@127.0.0.1:5432/warehouse
imports:
  - name: users
    connection: wh
    source: { table: public.users }
    data_type: profiles
    key: id
    watermark: updated_at
    identity: { external_id: external_id }
    properties:
      first_name: { column: first_name, type: string }
      birthday: { column: birthday, type: date, format: "yyyy-MM-dd" }
    chunk_rows: 50000
    settle_lag: 5s
"#;

    #[test]
    fn the_documented_example_parses() {
        let spec = parse(GOOD).unwrap();
        assert_eq!(spec.imports[0].settle_lag, Duration::from_secs(5));
        assert_eq!(
            spec.imports[0].mapping().columns(),
            vec!["external_id", "birthday", "first_name"]
        );
    }

    #[test]
    fn a_bastion_is_declared_on_a_database_connection_and_checked() {
        let with = |ssh: &str| {
            parse(&GOOD.replace(
                "    url: postgres://postgres@127.0.0.1:5432/warehouse",
                &format!("    url: postgres://postgres@10.0.0.5:5432/warehouse\n    ssh: {ssh}"),
            ))
        };
        let spec = with("{ host: bastion.example.com, user: sluice }").unwrap();
        let ssh = spec.connections[0].ssh.clone().unwrap();
        assert_eq!(
            (ssh.host.as_str(), ssh.port, ssh.user.as_str()),
            ("bastion.example.com", 22, "sluice")
        );
        let err = with("{ host: \"bad host\", user: sluice }").unwrap_err();
        assert_eq!(err.field, "connections[0].ssh.host");
        let err = with("{ host: b, user: sluice, password: x }").unwrap_err();
        assert!(err.reason.contains("password"), "{err}");
        let files = GOOD.replace("kind: postgres", "kind: files").replace(
            "    url: postgres://postgres@127.0.0.1:5432/warehouse",
            "    url: file:///tmp\n    ssh: { host: b, user: u }",
        );
        let err = parse(&files).unwrap_err();
        assert_eq!(err.field, "connections[0].ssh");
        assert!(err.reason.contains("postgres, redshift, mysql"), "{err}");
    }

    #[test]
    fn an_import_file_applies_as_the_same_import_in_any_workspace() {
        let spec = parse(GOOD).unwrap();
        let text = import_file("demo", &spec.imports[0]).unwrap();
        let env = |n: &str| (n == "SLUICE_WORKSPACE").then(|| "beta".to_string());
        let again = parse_with(&text, env, any_connection).unwrap();
        assert_eq!(again.workspace, "beta");
        assert_eq!(again.imports, spec.imports);
        let own = parse_with(&text, |_| None, any_connection).unwrap();
        assert_eq!(own.workspace, "demo");
    }

    #[test]
    fn each_target_chooses_its_events_and_alert_rules_are_checked() {
        let with = |notify: &str| {
            parse(&GOOD.replace(
                "    settle_lag: 5s",
                &format!("    settle_lag: 5s\n    notify: {notify}"),
            ))
        };
        let spec = with(
            "{ emails: [a@example.com, { address: b@example.com, on: [run.succeeded] }], \
               slack: [{ url: \"https://hooks.slack.com/services/T/B/x\" }], \
               alerts: { no_rows_for: 24h, volume_drop: 50%, rejected_rate: 0.01 } }",
        )
        .unwrap();
        let notify = spec.imports[0].notify.clone().unwrap();
        assert_eq!(notify.emails[0].on(), None);
        assert_eq!(
            notify.emails[1].on().unwrap(),
            &vec!["run.succeeded".to_string()]
        );
        let alerts = notify.alerts.clone().unwrap();
        assert_eq!(alerts.volume_drop, Some(Share(0.5)));
        assert_eq!(alerts.rejected_rate, Some(Share(0.01)));
        // The stored spec keeps the rules and never the Slack URL.
        let stored = serde_json::to_string(&notify).unwrap();
        assert!(
            stored.contains("\"volume_drop\":\"50%\"") && !stored.contains("hooks.slack"),
            "{stored}"
        );
        let again: NotifyDecl = serde_json::from_str(&stored).unwrap();
        assert_eq!(again.alerts, notify.alerts);

        let err = with("{ emails: [{ address: a@example.com, on: [run.failled] }] }").unwrap_err();
        assert_eq!(err.field, "imports[0].notify.emails[0].on[0]");
        assert!(err.reason.contains("run.failed"), "{err}");
        let err = with("{ alerts: { volume_drop: 150% } }").unwrap_err();
        assert!(err.to_string().contains("not a share"), "{err}");
        let err = with("{ slack: [{ on: [run.failed] }] }").unwrap_err();
        assert_eq!(err.field, "imports[0].notify.slack[0].url");
        let err = with("{ alerts: { late_by: 10s } }").unwrap_err();
        assert_eq!(err.field, "imports[0].notify.alerts.late_by");
    }

    #[test]
    fn rejected_rows_are_retried_by_default_for_a_bounded_time() {
        let spec = parse(GOOD).unwrap();
        assert!(spec.imports[0].retries_rejected());
        assert_eq!(
            spec.imports[0].retry_rejected_for,
            DEFAULT_RETRY_REJECTED_FOR
        );
        let off = parse(&GOOD.replace(
            "settle_lag: 5s",
            "settle_lag: 5s\n    retry_rejected: false",
        ))
        .unwrap();
        assert!(!off.imports[0].retries_rejected());
        let long = GOOD.replace(
            "settle_lag: 5s",
            "settle_lag: 5s\n    retry_rejected_for: 91d",
        );
        assert_eq!(
            parse(&long).unwrap_err().field,
            "imports[0].retry_rejected_for"
        );
        let deletes = GOOD
            .replace("data_type: profiles", "data_type: user_deletes\n    allow_deletes: true")
            .replace(
                "    properties:\n      first_name: { column: first_name, type: string }\n      birthday: { column: birthday, type: date, format: \"yyyy-MM-dd\" }\n",
                "",
            );
        assert!(!parse(&deletes).unwrap().imports[0].retries_rejected());
        let refused = deletes.replace("settle_lag: 5s", "settle_lag: 5s\n    retry_rejected: true");
        assert_eq!(
            parse(&refused).unwrap_err().field,
            "imports[0].retry_rejected"
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse(&GOOD.replace("chunk_rows: 50000", "chunk_rows: 50000\n    chunk_size: 3"))
            .unwrap_err();
        assert!(err.to_string().contains("chunk_size"), "{err}");
    }

    #[test]
    fn bad_formats_and_types_name_the_property() {
        let err = parse(&GOOD.replace("yyyy-MM-dd", "yyyy-QQ")).unwrap_err();
        assert_eq!(err.field, "imports[0].properties.birthday.format");
        let err = parse(&GOOD.replace("type: string", "type: text")).unwrap_err();
        assert!(err.to_string().contains("text"), "{err}");
        let err = parse(&GOOD.replace("settle_lag: 5s", "settle_lag: 5")).unwrap_err();
        assert!(err.to_string().contains("no unit"), "{err}");
    }

    #[test]
    fn identities_precedence_and_constants_are_checked_by_field() {
        let with = |from: &str, to: &str| parse(&GOOD.replace(from, to)).unwrap_err();
        let err = with("identity: { external_id: external_id }", "identity: {}");
        assert_eq!(err.field, "imports[0].identity");
        let err = with(
            "identity: { external_id: external_id }",
            "identity: { alias_name: a }",
        );
        assert_eq!(err.field, "imports[0].identity.alias_label");
        let err = with(
            "identity: { external_id: external_id }",
            "identity: { external_id: external_id }\n    identity_precedence: [email]",
        );
        assert_eq!(err.field, "imports[0].identity_precedence[0]");
        let err = with(
            "chunk_rows: 50000",
            "chunk_rows: 50000\n    constants: { profile_id: 3 }",
        );
        assert_eq!(err.field, "imports[0].constants.profile_id");
        let err = with("first_name: {", "__first_name: {");
        assert_eq!(err.field, "imports[0].properties.__first_name");
        let err = with(
            "chunk_rows: 50000",
            "chunk_rows: 50000\n    timezone: Mars/Base",
        );
        assert_eq!(err.field, "imports[0].timezone");
        let err = with(
            "chunk_rows: 50000",
            "chunk_rows: 50000\n    mode: sometimes",
        );
        assert!(err.to_string().contains("sometimes"), "{err}");
    }

    #[test]
    fn webhooks_need_an_http_url_and_a_real_secret() {
        let with = |notify: &str| {
            parse(&GOOD.replace(
                "chunk_rows: 50000",
                &format!("chunk_rows: 50000\n    notify: {notify}"),
            ))
        };
        let ok =
            with(r#"{ webhooks: [{ url: "https://h.example/x", secret: "0123456789abcdef" }] }"#)
                .unwrap();
        let hook = &ok.imports[0].notify.as_ref().unwrap().webhooks[0];
        assert_eq!(hook.secret, "0123456789abcdef");
        let stored = serde_json::to_string(&ok.imports[0]).unwrap();
        assert!(
            !stored.contains("0123456789abcdef"),
            "the secret is not stored: {stored}"
        );
        let err = with(r#"{ webhooks: [{ url: "ftp://h/x", secret: "0123456789abcdef" }] }"#)
            .unwrap_err();
        assert_eq!(err.field, "imports[0].notify.webhooks[0].url");
        let err = with(r#"{ webhooks: [{ url: "https://h/x", secret: "short" }] }"#).unwrap_err();
        assert_eq!(err.field, "imports[0].notify.webhooks[0].secret");
        let err = with("{ emails: [ops-at-example] }").unwrap_err();
        assert_eq!(err.field, "imports[0].notify.emails[0]");
        let err = with("{ partial_threshold: 2 }").unwrap_err();
        assert_eq!(err.field, "imports[0].notify.partial_threshold");
    }

    #[test]
    fn debug_output_never_shows_a_password_or_a_signing_secret() {
        let spec = parse(
            &GOOD
                .replace("postgres://postgres@", "postgres://postgres:pa55word@")
                .replace(
                    "chunk_rows: 50000",
                    "chunk_rows: 50000\n    notify: { webhooks: [{ url: \"https://h.example/x\", secret: \"0123456789abcdef\" }] }",
                ),
        )
        .unwrap();
        let printed = format!("{spec:?}");
        assert!(printed.contains("127.0.0.1:5432"), "{printed}");
        assert!(!printed.contains("pa55word"), "{printed}");
        assert!(!printed.contains("0123456789abcdef"), "{printed}");
    }

    #[test]
    fn a_subscriptions_block_is_checked_field_by_field() {
        let with = |block: &str| {
            parse(&GOOD.replace(
                "chunk_rows: 50000",
                &format!("chunk_rows: 50000\n    subscriptions:\n{block}"),
            ))
        };
        let spec = with(
            "      email: { column: email_status }
      sms: { column: sms_opt_in, values: { \"Y\": subscribed, \"N\": unsubscribed } }
      groups: { weekly_digest: { column: digest } }
      consented_at: { column: consent_ts, format: \"yyyy-MM-dd HH:mm:ss\" }",
        )
        .unwrap();
        let mapping = spec.imports[0].mapping();
        let subscriptions = mapping.subscriptions.as_ref().unwrap();
        assert_eq!(subscriptions.topics().len(), 3);
        assert!(mapping.columns().contains(&"consent_ts".to_string()));
        let fields: Vec<String> = spec.imports[0]
            .column_fields()
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert!(fields.contains(&"subscriptions.groups.weekly_digest.column".to_string()));

        let err = with("      fax: { column: f }").unwrap_err();
        assert_eq!(err.field, "imports[0].subscriptions.fax");
        assert!(err.reason.contains("whatsapp"), "{err}");
        let err = with("      sms: { column: s, values: { \"Y\": maybe } }").unwrap_err();
        assert!(err.field.contains("subscriptions.sms"), "{err}");
        let err = with("      groups: { \"two words\": { column: d } }").unwrap_err();
        assert_eq!(err.field, "imports[0].subscriptions.groups.two words");
        let err = with("      email: { column: \" \" }").unwrap_err();
        assert_eq!(err.field, "imports[0].subscriptions.email.column");
        let err = with("      consented_at: { column: c }").unwrap_err();
        assert_eq!(err.field, "imports[0].subscriptions");
        let err =
            with("      email: { column: e }\n      consented_at: { column: c, format: \"qq\" }")
                .unwrap_err();
        assert_eq!(err.field, "imports[0].subscriptions.consented_at.format");
        let events = parse(
            &GOOD
                .replace("data_type: profiles", "data_type: events\n    event_name: { value: Seen }\n    event_time: { column: t }")
                .replace("chunk_rows: 50000", "chunk_rows: 50000\n    subscriptions: { email: { column: e } }"),
        )
        .unwrap_err();
        assert_eq!(events.field, "imports[0].subscriptions");
    }

    #[test]
    fn a_full_mapping_parses() {
        let spec = parse(&GOOD.replace(
            "identity: { external_id: external_id }",
            "identity: { external_id: external_id, email: email, phone: phone }
    identity_precedence: [email, external_id]
    mode: update_only
    payload: attributes
    timezone: Europe/Paris
    constants: { source: warehouse, tier: 2 }",
        ))
        .unwrap();
        let mapping = spec.imports[0].mapping();
        assert_eq!(mapping.mode, ImportMode::UpdateOnly);
        assert_eq!(
            mapping.precedence(),
            vec![
                IdentityKind::Email,
                IdentityKind::ExternalId,
                IdentityKind::Phone
            ]
        );
        assert_eq!(mapping.constants["tier"], serde_json::json!(2));
        assert_eq!(mapping.payload.as_deref(), Some("attributes"));
    }

    const EVENTS: &str = r#"
workspace: demo
event_retention: 365d
connections:
  - name: wh
    kind: postgres
    url: postgres://postgres@127.0.0.1:5432/warehouse
imports:
  - name: clicks
    connection: wh
    source: { table: public.clicks }
    data_type: events
    key: id
    watermark: updated_at
    identity: { external_id: user_id }
    event_name: { column: name }
    event_time: { column: at, format: "yyyy-MM-dd HH:mm:ss" }
    dedup_key: event_id
"#;

    #[test]
    fn an_events_import_parses_and_needs_its_time_and_name() {
        let spec = parse(EVENTS).unwrap();
        assert_eq!(
            spec.event_retention,
            Some(Duration::from_secs(365 * 86_400))
        );
        let Records::Events(events) = spec.imports[0].records() else {
            panic!("events expected")
        };
        assert_eq!(events.name, EventName::Column("name".into()));
        assert_eq!(
            spec.imports[0].mapping().columns(),
            vec!["user_id", "name", "at", "event_id"]
        );
        let err = parse(&EVENTS.replace(
            "    event_time: { column: at, format: \"yyyy-MM-dd HH:mm:ss\" }\n",
            "",
        ))
        .unwrap_err();
        assert_eq!(err.field, "imports[0].event_time");
        let err = parse(&EVENTS.replace(
            "event_name: { column: name }",
            "event_name: { value: \"\" }",
        ))
        .unwrap_err();
        assert_eq!(err.field, "imports[0].event_name.value");
        let err = parse(&EVENTS.replace("data_type: events", "data_type: profiles")).unwrap_err();
        assert_eq!(err.field, "imports[0].event_name");
        let err =
            parse(&EVENTS.replace("event_retention: 365d", "event_retention: 1h")).unwrap_err();
        assert_eq!(err.field, "event_retention");
    }

    #[test]
    fn purchases_need_their_columns_and_default_to_charged() {
        let purchases = EVENTS
            .replace("data_type: events", "data_type: purchases")
            .replace("    event_name: { column: name }\n", "");
        let err = parse(&purchases).unwrap_err();
        assert_eq!(err.field, "imports[0].purchase");
        let spec = parse(&format!(
            "{purchases}    purchase: {{ product_id: sku, currency: cur, price: amount, items: items }}\n"
        ))
        .unwrap();
        let Records::Events(events) = spec.imports[0].records() else {
            panic!("events expected")
        };
        assert_eq!(events.name, EventName::Value(PURCHASE_EVENT.into()));
        assert!(spec.imports[0]
            .mapping()
            .columns()
            .contains(&"items".to_string()));
    }

    #[test]
    fn user_deletes_need_the_guard_and_no_properties() {
        let deletes = GOOD
            .replace("data_type: profiles", "data_type: user_deletes")
            .replace(
                "    properties:\n      first_name: { column: first_name, type: string }\n      birthday: { column: birthday, type: date, format: \"yyyy-MM-dd\" }\n",
                "",
            );
        let err = parse(&deletes).unwrap_err();
        assert_eq!(err.field, "imports[0].allow_deletes");
        let guarded = deletes.replace(
            "chunk_rows: 50000",
            "chunk_rows: 50000\n    allow_deletes: true",
        );
        assert!(parse(&guarded).is_ok());
        let err = parse(&guarded.replace(
            "allow_deletes: true",
            "allow_deletes: true\n    constants: { a: 1 }",
        ))
        .unwrap_err();
        assert_eq!(err.field, "imports[0].constants");
    }

    #[test]
    fn a_bad_schedule_names_its_field() {
        let err = parse(&GOOD.replace(
            "chunk_rows: 50000",
            "chunk_rows: 50000\n    schedule: { every: 5m }",
        ))
        .unwrap_err();
        assert_eq!(err.field, "imports[0].schedule.every");
        assert!(parse(&GOOD.replace(
            "chunk_rows: 50000",
            "chunk_rows: 50000\n    schedule: { cron: \"0 6 * * 1-5\", timezone: Europe/Berlin }",
        ))
        .is_ok());
    }

    #[test]
    fn environment_variables_are_interpolated() {
        let text =
            interpolate("url: ${A}/db", |n| (n == "A").then(|| "pg://x".to_string())).unwrap();
        assert_eq!(text, "url: pg://x/db");
        let err = interpolate("url: ${MISSING}", |_| None).unwrap_err();
        assert_eq!(err.field, "${MISSING}");
        let env = |n: &str| (n == "SET").then(|| "beta".to_string());
        let text = interpolate("a: ${SET:-acme}\nb: ${UNSET:-acme}", env).unwrap();
        assert_eq!(text, "a: beta\nb: acme");
        let text = interpolate("a: ${EMPTY:-acme}", |_| Some(String::new())).unwrap();
        assert_eq!(text, "a: acme");
    }
}
