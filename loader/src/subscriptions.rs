//! Applying a staged chunk's consent: each profile's newest status per channel and group,
//! newer than the store's (on a tie, `unsubscribed` wins), every change appended to the
//! history; and the rows that would subscribe a channel the profile has no address for,
//! rejected before anything of theirs is applied.

use crate::load::{store_error, LoadError};
use sluice_proto::rejection::{self, RowRejection};
use sluice_proto::subscription::Topic;
use sluice_proto::{Mapping, Reason};
use std::collections::BTreeMap;
use tokio_postgres::Transaction;
use uuid::Uuid;

/// The resolved rows that subscribe a channel whose address neither they nor their profile
/// hold (`addressless` rows carry no address of their own for a channel they subscribe; a
/// profile created by the chunk has the address of the row it was created from). Rows that
/// matched no profile are rejected too when the import creates profiles, since an
/// addressless row never creates one. They leave the staging table: nothing of theirs is
/// applied. Returns (key, topic, status, properties).
pub const REJECT_ADDRESSLESS: &str = "WITH bad AS (
    SELECT s.key, t.key AS topic, t.value AS status, s.props::text AS props
      FROM sluice_stage s
      LEFT JOIN profile_store.profiles p ON p.workspace_id = $1 AND p.profile_id = s.profile_id
     CROSS JOIN LATERAL (
           SELECT t.key, t.value FROM jsonb_each_text(s.subs) t
            WHERE t.value <> 'unsubscribed'
              AND ((t.key = 'email' AND s.email IS NULL AND p.email IS NULL)
                OR (t.key IN ('sms', 'whatsapp') AND s.phone IS NULL AND p.phone IS NULL))
            ORDER BY t.key LIMIT 1) t
     WHERE s.addressless
       AND (s.profile_id IS NOT NULL OR ($2 AND s.create_kind IS NOT NULL))
), gone AS (
    DELETE FROM sluice_stage s USING bad WHERE s.key = bad.key
)
SELECT key, topic, status, props FROM bad ORDER BY key";

/// Applies the staged statuses of workspace `$1` as import `$2` in run `$3`: per profile and
/// topic the chunk's newest (by consent time, else the row's source time; on a tie
/// `unsubscribed`, then the greatest key), written when newer than the store's or, at the
/// same time, an `unsubscribed` over another status. The store's rows are locked first and
/// the write re-checks the rule against the row it meets, so concurrent loads of one profile
/// keep the newest. Groups are created on first use; a written change of status is appended
/// to the history. Returns one row per (topic, status) changed with its count, and a row
/// with NULL topic counting the stale statuses: the chunk's statuses older than the one the
/// profile ends with.
pub const APPLY: &str = "WITH c AS (
    SELECT s.profile_id, t.key AS topic, t.value AS status,
           coalesce(s.consented_at, s.updated_at) AS changed_at, s.key
      FROM sluice_stage s CROSS JOIN LATERAL jsonb_each_text(s.subs) t
     WHERE s.profile_id IS NOT NULL AND s.subs IS NOT NULL
), n AS MATERIALIZED (
    SELECT DISTINCT ON (profile_id, topic) profile_id, topic, status, changed_at
      FROM c
     ORDER BY profile_id, topic, changed_at DESC, (status = 'unsubscribed') DESC, key DESC
), held AS MATERIALIZED (
    SELECT o.profile_id, o.topic, o.status, o.changed_at
      FROM profile_store.subscriptions o
      JOIN n ON o.workspace_id = $1 AND o.profile_id = n.profile_id AND o.topic = n.topic
       FOR UPDATE OF o
), next AS MATERIALIZED (
    SELECT n.profile_id, n.topic, n.status, n.changed_at,
           h.status AS held_status, h.changed_at AS held_at,
           h.status IS NULL OR n.changed_at > h.changed_at
             OR (n.changed_at = h.changed_at AND n.status = 'unsubscribed'
                 AND h.status <> 'unsubscribed') AS wins
      FROM n LEFT JOIN held h ON h.profile_id = n.profile_id AND h.topic = n.topic
), groups AS (
    INSERT INTO profile_store.subscription_groups (workspace_id, name, import_id)
    SELECT DISTINCT $1::bigint, substr(topic, 7), $2::bigint FROM n WHERE starts_with(topic, 'group:')
    ON CONFLICT DO NOTHING
), written AS (
    INSERT INTO profile_store.subscriptions AS o
           (workspace_id, profile_id, topic, status, changed_at, import_id)
    SELECT $1, profile_id, topic, status, changed_at, $2 FROM next WHERE wins
    ON CONFLICT (workspace_id, profile_id, topic) DO UPDATE
       SET status = EXCLUDED.status, changed_at = EXCLUDED.changed_at,
           import_id = EXCLUDED.import_id, updated_at = now()
     WHERE EXCLUDED.changed_at > o.changed_at
        OR (EXCLUDED.changed_at = o.changed_at AND EXCLUDED.status = 'unsubscribed'
            AND o.status <> 'unsubscribed')
    RETURNING o.profile_id, o.topic
), changed AS (
    SELECT x.* FROM next x JOIN written w ON w.profile_id = x.profile_id AND w.topic = x.topic
     WHERE x.held_status IS DISTINCT FROM x.status
), history AS (
    INSERT INTO profile_store.subscription_changes
           (workspace_id, profile_id, topic, from_status, to_status, changed_at, import_id,
            run_id, cause)
    SELECT $1, profile_id, topic, held_status, status, changed_at, $2, $3::text::uuid, 'import'
      FROM changed
)
SELECT topic, status, count(*) FROM changed GROUP BY topic, status
UNION ALL
SELECT NULL, NULL, count(*)
  FROM c JOIN next x ON x.profile_id = c.profile_id AND x.topic = c.topic
 CROSS JOIN LATERAL (
       SELECT CASE WHEN x.wins THEN x.changed_at ELSE x.held_at END AS at,
              CASE WHEN x.wins THEN x.status ELSE x.held_status END AS status) f
 WHERE c.changed_at < f.at
    OR (c.changed_at = f.at AND f.status = 'unsubscribed' AND c.status <> 'unsubscribed')";

