//! Identity resolution, set-based: each statement here runs once per chunk. The chunk's rows
//! are copied into `sluice_rows`; one statement matches every row to a profile by the first
//! identity in the import's precedence that names one, creates a profile for each distinct
//! first identity of the rows that match none (unless the import is `update_only` or the row
//! has only a `profile_id`), and writes the resolved rows into `sluice_stage` once, which the
//! apply statements read.

use crate::load::{store_error, LoadError};
use sluice_proto::rejection::{self, RowRejection};
use sluice_proto::{IdentityKind, Mapping, Reason};
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

/// The chunk's rows as copied in, and the staging table the resolution statement fills from
/// them: the same columns and the resolution's (the profile, the identity that matched it,
/// whether another profile shares it, whether the chunk created it, and whether it is one of a
/// created profile's rows older than the one it was created from), and the outcomes the
/// apply statements leave for the chunk's lineage (each existing profile's applied row, with
/// the upsert's change and stale values; the key of each event row inserted). All are
/// dropped at commit; the event columns are NULL for profile loads. Identity columns and the
/// dedup key compare as the store's tables do (collation "C").
pub const CREATE_STAGE: &str = "CREATE TEMP TABLE sluice_rows (
    key           text NOT NULL,
    updated_at    timestamptz NOT NULL,
    identity      text COLLATE \"C\",
    external_id   text COLLATE \"C\",
    alias_kind    text COLLATE \"C\",
    alias_name    text COLLATE \"C\",
    email         text,
    phone         text,
    profile_ref   bigint,
    create_kind   text COLLATE \"C\",
    create_value  text COLLATE \"C\",
    props         jsonb NOT NULL,
    unset         text[] NOT NULL,
    names         text[] NOT NULL,
    names_hash    bigint NOT NULL,
    event_name    text,
    event_time    timestamptz,
    dedup_key     text COLLATE \"C\",
    price         text,
    subs          jsonb,
    consented_at  timestamptz,
    addressless   boolean NOT NULL DEFAULT false
) ON COMMIT DROP;
CREATE TEMP TABLE sluice_stage (
    LIKE sluice_rows INCLUDING ALL,
    profile_id    bigint,
    matched_kind  text COLLATE \"C\",
    matched_value text COLLATE \"C\",
    ambiguous     boolean,
    created       boolean NOT NULL DEFAULT false,
    superseded    boolean NOT NULL DEFAULT false
) ON COMMIT DROP;
CREATE TEMP TABLE sluice_outcome (
    profile_id    bigint,
    key           text,
    changed       boolean,
    stale         bigint
) ON COMMIT DROP";

/// Binary COPY into the staging table.
pub const COPY_STAGE: &str =
    "COPY sluice_rows (key, updated_at, identity, external_id, alias_kind, alias_name, email,
    phone, profile_ref, create_kind, create_value, props, unset, names, names_hash, event_name,
    event_time, dedup_key, price, subs, consented_at, addressless)
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
    Type::TEXT_ARRAY,
    Type::INT8,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::TIMESTAMPTZ,
    Type::BOOL,
];

/// Statistics for the planner once resolution has filled the staging table.
pub const ANALYZE_STAGE: &str = "ANALYZE sluice_stage (profile_id, dedup_key)";

/// How one identity kind of the precedence is looked up for a staged row `r`: the kind and
/// value it names, the columns of `sluice_rows` in the order of the index the probe reads,
/// the probe for its profile, and whether other profiles share the value.
struct Candidate {
    kind: &'static str,
    value: &'static str,
    order: &'static str,
    profile: &'static str,
    shared: &'static str,
}

