//! A mirror import's removals: the rows its key chunk found gone from the source are resolved
//! to their profiles, and what those rows had set of the import's own properties is unset,
//! keeping each value's stamp so an older row of another import cannot bring it back.

use crate::load::{store_error, LoadError};
use sluice_proto::LoadStats;
use tokio_postgres::Transaction;

/// Unsets, on each profile a staged (gone) row names, the properties of `$2` (the import's
/// own names) that the import `$3` set from one of those rows' keys; their stamps move to
/// `property_stamps`. Returns the profiles changed.
pub const UNSET_REMOVED: &str = "WITH gone AS (
    SELECT profile_id, array_agg(key) AS keys FROM sluice_stage
     WHERE profile_id IS NOT NULL GROUP BY profile_id
), u AS (
    UPDATE profile_store.profiles p
       SET (properties, property_stamps, updated_at) = (
           SELECT p.properties - ARRAY(SELECT jsonb_object_keys(o.own)),
                  coalesce(p.property_stamps, '{}') || o.own, now()
             FROM (SELECT profile_store.set_by_rows(p.properties, p.property_stamps,
                              p.source_updated_at, p.source_import_id, p.source_key,
                              $2::text[], $3::bigint, g.keys) AS own) o)
      FROM gone g
     WHERE p.workspace_id = $1 AND p.profile_id = g.profile_id
       AND profile_store.set_by_rows(p.properties, p.property_stamps, p.source_updated_at,
               p.source_import_id, p.source_key, $2::text[], $3::bigint, g.keys) <> '{}'
    RETURNING 1
)
SELECT count(*) FROM u";

/// Applies a staged key chunk's removals.
pub async fn apply(
    tx: &Transaction<'_>,
    workspace: i64,
    import: i64,
    names: &[String],
    stats: &mut LoadStats,
) -> Result<(), LoadError> {
    let removed: i64 = tx
        .query_one(UNSET_REMOVED, &[&workspace, &names, &import])
        .await
        .map_err(store_error)?
        .get(0);
    stats.profiles_removed_from_source = removed as u64;
    Ok(())
}
