//! Planning on a PostgreSQL source: the run's upper bound (below `now − settle_lag` and the
//! oldest open transaction) and chunk boundaries, placed by the table's statistics on large
//! ranges and found by stepping the `(watermark, key)` index on small ones.

use super::estimate::{Cut, Distribution};
use super::sql::{
    bound_params, key_select, keyset, quote_ident, quote_qualified, readable, relation,
    watermark_select, without_watermark,
};
use super::{classify, Dialect, PostgresSource, APPLICATION_NAME};
use crate::error::SourceError;
use crate::source::{KeyKind, RangePlan, Rows, SourceShape, Unreadable, UNREADABLE_SAMPLES};
use chrono::{DateTime, Utc};
use sluice_proto::{Bound, KeyValue, Reason, SourceRelation};
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// Source clock, the lag cap, and the start of the oldest transaction of anyone but Sluice on
/// this database (`NULL` when none is open or the role cannot see it).
const CLOCK_SQL: &str = "SELECT now(), now() - make_interval(secs => $1::float8), \
    (SELECT min(xact_start) FROM pg_stat_activity \
      WHERE datname = current_database() AND pid <> pg_backend_pid() \
        AND xact_start IS NOT NULL AND backend_type = 'client backend' \
        AND coalesce(application_name, '') <> $2)";

/// Redshift's clock: no transaction start times to look at, so the settle lag alone caps.
const REDSHIFT_CLOCK_SQL: &str = "SELECT now(), now() - ($1::float8 * interval '1 second'), \
    NULL::timestamptz WHERE $2::text IS NOT NULL";

/// Parameters for a bound, in the order `bound_params` expects.
pub(crate) fn bound_values(bound: &Bound) -> [Box<dyn ToSql + Sync + Send>; 2] {
    let key: Box<dyn ToSql + Sync + Send> = match &bound.key {
        KeyValue::Int(v) => Box::new(*v),
        KeyValue::Text(v) => Box::new(v.clone()),
    };
    [Box::new(bound.watermark), key]
}

fn bound_of(shape: &SourceShape, row: &Row) -> Bound {
    let watermark: DateTime<Utc> = row.get(0);
    let key = match shape.key {
        KeyKind::Int => KeyValue::Int(row.get(1)),
        KeyKind::Text { .. } => KeyValue::Text(row.get(1)),
    };
    Bound { watermark, key }
}

/// A `WHERE` clause for `(wm, key) > lo AND (wm, key) <= hi`, with parameters from `$first`.
pub(crate) fn range_clause(
    shape: &SourceShape,
    dialect: Dialect,
    lo: Option<&Bound>,
    hi: &Bound,
    first: usize,
) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let keyset = keyset(shape);
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut clause = format!("{} AND ", readable(shape, dialect == Dialect::Postgres));
    let mut next = first;
    if let Some(lo) = lo {
        clause.push_str(&format!("{keyset} > {} AND ", bound_params(shape, next)));
        params.extend(bound_values(lo));
        next += 2;
    }
    clause.push_str(&format!("{keyset} <= {}", bound_params(shape, next)));
    params.extend(bound_values(hi));
    (clause, params)
}

/// A `WHERE` clause for `rows`, with parameters from `$first`: a chunk's range, or the
/// listed keys at or before a bound (the keys as one array parameter).
pub(crate) fn rows_clause(
    shape: &SourceShape,
    dialect: Dialect,
    rows: Rows<'_>,
    first: usize,
) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let (keys, upto) = match rows {
        Rows::Range { lo, hi } => return range_clause(shape, dialect, lo, hi, first),
        Rows::Keys { keys, upto } => (keys, upto),
    };
    let keyset = keyset(shape);
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut clause = format!(
        "{} AND {keyset} <= {}",
        readable(shape, dialect == Dialect::Postgres),
        bound_params(shape, first)
    );
    params.extend(bound_values(upto));
    let column = quote_ident(&shape.spec.key_column);
    let any = first + 2;
    match &shape.key {
        KeyKind::Int => {
            let ints: Vec<i64> = keys
                .iter()
                .filter_map(|k| match k {
                    KeyValue::Int(v) => Some(*v),
                    KeyValue::Text(v) => v.parse().ok(),
                })
                .collect();
            clause.push_str(&format!(" AND {column} = ANY(${any}::int8[])"));
            params.push(Box::new(ints));
        }
        KeyKind::Text { type_name } => {
            let texts: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            clause.push_str(&format!(
                " AND {column} = ANY(${any}::text[]::{type_name}[])"
            ));
            params.push(Box::new(texts));
        }
    }
    (clause, params)
}

