//! `sluice destinations …`: the engagement platforms a workspace's imports deliver to, listed
//! without their credentials.

use super::backend::{Access, Backend};
use super::output::{emit, table, write_table, Output};
use crate::settings::Settings;

/// `sluice destinations` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DestinationsCommand {
    /// List the workspace's destinations (never their credentials), with their request rate
    /// and the imports delivering to each.
    List {
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
}

/// Runs one `sluice destinations` command.
pub async fn execute(settings: &Settings, command: DestinationsCommand) -> anyhow::Result<i32> {
    let backend = Backend::open(settings, Access::READ).await?;
    let workspace = backend.workspace().to_string();
    match command {
        DestinationsCommand::List { output } => {
            let destinations = backend.destinations().await?;
            emit(output, &destinations, |out| {
                if destinations.is_empty() {
                    return writeln!(out, "workspace {workspace:?} has no destinations");
                }
                let mut t = table(["NAME", "KIND", "URL", "REQUESTS/S", "IMPORTS"]);
                for d in &destinations {
                    t.add_row([
                        d.name.clone(),
                        d.kind.clone(),
                        d.url.clone(),
                        d.requests_per_second.to_string(),
                        d.imports.join(", "),
                    ]);
                }
                write_table(out, &t)
            })?;
        }
    }
    Ok(0)
}
