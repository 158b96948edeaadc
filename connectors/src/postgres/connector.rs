//! PostgreSQL and Redshift through the one connector interface: every planning statement runs
//! in a read-only transaction that is rolled back, so a source query that writes leaves nothing.

use super::PostgresSource;
use crate::connector::{feed, BatchSink, Canceller, Connector};
use crate::error::SourceError;
use crate::source::{RangePlan, Rows, SourceShape, SourceSpec};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use sluice_proto::Bound;
use std::time::Duration;

#[async_trait::async_trait]
impl Connector for PostgresSource {
    /// Reads `rows`, in batches of at most `batch_rows` rows.
    async fn read(
        &self,
        shape: &SourceShape,
        rows: Rows<'_>,
        batch_rows: usize,
        sink: &mut dyn BatchSink,
    ) -> Result<u64, SourceError> {
        let sink = tokio::sync::Mutex::new(sink);
        self.read_rows(shape, rows, batch_rows, feed(&sink)).await
    }

    fn chunk_schema(&self, shape: &SourceShape) -> arrow::datatypes::SchemaRef {
        super::chunk_schema(shape)
    }

    fn canceller(&self) -> Option<Canceller> {
        let token = self.cancel_token();
        Some(Canceller::new(move || async move {
            if let Err(e) = token.cancel_query(tokio_postgres::NoTls).await {
                tracing::warn!(error = %e, "cancelling the source's statement");
            }
        }))
    }

    async fn test(&self) -> Result<(), SourceError> {
        self.test_inner().await
    }

    fn reusable(&self) -> bool {
        !self.client.is_closed()
    }

    async fn describe(&self, spec: &SourceSpec) -> Result<SourceShape, SourceError> {
        self.describe_inner(spec).await
    }

    async fn columns(&self, spec: &SourceSpec) -> Result<Vec<String>, SourceError> {
        self.columns_inner(spec).await
    }

    async fn ordering_index(
        &self,
        spec: &SourceSpec,
    ) -> Result<Option<crate::source::OrderingIndex>, SourceError> {
        self.ordering_index_inner(spec).await
    }

    async fn preview(&self, shape: &SourceShape, rows: usize) -> Result<RecordBatch, SourceError> {
        self.preview_inner(shape, rows).await
    }

    async fn plan_range(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        settle_lag: Duration,
        until: Option<DateTime<Utc>>,
    ) -> Result<RangePlan, SourceError> {
        self.rolled_back(self.plan_range_inner(shape, lo, settle_lag, until))
            .await
    }

    async fn chunk_boundaries(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        hi: &Bound,
        chunk_rows: u64,
    ) -> Result<Vec<Bound>, SourceError> {
        self.rolled_back(self.chunk_boundaries_inner(shape, lo, hi, chunk_rows))
            .await
    }

    async fn position_before(
        &self,
        shape: &SourceShape,
        at: DateTime<Utc>,
    ) -> Result<Option<Bound>, SourceError> {
        self.rolled_back(self.position_before_inner(shape, at))
            .await
    }
}
