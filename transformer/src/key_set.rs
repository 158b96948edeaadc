//! A mirror import's key chunk: every key of the source, with the row's normalized identities,
//! is kept as the run's key set; the keys of the previous run's set that are gone (an
//! anti-join) become the chunk's output, the rows whose properties the loader unsets. The cost
//! is one key-only read of the source per run, and no table of keys in PostgreSQL.

use crate::mapping::plan;
use crate::transform::{read_object, session, writer, TransformError, Transformer};
use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use datafusion::common::JoinType;
use datafusion::dataframe::DataFrame;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{ident, lit};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use sluice_proto::{columns, ChunkTransformed, ChunkWork, KeySetWork};
use std::collections::BTreeMap;

/// The key column of the current set, renamed for the anti-join.
const CURRENT_KEY: &str = "__current_key";

/// Writes the run's key set and the rows that left the source since the previous one.
pub async fn transform_keys(
    work: &ChunkWork,
    keys: &KeySetWork,
    deps: &Transformer,
) -> Result<ChunkTransformed, TransformError> {
    let ctx = session(&deps.store, false);
    let source = read_object(&ctx, &work.objects.extracted).await?;
    let mapping = work.mapping.identities_only();
    let plan = plan(&mapping, source.schema().as_arrow(), None).map_err(TransformError::Mapping)?;
    let mut kept = vec![ident(columns::KEY)];
    kept.extend(
        mapping
            .identity
            .fields()
            .iter()
            .map(|(field, _)| ident(columns::identity(*field))),
    );
    let current = source
        .select(plan.texts)?
        .select(plan.normalize)?
        .select(kept)?;
    refuse_repeated_keys(&current).await?;
    write(deps, &keys.current, current.clone()).await?;

    let removed = match &keys.previous {
        Some(previous) => read_object(&ctx, previous).await?.join(
            current.select(vec![ident(columns::KEY).alias(CURRENT_KEY)])?,
            JoinType::LeftAnti,
            &[columns::KEY],
            &[CURRENT_KEY],
            None,
        )?,
        None => current.limit(0, Some(0))?,
    };
    // The loader stages rows with a source time; a removal's is the run's.
    let started = work.run_started_at.map(|t| t.timestamp_micros());
    let removed = removed.with_column(
        columns::UPDATED_AT,
        lit(ScalarValue::TimestampMicrosecond(
            started,
            Some("UTC".into()),
        )),
    )?;
    let rows = write(deps, &work.objects.transformed, removed).await?;
    Ok(ChunkTransformed {
        work: work.clone(),
        rows_accepted: rows,
        rows_rejected: 0,
        rejected_by_reason: BTreeMap::new(),
        events_time_imputed: 0,
        date_formats: BTreeMap::new(),
    })
}

/// A key the source holds for more than one row cannot say which row left: the run fails
/// naming it.
async fn refuse_repeated_keys(current: &DataFrame) -> Result<(), TransformError> {
    let repeated = current
        .clone()
        .aggregate(vec![ident(columns::KEY)], vec![count(lit(1)).alias("rows")])?
        .filter(ident("rows").gt(lit(1i64)))?
        .limit(0, Some(1))?
        .collect()
        .await?;
    if let Some(batch) = repeated.iter().find(|b| b.num_rows() > 0) {
        let key = batch.column(0).as_string::<i32>().value(0).to_string();
        let rows = batch.column(1).as_primitive::<Int64Type>().value(0);
        return Err(TransformError::DuplicateKey { key, rows });
    }
    Ok(())
}

/// Writes a frame to a chunk object; returns its rows.
async fn write(deps: &Transformer, key: &str, frame: DataFrame) -> Result<u64, TransformError> {
    let schema = std::sync::Arc::new(frame.schema().as_arrow().clone());
    let mut out = writer(&deps.store, key, schema)?;
    let mut rows = 0u64;
    let mut stream = frame.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        out.write(&batch)
            .await
            .map_err(|e| TransformError::Storage(e.to_string()))?;
    }
    out.finish()
        .await
        .map_err(|e| TransformError::Storage(e.to_string()))?;
    Ok(rows)
}
