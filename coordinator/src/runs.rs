//! Run records in the control plane: creating a run (at most one active per import), failing
//! it, and reading a run's summary with stats summed over its chunks.

use crate::run_state::{transition_if_allowed, RunEvent};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice_proto::format_hint::{FormatHint, FormatTally};
use sluice_proto::{ReplayWindow, SampleRow};
use std::collections::BTreeMap;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// Statuses a run moves through, as the control plane spells them (see [`RunStatus`]).
pub mod status {
    use crate::run_state::RunStatus;

    /// Requested, not planned yet.
    pub const QUEUED: &str = RunStatus::Queued.as_str();
    /// Being planned.
    pub const PLANNING: &str = RunStatus::Planning.as_str();
    /// Its chunks are in the stages.
    pub const RUNNING: &str = RunStatus::Running.as_str();
    /// Every chunk loaded, every row accepted.
    pub const SUCCEEDED: &str = RunStatus::Succeeded.as_str();
    /// Every chunk loaded, some rows rejected.
    pub const PARTIALLY_SUCCEEDED: &str = RunStatus::PartiallySucceeded.as_str();
    /// A chunk or the planning failed.
    pub const FAILED: &str = RunStatus::Failed.as_str();
    /// Stopped before it ended.
    pub const CANCELLED: &str = RunStatus::Cancelled.as_str();
    /// Requested while another run of the import was active; nothing was read.
    pub const SKIPPED: &str = RunStatus::Skipped.as_str();

    /// Every status, in the order a run moves through them.
    pub const ALL: [&str; RunStatus::ALL.len()] = {
        let mut all = [""; RunStatus::ALL.len()];
        let mut i = 0;
        while i < all.len() {
            all[i] = RunStatus::ALL[i].as_str();
            i += 1;
        }
        all
    };

    /// True for statuses a run never leaves.
    pub fn is_final(status: &str) -> bool {
        RunStatus::parse(status).is_some_and(RunStatus::is_final)
    }
}

/// What happened when a run was requested.
#[derive(Debug, PartialEq, Eq)]
pub enum Requested {
    /// The run exists (just created, created by an earlier delivery, or created earlier for
    /// the same schedule slot or idempotency key) with this id and status.
    Exists {
        /// That run.
        run_id: Uuid,
        /// Its status.
        status: String,
    },
    /// Another run of the import is active; this one is recorded as skipped.
    Skipped {
        /// That run.
        active: Uuid,
    },
}

/// The new run's identity and where it came from.
pub struct NewRun<'a> {
    /// The run's id.
    pub run_id: Uuid,
    /// Its workspace.
    pub workspace_id: i64,
    /// Its import.
    pub import_id: i64,
    /// Whether it writes nothing and only reports.
    pub dry_run: bool,
    /// Who requested it.
    pub requested_by: &'a str,
    /// The trace the request belongs to.
    pub trace_id: &'a str,
    /// The schedule slot it fills, for a scheduled run.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Names the run, so a repeated request finds it.
    pub idempotency_key: Option<&'a str>,
    /// The window a replay reads again.
    pub replay: Option<ReplayWindow>,
}

