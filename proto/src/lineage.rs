//! A run's lineage: what happened to each of its rows, written by the loader as one Parquet
//! object per chunk under the run's lineage prefix and read with SQL by the coordinator. The
//! columns and outcomes are named here, so the writer and the readers agree.

use crate::ChunkRef;
use serde::{Deserialize, Serialize};

/// The lineage object of a chunk. Lineage lives under its own prefix, apart from the chunk
/// objects, because it is kept longer (`lineage_retention`, 30 days by default) than they are.
pub fn object(chunk: &ChunkRef) -> String {
    format!(
        "{}/chunk-{:06}.parquet",
        run_prefix(chunk.workspace_id, chunk.import_id, chunk.run_id),
        chunk.seq
    )
}

/// The prefix of a run's lineage objects.
pub fn run_prefix(workspace_id: i64, import_id: i64, run_id: uuid::Uuid) -> String {
    format!("lineage/ws-{workspace_id}/import-{import_id}/run-{run_id}")
}

/// The prefix of every lineage object of a workspace.
pub fn workspace_prefix(workspace_id: i64) -> String {
    format!("lineage/ws-{workspace_id}/")
}

/// The columns of a lineage object, in order.
pub mod column {
    /// The run (a UUID as text).
    pub const RUN_ID: &str = "run_id";
    /// The chunk's position in its run.
    pub const CHUNK: &str = "chunk";
    /// Whether the run was a dry run (it wrote nothing).
    pub const DRY_RUN: &str = "dry_run";
    /// The source row's key, as text.
    pub const ROW_KEY: &str = "row_key";
    /// The identity kind that named the profile (`external_id`, `email`, `alias:<label>`...).
    pub const IDENTITY_KIND: &str = "identity_kind";
    /// That identity's value.
    pub const IDENTITY_VALUE: &str = "identity_value";
    /// The profile the row matched, created or deleted.
    pub const PROFILE_ID: &str = "profile_id";
    /// What happened to the row: one of [`super::Outcome`].
    pub const OUTCOME: &str = "outcome";
    /// The reason code of a rejected row (or `identity_conflict` on a row applied despite
    /// one).
    pub const REASON: &str = "reason";
    /// The row's values not applied because a newer row had set those properties.
    pub const PROPERTIES_STALE: &str = "properties_stale";
}

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The row created its profile.
    Created,
    /// The row changed its existing profile.
    Updated,
    /// The row left its existing profile as it was (equal, or every value stale).
    Unchanged,
    /// A newer row of the same profile in the chunk was applied instead; every value of this
    /// one is stale.
    Superseded,
    /// The row matched no profile and could not create one.
    Skipped,
    /// The row was rejected; `reason` says why.
    Rejected,
    /// The event was stored.
    Inserted,
    /// The event's dedup key was already stored (or an earlier row of the chunk had it).
    Duplicate,
    /// The row deleted its profile.
    Deleted,
    /// The delete row named no profile.
    NotFound,
}

impl Outcome {
    /// Every outcome, for documentation and checks.
    pub const ALL: [Outcome; 10] = [
        Outcome::Created,
        Outcome::Updated,
        Outcome::Unchanged,
        Outcome::Superseded,
        Outcome::Skipped,
        Outcome::Rejected,
        Outcome::Inserted,
        Outcome::Duplicate,
        Outcome::Deleted,
        Outcome::NotFound,
    ];

    /// The outcome as written and filtered on.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::Superseded => "superseded",
            Outcome::Skipped => "skipped",
            Outcome::Rejected => "rejected",
            Outcome::Inserted => "inserted",
            Outcome::Duplicate => "duplicate",
            Outcome::Deleted => "deleted",
            Outcome::NotFound => "not_found",
        }
    }

    /// Reads an outcome as written.
    pub fn parse(text: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_and_objects_lie_under_their_run() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        let run = uuid::Uuid::nil();
        let chunk = ChunkRef {
            run_id: run,
            workspace_id: 3,
            import_id: 9,
            seq: 12,
        };
        let key = object(&chunk);
        assert!(key.starts_with(&run_prefix(3, 9, run)));
        assert!(key.starts_with(&workspace_prefix(3)));
        assert!(key.ends_with("/chunk-000012.parquet"));
    }
}