/// The lookups of one identity kind. Each is a correlated subquery on an index: one probe per
/// staged identity, never a scan. Email and phone name the workspace as `workspace_id + 0`, so
/// the profiles' key (led by the workspace) cannot serve them: where the statistics still call
/// a grown workspace small, the planner would otherwise walk it on the key.
fn candidate(kind: IdentityKind) -> Candidate {
    match kind {
        IdentityKind::Identity => Candidate {
            kind: "'identity'",
            value: "r.identity",
            order: "identity",
            profile: "(SELECT i.profile_id FROM profile_store.identities i
              WHERE i.workspace_id = $1 AND i.kind = 'identity' AND i.value = r.identity)",
            shared: "false",
        },
        IdentityKind::ExternalId => Candidate {
            kind: "'external_id'",
            value: "r.external_id",
            order: "external_id",
            profile: "(SELECT i.profile_id FROM profile_store.identities i
              WHERE i.workspace_id = $1 AND i.kind = 'external_id' AND i.value = r.external_id)",
            shared: "false",
        },
        IdentityKind::Alias => Candidate {
            kind: "r.alias_kind",
            value: "r.alias_name",
            order: "alias_kind, alias_name",
            profile: "(SELECT i.profile_id FROM profile_store.identities i
              WHERE i.workspace_id = $1 AND i.kind = r.alias_kind AND i.value = r.alias_name)",
            shared: "false",
        },
        IdentityKind::Email => Candidate {
            kind: "'email'",
            value: "r.email COLLATE \"C\"",
            order: "email",
            profile: "(SELECT p.profile_id FROM profile_store.profiles p
              WHERE p.email = r.email AND p.workspace_id + 0 = $1
              ORDER BY p.updated_at DESC, p.profile_id DESC LIMIT 1)",
            shared: "(SELECT count(*) > 1 FROM (SELECT 1 FROM profile_store.profiles p
              WHERE p.email = r.email AND p.workspace_id + 0 = $1 LIMIT 2) x)",
        },
        IdentityKind::Phone => Candidate {
            kind: "'phone'",
            value: "r.phone COLLATE \"C\"",
            order: "phone",
            profile: "(SELECT p.profile_id FROM profile_store.profiles p
              WHERE p.phone = r.phone AND p.workspace_id + 0 = $1
              ORDER BY p.updated_at DESC, p.profile_id DESC LIMIT 1)",
            shared: "(SELECT count(*) > 1 FROM (SELECT 1 FROM profile_store.profiles p
              WHERE p.phone = r.phone AND p.workspace_id + 0 = $1 LIMIT 2) x)",
        },
        IdentityKind::ProfileId => Candidate {
            kind: "'profile_id'",
            value: "r.profile_ref::text COLLATE \"C\"",
            order: "profile_ref",
            profile: "(SELECT p.profile_id FROM profile_store.profiles p
              WHERE p.workspace_id = $1 AND p.profile_id = r.profile_ref)",
            shared: "false",
        },
    }
}

/// Whether resolution may skip the per-row probes of a chunk that provably matches nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probes {
    /// Probe row by row unless a few checks prove that no row can match (what loads do).
    WhenNeeded,
    /// Always probe row by row: the general path the checks must agree with.
    Always,
}

impl Probes {
    /// Whether a chunk of `precedence` may be staged on a guess that it matches nothing
    /// (`guessed`), undone when the guess is wrong: only when every row names its profile by
    /// one unique identity kind and the rows that match none create profiles. A created
    /// profile's identity is then inserted under the identities' key, so a row whose identity
    /// the store already holds fails the statement instead of creating a second profile.
    /// (With email or phone, several profiles may share the value; with a second unique
    /// kind, a row could match by the other kind while it creates by this one.)
    pub fn may_guess(precedence: &[IdentityKind], unmatched: Unmatched) -> bool {
        unmatched != Unmatched::Skip
            && matches!(
                precedence,
                [IdentityKind::Identity | IdentityKind::ExternalId | IdentityKind::Alias]
            )
    }
}

