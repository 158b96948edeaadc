//! The bootstrap commands, run on the host with the database's own access: `migrate`, `tokens
//! create` (the first token of a workspace), `workspaces` (where each lives and the operator's
//! limits) and `keys`.

use super::output::{emit, outln, table, write_table, Output};
use crate::settings::Settings;

/// `sluice tokens` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TokensCommand {
    /// Make a token and print it; it is shown this once. The workspace is created if new.
    Create {
        /// viewer (reads), operator (also runs and steers imports) or admin (everything).
        #[arg(long, default_value = "admin")]
        role: String,
        /// What the token is for.
        #[arg(long)]
        name: String,
    },
}

/// `sluice workspaces` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum WorkspacesCommand {
    /// Create a workspace in a store: the one named, or the one with the fewest profiles. A
    /// workspace made by `tokens create` or `apply` goes to the store with the fewest profiles
    /// last measured. It stays in its store.
    Create {
        /// The workspace's name.
        name: String,
        /// The store it lives in (`sluice stores list`).
        #[arg(long)]
        store: Option<String>,
    },
    /// List workspaces with their load limit and number of imports.
    List {
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Limit the rows per second a workspace's loads write across the fleet (the loaders
    /// share it); 0 removes the limit. The workspace is created if new.
    Limit {
        #[arg(long)]
        load_rows_per_second: u32,
    },
}

/// `sluice keys` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Print a new random master key (64 hex characters).
    Generate,
    /// Seal every stored secret under SLUICE_MASTER_KEY, opening each with the key that sealed
    /// it (SLUICE_PREVIOUS_MASTER_KEYS); safe while the fleet runs.
    Rotate,
}

/// `sluice migrate`.
pub async fn migrate(settings: &Settings) -> anyhow::Result<i32> {
    settings.migrate().await?;
    outln!(
        "migrations applied: control plane to {}, stores to {}",
        sluice_proto::bus::redact_url(&settings.database_url),
        sluice_proto::bus::redact_url(settings.store_url())
    );
    Ok(0)
}

/// `sluice tokens create`.
pub async fn tokens(settings: &Settings, command: TokensCommand) -> anyhow::Result<i32> {
    let TokensCommand::Create { role, name } = command;
    let workspace = super::context::workspace(settings)?;
    let role = sluice_coordinator::tokens::Role::parse(&role)
        .ok_or_else(|| anyhow::anyhow!("--role {role:?}: give viewer, operator or admin"))?;
    sluice_coordinator::spec::check_object_name("--workspace", &workspace)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let client = settings.control_for_writes().await?;
    let (id, token) =
        sluice_coordinator::tokens::create(&client, &workspace, &name, role, true).await?;
    eprintln!(
        "token {id} ({}) for workspace {workspace}; it is not shown again",
        role.as_str()
    );
    outln!("{token}");
    Ok(0)
}

/// `sluice workspaces list|limit`.
pub async fn workspaces(settings: &Settings, command: WorkspacesCommand) -> anyhow::Result<i32> {
    match command {
        WorkspacesCommand::List { output } => {
            let client = settings.control().await?;
            let listed = sluice_coordinator::workspaces::list(&client).await?;
            let rows: Vec<serde_json::Value> = listed
                .iter()
                .map(|w| {
                    serde_json::json!({
                        "name": w.name,
                        "load_rows_per_second": w.load_rows_per_second,
                        "imports": w.imports,
                        "store": w.store,
                    })
                })
                .collect();
            emit(output, &rows, |out| {
                let mut t = table(["WORKSPACE", "STORE", "LOAD ROWS/S", "IMPORTS"]);
                for w in &listed {
                    t.add_row([
                        w.name.clone(),
                        w.store.clone(),
                        w.load_rows_per_second
                            .map_or_else(|| "-".to_string(), |r| r.to_string()),
                        w.imports.to_string(),
                    ]);
                }
                write_table(out, &t)
            })?;
        }
        WorkspacesCommand::Create { name, store } => {
            sluice_coordinator::spec::check_object_name("NAME", &name)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let client = settings.control_for_writes().await?;
            if sluice_coordinator::apply::workspace_id(&client, &name)
                .await?
                .is_some()
            {
                anyhow::bail!("workspace {name:?} already exists");
            }
            if store.is_none() {
                super::stores::measure_all(settings, &client).await?;
            }
            let store =
                sluice_coordinator::stores::create_workspace(&client, &name, store.as_deref())
                    .await?;
            outln!("workspace {name} created in store {store}");
        }
        WorkspacesCommand::Limit {
            load_rows_per_second,
        } => {
            let workspace = super::context::workspace(settings)?;
            sluice_coordinator::spec::check_object_name("--workspace", &workspace)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let client = settings.control_for_writes().await?;
            let limit = Some(load_rows_per_second).filter(|r| *r > 0);
            sluice_coordinator::workspaces::set_load_limit(&client, &workspace, limit).await?;
            match limit {
                Some(r) => outln!("workspace {workspace}: loads write at most {r} rows/s"),
                None => outln!("workspace {workspace}: no load limit of its own"),
            }
        }
    }
    Ok(0)
}

/// `sluice keys generate|rotate`.
pub async fn keys(settings: &Settings, command: KeysCommand) -> anyhow::Result<i32> {
    match command {
        KeysCommand::Generate => {
            outln!("{}", sluice_proto::secrets::MasterKey::generate_hex());
        }
        KeysCommand::Rotate => {
            let key = settings.master_key()?;
            let mut client = settings.control_for_writes().await?;
            let rotation = sluice_coordinator::keys::rotate(&mut client, &key).await?;
            outln!(
                "{} secrets sealed again under master key {}; {} already were",
                rotation.resealed,
                key.id(),
                rotation.current
            );
        }
    }
    Ok(0)
}
