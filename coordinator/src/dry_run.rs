//! What a dry run decides about its import: a draft leaves `draft` only when the run rejected
//! at most `promote_max_rejected` of the rows it saw, and the run records why it did or did
//! not, so a mapping that loses most rows (a wrong date format) never goes live unseen.

use crate::spec::ImportDecl;
use sluice_proto::format_hint::thousands;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// The rejected share a dry run may show and still promote its draft, unless the import says
/// otherwise.
pub const DEFAULT_PROMOTE_MAX_REJECTED: f64 = 0.01;

/// Rows seen and rows rejected by a run: those read, and the ones planning found unreadable
/// (no key, no watermark).
const COUNTS: &str = "SELECT r.workspace_id, i.name, i.state, i.spec,
        coalesce((SELECT sum(c.rows_read) FROM control.chunks c
                   WHERE c.run_id = r.id AND c.kind = 'rows'), 0)::int8
          + r.rows_without_key + r.rows_without_watermark,
        coalesce((SELECT sum(c.rows_rejected + c.rows_rejected_load) FROM control.chunks c
                   WHERE c.run_id = r.id), 0)::int8
          + r.rows_without_key + r.rows_without_watermark
   FROM control.runs r JOIN control.imports i ON i.id = r.import_id
  WHERE r.id = $1
    FOR UPDATE OF i";

/// Ends a dry run's part in its import's lifecycle: promotes a draft whose rejected share is
/// within its limit, and records the outcome on the run either way. An import in another
/// state is left alone and nothing is recorded.
pub async fn conclude(
    client: &impl GenericClient,
    run_id: Uuid,
) -> Result<(), tokio_postgres::Error> {
    let Some(row) = client.query_opt(COUNTS, &[&run_id]).await? else {
        return Ok(());
    };
    let (workspace_id, name, state): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
    if state != crate::imports::state::DRAFT {
        return Ok(());
    }
    let limit = serde_json::from_value::<ImportDecl>(row.get(3))
        .ok()
        .and_then(|i| i.promote_max_rejected)
        .unwrap_or(DEFAULT_PROMOTE_MAX_REJECTED);
    let (seen, rejected): (i64, i64) = (row.get(4), row.get(5));
    let share = if seen > 0 {
        rejected as f64 / seen as f64
    } else {
        0.0
    };
    let promoted = share <= limit;
    let outcome = if promoted {
        crate::imports::promote(client, workspace_id, &name, &format!("dry run {run_id}")).await?;
        let now: String = client
            .query_one(
                "SELECT state FROM control.imports WHERE workspace_id = $1 AND name = $2",
                &[&workspace_id, &name],
            )
            .await?
            .get(0);
        format!("import {name} promoted from draft to {now}")
    } else {
        format!(
            "import {name} stays a draft: {} of {} rows rejected ({}), above promote_max_rejected ({}); fix the mapping (see the rejected rows) or raise promote_max_rejected, then dry-run again",
            thousands(rejected as u64),
            thousands(seen as u64),
            percent(share),
            percent(limit),
        )
    };
    client
        .execute(
            "UPDATE control.runs SET promoted = $2, promotion = $3 WHERE id = $1",
            &[&run_id, &promoted, &outcome],
        )
        .await?;
    Ok(())
}

/// A share as a percentage with at most one decimal: `0.6` is `60%`, `0.0125` is `1.3%`.
fn percent(share: f64) -> String {
    let p = (share * 1000.0).round() / 10.0;
    if p.fract() == 0.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

#[cfg(test)]
mod tests {
    use super::percent;

    #[test]
    fn shares_read_as_percentages() {
        assert_eq!(percent(0.6), "60%");
        assert_eq!(percent(0.01), "1%");
        assert_eq!(percent(0.0125), "1.3%");
        assert_eq!(percent(0.0), "0%");
    }
}