/// The condition under which no copied row can match an existing profile, proved with a few
/// index probes instead of one per row: the workspace has no profile at all, or for every
/// kind of the precedence the chunk's values name nothing. For the unique kinds that is the
/// range from the chunk's least to its greatest value of each kind holding no identity of the
/// workspace (one probe of the identities' key each; a chunk of new identities that sort
/// after the store's, or apart from them, passes); for a profile id, the range of the ids the
/// chunk names holding no profile; email and phone pass only when no row carries one (their
/// index is not led by the workspace, so a range of addresses is not one probe).
fn fresh_condition(precedence: &[IdentityKind]) -> String {
    let mut unique = Vec::new();
    let mut checks = Vec::new();
    for kind in precedence {
        match kind {
            IdentityKind::Identity => unique.push("('identity', r.identity)"),
            IdentityKind::ExternalId => unique.push("('external_id', r.external_id)"),
            IdentityKind::Alias => unique.push("(r.alias_kind, r.alias_name)"),
            IdentityKind::Email => {
                checks.push("NOT EXISTS (SELECT 1 FROM sluice_rows WHERE email IS NOT NULL)".into())
            }
            IdentityKind::Phone => {
                checks.push("NOT EXISTS (SELECT 1 FROM sluice_rows WHERE phone IS NOT NULL)".into())
            }
            IdentityKind::ProfileId => checks.push(
                "NOT EXISTS (SELECT 1 FROM profile_store.profiles p
                  WHERE p.workspace_id = $1
                    AND p.profile_id BETWEEN (SELECT min(profile_ref) FROM sluice_rows)
                                         AND (SELECT max(profile_ref) FROM sluice_rows))"
                    .into(),
            ),
        }
    }
    if !unique.is_empty() {
        checks.push(format!(
            "NOT EXISTS (SELECT 1
                FROM (SELECT v.kind, min(v.value) AS lo, max(v.value) AS hi
                        FROM sluice_rows r CROSS JOIN LATERAL (VALUES {}) AS v(kind, value)
                       WHERE v.kind IS NOT NULL AND v.value IS NOT NULL
                       GROUP BY v.kind) b
               WHERE EXISTS (SELECT 1 FROM profile_store.identities i
                              WHERE i.workspace_id = $1 AND i.kind = b.kind
                                AND i.value BETWEEN b.lo AND b.hi))",
            unique.join(", ")
        ));
    }
    let ranges = match checks.is_empty() {
        true => "true".to_string(),
        false => checks.join("\n         AND "),
    };
    format!(
        "NOT EXISTS (SELECT 1 FROM profile_store.profiles WHERE workspace_id = $1)
         OR ({ranges})"
    )
}

/// Whether the copied rows provably match no profile of workspace `$1`: what lets a load
/// skip the per-row probes (see `fresh_condition`).
pub fn fresh_query(precedence: &[IdentityKind]) -> String {
    format!("SELECT {}", fresh_condition(precedence))
}

/// The match of every copied row, in `precedence` order: one lateral probe per kind, taken
/// only while no earlier kind has matched, the row carries the value and the chunk is not
/// `fresh` (`OFFSET 0` keeps each probe a subquery of its own, run once per row, instead of
/// being inlined wherever its result is used); the first kind that names a profile gives the
/// row its profile, kind and value. The rows are probed in the order of the first kind's
/// index: a warehouse hands them over in watermark order, where identities fall anywhere in
/// the index, and consecutive probes of neighbouring values read the same index pages.
fn matched_statement(precedence: &[IdentityKind]) -> String {
    let kinds: Vec<Candidate> = precedence.iter().map(|k| candidate(*k)).collect();
    let mut probes = String::new();
    for (ord, c) in kinds.iter().enumerate() {
        let unmatched: String = (0..ord).map(|o| format!(" AND c{o}.id IS NULL")).collect();
        probes.push_str(&format!(
            "\n      LEFT JOIN LATERAL (SELECT CASE WHEN {value} IS NOT NULL AND NOT f.yes{unmatched} THEN {profile} END AS id OFFSET 0) c{ord} ON true",
            value = c.value,
            profile = c.profile,
        ));
    }
    let pick = |what: &dyn Fn(&Candidate) -> &str| -> String {
        let arms: String = kinds
            .iter()
            .enumerate()
            .map(|(ord, c)| format!(" WHEN c{ord}.id IS NOT NULL THEN {}", what(c)))
            .collect();
        format!("CASE{arms} END")
    };
    let ids: Vec<String> = (0..kinds.len()).map(|o| format!("c{o}.id")).collect();
    format!(
        "SELECT r.*, coalesce({ids}) AS profile_id, {kind} AS matched_kind,
           {value} AS matched_value, {shared} AS ambiguous
      FROM (SELECT * FROM sluice_rows ORDER BY {order}) r CROSS JOIN fresh f{probes}",
        ids = ids.join(", "),
        order = kinds.first().map_or("key", |c| c.order),
        kind = pick(&|c| c.kind),
        value = pick(&|c| c.value),
        shared = pick(&|c| c.shared),
    )
}

