//! The one interface every warehouse connector implements: test the connection, discover the
//! source's columns, preview its first rows, plan a run's range and chunk boundaries on the
//! `(watermark, key)` order, and stream one chunk as Arrow batches. The coordinator calls the
//! planning parts and the extractor the reading parts, so a connector's code lives once. Each
//! kind implements [`Connector`] itself; `Source` opens the kind a connection names and hands
//! each call to it.

use crate::cloud::CloudWarehouse;
use crate::error::SourceError;
use crate::files::FilesSource;
use crate::mysql::MysqlSource;
use crate::postgres::{Dialect, PostgresSource};
use crate::source::{RangePlan, SourceShape, SourceSpec};
use crate::warehouse::SqlSource;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use sluice_proto::{Bound, ConnectionKind};
use std::future::Future;
use std::time::Duration;

/// What a warehouse connector does.
pub trait Connector: Send + Sync {
    /// Runs a trivial query; the error says what failed.
    fn test(&self) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// Checks that the source and its columns exist and reads their types.
    fn describe(
        &self,
        spec: &SourceSpec,
    ) -> impl Future<Output = Result<SourceShape, SourceError>> + Send;

    /// The first `rows` rows in `(watermark, key)` order, with the schema a chunk read has.
    fn preview(
        &self,
        shape: &SourceShape,
        rows: usize,
    ) -> impl Future<Output = Result<RecordBatch, SourceError>> + Send;

