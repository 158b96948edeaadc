//! The messages of a run's life: requested, chunk task, extracted, transformed, loaded, failed.
//! Each carries what the next stage needs, so workers hold no state between messages.

use crate::bounds::{Bound, KeyValue};
use crate::envelope::Message;
use crate::error::StageError;
use crate::mapping::Mapping;
use crate::secrets::Sealed;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Asks the coordinator to start a run of an import (from the CLI, the API or another service).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRequested {
    /// Chosen by the requester, so it can follow the run; a repeated id starts nothing new.
    pub run_id: Uuid,
    /// The workspace of the import.
    pub workspace: String,
    /// The import to run.
    pub import: String,
    /// A dry run goes through every stage, but the loader writes nothing.
    pub dry_run: bool,
    /// Who asked: a user, `api:<token>`, or `scheduler`.
    pub requested_by: String,
    /// When the request was made.
    pub requested_at: DateTime<Utc>,
    /// The schedule slot this run is for, when the scheduler fired it.
    #[serde(default)]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// The requester's idempotency key: the same key for the same import is the same run.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Replay: read the rows whose watermark is in `[from, until)` without moving the
    /// watermark.
    #[serde(default)]
    pub replay: Option<ReplayWindow>,
}

/// A window of source rows to read again, by watermark value: `from` inclusive, `until`
/// exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayWindow {
    /// The first watermark read (inclusive).
    pub from: DateTime<Utc>,
    /// The watermark reading stops at (exclusive).
    pub until: DateTime<Utc>,
}

impl RunRequested {
    /// The run id of a scheduled slot or of an idempotency key: the same for every requester,
    /// so repeating the request can only find the same run.
    pub fn derived_run_id(workspace: &str, import: &str, discriminator: &str) -> Uuid {
        Uuid::new_v5(
            &RUN_NAMESPACE,
            format!("{workspace}\u{1f}{import}\u{1f}{discriminator}").as_bytes(),
        )
    }
}

/// The namespace of derived run ids.
const RUN_NAMESPACE: Uuid = Uuid::from_u128(0x5c1d_7e3a_9b0f_4a52_8e61_d2c4_3f70_a915);

impl Message for RunRequested {
    const ROUTING_KEY: &'static str = "run.requested";
}

/// The coordinator's reply to a `RunRequested` that set `reply_to`: the run it became.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAccepted {
    /// The run the request became.
    pub run_id: Uuid,
    /// The import's workspace.
    pub workspace: String,
    /// The import.
    pub import: String,
    /// `queued`, `running`, ..., `skipped` (another run was active), or `rejected` (no such
    /// import).
    pub status: String,
    /// Why, when the request was skipped or rejected.
    pub message: Option<String>,
}

impl Message for RunAccepted {
    const ROUTING_KEY: &'static str = "run.accepted";
}

/// Which chunk of which run a message is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// The run the chunk belongs to.
    pub run_id: Uuid,
    /// The run's workspace.
    pub workspace_id: i64,
    /// The run's import.
    pub import_id: i64,
    /// Position of the chunk in its run, from 0.
    pub seq: u32,
}

/// Object keys of a chunk's files; fixed per run and chunk, the same on every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkObjects {
    /// Where the extractor writes the chunk's rows as read.
    pub extracted: String,
    /// Where the transformer writes the chunk's rows as mapped.
    pub transformed: String,
    /// Rows the transformer rejected, as JSON lines.
    pub rejected: String,
    /// Rows the loader rejected (schema registry conflicts), as JSON lines.
    pub load_rejected: String,
}

impl ChunkObjects {
    /// The deterministic keys for a chunk.
    pub fn for_chunk(chunk: &ChunkRef) -> Self {
        let base = format!(
            "{}/chunk-{:06}",
            Self::run_prefix(chunk.workspace_id, chunk.import_id, chunk.run_id),
            chunk.seq
        );
        ChunkObjects {
            extracted: format!("{base}/extracted.parquet"),
            transformed: format!("{base}/transformed.parquet"),
            rejected: format!("{base}/rejected.jsonl"),
            load_rejected: format!("{base}/load_rejected.jsonl"),
        }
    }

    /// The prefix every chunk object of a run lies under.
    pub fn run_prefix(workspace_id: i64, import_id: i64, run_id: uuid::Uuid) -> String {
        format!("ws-{workspace_id}/import-{import_id}/run-{run_id}")
    }

