//! Reading lineage (what happened to each row, `sluice_proto::lineage`) with DataFusion: one
//! run's rows filtered by key, profile or outcome with their counts by outcome, and the runs
//! that touched one profile across the workspace's kept lineage.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Int32Type, Int64Type};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::prelude::{col, lit, DataFrame, ParquetReadOptions, SessionContext};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};
use sluice_proto::lineage::{self, column};
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

/// The address the object store is known by in a lineage query.
const STORE_URL: &str = "sluice-objects://lineage";

/// Why lineage could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LineageError {
    /// The object store failed.
    #[error("object store: {0}")]
    Objects(#[from] object_store::Error),
    /// The query failed.
    #[error("reading lineage: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
}

/// Which rows of a run's lineage to list.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LineageFilter {
    /// Only the row with this source key.
    pub key: Option<String>,
    /// Only the rows of this profile.
    pub profile: Option<i64>,
    /// Only rows with this outcome: `created`, `updated`, `unchanged`, `superseded`,
    /// `skipped`, `rejected`, `inserted`, `duplicate`, `deleted` or `not_found`.
    pub outcome: Option<String>,
    /// Page number, from 1.
    pub page: Option<u32>,
    /// Rows per page, 1 to 1000 (100 by default).
    pub per_page: Option<u32>,
}

impl LineageFilter {
    /// The filter as the API's query string.
    pub fn query_string(&self) -> String {
        crate::api::query_string([
            ("key", self.key.clone()),
            ("profile", self.profile.map(|p| p.to_string())),
            ("outcome", self.outcome.clone()),
            ("page", self.page.map(|p| p.to_string())),
            ("per_page", self.per_page.map(|p| p.to_string())),
        ])
    }
}

/// What happened to one row of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LineageEntry {
    /// The chunk the row was read in.
    pub chunk: i32,
    /// The source row's key.
    pub row_key: String,
    /// The identity kind that named its profile.
    pub identity_kind: Option<String>,
    /// That identity's value.
    pub identity_value: Option<String>,
    /// The profile it matched, created or deleted.
    pub profile_id: Option<i64>,
    /// What happened to it.
    pub outcome: String,
    /// Why it was rejected (or the conflict of identities it was applied despite).
    pub reason: Option<String>,
    /// Its values not applied because a newer row had set them.
    pub properties_stale: i64,
}

/// A page of a run's lineage with the counts by outcome of every row the filter selects.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunLineage {
    /// The run.
    pub run_id: Uuid,
    /// Rows the filter selects, by outcome.
    pub counts: BTreeMap<String, i64>,
    /// The page's rows, by chunk and key.
    pub rows: Vec<LineageEntry>,
}

/// A run that touched a profile, with what its rows did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProfileRun {
    /// The run.
    pub run_id: Uuid,
    /// Its import.
    pub import: String,
    /// Its status.
    pub status: String,
    /// When it was requested.
    pub requested_at: chrono::DateTime<chrono::Utc>,
    /// The run's rows of the profile, by outcome.
    pub outcomes: BTreeMap<String, i64>,
    /// Their source keys.
    pub row_keys: Vec<String>,
}

/// Refuses an outcome no row can have, naming the field.
pub fn outcome_problem(outcome: &str) -> Option<String> {
    match sluice_proto::lineage::Outcome::parse(outcome) {
        Some(_) => None,
        None => Some(format!(
            "unknown outcome {outcome:?}; one of {}",
            sluice_proto::lineage::Outcome::ALL
                .map(|o| o.as_str())
                .join(", ")
        )),
    }
}

/// The lineage objects under `prefix` as one table, or `None` when there are none (a run
/// without lineage, or whose lineage was deleted).
async fn table(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
) -> Result<Option<DataFrame>, LineageError> {
    let any = store
        .list(Some(&Path::from(prefix)))
        .try_next()
        .await?
        .is_some();
    if !any {
        return Ok(None);
    }
    let mut config = datafusion::prelude::SessionConfig::new();
    // Text columns read as the loader wrote them (Utf8), which the readers below expect.
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    // A workspace's lineage lies in one folder per import and run.
    config
        .options_mut()
        .execution
        .listing_table_ignore_subdirectory = false;
    let ctx = SessionContext::new_with_config(config);
    ctx.register_object_store(
        &url::Url::parse(STORE_URL).expect("a static url"),
        store.clone(),
    );
    let path = format!("{STORE_URL}/{}/", prefix.trim_end_matches('/'));
    Ok(Some(
        ctx.read_parquet(path, ParquetReadOptions::default())
            .await?,
    ))
}

/// Counts by the values of a text column and a count column.
fn counted(batches: &[RecordBatch]) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for b in batches {
        let names = b.column(0).as_string::<i32>();
        let n = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            *counts.entry(names.value(i).to_string()).or_insert(0) += n.value(i);
        }
    }
    counts
}

fn text(b: &RecordBatch, name: &str, i: usize) -> Option<String> {
    let c = b.column_by_name(name)?;
    let c = c.as_string::<i32>();
    (!c.is_null(i)).then(|| c.value(i).to_string())
}

