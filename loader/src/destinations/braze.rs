//! Braze's REST API: `POST /users/track` for attributes, events and purchases, and
//! `POST /users/delete` for deletes, as Braze documents them
//! (<https://www.braze.com/docs/api/endpoints/user_data/post_user_track>,
//! <https://www.braze.com/docs/api/endpoints/user_data/post_user_delete>,
//! <https://www.braze.com/docs/api/errors>). A user is named by `external_id`, a `user_alias`,
//! `email` or `phone`, first in that order; a track request carries at most 75 objects in all
//! (the limit since October 2024), a delete request at most 50 users; minor errors name the
//! object by array and index.

use super::{batched, named, Api, RecordError, Request};
use crate::staging::StagedRow;
use serde_json::{json, Map, Value};
use sluice_proto::Records;

/// Objects per `/users/track` request, attributes, events and purchases together.
pub const TRACK_BATCH: usize = 75;
/// Users per `/users/delete` request.
pub const DELETE_BATCH: usize = 50;

/// Braze's REST API with one workspace's REST API key.
pub struct Braze {
    /// The REST API key, sent as a bearer token.
    pub api_key: String,
}

/// The identifier fields of the user a row names, first in Braze's order.
fn user(row: &StagedRow) -> Option<Map<String, Value>> {
    let mut user = Map::new();
    if let Some(id) = &row.external_id {
        user.insert("external_id".into(), json!(id));
    } else if let (Some(kind), Some(name)) = (&row.alias_kind, &row.alias_name) {
        let label = kind.strip_prefix("alias:").unwrap_or(kind);
        user.insert(
            "user_alias".into(),
            json!({ "alias_name": name, "alias_label": label }),
        );
    } else if let Some(id) = &row.identity {
        user.insert("braze_id".into(), json!(id));
    } else if let Some(email) = &row.email {
        user.insert("email".into(), json!(email));
    } else if let Some(phone) = &row.phone {
        user.insert("phone".into(), json!(phone));
    } else {
        return None;
    }
    Some(user)
}

/// A row's attributes object: the user, the properties set, those unset as `null`, and the
/// email and phone as Braze's own attributes.
fn attributes(row: &StagedRow, mut object: Map<String, Value>, update_only: bool) -> Value {
    if let Value::Object(props) = row.props.to_value() {
        object.extend(props);
    }
    for name in &row.unset {
        object.insert(name.to_string(), Value::Null);
    }
    if let Some(email) = &row.email {
        object.entry("email").or_insert_with(|| json!(email));
    }
    if let Some(phone) = &row.phone {
        object.entry("phone").or_insert_with(|| json!(phone));
    }
    if update_only {
        object.insert("_update_existing_only".into(), json!(true));
    }
    Value::Object(object)
}