/// Records a requested run; repeating the same run id is harmless.
pub async fn request(
    client: &impl GenericClient,
    run: &NewRun<'_>,
) -> Result<Requested, tokio_postgres::Error> {
    // A repeated run id, slot or key conflicts on insert and is found below. The active run
    // may end between the insert and the look-up; then the insert is tried again.
    let active = loop {
        let inserted = client
            .execute(
                "INSERT INTO control.runs (id, workspace_id, import_id, status, dry_run, requested_by, trace_id,
                                           scheduled_for, idempotency_key, replay_from, replay_until)
                 VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT DO NOTHING",
                &[&run.run_id, &run.workspace_id, &run.import_id, &run.dry_run, &run.requested_by, &run.trace_id,
                  &run.scheduled_for, &run.idempotency_key, &run.replay.map(|w| w.from),
                  &run.replay.map(|w| w.until)],
            )
            .await?;
        if inserted == 1 {
            return Ok(Requested::Exists {
                run_id: run.run_id,
                status: status::QUEUED.to_string(),
            });
        }
        if let Some(row) = client
            .query_opt(
                "SELECT status FROM control.runs WHERE id = $1",
                &[&run.run_id],
            )
            .await?
        {
            return Ok(Requested::Exists {
                run_id: run.run_id,
                status: row.get(0),
            });
        }
        if let Some(row) = client
            .query_opt(
                "SELECT id, status FROM control.runs
                  WHERE import_id = $1 AND (scheduled_for = $2 OR idempotency_key = $3)",
                &[&run.import_id, &run.scheduled_for, &run.idempotency_key],
            )
            .await?
        {
            return Ok(Requested::Exists {
                run_id: row.get(0),
                status: row.get(1),
            });
        }
        if let Some(row) = client
            .query_opt(
                "SELECT id FROM control.runs WHERE import_id = $1 AND status IN ('queued', 'planning', 'running')",
                &[&run.import_id],
            )
            .await?
        {
            break row.get::<_, Uuid>(0);
        }
    };
    client
        .execute(
            "INSERT INTO control.runs (id, workspace_id, import_id, status, dry_run, requested_by, trace_id,
                                       error_code, error_message, finished_at, scheduled_for, idempotency_key)
             VALUES ($1, $2, $3, 'skipped', $4, $5, $6, 'run_active', $7, now(), $8, $9)
             ON CONFLICT DO NOTHING",
            &[
                &run.run_id,
                &run.workspace_id,
                &run.import_id,
                &run.dry_run,
                &run.requested_by,
                &run.trace_id,
                &format!("run {active} of this import is still active"),
                &run.scheduled_for,
                &run.idempotency_key,
            ],
        )
        .await?;
    Ok(Requested::Skipped { active })
}

/// Marks a run failed unless it already ended, with its unfinished chunks cancelled; true when
/// this ended it.
pub async fn fail(
    client: &impl GenericClient,
    run_id: Uuid,
    code: &str,
    message: &str,
) -> Result<bool, tokio_postgres::Error> {
    let event = RunEvent::Failed {
        code: code.to_string(),
        message: message.to_string(),
    };
    let ended = transition_if_allowed(client, run_id, &event).await?;
    if ended.is_some() {
        // Workers discard the rest of a failed run, so its chunks end here, not in a queue.
        client
            .execute(
                "UPDATE control.chunks SET status = 'cancelled', updated_at = now()
                  WHERE run_id = $1 AND status NOT IN ('loaded', 'failed')",
                &[&run_id],
            )
            .await?;
    }
    crate::imports::pause_after_failures(client, run_id).await?;
    Ok(ended.is_some())
}

