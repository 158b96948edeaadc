//! Files in object storage (local, S3, GCS, Azure): Parquet, CSV and NDJSON files under a
//! prefix, or the files of a Delta Lake table, read as one table. The watermark is a column,
//! or `_modified` for each file's modification time. Planning reads the key and watermark of
//! the rows into a sorted index and a chunk read filters each file to `(lo, hi]`; both skip
//! the files whose watermark range (the modification time, or Delta's statistics) cannot
//! reach the range they need.

mod delta;

pub use crate::source::chunk_schema;

use crate::connector::Connector;
use crate::connector::{feed, BatchSink};
use crate::error::SourceError;
use crate::registry::Kind;
use crate::source::{ColumnShape, KeyKind, RangePlan, Rows, SourceShape, SourceSpec};
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::compute::kernels::cmp::{eq, gt, lt, lt_eq};
use arrow::compute::{and, cast, filter_record_batch, or};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use sluice_proto::{Bound, KeyValue, SourceRelation};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The watermark name that means "the file's modification time".
pub const MODIFIED: &str = "_modified";

/// Files under a prefix of an object store, or a Delta table's files.
pub struct FilesSource {
    store: Arc<dyn ObjectStore>,
    /// The connection's URL: Delta tables are opened under it.
    url: String,
    layout: Layout,
    /// The sorted index of the rows after a watermark, built once per session (planning asks
    /// for it more than once).
    index: tokio::sync::Mutex<Option<Index>>,
}

/// A sorted row index and the watermark it was built from (`None`: every row).
type Index = (Option<DateTime<Utc>>, Arc<Vec<Bound>>);

/// How the files of a table are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Every data file under the folder.
    Folder,
    /// The files of the Delta table's current version, from its log.
    Delta,
}

