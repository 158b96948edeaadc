//! The workspace's schema registry: the first import that writes a property fixes its type
//! (a profile property's for the workspace, an event property's per event name), and a later
//! value of another type is a row-level rejection naming the property and both types, never a
//! silent coercion.

use crate::props::Field;
use crate::staging::StagedRow;
use deadpool_postgres::Pool;
use serde_json::Value;
use sluice_proto::rejection::{self, RowRejection};
use sluice_proto::{Mapping, PropertyType, Reason, Records};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The registry could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("schema registry: {0}")]
pub struct RegistryError(pub String);

impl From<tokio_postgres::Error> for RegistryError {
    fn from(e: tokio_postgres::Error) -> Self {
        RegistryError(match e.as_db_error() {
            Some(db) => db.to_string(),
            None => e.to_string(),
        })
    }
}

/// Records first-seen types of profile properties; a name another import registered first
/// keeps its type.
const REGISTER: &str =
    "INSERT INTO profile_store.property_types (workspace_id, name, type, import_id)
SELECT $1, n, t, $4 FROM unnest($2::text[], $3::text[]) AS x(n, t)
ON CONFLICT (workspace_id, name) DO NOTHING";

/// The registered types of some profile properties: (event name, always NULL; name, type).
const LOOKUP: &str = "SELECT NULL::text, name, type FROM profile_store.property_types
 WHERE workspace_id = $1 AND name = ANY($2)";

/// Records first-seen types of event properties, per event name.
const REGISTER_EVENT: &str = "INSERT INTO profile_store.event_property_types
       (workspace_id, event_name, name, type, import_id)
SELECT $1, e, n, t, $5 FROM unnest($2::text[], $3::text[], $4::text[]) AS x(e, n, t)
ON CONFLICT (workspace_id, event_name, name) DO NOTHING";

/// The registered types of some event properties: (event name, name, type).
const LOOKUP_EVENT: &str = "SELECT t.event_name, t.name, t.type
  FROM unnest($2::text[], $3::text[]) AS x(e, n)
  JOIN profile_store.event_property_types t
    ON t.workspace_id = $1 AND t.event_name = x.e AND t.name = x.n";

/// A property as the registry types it: its event name (none for a profile property) and
/// its name.
type Slot = (Option<String>, String);

/// The registry as far as one chunk needs it: types by scope (an event name, or `""` for
/// profile properties; an event always has a name) and property name, so a row's values are
/// looked up without building a key.
#[derive(Debug, Default)]
pub struct Registry {
    known: HashMap<String, HashMap<String, PropertyType>>,
}

/// Answers about fields remembered over one pass through a batch's rows, for the names its
/// rows share: a mapped property's or constant's name is one `Arc` held by every row, so it
/// is recognized by its address (every row, and so every address, lives through the pass)
/// instead of being hashed again per row. Payload keys, each row's own, and event properties,
/// whose registry scope is the row's event, are answered afresh each time.
#[derive(Default)]
struct Seen {
    answers: Vec<(usize, Option<PropertyType>, bool)>,
}

impl Seen {
    /// The answer for `field`, from `ask` the first time its shared name and type are met.
    fn check(&mut self, scope: Option<&str>, field: &Field, ask: impl FnOnce() -> bool) -> bool {
        if scope.is_some() || Arc::strong_count(&field.name) < 2 {
            return ask();
        }
        let at = Arc::as_ptr(&field.name) as *const u8 as usize;
        if let Some((_, _, answer)) = self
            .answers
            .iter()
            .find(|(p, kind, _)| *p == at && *kind == field.kind)
        {
            return *answer;
        }
        let answer = ask();
        self.answers.push((at, field.kind, answer));
        answer
    }
}

/// The type a staged value is checked as: the declared one for mapped properties, the JSON
/// value's own for payload keys and constants.
pub fn value_type(mapping: &Mapping, name: &str, value: &Value) -> Option<PropertyType> {
    match mapping.properties.get(name) {
        Some(p) => Some(p.kind),
        None => PropertyType::of_json(value),
    }
}

