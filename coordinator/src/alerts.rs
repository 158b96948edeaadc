//! Alerts for what a green run can hide, evaluated by the coordinator that leads the
//! scheduler, on its clock: `no_rows_for` (the import read nothing for that long),
//! `volume_drop` (the latest run read less than that share of the median of the 10 before
//! it), `late_by` (a scheduled slot has not succeeded that long after it) and
//! `rejected_rate` (the latest run rejected more than that share of its rows). Each rule's
//! state is kept (`control.alert_states`), so a rule fires once when it becomes true
//! (`alert.firing`) and resolves once when it stops being true (`alert.resolved`), each
//! event carrying the rule and its figures.

use crate::spec::{AlertsDecl, ImportDecl};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio_postgres::GenericClient;

/// How often the leading coordinator evaluates the rules.
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Finished runs (dry runs aside) a volume is compared with.
const BASELINE_RUNS: usize = 10;

/// Finished runs needed before a volume is compared at all.
const MIN_BASELINE_RUNS: usize = 3;

/// A finished run, as the rules see it.
#[derive(Debug, Clone)]
pub struct RunFacts {
    /// `succeeded`, `partially_succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// The schedule slot it ran for; `None` for a run by hand.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Rows read.
    pub rows_read: i64,
    /// Rows rejected.
    pub rows_rejected: i64,
}

impl RunFacts {
    fn succeeded(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "partially_succeeded")
    }
}

/// What an import's rules are evaluated on.
#[derive(Debug, Clone)]
pub struct History {
    /// When the import was created: the quiet time of an import that never read a row
    /// counts from there.
    pub created_at: DateTime<Utc>,
    /// Its lifecycle state.
    pub state: String,
    /// Its next schedule slot.
    pub next_fire_at: Option<DateTime<Utc>>,
    /// When a run last read rows.
    pub last_rows_at: Option<DateTime<Utc>>,
    /// The latest finished runs, newest first (at most 11).
    pub runs: Vec<RunFacts>,
    /// The latest scheduled run, finished or not: (slot, status).
    pub last_slot: Option<(DateTime<Utc>, String)>,
}

/// The rules that are true at `now`, each with its figures.
pub fn firing(
    rules: &AlertsDecl,
    history: &History,
    now: DateTime<Utc>,
) -> Vec<(&'static str, Value)> {
    let mut firing = Vec::new();
    let since =
        |d: std::time::Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    if let Some(limit) = rules.no_rows_for {
        let quiet_from = history.last_rows_at.unwrap_or(history.created_at);
        if now - quiet_from >= since(limit) {
            firing.push((
                "no_rows_for",
                json!({ "last_rows_at": history.last_rows_at, "quiet_seconds": (now - quiet_from).num_seconds(), "limit_seconds": limit.as_secs() }),
            ));
        }
    }
    if let Some(share) = rules.volume_drop {
        if let Some((latest, before)) = history.runs.split_first() {
            let mut baseline: Vec<i64> = before
                .iter()
                .filter(|r| r.succeeded())
                .take(BASELINE_RUNS)
                .map(|r| r.rows_read)
                .collect();
            if latest.succeeded() && baseline.len() >= MIN_BASELINE_RUNS {
                baseline.sort_unstable();
                let median = median(&baseline);
                if median > 0.0 && (latest.rows_read as f64) < share.0 * median {
                    firing.push((
                        "volume_drop",
                        json!({ "rows_read": latest.rows_read, "median": median, "share": share.0, "runs": baseline.len() }),
                    ));
                }
            }
        }
    }
    if let Some(limit) = rules.late_by {
        let waiting = match (&history.last_slot, history.next_fire_at) {
            // The scheduler has not fired a slot that is due.
            (_, Some(next)) if history.state == "scheduled" && now - next >= since(limit) => {
                Some((next, "not started".to_string()))
            }
            // The last slot's run has not succeeded.
            (Some((slot, status)), _)
                if !matches!(status.as_str(), "succeeded" | "partially_succeeded")
                    && now - *slot >= since(limit) =>
            {
                Some((*slot, status.clone()))
            }
            _ => None,
        };
        if let Some((slot, status)) = waiting {
            firing.push((
                "late_by",
                json!({ "slot": slot, "status": status, "late_seconds": (now - slot).num_seconds(), "limit_seconds": limit.as_secs() }),
            ));
        }
    }
    if let Some(rate) = rules.rejected_rate {
        if let Some(latest) = history.runs.first() {
            let read = latest.rows_read.max(1) as f64;
            let share = latest.rows_rejected as f64 / read;
            if latest.rows_rejected > 0 && share > rate.0 {
                firing.push((
                    "rejected_rate",
                    json!({ "rows_read": latest.rows_read, "rows_rejected": latest.rows_rejected, "share": share, "limit": rate.0 }),
                ));
            }
        }
    }
    firing
}

