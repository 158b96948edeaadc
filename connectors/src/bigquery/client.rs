//! BigQuery's REST API: a service account's signed JWT exchanged for an access token, queries
//! run with `jobs.query`, and their answers read page by page with `jobs.getQueryResults`,
//! waiting with backoff while a job is still running.

use super::decode::{decode_page, plain_schema, TableField, TableRow};
use super::settings::Settings;
use crate::error::SourceError;
use crate::http::{self, Backoff};
use crate::warehouse::SqlWarehouse;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::Deserialize;
use serde_json::json;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Rows asked for per page; BigQuery also caps a page at about 10 MB.
const PAGE_ROWS: u32 = 20_000;

/// How long one request waits for a job before answering "not complete yet".
const WAIT_MS: u64 = 10_000;

/// The OAuth scope of the access token: reading data and running query jobs.
const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

/// A BigQuery project reached with a service account.
pub struct Client {
    http: reqwest::Client,
    settings: Settings,
    token: Mutex<Option<(String, Instant)>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Schema {
    #[serde(default)]
    fields: Vec<TableField>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobReference {
    job_id: String,
    #[serde(default)]
    location: Option<String>,
}

/// The shared shape of `jobs.query` and `jobs.getQueryResults` answers.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryPage {
    #[serde(default)]
    job_complete: bool,
    job_reference: Option<JobReference>,
    #[serde(default)]
    schema: Option<Schema>,
    #[serde(default)]
    rows: Vec<TableRow>,
    #[serde(default)]
    page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorProto,
}

#[derive(Debug, Deserialize)]
struct ErrorProto {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    errors: Vec<ErrorReason>,
}

#[derive(Debug, Deserialize)]
struct ErrorReason {
    #[serde(default)]
    reason: String,
}

/// A refused request, classified by HTTP status and BigQuery's error reason.
fn classify(status: u16, body: &str) -> SourceError {
    let Ok(ErrorBody { error }) = serde_json::from_str::<ErrorBody>(body) else {
        return SourceError::Query(format!("BigQuery answered {status}: {body}"));
    };
    let reason = error.errors.first().map_or("", |r| r.reason.as_str());
    let text = format!("{} (BigQuery {status} {reason})", error.message);
    match (status, reason) {
        (401, _) => SourceError::Authentication(text),
        (_, "notFound") => SourceError::MissingObject(text),
        (_, "accessDenied") => SourceError::PermissionDenied(text),
        (_, "timeout" | "jobTimeout") => SourceError::Timeout(text),
        (400, "invalidQuery") if error.message.starts_with("Unrecognized name") => {
            SourceError::MissingObject(text)
        }
        _ if error.status.as_deref() == Some("UNAUTHENTICATED") => {
            SourceError::Authentication(text)
        }
        _ => SourceError::Query(text),
    }
}

impl Client {
    /// Signs in with the service account.
    pub async fn connect(settings: Settings) -> Result<Client, SourceError> {
        let client = Client {
            http: http::client("bigquery")?,
            settings,
            token: Mutex::new(None),
        };
        client.access_token().await?;
        Ok(client)
    }

