//! Databricks' SQL Statement Execution API: statements submitted to a SQL warehouse, polled
//! with backoff while the warehouse starts or the statement runs (the wait is logged, and
//! bounded), and results read as Arrow streams from the external links each chunk names.

use super::settings::Settings;
use crate::error::SourceError;
use crate::http::{self, read_ipc, Backoff};
use crate::warehouse::SqlWarehouse;
use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// How long the submitting request waits for the statement before answering "running".
const WAIT: &str = "30s";

/// A Databricks SQL warehouse reached with a personal access token.
pub struct Client {
    http: reqwest::Client,
    settings: Settings,
}

#[derive(Debug, Deserialize)]
struct Statement {
    statement_id: String,
    status: Status,
    #[serde(default)]
    manifest: Option<Manifest>,
    #[serde(default)]
    result: Option<ResultData>,
}

#[derive(Debug, Deserialize)]
struct Status {
    state: String,
    #[serde(default)]
    error: Option<ServiceError>,
    #[serde(default)]
    sql_state: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ServiceError {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    schema: ManifestSchema,
    #[serde(default)]
    truncated: bool,
}

#[derive(Debug, Deserialize)]
struct ManifestSchema {
    #[serde(default)]
    columns: Vec<Column>,
}

/// One result column as the manifest describes it.
#[derive(Debug, Deserialize)]
struct Column {
    name: String,
    type_name: String,
    #[serde(default)]
    type_precision: Option<u32>,
    #[serde(default)]
    type_scale: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
struct ResultData {
    #[serde(default)]
    external_links: Vec<ExternalLink>,
}

#[derive(Debug, Deserialize)]
struct ExternalLink {
    external_link: String,
    #[serde(default)]
    http_headers: BTreeMap<String, String>,
    #[serde(default)]
    next_chunk_internal_link: Option<String>,
}

/// The plain type a Databricks column becomes.
fn plain_type(column: &Column) -> DataType {
    match column.type_name.as_str() {
        "BYTE" | "SHORT" | "INT" | "LONG" => DataType::Int64,
        "DECIMAL"
            if column.type_scale.unwrap_or(0) == 0 && column.type_precision.unwrap_or(38) <= 18 =>
        {
            DataType::Int64
        }
        "FLOAT" | "DOUBLE" | "DECIMAL" => DataType::Float64,
        "BOOLEAN" => DataType::Boolean,
        "DATE" => DataType::Date32,
        "TIMESTAMP" | "TIMESTAMP_NTZ" => {
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
        }
        _ => DataType::Utf8,
    }
}

fn plain_schema(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, plain_type(c), true))
            .collect::<Vec<_>>(),
    ))
}

/// A failed statement, classified by its SQLSTATE and error class.
fn classify_statement(status: &Status) -> SourceError {
    let (code, message) = status
        .error
        .as_ref()
        .map_or(("", "the statement failed"), |e| {
            (e.error_code.as_deref().unwrap_or(""), e.message.as_str())
        });
    let sql_state = status.sql_state.as_deref().unwrap_or("");
    let text = format!("{message} (Databricks {code} {sql_state})");
    let has = |class: &str| message.contains(class);
    if sql_state == "42P01"
        || sql_state == "42703"
        || has("TABLE_OR_VIEW_NOT_FOUND")
        || has("UNRESOLVED_COLUMN")
        || has("SCHEMA_NOT_FOUND")
        || has("CATALOG_NOT_FOUND")
    {
        SourceError::MissingObject(text)
    } else if sql_state == "42501" || has("INSUFFICIENT_PERMISSIONS") || code == "PERMISSION_DENIED"
    {
        SourceError::PermissionDenied(text)
    } else if code == "DEADLINE_EXCEEDED" {
        SourceError::Timeout(text)
    } else if code == "UNAUTHENTICATED" {
        SourceError::Authentication(text)
    } else {
        SourceError::Query(text)
    }
}

/// A refused request, classified by HTTP status.
fn classify_http(status: u16, body: &str) -> SourceError {
    let message = serde_json::from_str::<ServiceError>(body)
        .map(|e| format!("{} ({})", e.message, e.error_code.unwrap_or_default()))
        .unwrap_or_else(|_| body.to_string());
    let text = format!("Databricks answered {status}: {message}");
    match status {
        401 => SourceError::Authentication(text),
        403 if message.contains("access token") => SourceError::Authentication(text),
        403 => SourceError::PermissionDenied(text),
        404 => SourceError::MissingObject(text),
        _ => SourceError::Query(text),
    }
}