    /// Where a run of a mirror import keeps the set of keys it found in the source.
    pub fn key_set(chunk: &ChunkRef) -> String {
        format!(
            "ws-{}/import-{}/keys/run-{}.parquet",
            chunk.workspace_id, chunk.import_id, chunk.run_id
        )
    }
}

/// A mirror import's key chunk: it reads every key of the source with the row's identities,
/// keeps them as the run's key set, and finds the keys of the previous set that are gone, so
/// the loader can unset what their rows had set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySetWork {
    /// Where this run's key set is written (`ChunkObjects::key_set`).
    pub current: String,
    /// The key set of the import's last successful run; none before the first.
    pub previous: Option<String>,
}

/// What every stage after the extractor needs to process a chunk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkWork {
    /// Which chunk.
    pub chunk: ChunkRef,
    /// Whether the run writes nothing and only reports.
    pub dry_run: bool,
    /// How rows map to profiles or events.
    pub mapping: Mapping,
    /// Where the chunk's objects are.
    pub objects: ChunkObjects,
    /// The workspace's fleet-wide limit on rows written per second; loaders share it.
    #[serde(default)]
    pub load_rows_per_second: Option<u32>,
    /// When the run was requested: the time of events imported with `if_missing: import_time`.
    #[serde(default)]
    pub run_started_at: Option<DateTime<Utc>>,
    /// Set on a mirror import's key chunk; its rows are keys, not changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_set: Option<KeySetWork>,
    /// The store the chunk's workspace lives in; `None` is the fleet's default store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreRoute>,
    /// Whether the loader writes what happened to each row (`sluice_proto::lineage`): the
    /// import keeps lineage (`lineage_retention` above zero).
    #[serde(default)]
    pub lineage: bool,
    /// The platform the chunk's rows are delivered to instead of the built-in stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<crate::destination::DestinationRoute>,
}

/// A store registered with `sluice stores add`, as a loader needs it to write there: its
/// name (which keys the loader's pool) and its URL, sealed with the master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRoute {
    /// The store's name.
    pub name: String,
    /// Its PostgreSQL URL, sealed.
    pub url: Sealed,
}

/// A connector kind's name, as specs write it and the connectors' registry knows it: the set
/// of kinds is the registry's (`sluice_connectors::registry`), so adding one touches no message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionKind(std::borrow::Cow<'static, str>);

impl ConnectionKind {
    /// PostgreSQL.
    pub const POSTGRES: ConnectionKind = ConnectionKind::named("postgres");
    /// Amazon Redshift, over the PostgreSQL protocol.
    pub const REDSHIFT: ConnectionKind = ConnectionKind::named("redshift");
    /// MySQL or MariaDB.
    pub const MYSQL: ConnectionKind = ConnectionKind::named("mysql");
    /// Parquet, CSV or NDJSON files in object storage.
    pub const FILES: ConnectionKind = ConnectionKind::named("files");
    /// A Delta Lake table in object storage, read through its transaction log.
    pub const DELTA: ConnectionKind = ConnectionKind::named("delta");
    /// Snowflake, over its connector protocol.
    pub const SNOWFLAKE: ConnectionKind = ConnectionKind::named("snowflake");
    /// Google BigQuery, over its REST API.
    pub const BIGQUERY: ConnectionKind = ConnectionKind::named("bigquery");
    /// A Databricks SQL warehouse, over the SQL Statement Execution API.
    pub const DATABRICKS: ConnectionKind = ConnectionKind::named("databricks");

    /// A kind known when the program is built.
    pub const fn named(name: &'static str) -> ConnectionKind {
        ConnectionKind(std::borrow::Cow::Borrowed(name))
    }

    /// A kind as stored or written in a spec; whether it exists is the registry's to say.
    pub fn new(name: impl Into<String>) -> ConnectionKind {
        ConnectionKind(std::borrow::Cow::Owned(name.into()))
    }

    /// The kind's name as written in specs and stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ConnectionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What to read from: a table or view, or a SQL query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceRelation {
    /// A table or view, by name.
    Table(String),
    /// A SQL query, read as a derived table.
    Query(String),
}