/// The statement resolving a chunk: matches every copied row to an existing profile, trying
/// `precedence` in order (when several profiles share the email or phone that matched, the
/// most recently updated one is chosen and the row is marked ambiguous); with `$2`, creates
/// one profile per distinct creating identity among the rows that match none and names it by
/// that identity (email and phone are set on the profile); and writes every row, resolved,
/// into `sluice_stage`. With `$3` (a profile load) a created profile is written whole at once
/// from the newest of its rows, stamped with that row (`$4` is the import), so the upsert has
/// nothing left to do for it. A row subscribing a channel it carries no address for never
/// creates a profile (a new profile would have no address; see `subscriptions.rs`). With
/// `$5`, a chunk proved fresh (`fresh_condition`) skips the per-row probes: none of them
/// could find a profile. Two loaders
/// creating the same unique identity collide on the identities key; the loser retries and
/// then finds the profile.
pub fn resolve_statement(precedence: &[IdentityKind]) -> String {
    format!(
        "WITH fresh AS MATERIALIZED (
    SELECT $5::boolean AND ({}) AS yes
), matched AS MATERIALIZED (
    {}
), missing AS MATERIALIZED (
    SELECT d.*, nextval('profile_store.profile_id_seq') AS new_id
      FROM (SELECT DISTINCT ON (create_kind, create_value) create_kind, create_value,
                   props, unset, email, phone, updated_at, key, names_hash
              FROM matched
             WHERE $2 AND profile_id IS NULL AND create_kind IS NOT NULL AND NOT addressless
             ORDER BY create_kind, create_value, updated_at DESC, key DESC) d
), created AS (
    {}
      FROM missing
), named AS (
    INSERT INTO profile_store.identities (workspace_id, kind, value, profile_id)
    SELECT $1, create_kind, create_value, new_id FROM missing
     WHERE create_kind NOT IN ('email', 'phone')
)
INSERT INTO sluice_stage
SELECT m.key, m.updated_at, m.identity, m.external_id, m.alias_kind, m.alias_name, m.email,
       m.phone, m.profile_ref, m.create_kind, m.create_value, m.props, m.unset, m.names,
       m.names_hash, m.event_name,
       m.event_time, m.dedup_key, m.price, m.subs, m.consented_at, m.addressless,
       coalesce(m.profile_id, x.new_id), coalesce(m.matched_kind, x.create_kind),
       coalesce(m.matched_value, x.create_value), m.ambiguous, x.new_id IS NOT NULL,
       x.new_id IS NOT NULL AND x.key <> m.key
  FROM matched m
  LEFT JOIN missing x ON m.profile_id IS NULL
                     AND x.create_kind = m.create_kind AND x.create_value = m.create_value",
        fresh_condition(precedence),
        matched_statement(precedence),
        insert_created("new_id", "$3", "$4")
    )
}

/// The insert of the profiles a chunk creates, each from its newest row (with its columns
/// and `id`), whole when `whole` is true (its properties, email, phone and stamp from import
/// `import`), else empty (as an event creates it, stamped older than any row); the rows
/// follow as a `FROM`. `$1` is the workspace.
pub(crate) fn insert_created(id: &str, whole: &str, import: &str) -> String {
    format!(
        "INSERT INTO profile_store.profiles
           (workspace_id, profile_id, properties, email, phone, source_updated_at,
            source_import_id, source_key, source_unset, source_names)
    SELECT $1, {id},
           CASE WHEN {whole} THEN props - unset ELSE '{{}}' END,
           CASE WHEN {whole} THEN email END,
           CASE WHEN {whole} THEN phone END,
           CASE WHEN {whole} THEN updated_at ELSE '-infinity' END,
           CASE WHEN {whole} THEN {import}::bigint ELSE 0 END,
           CASE WHEN {whole} THEN key ELSE '' END,
           CASE WHEN {whole} THEN unset ELSE '{{}}' END,
           CASE WHEN {whole} THEN names_hash END"
    )
}

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