pub(crate) fn as_refs(params: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

impl PostgresSource {
    /// The position just before the first row whose watermark is at or after `at`: the last
    /// row before it in `(watermark, key)` order, or `None` when there is none. A run from
    /// there reads every row from `at` on; rewinds and replays start here.
    pub(super) async fn position_before_inner(
        &self,
        shape: &SourceShape,
        at: DateTime<Utc>,
    ) -> Result<Option<Bound>, SourceError> {
        let wm = quote_ident(&shape.spec.watermark_column);
        let sql = format!(
            "SELECT {}, {} FROM {} WHERE {wm} < $1::timestamptz::{} AND {} ORDER BY {wm} DESC, {} DESC LIMIT 1",
            watermark_select(shape),
            key_select(shape),
            relation(&shape.spec.relation),
            shape.watermark_type,
            readable(shape, self.dialect() == Dialect::Postgres),
            quote_ident(&shape.spec.key_column)
        );
        Ok(self
            .client()
            .query_opt(&sql, &[&at])
            .await
            .map_err(classify)?
            .map(|row| bound_of(shape, &row)))
    }

    /// Fixes a run's upper bound: the last `(watermark, key)` past `lo` whose watermark is below
    /// the cap, and counts rows stamped in the future (held back, reported, never blocking).
    pub(super) async fn plan_range_inner(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        settle_lag: Duration,
        until: Option<DateTime<Utc>>,
    ) -> Result<RangePlan, SourceError> {
        let client = self.client();
        let clock = client
            .query_one(
                match self.dialect() {
                    Dialect::Postgres => CLOCK_SQL,
                    Dialect::Redshift => REDSHIFT_CLOCK_SQL,
                },
                &[&settle_lag.as_secs_f64(), &APPLICATION_NAME],
            )
            .await
            .map_err(classify)?;
        let now: DateTime<Utc> = clock.get(0);
        let lag_cap: DateTime<Utc> = clock.get(1);
        let oldest_transaction: Option<DateTime<Utc>> = clock.get(2);
        let cap = oldest_transaction.map_or(lag_cap, |t| t.min(lag_cap));
        // A replay window ends at `until` (exclusive), below the settle cap.
        let cap = until.map_or(cap, |u| u.min(cap));

        let hi = self.last_before(shape, lo, cap).await?;

        let wm = quote_ident(&shape.spec.watermark_column);
        let from = relation(&shape.spec.relation);
        // Infinite watermarks are counted as unreadable, not as held back.
        let future_sql = format!(
            "SELECT count(*) FROM {from} WHERE {wm} > $1::timestamptz::{t}{finite}",
            t = shape.watermark_type,
            finite = match self.dialect() {
                Dialect::Postgres => format!(" AND {wm} < 'infinity'::{}", shape.watermark_type),
                Dialect::Redshift => String::new(),
            }
        );
        let held_back_future: i64 = client
            .query_one(&future_sql, &[&now])
            .await
            .map_err(classify)?
            .get(0);
        // NULL keys are counted among the rows the run's range covers, or up to the cap when
        // it reads nothing, so a later run does not count them again.
        let upper = hi.as_ref().map_or(cap, |h| h.watermark);
        let unreadable = self.unreadable(shape, lo, upper).await?;
        Ok(RangePlan {
            hi,
            cap,
            held_back_future: held_back_future as u64,
            unreadable,
        })
    }

    /// The rows no range can hold: those without a usable watermark (every run counts them
    /// until they get one) and those without a key whose watermark is past `lo` up to `upper`.
    async fn unreadable(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        upper: DateTime<Utc>,
    ) -> Result<Unreadable, SourceError> {
        let infinite = self.dialect() == Dialect::Postgres;
        let wm = quote_ident(&shape.spec.watermark_column);
        let key = quote_ident(&shape.spec.key_column);
        let from = relation(&shape.spec.relation);
        let mut no_key = format!(
            "{key} IS NULL AND {wm} <= $1::timestamptz::{t}",
            t = shape.watermark_type
        );
        if infinite {
            no_key.push_str(&format!(
                " AND {wm} > '-infinity'::{}",
                shape.watermark_type
            ));
        }
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(upper)];
        if let Some(lo) = lo {
            no_key.push_str(&format!(
                " AND {wm} > $2::timestamptz::{}",
                shape.watermark_type
            ));
            params.push(Box::new(lo.watermark));
        }
        let no_watermark = without_watermark(shape, infinite);
        let mut found = Unreadable::default();
        for (reason, condition, params) in [
            (
                Reason::MissingWatermark,
                no_watermark.as_str(),
                &params[..0],
            ),
            (Reason::MissingKey, no_key.as_str(), &params[..]),
        ] {
            let refs = as_refs(params);
            let count: i64 = self
                .client()
                .query_one(
                    &format!("SELECT count(*) FROM {from} WHERE {condition}"),
                    &refs,
                )
                .await
                .map_err(classify)?
                .get(0);
            if count == 0 {
                continue;
            }
            let sample = format!(
                "SELECT {key}::text, {wm}::text FROM {from} WHERE {condition} LIMIT {UNREADABLE_SAMPLES}"
            );
            let rows = self
                .client()
                .query(&sample, &refs)
                .await
                .map_err(classify)?;
            found.add(
                reason,
                count as u64,
                rows.iter().map(|row| (row.get(0), row.get(1))),
            );
        }
        Ok(found)
    }

    /// Cuts `(lo, hi]` into chunks of about `chunk_rows` rows and returns the boundaries
    /// between them (not `hi` itself), so chunk `i` is `(b[i-1], b[i]]`. A range the table's
    /// statistics put over `exact_planning_rows` is cut where they place every `chunk_rows`
    /// rows, one index probe per chunk; the rest (small ranges, rows written since the last
    /// ANALYZE, ties too large for one chunk) is stepped exactly along the index.
    pub(super) async fn chunk_boundaries_inner(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        hi: &Bound,
        chunk_rows: u64,
    ) -> Result<Vec<Bound>, SourceError> {
        let mut boundaries = Vec::new();
        let mut from = lo.cloned();
        if let Some(distribution) = self.distribution(shape).await? {
            let start = lo.map_or(i64::MIN, |b| b.watermark.timestamp_micros());
            let end = hi.watermark.timestamp_micros().min(distribution.end());
            if distribution.rows_between(start, end) > self.exact_planning_rows() as f64 {
                for cut in distribution.cuts(start, end, chunk_rows) {
                    let found = match cut {
                        Cut::Before(at) => self
                            .last_before(shape, from.as_ref(), micros_to_time(at))
                            .await?
                            .into_iter()
                            .collect(),
                        Cut::Within(at) => {
                            self.step(shape, from.as_ref(), hi, chunk_rows, Some(at))
                                .await?
                        }
                    };
                    for b in found {
                        if &b != hi && Some(&b) != from.as_ref() {
                            boundaries.push(b.clone());
                            from = Some(b);
                        }
                    }
                }
            }
        }
        boundaries.extend(
            self.step(shape, from.as_ref(), hi, chunk_rows, None)
                .await?,
        );
        Ok(boundaries)
    }

    /// Boundaries every `chunk_rows` rows past `lo` up to `hi`, only among rows stamped `tie`
    /// when given: the rows numbered in keyset order whose number is a multiple of
    /// `chunk_rows`, read in one statement. The server walks the range once either way; one
    /// statement instead of one per chunk spares a remote source a round trip and its think
    /// time per chunk.
    async fn step(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        hi: &Bound,
        chunk_rows: u64,
        tie: Option<i64>,
    ) -> Result<Vec<Bound>, SourceError> {
        let from = relation(&shape.spec.relation);
        let order = format!(
            "{}, {}",
            quote_ident(&shape.spec.watermark_column),
            quote_ident(&shape.spec.key_column)
        );
        let (mut clause, mut params) = range_clause(shape, self.dialect(), lo, hi, 1);
        if let Some(at) = tie {
            params.push(Box::new(micros_to_time(at)));
            clause.push_str(&format!(
                " AND {} = ${}::timestamptz::{}",
                quote_ident(&shape.spec.watermark_column),
                params.len(),
                shape.watermark_type
            ));
        }
        params.push(Box::new(chunk_rows.max(1) as i64));
        let sql = format!(
            "SELECT sluice_w, sluice_k FROM (
                SELECT {} AS sluice_w, {} AS sluice_k, row_number() OVER (ORDER BY {order}) AS sluice_n
                  FROM {from} WHERE {clause}) AS sluice_rows
              WHERE sluice_n % ${} = 0 ORDER BY sluice_n",
            watermark_select(shape),
            key_select(shape),
            params.len(),
        );
        let rows = self
            .client()
            .query(&sql, &as_refs(&params))
            .await
            .map_err(classify)?;
        Ok(rows
            .iter()
            .map(|row| bound_of(shape, row))
            .filter(|b| b != hi)
            .collect())
    }

    /// The last row past `lo` stamped before `at` (a run's cap, or a cut at or before the
    /// run's upper bound): one backward probe of the index, starting at `at`. An upper bound on
    /// `(watermark, key)` as well would let the scan start further on and walk back over every
    /// row in between.
    async fn last_before(
        &self,
        shape: &SourceShape,
        lo: Option<&Bound>,
        at: DateTime<Utc>,
    ) -> Result<Option<Bound>, SourceError> {
        let wm = quote_ident(&shape.spec.watermark_column);
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(at)];
        let mut clause = format!(
            "{wm} < $1::timestamptz::{} AND {}",
            shape.watermark_type,
            readable(shape, self.dialect() == Dialect::Postgres)
        );
        if let Some(lo) = lo {
            clause.push_str(&format!(
                " AND {} > {}",
                keyset(shape),
                bound_params(shape, 2)
            ));
            params.extend(bound_values(lo));
        }
        let sql = format!(
            "SELECT {}, {} FROM {} WHERE {clause} ORDER BY {wm} DESC, {} DESC LIMIT 1",
            watermark_select(shape),
            key_select(shape),
            relation(&shape.spec.relation),
            quote_ident(&shape.spec.key_column)
        );
        Ok(self
            .client()
            .query_opt(&sql, &as_refs(&params))
            .await
            .map_err(classify)?
            .map(|row| bound_of(shape, &row)))
    }

    /// The watermark's distribution from the planner statistics of a table source; `None` for
    /// a query, on Redshift, or when the table has not been analyzed.
    async fn distribution(&self, shape: &SourceShape) -> Result<Option<Distribution>, SourceError> {
        let SourceRelation::Table(table) = &shape.spec.relation else {
            return Ok(None);
        };
        if self.dialect() != Dialect::Postgres {
            return Ok(None);
        }
        let micros = |array: &str| {
            format!(
                "ARRAY(SELECT (extract(epoch FROM v::timestamptz) * 1000000)::int8
                         FROM unnest({array}::text::{}[]) AS v WHERE isfinite(v))",
                shape.watermark_type
            )
        };
        let sql = format!(
            "SELECT c.reltuples::float8, s.null_frac::float8, {}, {},
                    coalesce(s.most_common_freqs, '{{}}')::float8[]
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname
                              AND s.attname = $2
              WHERE c.oid = to_regclass($1)
              ORDER BY s.inherited DESC LIMIT 1",
            micros("s.histogram_bounds"),
            micros("s.most_common_vals"),
        );
        let Some(row) = self
            .client()
            .query_opt(
                &sql,
                &[&quote_qualified(table), &shape.spec.watermark_column],
            )
            .await
            .map_err(classify)?
        else {
            return Ok(None);
        };
        let common_values: Vec<i64> = row.get(3);
        let common_freqs: Vec<f64> = row.get(4);
        Ok(Distribution::new(
            row.get(2),
            common_values.into_iter().zip(common_freqs).collect(),
            row.get(1),
            row.get(0),
        ))
    }
}

fn micros_to_time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MAX_UTC)
}
