//! Applying a staged profile chunk: identities linked, one upsert applying each existing
//! profile's newest row property by property, as fresh as the rows that set each property.

use crate::load::{store_error, ChunkErrors, LoadError};
use crate::resolve::{link, SAMPLE};
use sluice_proto::{LoadStats, SampleRow, MAX_SAMPLE_ROWS};
use tokio_postgres::Transaction;

/// Links identities of the resolved rows (conflicts go to `errors`) and applies the
/// upsert; a dry run also reads its sample first.
pub async fn apply(
    tx: &Transaction<'_>,
    workspace: i64,
    import: i64,
    dry_run: bool,
    stats: &mut LoadStats,
    errors: &mut ChunkErrors,
) -> Result<(), LoadError> {
    let found = link(tx, workspace).await?;
    stats.profiles_created = found.profiles_created;
    stats.identities_conflicting = found.conflicts.len() as u64;
    errors.conflicts.extend(found.conflicts);
    if dry_run {
        stats.sample = sample(tx, workspace, import).await?;
    }
    let counts = tx
        .query_one(UPSERT_PROFILES, &[&workspace, &import])
        .await
        .map_err(store_error)?;
    let (updated, stale): (i64, i64) = (counts.get(0), counts.get(1));
    stats.profiles_updated = updated as u64;
    stats.properties_stale = stale as u64;
    stats.profiles_unchanged = found.existing.saturating_sub(updated as u64);
    stats.rows_skipped = found.unmatched;
    stats.identities_ambiguous = found.ambiguous;
    Ok(())
}

/// The dry run's sample rows, read from the staging table before the upsert.
async fn sample(
    tx: &Transaction<'_>,
    workspace: i64,
    import: i64,
) -> Result<Vec<SampleRow>, LoadError> {
    let rows = tx
        .query(SAMPLE, &[&workspace, &(MAX_SAMPLE_ROWS as i64), &import])
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
            stale_properties: r.get(6),
        })
        .collect())
}