/// The unique identities of resolved rows that another profile already holds: (key, the
/// row's profile, the identity that named it and its value, the other identity's kind and
/// value, the profile that identity names). Run after `ATTACH_IDENTITIES`, so identities
/// another row of the chunk linked first are found too; none of them is moved. Each of a
/// row's other identities is one probe of the identities' key (`OFFSET 0` keeps it a probe
/// per row, never a join over the whole table).
pub const CONFLICTS: &str = "SELECT s.key, s.profile_id, s.matched_kind, s.matched_value,
       v.kind, v.value, o.profile_id, s.props::text
  FROM sluice_stage s
 CROSS JOIN LATERAL (VALUES ('identity', s.identity), ('external_id', s.external_id),
                            (s.alias_kind, s.alias_name)) AS v(kind, value)
 CROSS JOIN LATERAL (
       SELECT i.profile_id FROM profile_store.identities i
        WHERE i.workspace_id = $1 AND i.kind = v.kind COLLATE \"C\"
          AND i.value = v.value COLLATE \"C\"
       OFFSET 0) o
 WHERE s.profile_id IS NOT NULL AND v.kind IS NOT NULL AND v.value IS NOT NULL
   AND (v.kind, v.value) IS DISTINCT FROM (s.matched_kind, s.matched_value)
   AND o.profile_id <> s.profile_id
 ORDER BY s.key, v.kind";

/// Rows that matched no profile: (key, the identity they carry, its value, props).
pub const UNMATCHED: &str = "SELECT key, coalesce(create_kind, 'profile_id'),
       coalesce(create_value, profile_ref::text), props::text
  FROM sluice_stage WHERE profile_id IS NULL ORDER BY key";

/// (rows matching no profile, rows matched ambiguously, existing profiles the chunk names,
/// profiles it created, the names of the created profiles' superseded rows), in one pass.
pub const RESOLUTION_COUNTS: &str = "SELECT count(*) FILTER (WHERE profile_id IS NULL),
       count(*) FILTER (WHERE ambiguous),
       count(DISTINCT profile_id) FILTER (WHERE NOT created),
       count(DISTINCT profile_id) FILTER (WHERE created),
       coalesce(sum(cardinality(names)) FILTER (WHERE superseded), 0)::int8
  FROM sluice_stage";

/// A dry run's sample: what would happen to the first rows (`$3` is the import), with the
/// properties they would leave on their profile and the names they would not apply because a
/// newer row set them (outcome `stale` when that is every name the row carries).
pub const SAMPLE: &str = "SELECT s.key, s.matched_kind, s.matched_value, s.profile_id,
       CASE WHEN s.profile_id IS NULL THEN 'skipped'
            WHEN s.created THEN 'created'
            WHEN x.stale <> '{}' AND cardinality(x.stale) = cardinality(s.names) THEN 'stale'
            WHEN v.properties IS DISTINCT FROM o.properties
              OR v.email IS DISTINCT FROM o.email
              OR v.phone IS DISTINCT FROM o.phone THEN 'updated'
            ELSE 'unchanged' END,
       (CASE WHEN s.created THEN s.props - s.unset ELSE v.properties END),
       x.stale, s.subs
  FROM sluice_stage s
  LEFT JOIN profile_store.profiles o ON o.workspace_id = $1 AND o.profile_id = s.profile_id
 CROSS JOIN LATERAL (
       SELECT CASE WHEN o.profile_id IS NULL OR s.created
                     OR (s.updated_at, $3::bigint, s.key)
                        >= (o.source_updated_at, o.source_import_id, o.source_key)
                   THEN '{}'::text[]
                   ELSE profile_store.stale_names(o.properties, o.property_stamps,
                            o.source_unset, o.email, o.phone, s.names,
                            profile_store.stamp(s.updated_at, $3::bigint, s.key)) END AS stale) x
 CROSS JOIN LATERAL (
       SELECT (coalesce(o.properties, '{}') || (s.props - x.stale))
                - ARRAY(SELECT u FROM unnest(s.unset) u WHERE u <> ALL(x.stale)) AS properties,
              CASE WHEN '$email' = ANY(x.stale) THEN o.email
                   ELSE coalesce(s.email, o.email) END AS email,
              CASE WHEN '$phone' = ANY(x.stale) THEN o.phone
                   ELSE coalesce(s.phone, o.phone) END AS phone) v
 ORDER BY s.key
 LIMIT $2";

/// What resolution found after profiles were created and identities linked.
pub struct Resolution {
    /// Profiles created for rows that matched none.
    pub profiles_created: u64,
    /// Rows matching no profile.
    pub unmatched: u64,
    /// Rows matched by an email or phone several profiles share (the most recently updated
    /// one is updated).
    pub ambiguous: u64,
    /// Existing profiles the chunk names.
    pub existing: u64,
    /// The names carried by rows of created profiles that a newer row of the same profile
    /// superseded: stale values.
    pub superseded_names: u64,
    /// Rows whose unique identities name another profile than the one they were applied to,
    /// as error-stream records (`identity_conflict`).
    pub conflicts: Vec<RowRejection>,
}

