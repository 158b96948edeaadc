//! Applying a staged profile chunk: identities linked, one upsert applying each existing
//! profile's newest row.

use crate::load::{store_error, LoadError};
use crate::resolve::{link, SAMPLE};
use sluice_proto::{LoadStats, SampleRow, MAX_SAMPLE_ROWS};
use tokio_postgres::Transaction;

/// Links identities of the resolved rows and applies the upsert; a dry run also reads its
/// sample first.
pub async fn apply(
    tx: &Transaction<'_>,
    workspace: i64,
    dry_run: bool,
    stats: &mut LoadStats,
) -> Result<(), LoadError> {
    let found = link(tx, workspace).await?;
    stats.profiles_created = found.profiles_created;
    if dry_run {
        stats.sample = sample(tx, workspace).await?;
    }
    let updated: i64 = tx
        .query_one(UPSERT_PROFILES, &[&workspace])
        .await
        .map_err(store_error)?
        .get(0);
    stats.profiles_updated = updated as u64;
    stats.profiles_unchanged = found.existing.saturating_sub(updated as u64);
    stats.rows_skipped = found.unmatched;
    stats.identities_ambiguous = found.ambiguous;
    Ok(())
}

/// The dry run's sample rows, read from the staging table before the upsert.
async fn sample(tx: &Transaction<'_>, workspace: i64) -> Result<Vec<SampleRow>, LoadError> {
    let rows = tx
        .query(SAMPLE, &[&workspace, &(MAX_SAMPLE_ROWS as i64)])
        .await
        .map_err(store_error)?;
    Ok(rows
        .iter()
        .map(|r| SampleRow {
            row_key: r.get(0),
            identity_kind: r.get(1),
            identity_value: r.get(2),
            profile_id: r.get(3),
            outcome: r.get(4),
            properties: r.get(5),
        })
        .collect())
}

/// Applies each existing profile's newest staged row (ties broken by the source key), unless
/// the store already holds a newer source row; profiles the chunk created were written whole.
/// A NULL property removes it; properties not mapped are left as they are; email and phone are
/// set when the row has them. A row that would change nothing is not written. Returns the
/// number of existing profiles changed.
pub const UPSERT_PROFILES: &str = "WITH r AS MATERIALIZED (
    SELECT DISTINCT ON (profile_id) profile_id, updated_at, props, unset, email, phone
      FROM sluice_stage
     WHERE profile_id IS NOT NULL AND NOT created
     ORDER BY profile_id, updated_at DESC, key DESC
), u AS (
    UPDATE profile_store.profiles p
       SET properties = (p.properties || r.props) - r.unset,
           email = coalesce(r.email, p.email),
           phone = coalesce(r.phone, p.phone),
           source_updated_at = r.updated_at,
           updated_at = now()
      FROM r
     WHERE p.workspace_id = $1 AND p.profile_id = r.profile_id
       AND r.updated_at >= p.source_updated_at
       AND (((p.properties || r.props) - r.unset) IS DISTINCT FROM p.properties
            OR (r.email IS NOT NULL AND r.email IS DISTINCT FROM p.email)
            OR (r.phone IS NOT NULL AND r.phone IS DISTINCT FROM p.phone))
    RETURNING 1
)
SELECT count(*) FROM u";