fn entries(batches: &[RecordBatch]) -> Vec<LineageEntry> {
    let mut out = Vec::new();
    for b in batches {
        let chunks = b
            .column_by_name(column::CHUNK)
            .map(|c| c.as_primitive::<Int32Type>());
        let profiles = b
            .column_by_name(column::PROFILE_ID)
            .map(|c| c.as_primitive::<Int64Type>());
        let stale = b
            .column_by_name(column::PROPERTIES_STALE)
            .map(|c| c.as_primitive::<Int64Type>());
        for i in 0..b.num_rows() {
            out.push(LineageEntry {
                chunk: chunks.map_or(0, |c| c.value(i)),
                row_key: text(b, column::ROW_KEY, i).unwrap_or_default(),
                identity_kind: text(b, column::IDENTITY_KIND, i),
                identity_value: text(b, column::IDENTITY_VALUE, i),
                profile_id: profiles.and_then(|c| (!c.is_null(i)).then(|| c.value(i))),
                outcome: text(b, column::OUTCOME, i).unwrap_or_default(),
                reason: text(b, column::REASON, i),
                properties_stale: stale.map_or(0, |c| c.value(i)),
            });
        }
    }
    out
}

/// Reads lineage a second time when the first read fails: retention may delete objects
/// between the listing and the read of them, and the second read sees what is left (nothing
/// at all: an empty answer). An error that is not such a race fails the second read too.
async fn read_twice<T, F, Fut>(read: F) -> Result<T, LineageError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, LineageError>>,
{
    match read().await {
        Err(e) => {
            tracing::debug!(error = %e, "lineage read failed; reading it again");
            read().await
        }
        done => done,
    }
}

/// A page of a run's lineage (`limit` rows from `offset`, by chunk and key) with the counts
/// by outcome of every row `filter` selects.
pub async fn of_run(
    store: &Arc<dyn ObjectStore>,
    run: (i64, i64, Uuid),
    filter: &LineageFilter,
    limit: usize,
    offset: usize,
) -> Result<RunLineage, LineageError> {
    read_twice(|| read_run(store, run, filter, limit, offset)).await
}

/// `of_run`, read once.
async fn read_run(
    store: &Arc<dyn ObjectStore>,
    (workspace_id, import_id, run_id): (i64, i64, Uuid),
    filter: &LineageFilter,
    limit: usize,
    offset: usize,
) -> Result<RunLineage, LineageError> {
    let empty = RunLineage {
        run_id,
        counts: BTreeMap::new(),
        rows: Vec::new(),
    };
    let prefix = lineage::run_prefix(workspace_id, import_id, run_id);
    let Some(mut df) = table(store, &prefix).await? else {
        return Ok(empty);
    };
    if let Some(key) = &filter.key {
        df = df.filter(col(column::ROW_KEY).eq(lit(key.as_str())))?;
    }
    if let Some(profile) = filter.profile {
        df = df.filter(col(column::PROFILE_ID).eq(lit(profile)))?;
    }
    if let Some(outcome) = &filter.outcome {
        df = df.filter(col(column::OUTCOME).eq(lit(outcome.as_str())))?;
    }
    let counts = df
        .clone()
        .aggregate(vec![col(column::OUTCOME)], vec![count(lit(1)).alias("n")])?
        .collect()
        .await?;
    let rows = df
        .sort(vec![
            col(column::CHUNK).sort(true, false),
            col(column::ROW_KEY).sort(true, false),
        ])?
        .limit(offset, Some(limit))?
        .collect()
        .await?;
    Ok(RunLineage {
        run_id,
        counts: counted(&counts),
        rows: entries(&rows),
    })
}

/// The runs whose kept lineage names `profile_id` in the workspace (dry runs left out), by
/// run: (run id, outcome, rows, their keys).
pub async fn runs_of_profile(
    store: &Arc<dyn ObjectStore>,
    workspace_id: i64,
    profile_id: i64,
) -> Result<BTreeMap<Uuid, (BTreeMap<String, i64>, Vec<String>)>, LineageError> {
    read_twice(|| read_runs_of_profile(store, workspace_id, profile_id)).await
}

/// `runs_of_profile`, read once.
async fn read_runs_of_profile(
    store: &Arc<dyn ObjectStore>,
    workspace_id: i64,
    profile_id: i64,
) -> Result<BTreeMap<Uuid, (BTreeMap<String, i64>, Vec<String>)>, LineageError> {
    let prefix = lineage::workspace_prefix(workspace_id);
    let Some(df) = table(store, &prefix).await? else {
        return Ok(BTreeMap::new());
    };
    let batches = df
        .filter(
            col(column::PROFILE_ID)
                .eq(lit(profile_id))
                .and(col(column::DRY_RUN).eq(lit(false))),
        )?
        .select_columns(&[column::RUN_ID, column::OUTCOME, column::ROW_KEY])?
        .collect()
        .await?;
    let mut runs: BTreeMap<Uuid, (BTreeMap<String, i64>, Vec<String>)> = BTreeMap::new();
    for b in &batches {
        for i in 0..b.num_rows() {
            let Some(run) = text(b, column::RUN_ID, i).and_then(|r| r.parse().ok()) else {
                continue;
            };
            let entry = runs.entry(run).or_default();
            *entry
                .0
                .entry(text(b, column::OUTCOME, i).unwrap_or_default())
                .or_insert(0) += 1;
            entry.1.extend(text(b, column::ROW_KEY, i));
        }
    }
    Ok(runs)
}

