//! The run state machine: a run's statuses, the events that move it, the one function that
//! decides which moves are allowed, and the one that records a move in the control plane.
//! Nothing else writes a run's status (a run is created `queued` or `skipped` by
//! `runs::request`).

use tokio_postgres::GenericClient;
use uuid::Uuid;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Requested, not planned yet.
    Queued,
    /// Being planned.
    Planning,
    /// Its chunks are in the stages.
    Running,
    /// Every chunk loaded, every row accepted.
    Succeeded,
    /// Every chunk loaded, some rows rejected.
    PartiallySucceeded,
    /// A chunk or the planning failed.
    Failed,
    /// Stopped before it ended.
    Cancelled,
    /// Requested while another run of the import was active; nothing was read.
    Skipped,
}

impl RunStatus {
    /// Every status, in the order a run moves through them.
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Queued,
        RunStatus::Planning,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::PartiallySucceeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::Skipped,
    ];

    /// The status as the control plane and the API spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Planning => "planning",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::PartiallySucceeded => "partially_succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Skipped => "skipped",
        }
    }

    /// The status spelled `text`, if it is one.
    pub fn parse(text: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// True for the statuses a run never leaves.
    pub const fn is_final(self) -> bool {
        !matches!(
            self,
            RunStatus::Queued | RunStatus::Planning | RunStatus::Running
        )
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEvent {
    /// The command consumer starts (or, after a crash, restarts) planning it.
    PlanningStarted,
    /// Its plan was recorded: `chunks` to read, and whether rows no range can hold were found.
    Planned {
        /// How many.
        chunks: usize,
        /// Whether rows no run can read were found.
        unreadable: bool,
    },
    /// Every chunk loaded; `rejected` when any row was rejected or unreadable.
    AllLoaded {
        /// Whether any row was rejected.
        rejected: bool,
    },
    /// Planning failed, a chunk gave up, or the import may not run.
    Failed {
        /// The error code.
        code: String,
        /// What failed.
        message: String,
    },
    /// Its import was stopped.
    Stopped {
        /// Who stopped it.
        by: String,
    },
}

impl RunEvent {
    fn name(&self) -> &'static str {
        match self {
            RunEvent::PlanningStarted => "planning started",
            RunEvent::Planned { .. } => "planned",
            RunEvent::AllLoaded { .. } => "all chunks loaded",
            RunEvent::Failed { .. } => "failed",
            RunEvent::Stopped { .. } => "stopped",
        }
    }
}

/// A move the state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {from} run cannot be moved by the event \"{event}\"")]
pub struct Refused {
    /// The run's status.
    pub from: RunStatus,
    /// The event that does not apply to it.
    pub event: &'static str,
}

/// The status `event` moves a run in `from` to, or why it may not.
pub fn next(from: RunStatus, event: &RunEvent) -> Result<RunStatus, Refused> {
    use RunStatus::*;
    let to = match (from, event) {
        // A redelivered command plans again a run whose planner died.
        (Queued | Planning, RunEvent::PlanningStarted) => Some(Planning),
        (
            Planning,
            RunEvent::Planned {
                chunks: 0,
                unreadable,
            },
        ) => Some(match unreadable {
            true => PartiallySucceeded,
            false => Succeeded,
        }),
        (Planning, RunEvent::Planned { .. }) => Some(Running),
        (Running, RunEvent::AllLoaded { rejected }) => Some(match rejected {
            true => PartiallySucceeded,
            false => Succeeded,
        }),
        (Queued | Planning | Running, RunEvent::Failed { .. }) => Some(Failed),
        (Queued | Planning | Running, RunEvent::Stopped { .. }) => Some(Cancelled),
        _ => None,
    };
    to.ok_or(Refused {
        from,
        event: event.name(),
    })
}

/// A move recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Moved {
    /// The status the run left.
    pub from: RunStatus,
    /// The status it is in now.
    pub to: RunStatus,
}

/// Why a move could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    /// No such run.
    #[error("run {0} does not exist")]
    NotFound(Uuid),
    /// The move is not allowed from the run's status.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// Another writer moved the run first.
    #[error("run {0} moved on while it was being moved")]
    Moved(Uuid),
    /// The control plane failed.
    #[error("control plane: {0}")]
    Database(#[from] tokio_postgres::Error),
}

