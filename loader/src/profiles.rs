//! Applying a staged profile chunk: identities linked, one upsert applying each existing
//! profile's newest row property by property, as fresh as the rows that set each property.

use crate::load::{store_error, ChunkErrors, LoadError};
use crate::resolve::{link, SAMPLE};
use sluice_proto::{LoadStats, Mapping, SampleRow, MAX_SAMPLE_ROWS};
use std::sync::LazyLock;
use tokio_postgres::Transaction;

/// Links identities of the resolved rows (conflicts go to `errors`) and applies the
/// upsert; a dry run also reads its sample first.
pub async fn apply(
    tx: &Transaction<'_>,
    (workspace, import): (i64, i64),
    mapping: &Mapping,
    (dry_run, lineage): (bool, bool),
    stats: &mut LoadStats,
    errors: &mut ChunkErrors,
) -> Result<(), LoadError> {
    let found = link(tx, workspace, mapping).await?;
    stats.profiles_created = found.profiles_created;
    stats.identities_conflicting = found.conflicts.len() as u64;
    errors.conflicts.extend(found.conflicts);
    if dry_run {
        stats.sample = sample(tx, workspace, import).await?;
    }
    // A chunk that names no existing profile (every initial load) has nothing to upsert.
    let (updated, stale) = match found.existing {
        0 => (0, found.superseded_names),
        _ => {
            let upsert = match lineage {
                true => &UPSERT_PROFILES_KEEPING,
                false => &UPSERT_PROFILES,
            };
            let counts = tx
                .query_one(upsert.as_str(), &[&workspace, &import])
                .await
                .map_err(store_error)?;
            (
                counts.get::<_, i64>(0) as u64,
                counts.get::<_, i64>(1) as u64,
            )
        }
    };
    stats.profiles_updated = updated;
    stats.properties_stale = stale;
    stats.profiles_unchanged = found.existing.saturating_sub(updated);
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
            subscriptions: r
                .get::<_, Option<serde_json::Value>>(7)
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default(),
        })
        .collect())
}

/// Applies each existing profile's newest staged row (ties broken by the source key) as
/// `$2`, the import, property by property. The row's stamp is (its source updated_at, the
/// import, its key). A row at least as new as the profile's own stamp (the newest row applied
/// to it) applies whole and becomes that stamp; the properties it leaves alone keep theirs in
/// `property_stamps` (`profile_store.restamp`); a row claiming the same names as the newest
/// one (`source_names`, their hash) leaves none. An older row applies only to the names no
/// newer row has set or removed (`profile_store.stale_names`, `older_applied`) and stamps
/// them; the others are stale. Each column is a `CASE` on the row being the newest, so the
/// common case costs a row comparison and the functions run only for older rows and for
/// profiles other imports also write. A NULL property
/// removes it; properties not mapped are left as they are; email and phone are set when the
/// row has them. A row whose stamp is already the profile's and that changes no value (a
/// replay, a re-read) is not written; an older row is, even when all its values are stale,
/// since its stale values are counted from what it leaves; only a changed value moves
/// `updated_at`.
///
/// Returns (existing profiles whose values changed, stale values): stale values are the
/// names of older rows not applied, and of the rows a newer row of the same profile in the
/// chunk superseded (for a profile the chunk created, the rows resolution marked
/// `superseded`), counted without sorting the created profiles' rows.
pub static UPSERT_PROFILES: LazyLock<String> = LazyLock::new(|| {
    UPSERT_TEMPLATE
        .replace("{newest}", NEWEST)
        .replace("{stale}", STALE_NAMES)
        .replace("{kept}", "")
});

/// `UPSERT_PROFILES` that also keeps, for the chunk's lineage, each existing profile's applied
/// row (its key) with whether the upsert changed the profile and its stale values.
pub static UPSERT_PROFILES_KEEPING: LazyLock<String> = LazyLock::new(|| {
    UPSERT_TEMPLATE
        .replace("{newest}", NEWEST)
        .replace("{stale}", STALE_NAMES)
        .replace("{kept}", KEPT)
});

/// The applied rows of `r` with what the upsert `u` did to their profiles.
const KEPT: &str = ", kept AS (
    INSERT INTO sluice_outcome (profile_id, key, changed, stale)
    SELECT r.profile_id, r.key, coalesce(u.changed, false), coalesce(u.stale, 0)
      FROM r LEFT JOIN u ON u.profile_id = r.profile_id
)";

/// Whether the staged row `r` is at least as new as the profile's own stamp.
const NEWEST: &str =
    "(r.updated_at, $2::bigint, r.key) >= (p.source_updated_at, p.source_import_id, p.source_key)";

/// The names of an older staged row `r` that a newer row has set or removed.
const STALE_NAMES: &str = "profile_store.stale_names(p.properties, p.property_stamps,
    p.source_unset, p.email, p.phone, r.names, profile_store.stamp(r.updated_at, $2::bigint, r.key))";

