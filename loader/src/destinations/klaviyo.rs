//! Klaviyo's REST API (JSON:API, `revision` 2025-01-15) as Klaviyo documents it: profiles
//! through bulk profile import jobs (`POST /api/profile-bulk-import-jobs`, at most 10,000
//! profiles a job; the job is polled until it ends and its `import-errors` name the profiles
//! refused, <https://developers.klaviyo.com/en/reference/bulk_import_profiles>), events
//! through bulk event create jobs (`POST /api/event-bulk-create-jobs`, at most 1,000 events a
//! job, each with its metric name, time and `unique_id`, which Klaviyo keeps only once per
//! profile and metric, <https://developers.klaviyo.com/en/reference/bulk_create_events>),
//! deletes through `POST /api/data-privacy-deletion-jobs`, one profile each; a private API key
//! as `Authorization: Klaviyo-API-Key`. A profile is named by `external_id`, `email` or
//! `phone_number`.

use super::{batched, echoed, named, Api, JobState, RecordError, Request};
use crate::staging::StagedRow;
use serde_json::{json, Map, Value};
use sluice_proto::Records;

/// Profiles per bulk import job.
pub const PROFILE_BATCH: usize = 10_000;
/// Events per bulk create job.
pub const EVENT_BATCH: usize = 1_000;
/// The API revision requests are written for.
pub const REVISION: &str = "2025-01-15";

/// Klaviyo's API with one account's private key.
pub struct Klaviyo {
    /// The private API key.
    pub api_key: String,
}

/// A row's profile identifiers, or `None` when it has none Klaviyo takes.
fn identifiers(row: &StagedRow) -> Option<Map<String, Value>> {
    let mut ids = Map::new();
    if let Some(id) = &row.external_id {
        ids.insert("external_id".into(), json!(id));
    }
    if let Some(email) = &row.email {
        ids.insert("email".into(), json!(email));
    }
    if let Some(phone) = &row.phone {
        ids.insert("phone_number".into(), json!(phone));
    }
    (!ids.is_empty()).then_some(ids)
}

/// A row's properties as an object.
fn properties(row: &StagedRow) -> Map<String, Value> {
    match row.props.to_value() {
        Value::Object(props) => props,
        _ => Map::new(),
    }
}

/// A profile resource.
fn profile(row: &StagedRow, mut attributes: Map<String, Value>) -> Value {
    let mut props = properties(row);
    for name in &row.unset {
        props.insert(name.to_string(), Value::Null);
    }
    attributes.insert("properties".into(), Value::Object(props));
    json!({ "type": "profile", "attributes": attributes })
}

