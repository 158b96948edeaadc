//! The import builder's form: every field as posted (property rows numbered), read back from
//! an import's stored spec to edit it, and turned into the import a spec file declares, with
//! the field at fault named when it cannot be.

use crate::spec::ImportDecl;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The identity fields a row may carry, in the form's order.
pub const IDENTITY_FIELDS: [&str; 7] = [
    "external_id",
    "email",
    "phone",
    "alias_name",
    "alias_label",
    "identity",
    "profile_id",
];

/// The property types, as specs write them.
pub const PROPERTY_TYPES: [&str; 7] = [
    "string", "integer", "number", "boolean", "date", "datetime", "json",
];

/// Blank property rows the form offers besides the filled ones.
const BLANK_ROWS: usize = 2;

/// One property row of the form.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PropertyRow {
    /// The source column.
    pub column: String,
    /// The property's name.
    pub name: String,
    /// Its type.
    pub kind: String,
    /// The date format, for dates and date-times.
    pub format: String,
    /// The timezone of zone-less date-times.
    pub timezone: String,
}

impl PropertyRow {
    fn is_blank(&self) -> bool {
        self.column.trim().is_empty() && self.name.trim().is_empty()
    }
}

/// The builder's form, as posted.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    /// Which button was pressed: `preview`, `add`, `save` or `yaml`.
    pub step: String,
    /// The form's token against cross-site posts.
    pub csrf: String,
    /// The stored spec being edited (JSON), whose fields the form does not show are kept.
    pub base: String,
    pub name: String,
    pub connection: String,
    pub data_type: String,
    /// `table` or `query`.
    pub source_kind: String,
    pub source: String,
    pub key: String,
    pub watermark: String,
    /// Identity field → column.
    pub identities: BTreeMap<String, String>,
    /// Identity kinds, comma-separated, first tried first.
    pub precedence: String,
    pub properties: Vec<PropertyRow>,
    pub payload: String,
    pub timezone: String,
    /// `name = value` lines.
    pub constants: String,
    pub event_name_column: String,
    pub event_name_value: String,
    pub event_time: String,
    pub event_time_format: String,
    pub dedup_key: String,
    pub allow_deletes: bool,
    pub delete_events: bool,
    /// `manual`, `every`, `cron` or `at`.
    pub schedule_kind: String,
    pub schedule: String,
    pub schedule_timezone: String,
    pub after: Vec<String>,
    /// Addresses, separated by commas or lines.
    pub emails: String,
    /// Webhook URLs, one per line.
    pub webhooks: String,
    /// The webhooks' signing secret: sent once, never shown again.
    pub webhook_secret: String,
    /// A Slack channel's incoming-webhook URL: sent once, never shown again.
    pub slack_url: String,
    /// Alert rules by name (`no_rows_for`, `volume_drop`, `late_by`, `rejected_rate`).
    pub alerts: BTreeMap<String, String>,
}

/// The alert rules the form offers, with an example of each.
pub const ALERT_RULES: [(&str, &str); 4] = [
    ("no_rows_for", "24h"),
    ("volume_drop", "50%"),
    ("late_by", "30m"),
    ("rejected_rate", "1%"),
];

/// A field of the form the import cannot be made from, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The field, as the spec names it.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        field: field.into(),
        message: message.into(),
    }
}