/// `UPSERT_PROFILES` with `{newest}` and `{stale}` standing for `NEWEST` and `STALE_NAMES`, and
/// `{kept}` for `KEPT` or nothing.
const UPSERT_TEMPLATE: &str = "WITH r AS MATERIALIZED (
    SELECT DISTINCT ON (profile_id) profile_id, updated_at, key, props, unset, names,
           names_hash, email, phone
      FROM sluice_stage
     WHERE profile_id IS NOT NULL AND NOT created
     ORDER BY profile_id, updated_at DESC, key DESC
), u AS (
    UPDATE profile_store.profiles p
       SET properties = CASE WHEN {newest} THEN (p.properties || r.props) - r.unset
                             ELSE profile_store.older_applied(p.properties, r.props, r.unset,
                                  {stale}) END,
           email = CASE WHEN r.email IS NULL THEN p.email
                        WHEN {newest} THEN r.email
                        WHEN '$email' = ANY({stale}) THEN p.email
                        ELSE r.email END,
           phone = CASE WHEN r.phone IS NULL THEN p.phone
                        WHEN {newest} THEN r.phone
                        WHEN '$phone' = ANY({stale}) THEN p.phone
                        ELSE r.phone END,
           property_stamps = CASE
               WHEN p.property_stamps IS NULL AND p.source_names = r.names_hash
                    AND {newest} THEN NULL
               WHEN {newest} AND p.property_stamps IS NULL
                    AND (p.properties - r.names) = '{}' AND p.source_unset <@ r.names
                    AND (p.email IS NULL OR '$email' = ANY(r.names))
                    AND (p.phone IS NULL OR '$phone' = ANY(r.names)) THEN NULL
               ELSE profile_store.restamp(p.properties, p.property_stamps, p.source_unset,
                        p.email, p.phone, p.source_updated_at, p.source_import_id,
                        p.source_key, r.names, {newest},
                        profile_store.stamp(r.updated_at, $2::bigint, r.key)) END,
           source_updated_at = CASE WHEN {newest} THEN r.updated_at ELSE p.source_updated_at END,
           source_import_id = CASE WHEN {newest} THEN $2::bigint ELSE p.source_import_id END,
           source_key = CASE WHEN {newest} THEN r.key ELSE p.source_key END,
           source_unset = CASE WHEN {newest} THEN r.unset ELSE p.source_unset END,
           source_names = CASE WHEN {newest} THEN r.names_hash ELSE p.source_names END,
           updated_at = CASE
               WHEN {newest} THEN
                   CASE WHEN ((p.properties || r.props) - r.unset) IS DISTINCT FROM p.properties
                          OR (r.email IS NOT NULL AND r.email IS DISTINCT FROM p.email)
                          OR (r.phone IS NOT NULL AND r.phone IS DISTINCT FROM p.phone)
                        THEN now() ELSE p.updated_at END
               WHEN profile_store.older_applied(p.properties, r.props, r.unset, {stale})
                      IS DISTINCT FROM p.properties
                 OR (r.email IS NOT NULL AND r.email IS DISTINCT FROM p.email
                     AND NOT '$email' = ANY({stale}))
                 OR (r.phone IS NOT NULL AND r.phone IS DISTINCT FROM p.phone
                     AND NOT '$phone' = ANY({stale}))
               THEN now() ELSE p.updated_at END
      FROM r
     WHERE p.workspace_id = $1 AND p.profile_id = r.profile_id
       AND ((r.updated_at, $2::bigint, r.key)
              IS DISTINCT FROM (p.source_updated_at, p.source_import_id, p.source_key)
            OR ((p.properties || r.props) - r.unset) IS DISTINCT FROM p.properties
            OR (r.email IS NOT NULL AND r.email IS DISTINCT FROM p.email)
            OR (r.phone IS NOT NULL AND r.phone IS DISTINCT FROM p.phone))
    RETURNING p.profile_id, p.updated_at = now() AS changed,
              CASE WHEN (p.source_updated_at, p.source_import_id, p.source_key)
                        = (r.updated_at, $2::bigint, r.key) THEN 0
                   ELSE (SELECT count(*) FROM unnest(r.names) x
                          WHERE p.property_stamps -> x
                                IS DISTINCT FROM profile_store.stamp(r.updated_at, $2::bigint, r.key))
              END AS stale
){kept}
SELECT (SELECT count(*) FILTER (WHERE changed) FROM u),
       ((SELECT coalesce(sum(stale), 0) FROM u)
        + (SELECT coalesce(sum(cardinality(names)) FILTER (WHERE NOT created OR superseded), 0)
             FROM sluice_stage WHERE profile_id IS NOT NULL)
        - (SELECT coalesce(sum(cardinality(names)), 0) FROM r))::int8";