/// A run as users see it: status, stats summed over chunks, and timing.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RunSummary {
    /// The run's id.
    pub run_id: Uuid,
    /// Its workspace.
    pub workspace: String,
    /// Its import.
    pub import: String,
    /// Where the run is: `queued` to `succeeded` or `failed`.
    pub status: String,
    /// Whether it wrote nothing and only reported.
    pub dry_run: bool,
    /// Rows read from the source.
    pub rows_read: i64,
    /// Rows rejected, each in the error stream.
    pub rows_rejected: i64,
    /// Rows that reached the stores.
    pub rows_loaded: i64,
    /// Profiles created.
    pub profiles_created: i64,
    /// Profiles whose properties changed.
    pub profiles_updated: i64,
    /// Profiles the run left as they were.
    pub profiles_unchanged: i64,
    /// Values not applied because a newer source row had set that property.
    pub properties_stale: i64,
    /// Rows whose unique identities named two different profiles (applied by precedence;
    /// each is in the error stream as `identity_conflict`).
    pub identities_conflicting: i64,
    /// Events without a time stamped with the run's start (`if_missing: import_time`).
    pub events_time_imputed: i64,
    /// Mirror imports: profiles whose properties were unset because their source rows left.
    pub profiles_removed_from_source: i64,
    /// Rows that matched no profile and could not create one (`update_only`, `profile_id`).
    pub rows_skipped: i64,
    /// Rows resolved by an email or phone several profiles share (the most recent was used).
    pub identities_ambiguous: i64,
    /// Rejected rows by reason code.
    pub rejected_by_reason: BTreeMap<String, i64>,
    /// Consent: changes of status by channel or group (`group:` and its name), then by the
    /// status changed to.
    #[serde(default)]
    pub subscriptions_changed: BTreeMap<String, BTreeMap<String, i64>>,
    /// Consent: statuses not applied because the profile held a newer one.
    #[serde(default)]
    pub subscriptions_stale: i64,
    /// Events stored for the first time.
    pub events_inserted: i64,
    /// Events the store already held (replays, resyncs, repeated rows): not stored again.
    pub events_duplicate: i64,
    /// Profiles deleted.
    pub profiles_deleted: i64,
    /// Delete rows whose identity named no profile.
    pub deletes_not_found: i64,
    /// Rows stamped in the future, held back until their time.
    pub rows_held_back_future: i64,
    /// Source rows with a NULL or infinite watermark, which no run reads: counted by every
    /// run until the source gives them one (or a query source coalesces it).
    pub rows_without_watermark: i64,
    /// Source rows without a key in the run's range, which no run can read; counted among the
    /// rejected rows as `missing_key`.
    pub rows_without_key: i64,
    /// Rows rejected by earlier runs for a cause that can go away (`type_conflict`,
    /// `unknown_identity`, `missing_channel_address`) that this run read again by key.
    #[serde(default)]
    pub rows_retried: i64,
    /// Of the rows read again, those that passed this time (not rejected again).
    #[serde(default)]
    pub rows_recovered: i64,
    /// Rejected rows dropped from the retry set because they were retried for longer than the
    /// import's `retry_rejected_for`.
    #[serde(default)]
    pub rows_retry_expired: i64,
    /// Chunks the run was cut into.
    pub chunks: i32,
    /// Chunks loaded so far.
    pub chunks_loaded: i64,
    /// How long it ran, once it ended.
    pub duration_ms: Option<i64>,
    /// The failure's code, when it failed.
    pub error_code: Option<String>,
    /// The failure, when it failed.
    pub error: Option<String>,
    /// Dry runs: up to 20 rows, the identity they matched, their outcome and properties.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub sample: Vec<SampleRow>,
    /// Dry runs: date properties whose declared format rejects values another order of
    /// year, month and day reads, every one of them.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub format_hints: Vec<FormatHint>,
    /// What the import's rows become: `profiles`, `events`, `purchases` or `user_deletes`.
    #[serde(default)]
    pub data_type: String,
    /// When it was requested.
    #[serde(default)]
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When it ended.
    #[serde(default)]
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Who requested it (`schedule`, `api:<token>`, `cli:<user>`).
    #[serde(default)]
    pub requested_by: String,
    /// Dry runs of a draft import: whether the run took it out of draft.
    #[serde(default)]
    pub promoted: Option<bool>,
    /// Dry runs of a draft import: what the run did to it, and why it stays a draft.
    #[serde(default)]
    pub promotion: Option<String>,
    /// The destination the import delivers to instead of the built-in stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// Delivery to a destination: records the platform accepted (in a dry run: would be sent).
    #[serde(default)]
    pub records_delivered: i64,
    /// Delivery to a destination: requests sent (in a dry run: that would be).
    #[serde(default)]
    pub delivery_requests: i64,
    /// Dry runs to a destination: the first request as it would be sent, credentials masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub delivery_sample: Option<serde_json::Value>,
}

