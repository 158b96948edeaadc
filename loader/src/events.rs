//! Applying a staged event chunk: monthly partitions created on demand, profiles created (or
//! rows rejected) for unknown identities, and one insert that skips every dedup key the
//! workspace already holds.

use crate::load::{store_error, ChunkErrors, LoadError};
use crate::resolve::{link, ANALYZE_STAGE, UNMATCHED};
use chrono::{DateTime, Datelike, Utc};
use deadpool_postgres::Pool;
use sluice_proto::rejection::{self, RowRejection};
use sluice_proto::{LoadStats, Mapping, Reason, Records, UnknownIdentity};
use std::collections::BTreeSet;
use tokio_postgres::Transaction;

/// Serializes partition creation across loaders.
const PARTITION_LOCK: i64 = 7_405_340_578;

/// A calendar month, the unit of the event store's partitions.
pub type Month = (i32, u32);

/// The month an event time falls in.
pub fn month_of(time: DateTime<Utc>) -> Month {
    (time.year(), time.month())
}

fn partition_name((year, month): Month) -> String {
    format!("profile_store.events_{year:04}_{month:02}")
}

fn partition_range((year, month): Month) -> (String, String) {
    let next = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    (
        format!("{year:04}-{month:02}-01 00:00:00+00"),
        format!("{:04}-{:02}-01 00:00:00+00", next.0, next.1),
    )
}

/// Creates the partitions of `months` that do not exist yet, in a short transaction of their
/// own (creating a partition locks the parent table, which a load transaction must not hold).
pub async fn ensure_partitions(pool: &Pool, months: &BTreeSet<Month>) -> Result<(), LoadError> {
    if months.is_empty() {
        return Ok(());
    }
    let mut client = pool
        .get()
        .await
        .map_err(|e| LoadError::Store(e.to_string()))?;
    let names: Vec<String> = months.iter().map(|m| partition_name(*m)).collect();
    let missing: Vec<bool> = client
        .query(
            "SELECT to_regclass(n) IS NULL FROM unnest($1::text[]) WITH ORDINALITY AS x(n, i) ORDER BY i",
            &[&names],
        )
        .await
        .map_err(store_error)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !missing.contains(&true) {
        return Ok(());
    }
    let tx = client.transaction().await.map_err(store_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
        .await
        .map_err(store_error)?;
    for month in months {
        let (from, to) = partition_range(*month);
        // Names and bounds are built from integers, never from input text.
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF profile_store.events
                FOR VALUES FROM ('{from}') TO ('{to}')",
            partition_name(*month)
        ))
        .await
        .map_err(store_error)?;
    }
    tx.commit().await.map_err(store_error)
}

/// Inserts each staged event whose dedup key the workspace does not hold yet (one per key
/// within the chunk, the first by source key); with `$3` it keeps the source keys of the rows
/// inserted for the chunk's lineage. A profile's lifecycle is read from its events
/// (`profile_store.event_lifecycle`), so no profile row is touched. Returns (events inserted,
/// events staged with a profile).
pub const INSERT_EVENTS: &str = "WITH candidates AS (
    SELECT DISTINCT ON (dedup_key) key, profile_id, event_name, event_time, dedup_key, props,
           price
      FROM sluice_stage
     WHERE profile_id IS NOT NULL
     ORDER BY dedup_key, key
), fresh AS (
    INSERT INTO profile_store.event_keys (workspace_id, dedup_key)
    SELECT $1, dedup_key FROM candidates
    ON CONFLICT DO NOTHING
    RETURNING dedup_key
), new AS (
    SELECT c.* FROM candidates c JOIN fresh f USING (dedup_key)
), kept AS (
    INSERT INTO sluice_outcome (key) SELECT key FROM new WHERE $3
), inserted AS (
    INSERT INTO profile_store.events (workspace_id, profile_id, import_id, name, time, dedup_key, properties)
    SELECT $1, c.profile_id, $2, c.event_name, c.event_time, c.dedup_key,
           CASE WHEN c.price IS NULL THEN c.props
                ELSE c.props || jsonb_build_object('price', c.price::numeric) END
      FROM new c
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted),
       (SELECT count(*) FROM sluice_stage WHERE profile_id IS NOT NULL)";