impl Client {
    /// A client for the URL's warehouse; nothing is sent until the first statement.
    pub fn new(settings: Settings) -> Result<Client, SourceError> {
        Ok(Client {
            http: http::client("databricks")?,
            settings,
        })
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, SourceError> {
        http::send_json(
            "databricks",
            request.bearer_auth(&self.settings.token),
            classify_http,
        )
        .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.base_url)
    }

    /// Submits a statement and polls it until it ends: a warehouse that is starting is waited
    /// for up to the warm-up timeout, a running statement up to the statement timeout, and
    /// either is cancelled when its time is up.
    async fn run(&self, sql: &str) -> Result<Statement, SourceError> {
        let s = &self.settings;
        let mut body = json!({
            "statement": sql,
            "warehouse_id": s.warehouse_id,
            "wait_timeout": WAIT,
            "on_wait_timeout": "CONTINUE",
            "disposition": "EXTERNAL_LINKS",
            "format": "ARROW_STREAM",
        });
        if let Some(catalog) = &s.catalog {
            body["catalog"] = json!(catalog);
        }
        if let Some(schema) = &s.schema {
            body["schema"] = json!(schema);
        }
        let mut statement: Statement = self
            .send(
                self.http
                    .post(self.url("/api/2.0/sql/statements"))
                    .json(&body),
            )
            .await?;
        let submitted = Instant::now();
        let mut pending_since: Option<Instant> = None;
        let mut running_since: Option<Instant> = None;
        let mut backoff = Backoff::default();
        loop {
            match statement.status.state.as_str() {
                "PENDING" => {
                    let since = *pending_since.get_or_insert_with(|| {
                        tracing::warn!(
                            warehouse = %s.warehouse_id,
                            "the Databricks SQL warehouse is starting; waiting up to {} s",
                            s.warmup_timeout.as_secs()
                        );
                        Instant::now()
                    });
                    if since.elapsed() > s.warmup_timeout {
                        self.cancel(&statement.statement_id).await;
                        return Err(SourceError::Timeout(format!(
                            "the Databricks SQL warehouse {} did not start within {} s",
                            s.warehouse_id,
                            s.warmup_timeout.as_secs()
                        )));
                    }
                }
                "RUNNING" => {
                    if let (Some(since), None) = (pending_since, running_since) {
                        tracing::info!(
                            warehouse = %s.warehouse_id,
                            "the Databricks SQL warehouse started after {} s",
                            since.elapsed().as_secs()
                        );
                    }
                    let since = *running_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > http::STATEMENT_TIMEOUT {
                        self.cancel(&statement.statement_id).await;
                        return Err(SourceError::Timeout(format!(
                            "the statement ran longer than {} s",
                            http::STATEMENT_TIMEOUT.as_secs()
                        )));
                    }
                }
                "SUCCEEDED" => {
                    if pending_since.is_some() && running_since.is_none() {
                        tracing::info!(
                            warehouse = %s.warehouse_id,
                            "the Databricks SQL warehouse started after {} s",
                            submitted.elapsed().as_secs()
                        );
                    }
                    return Ok(statement);
                }
                "FAILED" => return Err(classify_statement(&statement.status)),
                other => {
                    return Err(SourceError::Query(format!(
                        "the statement ended {other}: {}",
                        statement
                            .status
                            .error
                            .as_ref()
                            .map_or("", |e| e.message.as_str())
                    )))
                }
            }
            backoff.wait().await;
            statement = self
                .send(self.http.get(self.url(&format!(
                    "/api/2.0/sql/statements/{}",
                    statement.statement_id
                ))))
                .await?;
        }
    }

    /// Asks the warehouse to stop a statement we no longer wait for.
    async fn cancel(&self, statement_id: &str) {
        let cancelled: Result<serde_json::Value, _> = self
            .send(
                self.http
                    .post(self.url(&format!("/api/2.0/sql/statements/{statement_id}/cancel"))),
            )
            .await;
        if let Err(e) = cancelled {
            tracing::warn!(statement_id, "cancelling a Databricks statement: {e}");
        }
    }