/// A row's event or purchase object; the row's dedup key travels as the `sluice_dedup_key`
/// property, so it can be told apart in Braze's exports.
fn event(row: &StagedRow, mut object: Map<String, Value>, purchase: bool) -> Value {
    let mut props = match row.props.to_value() {
        Value::Object(props) => props,
        _ => Map::new(),
    };
    if let Some(key) = &row.dedup_key {
        props.insert("sluice_dedup_key".into(), json!(key));
    }
    if let Some(time) = row.event_time {
        object.insert(
            "time".into(),
            json!(time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
    }
    if purchase {
        for field in ["product_id", "currency"] {
            if let Some(value) = props.remove(field) {
                object.insert(field.into(), value);
            }
        }
        if let Some(price) = row.price.as_ref().and_then(|p| p.parse::<f64>().ok()) {
            object.insert("price".into(), json!(price));
        }
    } else if let Some(name) = &row.event_name {
        object.insert("name".into(), json!(name));
    }
    object.insert("properties".into(), Value::Object(props));
    Value::Object(object)
}

impl Api for Braze {
    fn kind(&self) -> &'static str {
        "braze"
    }

    fn requests(
        &self,
        records: &Records,
        rows: &[StagedRow],
        update_only: bool,
    ) -> (Vec<Request>, Vec<RecordError>) {
        let (named, unnamed) = named(
            rows,
            user,
            "names no user Braze can identify (external_id, a user alias, braze_id, email or phone)",
        );
        let requests = match records {
            Records::UserDeletes { .. } => {
                batched(&named, DELETE_BATCH, "/users/delete", |batch| {
                    let mut lists: [(&str, &str, Vec<Value>); 5] = [
                        ("external_id", "external_ids", Vec::new()),
                        ("braze_id", "braze_ids", Vec::new()),
                        ("user_alias", "user_aliases", Vec::new()),
                        ("email", "email_addresses", Vec::new()),
                        ("phone", "phone_numbers", Vec::new()),
                    ];
                    for (_, user) in batch {
                        if let Some((field, value)) = user.iter().next() {
                            if let Some(list) = lists.iter_mut().find(|l| l.0 == field) {
                                list.2.push(value.clone());
                            }
                        }
                    }
                    Value::Object(
                        lists
                            .into_iter()
                            .filter(|l| !l.2.is_empty())
                            .map(|(_, field, values)| (field.to_string(), Value::Array(values)))
                            .collect(),
                    )
                })
            }
            Records::Profiles => batched(&named, TRACK_BATCH, "/users/track", |batch| {
                json!({ "attributes": batch
                    .iter()
                    .map(|(i, user)| attributes(&rows[*i], user.clone(), update_only))
                    .collect::<Vec<_>>() })
            }),
            Records::Events(mapping) => {
                let (array, purchase) = match mapping.purchase {
                    Some(_) => ("purchases", true),
                    None => ("events", false),
                };
                batched(&named, TRACK_BATCH, "/users/track", |batch| {
                    json!({ array: batch
                        .iter()
                        .map(|(i, user)| event(&rows[*i], user.clone(), purchase))
                        .collect::<Vec<_>>() })
                })
            }
        };
        (requests, unnamed)
    }

    fn credential_headers(&self) -> &'static [&'static str] {
        &["Authorization"]
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.bearer_auth(&self.api_key)
    }

    fn record_errors(&self, request: &Request, answer: &Value) -> Vec<RecordError> {
        let Some(errors) = answer.get("errors").and_then(Value::as_array) else {
            return Vec::new();
        };
        errors
            .iter()
            .filter_map(|e| {
                let index = e.get("index").and_then(Value::as_u64)? as usize;
                let row = *request.rows.get(index)?;
                let message = e
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("rejected by Braze")
                    .to_string();
                Some(RecordError { row, message })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(external_id: Option<&str>, email: Option<&str>) -> StagedRow {
        StagedRow {
            unset: vec!["old".into()],
            event_name: Some("Signed Up".into()),
            ..crate::destinations::test_row(external_id, email)
        }
    }

    #[test]
    fn attributes_go_75_to_a_request_named_by_the_first_identifier_braze_takes() {
        let mut rows: Vec<StagedRow> = (0..160).map(|_| row(Some("u"), Some("a@x.io"))).collect();
        rows.push(row(None, Some("only@x.io")));
        rows.push(row(None, None));
        let braze = Braze {
            api_key: "k".into(),
        };
        let (requests, unnamed) = braze.requests(&Records::Profiles, &rows, true);
        assert_eq!(
            requests.iter().map(|r| r.rows.len()).collect::<Vec<_>>(),
            vec![75, 75, 11]
        );
        assert_eq!(unnamed.len(), 1);
        assert_eq!(unnamed[0].row, 161);
        let first = &requests[0].body["attributes"][0];
        assert_eq!(first["external_id"], "u");
        assert_eq!(first["tier"], "gold");
        assert_eq!(first["old"], Value::Null);
        assert_eq!(first["email"], "a@x.io");
        assert_eq!(first["_update_existing_only"], true);
        let last = &requests[2].body["attributes"][10];
        assert_eq!(last["email"], "only@x.io");
        assert!(last.get("external_id").is_none());
    }

    #[test]
    fn minor_errors_name_the_row_of_their_object() {
        let braze = Braze {
            api_key: "k".into(),
        };
        let request = Request {
            path: "/users/track",
            body: json!({}),
            rows: vec![7, 9, 11],
        };
        let answer = json!({ "message": "success", "errors": [
            { "type": "Invalid email address", "input_array": "attributes", "index": 1 }
        ]});
        let errors = braze.record_errors(&request, &answer);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            (errors[0].row, errors[0].message.as_str()),
            (9, "Invalid email address")
        );
    }
}