const SUMMARY_SQL: &str = "SELECT r.id, w.name, i.name, r.status, r.dry_run,
        coalesce(sum(c.rows_read) FILTER (WHERE c.kind = 'rows'), 0)::int8,
        coalesce(sum(c.rows_rejected + c.rows_rejected_load), 0)::int8 + r.rows_without_key,
        coalesce(sum(c.rows_loaded), 0)::int8, coalesce(sum(c.profiles_created), 0)::int8,
        coalesce(sum(c.profiles_updated), 0)::int8, coalesce(sum(c.profiles_unchanged), 0)::int8,
        r.held_back_future, r.chunk_count, count(c.seq) FILTER (WHERE c.status = 'loaded'),
        (extract(epoch FROM (coalesce(r.finished_at, now()) - r.created_at)) * 1000)::int8,
        r.error_code, r.error_message,
        coalesce(sum(c.rows_skipped), 0)::int8, coalesce(sum(c.identities_ambiguous), 0)::int8,
        (SELECT coalesce(jsonb_object_agg(code, n), '{}'::jsonb) FROM (
            SELECT e.key AS code, sum(e.value::int8) AS n
              FROM control.chunks c2
             CROSS JOIN LATERAL (SELECT * FROM jsonb_each_text(c2.rejected_by_reason)
                                 UNION ALL
                                 SELECT * FROM jsonb_each_text(c2.load_rejected_by_reason)) e
             WHERE c2.run_id = r.id GROUP BY e.key
            UNION ALL
            SELECT 'missing_key', r.rows_without_key WHERE r.rows_without_key > 0) x),
        (SELECT coalesce(jsonb_agg(s.row ORDER BY s.seq, s.ord), '[]'::jsonb) FROM (
            SELECT c3.seq, t.ord, t.row
              FROM control.chunks c3, jsonb_array_elements(c3.sample) WITH ORDINALITY t(row, ord)
             WHERE c3.run_id = r.id AND c3.sample IS NOT NULL
             ORDER BY c3.seq, t.ord LIMIT 20) s),
        coalesce(sum(c.events_inserted), 0)::int8, coalesce(sum(c.events_duplicate), 0)::int8,
        coalesce(sum(c.profiles_deleted), 0)::int8, coalesce(sum(c.deletes_not_found), 0)::int8,
        coalesce(sum(c.properties_stale), 0)::int8, coalesce(sum(c.identities_conflicting), 0)::int8,
        coalesce(sum(c.events_time_imputed), 0)::int8,
        coalesce(sum(c.profiles_removed_from_source), 0)::int8,
        r.rows_without_watermark, r.rows_without_key, r.promotion, r.promoted,
        (SELECT coalesce(jsonb_agg(c4.date_formats ORDER BY c4.seq), '[]'::jsonb)
           FROM control.chunks c4 WHERE c4.run_id = r.id AND c4.date_formats IS NOT NULL),
        (SELECT coalesce(jsonb_object_agg(topic, statuses), '{}'::jsonb) FROM (
            SELECT topic, jsonb_object_agg(status, n) AS statuses FROM (
                SELECT t.key AS topic, s.key AS status, sum(s.value::int8) AS n
                  FROM control.chunks c5
                 CROSS JOIN LATERAL jsonb_each(c5.subscriptions_changed) t
                 CROSS JOIN LATERAL jsonb_each_text(t.value) s
                 WHERE c5.run_id = r.id AND c5.subscriptions_changed IS NOT NULL
                 GROUP BY t.key, s.key) y
             GROUP BY topic) x),
        coalesce(sum(c.subscriptions_stale), 0)::int8,
        coalesce(sum(c.rows_read) FILTER (WHERE c.kind = 'retry'), 0)::int8,
        coalesce(sum(c.rows_read - c.rows_rejected - c.rows_rejected_load)
                 FILTER (WHERE c.kind = 'retry' AND c.status = 'loaded'), 0)::int8,
        r.rows_retry_expired, i.data_type, r.created_at, r.finished_at, r.requested_by,
        i.spec->>'destination', coalesce(sum(c.records_delivered), 0)::int8,
        coalesce(sum(c.delivery_requests), 0)::int8,
        (SELECT c6.delivery_sample FROM control.chunks c6
          WHERE c6.run_id = r.id AND c6.delivery_sample IS NOT NULL ORDER BY c6.seq LIMIT 1)
   FROM control.runs r
   JOIN control.workspaces w ON w.id = r.workspace_id
   JOIN control.imports i ON i.id = r.import_id
   LEFT JOIN control.chunks c ON c.run_id = r.id
  WHERE r.id = $1
  GROUP BY r.id, w.name, i.name, i.data_type, i.spec->>'destination'";