    /// One chunk's Arrow stream, fetched from its pre-signed link without our token.
    async fn fetch(&self, link: &ExternalLink) -> Result<Vec<RecordBatch>, SourceError> {
        let mut request = self.http.get(&link.external_link);
        for (name, value) in &link.http_headers {
            request = request.header(name, value);
        }
        let body = request
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| http::transport("databricks result chunk", e))?
            .bytes()
            .await
            .map_err(|e| http::transport("databricks result chunk", e))?;
        read_ipc(&body)
    }
}

impl SqlWarehouse for Client {
    /// Runs a statement; the answer's plain Arrow schema and rows, chunk by chunk.
    async fn stream_query<F, Fut>(
        &self,
        sql: &str,
        mut on_batch: F,
    ) -> Result<SchemaRef, SourceError>
    where
        F: FnMut(RecordBatch) -> Fut + Send,
        Fut: Future<Output = Result<(), SourceError>> + Send,
    {
        let statement = self.run(sql).await?;
        let manifest = statement
            .manifest
            .ok_or_else(|| SourceError::Query("Databricks' answer had no manifest".into()))?;
        if manifest.truncated {
            return Err(SourceError::Query(
                "Databricks cut the result short; read fewer rows per chunk".into(),
            ));
        }
        let schema = plain_schema(&manifest.schema.columns);
        let mut links = statement.result.unwrap_or_default().external_links;
        while !links.is_empty() {
            let mut next = None;
            for link in &links {
                for batch in self.fetch(link).await? {
                    on_batch(conform(&batch, &schema)?).await?;
                }
                next = link.next_chunk_internal_link.clone();
            }
            links = match next {
                Some(path) => {
                    self.send::<ResultData>(self.http.get(self.url(&path)))
                        .await?
                        .external_links
                }
                None => Vec::new(),
            };
        }
        Ok(schema)
    }
}

impl Client {
    /// Runs a statement for its effect (tests create their tables with this).
    pub async fn execute(&self, sql: &str) -> Result<(), SourceError> {
        self.run(sql).await.map(|_| ())
    }
}

/// A chunk's batch in the plain schema.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, SourceError> {
    if batch.num_columns() != schema.fields().len() {
        return Err(SourceError::Query(format!(
            "Databricks sent {} columns for {} described",
            batch.num_columns(),
            schema.fields().len()
        )));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(array, field)| {
            cast(array, field.data_type()).map_err(|e| {
                SourceError::Query(format!(
                    "decoding Databricks column {:?}: {e}",
                    field.name()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| SourceError::Query(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: &str, message: &str, sql_state: &str) -> Status {
        Status {
            state: "FAILED".into(),
            error: Some(ServiceError {
                error_code: Some(code.into()),
                message: message.into(),
            }),
            sql_state: Some(sql_state.into()),
        }
    }

    #[test]
    fn failed_statements_are_classified_by_sql_state_and_error_class() {
        assert!(matches!(
            classify_statement(&status(
                "BAD_REQUEST",
                "[TABLE_OR_VIEW_NOT_FOUND] The table or view `x` cannot be found.",
                "42P01"
            )),
            SourceError::MissingObject(_)
        ));
        assert!(matches!(
            classify_statement(&status(
                "BAD_REQUEST",
                "[INSUFFICIENT_PERMISSIONS] User does not have SELECT on table.",
                "42501"
            )),
            SourceError::PermissionDenied(_)
        ));
        assert!(matches!(
            classify_statement(&status(
                "BAD_REQUEST",
                "[PARSE_SYNTAX_ERROR] Syntax error",
                "42601"
            )),
            SourceError::Query(_)
        ));
    }

    #[test]
    fn an_invalid_token_is_an_authentication_error() {
        assert!(matches!(
            classify_http(
                403,
                r#"{"error_code":"403","message":"Invalid access token."}"#
            ),
            SourceError::Authentication(_)
        ));
        assert!(matches!(
            classify_http(
                404,
                r#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"warehouse x not found"}"#
            ),
            SourceError::MissingObject(_)
        ));
    }
}
