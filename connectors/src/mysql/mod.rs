//! The MySQL / MariaDB source (mysql_async): read-only sessions in UTC with a statement time
//! limit, keyset planning on `(watermark, key)`, and chunk reads in one consistent snapshot,
//! streamed as Arrow batches.

mod decode;

use crate::connector::Connector;
use crate::connector::{feed, BatchSink};
use crate::error::SourceError;
use crate::keyset::{Binder, Keyset};
use crate::registry::Kind;
use crate::source::{
    ColumnShape, KeyKind, RangePlan, Rows, SourceShape, SourceSpec, Unreadable, UNREADABLE_SAMPLES,
};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use decode::{Batches, Decode};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Value};
use sluice_proto::{Bound, KeyValue, Reason, SourceRelation};
use std::future::Future;
use std::time::Duration;
use tokio::sync::Mutex;

pub use decode::chunk_schema;

/// Statements slower than this are stopped by the server (milliseconds).
const MAX_EXECUTION_MS: u64 = 15 * 60 * 1000;

/// MySQL or MariaDB.
pub static MYSQL: Kind = Kind {
    name: "mysql",
    tunnel_port: Some(3306),
    check_url: |url| {
        if url.starts_with("mysql://") {
            Ok(())
        } else {
            Err("a mysql connection takes a mysql://user:password@host:3306/database URL".into())
        }
    },
    open: |url| {
        Box::pin(
            async move { Ok(Box::new(MysqlSource::connect(&url).await?) as Box<dyn Connector>) },
        )
    },
};

/// A read-only session on a MySQL or MariaDB source.
pub struct MysqlSource {
    conn: Mutex<Conn>,
}

/// Quotes an identifier, each dotted part on its own: `a.b` → `` `a`.`b` ``.
pub fn quote_ident(name: &str) -> String {
    name.split('.')
        .map(|part| format!("`{}`", part.replace('`', "``")))
        .collect::<Vec<_>>()
        .join(".")
}

fn relation(r: &SourceRelation) -> String {
    match r {
        SourceRelation::Table(t) => quote_ident(t),
        SourceRelation::Query(q) => format!("({q}) AS sluice_source"),
    }
}

/// What went wrong, classified so the user knows what to fix.
pub(crate) fn classify(e: mysql_async::Error) -> SourceError {
    match &e {
        mysql_async::Error::Server(s) => match s.code {
            1045 | 1698 => SourceError::Authentication(s.message.clone()),
            1044 | 1142 | 1143 | 1227 => SourceError::PermissionDenied(s.message.clone()),
            1049 | 1146 | 1054 => SourceError::MissingObject(s.message.clone()),
            _ => SourceError::Query(s.message.clone()),
        },
        mysql_async::Error::Io(_) => SourceError::Unreachable(e.to_string()),
        _ => SourceError::Query(e.to_string()),
    }
}