/// An event of a bulk create job: the profile it belongs to and the one event.
fn event(row: &StagedRow, ids: Map<String, Value>, purchase: bool) -> Value {
    let name = match purchase {
        true => "Placed Order".to_string(),
        false => row.event_name.clone().unwrap_or_default(),
    };
    let mut attributes = Map::new();
    attributes.insert("properties".into(), Value::Object(properties(row)));
    if let Some(time) = row.event_time {
        attributes.insert(
            "time".into(),
            json!(time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
    }
    if let Some(key) = &row.dedup_key {
        attributes.insert("unique_id".into(), json!(key));
    }
    if let Some(price) = row.price.as_ref().and_then(|p| p.parse::<f64>().ok()) {
        attributes.insert("value".into(), json!(price));
    }
    attributes.insert(
        "metric".into(),
        json!({ "data": { "type": "metric", "attributes": { "name": name } } }),
    );
    json!({
        "type": "event-bulk-create",
        "attributes": {
            "profile": { "data": { "type": "profile", "attributes": ids } },
            "events": { "data": [ { "type": "event", "attributes": attributes } ] }
        }
    })
}

impl Api for Klaviyo {
    fn kind(&self) -> &'static str {
        "klaviyo"
    }

    fn requests(
        &self,
        records: &Records,
        rows: &[StagedRow],
        _update_only: bool,
    ) -> (Vec<Request>, Vec<RecordError>) {
        let (named, unnamed) = named(
            rows,
            identifiers,
            "names no profile Klaviyo can identify (external_id, email or phone)",
        );
        let requests = match records {
            Records::UserDeletes { .. } => named
                .into_iter()
                .map(|(i, ids)| Request {
                    path: "/api/data-privacy-deletion-jobs",
                    body: json!({ "data": { "type": "data-privacy-deletion-job", "attributes": {
                        "profile": { "data": { "type": "profile", "attributes": ids } }
                    } } }),
                    rows: vec![i],
                })
                .collect(),
            Records::Profiles => batched(
                &named,
                PROFILE_BATCH,
                "/api/profile-bulk-import-jobs",
                |batch| {
                    json!({ "data": { "type": "profile-bulk-import-job", "attributes": {
                        "profiles": { "data": batch
                            .iter()
                            .map(|(i, ids)| profile(&rows[*i], ids.clone()))
                            .collect::<Vec<_>>() }
                    } } })
                },
            ),
            Records::Events(mapping) => {
                let purchase = mapping.purchase.is_some();
                batched(
                    &named,
                    EVENT_BATCH,
                    "/api/event-bulk-create-jobs",
                    |batch| {
                        json!({ "data": { "type": "event-bulk-create-job", "attributes": {
                        "events-bulk-create": { "data": batch
                            .iter()
                            .map(|(i, ids)| event(&rows[*i], ids.clone(), purchase))
                            .collect::<Vec<_>>() }
                    } } })
                    },
                )
            }
        };
        (requests, unnamed)
    }

    fn credential_headers(&self) -> &'static [&'static str] {
        &["Authorization"]
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
            .header("Authorization", format!("Klaviyo-API-Key {}", self.api_key))
            .header("revision", REVISION)
            .header("Accept", "application/vnd.api+json")
    }

    fn content_type(&self) -> &'static str {
        "application/vnd.api+json"
    }

    fn error_message(&self, answer: &Value) -> Option<String> {
        let first = answer.get("errors")?.as_array()?.first()?;
        first
            .get("detail")
            .or_else(|| first.get("title"))
            .and_then(Value::as_str)
            .map(String::from)
    }

    /// A profile import job is followed (its errors name profiles); an event job's
    /// duplicates are Klaviyo's to drop by `unique_id`, and its answer is final.
    fn job(&self, answer: &Value) -> Option<String> {
        let data = answer.get("data")?;
        if data.get("type")?.as_str()? != "profile-bulk-import-job" {
            return None;
        }
        let id = data.get("id")?.as_str()?;
        Some(format!("/api/profile-bulk-import-jobs/{id}"))
    }

    fn job_state(&self, job: &Value) -> JobState {
        let data = &job["data"];
        let attributes = &data["attributes"];
        match attributes["status"].as_str().unwrap_or_default() {
            "complete" => JobState::Done {
                errors: (attributes["failed_count"].as_u64().unwrap_or(0) > 0).then(|| {
                    format!(
                        "/api/profile-bulk-import-jobs/{}/import-errors",
                        data["id"].as_str().unwrap_or_default()
                    )
                }),
            },
            "cancelled" | "failed" => JobState::Failed(format!(
                "status {}",
                attributes["status"].as_str().unwrap_or_default()
            )),
            _ => JobState::Running,
        }
    }

    fn next_page(&self, listed: &Value) -> Option<String> {
        listed["links"]["next"].as_str().map(String::from)
    }

    /// An import error carries the profile as it was sent: it is found among the job's
    /// profiles by that echo.
    fn record_errors(&self, request: &Request, answer: &Value) -> Vec<RecordError> {
        let Some(errors) = answer.get("data").and_then(Value::as_array) else {
            return Vec::new();
        };
        let sent = request.body["data"]["attributes"]["profiles"]["data"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut matched = vec![false; sent.len()];
        errors
            .iter()
            .filter(|e| e["type"] == "import-error")
            .filter_map(|e| {
                let attributes = &e["attributes"];
                let echo = &attributes["original_payload"];
                let index = echoed(&sent, &mut matched, |profile| {
                    profile == echo || profile["attributes"] == *echo
                })?;
                let message = attributes["detail"]
                    .as_str()
                    .or(attributes["title"].as_str())
                    .unwrap_or("refused by Klaviyo")
                    .to_string();
                Some(RecordError {
                    row: *request.rows.get(index)?,
                    message,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(external_id: Option<&str>) -> StagedRow {
        crate::destinations::test_row(external_id, Some("a@x.io"))
    }

    #[test]
    fn a_profile_job_holds_10000_profiles_and_its_import_errors_name_them() {
        let rows: Vec<StagedRow> = (0..10_001).map(|_| row(Some("u"))).collect();
        let klaviyo = Klaviyo {
            api_key: "pk".into(),
        };
        let (requests, _) = klaviyo.requests(&Records::Profiles, &rows, false);
        assert_eq!(
            requests.iter().map(|r| r.rows.len()).collect::<Vec<_>>(),
            vec![10_000, 1]
        );
        let sent = &requests[0].body["data"]["attributes"]["profiles"]["data"][3];
        assert_eq!(sent["attributes"]["external_id"], "u");
        assert_eq!(sent["attributes"]["properties"]["tier"], "gold");
        let job = json!({ "data": { "type": "profile-bulk-import-job", "id": "J1",
            "attributes": { "status": "complete", "failed_count": 1 } } });
        assert_eq!(
            klaviyo.job(&job).as_deref(),
            Some("/api/profile-bulk-import-jobs/J1")
        );
        assert_eq!(
            klaviyo.job_state(&job),
            JobState::Done {
                errors: Some("/api/profile-bulk-import-jobs/J1/import-errors".into())
            }
        );
        let listed = json!({ "data": [ { "type": "import-error", "id": "e1", "attributes": {
            "code": "invalid", "title": "Invalid input.", "detail": "Invalid email address",
            "original_payload": sent["attributes"].clone() } } ] });
        let errors = klaviyo.record_errors(&requests[0], &listed);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            (errors[0].row, errors[0].message.as_str()),
            (0, "Invalid email address")
        );
    }
}