/// Applies each existing profile's newest staged row (ties broken by the source key) as
/// `$2`, the import, property by property. The row's stamp is (its source updated_at, the
/// import, its key). A row at least as new as the profile's own stamp (the newest row applied
/// to it) applies whole and becomes that stamp; the properties it leaves alone keep theirs in
/// `property_stamps`. An older row applies only to the names no newer row has set or removed
/// (`profile_store.stale_names`) and stamps them; the others are stale. A NULL property
/// removes it; properties not mapped are left as they are; email and phone are set when the
/// row has them. A row that changes neither a value nor a stamp is not written, and only a
/// changed value moves `updated_at`.
///
/// Returns (existing profiles whose values changed, stale values): stale values are the
/// names of older rows not applied, and of the rows a newer row of the same profile in the
/// chunk superseded.
pub const UPSERT_PROFILES: &str = "WITH r AS MATERIALIZED (
    SELECT DISTINCT ON (profile_id) profile_id, created, updated_at, key, props, unset, names,
           email, phone
      FROM sluice_stage
     WHERE profile_id IS NOT NULL
     ORDER BY profile_id, updated_at DESC, key DESC
), u AS (
    UPDATE profile_store.profiles p
       SET (properties, email, phone, property_stamps, source_updated_at, source_import_id,
            source_key, source_unset, updated_at) = (
           SELECT v.properties, v.email, v.phone, nullif(v.stamps, '{}'),
                  CASE WHEN s.newest THEN r.updated_at ELSE p.source_updated_at END,
                  CASE WHEN s.newest THEN $2::bigint ELSE p.source_import_id END,
                  CASE WHEN s.newest THEN r.key ELSE p.source_key END,
                  CASE WHEN s.newest THEN r.unset ELSE p.source_unset END,
                  CASE WHEN v.properties IS DISTINCT FROM p.properties
                         OR v.email IS DISTINCT FROM p.email
                         OR v.phone IS DISTINCT FROM p.phone THEN now()
                       ELSE p.updated_at END
             FROM (SELECT f.newest,
                          CASE WHEN f.newest THEN '{}'::text[]
                               ELSE profile_store.stale_names(p.properties, p.property_stamps,
                                        p.source_unset, p.email, p.phone, r.names,
                                        profile_store.stamp(r.updated_at, $2::bigint, r.key)) END
                            AS stale
                     FROM (SELECT (r.updated_at, $2::bigint, r.key)
                                  >= (p.source_updated_at, p.source_import_id, p.source_key)
                                  AS newest) f) s
            CROSS JOIN LATERAL (SELECT
                   (p.properties || (r.props - s.stale))
                     - CASE WHEN s.stale = '{}' THEN r.unset
                            ELSE ARRAY(SELECT x FROM unnest(r.unset) x WHERE x <> ALL(s.stale))
                       END AS properties,
                   CASE WHEN '$email' = ANY(s.stale) THEN p.email
                        ELSE coalesce(r.email, p.email) END AS email,
                   CASE WHEN '$phone' = ANY(s.stale) THEN p.phone
                        ELSE coalesce(r.phone, p.phone) END AS phone,
                   CASE WHEN NOT s.newest THEN
                            coalesce(p.property_stamps, '{}') || coalesce(
                              (SELECT jsonb_object_agg(x, profile_store.stamp(r.updated_at, $2::bigint, r.key))
                                 FROM unnest(r.names) x WHERE x <> ALL(s.stale)), '{}')
                        WHEN p.property_stamps IS NULL
                         AND (p.properties - r.names) = '{}'
                         AND p.source_unset <@ r.names
                         AND (p.email IS NULL OR '$email' = ANY(r.names))
                         AND (p.phone IS NULL OR '$phone' = ANY(r.names)) THEN '{}'
                        ELSE (coalesce(p.property_stamps, '{}') - r.names) || coalesce(
                              (SELECT jsonb_object_agg(x, profile_store.stamp(
                                          p.source_updated_at, p.source_import_id, p.source_key))
                                 FROM (SELECT jsonb_object_keys(p.properties)
                                       UNION ALL SELECT unnest(p.source_unset)
                                       UNION ALL SELECT '$email' WHERE p.email IS NOT NULL
                                       UNION ALL SELECT '$phone' WHERE p.phone IS NOT NULL) k(x)
                                WHERE x <> ALL(r.names)
                                  AND NOT coalesce(p.property_stamps ? x, false)), '{}')
                   END AS stamps) v)
      FROM r
     WHERE p.workspace_id = $1 AND p.profile_id = r.profile_id AND NOT r.created
       AND ((r.updated_at, $2::bigint, r.key)
              IS DISTINCT FROM (p.source_updated_at, p.source_import_id, p.source_key)
            OR ((p.properties || r.props) - r.unset) IS DISTINCT FROM p.properties
            OR (r.email IS NOT NULL AND r.email IS DISTINCT FROM p.email)
            OR (r.phone IS NOT NULL AND r.phone IS DISTINCT FROM p.phone))
    RETURNING p.updated_at = now() AS changed,
              CASE WHEN (p.source_updated_at, p.source_import_id, p.source_key)
                        = (r.updated_at, $2::bigint, r.key) THEN 0
                   ELSE (SELECT count(*) FROM unnest(r.names) x
                          WHERE p.property_stamps -> x
                                IS DISTINCT FROM profile_store.stamp(r.updated_at, $2::bigint, r.key))
              END AS stale
)
SELECT (SELECT count(*) FILTER (WHERE changed) FROM u),
       ((SELECT coalesce(sum(stale), 0) FROM u)
        + (SELECT coalesce(sum(cardinality(names)), 0) FROM sluice_stage
            WHERE profile_id IS NOT NULL)
        - (SELECT coalesce(sum(cardinality(names)), 0) FROM r))::int8";