    /// A valid access token, exchanged for a new signed JWT when the last one nears expiry.
    async fn access_token(&self) -> Result<String, SourceError> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let key = &self.settings.key;
        let now = chrono::Utc::now().timestamp();
        let claims = json!({
            "iss": key.client_email,
            "scope": SCOPE,
            "aud": key.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = key.private_key_id.clone();
        let signing =
            jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key.as_bytes()).map_err(|e| {
                SourceError::Authentication(format!("the service account's private key: {e}"))
            })?;
        let assertion = jsonwebtoken::encode(&header, &claims, &signing).map_err(|e| {
            SourceError::Authentication(format!("signing the service account's JWT: {e}"))
        })?;
        let request = self.http.post(&key.token_uri).form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ]);
        let token: TokenAnswer = http::send_json("bigquery sign-in", request, |status, body| {
            if (400..500).contains(&status) {
                SourceError::Authentication(format!(
                    "the service account {} was refused: {body}",
                    key.client_email
                ))
            } else {
                SourceError::Unreachable(format!("bigquery sign-in answered {status}: {body}"))
            }
        })
        .await?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3600).saturating_sub(60));
        *cached = Some((token.access_token.clone(), Instant::now() + lifetime));
        Ok(token.access_token)
    }

    fn base(&self) -> String {
        format!(
            "{}/bigquery/v2/projects/{}",
            self.settings.endpoint, self.settings.project
        )
    }

    async fn start(&self, sql: &str) -> Result<QueryPage, SourceError> {
        let s = &self.settings;
        let mut body = json!({
            "query": sql,
            "useLegacySql": false,
            "maxResults": PAGE_ROWS,
            "timeoutMs": WAIT_MS,
            "jobTimeoutMs": http::STATEMENT_TIMEOUT.as_millis() as u64,
            "formatOptions": { "useInt64Timestamp": true },
            "labels": { "tool": "sluice" },
            "requestId": uuid::Uuid::new_v4().to_string(),
        });
        if let Some(dataset) = &s.dataset {
            body["defaultDataset"] = json!({ "projectId": s.project, "datasetId": dataset });
        }
        if let Some(location) = &s.location {
            body["location"] = json!(location);
        }
        let token = self.access_token().await?;
        let request = self
            .http
            .post(format!("{}/queries", self.base()))
            .bearer_auth(token)
            .json(&body);
        http::send_json("bigquery", request, classify).await
    }

    async fn page(
        &self,
        job: &JobReference,
        page_token: Option<&str>,
    ) -> Result<QueryPage, SourceError> {
        let mut query = vec![
            ("maxResults", PAGE_ROWS.to_string()),
            ("timeoutMs", WAIT_MS.to_string()),
            ("formatOptions.useInt64Timestamp", "true".to_string()),
        ];
        if let Some(location) = job.location.as_ref().or(self.settings.location.as_ref()) {
            query.push(("location", location.clone()));
        }
        if let Some(t) = page_token {
            query.push(("pageToken", t.to_string()));
        }
        let token = self.access_token().await?;
        let request = self
            .http
            .get(format!("{}/queries/{}", self.base(), job.job_id))
            .bearer_auth(token)
            .query(&query);
        http::send_json("bigquery", request, classify).await
    }
}

impl SqlWarehouse for Client {
    /// Runs a statement; the answer's plain Arrow schema and rows, page by page.
    async fn stream_query<F, Fut>(
        &self,
        sql: &str,
        mut on_batch: F,
    ) -> Result<SchemaRef, SourceError>
    where
        F: FnMut(RecordBatch) -> Fut + Send,
        Fut: Future<Output = Result<(), SourceError>> + Send,
    {
        let mut page = self.start(sql).await?;
        let job = page
            .job_reference
            .take()
            .ok_or_else(|| SourceError::Query("BigQuery's answer named no job".into()))?;
        let mut backoff = Backoff::default();
        while !page.job_complete {
            backoff.wait().await;
            page = self.page(&job, None).await?;
        }
        let fields = page.schema.take().unwrap_or_default().fields;
        let schema = plain_schema(&fields);
        loop {
            if !page.rows.is_empty() {
                on_batch(decode_page(&page.rows, &fields, &schema)?).await?;
            }
            match page.page_token.take() {
                Some(next) => page = self.page(&job, Some(&next)).await?,
                None => return Ok(schema),
            }
        }
    }
}

impl Client {
    /// Runs a statement for its effect (tests create their tables with this).
    pub async fn execute(&self, sql: &str) -> Result<(), SourceError> {
        self.stream_query(sql, |_| async { Ok(()) })
            .await
            .map(|_| ())
    }
}
