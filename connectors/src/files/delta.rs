//! The data files of a Delta Lake table, read from its transaction log with the deltalake
//! crate, with each file's watermark range from the log's statistics so planning and chunk
//! reads skip the files that cannot hold a row they need.

use super::{DataFile, Format};
use crate::error::SourceError;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, Utc};
use deltalake_core::errors::DeltaTableError;
use deltalake_core::DeltaTableBuilder;
use object_store::path::Path;
use object_store::ObjectMeta;
use url::Url;

/// Delta writes timestamp statistics cut to milliseconds: a file's true maximum may lie up to
/// this much above the logged one.
const STATS_PRECISION: chrono::Duration = chrono::Duration::milliseconds(1);

fn classify(table: &str, e: DeltaTableError) -> SourceError {
    match e {
        DeltaTableError::NotATable(_) | DeltaTableError::InvalidTableLocation(_) => {
            SourceError::MissingObject(format!("no Delta table at {table:?}: {e}"))
        }
        DeltaTableError::ObjectStore {
            source: object_store::Error::NotFound { .. },
        } => SourceError::MissingObject(format!("no Delta table at {table:?}: {e}")),
        DeltaTableError::ObjectStore { source } => super::storage(source),
        _ => SourceError::Query(format!("reading the Delta log of {table:?}: {e}")),
    }
}

/// Lets the log be read from cloud object stores through the store we open ourselves. The
/// deltalake crate registers log stores only for the storage features it is built with; a
/// reader needs no more than its default log store, so that one serves every scheme.
fn register_cloud_log_stores() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let registry = deltalake_core::logstore::logstore_factories();
        let default = Url::parse("memory://")
            .ok()
            .and_then(|memory| registry.get(&memory).map(|f| f.value().clone()));
        if let Some(default) = default {
            for scheme in ["s3://", "s3a://", "gs://", "az://", "abfs://", "abfss://"] {
                if let Ok(url) = Url::parse(scheme) {
                    registry.entry(url).or_insert_with(|| default.clone());
                }
            }
        }
    });
}

/// The table's URL: the connection's root joined with the import's table folder.
fn table_url(root: &str, table: &str) -> Result<Url, SourceError> {
    let bad = |e: &dyn std::fmt::Display| SourceError::InvalidSpec(format!("Delta table URL: {e}"));
    let root = root.strip_prefix("file://").unwrap_or(root);
    let joined = format!("{}/{}", root.trim_end_matches('/'), table.trim_matches('/'));
    if joined.starts_with('/') {
        Url::from_directory_path(&joined).map_err(|()| bad(&joined))
    } else {
        Url::parse(&format!("{joined}/")).map_err(|e| bad(&e))
    }
}

/// The files of the table's current version, with the watermark range of each where the log
/// has statistics for `watermark` (`None` means the file must be read).
pub async fn files(root: &str, table: &str, watermark: &str) -> Result<Vec<DataFile>, SourceError> {
    let (root, options) = sluice_proto::storage::split_options(root);
    let url = table_url(&root, table)?;
    let mut builder = DeltaTableBuilder::from_url(url.clone()).map_err(|e| classify(table, e))?;
    if url.scheme() != "file" {
        register_cloud_log_stores();
        let store = sluice_proto::storage::open_with(
            &format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default()),
            options,
        )
        .map_err(|e| SourceError::InvalidSpec(e.to_string()))?;
        builder = builder.with_storage_backend(store, url.clone());
    }
    let delta = builder.load().await.map_err(|e| classify(table, e))?;
    let actions = delta
        .snapshot()
        .map_err(|e| classify(table, e))?
        .add_actions_table(true)
        .map_err(|e| classify(table, e))?;
    if !actions.schema().fields().is_empty() {
        refuse_unsupported(&actions, table)?;
    }
    let text = |name: &str| {
        actions
            .column_by_name(name)
            .map(|c| cast(c, &DataType::Utf8))
    };
    let paths = text("path")
        .ok_or_else(|| SourceError::Query("the Delta log lists no paths".into()))?
        .map_err(|e| SourceError::Query(e.to_string()))?;
    let paths = paths.as_string::<i32>();
    let sizes = actions
        .column_by_name("size_bytes")
        .map(|c| cast(c, &DataType::Int64))
        .transpose()
        .map_err(|e| SourceError::Query(e.to_string()))?;
    let modified = micros_column(&actions, "modification_time")?;
    let min = micros_column(&actions, &format!("min.{watermark}"))?;
    let max = micros_column(&actions, &format!("max.{watermark}"))?;
    let at = |column: &Option<arrow::array::ArrayRef>, i: usize| {
        column.as_ref().and_then(|c| {
            let c = c.as_primitive::<TimestampMicrosecondType>();
            (!c.is_null(i))
                .then(|| DateTime::<Utc>::from_timestamp_micros(c.value(i)))
                .flatten()
        })
    };
    let prefix = Path::from(table.trim_matches('/'));
    let mut out = Vec::with_capacity(actions.num_rows());
    for i in 0..actions.num_rows() {
        let relative = paths.value(i);
        let location = Path::from(format!("{prefix}/{relative}"));
        let watermark_range = match (at(&min, i), at(&max, i)) {
            (Some(lo), Some(hi)) => Some((lo, hi + STATS_PRECISION)),
            _ => None,
        };
        out.push(DataFile {
            meta: ObjectMeta {
                location,
                last_modified: at(&modified, i).unwrap_or_default(),
                size: sizes
                    .as_ref()
                    .map(|s| s.as_primitive::<arrow::datatypes::Int64Type>().value(i) as u64)
                    .unwrap_or_default(),
                e_tag: None,
                version: None,
            },
            format: Format::Parquet,
            watermark_range,
        });
    }
    out.sort_by(|a, b| a.meta.location.cmp(&b.meta.location));
    Ok(out)
}

/// A timestamp column of the log's file listing, as UTC microseconds; `None` when absent.
fn micros_column(
    actions: &RecordBatch,
    name: &str,
) -> Result<Option<arrow::array::ArrayRef>, SourceError> {
    let Some(column) = actions.column_by_name(name) else {
        return Ok(None);
    };
    let micros = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let converted = match column.data_type() {
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => cast(column, &micros),
        // The log keeps modification times as milliseconds since the epoch.
        DataType::Int64 => cast(
            column,
            &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        )
        .and_then(|ms| cast(&ms, &micros)),
        _ => return Ok(None),
    };
    converted
        .map(Some)
        .map_err(|e| SourceError::Query(format!("Delta statistics {name}: {e}")))
}

/// Deleted rows marked in deletion vectors and partition values kept out of the files would be
/// read wrongly from the Parquet files alone: such tables are refused with the reason.
fn refuse_unsupported(actions: &RecordBatch, table: &str) -> Result<(), SourceError> {
    let schema = actions.schema();
    for field in schema.fields() {
        let name = field.name();
        if let Some(column) = name.strip_prefix("partition.") {
            return Err(SourceError::InvalidSpec(format!(
                "Delta table {table:?} is partitioned by {column:?}; partitioned tables are not read yet"
            )));
        }
        if name.starts_with("deletion_vector.") {
            let column = actions.column_by_name(name).expect("listed");
            if column.null_count() < column.len() {
                return Err(SourceError::InvalidSpec(format!(
                    "Delta table {table:?} has deletion vectors; run OPTIMIZE/PURGE first or \
                     disable them, they are not read yet"
                )));
            }
        }
    }
    Ok(())
}
