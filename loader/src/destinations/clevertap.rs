//! CleverTap's upload API as CleverTap documents it: `POST /1/upload` with records of
//! `type: profile` (`profileData`) and `type: event` (`evtName`, `evtData`), each with its
//! user's `identity` and a `ts` in epoch seconds, at most 1,000 records per call
//! (<https://developer.clevertap.com/docs/upload-user-profiles>,
//! <https://developer.clevertap.com/docs/upload-events>); `POST /1/delete/profiles.json` for
//! deletes (<https://developer.clevertap.com/docs/delete-user-profiles>); the account id and
//! passcode as `X-CleverTap-Account-Id` and `X-CleverTap-Passcode`. An accepted call answers
//! `processed` and the `unprocessed` records, each with its `code` and `error`
//! (<https://developer.clevertap.com/docs/api-errors>). Purchases are CleverTap's `Charged`
//! event with their `Amount`.

use super::{batched, echoed, named, Api, RecordError, Request};
use crate::staging::StagedRow;
use serde_json::{json, Map, Value};
use sluice_proto::Records;

/// Records per `/1/upload` call.
pub const UPLOAD_BATCH: usize = 1_000;
/// Identities per delete call.
pub const DELETE_BATCH: usize = 100;

/// CleverTap's API with one account's id and passcode.
pub struct CleverTap {
    /// The account id.
    pub account_id: String,
    /// The account's API passcode.
    pub passcode: String,
}

/// The `identity` a row names: the platform's identity, else the customer's id, else the
/// email (CleverTap takes an email as an identity's value).
fn identity(row: &StagedRow) -> Option<&str> {
    row.identity
        .as_deref()
        .or(row.external_id.as_deref())
        .or(row.email.as_deref())
}

/// A row's properties as an object, with the email and phone as CleverTap's own fields.
fn profile_data(row: &StagedRow) -> Map<String, Value> {
    let mut data = match row.props.to_value() {
        Value::Object(props) => props,
        _ => Map::new(),
    };
    if let Some(email) = &row.email {
        data.entry("Email").or_insert_with(|| json!(email));
    }
    if let Some(phone) = &row.phone {
        data.entry("Phone").or_insert_with(|| json!(phone));
    }
    data
}

/// One record of an upload call.
fn record(row: &StagedRow, identity: &str, records: &Records) -> Value {
    match records {
        Records::Events(mapping) => {
            let mut data = match row.props.to_value() {
                Value::Object(props) => props,
                _ => Map::new(),
            };
            if let Some(key) = &row.dedup_key {
                data.insert("sluice_dedup_key".into(), json!(key));
            }
            let name = match mapping.purchase {
                Some(_) => {
                    if let Some(price) = row.price.as_ref().and_then(|p| p.parse::<f64>().ok()) {
                        data.insert("Amount".into(), json!(price));
                    }
                    "Charged".to_string()
                }
                None => row.event_name.clone().unwrap_or_default(),
            };
            json!({
                "identity": identity,
                "ts": row.event_time.unwrap_or(row.updated_at).timestamp(),
                "type": "event",
                "evtName": name,
                "evtData": data,
            })
        }
        _ => json!({
            "identity": identity,
            "ts": row.updated_at.timestamp(),
            "type": "profile",
            "profileData": profile_data(row),
        }),
    }
}

impl Api for CleverTap {
    fn kind(&self) -> &'static str {
        "clevertap"
    }

    fn requests(
        &self,
        records: &Records,
        rows: &[StagedRow],
        _update_only: bool,
    ) -> (Vec<Request>, Vec<RecordError>) {
        let (named, unnamed) = named(
            rows,
            identity,
            "names no user CleverTap can identify (identity, external_id or email)",
        );
        let requests = match records {
            Records::UserDeletes { .. } => batched(
                &named,
                DELETE_BATCH,
                "/1/delete/profiles.json",
                |batch| json!({ "identity": batch.iter().map(|(_, id)| *id).collect::<Vec<_>>() }),
            ),
            _ => batched(&named, UPLOAD_BATCH, "/1/upload", |batch| {
                json!({ "d": batch
                    .iter()
                    .map(|(i, id)| record(&rows[*i], id, records))
                    .collect::<Vec<_>>() })
            }),
        };
        (requests, unnamed)
    }

    fn credential_headers(&self) -> &'static [&'static str] {
        &["X-CleverTap-Account-Id", "X-CleverTap-Passcode"]
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
            .header("X-CleverTap-Account-Id", &self.account_id)
            .header("X-CleverTap-Passcode", &self.passcode)
    }

    /// Each unprocessed record is found by its echo among the call's records, in order, so
    /// two equal records are told apart by which was matched first.
    fn record_errors(&self, request: &Request, answer: &Value) -> Vec<RecordError> {
        let Some(unprocessed) = answer.get("unprocessed").and_then(Value::as_array) else {
            return Vec::new();
        };
        let sent = request
            .body
            .get("d")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut matched = vec![false; sent.len()];
        unprocessed
            .iter()
            .filter_map(|entry| {
                let echo = entry.get("record")?;
                let index = echoed(&sent, &mut matched, |record| record == echo)?;
                let message = match (
                    entry.get("code"),
                    entry.get("error").and_then(Value::as_str),
                ) {
                    (Some(code), Some(error)) => format!("{error} (code {code})"),
                    (_, Some(error)) => error.to_string(),
                    _ => "not processed by CleverTap".to_string(),
                };
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

    fn row(identity: Option<&str>, email: Option<&str>) -> StagedRow {
        StagedRow {
            phone: Some("+4915112345678".into()),
            ..crate::destinations::test_row(identity, email)
        }
    }

    #[test]
    fn profiles_go_1000_to_a_call_with_identity_ts_and_profile_data() {
        let mut rows: Vec<StagedRow> = (0..2_100).map(|_| row(Some("u1"), None)).collect();
        rows.push(row(None, Some("e@x.io")));
        rows.push(row(None, None));
        let clevertap = CleverTap {
            account_id: "A".into(),
            passcode: "P".into(),
        };
        let (requests, unnamed) = clevertap.requests(&Records::Profiles, &rows, false);
        assert_eq!(
            requests.iter().map(|r| r.rows.len()).collect::<Vec<_>>(),
            vec![1_000, 1_000, 101]
        );
        assert_eq!(unnamed.len(), 1);
        let first = &requests[0].body["d"][0];
        assert_eq!(first["identity"], "u1");
        assert_eq!(first["type"], "profile");
        assert_eq!(first["ts"], 1_700_000_000);
        assert_eq!(first["profileData"]["tier"], "gold");
        assert_eq!(first["profileData"]["Phone"], "+4915112345678");
        assert_eq!(requests[2].body["d"][100]["identity"], "e@x.io");
    }

    #[test]
    fn an_unprocessed_record_is_found_by_its_echo() {
        let clevertap = CleverTap {
            account_id: "A".into(),
            passcode: "P".into(),
        };
        let rows = vec![row(Some("a"), None), row(Some("b"), None)];
        let (requests, _) = clevertap.requests(&Records::Profiles, &rows, false);
        let echo = requests[0].body["d"][1].clone();
        let answer = json!({ "status": "success", "processed": 1, "unprocessed": [
            { "status": "fail", "code": 509, "error": "Invalid phone number", "record": echo }
        ]});
        let errors = clevertap.record_errors(&requests[0], &answer);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].row, 1);
        assert_eq!(errors[0].message, "Invalid phone number (code 509)");
    }
}