impl Draft {
    /// The form from its posted fields.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Draft {
        let mut draft = Draft::default();
        let mut rows: BTreeMap<usize, PropertyRow> = BTreeMap::new();
        for (field, value) in pairs {
            if let Some(rule) = field.strip_prefix("alert.") {
                draft.alerts.insert(rule.to_string(), value);
                continue;
            }
            if let Some(identity) = field.strip_prefix("id.") {
                draft.identities.insert(identity.to_string(), value);
                continue;
            }
            if let Some((n, part)) = field
                .strip_prefix("prop.")
                .and_then(|rest| rest.split_once('.'))
            {
                let Ok(n) = n.parse::<usize>() else { continue };
                let row = rows.entry(n).or_default();
                match part {
                    "column" => row.column = value,
                    "name" => row.name = value,
                    "type" => row.kind = value,
                    "format" => row.format = value,
                    "timezone" => row.timezone = value,
                    _ => {}
                }
                continue;
            }
            let slot = match field.as_str() {
                "step" => &mut draft.step,
                "csrf" => &mut draft.csrf,
                "base" => &mut draft.base,
                "name" => &mut draft.name,
                "connection" => &mut draft.connection,
                "data_type" => &mut draft.data_type,
                "source_kind" => &mut draft.source_kind,
                "source" => &mut draft.source,
                "key" => &mut draft.key,
                "watermark" => &mut draft.watermark,
                "precedence" => &mut draft.precedence,
                "payload" => &mut draft.payload,
                "timezone" => &mut draft.timezone,
                "constants" => &mut draft.constants,
                "event_name_column" => &mut draft.event_name_column,
                "event_name_value" => &mut draft.event_name_value,
                "event_time" => &mut draft.event_time,
                "event_time_format" => &mut draft.event_time_format,
                "dedup_key" => &mut draft.dedup_key,
                "schedule_kind" => &mut draft.schedule_kind,
                "schedule" => &mut draft.schedule,
                "schedule_timezone" => &mut draft.schedule_timezone,
                "emails" => &mut draft.emails,
                "webhooks" => &mut draft.webhooks,
                "webhook_secret" => &mut draft.webhook_secret,
                "slack_url" => &mut draft.slack_url,
                "after" => {
                    draft.after.push(value);
                    continue;
                }
                "allow_deletes" => {
                    draft.allow_deletes = true;
                    continue;
                }
                "delete_events" => {
                    draft.delete_events = true;
                    continue;
                }
                _ => continue,
            };
            *slot = value;
        }
        draft.properties = rows.into_values().filter(|r| !r.is_blank()).collect();
        draft
    }

    /// The form showing a stored import, to edit it.
    pub fn of(import: &ImportDecl) -> Draft {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let (source_kind, source) = match &import.source {
            sluice_proto::SourceRelation::Table(t) => ("table", t.clone()),
            sluice_proto::SourceRelation::Query(q) => ("query", q.clone()),
        };
        let identity = serde_json::to_value(&import.identity).unwrap_or_default();
        let schedule = import.schedule.clone().unwrap_or_default();
        let (schedule_kind, schedule_value) = match (&schedule.every, &schedule.cron, &schedule.at)
        {
            (Some(every), _, _) => ("every", every.clone()),
            (_, Some(cron), _) => ("cron", cron.clone()),
            (_, _, Some(at)) => ("at", at.clone()),
            _ => ("manual", String::new()),
        };
        let notify = import.notify.clone().unwrap_or_default();
        Draft {
            base: serde_json::to_string(import).unwrap_or_default(),
            name: import.name.clone(),
            connection: import.connection.clone(),
            data_type: import.data_type.as_str().to_string(),
            source_kind: source_kind.to_string(),
            source,
            key: import.key.clone(),
            watermark: import.watermark.clone(),
            identities: identity
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
            precedence: import
                .identity_precedence
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            properties: import
                .properties
                .iter()
                .map(|(name, p)| PropertyRow {
                    column: p.column.clone(),
                    name: name.clone(),
                    kind: p.kind.as_str().to_string(),
                    format: text(&p.format),
                    timezone: text(&p.timezone),
                })
                .collect(),
            payload: text(&import.payload),
            timezone: text(&import.timezone),
            constants: import
                .constants
                .iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect::<Vec<_>>()
                .join("\n"),
            event_name_column: match &import.event_name {
                Some(sluice_proto::EventName::Column(c)) => c.clone(),
                _ => String::new(),
            },
            event_name_value: match &import.event_name {
                Some(sluice_proto::EventName::Value(v)) => v.clone(),
                _ => String::new(),
            },
            event_time: import
                .event_time
                .as_ref()
                .map(|t| t.column.clone())
                .unwrap_or_default(),
            event_time_format: import
                .event_time
                .as_ref()
                .and_then(|t| t.format.clone())
                .unwrap_or_default(),
            dedup_key: text(&import.dedup_key),
            allow_deletes: import.allow_deletes,
            delete_events: import.delete_events,
            schedule_kind: schedule_kind.to_string(),
            schedule: schedule_value,
            schedule_timezone: text(&schedule.timezone),
            after: import.after.clone(),
            emails: notify
                .emails
                .iter()
                .map(|e| e.address())
                .collect::<Vec<_>>()
                .join(", "),
            webhooks: notify
                .webhooks
                .iter()
                .map(|w| w.url.clone())
                .collect::<Vec<_>>()
                .join("\n"),
            alerts: notify.alerts.as_ref().map(alert_texts).unwrap_or_default(),
            ..Default::default()
        }
    }

    /// The relation the form names, if any.
    pub fn relation(&self) -> Option<sluice_proto::SourceRelation> {
        let source = self.source.trim();
        match (self.source_kind.as_str(), source.is_empty()) {
            (_, true) => None,
            ("query", false) => Some(sluice_proto::SourceRelation::Query(source.to_string())),
            (_, false) => Some(sluice_proto::SourceRelation::Table(source.to_string())),
        }
    }

    /// The property rows the form shows: the filled ones and a few blank ones.
    pub fn rows(&self) -> Vec<PropertyRow> {
        let mut rows = self.properties.clone();
        rows.extend(std::iter::repeat_n(
            PropertyRow {
                kind: "string".into(),
                ..Default::default()
            },
            BLANK_ROWS,
        ));
        rows
    }

    /// Fills what the form leaves open from a previewed source: key and watermark (as read),
    /// the identity columns and one property row per other column, typed by its column, when
    /// none is mapped yet.
    pub fn suggest(&mut self, key: &str, watermark: &str, columns: &[(String, String)]) {
        self.key = key.to_string();
        self.watermark = watermark.to_string();
        let named = |words: &[&str]| {
            columns
                .iter()
                .map(|(c, _)| c)
                .find(|c| words.iter().any(|w| c.eq_ignore_ascii_case(w)))
                .cloned()
        };
        if self.identities.values().all(|c| c.trim().is_empty()) {
            let guesses = [
                (
                    "external_id",
                    named(&["external_id", "user_id", "customer_id"]),
                ),
                ("email", named(&["email", "email_address"])),
                ("phone", named(&["phone", "phone_number", "mobile"])),
            ];
            for (field, column) in guesses {
                if let Some(column) = column {
                    self.identities.insert(field.to_string(), column);
                }
            }
            if self.identities.values().all(|c| c.trim().is_empty()) {
                self.identities
                    .insert("external_id".into(), key.to_string());
            }
        }
        if self.properties.is_empty() {
            let taken: Vec<&String> = self.identities.values().collect();
            self.properties = columns
                .iter()
                .filter(|(c, _)| c != key && c != watermark && !taken.contains(&c))
                .map(|(column, arrow_type)| PropertyRow {
                    column: column.clone(),
                    name: column.clone(),
                    kind: property_type_of(arrow_type).to_string(),
                    ..Default::default()
                })
                .collect();
        }
    }

    /// The import the form declares; its first problem names the field as a spec file would.
    pub fn import(&self) -> Result<ImportDecl, Problem> {
        let mut spec = match self.base.trim() {
            "" => Map::new(),
            base => match serde_json::from_str::<Value>(base) {
                Ok(Value::Object(map)) => map,
                _ => return Err(problem("base", "the edited import's spec is not an object")),
            },
        };
        let old_event_time = spec.get("event_time").cloned();
        let old_notify = spec.get("notify").cloned();
        let mut set = |field: &str, value: Option<Value>| match value {
            Some(v) => {
                spec.insert(field.to_string(), v);
            }
            None => {
                spec.remove(field);
            }
        };
        let text = |v: &str| {
            let v = v.trim();
            (!v.is_empty()).then(|| Value::String(v.to_string()))
        };
        set("name", text(&self.name));
        set("connection", text(&self.connection));
        set("data_type", text(&self.data_type));
        let relation = self
            .relation()
            .ok_or_else(|| problem("source", "name a table or write a query"))?;
        let source = match relation {
            sluice_proto::SourceRelation::Table(t) => serde_json::json!({ "table": t }),
            sluice_proto::SourceRelation::Query(q) => serde_json::json!({ "query": q }),
        };
        set("source", Some(source));
        set("key", text(&self.key));
        set("watermark", text(&self.watermark));
        let identity: Map<String, Value> = self
            .identities
            .iter()
            .filter_map(|(field, column)| Some((field.clone(), text(column)?)))
            .collect();
        set("identity", Some(Value::Object(identity)));
        let precedence: Vec<Value> = self
            .precedence
            .split([',', ' ', '\n'])
            .filter_map(text)
            .collect();
        set(
            "identity_precedence",
            (!precedence.is_empty()).then_some(Value::Array(precedence)),
        );
        let mut properties = Map::new();
        for (i, row) in self.properties.iter().enumerate() {
            let name = row.name.trim();
            if name.is_empty() || row.column.trim().is_empty() {
                return Err(problem(
                    format!("properties[{i}]"),
                    "give the property both a column and a name (or clear both)",
                ));
            }
            let mut property = Map::new();
            property.insert("column".into(), Value::String(row.column.trim().into()));
            property.insert("type".into(), Value::String(row.kind.trim().into()));
            if let Some(format) = text(&row.format) {
                property.insert("format".into(), format);
            }
            if let Some(timezone) = text(&row.timezone) {
                property.insert("timezone".into(), timezone);
            }
            if properties
                .insert(name.to_string(), Value::Object(property))
                .is_some()
            {
                return Err(problem(
                    format!("properties.{name}"),
                    "two rows give this property; name each once",
                ));
            }
        }
        set("properties", Some(Value::Object(properties)));
        set("payload", text(&self.payload));
        set("timezone", text(&self.timezone));
        let constants = constants(&self.constants)?;
        set(
            "constants",
            (!constants.is_empty()).then_some(Value::Object(constants)),
        );
        let events = matches!(self.data_type.as_str(), "events" | "purchases");
        let event_name = match (text(&self.event_name_column), text(&self.event_name_value)) {
            (Some(column), _) => Some(serde_json::json!({ "column": column })),
            (None, Some(value)) => Some(serde_json::json!({ "value": value })),
            (None, None) => None,
        };
        set("event_name", event_name.filter(|_| events));
        let event_time = text(&self.event_time).map(|column| {
            let mut time = match &old_event_time {
                Some(Value::Object(old)) => old.clone(),
                _ => Map::new(),
            };
            time.insert("column".into(), column);
            match text(&self.event_time_format) {
                Some(format) => time.insert("format".into(), format),
                None => time.remove("format"),
            };
            Value::Object(time)
        });
        set("event_time", event_time.filter(|_| events));
        set("dedup_key", text(&self.dedup_key).filter(|_| events));
        let deletes = self.data_type == "user_deletes";
        set(
            "allow_deletes",
            (deletes && self.allow_deletes).then_some(Value::Bool(true)),
        );
        set(
            "delete_events",
            (deletes && self.delete_events).then_some(Value::Bool(true)),
        );
        set("schedule", self.schedule()?);
        let after: Vec<Value> = self.after.iter().filter_map(|a| text(a)).collect();
        set("after", (!after.is_empty()).then_some(Value::Array(after)));
        let notify = self.notify(old_notify.as_ref());
        set("notify", notify);
        let decl: ImportDecl = serde_path_to_error::deserialize(Value::Object(spec))
            .map_err(|e| problem(e.path().to_string(), e.into_inner().to_string()))?;
        Ok(decl)
    }

    /// The schedule the form declares, on its own; `None` for manual runs only.
    pub fn schedule_decl(&self) -> Result<Option<crate::spec::schedule::ScheduleDecl>, Problem> {
        self.schedule()?
            .map(|v| serde_json::from_value(v).map_err(|e| problem("schedule", e.to_string())))
            .transpose()
    }

    /// The schedule the form declares; `None` for manual runs only.
    fn schedule(&self) -> Result<Option<Value>, Problem> {
        let value = self.schedule.trim();
        let kind = match self.schedule_kind.as_str() {
            "" | "manual" => return Ok(None),
            kind @ ("every" | "cron" | "at") => kind,
            other => {
                return Err(problem(
                    "schedule",
                    format!("{other:?} is not a kind of schedule; manual, every, cron or at"),
                ))
            }
        };
        if value.is_empty() {
            return Err(problem(
                format!("schedule.{kind}"),
                "give the schedule's value",
            ));
        }
        let mut schedule = Map::new();
        schedule.insert(kind.into(), Value::String(value.into()));
        let timezone = self.schedule_timezone.trim();
        if !timezone.is_empty() {
            schedule.insert("timezone".into(), Value::String(timezone.into()));
        }
        Ok(Some(Value::Object(schedule)))
    }

    /// The notification targets the form declares (emails and webhooks), keeping what the
    /// edited import declares beyond them: each kept target's events and threshold, Slack
    /// channels and alert rules.
    fn notify(&self, old: Option<&Value>) -> Option<Value> {
        let mut notify = match old {
            Some(Value::Object(old)) => old.clone(),
            _ => Map::new(),
        };
        let kept = |list: &str, key: &str, value: &str| -> Option<Map<String, Value>> {
            notify.get(list)?.as_array()?.iter().find_map(|t| match t {
                Value::Object(o) if o.get(key).and_then(Value::as_str) == Some(value) => {
                    Some(o.clone())
                }
                _ => None,
            })
        };
        let emails: Vec<Value> = self
            .emails
            .split([',', '\n', ' '])
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| match kept("emails", "address", e) {
                Some(target) => Value::Object(target),
                None => Value::String(e.into()),
            })
            .collect();
        let secret = self.webhook_secret.trim();
        let webhooks: Vec<Value> = self
            .webhooks
            .lines()
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(|url| {
                let mut hook = kept("webhooks", "url", url).unwrap_or_default();
                hook.insert("url".into(), Value::String(url.into()));
                if !secret.is_empty() {
                    hook.insert("secret".into(), Value::String(secret.into()));
                }
                Value::Object(hook)
            })
            .collect();
        let slack = self.slack_url.trim();
        if !slack.is_empty() {
            let mut kept: Vec<Value> = notify
                .get("slack")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            match kept.first_mut() {
                Some(Value::Object(first)) => {
                    first.insert("url".into(), Value::String(slack.into()));
                }
                _ => kept = vec![serde_json::json!({ "url": slack })],
            }
            notify.insert("slack".into(), Value::Array(kept));
        }
        let rules: Map<String, Value> = self
            .alerts
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(rule, v)| (rule.clone(), Value::String(v.trim().into())))
            .collect();
        match rules.is_empty() {
            true => notify.remove("alerts"),
            false => notify.insert("alerts".into(), Value::Object(rules)),
        };
        for (list, targets) in [("emails", emails), ("webhooks", webhooks)] {
            match targets.is_empty() {
                true => notify.remove(list),
                false => notify.insert(list.into(), Value::Array(targets)),
            };
        }
        let targets = ["emails", "webhooks", "slack", "alerts"];
        targets
            .iter()
            .any(|t| notify.contains_key(*t))
            .then_some(Value::Object(notify))
    }
}