/// One data file and, where known, the range its watermarks lie in.
#[derive(Debug, Clone)]
struct DataFile {
    meta: ObjectMeta,
    format: Format,
    /// Inclusive bounds on the file's watermark values; `None` when nothing is known.
    watermark_range: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl DataFile {
    /// Whether the file may hold a row with a watermark in `[from, to]`.
    fn may_hold(&self, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> bool {
        let Some((min, max)) = self.watermark_range else {
            return true;
        };
        from.is_none_or(|from| max >= from) && to.is_none_or(|to| min <= to)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Parquet,
    Csv,
    Ndjson,
}

fn format_of(path: &Path) -> Option<Format> {
    let name = path.as_ref().to_ascii_lowercase();
    if name.ends_with(".parquet") {
        Some(Format::Parquet)
    } else if name.ends_with(".csv") {
        Some(Format::Csv)
    } else if name.ends_with(".ndjson") || name.ends_with(".jsonl") || name.ends_with(".json") {
        Some(Format::Ndjson)
    } else {
        None
    }
}

/// An object store's refusal, classified: S3 answers 403 both for a bad key or signature
/// (the credentials) and for a denied action (the grants), so the message tells them apart.
pub(crate) fn storage(e: object_store::Error) -> SourceError {
    let text = format!("object storage: {e}");
    match e {
        object_store::Error::NotFound { .. } => SourceError::MissingObject(text),
        object_store::Error::Unauthenticated { .. } => SourceError::Authentication(text),
        object_store::Error::PermissionDenied { .. }
            if [
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "InvalidToken",
                "ExpiredToken",
                "AuthenticationFailed",
                "invalid_grant",
            ]
            .iter()
            .any(|code| text.contains(code)) =>
        {
            SourceError::Authentication(text)
        }
        object_store::Error::PermissionDenied { .. } => SourceError::PermissionDenied(text),
        // Listings report a refusal as a generic error with the status and S3's answer.
        _ if text.contains("403 Forbidden") && text.contains("AccessDenied") => {
            SourceError::PermissionDenied(text)
        }
        _ if text.contains("403 Forbidden") || text.contains("401 Unauthorized") => {
            SourceError::Authentication(text)
        }
        _ => SourceError::Unreachable(text),
    }
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The type a column is read as: the supported types kept, anything else as text.
fn normalized(t: &DataType) -> DataType {
    match t {
        t if t.is_integer() => DataType::Int64,
        t if t.is_floating() => DataType::Float64,
        DataType::Boolean => DataType::Boolean,
        DataType::Date32 | DataType::Date64 => DataType::Date32,
        DataType::Timestamp(_, _) => ts_type(),
        _ => DataType::Utf8,
    }
}

/// Parquet, CSV or NDJSON files under a prefix in object storage.
pub static FILES: Kind = Kind {
    name: "files",
    tunnel_port: None,
    check_url: |url| check_url("files", url),
    open: |url| {
        Box::pin(
            async move { Ok(Box::new(FilesSource::connect(&url).await?) as Box<dyn Connector>) },
        )
    },
};

/// Delta Lake tables in object storage, read through their transaction logs.
pub static DELTA: Kind = Kind {
    name: "delta",
    tunnel_port: None,
    check_url: |url| check_url("delta", url),
    open: |url| {
        Box::pin(async move {
            Ok(Box::new(FilesSource::connect_delta(&url).await?) as Box<dyn Connector>)
        })
    },
};

/// An object-store URL (or a local path).
fn check_url(kind: &str, url: &str) -> Result<(), String> {
    if ["file://", "s3://", "gs://", "az://", "/"]
        .iter()
        .any(|p| url.starts_with(p))
    {
        Ok(())
    } else {
        Err(format!(
            "a {kind} connection takes a file://, s3://, gs:// or az:// URL"
        ))
    }
}

impl FilesSource {
    /// Opens the store a `file://`, `s3://`, `gs://` or `az://` URL names.
    pub async fn connect(url: &str) -> Result<Self, SourceError> {
        Self::open(url, Layout::Folder)
    }

    /// Opens the store holding Delta tables, each under an import's `table` folder.
    pub async fn connect_delta(url: &str) -> Result<Self, SourceError> {
        Self::open(url, Layout::Delta)
    }

    fn open(url: &str, layout: Layout) -> Result<Self, SourceError> {
        let store = sluice_proto::storage::open(url)
            .map_err(|e| SourceError::InvalidSpec(format!("connection url: {e}")))?;
        Ok(FilesSource {
            store,
            url: url.to_string(),
            layout,
            index: tokio::sync::Mutex::new(None),
        })
    }

    fn prefix(spec: &SourceSpec) -> Result<Path, SourceError> {
        match &spec.relation {
            SourceRelation::Table(prefix) => Ok(Path::from(prefix.as_str())),
            SourceRelation::Query(_) => Err(SourceError::InvalidSpec(
                "file sources take { table: <folder> }, not a query".into(),
            )),
        }
    }

    /// The import's data files in name order, with what is known of their watermark ranges.
    /// The newest file and its schema: the one a later run reads anyway.
    async fn newest_schema(
        &self,
        spec: &SourceSpec,
    ) -> Result<(ObjectMeta, arrow::datatypes::SchemaRef), SourceError> {
        let files = self.files(spec).await?;
        // The newest file has the current schema, and is the one a later run reads anyway.
        let newest = files
            .iter()
            .max_by_key(|f| (f.meta.last_modified, f.meta.location.clone()));
        let DataFile { meta, format, .. } = newest.ok_or_else(|| {
            SourceError::MissingObject(format!(
                "no .parquet, .csv or .ndjson files under {:?}",
                Self::prefix(spec)
                    .map(|p| p.to_string())
                    .unwrap_or_default()
            ))
        })?;
        let batches = self.read_file(meta, *format).await?;
        let schema = batches
            .first()
            .map(|b| b.schema())
            .ok_or_else(|| SourceError::MissingObject(format!("{} is empty", meta.location)))?;
        Ok((meta.clone(), schema))
    }

    async fn files(&self, spec: &SourceSpec) -> Result<Vec<DataFile>, SourceError> {
        let prefix = Self::prefix(spec)?;
        if self.layout == Layout::Delta {
            return delta::files(&self.url, prefix.as_ref(), &spec.watermark_column).await;
        }
        let modified = spec.watermark_column == MODIFIED;
        let mut files: Vec<DataFile> = self
            .store
            .list(Some(&prefix))
            .try_filter_map(|meta| async move {
                // Watermarks are kept to the microsecond: so is the file's time.
                let at = DateTime::from_timestamp_micros(meta.last_modified.timestamp_micros())
                    .unwrap_or(meta.last_modified);
                Ok(format_of(&meta.location).map(|format| DataFile {
                    watermark_range: modified.then_some((at, at)),
                    meta,
                    format,
                }))
            })
            .try_collect()
            .await
            .map_err(storage)?;
        files.sort_by(|a, b| a.meta.location.cmp(&b.meta.location));
        Ok(files)
    }

    /// Reads one file whole as record batches.
    async fn read_file(
        &self,
        meta: &ObjectMeta,
        format: Format,
    ) -> Result<Vec<RecordBatch>, SourceError> {
        let bytes = self
            .store
            .get(&meta.location)
            .await
            .map_err(storage)?
            .bytes()
            .await
            .map_err(storage)?;
        let bad = |e: &dyn std::fmt::Display| {
            SourceError::Query(format!("reading {}: {e}", meta.location))
        };
        match format {
            Format::Parquet => {
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .map_err(|e| bad(&e))?
                    .build()
                    .map_err(|e| bad(&e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(&e))
            }
            Format::Csv => {
                let (schema, _) = arrow_csv::reader::Format::default()
                    .with_header(true)
                    .infer_schema(std::io::Cursor::new(&bytes), Some(1000))
                    .map_err(|e| bad(&e))?;
                arrow_csv::ReaderBuilder::new(Arc::new(schema))
                    .with_header(true)
                    .build(std::io::Cursor::new(bytes))
                    .map_err(|e| bad(&e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(&e))
            }
            Format::Ndjson => {
                let (schema, _) =
                    arrow_json::reader::infer_json_schema(std::io::Cursor::new(&bytes), Some(1000))
                        .map_err(|e| bad(&e))?;
                arrow_json::ReaderBuilder::new(Arc::new(schema))
                    .build(std::io::Cursor::new(bytes))
                    .map_err(|e| bad(&e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(&e))
            }
        }
    }

    /// The rows, as chunk batches (key and watermark normalized, mapped columns), of every
    /// file that may hold a watermark in `[from, to]`.
    async fn each_chunk_batch<F, Fut>(
        &self,
        shape: &SourceShape,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        mut on_batch: F,
    ) -> Result<(), SourceError>
    where
        F: FnMut(RecordBatch) -> Fut,
        Fut: Future<Output = Result<(), SourceError>>,
    {
        let schema = chunk_schema(shape);
        let files = self.files(&shape.spec).await?;
        let wanted: Vec<&DataFile> = files.iter().filter(|f| f.may_hold(from, to)).collect();
        tracing::debug!(
            files = files.len(),
            read = wanted.len(),
            "skipped the files whose watermarks are out of range"
        );
        for file in wanted {
            for batch in self.read_file(&file.meta, file.format).await? {
                on_batch(normalize(&batch, shape, &schema, file.meta.last_modified)?).await?;
            }
        }
        Ok(())
    }

    /// The sorted `(watermark, key)` of every row at or after `from`, read once per session.
    async fn index(
        &self,
        shape: &SourceShape,
        from: Option<DateTime<Utc>>,
    ) -> Result<Arc<Vec<Bound>>, SourceError> {
        let mut cached = self.index.lock().await;
        if let Some((built_from, index)) = cached.as_ref() {
            if built_from.is_none() || *built_from == from {
                return Ok(index.clone());
            }
        }
        let mut index = Vec::new();
        self.each_chunk_batch(shape, from, None, |batch| {
            index.extend(bounds_of(&batch));
            async { Ok(()) }
        })
        .await?;
        index.sort_by(compare);
        let index = Arc::new(index);
        *cached = Some((from, index.clone()));
        Ok(index)
    }

    /// The rows of `rows`, file by file.
    async fn read_rows<F, Fut>(
        &self,
        shape: &SourceShape,
        rows: Rows<'_>,
        _batch_rows: usize,
        mut on_batch: F,
    ) -> Result<u64, SourceError>
    where
        F: FnMut(RecordBatch) -> Fut,
        Fut: Future<Output = Result<(), SourceError>>,
    {
        let mut total = 0u64;
        let mut selected = Vec::new();
        let (from, until) = match rows {
            Rows::Range { lo, hi } => (lo.map(|b| b.watermark), hi.watermark),
            Rows::Keys { upto, .. } => (None, upto.watermark),
        };
        self.each_chunk_batch(shape, from, Some(until), |batch| {
            let kept = selection(&batch, rows).and_then(|mask| {
                filter_record_batch(&batch, &mask)
                    .map_err(|e| SourceError::Query(format!("filtering rows: {e}")))
            });
            if let Ok(rows) = &kept {
                if rows.num_rows() > 0 {
                    selected.push(rows.clone());
                }
            }
            async move { kept.map(|_| ()) }
        })
        .await?;
        for batch in selected {
            total += batch.num_rows() as u64;
            on_batch(batch).await?;
        }
        Ok(total)
    }
}

fn compare(a: &Bound, b: &Bound) -> std::cmp::Ordering {
    a.watermark
        .cmp(&b.watermark)
        .then_with(|| match (&a.key, &b.key) {
            (KeyValue::Int(x), KeyValue::Int(y)) => x.cmp(y),
            (KeyValue::Text(x), KeyValue::Text(y)) => x.cmp(y),
            (KeyValue::Int(_), KeyValue::Text(_)) => std::cmp::Ordering::Less,
            (KeyValue::Text(_), KeyValue::Int(_)) => std::cmp::Ordering::Greater,
        })
}

fn bounds_of(batch: &RecordBatch) -> Vec<Bound> {
    let wm = batch
        .column(1)
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    let key = batch.column(0);
    (0..batch.num_rows())
        .filter(|i| !wm.is_null(*i) && !key.is_null(*i))
        .filter_map(|i| {
            Some(Bound {
                watermark: DateTime::from_timestamp_micros(wm.value(i))?,
                key: match key.data_type() {
                    DataType::Int64 => {
                        KeyValue::Int(key.as_primitive::<arrow::datatypes::Int64Type>().value(i))
                    }
                    _ => KeyValue::Text(key.as_string::<i32>().value(i).to_string()),
                },
            })
        })
        .collect()
}

/// The mask of the batch's rows that are among `rows`.
fn selection(batch: &RecordBatch, rows: Rows<'_>) -> Result<BooleanArray, SourceError> {
    let (keys, upto) = match rows {
        Rows::Range { lo, hi } => return within(batch, lo, hi),
        Rows::Keys { keys, upto } => (keys, upto),
    };
    let upper = within(batch, None, upto)?;
    let key = batch.column(0);
    let listed: BooleanArray = (0..batch.num_rows())
        .map(|i| {
            let value = match key.data_type() {
                _ if key.is_null(i) => return Some(false),
                DataType::Int64 => {
                    KeyValue::Int(key.as_primitive::<arrow::datatypes::Int64Type>().value(i))
                }
                _ => KeyValue::Text(key.as_string::<i32>().value(i).to_string()),
            };
            Some(keys.contains(&value))
        })
        .collect();
    and(&upper, &listed).map_err(|e| SourceError::Query(format!("filtering rows: {e}")))
}

/// The mask of rows with `lo < (watermark, key) <= hi`.
fn within(
    batch: &RecordBatch,
    lo: Option<&Bound>,
    hi: &Bound,
) -> Result<BooleanArray, SourceError> {
    let fail = |e: arrow::error::ArrowError| SourceError::Query(format!("filtering rows: {e}"));
    let (key, wm) = (batch.column(0), batch.column(1));
    let scalars = |b: &Bound| -> (ArrayRef, ArrayRef) {
        let k: ArrayRef = match &b.key {
            KeyValue::Int(v) => Arc::new(Int64Array::new_scalar(*v).into_inner()),
            KeyValue::Text(v) => Arc::new(StringArray::new_scalar(v.as_str()).into_inner()),
        };
        let w: ArrayRef = Arc::new(
            TimestampMicrosecondArray::new_scalar(b.watermark.timestamp_micros())
                .into_inner()
                .with_timezone("UTC"),
        );
        (k, w)
    };
    let (hk, hw) = scalars(hi);
    let (hk, hw) = (arrow::array::Scalar::new(hk), arrow::array::Scalar::new(hw));
    let upper = or(
        &lt(wm, &hw).map_err(fail)?,
        &and(&eq(wm, &hw).map_err(fail)?, &lt_eq(key, &hk).map_err(fail)?).map_err(fail)?,
    )
    .map_err(fail)?;
    let Some(lo) = lo else {
        return Ok(upper);
    };
    let (lk, lw) = scalars(lo);
    let (lk, lw) = (arrow::array::Scalar::new(lk), arrow::array::Scalar::new(lw));
    let lower = or(
        &gt(wm, &lw).map_err(fail)?,
        &and(&eq(wm, &lw).map_err(fail)?, &gt(key, &lk).map_err(fail)?).map_err(fail)?,
    )
    .map_err(fail)?;
    and(&lower, &upper).map_err(fail)
}

/// A file's batch in the chunk schema: key, watermark (or the file's modification time) and
/// the mapped columns, cast to their normalized types.
fn normalize(
    batch: &RecordBatch,
    shape: &SourceShape,
    schema: &SchemaRef,
    modified: DateTime<Utc>,
) -> Result<RecordBatch, SourceError> {
    let fail = |e: &dyn std::fmt::Display| SourceError::Query(format!("reading a file: {e}"));
    let column = |name: &str, t: &DataType| -> Result<ArrayRef, SourceError> {
        let array = batch
            .column_by_name(name)
            .ok_or_else(|| SourceError::MissingObject(format!("a file has no column {name:?}")))?;
        cast(array, t).map_err(|e| fail(&e))
    };
    let mut columns = vec![column(&shape.spec.key_column, schema.field(0).data_type())?];
    columns.push(if shape.spec.watermark_column == MODIFIED {
        Arc::new(
            TimestampMicrosecondArray::from(vec![modified.timestamp_micros(); batch.num_rows()])
                .with_timezone("UTC"),
        )
    } else {
        column(&shape.spec.watermark_column, &ts_type())?
    });
    for (i, c) in shape.columns.iter().enumerate() {
        columns.push(column(&c.name, schema.field(i + 2).data_type())?);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| fail(&e))
}

/// Files and Delta tables read through the one connector interface.
#[async_trait::async_trait]
impl Connector for FilesSource {
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

    /// Lists the store's root.
    async fn test(&self) -> Result<(), SourceError> {
        self.store
            .list_with_delimiter(None)
            .await
            .map(|_| ())
            .map_err(storage)
    }

    /// Checks that the files and columns exist and reads their types from the newest file.
    async fn columns(&self, spec: &SourceSpec) -> Result<Vec<String>, SourceError> {
        let (_, schema) = self.newest_schema(spec).await?;
        Ok(schema.fields().iter().map(|f| f.name().clone()).collect())
    }

    async fn describe(&self, spec: &SourceSpec) -> Result<SourceShape, SourceError> {
        let (meta, schema) = self.newest_schema(spec).await?;
        let meta = &meta;
        let type_of = |name: &str| {
            schema
                .field_with_name(name)
                .map(|f| normalized(f.data_type()))
                .map_err(|_| {
                    SourceError::MissingObject(format!(
                        "column {name:?} is not in {}",
                        meta.location
                    ))
                })
        };
        let key = match type_of(&spec.key_column)? {
            DataType::Int64 => KeyKind::Int,
            t => KeyKind::Text {
                type_name: t.to_string(),
            },
        };
        let watermark_type = if spec.watermark_column == MODIFIED {
            "modified".to_string()
        } else {
            match type_of(&spec.watermark_column)? {
                t @ (DataType::Timestamp(..) | DataType::Date32) => t.to_string(),
                t => {
                    return Err(SourceError::InvalidSpec(format!(
                        "watermark column {:?} is {t}, not a date-time",
                        spec.watermark_column
                    )))
                }
            }
        };
        let columns = spec
            .columns
            .iter()
            .map(|name| {
                Ok(ColumnShape {
                    name: name.clone(),
                    type_name: type_of(name)?.to_string(),
                })
            })
            .collect::<Result<_, SourceError>>()?;
        Ok(SourceShape {
            spec: spec.clone(),
            key,
            watermark_type,
            columns,
        })
    }

    async fn plan_range(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        settle_lag: Duration,
        until: Option<DateTime<Utc>>,
    ) -> Result<RangePlan, SourceError> {
        let now = Utc::now();
        let cap = crate::source::read_cap(now, settle_lag, until);
        let index = self.index(shape, lo.map(|b| b.watermark)).await?;
        let hi = index
            .iter()
            .rfind(|b| b.watermark < cap && lo.is_none_or(|lo| compare(b, lo).is_gt()))
            .cloned();
        let held_back_future = index.iter().filter(|b| b.watermark > now).count() as u64;
        Ok(RangePlan {
            hi,
            cap,
            held_back_future,
            unreadable: Default::default(),
        })
    }

    async fn chunk_boundaries(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        hi: &Bound,
        chunk_rows: u64,
    ) -> Result<Vec<Bound>, SourceError> {
        let index = self.index(shape, lo.map(|b| b.watermark)).await?;
        let inside: Vec<&Bound> = index
            .iter()
            .filter(|b| lo.is_none_or(|lo| compare(b, lo).is_gt()) && compare(b, hi).is_le())
            .collect();
        Ok(inside
            .iter()
            .skip(chunk_rows.max(1) as usize - 1)
            .step_by(chunk_rows.max(1) as usize)
            .filter(|b| compare(b, hi).is_lt())
            .map(|b| (*b).clone())
            .collect())
    }

    async fn position_before(
        &self,
        shape: &SourceShape,
        at: DateTime<Utc>,
    ) -> Result<Option<Bound>, SourceError> {
        let index = self.index(shape, None).await?;
        Ok(index.iter().rfind(|b| b.watermark < at).cloned())
    }

    /// The first `rows` rows in `(watermark, key)` order.
    async fn preview(&self, shape: &SourceShape, rows: usize) -> Result<RecordBatch, SourceError> {
        let index = self.index(shape, None).await?;
        let schema = chunk_schema(shape);
        let Some(last) = index
            .get(rows.max(1).min(index.len()).saturating_sub(1))
            .cloned()
        else {
            return Ok(RecordBatch::new_empty(schema));
        };
        let mut batches = Vec::new();
        let first = Rows::Range {
            lo: None,
            hi: &last,
        };
        self.read_rows(shape, first, rows, |b| {
            batches.push(b);
            async { Ok(()) }
        })
        .await?;
        let all = arrow::compute::concat_batches(&schema, &batches)
            .map_err(|e| SourceError::Query(e.to_string()))?;
        let order = arrow::compute::lexsort_to_indices(
            &[
                arrow::compute::SortColumn {
                    values: all.column(1).clone(),
                    options: None,
                },
                arrow::compute::SortColumn {
                    values: all.column(0).clone(),
                    options: None,
                },
            ],
            Some(rows.max(1)),
        )
        .map_err(|e| SourceError::Query(e.to_string()))?;
        arrow::compute::take_record_batch(&all, &order)
            .map_err(|e| SourceError::Query(e.to_string()))
    }
}