/// Cancels a queued, planning or running run: its status becomes `cancelled` and its
/// unfinished chunks are discarded. Returns whether it was active. The caller tells the
/// workers (`trigger::announce_cancel`).
pub async fn cancel(
    client: &mut tokio_postgres::Client,
    run_id: Uuid,
    actor: &str,
) -> Result<bool, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let cancelled = cancel_in(&tx, run_id, actor).await?;
    tx.commit().await?;
    Ok(cancelled)
}

/// [`cancel`] inside the caller's transaction.
pub async fn cancel_in(
    tx: &tokio_postgres::Transaction<'_>,
    run_id: Uuid,
    actor: &str,
) -> Result<bool, tokio_postgres::Error> {
    let stopped = RunEvent::Stopped {
        by: actor.to_string(),
    };
    if transition_if_allowed(tx, run_id, &stopped).await?.is_none() {
        return Ok(false);
    }
    tx.execute(
        "UPDATE control.chunks SET status = 'cancelled', updated_at = now()
          WHERE run_id = $1 AND status NOT IN ('loaded', 'failed')",
        &[&run_id],
    )
    .await?;
    Ok(true)
}

/// Reads a run's summary, or `None` if the coordinator has not recorded it yet.
pub async fn summary(
    client: &impl GenericClient,
    run_id: Uuid,
) -> Result<Option<RunSummary>, tokio_postgres::Error> {
    Ok(client
        .query_opt(SUMMARY_SQL, &[&run_id])
        .await?
        .map(|r| RunSummary {
            run_id: r.get(0),
            workspace: r.get(1),
            import: r.get(2),
            status: r.get(3),
            dry_run: r.get(4),
            rows_read: r.get(5),
            rows_rejected: r.get(6),
            rows_loaded: r.get(7),
            profiles_created: r.get(8),
            profiles_updated: r.get(9),
            profiles_unchanged: r.get(10),
            rows_held_back_future: r.get(11),
            chunks: r.get(12),
            chunks_loaded: r.get(13),
            duration_ms: r.get(14),
            error_code: r.get(15),
            error: r.get(16),
            rows_skipped: r.get(17),
            identities_ambiguous: r.get(18),
            rejected_by_reason: serde_json::from_value(r.get(19)).unwrap_or_default(),
            sample: serde_json::from_value(r.get(20)).unwrap_or_default(),
            events_inserted: r.get(21),
            events_duplicate: r.get(22),
            profiles_deleted: r.get(23),
            deletes_not_found: r.get(24),
            properties_stale: r.get(25),
            identities_conflicting: r.get(26),
            events_time_imputed: r.get(27),
            profiles_removed_from_source: r.get(28),
            rows_without_watermark: r.get(29),
            rows_without_key: r.get(30),
            promotion: r.get(31),
            promoted: r.get(32),
            format_hints: format_hints(r.get(33)),
            subscriptions_changed: serde_json::from_value(r.get(34)).unwrap_or_default(),
            subscriptions_stale: r.get(35),
            rows_retried: r.get(36),
            rows_recovered: r.get(37),
            rows_retry_expired: r.get(38),
            data_type: r.get(39),
            created_at: r.get(40),
            finished_at: r.get(41),
            requested_by: r.get(42),
            destination: r.get(43),
            records_delivered: r.get(44),
            delivery_requests: r.get(45),
            delivery_sample: r.get(46),
        }))
}

/// The run's format advice from its chunks' censuses (a JSON list of them, by property).
fn format_hints(chunks: serde_json::Value) -> Vec<FormatHint> {
    let chunks: Vec<BTreeMap<String, FormatTally>> =
        serde_json::from_value(chunks).unwrap_or_default();
    let mut run: BTreeMap<String, FormatTally> = BTreeMap::new();
    for chunk in &chunks {
        for (property, tally) in chunk {
            run.entry(property.clone()).or_default().merge(tally);
        }
    }
    run.iter()
        .filter_map(|(property, tally)| tally.hint(property))
        .collect()
}