fn median(sorted: &[i64]) -> f64 {
    let n = sorted.len();
    match n % 2 {
        1 => sorted[n / 2] as f64,
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0,
    }
}

const IMPORTS: &str = "SELECT i.id, i.spec, i.created_at, i.state, i.next_fire_at,
        (SELECT max(r.finished_at) FROM control.runs r
          WHERE r.import_id = i.id AND NOT r.dry_run AND r.finished_at IS NOT NULL
            AND EXISTS (SELECT 1 FROM control.chunks c WHERE c.run_id = r.id AND c.rows_read > 0)),
        (SELECT jsonb_build_array(r.scheduled_for, r.status) FROM control.runs r
          WHERE r.import_id = i.id AND r.scheduled_for IS NOT NULL AND NOT r.dry_run
          ORDER BY r.scheduled_for DESC LIMIT 1)
   FROM control.imports i
  WHERE i.spec->'notify'->'alerts' IS NOT NULL AND i.state NOT IN ('draft', 'stopped')";

const RUNS: &str = "SELECT r.status, r.scheduled_for, r.finished_at,
        coalesce(sum(c.rows_read) FILTER (WHERE c.kind = 'rows'), 0)::int8,
        coalesce(sum(c.rows_rejected + c.rows_rejected_load), 0)::int8 + r.rows_without_key
   FROM control.runs r LEFT JOIN control.chunks c ON c.run_id = r.id
  WHERE r.import_id = $1 AND NOT r.dry_run AND r.finished_at IS NOT NULL
  GROUP BY r.id
  ORDER BY r.created_at DESC
  LIMIT 11";

/// Evaluates every import's rules at `now`; returns the alerts that fired or resolved.
pub async fn evaluate(
    client: &mut tokio_postgres::Client,
    now: DateTime<Utc>,
) -> Result<usize, tokio_postgres::Error> {
    let imports = client.query(IMPORTS, &[]).await?;
    let mut changed = 0;
    for row in imports {
        let import_id: i64 = row.get(0);
        let Ok(decl) = serde_json::from_value::<ImportDecl>(row.get(1)) else {
            continue;
        };
        let Some(rules) = decl.notify.as_ref().and_then(|n| n.alerts.clone()) else {
            continue;
        };
        let runs = client
            .query(RUNS, &[&import_id])
            .await?
            .iter()
            .map(|r| RunFacts {
                status: r.get(0),
                scheduled_for: r.get(1),
                finished_at: r.get(2),
                rows_read: r.get(3),
                rows_rejected: r.get(4),
            })
            .collect();
        let last_slot = row
            .get::<_, Option<Value>>(6)
            .and_then(|v| serde_json::from_value::<(DateTime<Utc>, String)>(v).ok());
        let history = History {
            created_at: row.get(2),
            state: row.get(3),
            next_fire_at: row.get(4),
            last_rows_at: row.get(5),
            runs,
            last_slot,
        };
        let now_firing = firing(&rules, &history, now);
        let tx = client.transaction().await?;
        changed += settle(&tx, import_id, &now_firing, now).await?;
        tx.commit().await?;
    }
    Ok(changed)
}

