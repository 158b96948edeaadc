//! `sluice connections …`: list, test, generate Snowflake and SSH key pairs for, and delete a
//! workspace's connections (never showing their credentials).

use super::backend::{Access, Backend};
use super::output::{emit, outln, table, write_table, Output};
use crate::settings::Settings;

/// `sluice connections` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConnectionsCommand {
    /// List the workspace's connections (never their credentials), with the SSH bastion each
    /// goes through and its pinned host key.
    List {
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Test a connection: ok, or what failed (tunnel_unreachable, tunnel_authentication,
    /// tunnel_host_key_changed, source_unreachable, authentication, permission_denied, ...).
    /// The first successful test of a connection through an SSH bastion pins its host key.
    Test {
        name: String,
        /// Accept the host key the SSH bastion presents now, after it was changed on purpose.
        #[arg(long)]
        repin_ssh_host_key: bool,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Generate a key pair for a Snowflake connection and print the `ALTER USER` statement
    /// that registers the public key; with `--ssh`, an Ed25519 key for the connection's SSH
    /// bastion and the line for its `authorized_keys`. Private keys are kept sealed.
    Keygen {
        name: String,
        /// A key for the connection's SSH bastion instead of Snowflake.
        #[arg(long)]
        ssh: bool,
    },
    /// Delete a connection; refused, with the imports named, while any import uses it.
    Delete { name: String },
}

/// Runs one `sluice connections` command; a failed test exits 1.
pub async fn execute(settings: &Settings, command: ConnectionsCommand) -> anyhow::Result<i32> {
    use ConnectionsCommand as C;
    let access = match &command {
        // With the master key at hand, each connection's bastion is shown too.
        C::List { .. } if settings.master_key().is_ok() => Access::READ_SECRETS,
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
                let mut t = table(["NAME", "KIND", "IMPORTS", "SSH BASTION"]);
                for c in &connections {
                    let bastion = match (&c.bastion, c.ssh_key, &c.ssh_host_key) {
                        (None, _, _) => String::new(),
                        (Some(b), false, _) => format!("{b} (no key yet)"),
                        (Some(b), true, None) => format!("{b} (host key not pinned)"),
                        (Some(b), true, Some(k)) => format!("{b} {k}"),
                    };
                    t.add_row([
                        c.name.clone(),
                        c.kind.to_string(),
                        c.imports.to_string(),
                        bastion,
                    ]);
                }
                write_table(out, &t)
            })?;
        }
        C::Test {
            name,
            repin_ssh_host_key,
            output,
        } => {
            let tested = backend.test_connection(&name, repin_ssh_host_key).await?;
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
                match (&tested.ssh_host_key, tested.ssh_host_key_pinned) {
                    (Some(key), true) => writeln!(
                        out,
                        "{at}: the SSH bastion's host key {key} is now pinned: every run accepts only this key"
                    )?,
                    (Some(key), false) => {
                        writeln!(out, "{at}: the SSH bastion presented its pinned host key {key}")?
                    }
                    (None, _) => {}
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
        C::Keygen { name, ssh: true } => {
            let key = backend.keygen_ssh(&name).await?;
            outln!("{}", key.public_key);
            outln!(
                "add the line above to ~{}/.ssh/authorized_keys on the bastion {}",
                key.bastion.split('@').next().unwrap_or_default(),
                key.bastion
            );
            if key.pending {
                outln!(
                    "then run `sluice connections test {name} --workspace {workspace}`: the new key \
                     replaces the old one once the bastion accepts it; until then the old one stays in use."
                );
            } else {
                outln!(
                    "then run `sluice connections test {name} --workspace {workspace}`, which pins \
                     the bastion's host key."
                );
            }
        }
        C::Keygen { name, ssh: false } => {
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