/// Where and how to read one chunk, with the connection's credentials sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceTask {
    /// The connector kind.
    pub kind: ConnectionKind,
    /// The connection's settings (URL with credentials), sealed with the fleet's master key.
    pub credentials: Sealed,
    /// What to read.
    pub relation: SourceRelation,
    /// The unique key column.
    pub key_column: String,
    /// The watermark column.
    pub watermark_column: String,
    /// Columns to read besides key and watermark.
    pub columns: Vec<String>,
    /// Exclusive lower bound; `None` reads from the start.
    pub lo: Option<Bound>,
    /// Inclusive upper bound.
    pub hi: Bound,
    /// A retry chunk: read only the rows with these keys whose position is at or before
    /// `hi` (rows rejected by earlier runs, read again by key); `lo` is then unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<KeyValue>>,
}

/// The extractor's input: read one chunk's rows into Parquet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkTask {
    /// The chunk and what every stage needs of it.
    pub work: ChunkWork,
    /// Where and how to read it.
    pub source: SourceTask,
}

impl Message for ChunkTask {
    const ROUTING_KEY: &'static str = "chunk.task";
}

/// The extractor's output: the chunk's rows are in `objects.extracted`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkExtracted {
    /// The chunk.
    pub work: ChunkWork,
    /// Rows read from the source.
    pub rows_read: u64,
    /// Bytes of the Parquet object written.
    pub bytes: u64,
}

impl Message for ChunkExtracted {
    const ROUTING_KEY: &'static str = "chunk.extracted";
}

/// The transformer's output: accepted rows in `objects.transformed`, rejected ones (JSON
/// lines of `RowRejection`) in `objects.rejected`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkTransformed {
    /// The chunk.
    pub work: ChunkWork,
    /// Rows mapped.
    pub rows_accepted: u64,
    /// Rows rejected, each recorded with its reason.
    pub rows_rejected: u64,
    /// Rejected rows by reason code; the rows themselves are in `objects.rejected`.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Accepted events without a time, stamped with the run's start (`if_missing: import_time`).
    #[serde(default)]
    pub events_time_imputed: u64,
    /// Dry runs: how each date property's text values fared under its declared format and
    /// the same pattern with year, month and day in other orders, by property name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub date_formats: BTreeMap<String, crate::format_hint::FormatTally>,
}

impl Message for ChunkTransformed {
    const ROUTING_KEY: &'static str = "chunk.transformed";
}

/// What loading a chunk did (or, in a dry run, would do) to the profile and event stores.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadStats {
    /// Rows staged (accepted by the transformer and not rejected by the loader).
    pub rows_loaded: u64,
    /// Profiles the chunk created.
    pub profiles_created: u64,
    /// Profiles whose properties changed.
    pub profiles_updated: u64,
    /// Existing profiles whose values the chunk did not change (a row equal to the profile,
    /// or one whose every value a newer row had already set).
    pub profiles_unchanged: u64,
    /// Values not applied because a newer source row had set that property (on the profile,
    /// or in the same chunk).
    #[serde(default)]
    pub properties_stale: u64,
    /// Rows that matched no profile and could not create one (`update_only`, `profile_id`).
    pub rows_skipped: u64,
    /// Rows resolved by an email or phone that several profiles share.
    pub identities_ambiguous: u64,
    /// Rows whose unique identities name two different profiles: applied by precedence and
    /// recorded in `objects.load_rejected` as `identity_conflict`, not counted as rejected.
    #[serde(default)]
    pub identities_conflicting: u64,
    /// Rows the loader rejected; they are in `objects.load_rejected`.
    pub rows_rejected: u64,
    /// Rejected rows by reason code.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Dry runs only: up to `MAX_SAMPLE_ROWS` rows and what would happen to them.
    pub sample: Vec<SampleRow>,
    /// Events stored for the first time.
    pub events_inserted: u64,
    /// Events whose dedup key the store already held (a replay, a resync or a repeated row).
    pub events_duplicate: u64,
    /// Profiles deleted.
    pub profiles_deleted: u64,
    /// Delete rows whose identity named no profile.
    pub deletes_not_found: u64,
    /// Mirror imports: profiles whose properties the run unset because the source rows that
    /// had set them are gone.
    #[serde(default)]
    pub profiles_removed_from_source: u64,
    /// Consent: changes of status by channel or group (`group:` and its name), then by the
    /// status changed to.
    #[serde(default)]
    pub subscriptions_changed: BTreeMap<String, BTreeMap<String, u64>>,
    /// Consent: statuses not applied because the profile holds a newer one.
    #[serde(default)]
    pub subscriptions_stale: u64,
    /// Delivery to a destination: records the platform accepted (or, in a dry run, that
    /// would be sent).
    #[serde(default)]
    pub records_delivered: u64,
    /// Delivery to a destination: requests sent (or, in a dry run, that would be).
    #[serde(default)]
    pub delivery_requests: u64,
    /// A dry run's first request to the destination as it would be sent, credentials masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_sample: Option<serde_json::Value>,
}

