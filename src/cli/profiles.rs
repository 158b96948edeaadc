//! `sluice profiles`: export a workspace's profiles, read one profile's consent (its current
//! statuses and every change, with the import and run that made it) and the runs that touched
//! it (from the runs' lineage).

use super::output::{emit, table, write_table, Output};
use crate::settings::Settings;
use clap::Subcommand;
use serde::Serialize;
use sluice_coordinator::consent::{self, SubscriptionChange, SubscriptionStatus};
use std::collections::BTreeMap;

/// `sluice profiles` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProfilesCommand {
    /// Print every profile of the workspace, one JSON line each.
    Export,
    /// A profile's consent: its status per channel and group, and the history of changes.
    Subscriptions {
        /// The profile, by any identity: KIND=VALUE (external_id=u-1, email=a@b.co,
        /// alias:crm=42, profile_id=7).
        #[arg(long)]
        identity: String,
        /// Changes of the history shown, newest first.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// The runs that touched a profile, newest first, with what each run's rows did to it
    /// (within the imports' lineage_retention; dry runs left out).
    History {
        /// The profile, by any identity: KIND=VALUE (external_id=u-1, email=a@b.co,
        /// alias:crm=42, profile_id=7; a deleted profile by its profile_id).
        #[arg(long)]
        identity: String,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
}

/// A profile's consent as printed.
#[derive(Serialize)]
struct Consent {
    profile_id: i64,
    subscriptions: serde_json::Value,
    history: Vec<SubscriptionChange>,
}

/// Runs a `sluice profiles` subcommand in `workspace`.
pub async fn execute(
    settings: &Settings,
    workspace: &str,
    command: ProfilesCommand,
) -> anyhow::Result<i32> {
    match command {
        ProfilesCommand::Export => crate::export::profiles(settings, workspace)
            .await
            .map(|_| 0),
        ProfilesCommand::Subscriptions {
            identity,
            limit,
            output,
        } => subscriptions(settings, workspace, &identity, limit, output).await,
        ProfilesCommand::History { identity, output } => {
            history(settings, workspace, &identity, output).await
        }
    }
}

/// Splits `--identity KIND=VALUE`, refusing an unknown kind.
fn identity_arg(identity: &str) -> anyhow::Result<(&str, &str)> {
    let Some((kind, value)) = identity.split_once('=') else {
        anyhow::bail!("--identity: give KIND=VALUE, such as external_id=u-1 or email=a@b.co");
    };
    if let Some(problem) = consent::kind_problem(kind) {
        anyhow::bail!("--identity: {problem}");
    }
    Ok((kind, value))
}

async fn history(
    settings: &Settings,
    workspace: &str,
    identity: &str,
    output: Output,
) -> anyhow::Result<i32> {
    let (kind, value) = identity_arg(identity)?;
    let crate::export::WorkspaceStore {
        control,
        workspace_id,
        store: client,
    } = crate::export::WorkspaceStore::open(settings, workspace).await?;
    let profile_id =
        sluice_coordinator::lineage::history_profile(&client, workspace_id, kind, value).await?;
    let Some(profile_id) = profile_id else {
        anyhow::bail!("no profile with {kind} {value:?} in workspace {workspace:?}");
    };
    let objects = sluice_proto::storage::open(&settings.object_store_url())?;
    let runs =
        sluice_coordinator::lineage::profile_history(&control, &objects, workspace_id, profile_id)
            .await?;
    let found = sluice_coordinator::lineage::ProfileHistory { profile_id, runs };
    emit(output, &found, |out| {
        if found.runs.is_empty() {
            return writeln!(
                out,
                "profile {profile_id}: no run within the kept lineage touched it"
            );
        }
        writeln!(out, "profile {profile_id}, newest first:")?;
        let mut t = table(["RUN", "IMPORT", "REQUESTED", "STATUS", "ROWS", "OUTCOMES"]);
        for r in &found.runs {
            let outcomes: Vec<String> =
                r.outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
            t.add_row([
                r.run_id.to_string(),
                r.import.clone(),
                r.requested_at.to_rfc3339(),
                r.status.clone(),
                r.row_keys.join(", "),
                outcomes.join(", "),
            ]);
        }
        write_table(out, &t)
    })?;
    Ok(0)
}

async fn subscriptions(
    settings: &Settings,
    workspace: &str,
    identity: &str,
    limit: i64,
    output: Output,
) -> anyhow::Result<i32> {
    let (kind, value) = identity_arg(identity)?;
    if !(1..=10_000).contains(&limit) {
        anyhow::bail!("--limit: must be 1 to 10000");
    }
    let crate::export::WorkspaceStore {
        control,
        workspace_id,
        store: client,
    } = crate::export::WorkspaceStore::open(settings, workspace).await?;
    let Some(profile_id) = consent::profile_id(&client, workspace_id, kind, value).await? else {
        anyhow::bail!("no profile with {kind} {value:?} in workspace {workspace:?}");
    };
    let statuses: BTreeMap<String, SubscriptionStatus> =
        consent::statuses(&client, workspace_id, profile_id).await?;
    let history = consent::history(&client, workspace_id, profile_id, limit).await?;
    let imports: BTreeMap<i64, String> = control
        .query(
            "SELECT id, name FROM control.imports WHERE workspace_id = $1",
            &[&workspace_id],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let import = |id: i64| imports.get(&id).cloned().unwrap_or_else(|| id.to_string());
    let consent = Consent {
        profile_id,
        subscriptions: consent::nested(&statuses),
        history,
    };
    emit(output, &consent, |out| {
        writeln!(out, "profile {profile_id}")?;
        let mut current = table(["CHANNEL OR GROUP", "STATUS", "SINCE", "IMPORT"]);
        for (topic, s) in &statuses {
            current.add_row([
                topic.clone(),
                s.status.clone(),
                s.changed_at.to_rfc3339(),
                import(s.import_id),
            ]);
        }
        write_table(out, &current)?;
        writeln!(out)?;
        writeln!(out, "history, newest first:")?;
        let mut changes = table([
            "CHANNEL OR GROUP",
            "FROM",
            "TO",
            "AT",
            "IMPORT",
            "RUN",
            "CAUSE",
        ]);
        for c in &consent.history {
            changes.add_row([
                c.topic.clone(),
                c.from.clone().unwrap_or_else(|| "-".into()),
                c.to.clone().unwrap_or_else(|| "-".into()),
                c.changed_at.to_rfc3339(),
                import(c.import_id),
                c.run_id
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "-".into()),
                c.cause.clone(),
            ]);
        }
        write_table(out, &changes)
    })?;
    Ok(0)
}