/// An import's alert rules as the form's fields show them (`24h`, `50%`).
fn alert_texts(alerts: &crate::spec::AlertsDecl) -> BTreeMap<String, String> {
    use crate::spec::duration::text;
    [
        ("no_rows_for", alerts.no_rows_for.map(text)),
        ("volume_drop", alerts.volume_drop.map(|s| s.to_string())),
        ("late_by", alerts.late_by.map(text)),
        ("rejected_rate", alerts.rejected_rate.map(|s| s.to_string())),
    ]
    .into_iter()
    .filter_map(|(rule, value)| Some((rule.to_string(), value?)))
    .collect()
}

/// `name = value` lines: a value that reads as JSON (a number, `true`, a quoted text) is
/// taken as such, any other as text.
fn constants(text: &str) -> Result<Map<String, Value>, Problem> {
    let mut constants = Map::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(problem(
                "constants",
                format!("line {}: write name = value", i + 1),
            ));
        };
        let value = value.trim();
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        constants.insert(name.trim().to_string(), value);
    }
    Ok(constants)
}

/// The property type a column's Arrow type suggests.
pub fn property_type_of(arrow_type: &str) -> &'static str {
    match arrow_type {
        "Int8" | "Int16" | "Int32" | "Int64" | "UInt8" | "UInt16" | "UInt32" | "UInt64" => {
            "integer"
        }
        "Float32" | "Float64" => "number",
        t if t.starts_with("Decimal") => "number",
        "Boolean" => "boolean",
        "Date32" | "Date64" => "date",
        t if t.starts_with("Timestamp") => "datetime",
        _ => "string",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn users() -> Vec<(String, String)> {
        pairs(&[
            ("name", "users"),
            ("connection", "wh"),
            ("data_type", "profiles"),
            ("source_kind", "table"),
            ("source", "public.users"),
            ("key", "id"),
            ("watermark", "updated_at"),
            ("id.external_id", "id"),
            ("id.email", ""),
            ("prop.0.column", "signup"),
            ("prop.0.name", "signup"),
            ("prop.0.type", "date"),
            ("prop.0.format", "dd/MM/yyyy"),
            ("prop.1.column", ""),
            ("prop.1.name", ""),
            ("prop.1.type", "string"),
            ("constants", "source = crm\ntier = 3"),
            ("schedule_kind", "every"),
            ("schedule", "1h"),
            ("after", "accounts"),
            ("emails", "ops@example.com"),
            ("alert.no_rows_for", "24h"),
            ("alert.volume_drop", "50%"),
            ("alert.late_by", ""),
        ])
    }

    #[test]
    fn a_posted_form_becomes_the_import_a_spec_declares() {
        let draft = Draft::from_pairs(users());
        assert_eq!(draft.properties.len(), 1, "blank rows are dropped");
        let import = draft.import().unwrap();
        assert_eq!(import.identity.external_id.as_deref(), Some("id"));
        assert_eq!(import.identity.email, None);
        assert_eq!(
            import.properties["signup"].format.as_deref(),
            Some("dd/MM/yyyy")
        );
        assert_eq!(import.constants["tier"], serde_json::json!(3));
        assert_eq!(import.constants["source"], serde_json::json!("crm"));
        assert_eq!(import.schedule.unwrap().every.as_deref(), Some("1h"));
        assert_eq!(import.after, vec!["accounts"]);
        let notify = import.notify.unwrap();
        assert_eq!(notify.emails.len(), 1);
        assert_eq!(notify.emails[0].address(), "ops@example.com");
        let alerts = notify.alerts.unwrap();
        assert_eq!(
            alerts.no_rows_for,
            Some(std::time::Duration::from_secs(86_400))
        );
        assert_eq!(alerts.volume_drop, Some(crate::spec::Share(0.5)));
        assert_eq!(alerts.late_by, None);
    }

    #[test]
    fn a_stored_import_reads_back_into_the_same_form_and_keeps_what_the_form_does_not_show() {
        let mut import = Draft::from_pairs(users()).import().unwrap();
        import.chunk_rows = 1234;
        import.retry_rejected = Some(false);
        let again = Draft::of(&import).import().unwrap();
        assert_eq!(again, import);
    }

    #[test]
    fn the_field_at_fault_is_named() {
        let mut fields = users();
        fields.push(("prop.2.column".into(), "tier".into()));
        let err = Draft::from_pairs(fields.clone()).import().unwrap_err();
        assert_eq!(err.field, "properties[1]");
        fields.push(("prop.2.name".into(), "tier".into()));
        fields.push(("prop.2.type".into(), "colour".into()));
        let err = Draft::from_pairs(fields).import().unwrap_err();
        assert_eq!(err.field, "properties.tier.type");
        let mut fields = users();
        fields.retain(|(k, _)| k != "source");
        let err = Draft::from_pairs(fields).import().unwrap_err();
        assert_eq!(err.field, "source");
    }

    #[test]
    fn a_previewed_source_suggests_identities_and_typed_properties() {
        let mut draft = Draft::default();
        let columns = |c: &[(&str, &str)]| {
            c.iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect::<Vec<_>>()
        };
        draft.suggest(
            "id",
            "updated_at",
            &columns(&[
                ("id", "Int64"),
                ("updated_at", "Timestamp(Microsecond, Some(\"UTC\"))"),
                ("Email", "Utf8"),
                ("score", "Float64"),
                ("signup", "Date32"),
            ]),
        );
        assert_eq!(draft.identities["email"], "Email");
        let rows: Vec<(&str, &str)> = draft
            .properties
            .iter()
            .map(|r| (r.name.as_str(), r.kind.as_str()))
            .collect();
        assert_eq!(rows, vec![("score", "number"), ("signup", "date")]);
    }
}