/// What a dry run reports instead of inserting: (events whose key is new, events staged with
/// a profile); with `$2` it keeps the source keys of the rows it would insert for the chunk's
/// lineage. It needs no partition, so a dry run creates none.
pub const COUNT_NEW_EVENTS: &str = "WITH candidates AS (
    SELECT DISTINCT ON (dedup_key) key, dedup_key FROM sluice_stage
     WHERE profile_id IS NOT NULL ORDER BY dedup_key, key
), new AS (
    SELECT c.key, c.dedup_key FROM candidates c
     WHERE NOT EXISTS (SELECT 1 FROM profile_store.event_keys k
                        WHERE k.workspace_id = $1 AND k.dedup_key = c.dedup_key)
), kept AS (
    INSERT INTO sluice_outcome (key) SELECT key FROM new WHERE $2
)
SELECT (SELECT count(*) FROM new),
       (SELECT count(*) FROM sluice_stage WHERE profile_id IS NOT NULL)";

/// Applies a staged event chunk; rows whose identity names no profile (and cannot create
/// one) become rejections, rows whose identities name two profiles conflict records.
pub async fn apply(
    tx: &Transaction<'_>,
    (workspace, import_id): (i64, i64),
    mapping: &Mapping,
    (dry_run, lineage): (bool, bool),
    stats: &mut LoadStats,
    errors: &mut ChunkErrors,
) -> Result<(), LoadError> {
    let Records::Events(events) = &mapping.records else {
        return Err(LoadError::Store(
            "an event load of a mapping without events".into(),
        ));
    };
    let found = link(tx, workspace, mapping).await?;
    stats.profiles_created = found.profiles_created;
    stats.identities_ambiguous = found.ambiguous;
    stats.identities_conflicting = found.conflicts.len() as u64;
    errors.conflicts.extend(found.conflicts);
    // The insert's plan must see how resolution filled the stage (profiles, dedup keys).
    tx.batch_execute(ANALYZE_STAGE).await.map_err(store_error)?;
    for row in tx.query(UNMATCHED, &[]).await.map_err(store_error)? {
        let (key, kind, value, props): (String, String, Option<String>, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let message = match events.unknown_identity {
            UnknownIdentity::Reject => {
                format!("{kind} names no profile, and the import has unknown_identity: reject")
            }
            UnknownIdentity::Create => format!("{kind} names no profile and cannot create one"),
        };
        let row_values = rejection::row_values(&props);
        errors.rejected.push(RowRejection {
            row_key: key,
            column: kind,
            value: value.map(|v| rejection::truncate(&v)),
            reason: Reason::UnknownIdentity,
            message,
            row: row_values,
        });
    }
    let counts = if dry_run {
        tx.query_one(COUNT_NEW_EVENTS, &[&workspace, &lineage])
            .await
    } else {
        tx.query_one(INSERT_EVENTS, &[&workspace, &import_id, &lineage])
            .await
    }
    .map_err(store_error)?;
    let (inserted, staged): (i64, i64) = (counts.get(0), counts.get(1));
    stats.events_inserted = inserted as u64;
    stats.events_duplicate = (staged - inserted).max(0) as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_cover_one_calendar_month() {
        assert_eq!(partition_name((2024, 3)), "profile_store.events_2024_03");
        assert_eq!(
            partition_range((2024, 12)),
            (
                "2024-12-01 00:00:00+00".to_string(),
                "2025-01-01 00:00:00+00".to_string()
            )
        );
        let t = DateTime::parse_from_rfc3339("2024-02-29T23:59:59Z")
            .unwrap()
            .to_utc();
        assert_eq!(month_of(t), (2024, 2));
    }
}