/// A dry run reports at most this many sample rows.
pub const MAX_SAMPLE_ROWS: usize = 20;

/// One row of a dry run's sample: the identity it matched, its outcome and its properties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleRow {
    /// The source row's key.
    pub row_key: String,
    /// The identity kind that named the profile (`external_id`, `email`, `alias:<label>`...).
    pub identity_kind: Option<String>,
    /// The identity's value.
    pub identity_value: Option<String>,
    /// The profile it matched or created, when it did.
    pub profile_id: Option<i64>,
    /// `created`, `updated`, `unchanged`, `skipped` or `stale` (every value it carries is
    /// older than the one the store holds).
    pub outcome: String,
    /// The profile's properties after the row would be applied, as a JSON object.
    pub properties: serde_json::Value,
    /// The names the row would not apply because a newer row set them (`$email` and `$phone`
    /// for email and phone).
    #[serde(default)]
    pub stale_properties: Vec<String>,
    /// The consent statuses the row carries, by channel or group.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subscriptions: BTreeMap<String, String>,
}

/// The loader's output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkLoaded {
    /// The chunk.
    pub chunk: ChunkRef,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// What the load did, counted.
    pub stats: LoadStats,
}

impl Message for ChunkLoaded {
    const ROUTING_KEY: &'static str = "chunk.loaded";
}

/// The pipeline stage a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageName {
    /// Reading from the source.
    Extract,
    /// Mapping.
    Transform,
    /// Loading into the stores.
    Load,
}

impl StageName {
    /// The stage's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            StageName::Extract => "extract",
            StageName::Transform => "transform",
            StageName::Load => "load",
        }
    }
}

/// A chunk gave up: a permanent error, or `max_attempts` retries spent. The message itself has
/// gone to the dead-letter queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkFailed {
    /// The chunk.
    pub chunk: ChunkRef,
    /// The stage that gave up.
    pub stage: StageName,
    /// How many times it tried.
    pub attempts: u32,
    /// The last error.
    pub error: StageError,
}

impl Message for ChunkFailed {
    const ROUTING_KEY: &'static str = "chunk.failed";
}

/// Any outcome a stage reports on the results queue.
#[derive(Debug, Clone)]
pub enum ChunkResult {
    /// The chunk was read.
    Extracted(ChunkExtracted),
    /// The chunk was mapped.
    Transformed(ChunkTransformed),
    /// The chunk was loaded.
    Loaded(ChunkLoaded),
    /// A stage gave up on the chunk.
    Failed(ChunkFailed),
}

impl crate::envelope::Incoming for ChunkResult {
    fn decode(payload: &[u8]) -> Result<Self, crate::envelope::EnvelopeError> {
        use crate::envelope::{decode, kind_of, EnvelopeError};
        let kind = kind_of(payload)?;
        Ok(match kind.as_str() {
            ChunkExtracted::ROUTING_KEY => ChunkResult::Extracted(decode(payload)?),
            ChunkTransformed::ROUTING_KEY => ChunkResult::Transformed(decode(payload)?),
            ChunkLoaded::ROUTING_KEY => ChunkResult::Loaded(decode(payload)?),
            ChunkFailed::ROUTING_KEY => ChunkResult::Failed(decode(payload)?),
            _ => {
                return Err(EnvelopeError::Kind {
                    expected: "chunk result",
                    found: kind,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectionKind;

    #[test]
    fn a_kind_reads_as_the_name_the_closed_list_of_kinds_wrote() {
        // Messages queued before kinds became names carry the kind as a unit variant.
        #[derive(serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        enum Written {
            Redshift,
        }
        let bytes = rmp_serde::to_vec_named(&Written::Redshift).unwrap();
        let kind: ConnectionKind = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(kind, ConnectionKind::REDSHIFT);
        let again = rmp_serde::to_vec_named(&kind).unwrap();
        assert_eq!(again, bytes, "and is written the same way");
    }
}
