//! The warehouses reached by SQL over HTTP, as one `SqlWarehouse`: each kind keeps its own
//! protocol and dialect, and the planning and reads on them are `warehouse::SqlSource`'s.

use crate::bigquery;
use crate::databricks;
use crate::error::SourceError;
use crate::snowflake;
use crate::warehouse::{QueryResult, SqlDialect, SqlWarehouse};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use sluice_proto::ConnectionKind;
use std::future::Future;

/// A session on one SQL-over-HTTP warehouse.
pub enum CloudWarehouse {
    Snowflake(snowflake::Client),
    BigQuery(bigquery::Client),
    Databricks(databricks::Client),
}

impl CloudWarehouse {
    /// Signs in to the warehouse a connection URL names.
    pub async fn open(kind: ConnectionKind, url: &str) -> Result<Self, SourceError> {
        Ok(match kind {
            ConnectionKind::Snowflake => {
                CloudWarehouse::Snowflake(snowflake::Client::open(url).await?)
            }
            ConnectionKind::Bigquery => {
                CloudWarehouse::BigQuery(bigquery::Client::open(url).await?)
            }
            ConnectionKind::Databricks => {
                CloudWarehouse::Databricks(databricks::Client::open(url)?)
            }
            other => {
                return Err(SourceError::InvalidSpec(format!(
                    "{} is not a warehouse reached over HTTP",
                    other.as_str()
                )))
            }
        })
    }

    fn dialect(&self) -> &dyn SqlDialect {
        match self {
            CloudWarehouse::Snowflake(c) => c,
            CloudWarehouse::BigQuery(c) => c,
            CloudWarehouse::Databricks(c) => c,
        }
    }

    async fn stream_query<F, Fut>(
        &self,
        sql: &str,
        on_batch: F,
    ) -> Result<arrow::datatypes::SchemaRef, SourceError>
    where
        F: FnMut(RecordBatch) -> Fut,
        Fut: Future<Output = Result<(), SourceError>>,
    {
        match self {
            CloudWarehouse::Snowflake(c) => c.stream_query(sql, on_batch).await,
            CloudWarehouse::BigQuery(c) => c.stream_query(sql, on_batch).await,
            CloudWarehouse::Databricks(c) => c.stream_query(sql, on_batch).await,
        }
    }
}

impl SqlDialect for CloudWarehouse {
    fn quote_part(&self, part: &str) -> String {
        self.dialect().quote_part(part)
    }

    fn timestamp_literal(&self, t: &DateTime<Utc>) -> String {
        self.dialect().timestamp_literal(t)
    }

    fn now_utc(&self) -> &'static str {
        self.dialect().now_utc()
    }

    fn text_cast(&self, expr: &str) -> String {
        self.dialect().text_cast(expr)
    }
}

impl SqlWarehouse for CloudWarehouse {
    async fn query(&self, sql: &str) -> Result<QueryResult, SourceError> {
        let mut batches = Vec::new();
        let schema = self
            .stream_query(sql, |b| {
                batches.push(b);
                async { Ok(()) }
            })
            .await?;
        Ok(QueryResult { schema, batches })
    }

    async fn query_each<F, Fut>(&self, sql: &str, on_batch: F) -> Result<(), SourceError>
    where
        F: FnMut(RecordBatch) -> Fut,
        Fut: Future<Output = Result<(), SourceError>>,
    {
        self.stream_query(sql, on_batch).await.map(|_| ())
    }
}