/// What resolution does for rows that match no profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// Leave them (update-only imports, events that reject unknown identities, deletes).
    Skip,
    /// Create an empty profile for each (events).
    CreateEmpty,
    /// Create each profile with its newest row's properties (profile loads).
    CreateWhole,
}

/// Resolves the copied rows into `sluice_stage`, creating profiles as `unmatched` says and
/// probing row by row as `probes` says.
pub async fn resolve(
    tx: &Transaction<'_>,
    workspace: i64,
    import: i64,
    precedence: &[IdentityKind],
    unmatched: Unmatched,
    probes: Probes,
) -> Result<(), LoadError> {
    let create = unmatched != Unmatched::Skip;
    let whole = unmatched == Unmatched::CreateWhole;
    let shortcut = probes != Probes::Always;
    tx.execute(
        &resolve_statement(precedence),
        &[&workspace, &create, &whole, &import, &shortcut],
    )
    .await
    .map_err(store_error)?;
    Ok(())
}

/// After `resolve`: links the rows' other identities, and counts what resolution found.
pub async fn link(
    tx: &Transaction<'_>,
    workspace: i64,
    mapping: &Mapping,
) -> Result<Resolution, LoadError> {
    let precedence = mapping.precedence();
    let unique = precedence
        .iter()
        .filter(|k| {
            matches!(
                k,
                IdentityKind::Identity | IdentityKind::ExternalId | IdentityKind::Alias
            )
        })
        .count();
    // A row carries only the kinds of the precedence; with one kind, it is named by the
    // identity it carries (matched or created), and has no other to link.
    if unique > 0 && precedence.len() > 1 {
        tx.execute(ATTACH_IDENTITIES, &[&workspace])
            .await
            .map_err(store_error)?;
    }
    // Two profiles can be named by one row only when it carries two unique identities.
    let conflicts = match unique {
        0 | 1 => Vec::new(),
        _ => tx
            .query(CONFLICTS, &[&workspace])
            .await
            .map_err(store_error)?
            .iter()
            .map(conflict)
            .collect(),
    };
    let counts = tx
        .query_one(RESOLUTION_COUNTS, &[])
        .await
        .map_err(store_error)?;
    Ok(Resolution {
        profiles_created: counts.get::<_, i64>(3) as u64,
        unmatched: counts.get::<_, i64>(0) as u64,
        ambiguous: counts.get::<_, i64>(1) as u64,
        existing: counts.get::<_, i64>(2) as u64,
        superseded_names: counts.get::<_, i64>(4) as u64,
        conflicts,
    })
}

/// The error-stream record of one row of `CONFLICTS`.
fn conflict(row: &tokio_postgres::Row) -> RowRejection {
    let (key, profile, kind, value): (String, i64, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let (other_kind, other_value, other_profile): (String, String, i64) =
        (row.get(4), row.get(5), row.get(6));
    RowRejection {
        row_key: key,
        column: other_kind.clone(),
        value: Some(rejection::truncate(&other_value)),
        reason: Reason::IdentityConflict,
        message: format!(
            "{kind} {value:?} names profile {profile} and {other_kind} {other_value:?} names profile {other_profile}; \
             the row was applied to profile {profile} by precedence and {other_kind} {other_value:?} stays with profile {other_profile}"
        ),
        row: rejection::row_values(&row.get::<_, String>(7)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_the_precedence() {
        let sql = resolve_statement(&[IdentityKind::Email, IdentityKind::Phone]);
        assert!(
            sql.contains("WHEN c0.id IS NOT NULL THEN 'email' WHEN c1.id IS NOT NULL THEN 'phone'")
        );
        assert!(
            sql.contains(
                "WHEN r.phone COLLATE \"C\" IS NOT NULL AND NOT f.yes AND c0.id IS NULL THEN"
            ),
            "phone is probed only for rows email did not match"
        );
        assert!(
            !sql.contains("kind = 'external_id'"),
            "only the precedence's kinds are looked up"
        );
    }
}
