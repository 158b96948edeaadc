//! Snowflake's connector protocol over HTTPS: the login request (password or key-pair JWT),
//! query requests answered with Arrow result sets, the result chunks a large answer is split
//! into, and polling for queries that outlive the request.

use super::decode::{decode_batch, plain_schema, RowType};
use super::keypair;
use super::settings::{Credentials, Settings};
use crate::error::SourceError;
use crate::http::{self, read_ipc};
use crate::warehouse::SqlWarehouse;
use arrow::record_batch::RecordBatch;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use std::future::Future;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::RwLock;

/// Snowflake's codes for "still running, ask again".
const IN_PROGRESS: [&str; 2] = ["333333", "333334"];

/// Codes meaning the session token expired.
const SESSION_EXPIRED: [&str; 3] = ["390112", "390104", "390114"];

/// A logged-in Snowflake session.
pub struct Client {
    http: reqwest::Client,
    settings: Settings,
    token: RwLock<String>,
    sequence: AtomicU64,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Value,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    success: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Chunk {
    url: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryData {
    #[serde(default)]
    rowtype: Vec<RowType>,
    #[serde(default)]
    rowset_base64: Option<String>,
    #[serde(default)]
    chunks: Vec<Chunk>,
    #[serde(default)]
    chunk_headers: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    qrmk: Option<String>,
}

fn unreachable(e: reqwest::Error) -> SourceError {
    http::transport("snowflake", e)
}

/// A failed response, classified by Snowflake's error code.
fn classify(code: &str, message: &str) -> SourceError {
    let text = format!("{message} (Snowflake error {code})");
    match code {
        "390100" | "390101" | "390102" | "390144" | "390318" | "394304" => {
            SourceError::Authentication(text)
        }
        "002003" | "390201" | "390189" | "002043" | "000904" => SourceError::MissingObject(text),
        "003001" | "002037" | "003011" => SourceError::PermissionDenied(text),
        "000604" | "000630" => SourceError::Timeout(text),
        _ => SourceError::Query(text),
    }
}

impl Client {
    /// Logs in with the settings' credentials.
    pub async fn login(settings: Settings) -> Result<Client, SourceError> {
        let http = http::client("snowflake")?;
        let client = Client {
            http,
            settings,
            token: RwLock::new(String::new()),
            sequence: AtomicU64::new(0),
        };
        let token = client.new_session(&client.settings.credentials).await?;
        *client.token.write().await = token;
        Ok(client)
    }

    /// The settings the session was opened with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Opens a session with `credentials` and returns its token.
    pub async fn new_session(&self, credentials: &Credentials) -> Result<String, SourceError> {
        let s = &self.settings;
        let mut data = json!({
            "CLIENT_APP_ID": "sluice",
            "CLIENT_APP_VERSION": env!("CARGO_PKG_VERSION"),
            "ACCOUNT_NAME": s.account_locator(),
            "LOGIN_NAME": s.user,
            "SESSION_PARAMETERS": {
                "TIMEZONE": "UTC",
                "TIMESTAMP_TYPE_MAPPING": "TIMESTAMP_NTZ",
                "STATEMENT_TIMEOUT_IN_SECONDS": http::STATEMENT_TIMEOUT.as_secs(),
                "QUERY_TAG": "sluice",
                "AUTOCOMMIT": true,
            },
        });
        match credentials {
            Credentials::Password(password) => data["PASSWORD"] = json!(password),
            Credentials::KeyPair(key) => {
                data["AUTHENTICATOR"] = json!("SNOWFLAKE_JWT");
                data["TOKEN"] = json!(keypair::jwt(key, &s.account_locator(), &s.user)?);
            }
        }
        let mut query: Vec<(&str, String)> = vec![("requestId", uuid::Uuid::new_v4().to_string())];
        for (name, value) in [
            ("databaseName", &s.database),
            ("schemaName", &s.schema),
            ("warehouse", &s.warehouse),
            ("roleName", &s.role),
        ] {
            if let Some(v) = value {
                query.push((name, v.clone()));
            }
        }
        let envelope: Envelope = self
            .http
            .post(format!("{}/session/v1/login-request", s.base_url))
            .query(&query)
            .header("Accept", "application/json")
            .json(&json!({ "data": data }))
            .send()
            .await
            .map_err(unreachable)?
            .json()
            .await
            .map_err(unreachable)?;
        if !envelope.success {
            return Err(classify(
                envelope.code.as_deref().unwrap_or(""),
                envelope.message.as_deref().unwrap_or("login refused"),
            ));
        }
        envelope
            .data
            .get("token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| SourceError::Query("the login answer had no session token".into()))
    }

    async fn post_query(&self, sql: &str) -> Result<Envelope, SourceError> {
        let token = self.token.read().await.clone();
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        self.http
            .post(format!(
                "{}/queries/v1/query-request",
                self.settings.base_url
            ))
            .query(&[("requestId", uuid::Uuid::new_v4().to_string())])
            .header("Authorization", format!("Snowflake Token=\"{token}\""))
            .header("Accept", "application/snowflake")
            .json(&json!({
                "sqlText": sql,
                "asyncExec": false,
                "sequenceId": sequence,
                "querySubmissionTime": chrono::Utc::now().timestamp_millis(),
            }))
            .send()
            .await
            .map_err(unreachable)?
            .json()
            .await
            .map_err(unreachable)
    }

    async fn get_result(&self, path: &str) -> Result<Envelope, SourceError> {
        let token = self.token.read().await.clone();
        self.http
            .get(format!("{}{path}", self.settings.base_url))
            .header("Authorization", format!("Snowflake Token=\"{token}\""))
            .header("Accept", "application/snowflake")
            .send()
            .await
            .map_err(unreachable)?
            .json()
            .await
            .map_err(unreachable)
    }

    /// Runs a statement until it finishes, logging in again once if the session expired.
    async fn run(&self, sql: &str) -> Result<QueryData, SourceError> {
        let mut envelope = self.post_query(sql).await?;
        if envelope
            .code
            .as_deref()
            .is_some_and(|c| SESSION_EXPIRED.contains(&c))
        {
            let token = self.new_session(&self.settings.credentials).await?;
            *self.token.write().await = token;
            envelope = self.post_query(sql).await?;
        }
        let mut backoff = http::Backoff::default();
        while envelope
            .code
            .as_deref()
            .is_some_and(|c| IN_PROGRESS.contains(&c))
        {
            let path = envelope
                .data
                .get("getResultUrl")
                .and_then(Value::as_str)
                .ok_or_else(|| SourceError::Query("a running query had no result URL".into()))?
                .to_string();
            backoff.wait().await;
            envelope = self.get_result(&path).await?;
        }
        if !envelope.success {
            return Err(classify(
                envelope.code.as_deref().unwrap_or(""),
                envelope.message.as_deref().unwrap_or("the query failed"),
            ));
        }
        serde_json::from_value(envelope.data)
            .map_err(|e| SourceError::Query(format!("reading Snowflake's answer: {e}")))
    }

    /// Runs a statement for its effect (tests and key registration use this).
    pub async fn execute(&self, sql: &str) -> Result<(), SourceError> {
        self.run(sql).await.map(|_| ())
    }
}

impl SqlWarehouse for Client {
    /// Runs a statement; the answer's plain Arrow schema and rows, batch by batch.
    async fn stream_query<F, Fut>(
        &self,
        sql: &str,
        mut on_batch: F,
    ) -> Result<arrow::datatypes::SchemaRef, SourceError>
    where
        F: FnMut(RecordBatch) -> Fut + Send,
        Fut: Future<Output = Result<(), SourceError>> + Send,
    {
        let data = self.run(sql).await?;
        let schema = plain_schema(&data.rowtype);
        if let Some(rowset) = data.rowset_base64.as_deref().filter(|r| !r.is_empty()) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(rowset)
                .map_err(|e| SourceError::Query(format!("Snowflake's rowset: {e}")))?;
            for batch in read_ipc(&bytes)? {
                on_batch(decode_batch(&batch, &data.rowtype, &schema)?).await?;
            }
        }
        let mut headers = reqwest::header::HeaderMap::new();
        let mut add = |name: &str, value: &str| -> Result<(), SourceError> {
            let bad = |e: &dyn std::fmt::Display| SourceError::Query(format!("chunk header: {e}"));
            headers.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(&e))?,
                reqwest::header::HeaderValue::from_str(value).map_err(|e| bad(&e))?,
            );
            Ok(())
        };
        if let Some(chunk_headers) = &data.chunk_headers {
            for (name, value) in chunk_headers {
                add(name, value)?;
            }
        } else if let Some(qrmk) = &data.qrmk {
            add("x-amz-server-side-encryption-customer-algorithm", "AES256")?;
            add("x-amz-server-side-encryption-customer-key", qrmk)?;
        }
        for chunk in &data.chunks {
            let body = self
                .http
                .get(&chunk.url)
                .headers(headers.clone())
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(unreachable)?
                .bytes()
                .await
                .map_err(unreachable)?;
            for batch in read_ipc(&gunzip(&body)?)? {
                on_batch(decode_batch(&batch, &data.rowtype, &schema)?).await?;
            }
        }
        Ok(schema)
    }
}

impl Client {}

/// A chunk's bytes, gunzipped when the store sent them compressed without saying so.
fn gunzip(body: &[u8]) -> Result<Vec<u8>, SourceError> {
    if body.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .map_err(|e| SourceError::Query(format!("gunzipping a result chunk: {e}")))?;
        Ok(out)
    } else {
        Ok(body.to_vec())
    }
}
