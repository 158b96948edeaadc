//! Applying a staged user-deletes chunk: the profiles the rows name are removed with their
//! identities and subscriptions (each subscription's end appended to the consent history,
//! which stays), and their events when the import says so. Rows naming no profile are
//! counted.

use crate::load::{store_error, LoadError};
use sluice_proto::LoadStats;
use tokio_postgres::Transaction;
use uuid::Uuid;

/// Deletes the resolved profiles, their identities and their subscriptions (as import `$3`
/// in run `$4`, recorded in the history); returns (profiles deleted, rows that named no
/// profile). Event dedup keys stay, so a replayed event import does not bring
/// deleted events back under the same keys.
pub const DELETE_PROFILES: &str = "WITH doomed AS (
    SELECT DISTINCT profile_id FROM sluice_stage WHERE profile_id IS NOT NULL
), gone_events AS (
    DELETE FROM profile_store.events e USING doomed d
     WHERE $2::boolean AND e.workspace_id = $1 AND e.profile_id = d.profile_id
), gone_identities AS (
    DELETE FROM profile_store.identities i USING doomed d
     WHERE i.workspace_id = $1 AND i.profile_id = d.profile_id
), gone_subscriptions AS (
    DELETE FROM profile_store.subscriptions s USING doomed d
     WHERE s.workspace_id = $1 AND s.profile_id = d.profile_id
    RETURNING s.profile_id, s.topic, s.status
), ended AS (
    INSERT INTO profile_store.subscription_changes
           (workspace_id, profile_id, topic, from_status, to_status, changed_at, import_id,
            run_id, cause)
    SELECT $1, profile_id, topic, status, NULL, now(), $3, $4::text::uuid, 'profile_deleted'
      FROM gone_subscriptions
), gone AS (
    DELETE FROM profile_store.profiles p USING doomed d
     WHERE p.workspace_id = $1 AND p.profile_id = d.profile_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM sluice_stage WHERE profile_id IS NULL)";

/// Deletes the profiles a staged chunk names.
pub async fn apply(
    tx: &Transaction<'_>,
    workspace: i64,
    import: i64,
    run: Uuid,
    delete_events: bool,
    stats: &mut LoadStats,
) -> Result<(), LoadError> {
    let counts = tx
        .query_one(
            DELETE_PROFILES,
            &[&workspace, &delete_events, &import, &run.to_string()],
        )
        .await
        .map_err(store_error)?;
    stats.profiles_deleted = counts.get::<_, i64>(0) as u64;
    stats.deletes_not_found = counts.get::<_, i64>(1) as u64;
    Ok(())
}