/// The runs that touched a profile within the workspace's kept lineage, newest first, with
/// their imports and statuses from the control plane.
pub async fn profile_history(
    control: &impl tokio_postgres::GenericClient,
    store: &Arc<dyn ObjectStore>,
    workspace_id: i64,
    profile_id: i64,
) -> Result<Vec<ProfileRun>, HistoryError> {
    let runs = runs_of_profile(store, workspace_id, profile_id).await?;
    let ids: Vec<Uuid> = runs.keys().copied().collect();
    let rows = control
        .query(
            "SELECT r.id, i.name, r.status, r.created_at FROM control.runs r
               JOIN control.imports i ON i.id = r.import_id
              WHERE r.workspace_id = $1 AND r.id = ANY($2)
              ORDER BY r.created_at DESC",
            &[&workspace_id, &ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let run_id: Uuid = r.get(0);
            let (outcomes, mut row_keys) = runs.get(&run_id).cloned().unwrap_or_default();
            row_keys.sort();
            ProfileRun {
                run_id,
                import: r.get(1),
                status: r.get(2),
                requested_at: r.get(3),
                outcomes,
                row_keys,
            }
        })
        .collect())
}

/// A profile's history within the kept lineage.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProfileHistory {
    /// The profile.
    pub profile_id: i64,
    /// The runs that touched it, newest first (dry runs left out).
    pub runs: Vec<ProfileRun>,
}

/// The profile an identity names for its history: by `profile_id` even when the profile has
/// since been deleted (its history says by which run), else by a lookup of the identity. The
/// caller checks the kind (`consent::kind_problem`).
pub async fn history_profile(
    store: &impl tokio_postgres::GenericClient,
    workspace_id: i64,
    kind: &str,
    value: &str,
) -> Result<Option<i64>, HistoryError> {
    if kind == "profile_id" {
        return value.trim().parse().map(Some).map_err(|_| {
            HistoryError::Invalid(format!("{value:?}: a profile_id is a whole number"))
        });
    }
    Ok(crate::consent::profile_id(store, workspace_id, kind, value).await?)
}

/// Why a profile's history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The identity cannot name a profile.
    #[error("{0}")]
    Invalid(String),
    /// The lineage could not be read.
    #[error("{0}")]
    Lineage(#[from] LineageError),
    /// The control plane failed.
    #[error("control plane: {0}")]
    Control(#[from] tokio_postgres::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
        ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    };
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A store whose objects retention deletes just after they were listed: the first read
    /// of an object deletes every object and finds nothing.
    #[derive(Debug)]
    struct Swept {
        inner: InMemory,
        swept: AtomicBool,
    }

    impl std::fmt::Display for Swept {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("swept")
        }
    }

    impl Swept {
        async fn sweep(&self, location: &Path) -> object_store::Result<()> {
            if !self.swept.swap(true, Ordering::SeqCst) {
                let all: Vec<ObjectMeta> = self.inner.list(None).try_collect().await?;
                for meta in all {
                    self.inner.delete(&meta.location).await?;
                }
            }
            self.inner.head(location).await.map(|_| ())
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Swept {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.sweep(location).await?;
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }

        async fn rename_opts(
            &self,
            from: &Path,
            to: &Path,
            options: RenameOptions,
        ) -> object_store::Result<()> {
            self.inner.rename_opts(from, to, options).await
        }
    }

    /// A run's one lineage object, in a store that deletes it as it is first read.
    async fn swept_run() -> Arc<dyn ObjectStore> {
        let store = Swept {
            inner: InMemory::new(),
            swept: AtomicBool::new(false),
        };
        let key = format!(
            "{}/chunk-000000.parquet",
            lineage::run_prefix(1, 2, Uuid::nil())
        );
        store
            .put(&Path::from(key), PutPayload::from_static(b"PAR1 rows PAR1"))
            .await
            .unwrap();
        Arc::new(store)
    }

    #[tokio::test]
    async fn lineage_deleted_while_it_is_read_reads_as_none() {
        let (run, all) = ((1, 2, Uuid::nil()), LineageFilter::default());
        let once = read_run(&swept_run().await, run, &all, 10, 0).await;
        assert!(once.is_err(), "a single read meets the deleted object");
        let read = of_run(&swept_run().await, run, &all, 10, 0).await.unwrap();
        assert!(read.counts.is_empty() && read.rows.is_empty(), "{read:?}");
        let history = runs_of_profile(&swept_run().await, 1, 7).await.unwrap();
        assert!(history.is_empty(), "{history:?}");
    }
}
