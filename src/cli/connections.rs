//! `sluice connections …`: list, test, generate Snowflake key pairs for, and delete a
//! workspace's connections (never showing their credentials).

use super::backend::{Access, Backend};
use crate::settings::Settings;

/// `sluice connections` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConnectionsCommand {
    /// List a workspace's connections (never their credentials).
    List {
        #[arg(long)]
        workspace: String,
    },
    /// Test a connection: ok, or what failed (unreachable, authentication, permission, ...).
    Test {
        name: String,
        #[arg(long)]
        workspace: String,
    },
    /// Generate a key pair for a Snowflake connection (the private key is kept sealed) and
    /// print the `ALTER USER` statement that registers the public key.
    Keygen {
        name: String,
        #[arg(long)]
        workspace: String,
    },
    /// Delete a connection; refused, with the imports named, while any import uses it.
    Delete {
        name: String,
        #[arg(long)]
        workspace: String,
    },
}

/// Runs one `sluice connections` command; a failed test exits 1.
pub async fn execute(settings: &Settings, command: ConnectionsCommand) -> anyhow::Result<i32> {
    use ConnectionsCommand as C;
    match command {
        C::List { workspace } => {
            let backend = Backend::open(settings, &workspace, Access::READ).await?;
            for c in backend.connections().await? {
                println!("{}\t{}\tused by {} imports", c.name, c.kind, c.imports);
            }
        }
        C::Test { name, workspace } => {
            let backend = Backend::open(settings, &workspace, Access::WRITE_SECRETS).await?;
            let tested = backend.test_connection(&name).await?;
            let at = format!("connection {workspace}/{name}");
            if !tested.ok {
                println!(
                    "{at}: {} — {}",
                    tested.code.unwrap_or_default(),
                    tested.message.unwrap_or_default()
                );
                return Ok(1);
            }
            if let Some(e) = &tested.pending_key_refused {
                println!("{at}: the new key was refused ({e}); the old credentials stay in use");
            }
            if tested.key_promoted {
                println!("{at}: ok with the new key, which is now in use");
                if let Some(statement) = &tested.retire {
                    println!("retire the old key in Snowflake with:\n  {statement}");
                }
            } else {
                println!("{at}: ok");
            }
        }
        C::Keygen { name, workspace } => {
            let backend = Backend::open(settings, &workspace, Access::WRITE_SECRETS).await?;
            let pair = backend.keygen(&name).await?;
            println!("public key: {}", pair.public_key);
            println!("register it in Snowflake (as a user with OWNERSHIP or MODIFY on the user):");
            println!("  {}", pair.statement);
            println!(
                "then run `sluice connections test {name} --workspace {workspace}`: the new key \
                 replaces the old credentials once it logs in; until then they stay in use."
            );
        }
        C::Delete { name, workspace } => {
            let backend = Backend::open(settings, &workspace, Access::WRITE).await?;
            backend.delete_connection(&name).await?;
            println!("connection {workspace}/{name} deleted");
        }
    }
    Ok(0)
}