    /// A run's upper bound after `lo`: below `now − settle_lag` (and below the oldest open
    /// transaction where the source tells), and below `until` when given.
    fn plan_range(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        settle_lag: Duration,
        until: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<RangePlan, SourceError>> + Send;

    /// Boundaries cutting `(lo, hi]` into chunks of about `chunk_rows` rows.
    fn chunk_boundaries(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        hi: &Bound,
        chunk_rows: u64,
    ) -> impl Future<Output = Result<Vec<Bound>, SourceError>> + Send;

    /// The position just before the first row at or after `at`.
    fn position_before(
        &self,
        shape: &SourceShape,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Bound>, SourceError>> + Send;
}

/// Cancels the statement a source session is running.
pub struct Canceller(tokio_postgres::CancelToken);

impl Canceller {
    /// Asks the server to cancel the session's running statement.
    pub async fn cancel(&self) {
        if let Err(e) = self.0.cancel_query(tokio_postgres::NoTls).await {
            tracing::warn!(error = %e, "cancelling the source's statement");
        }
    }
}

/// An open connection to a source of any supported kind.
pub enum Source {
    Postgres(PostgresSource),
    Mysql(MysqlSource),
    Files(FilesSource),
    /// Snowflake, BigQuery or Databricks SQL.
    Warehouse(SqlSource<CloudWarehouse>),
}

impl Source {
    /// Opens a read-only session on the source a connection describes.
    pub async fn open(kind: ConnectionKind, url: &str) -> Result<Self, SourceError> {
        match kind {
            ConnectionKind::Postgres => Ok(Source::Postgres(PostgresSource::connect(url).await?)),
            ConnectionKind::Redshift => Ok(Source::Postgres(
                PostgresSource::connect_as(url, Dialect::Redshift).await?,
            )),
            ConnectionKind::Mysql => Ok(Source::Mysql(MysqlSource::connect(url).await?)),
            ConnectionKind::Files => Ok(Source::Files(FilesSource::connect(url).await?)),
            ConnectionKind::Delta => Ok(Source::Files(FilesSource::connect_delta(url).await?)),
            ConnectionKind::Snowflake | ConnectionKind::Bigquery | ConnectionKind::Databricks => {
                let warehouse = CloudWarehouse::open(kind, url).await?;
                Ok(Source::Warehouse(SqlSource { warehouse }))
            }
        }
    }

    /// Reads the rows of `(lo, hi]`, handing batches of at most `batch_rows` rows to
    /// `on_batch`; returns the number of rows read.
    pub async fn read_chunk<F, Fut>(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        hi: &Bound,
        batch_rows: usize,
        on_batch: F,
    ) -> Result<u64, SourceError>
    where
        F: FnMut(RecordBatch) -> Fut,
        Fut: Future<Output = Result<(), SourceError>>,
    {
        match self {
            Source::Postgres(s) => s.read_chunk(shape, lo, hi, batch_rows, on_batch).await,
            Source::Mysql(s) => s.read_chunk(shape, lo, hi, batch_rows, on_batch).await,
            Source::Files(s) => s.read_chunk(shape, lo, hi, batch_rows, on_batch).await,
            Source::Warehouse(s) => s.read_chunk(shape, lo, hi, batch_rows, on_batch).await,
        }
    }

    /// A handle that cancels the statement the source is running, from another task: dropping
    /// a session does not stop its statement on the server. `None` for sources whose requests
    /// end when they are dropped (files, the HTTP warehouses) or that have no such handle.
    pub fn canceller(&self) -> Option<Canceller> {
        match self {
            Source::Postgres(s) => Some(Canceller(s.cancel_token())),
            _ => None,
        }
    }

    /// The Arrow schema a chunk read produces.
    pub fn chunk_schema(&self, shape: &SourceShape) -> arrow::datatypes::SchemaRef {
        match self {
            Source::Postgres(_) => crate::postgres::chunk_schema(shape),
            Source::Mysql(_) => crate::mysql::chunk_schema(shape),
            Source::Files(_) => crate::files::chunk_schema(shape),
            Source::Warehouse(_) => crate::warehouse::chunk_schema(shape),
        }
    }
}

impl Connector for Source {
    async fn test(&self) -> Result<(), SourceError> {
        match self {
            Source::Postgres(s) => s.test().await,
            Source::Mysql(s) => s.test().await,
            Source::Files(s) => s.test().await,
            Source::Warehouse(s) => s.test().await,
        }
    }

    async fn describe(&self, spec: &SourceSpec) -> Result<SourceShape, SourceError> {
        match self {
            Source::Postgres(s) => s.describe(spec).await,
            Source::Mysql(s) => s.describe(spec).await,
            Source::Files(s) => s.describe(spec).await,
            Source::Warehouse(s) => s.describe(spec).await,
        }
    }

    async fn preview(&self, shape: &SourceShape, rows: usize) -> Result<RecordBatch, SourceError> {
        match self {
            Source::Postgres(s) => s.preview(shape, rows).await,
            Source::Mysql(s) => s.preview(shape, rows).await,
            Source::Files(s) => s.preview(shape, rows).await,
            Source::Warehouse(s) => s.preview(shape, rows).await,
        }
    }

    async fn plan_range(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        settle_lag: Duration,
        until: Option<DateTime<Utc>>,
    ) -> Result<RangePlan, SourceError> {
        match self {
            Source::Postgres(s) => s.plan_range(shape, lo, settle_lag, until).await,
            Source::Mysql(s) => s.plan_range(shape, lo, settle_lag, until).await,
            Source::Files(s) => s.plan_range(shape, lo, settle_lag, until).await,
            Source::Warehouse(s) => s.plan_range(shape, lo, settle_lag, until).await,
        }
    }

    async fn chunk_boundaries(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        hi: &Bound,
        chunk_rows: u64,
    ) -> Result<Vec<Bound>, SourceError> {
        match self {
            Source::Postgres(s) => s.chunk_boundaries(shape, lo, hi, chunk_rows).await,
            Source::Mysql(s) => s.chunk_boundaries(shape, lo, hi, chunk_rows).await,
            Source::Files(s) => s.chunk_boundaries(shape, lo, hi, chunk_rows).await,
            Source::Warehouse(s) => s.chunk_boundaries(shape, lo, hi, chunk_rows).await,
        }
    }

    async fn position_before(
        &self,
        shape: &SourceShape,
        at: DateTime<Utc>,
    ) -> Result<Option<Bound>, SourceError> {
        match self {
            Source::Postgres(s) => s.position_before(shape, at).await,
            Source::Mysql(s) => s.position_before(shape, at).await,
            Source::Files(s) => s.position_before(shape, at).await,
            Source::Warehouse(s) => s.position_before(shape, at).await,
        }
    }
}