fn micros(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

fn key_param(k: &KeyValue) -> Value {
    match k {
        KeyValue::Int(v) => Value::Int(*v),
        KeyValue::Text(v) => Value::Bytes(v.clone().into_bytes()),
    }
}

/// MySQL's `?` placeholders, with the values they stand for.
#[derive(Default)]
struct Params(Vec<Value>);

impl Binder for Params {
    fn instant(&mut self, t: &DateTime<Utc>) -> String {
        self.0.push(Value::Bytes(micros(t).into_bytes()));
        "?".into()
    }

    fn key(&mut self, k: &KeyValue) -> String {
        self.0.push(key_param(k));
        "?".into()
    }
}

impl MysqlSource {
    /// Connects with a read-only UTC session and a statement time limit.
    pub async fn connect(url: &str) -> Result<Self, SourceError> {
        let opts = Opts::from_url(url)
            .map_err(|e| SourceError::InvalidSpec(format!("connection url: {e}")))?;
        // Connection failures name the address tried and the OS's reason.
        let address = format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port());
        let mut conn = tokio::time::timeout(Duration::from_secs(10), Conn::new(opts))
            .await
            .map_err(|_| SourceError::Unreachable(format!("{address}: no answer within 10 s")))?
            .map_err(|e| match classify(e) {
                SourceError::Unreachable(reason) => {
                    SourceError::Unreachable(format!("{address}: {reason}"))
                }
                other => other,
            })?;
        for setting in [
            "SET SESSION time_zone = '+00:00'",
            "SET SESSION TRANSACTION READ ONLY",
        ] {
            conn.query_drop(setting).await.map_err(classify)?;
        }
        // MySQL and MariaDB name the statement limit differently; set whichever exists.
        let limit = format!("SET SESSION max_execution_time = {MAX_EXECUTION_MS}");
        if conn.query_drop(&limit).await.is_err() {
            let seconds = MAX_EXECUTION_MS / 1000;
            conn.query_drop(format!("SET SESSION max_statement_time = {seconds}"))
                .await
                .map_err(classify)?;
        }
        Ok(MysqlSource {
            conn: Mutex::new(conn),
        })
    }

    async fn position(
        &self,
        sql: String,
        params: Vec<Value>,
        shape: &SourceShape,
    ) -> Result<Option<Bound>, SourceError> {
        let row: Option<(Value, Value)> = self
            .conn
            .lock()
            .await
            .exec_first(sql, params)
            .await
            .map_err(classify)?;
        Ok(row.map(|(wm, key)| Bound {
            watermark: decode::timestamp(&wm).unwrap_or_default(),
            key: match shape.key {
                KeyKind::Int => KeyValue::Int(decode::int(&key).unwrap_or_default()),
                KeyKind::Text { .. } => KeyValue::Text(decode::text(&key).unwrap_or_default()),
            },
        }))
    }

    fn keyset(shape: &SourceShape) -> Keyset {
        let key = quote_ident(&shape.spec.key_column);
        Keyset {
            wm: quote_ident(&shape.spec.watermark_column),
            key_select: key.clone(),
            key,
            from: relation(&shape.spec.relation),
        }
    }

    /// The rows no range can hold: without a watermark (every run), and without a key among
    /// those whose watermark is past `lo` up to `upper`.
    async fn unreadable(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        upper: DateTime<Utc>,
    ) -> Result<Unreadable, SourceError> {
        let Keyset { wm, key, from, .. } = Self::keyset(shape);
        let mut no_key = format!("{key} IS NULL AND {wm} <= ?");
        let mut params = vec![Value::Bytes(micros(&upper).into_bytes())];
        if let Some(lo) = lo {
            no_key.push_str(&format!(" AND {wm} > ?"));
            params.push(Value::Bytes(micros(&lo.watermark).into_bytes()));
        }
        let mut found = Unreadable::default();
        let mut conn = self.conn.lock().await;
        for (reason, condition, params) in [
            (
                Reason::MissingWatermark,
                format!("{wm} IS NULL"),
                Vec::new(),
            ),
            (Reason::MissingKey, no_key, params),
        ] {
            let count: Option<i64> = conn
                .exec_first(
                    format!("SELECT COUNT(*) FROM {from} WHERE {condition}"),
                    params.clone(),
                )
                .await
                .map_err(classify)?;
            let count = count.unwrap_or(0).max(0) as u64;
            if count == 0 {
                continue;
            }
            let rows: Vec<(Option<String>, Option<String>)> = conn
                .exec(
                    format!(
                        "SELECT CAST({key} AS CHAR), CAST({wm} AS CHAR) FROM {from} WHERE {condition} LIMIT {UNREADABLE_SAMPLES}"
                    ),
                    params,
                )
                .await
                .map_err(classify)?;
            found.add(reason, count, rows);
        }
        Ok(found)
    }

    /// Reads `rows` in one consistent, read-only snapshot, in batches of `batch_rows`.
    async fn read_rows<F, Fut>(
        &self,
        shape: &SourceShape,
        rows: Rows<'_>,
        batch_rows: usize,
        on_batch: F,
    ) -> Result<u64, SourceError>
    where
        F: FnMut(RecordBatch) -> Fut,
        Fut: Future<Output = Result<(), SourceError>>,
    {
        let mut params = Params::default();
        let filter = Self::keyset(shape).selecting(rows, &mut params);
        self.stream(
            shape,
            &format!("WHERE {filter}"),
            params.0,
            batch_rows,
            on_batch,
        )
        .await
    }

    async fn stream<F, Fut>(
        &self,
        shape: &SourceShape,
        tail: &str,
        params: Vec<Value>,
        batch_rows: usize,
        mut on_batch: F,
    ) -> Result<u64, SourceError>
    where
        F: FnMut(RecordBatch) -> Fut,
        Fut: Future<Output = Result<(), SourceError>>,
    {
        let (select, decodes) = decode::projection(shape);
        let sql = format!(
            "SELECT {select} FROM {} {tail}",
            relation(&shape.spec.relation)
        );
        let mut conn = self.conn.lock().await;
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await
            .map_err(classify)?;
        let result = async {
            let mut batches = Batches::new(decodes, chunk_schema(shape), batch_rows);
            let mut rows = conn.exec_iter(sql, params).await.map_err(classify)?;
            while let Some(row) = rows.next().await.map_err(classify)? {
                if let Some(batch) = batches.push(row)? {
                    on_batch(batch).await?;
                }
            }
            drop(rows);
            if let Some(batch) = batches.rest()? {
                on_batch(batch).await?;
            }
            Ok(batches.total)
        }
        .await;
        let _ = conn.query_drop("ROLLBACK").await;
        result
    }
}