/// Moves a run by `event`: locks its row, checks the move with [`next`], and records the new
/// status, with the end time and error of a final one (and counts the run as finished).
pub async fn transition(
    client: &impl GenericClient,
    run_id: Uuid,
    event: &RunEvent,
) -> Result<Moved, TransitionError> {
    let row = client
        .query_opt(
            "SELECT status FROM control.runs WHERE id = $1 FOR UPDATE",
            &[&run_id],
        )
        .await?
        .ok_or(TransitionError::NotFound(run_id))?;
    let text: String = row.get(0);
    let from = RunStatus::parse(&text).ok_or(TransitionError::NotFound(run_id))?;
    let to = next(from, event)?;
    let (code, message) = match event {
        RunEvent::Failed { code, message } => (Some(code.as_str()), Some(message.clone())),
        RunEvent::Stopped { by } => (Some("stopped"), Some(format!("stopped by {by}"))),
        _ => (None, None),
    };
    // The status is checked again, for callers outside a transaction whose lock has ended.
    let Some(updated) = client
        .query_opt(
            "UPDATE control.runs
                SET status = $2,
                    started_at = CASE WHEN $2 IN ('planning', 'running') THEN coalesce(started_at, clock_timestamp()) ELSE started_at END,
                    finished_at = CASE WHEN $3 THEN now() END,
                    error_code = coalesce($4, error_code),
                    error_message = coalesce($5, error_message)
              WHERE id = $1 AND status = $6
              RETURNING extract(epoch FROM finished_at - created_at)::float8",
            &[&run_id, &to.as_str(), &to.is_final(), &code, &message, &from.as_str()],
        )
        .await?
    else {
        return Err(TransitionError::Moved(run_id));
    };
    let took: Option<f64> = updated.get(0);
    if let Some(took) = took {
        crate::metrics::run_finished(to.as_str(), took);
    }
    Ok(Moved { from, to })
}

/// [`transition`], with a refused move (the run already moved on) as `None`.
pub async fn transition_if_allowed(
    client: &impl GenericClient,
    run_id: Uuid,
    event: &RunEvent,
) -> Result<Option<Moved>, tokio_postgres::Error> {
    match transition(client, run_id, event).await {
        Ok(moved) => Ok(Some(moved)),
        Err(
            TransitionError::Refused(_) | TransitionError::NotFound(_) | TransitionError::Moved(_),
        ) => Ok(None),
        Err(TransitionError::Database(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunStatus::*;

    fn events() -> Vec<RunEvent> {
        vec![
            RunEvent::PlanningStarted,
            RunEvent::Planned {
                chunks: 3,
                unreadable: false,
            },
            RunEvent::Planned {
                chunks: 0,
                unreadable: false,
            },
            RunEvent::Planned {
                chunks: 0,
                unreadable: true,
            },
            RunEvent::AllLoaded { rejected: false },
            RunEvent::AllLoaded { rejected: true },
            RunEvent::Failed {
                code: "source".into(),
                message: "gone".into(),
            },
            RunEvent::Stopped { by: "ops".into() },
        ]
    }

    /// The allowed moves, and nothing else.
    fn allowed(from: RunStatus, event: &RunEvent) -> Option<RunStatus> {
        match (from, event) {
            (Queued | Planning, RunEvent::PlanningStarted) => Some(Planning),
            (Planning, RunEvent::Planned { chunks: 3, .. }) => Some(Running),
            (
                Planning,
                RunEvent::Planned {
                    chunks: 0,
                    unreadable: false,
                },
            ) => Some(Succeeded),
            (
                Planning,
                RunEvent::Planned {
                    chunks: 0,
                    unreadable: true,
                },
            ) => Some(PartiallySucceeded),
            (Running, RunEvent::AllLoaded { rejected: false }) => Some(Succeeded),
            (Running, RunEvent::AllLoaded { rejected: true }) => Some(PartiallySucceeded),
            (Queued | Planning | Running, RunEvent::Failed { .. }) => Some(Failed),
            (Queued | Planning | Running, RunEvent::Stopped { .. }) => Some(Cancelled),
            _ => None,
        }
    }

    #[test]
    fn every_status_and_event_pair_moves_as_allowed_or_is_refused_by_name() {
        let mut moves = 0;
        for from in RunStatus::ALL {
            for event in events() {
                match (allowed(from, &event), next(from, &event)) {
                    (Some(want), Ok(got)) => {
                        assert_eq!(got, want, "{from} + {event:?}");
                        moves += 1;
                    }
                    (None, Err(refused)) => {
                        let message = refused.to_string();
                        assert!(
                            message.contains(from.as_str()) && message.contains(refused.event),
                            "{message}"
                        );
                    }
                    (want, got) => panic!("{from} + {event:?}: wanted {want:?}, got {got:?}"),
                }
            }
        }
        assert_eq!(moves, 13);
    }

    #[test]
    fn final_statuses_take_no_event() {
        for from in RunStatus::ALL.into_iter().filter(|s| s.is_final()) {
            for event in events() {
                assert!(next(from, &event).is_err(), "{from} + {event:?}");
            }
        }
    }

    #[test]
    fn statuses_spell_and_parse_back() {
        for status in RunStatus::ALL {
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(RunStatus::parse("done"), None);
    }
}
