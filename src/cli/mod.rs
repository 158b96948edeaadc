//! The `sluice` command line: the arguments, and one dispatch to the module that owns each
//! command group. Admin commands reach the service through `backend.rs`, on the host or over
//! `--server`; bootstrap commands (`admin.rs`) stay on the host.

mod admin;
mod apply;
pub mod backend;
mod connections;
mod context;
mod destinations;
mod errors;
pub mod follow;
mod imports;
pub mod output;
mod profiles;
pub mod runs;
mod serve;
mod stores;
mod summary;

use crate::roles::Role;
use crate::settings::Settings;
use clap::{Parser, Subcommand};
use serve::{serve, WorkerArgs, SERVING_HELP};

/// The version `--version` prints: the package's, the commit it was built from and the
/// build's date (`build.rs`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SLUICE_COMMIT"),
    ", built ",
    env!("SLUICE_BUILD_DATE"),
    ")"
);

/// Imports profiles and events from data warehouses into the profile and event stores, exactly once.
#[derive(Debug, Parser)]
#[command(name = "sluice", version = VERSION, about)]
pub struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the database if needed and apply the control plane's and stores' migrations.
    Migrate,
    /// Run the coordinator and every worker role in this process.
    #[command(after_help = SERVING_HELP)]
    All(WorkerArgs),
    /// Run the coordinator: plans runs and records their results.
    #[command(after_help = SERVING_HELP)]
    Coordinator(WorkerArgs),
    /// Run an extractor worker: reads chunks from warehouses into Parquet.
    #[command(after_help = SERVING_HELP)]
    Extractor(WorkerArgs),
    /// Run a transformer worker: applies mappings with DataFusion.
    #[command(after_help = SERVING_HELP)]
    Transformer(WorkerArgs),
    /// Run a loader worker: upserts into the profile store.
    #[command(after_help = SERVING_HELP)]
    Loader(WorkerArgs),
    /// Create or update the connections and imports a spec file declares. New imports are
    /// drafts until a dry run succeeds.
    Apply(apply::ApplyArgs),
    /// Trigger a run of an import; with --wait, follow it to its end.
    Run(runs::RunArgs),
    /// Imports: list, show (state, schedule, next fire times), preview, pause, resume, stop,
    /// replay, resync, rewind.
    Imports {
        #[command(subcommand)]
        command: imports::ImportsCommand,
    },
    /// Connections: list, test, and delete one no import uses.
    Connections {
        #[command(subcommand)]
        command: connections::ConnectionsCommand,
    },
    /// Destinations: the engagement platforms imports deliver to, listed.
    Destinations {
        #[command(subcommand)]
        command: destinations::DestinationsCommand,
    },
    /// Runs: list, show, watch, cancel, and their rejected rows.
    Runs {
        #[command(subcommand)]
        command: runs::RunsCommand,
    },
    /// The workspace's error stream: rejected rows across runs in a window, with counts by
    /// reason and import.
    Errors(errors::ErrorsArgs),
    /// Events in the event store.
    Events {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// Profiles in the profile store: export them, read one's consent.
    Profiles {
        #[command(subcommand)]
        command: profiles::ProfilesCommand,
    },
    /// API tokens: make one for a workspace (the first admin token of a new workspace too).
    Tokens {
        #[command(subcommand)]
        command: admin::TokensCommand,
    },
    /// Workspaces and their share of the stores (set by the fleet's operator).
    Workspaces {
        #[command(subcommand)]
        command: admin::WorkspacesCommand,
    },
    /// The profile and event stores workspaces live in: register one, list them.
    Stores {
        #[command(subcommand)]
        command: stores::StoresCommand,
    },
    /// Master keys: make a new one, or seal every stored secret under the current one.
    Keys {
        #[command(subcommand)]
        command: admin::KeysCommand,
    },
    /// Create a demo warehouse table, import it with every role in this process, and show the result.
    Demo(WorkerArgs),
    /// Saved defaults (the workspace commands act in), like a kubectl context.
    Config {
        #[command(subcommand)]
        command: context::ConfigCommand,
    },
    /// Print a shell completion script: `source <(sluice completions bash)`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum ExportCommand {
    /// Print every record of the workspace, one JSON line each.
    Export,
}

const EVERY_ROLE: [Role; 4] = [
    Role::Coordinator,
    Role::Extractor,
    Role::Transformer,
    Role::Loader,
];

/// Runs the command; returns the process exit code.
pub async fn execute(cli: Cli) -> anyhow::Result<i32> {
    let settings = &cli.settings;
    use Command as C;
    // Serving roles set up their own telemetry, the demo logs the fleet into a file.
    if !matches!(
        cli.command,
        C::All(_)
            | C::Coordinator(_)
            | C::Extractor(_)
            | C::Transformer(_)
            | C::Loader(_)
            | C::Demo(_)
    ) {
        crate::telemetry::init_logs();
    }
    match cli.command {
        C::Migrate => admin::migrate(settings).await,
        C::All(args) => serve(&EVERY_ROLE, "sluice", settings, &args).await,
        C::Coordinator(args) => {
            serve(&[Role::Coordinator], "sluice-coordinator", settings, &args).await
        }
        C::Extractor(args) => serve(&[Role::Extractor], "sluice-extractor", settings, &args).await,
        C::Transformer(args) => {
            serve(&[Role::Transformer], "sluice-transformer", settings, &args).await
        }
        C::Loader(args) => serve(&[Role::Loader], "sluice-loader", settings, &args).await,
        C::Apply(args) => apply::execute(settings, args).await,
        C::Run(args) => runs::run(settings, args).await,
        C::Imports { command } => imports::execute(settings, command).await,
        C::Connections { command } => connections::execute(settings, command).await,
        C::Destinations { command } => destinations::execute(settings, command).await,
        C::Runs { command } => runs::execute(settings, command).await,
        C::Errors(args) => errors::execute(settings, args).await,
        C::Events {
            command: ExportCommand::Export,
        } => {
            let workspace = context::workspace(settings)?;
            crate::export::events(settings, &workspace).await.map(|_| 0)
        }
        C::Profiles { command } => {
            let workspace = context::workspace(settings)?;
            profiles::execute(settings, &workspace, command).await
        }
        C::Tokens { command } => admin::tokens(settings, command).await,
        C::Workspaces { command } => admin::workspaces(settings, command).await,
        C::Stores { command } => stores::stores(settings, command).await,
        C::Keys { command } => admin::keys(settings, command).await,
        C::Demo(args) => crate::demo::demo(settings, &args.options).await,
        C::Config { command } => context::execute(settings, command),
        C::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "sluice", &mut script);
            std::io::Write::write_all(&mut std::io::stdout().lock(), &script)?;
            Ok(0)
        }
    }
}