/// Records which rules of an import fire now: a new one fires, a gone one resolves.
async fn settle(
    tx: &impl GenericClient,
    import_id: i64,
    now_firing: &[(&'static str, Value)],
    now: DateTime<Utc>,
) -> Result<usize, tokio_postgres::Error> {
    let was: Vec<(String, DateTime<Utc>, Value)> = tx
        .query(
            "SELECT rule, since, figures FROM control.alert_states WHERE import_id = $1 FOR UPDATE",
            &[&import_id],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let fired: Vec<&(&str, Value)> = now_firing
        .iter()
        .filter(|(rule, _)| !was.iter().any(|(r, _, _)| r == rule))
        .collect();
    let resolved: Vec<&(String, DateTime<Utc>, Value)> = was
        .iter()
        .filter(|(rule, _, _)| !now_firing.iter().any(|(r, _)| r == rule))
        .collect();
    if fired.is_empty() && resolved.is_empty() {
        return Ok(0);
    }
    // The import's latest run: the page the events link to.
    let run: Option<uuid::Uuid> = tx
        .query_opt(
            "SELECT id FROM control.runs WHERE import_id = $1 AND NOT dry_run
              ORDER BY created_at DESC LIMIT 1",
            &[&import_id],
        )
        .await?
        .map(|r| r.get(0));
    for (rule, figures) in &fired {
        tx.execute(
            "INSERT INTO control.alert_states (import_id, rule, since, figures) VALUES ($1, $2, $3, $4)",
            &[&import_id, rule, &now, figures],
        )
        .await?;
        let detail = json!({ "rule": rule, "figures": figures, "since": now });
        tx.execute(
            "SELECT control.notify_event($1, $2, 'alert.firing', $3)",
            &[&import_id, &run, &detail],
        )
        .await?;
    }
    for (rule, since, figures) in &resolved {
        tx.execute(
            "DELETE FROM control.alert_states WHERE import_id = $1 AND rule = $2",
            &[&import_id, rule],
        )
        .await?;
        let detail =
            json!({ "rule": rule, "figures": figures, "since": since, "resolved_at": now });
        tx.execute(
            "SELECT control.notify_event($1, $2, 'alert.resolved', $3)",
            &[&import_id, &run, &detail],
        )
        .await?;
    }
    Ok(fired.len() + resolved.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Share;
    use std::time::Duration;

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + hours * 3600, 0).unwrap()
    }

    fn run(hours: i64, rows_read: i64, rows_rejected: i64) -> RunFacts {
        RunFacts {
            status: "succeeded".into(),
            scheduled_for: Some(at(hours)),
            finished_at: at(hours),
            rows_read,
            rows_rejected,
        }
    }

    fn history(runs: Vec<RunFacts>) -> History {
        History {
            created_at: at(0),
            state: "scheduled".into(),
            next_fire_at: Some(at(100)),
            last_rows_at: runs
                .iter()
                .filter(|r| r.rows_read > 0)
                .map(|r| r.finished_at)
                .max(),
            last_slot: runs
                .first()
                .map(|r| (r.scheduled_for.unwrap(), r.status.clone())),
            runs,
        }
    }

    fn rules(f: impl FnOnce(&mut AlertsDecl)) -> AlertsDecl {
        let mut rules = AlertsDecl::default();
        f(&mut rules);
        rules
    }

    fn names(firing: Vec<(&'static str, Value)>) -> Vec<&'static str> {
        firing.into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn no_rows_for_counts_from_the_last_run_that_read_rows() {
        let quiet = rules(|r| r.no_rows_for = Some(Duration::from_secs(24 * 3600)));
        let h = history(vec![run(30, 0, 0), run(10, 5, 0)]);
        assert!(firing(&quiet, &h, at(33)).is_empty(), "23 hours");
        let fired = firing(&quiet, &h, at(34));
        assert_eq!(names(fired.clone()), ["no_rows_for"]);
        assert_eq!(fired[0].1["quiet_seconds"], 24 * 3600);
        // Never a row: from the import's creation.
        assert_eq!(
            names(firing(&quiet, &history(vec![]), at(25))),
            ["no_rows_for"]
        );
    }

    #[test]
    fn volume_drop_compares_the_latest_run_with_the_median_before_it() {
        let drop = rules(|r| r.volume_drop = Some(Share(0.5)));
        let mut runs = vec![run(9, 10, 0)];
        runs.extend((1..=4).map(|h| run(h, 100, 0)));
        let fired = firing(&drop, &history(runs.clone()), at(10));
        assert_eq!(names(fired.clone()), ["volume_drop"]);
        assert_eq!(fired[0].1["median"], 100.0);
        runs[0].rows_read = 50;
        assert!(
            firing(&drop, &history(runs.clone()), at(10)).is_empty(),
            "half is not below half"
        );
        runs.truncate(3);
        runs[0].rows_read = 1;
        assert!(
            firing(&drop, &history(runs), at(10)).is_empty(),
            "too few runs to compare"
        );
    }

    #[test]
    fn late_by_waits_for_a_slot_to_succeed() {
        let late = rules(|r| r.late_by = Some(Duration::from_secs(1800)));
        let mut h = history(vec![run(1, 5, 0)]);
        h.next_fire_at = Some(at(2));
        assert!(firing(&late, &h, at(2)).is_empty());
        assert_eq!(
            names(firing(&late, &h, at(3))),
            ["late_by"],
            "the slot never fired"
        );
        h.next_fire_at = Some(at(5));
        h.last_slot = Some((at(2), "failed".into()));
        assert_eq!(
            names(firing(&late, &h, at(3))),
            ["late_by"],
            "its run failed"
        );
        h.last_slot = Some((at(2), "succeeded".into()));
        assert!(firing(&late, &h, at(3)).is_empty());
    }

    #[test]
    fn rejected_rate_reads_the_latest_run() {
        let rate = rules(|r| r.rejected_rate = Some(Share(0.01)));
        assert!(firing(&rate, &history(vec![run(1, 1000, 10)]), at(2)).is_empty());
        let fired = firing(&rate, &history(vec![run(1, 1000, 11)]), at(2));
        assert_eq!(names(fired), ["rejected_rate"]);
    }
}
