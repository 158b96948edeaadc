//! Identity resolution, set-based: each statement here runs once per chunk over the staging
//! table. Every staged row is matched to a profile by the first identity in the import's
//! precedence that names one; rows that match none create a profile by their first identity
//! (unless the import is `update_only` or the row has only a `profile_id`).

use crate::load::{store_error, LoadError};
use sluice_proto::IdentityKind;
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

/// A staging table for one chunk, dropped at commit. The event columns are NULL for profile
/// loads; the last five columns are filled by resolution.
pub const CREATE_STAGE: &str = "CREATE TEMP TABLE sluice_stage (
    key           text NOT NULL,
    updated_at    timestamptz NOT NULL,
    identity      text,
    external_id   text,
    alias_kind    text,
    alias_name    text,
    email         text,
    phone         text,
    profile_ref   bigint,
    create_kind   text,
    create_value  text,
    props         jsonb NOT NULL,
    unset         text[] NOT NULL,
    event_name    text,
    event_time    timestamptz,
    dedup_key     text,
    price         text,
    profile_id    bigint,
    matched_kind  text,
    matched_value text,
    ambiguous     boolean,
    created       boolean NOT NULL DEFAULT false
) ON COMMIT DROP";

/// Binary COPY into the staging table.
pub const COPY_STAGE: &str =
    "COPY sluice_stage (key, updated_at, identity, external_id, alias_kind, alias_name, email,
    phone, profile_ref, create_kind, create_value, props, unset, event_name, event_time,
    dedup_key, price)
    FROM STDIN (FORMAT binary)";

/// The column types of `COPY_STAGE`, in order.
pub const COPY_TYPES: &[Type] = &[
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::TEXT_ARRAY,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
];

/// Statistics for the planner, so staged rows are not estimated as a handful.
pub const ANALYZE_STAGE: &str = "ANALYZE sluice_stage";

/// One candidate of the match: (kind, value, profile found, whether others share it).
/// Lookups are correlated subqueries on an index: one probe per staged identity, never a scan.
fn candidate(kind: IdentityKind) -> &'static str {
    match kind {
        IdentityKind::Identity => {
            "'identity', s.identity, (SELECT i.profile_id FROM profile_store.identities i
              WHERE i.workspace_id = $1 AND i.kind = 'identity' AND i.value = s.identity), false"
        }
        IdentityKind::ExternalId => {
            "'external_id', s.external_id, (SELECT i.profile_id FROM profile_store.identities i
              WHERE i.workspace_id = $1 AND i.kind = 'external_id' AND i.value = s.external_id), false"
        }
        IdentityKind::Alias => {
            "s.alias_kind, s.alias_name, (SELECT i.profile_id FROM profile_store.identities i
              WHERE i.workspace_id = $1 AND i.kind = s.alias_kind AND i.value = s.alias_name), false"
        }
        IdentityKind::Email => {
            "'email', s.email, (SELECT p.profile_id FROM profile_store.profiles p
              WHERE p.workspace_id = $1 AND p.email = s.email
              ORDER BY p.updated_at DESC, p.profile_id DESC LIMIT 1),
             (SELECT count(*) > 1 FROM (SELECT 1 FROM profile_store.profiles p
              WHERE p.workspace_id = $1 AND p.email = s.email LIMIT 2) x)"
        }
        IdentityKind::Phone => {
            "'phone', s.phone, (SELECT p.profile_id FROM profile_store.profiles p
              WHERE p.workspace_id = $1 AND p.phone = s.phone
              ORDER BY p.updated_at DESC, p.profile_id DESC LIMIT 1),
             (SELECT count(*) > 1 FROM (SELECT 1 FROM profile_store.profiles p
              WHERE p.workspace_id = $1 AND p.phone = s.phone LIMIT 2) x)"
        }
        IdentityKind::ProfileId => {
            "'profile_id', s.profile_ref::text, (SELECT p.profile_id FROM profile_store.profiles p
              WHERE p.workspace_id = $1 AND p.profile_id = s.profile_ref), false"
        }
    }
}

/// The statement matching every staged row to an existing profile, trying `precedence` in
/// order. When several profiles share the email or phone that matched, the most recently
/// updated one is chosen and the row is marked ambiguous.
pub fn resolve_statement(precedence: &[IdentityKind]) -> String {
    let candidates: Vec<String> = precedence
        .iter()
        .enumerate()
        .map(|(ord, kind)| format!("({ord}, {})", candidate(*kind)))
        .collect();
    format!(
        "UPDATE sluice_stage s
            SET (profile_id, matched_kind, matched_value, ambiguous) = (
                SELECT m.profile_id, m.kind, m.value, m.ambiguous
                  FROM (VALUES {}) AS m(ord, kind, value, profile_id, ambiguous)
                 WHERE m.profile_id IS NOT NULL
                 ORDER BY m.ord LIMIT 1)",
        candidates.join(",\n")
    )
}