/// MySQL reads through the one connector interface.
#[async_trait::async_trait]
impl Connector for MysqlSource {
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
        chunk_schema(shape)
    }

    /// Runs a trivial query.
    async fn test(&self) -> Result<(), SourceError> {
        self.conn
            .lock()
            .await
            .query_drop("SELECT 1")
            .await
            .map_err(classify)
    }

    /// Every planning statement runs on its own (autocommit), so it reads the source as it is
    /// then; a session the server closed fails its next statement, and the caller opens anew.
    fn reusable(&self) -> bool {
        true
    }

    /// Checks that the source and its columns exist and reads their types.
    async fn columns(&self, spec: &SourceSpec) -> Result<Vec<String>, SourceError> {
        let sql = format!("SELECT * FROM {} LIMIT 0", relation(&spec.relation));
        let mut conn = self.conn.lock().await;
        let result = conn.exec_iter(sql, ()).await.map_err(classify)?;
        let names = result
            .columns_ref()
            .iter()
            .map(|c| c.name_str().to_string())
            .collect();
        drop(result);
        Ok(names)
    }

    /// Whether a table has an index leading with `(watermark, key)`; a view has none.
    async fn ordering_index(
        &self,
        spec: &SourceSpec,
    ) -> Result<Option<crate::source::OrderingIndex>, SourceError> {
        let SourceRelation::Table(table) = &spec.relation else {
            return Ok(None);
        };
        let (schema, name) = match table.rsplit_once('.') {
            Some((schema, name)) => (Some(schema.to_string()), name.to_string()),
            None => (None, table.clone()),
        };
        let mut conn = self.conn.lock().await;
        let base: Option<String> = conn
            .exec_first(
                "SELECT table_type FROM information_schema.tables
                  WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?",
                (schema.clone(), name.clone()),
            )
            .await
            .map_err(classify)?;
        if base.as_deref() != Some("BASE TABLE") {
            return Ok(None);
        }
        let leading: Vec<String> = conn
            .exec(
                "SELECT GROUP_CONCAT(column_name ORDER BY seq_in_index SEPARATOR '\u{1f}')
                   FROM information_schema.statistics
                  WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ? AND seq_in_index <= 2
                  GROUP BY index_name",
                (schema, name),
            )
            .await
            .map_err(classify)?;
        let wanted = format!("{}\u{1f}{}", spec.watermark_column, spec.key_column);
        Ok(Some(crate::source::OrderingIndex {
            present: leading.iter().any(|l| l.eq_ignore_ascii_case(&wanted)),
            statement: format!(
                "CREATE INDEX sluice_watermark_key ON {} ({}, {});",
                relation(&spec.relation),
                quote_ident(&spec.watermark_column),
                quote_ident(&spec.key_column)
            ),
        }))
    }

    async fn describe(&self, spec: &SourceSpec) -> Result<SourceShape, SourceError> {
        let names = spec.read_columns();
        let select: Vec<String> = names.iter().map(|n| quote_ident(n)).collect();
        let sql = format!(
            "SELECT {} FROM {} LIMIT 0",
            select.join(", "),
            relation(&spec.relation)
        );
        let mut conn = self.conn.lock().await;
        let result = conn.exec_iter(sql, ()).await.map_err(classify)?;
        let columns: Vec<(String, mysql_async::consts::ColumnType, bool)> = result
            .columns_ref()
            .iter()
            .map(|c| {
                (
                    c.name_str().to_string(),
                    c.column_type(),
                    c.flags()
                        .contains(mysql_async::consts::ColumnFlags::UNSIGNED_FLAG),
                )
            })
            .collect();
        drop(result);
        let type_of = |i: usize| Decode::for_column(columns[i].1).name();
        let key = match Decode::for_column(columns[0].1) {
            Decode::Int => KeyKind::Int,
            _ => KeyKind::Text {
                type_name: type_of(0).to_string(),
            },
        };
        if !matches!(
            Decode::for_column(columns[1].1),
            Decode::Timestamp | Decode::Date
        ) {
            return Err(SourceError::InvalidSpec(format!(
                "watermark column {:?} is {}, not a date-time",
                spec.watermark_column,
                type_of(1)
            )));
        }
        Ok(SourceShape {
            spec: spec.clone(),
            key,
            watermark_type: type_of(1).to_string(),
            columns: columns
                .iter()
                .enumerate()
                .skip(2)
                .map(|(i, _)| ColumnShape {
                    name: names[i].clone(),
                    type_name: type_of(i).to_string(),
                })
                .collect(),
        })
    }

    /// The run's upper bound after `lo`, below `now − settle_lag` and `until`.
    async fn plan_range(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        settle_lag: Duration,
        until: Option<DateTime<Utc>>,
    ) -> Result<RangePlan, SourceError> {
        let (now_text,): (String,) = self
            .conn
            .lock()
            .await
            .query_first("SELECT CAST(NOW(6) AS CHAR)")
            .await
            .map_err(classify)?
            .ok_or_else(|| SourceError::Query("the server did not say what time it is".into()))?;
        let now = decode::parse_timestamp(&now_text)
            .ok_or_else(|| SourceError::Query(format!("server time {now_text:?}")))?;
        let cap = crate::source::read_cap(now, settle_lag, until);
        let keyset = Self::keyset(shape);
        let mut params = Params::default();
        let sql = keyset.last_below(&cap, lo, &mut params);
        let hi = self.position(sql, params.0, shape).await?;
        let mut params = Params::default();
        let sql = keyset.count_after(&now, &mut params);
        let held: Option<i64> = self
            .conn
            .lock()
            .await
            .exec_first(sql, params.0)
            .await
            .map_err(classify)?;
        let upper = hi.as_ref().map_or(cap, |h| h.watermark);
        let unreadable = self.unreadable(shape, lo, upper).await?;
        Ok(RangePlan {
            hi,
            cap,
            held_back_future: held.unwrap_or(0).max(0) as u64,
            unreadable,
        })
    }

    /// Boundaries cutting `(lo, hi]` into chunks of about `chunk_rows` rows.
    async fn chunk_boundaries(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        hi: &Bound,
        chunk_rows: u64,
    ) -> Result<Vec<Bound>, SourceError> {
        let keyset = Self::keyset(shape);
        crate::source::keyset_boundaries(lo, hi, |previous| {
            let mut params = Params::default();
            let sql = keyset.step(previous.as_ref(), hi, chunk_rows, &mut params);
            self.position(sql, params.0, shape)
        })
        .await
    }

    /// The position just before the first row at or after `at`.
    async fn position_before(
        &self,
        shape: &SourceShape,
        at: DateTime<Utc>,
    ) -> Result<Option<Bound>, SourceError> {
        let mut params = Params::default();
        let sql = Self::keyset(shape).last_before(&at, &mut params);
        self.position(sql, params.0, shape).await
    }

    /// The first `rows` rows in `(watermark, key)` order.
    async fn preview(&self, shape: &SourceShape, rows: usize) -> Result<RecordBatch, SourceError> {
        let mut batches = Vec::new();
        self.stream(
            shape,
            &Self::keyset(shape).first(rows),
            Vec::new(),
            rows.max(1),
            |batch| {
                batches.push(batch);
                async { Ok(()) }
            },
        )
        .await?;
        arrow::compute::concat_batches(&chunk_schema(shape), &batches)
            .map_err(|e| SourceError::Query(format!("building a record batch: {e}")))
    }
}
