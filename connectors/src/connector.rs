//! The one interface every warehouse connector implements: test the connection, discover the
//! source's columns, preview its first rows, plan a run's range and chunk boundaries on the
//! `(watermark, key)` order, and stream one chunk (or the rows of some keys) as Arrow batches. The coordinator calls the
//! planning parts and the extractor the reading parts, so a connector's code lives once. Each
//! kind implements [`Connector`] itself; [`Source`] is whichever kind a connection names, opened
//! through the registry (`registry.rs`).

use crate::error::SourceError;
use crate::registry::Registry;
use crate::source::{RangePlan, Rows, SourceShape, SourceSpec};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sluice_proto::{Bound, ConnectionKind};
use std::future::Future;
use std::time::Duration;

/// What a warehouse connector does. Object-safe, so the registry can hand out any kind.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Runs a trivial query; the error says what failed.
    async fn test(&self) -> Result<(), SourceError>;

    /// Checks that the source and its columns exist and reads their types.
    async fn describe(&self, spec: &SourceSpec) -> Result<SourceShape, SourceError>;

    /// Every column the source relation has, in its order, so an error about a missing
    /// column can list the ones there are; empty when the kind cannot tell.
    async fn columns(&self, _spec: &SourceSpec) -> Result<Vec<String>, SourceError> {
        Ok(Vec::new())
    }

    /// Whether a table has an index leading with `(watermark, key)`, which keeps every
    /// chunk's read a range scan, and the statement that creates one; `None` when the kind
    /// (or a query, or a view) cannot tell.
    async fn ordering_index(
        &self,
        _spec: &SourceSpec,
    ) -> Result<Option<crate::source::OrderingIndex>, SourceError> {
        Ok(None)
    }

    /// The first `rows` rows in `(watermark, key)` order, with the schema a chunk read has.
    async fn preview(&self, shape: &SourceShape, rows: usize) -> Result<RecordBatch, SourceError>;

    /// A run's upper bound after `lo`: below `now − settle_lag` (and below the oldest open
    /// transaction where the source tells), and below `until` when given.
    async fn plan_range(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        settle_lag: Duration,
        until: Option<DateTime<Utc>>,
    ) -> Result<RangePlan, SourceError>;

    /// Boundaries cutting `(lo, hi]` into chunks of about `chunk_rows` rows.
    async fn chunk_boundaries(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        hi: &Bound,
        chunk_rows: u64,
    ) -> Result<Vec<Bound>, SourceError>;

    /// The position just before the first row at or after `at`.
    async fn position_before(
        &self,
        shape: &SourceShape,
        at: DateTime<Utc>,
    ) -> Result<Option<Bound>, SourceError>;

    /// Reads exactly `rows` (a chunk's `(lo, hi]`, or the rows of some keys up to a bound),
    /// handing batches of at most `batch_rows` rows to `sink` in `(watermark, key)` order where
    /// the source keeps one; returns the rows read.
    async fn read(
        &self,
        shape: &SourceShape,
        rows: Rows<'_>,
        batch_rows: usize,
        sink: &mut dyn BatchSink,
    ) -> Result<u64, SourceError>;

    /// The Arrow schema a chunk read produces: key, watermark, then the mapped columns.
    fn chunk_schema(&self, shape: &SourceShape) -> SchemaRef {
        crate::source::chunk_schema(shape)
    }

    /// A handle that cancels the statement the source is running, from another task: dropping
    /// a session does not stop its statement on the server. `None` for sources whose requests
    /// end when they are dropped (files, the HTTP warehouses).
    fn canceller(&self) -> Option<Canceller> {
        None
    }

    /// Whether this session may plan another run now: true for a live database session whose
    /// every statement reads the source as it is then; false (the default) where opening fixed
    /// what the session sees (a file listing, a table version) or the session has closed.
    fn reusable(&self) -> bool {
        false
    }
}

/// Where a chunk read puts its batches: the extractor's Parquet writer, a preview's list.
#[async_trait]
pub trait BatchSink: Send {
    /// Takes one batch; an error stops the read.
    async fn put(&mut self, batch: RecordBatch) -> Result<(), SourceError>;
}

/// A preview or a test collects the batches.
#[async_trait]
impl BatchSink for Vec<RecordBatch> {
    async fn put(&mut self, batch: RecordBatch) -> Result<(), SourceError> {
        self.push(batch);
        Ok(())
    }
}

/// Lends a sink to code that takes a batch callback: `read(.., feed(&sink))`.
pub(crate) fn feed<'a, 's: 'a>(
    sink: &'a tokio::sync::Mutex<&'s mut dyn BatchSink>,
) -> impl FnMut(RecordBatch) -> BoxFuture<'a, Result<(), SourceError>> + use<'a, 's> {
    move |batch| Box::pin(async move { sink.lock().await.put(batch).await })
}

/// Cancels the statement a source session is running.
pub struct Canceller(Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>);

impl Canceller {
    /// A canceller that runs `cancel` once.
    pub fn new<F, Fut>(cancel: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Canceller(Box::new(move || Box::pin(cancel())))
    }

    /// Asks the server to cancel the session's running statement.
    pub async fn cancel(self) {
        (self.0)().await
    }
}

/// An open connection to a source of whichever kind a connection names.
pub struct Source {
    connector: Box<dyn Connector>,
    host_key: Option<String>,
}

impl Source {
    /// Opens a read-only session on the source a connection's opened credentials describe,
    /// through the kinds this build knows ([`Registry::builtin`]).
    pub async fn open(kind: &ConnectionKind, credentials: &str) -> Result<Self, SourceError> {
        Registry::builtin().open(kind, credentials).await
    }

    /// Opens a session checking a bastion's host key as `check` says (tests learn it).
    pub async fn open_checking(
        kind: &ConnectionKind,
        credentials: &str,
        check: crate::endpoint::HostKeyCheck,
    ) -> Result<Self, SourceError> {
        Registry::builtin()
            .open_checking(kind, credentials, check)
            .await
    }

    /// Wraps a connector the registry opened.
    pub fn new(connector: Box<dyn Connector>) -> Self {
        Source {
            connector,
            host_key: None,
        }
    }

    /// This source reached through a bastion that presented `host_key`.
    pub fn with_host_key(mut self, host_key: Option<String>) -> Self {
        self.host_key = host_key;
        self
    }

    /// The host key (SHA-256 fingerprint) the SSH bastion presented, for sources reached
    /// through one.
    pub fn host_key(&self) -> Option<&str> {
        self.host_key.as_deref()
    }
}

impl std::ops::Deref for Source {
    type Target = dyn Connector;

    fn deref(&self) -> &Self::Target {
        self.connector.as_ref()
    }
}