/// Creates one profile per distinct creating identity among unmatched rows, names it by that
/// identity (email and phone are set on the profile by the upsert), and points the rows at it.
/// Returns the number of profiles created. Two loaders creating the same unique identity
/// collide on the identities key; the loser retries and then finds the profile.
pub const CREATE_PROFILES: &str = "WITH missing AS (
    SELECT d.create_kind, d.create_value, nextval('profile_store.profile_id_seq') AS profile_id
      FROM (SELECT DISTINCT create_kind, create_value FROM sluice_stage
             WHERE profile_id IS NULL AND create_kind IS NOT NULL) d
), created AS (
    INSERT INTO profile_store.profiles (workspace_id, profile_id)
    SELECT $1, profile_id FROM missing
), named AS (
    INSERT INTO profile_store.identities (workspace_id, kind, value, profile_id)
    SELECT $1, create_kind, create_value, profile_id FROM missing
     WHERE create_kind NOT IN ('email', 'phone')
), marked AS (
    UPDATE sluice_stage s
       SET profile_id = m.profile_id, created = true,
           matched_kind = m.create_kind, matched_value = m.create_value
      FROM missing m
     WHERE s.profile_id IS NULL AND s.create_kind = m.create_kind AND s.create_value = m.create_value
)
SELECT count(*) FROM missing";

/// Links the other unique identities a row carries to its profile, where they name none yet.
pub const ATTACH_IDENTITIES: &str =
    "INSERT INTO profile_store.identities (workspace_id, kind, value, profile_id)
SELECT $1, v.kind, v.value, s.profile_id
  FROM sluice_stage s
 CROSS JOIN LATERAL (VALUES ('identity', s.identity), ('external_id', s.external_id),
                            (s.alias_kind, s.alias_name)) AS v(kind, value)
 WHERE s.profile_id IS NOT NULL AND v.kind IS NOT NULL AND v.value IS NOT NULL
   AND (v.kind, v.value) IS DISTINCT FROM (s.matched_kind, s.matched_value)
ON CONFLICT DO NOTHING";

/// Rows that matched no profile: (key, the identity they carry, its value, props).
pub const UNMATCHED: &str = "SELECT key, coalesce(create_kind, 'profile_id'),
       coalesce(create_value, profile_ref::text), props::text
  FROM sluice_stage WHERE profile_id IS NULL ORDER BY key";

/// (rows matching no profile, rows matched ambiguously, existing profiles the chunk names).
pub const RESOLUTION_COUNTS: &str = "SELECT count(*) FILTER (WHERE profile_id IS NULL),
       count(*) FILTER (WHERE ambiguous),
       count(DISTINCT profile_id) FILTER (WHERE NOT created)
  FROM sluice_stage";

/// A dry run's sample: what would happen to the first rows, with the properties they would
/// leave on their profile.
pub const SAMPLE: &str = "SELECT s.key, s.matched_kind, s.matched_value, s.profile_id,
       CASE WHEN s.profile_id IS NULL THEN 'skipped'
            WHEN s.created THEN 'created'
            WHEN s.updated_at < o.source_updated_at THEN 'stale'
            WHEN ((o.properties || s.props) - s.unset) IS DISTINCT FROM o.properties
              OR (s.email IS NOT NULL AND s.email IS DISTINCT FROM o.email)
              OR (s.phone IS NOT NULL AND s.phone IS DISTINCT FROM o.phone) THEN 'updated'
            ELSE 'unchanged' END,
       ((coalesce(o.properties, '{}'::jsonb) || s.props) - s.unset)::text
  FROM sluice_stage s
  LEFT JOIN profile_store.profiles o ON o.workspace_id = $1 AND o.profile_id = s.profile_id
 ORDER BY s.key
 LIMIT $2";

/// What resolution found after profiles were created and identities linked.
pub struct Resolution {
    pub profiles_created: u64,
    /// Rows matching no profile.
    pub unmatched: u64,
    pub ambiguous: u64,
    /// Existing profiles the chunk names.
    pub existing: u64,
}

/// After `resolve_statement`: creates profiles for unmatched rows when `create`, links the
/// rows' other identities, and counts what resolution found.
pub async fn link(
    tx: &Transaction<'_>,
    workspace: i64,
    create: bool,
) -> Result<Resolution, LoadError> {
    let profiles_created = if create {
        let count: i64 = tx
            .query_one(CREATE_PROFILES, &[&workspace])
            .await
            .map_err(store_error)?
            .get(0);
        count as u64
    } else {
        0
    };
    tx.execute(ATTACH_IDENTITIES, &[&workspace])
        .await
        .map_err(store_error)?;
    let counts = tx
        .query_one(RESOLUTION_COUNTS, &[])
        .await
        .map_err(store_error)?;
    Ok(Resolution {
        profiles_created,
        unmatched: counts.get::<_, i64>(0) as u64,
        ambiguous: counts.get::<_, i64>(1) as u64,
        existing: counts.get::<_, i64>(2) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_the_precedence() {
        let sql = resolve_statement(&[IdentityKind::Email, IdentityKind::Phone]);
        let email = sql.find("'email'").unwrap();
        let phone = sql.find("'phone'").unwrap();
        assert!(email < phone);
        assert!(sql.contains("(0, 'email'") && sql.contains("(1, 'phone'"));
        assert!(!sql.contains("external_id"));
    }
}
