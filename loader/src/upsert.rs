//! The set-based statements of a profile load: staging table, profile creation for unknown
//! identities, and one upsert that applies each identity's newest row.

/// A staging table for one chunk, dropped at commit.
pub const CREATE_STAGE: &str = "CREATE TEMP TABLE sluice_stage (
    key text NOT NULL,
    updated_at timestamptz NOT NULL,
    external_id text NOT NULL,
    props jsonb NOT NULL,
    unset text[] NOT NULL
) ON COMMIT DROP";

/// Binary COPY into the staging table.
pub const COPY_STAGE: &str =
    "COPY sluice_stage (key, updated_at, external_id, props, unset) FROM STDIN (FORMAT binary)";

/// Statistics for the planner, so staged rows are not estimated as a handful.
pub const ANALYZE_STAGE: &str = "ANALYZE sluice_stage";

// Identity lookups below are correlated subqueries on the identities primary key: one index
// probe per staged identity, whatever the store's statistics say, never a scan per row.

/// Creates a profile and its identity for every external id the store does not know yet.
/// Returns one row per created profile.
pub const CREATE_PROFILES: &str = "WITH missing AS (
    SELECT s.external_id, nextval('profile_store.profile_id_seq') AS profile_id
      FROM (SELECT DISTINCT external_id FROM sluice_stage) s
     WHERE (SELECT i.profile_id FROM profile_store.identities i
             WHERE i.workspace_id = $1 AND i.kind = 'external_id' AND i.value = s.external_id) IS NULL
), created AS (
    INSERT INTO profile_store.profiles (workspace_id, profile_id)
    SELECT $1, profile_id FROM missing
)
INSERT INTO profile_store.identities (workspace_id, kind, value, profile_id)
SELECT $1, 'external_id', external_id, profile_id FROM missing";

/// Applies each identity's newest staged row (ties broken by the source key) to its profile,
/// unless the store already holds a newer source row. A NULL property removes it; properties
/// not mapped are left as they are. Returns (profiles updated, distinct identities staged),
/// where profiles just created do not count as updated.
pub const UPSERT_PROFILES: &str = "WITH s AS (
    SELECT DISTINCT ON (external_id) external_id, updated_at, props, unset
      FROM sluice_stage
     ORDER BY external_id, updated_at DESC, key DESC
), r AS MATERIALIZED (
    SELECT s.*, o.profile_id, o.properties AS old_props, o.source_updated_at AS old_updated_at
      FROM s CROSS JOIN LATERAL (
        SELECT p.profile_id, p.properties, p.source_updated_at
          FROM profile_store.identities i
          JOIN profile_store.profiles p ON p.workspace_id = i.workspace_id AND p.profile_id = i.profile_id
         WHERE i.workspace_id = $1 AND i.kind = 'external_id' AND i.value = s.external_id) o
), u AS (
    UPDATE profile_store.profiles p
       SET properties = (p.properties || r.props) - r.unset,
           source_updated_at = r.updated_at,
           updated_at = now()
      FROM r
     WHERE p.workspace_id = $1 AND p.profile_id = r.profile_id
       AND r.updated_at >= p.source_updated_at
       AND (r.updated_at > p.source_updated_at
            OR ((p.properties || r.props) - r.unset) IS DISTINCT FROM p.properties)
    RETURNING r.old_updated_at = '-infinity' AS created,
              p.properties IS DISTINCT FROM r.old_props AS changed
)
SELECT (SELECT count(*) FROM u WHERE NOT created AND changed),
       (SELECT count(*) FROM s)";

/// True when the store's tables changed by more than a fifth since they were last analyzed.
/// The loader keeps their statistics fresh itself, so identity lookups stay index probes
/// whether or not the server runs autovacuum.
pub const STORE_STATS_STALE: &str =
    "SELECT coalesce(bool_or(n_mod_since_analyze > greatest(1000, n_live_tup / 5)), false)
  FROM pg_stat_user_tables
 WHERE schemaname = 'profile_store' AND relname IN ('profiles', 'identities')";

/// Refreshes the store's statistics.
pub const ANALYZE_STORE: &str = "ANALYZE profile_store.profiles, profile_store.identities";