/// What a chunk did to consent.
#[derive(Debug, Default)]
pub struct Applied {
    /// Changes of status by topic, then by the status changed to.
    pub changed: BTreeMap<String, BTreeMap<String, u64>>,
    /// Statuses older than the one their profile ends with.
    pub stale: u64,
}

/// Rejects the staged rows subscribing a channel their profile has no address for, as
/// `missing_channel_address` naming the channel's column; `create` is whether the import
/// creates profiles.
pub async fn reject_addressless(
    tx: &Transaction<'_>,
    workspace: i64,
    mapping: &Mapping,
    create: bool,
) -> Result<Vec<RowRejection>, LoadError> {
    let Some(subscriptions) = &mapping.subscriptions else {
        return Ok(Vec::new());
    };
    let rows = tx
        .query(REJECT_ADDRESSLESS, &[&workspace, &create])
        .await
        .map_err(store_error)?;
    Ok(rows
        .iter()
        .map(|r| {
            let (key, topic, status, props): (String, String, String, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            let channel = Topic::from_key(&topic);
            let column = subscriptions
                .topics()
                .into_iter()
                .find(|(t, _)| Some(t) == channel.as_ref())
                .map(|(_, s)| s.column.clone())
                .unwrap_or_else(|| topic.clone());
            let address = match channel {
                Some(Topic::Channel(c)) => c.address(),
                _ => None,
            }
            .unwrap_or("address");
            RowRejection {
                row_key: key,
                column,
                value: Some(status.clone()),
                reason: Reason::MissingChannelAddress,
                message: format!(
                    "subscriptions.{topic}: {status} needs the profile's {address}, and neither the row nor the profile has one"
                ),
                row: rejection::row_values(&props),
            }
        })
        .collect())
}

/// Applies the staged statuses; see `APPLY`.
pub async fn apply(
    tx: &Transaction<'_>,
    workspace: i64,
    import: i64,
    run: Uuid,
) -> Result<Applied, LoadError> {
    let rows = tx
        .query(APPLY, &[&workspace, &import, &run.to_string()])
        .await
        .map_err(store_error)?;
    let mut applied = Applied::default();
    for row in rows {
        let count = row.get::<_, i64>(2) as u64;
        match (
            row.get::<_, Option<String>>(0),
            row.get::<_, Option<String>>(1),
        ) {
            (Some(topic), Some(status)) => {
                *applied
                    .changed
                    .entry(topic)
                    .or_default()
                    .entry(status)
                    .or_default() += count;
            }
            _ => applied.stale += count,
        }
    }
    Ok(applied)
}

/// Whether a row's statuses subscribe a channel whose address the row does not carry.
pub fn addressless<'a>(
    statuses: impl IntoIterator<Item = (&'a Topic, &'a str)>,
    email: bool,
    phone: bool,
) -> bool {
    statuses.into_iter().any(|(topic, status)| {
        status != "unsubscribed"
            && match topic {
                Topic::Channel(c) => match c.address() {
                    Some("email") => !email,
                    Some(_) => !phone,
                    None => false,
                },
                Topic::Group(_) => false,
            }
    })
}
