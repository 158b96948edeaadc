//! `sluice connections …`: list, test, generate Snowflake key pairs for, and delete a
//! workspace's connections (never showing their credentials).

use super::backend::{Access, Backend};
use super::output::{emit, outln, table, write_table, Output};
use crate::settings::Settings;

/// `sluice connections` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConnectionsCommand {
    /// List the workspace's connections (never their credentials).
    List {
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Test a connection: ok, or what failed (unreachable, authentication, permission, ...).
    Test {
        name: String,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Generate a key pair for a Snowflake connection (the private key is kept sealed) and
    /// print the `ALTER USER` statement that registers the public key.
    Keygen { name: String },
    /// Delete a connection; refused, with the imports named, while any import uses it.
    Delete { name: String },
}

/// Runs one `sluice connections` command; a failed test exits 1.
pub async fn execute(settings: &Settings, command: ConnectionsCommand) -> anyhow::Result<i32> {
    use ConnectionsCommand as C;
    let access = match &command {
        C::List { .. } => Access::READ,
        C::Delete { .. } => Access::WRITE,
        C::Test { .. } | C::Keygen { .. } => Access::WRITE_SECRETS,
    };
    let backend = Backend::open(settings, access).await?;
    let workspace = backend.workspace().to_string();
    match command {
        C::List { output } => {
            let connections = backend.connections().await?;
            emit(output, &connections, |out| {
                if connections.is_empty() {
                    return writeln!(out, "workspace {workspace:?} has no connections");
                }
                let mut t = table(["NAME", "KIND", "IMPORTS"]);
                for c in &connections {
                    t.add_row([c.name.clone(), c.kind.to_string(), c.imports.to_string()]);
                }
                write_table(out, &t)
            })?;
        }
        C::Test { name, output } => {
            let tested = backend.test_connection(&name).await?;
            let at = format!("connection {workspace}/{name}");
            emit(output, &tested, |out| {
                if !tested.ok {
                    return writeln!(
                        out,
                        "{at}: {} — {}",
                        tested.code.as_deref().unwrap_or_default(),
                        tested.message.as_deref().unwrap_or_default()
                    );
                }
                if let Some(e) = &tested.pending_key_refused {
                    writeln!(
                        out,
                        "{at}: the new key was refused ({e}); the old credentials stay in use"
                    )?;
                }
                if tested.key_promoted {
                    writeln!(out, "{at}: ok with the new key, which is now in use")?;
                    if let Some(statement) = &tested.retire {
                        writeln!(out, "retire the old key in Snowflake with:\n  {statement}")?;
                    }
                    Ok(())
                } else {
                    writeln!(out, "{at}: ok")
                }
            })?;
            if !tested.ok {
                return Ok(1);
            }
        }
        C::Keygen { name } => {
            let pair = backend.keygen(&name).await?;
            outln!("public key: {}", pair.public_key);
            outln!("register it in Snowflake (as a user with OWNERSHIP or MODIFY on the user):");
            outln!("  {}", pair.statement);
            outln!(
                "then run `sluice connections test {name} --workspace {workspace}`: the new key \
                 replaces the old credentials once it logs in; until then they stay in use."
            );
        }
        C::Delete { name } => {
            backend.delete_connection(&name).await?;
            outln!("connection {workspace}/{name} deleted");
        }
    }
    Ok(0)
}