/// The registry scope of a row: its event name for events.
fn scope<'a>(mapping: &Mapping, row: &'a StagedRow) -> Option<&'a str> {
    match mapping.records {
        Records::Events(_) => row.event_name.as_deref(),
        _ => None,
    }
}

impl Registry {
    fn get(&self, scope: Option<&str>, name: &str) -> Option<&PropertyType> {
        self.known.get(scope.unwrap_or_default())?.get(name)
    }

    fn insert(&mut self, (scope, name): Slot, kind: PropertyType) -> &mut PropertyType {
        self.known
            .entry(scope.unwrap_or_default())
            .or_default()
            .entry(name)
            .or_insert(kind)
    }

    /// Makes sure every property of `rows` has a known type: reads the registered ones and,
    /// unless `dry_run`, registers the rest with the first type this chunk gives them (a dry
    /// run only assumes them). It uses a pooled connection of its own, outside the load's
    /// transaction, so a first registration does not hold other loaders up until a load
    /// commits; only chunks that bring names not yet known here take one.
    pub async fn learn(
        &mut self,
        pool: &Pool,
        workspace: i64,
        import: i64,
        mapping: &Mapping,
        rows: &[StagedRow],
        dry_run: bool,
    ) -> Result<(), RegistryError> {
        let mut new: BTreeMap<Slot, PropertyType> = BTreeMap::new();
        let mut seen = Seen::default();
        for row in rows {
            let scope = scope(mapping, row);
            for field in row.props.fields() {
                let Some(kind) = field.kind else { continue };
                // Answered once per shared name: known, or taken into `new` the first time.
                seen.check(scope, field, || {
                    if self.get(scope, &field.name).is_none() {
                        let slot = (scope.map(str::to_string), field.name.to_string());
                        new.entry(slot).or_insert(kind);
                    }
                    true
                });
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        let client = pool.get().await.map_err(|e| RegistryError(e.to_string()))?;
        let names: Vec<&str> = new.keys().map(|(_, n)| n.as_str()).collect();
        let types: Vec<&str> = new.values().map(|t| t.as_str()).collect();
        let found = match mapping.records {
            Records::Events(_) => {
                let events: Vec<&str> = new
                    .keys()
                    .map(|(e, _)| e.as_deref().unwrap_or_default())
                    .collect();
                if !dry_run {
                    client
                        .execute(
                            REGISTER_EVENT,
                            &[&workspace, &events, &names, &types, &import],
                        )
                        .await?;
                }
                client
                    .query(LOOKUP_EVENT, &[&workspace, &events, &names])
                    .await?
            }
            _ => {
                if !dry_run {
                    client
                        .execute(REGISTER, &[&workspace, &names, &types, &import])
                        .await?;
                }
                client.query(LOOKUP, &[&workspace, &names]).await?
            }
        };
        for row in found {
            let slot = (row.get::<_, Option<String>>(0), row.get::<_, String>(1));
            if let Some(kind) = PropertyType::parse(&row.get::<_, String>(2)) {
                *self.insert(slot, kind) = kind;
            }
        }
        for (slot, kind) in new {
            self.insert(slot, kind);
        }
        Ok(())
    }

    /// Splits rows into those whose values fit the registry and rejections for the rest.
    pub fn check(
        &self,
        mapping: &Mapping,
        rows: Vec<StagedRow>,
    ) -> (Vec<StagedRow>, Vec<RowRejection>) {
        let mut fit = Vec::with_capacity(rows.len());
        let mut rejected = Vec::new();
        let mut fits = Seen::default();
        for row in rows {
            match self.conflict(mapping, &row, &mut fits) {
                None => fit.push(row),
                Some(rejection) => rejected.push(rejection),
            }
        }
        (fit, rejected)
    }

    /// Whether a field's value fits the type its name is registered with (or has none).
    fn fits(&self, scope: Option<&str>, field: &Field) -> bool {
        match (field.kind, self.get(scope, &field.name)) {
            (Some(actual), Some(registered)) => registered.accepts(actual),
            _ => true,
        }
    }

    /// The first property of `row` whose value does not fit its registered type; `fits`
    /// remembers the answers for names shared by the chunk's rows.
    fn conflict(
        &self,
        mapping: &Mapping,
        row: &StagedRow,
        fits: &mut Seen,
    ) -> Option<RowRejection> {
        let scope = scope(mapping, row);
        for field in row.props.fields() {
            if fits.check(scope, field, || self.fits(scope, field)) {
                continue;
            }
            let (Some(actual), Some(registered)) = (field.kind, self.get(scope, &field.name))
            else {
                continue;
            };
            let text = |v: Value| match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            let name = &field.name;
            let whose = match scope {
                Some(event) => format!("property {name} of event {event}"),
                None => format!("property {name}"),
            };
            return Some(RowRejection {
                row_key: row.key.clone(),
                column: name.to_string(),
                value: Some(rejection::truncate(&text(row.props.value(field)))),
                reason: Reason::TypeConflict,
                message: format!(
                    "{whose} is {} in the workspace's schema registry; this row's value is {}",
                    registered.as_str(),
                    actual.as_str()
                ),
                row: row
                    .props
                    .fields()
                    .iter()
                    .map(|f| {
                        let value = text(row.props.value(f));
                        (f.name.to_string(), Some(rejection::truncate(&value)))
                    })
                    .collect(),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::props::Props;

    /// A staged row with these properties, typed as staging types them for `mapping`.
    fn row(mapping: &Mapping, props: Value) -> StagedRow {
        let mut typed = Props::default();
        for (name, value) in props.as_object().unwrap() {
            let kind = value_type(mapping, name, value);
            typed.push(name.as_str().into(), kind, value);
        }
        StagedRow {
            key: "1".into(),
            updated_at: chrono::Utc::now(),
            identity: None,
            external_id: Some("u1".into()),
            alias_kind: None,
            alias_name: None,
            email: None,
            phone: None,
            profile_ref: None,
            create_kind: None,
            create_value: None,
            props: typed,
            unset: Vec::new(),
            event_name: None,
            event_time: None,
            dedup_key: None,
            price: None,
            subs: None,
            consented_at: None,
            addressless: false,
        }
    }

    #[test]
    fn a_value_of_another_type_is_rejected_naming_both_types() {
        let mapping: Mapping = serde_json::from_value(serde_json::json!({
            "identity": {"external_id": "ext"},
            "properties": {"born": {"column": "b", "type": "date"}}
        }))
        .unwrap();
        let registry = Registry {
            known: HashMap::from([(
                String::new(),
                HashMap::from([
                    ("age".to_string(), PropertyType::Integer),
                    ("score".to_string(), PropertyType::Number),
                    ("born".to_string(), PropertyType::Datetime),
                ]),
            )]),
        };
        let (fit, rejected) = registry.check(
            &mapping,
            vec![
                row(&mapping, serde_json::json!({"age": 3, "score": 4})),
                row(&mapping, serde_json::json!({"age": "three"})),
                row(&mapping, serde_json::json!({"born": "2000-01-01"})),
            ],
        );
        assert_eq!(fit.len(), 1, "an integer fits a number");
        assert_eq!(rejected[0].column, "age");
        assert_eq!(
            rejected[0].message,
            "property age is integer in the workspace's schema registry; this row's value is string"
        );
        assert_eq!(rejected[1].column, "born");
        assert!(
            rejected[1].message.ends_with(
                "is datetime in the workspace's schema registry; this row's value is date"
            ),
            "{}",
            rejected[1].message
        );
    }
}
