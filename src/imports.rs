//! `sluice imports list|show|pause|resume` and `sluice connections list|delete`: an import's
//! state, schedule and next fire times, and the lifecycle operations, each recorded with who
//! made it.

use crate::settings::Settings;
use chrono::Utc;
use sluice_coordinator::imports;

/// Who is acting, for the audit trail.
fn actor() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".to_string())
}

/// Prints a workspace's imports, one line each.
pub async fn list(settings: &Settings, workspace: &str) -> anyhow::Result<i32> {
    let client = settings.control().await?;
    let rows = imports::list(&client, workspace).await?;
    if rows.is_empty() {
        println!(
            "workspace {workspace:?} has no imports; declare some with `sluice apply -f spec.yaml`"
        );
    }
    for (name, data_type, state, next) in rows {
        let next = next.map_or("-".to_string(), |t| {
            t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        });
        println!("{name}\t{data_type}\t{state}\tnext {next}");
    }
    Ok(0)
}

/// Prints one import: state, schedule, the next 5 fire times, last run and transitions.
pub async fn show(
    settings: &Settings,
    workspace: &str,
    import: &str,
    json: bool,
) -> anyhow::Result<i32> {
    let client = settings.control().await?;
    let view = imports::show(&client, workspace, import, Utc::now()).await?;
    if json {
        println!("{}", serde_json::to_string(&view)?);
        return Ok(0);
    }
    println!(
        "import {}/{} ({}): {}",
        view.workspace, view.name, view.data_type, view.state
    );
    match &view.schedule {
        Some(s) => println!("  schedule {s}"),
        None => println!("  no schedule: runs only when triggered"),
    }
    for t in &view.upcoming {
        println!("  fires at {}  ({})", t.utc, t.local);
    }
    if let Some(run) = &view.last_run {
        println!(
            "  last run {} {} at {}",
            run.run_id,
            run.status,
            run.created_at.format("%Y-%m-%dT%H:%M:%SZ")
        );
    }
    for t in &view.transitions {
        println!(
            "  {} {} -> {} by {}{}",
            t.at.format("%Y-%m-%dT%H:%M:%SZ"),
            t.from.as_deref().unwrap_or("-"),
            t.to,
            t.actor,
            t.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
    }
    Ok(0)
}

/// Pauses or resumes an import.
pub async fn set_paused(
    settings: &Settings,
    workspace: &str,
    import: &str,
    paused: bool,
) -> anyhow::Result<i32> {
    let mut client = settings.control_for_writes().await?;
    if paused {
        imports::pause(&mut client, workspace, import, &actor()).await?;
        println!("import {workspace}/{import} paused; an active run finishes, the schedule stops");
    } else {
        imports::resume(&mut client, workspace, import, &actor()).await?;
        println!("import {workspace}/{import} resumed");
    }
    Ok(0)
}

/// Prints a workspace's connections.
pub async fn list_connections(settings: &Settings, workspace: &str) -> anyhow::Result<i32> {
    let client = settings.control().await?;
    for (name, kind, imports) in sluice_coordinator::connections::list(&client, workspace).await? {
        println!("{name}\t{kind}\tused by {imports} imports");
    }
    Ok(0)
}

/// Deletes a connection that no import uses.
pub async fn delete_connection(
    settings: &Settings,
    workspace: &str,
    name: &str,
) -> anyhow::Result<i32> {
    let mut client = settings.control_for_writes().await?;
    sluice_coordinator::connections::delete(&mut client, workspace, name).await?;
    println!("connection {workspace}/{name} deleted");
    Ok(0)
}

/// Deletes an import and its run history; refused while a run is active.
pub async fn delete(settings: &Settings, workspace: &str, import: &str) -> anyhow::Result<i32> {
    let mut client = settings.control_for_writes().await?;
    let runs =
        sluice_coordinator::imports::delete(&mut client, workspace, import, &actor()).await?;
    println!("import {workspace}/{import} deleted with {runs} runs");
    Ok(0)
}

/// Resets an import's watermark, or moves it back to a time; audited.
pub async fn move_watermark(
    settings: &Settings,
    workspace: &str,
    import: &str,
    to: Option<&str>,
) -> anyhow::Result<i32> {
    let mut client = settings.control_for_writes().await?;
    let show = |b: &Option<sluice_proto::Bound>| {
        b.as_ref()
            .map_or("the start".to_string(), |b| b.to_string())
    };
    match to {
        None => {
            let from =
                sluice_coordinator::watermark::resync(&mut client, workspace, import, &actor())
                    .await?;
            println!("import {workspace}/{import}: watermark reset from {}; the next run reads every row", show(&from));
        }
        Some(to) => {
            let at = chrono::DateTime::parse_from_rfc3339(to)
                .map_err(|_| anyhow::anyhow!("--to {to:?} is not an ISO-8601 date-time with an offset, like 2026-11-01T00:00:00Z"))?
                .with_timezone(&Utc);
            let (from, position) = sluice_coordinator::watermark::rewind(
                &mut client,
                &settings.master_key()?,
                workspace,
                import,
                at,
                &actor(),
            )
            .await?;
            if from.is_none() {
                println!("import {workspace}/{import} has no watermark yet; its next run reads every row");
            } else {
                println!(
                    "import {workspace}/{import}: watermark moved back from {} to {}; the next run reads every row from {to} on",
                    show(&from),
                    show(&position)
                );
            }
        }
    }
    Ok(0)
}

/// Stops an import and tells the workers to discard its cancelled run's remaining chunks.
pub async fn stop(settings: &Settings, workspace: &str, import: &str) -> anyhow::Result<i32> {
    let mut client = settings.control_for_writes().await?;
    let cancelled = imports::stop(&mut client, workspace, import, &actor()).await?;
    let Some(run_id) = cancelled else {
        println!("import {workspace}/{import} stopped; no run was active");
        return Ok(0);
    };
    sluice_coordinator::trigger::announce_cancel(
        &settings.amqp_url,
        &settings.topology(),
        run_id,
        &actor(),
    )
    .await?;
    println!("import {workspace}/{import} stopped; run {run_id} cancelled, its remaining chunks are discarded");
    Ok(0)
}

/// Tests a stored connection; exits 1 when it fails, with what failed.
pub async fn test_connection(
    settings: &Settings,
    workspace: &str,
    name: &str,
) -> anyhow::Result<i32> {
    let client = settings.control_for_writes().await?;
    match sluice_coordinator::connections::test(&client, &settings.master_key()?, workspace, name)
        .await
    {
        Ok(tested) => {
            if let Some(e) = &tested.pending_refused {
                println!(
                    "connection {workspace}/{name}: the new key was refused ({e}); the old credentials stay in use"
                );
            }
            match &tested.promoted {
                Some(retire) => {
                    println!(
                        "connection {workspace}/{name}: ok with the new key, which is now in use"
                    );
                    if let Some(statement) = retire {
                        println!("retire the old key in Snowflake with:\n  {statement}");
                    }
                }
                None => println!("connection {workspace}/{name}: ok"),
            }
            Ok(0)
        }
        Err(sluice_coordinator::connections::ConnectionError::Test { error, .. }) => {
            println!(
                "connection {workspace}/{name}: {} — {error}",
                error.code().as_str()
            );
            Ok(1)
        }
        Err(e) => Err(e.into()),
    }
}

/// Generates a Snowflake key pair for a connection and prints what to run in Snowflake.
pub async fn keygen(settings: &Settings, workspace: &str, name: &str) -> anyhow::Result<i32> {
    let client = settings.control_for_writes().await?;
    let rotation =
        sluice_coordinator::connections::keygen(&client, &settings.master_key()?, workspace, name)
            .await?;
    println!("public key: {}", rotation.public_key);
    println!("register it in Snowflake (as a user with OWNERSHIP or MODIFY on the user):");
    println!("  {}", rotation.statement);
    println!(
        "then run `sluice connections test {name} --workspace {workspace}`: the new key replaces \
         the old credentials once it logs in; until then they stay in use."
    );
    Ok(0)
}

/// Prints an import's source schema and first rows, as the extractor reads them.
pub async fn preview(
    settings: &Settings,
    workspace: &str,
    import: &str,
    rows: usize,
) -> anyhow::Result<i32> {
    let client = settings.control().await?;
    let batch = sluice_coordinator::preview::preview(
        &client,
        &settings.master_key()?,
        workspace,
        import,
        rows,
    )
    .await?;
    println!("schema:");
    for field in batch.schema().fields() {
        println!("  {}: {}", field.name(), field.data_type());
    }
    println!("{}", arrow::util::pretty::pretty_format_batches(&[batch])?);
    Ok(0)
}
