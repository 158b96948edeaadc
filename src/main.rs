//! The one `sluice` binary: every role of the fleet (`coordinator`, `extractor`,
//! `transformer`, `loader`, or `all` in one process) and the admin commands.
// Outside tests a failure is an error with its cause, never a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod demo;
mod errors;
mod export;
mod imports;
mod ops;
mod remote;
mod roles;
mod settings;
mod telemetry;
mod trigger;

use clap::{Parser, Subcommand};
use remote::Remote;
use roles::{Role, WorkerOptions};
use settings::Settings;
use std::path::PathBuf;

/// Imports profiles and events from data warehouses into the profile and event stores, exactly once.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

/// What a serving role also reads from its environment and serves.
const SERVING_HELP: &str = "\
Telemetry: OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://collector:4318) exports traces and metrics \
over OTLP/HTTP; the other OTEL_* variables of the OpenTelemetry SDK apply (OTEL_BSP_SCHEDULE_DELAY, \
OTEL_METRIC_EXPORT_INTERVAL, OTEL_EXPORTER_OTLP_HEADERS). SLUICE_LOG sets the log filter, \
SLUICE_LOG_FORMAT=json writes JSON lines.
Object stores: AWS_*, GOOGLE_* and AZURE_* variables configure s3://, gs:// and az:// URLs.
HTTP (SLUICE_HTTP_ADDR): /healthz, /readyz and /metrics on every role; /v1 and /ui on the coordinator.";

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
    Apply {
        /// The spec file (YAML).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// New imports are ready (or scheduled) at once, without waiting for a dry run: for
        /// specs already dry-run elsewhere.
        #[arg(long)]
        ready: bool,
    },
    /// Trigger a run of an import.
    Run {
        /// The import's name.
        import: String,
        #[arg(long, default_value = "demo")]
        workspace: String,
        /// Go through every stage but write nothing; report what would change.
        #[arg(long)]
        dry_run: bool,
        /// Follow the run until it ends; exit 0 if it succeeded.
        #[arg(long)]
        wait: bool,
        /// Print the result as one JSON object.
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
        /// The same key for the same import always names the same run: a repeated trigger
        /// returns that run instead of starting another.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Imports: list, show (state, schedule, next fire times), preview, pause, resume, stop,
    /// replay, resync, rewind.
    Imports {
        #[command(subcommand)]
        command: ImportsCommand,
    },
    /// Connections: list, test, and delete one no import uses.
    Connections {
        #[command(subcommand)]
        command: ConnectionsCommand,
    },
    /// Runs and their row-level errors.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Events in the event store.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Profiles in the profile store.
    Profiles {
        #[command(subcommand)]
        command: ProfilesCommand,
    },
    /// API tokens: make one for a workspace (the first admin token of a new workspace too).
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Workspaces and their share of the stores (set by the fleet's operator).
    Workspaces {
        #[command(subcommand)]
        command: WorkspacesCommand,
    },
    /// Master keys: make a new one, or seal every stored secret under the current one.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Create a demo warehouse table, import it with every role in this process, and show the result.
    Demo(WorkerArgs),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print a new random master key (64 hex characters).
    Generate,
    /// Seal every stored secret under SLUICE_MASTER_KEY, opening each with the key that sealed
    /// it (SLUICE_PREVIOUS_MASTER_KEYS); safe while the fleet runs.
    Rotate,
}

#[derive(Debug, Subcommand)]
enum WorkspacesCommand {
    /// List workspaces with their load limit and number of imports.
    List,
    /// Limit the rows per second a workspace's loads write across the fleet (the loaders
    /// share it); 0 removes the limit. The workspace is created if new.
    Limit {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        load_rows_per_second: u32,
    },
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Make a token and print it; it is shown this once. The workspace is created if new.
    Create {
        #[arg(long)]
        workspace: String,
        /// viewer (reads), operator (also runs and steers imports) or admin (everything).
        #[arg(long, default_value = "admin")]
        role: String,
        /// What the token is for.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ImportsCommand {
    /// List a workspace's imports with their state and next fire time.
    List {
        #[arg(long)]
        workspace: String,
    },
    /// Show an import: state, schedule, the next 5 fire times (UTC and local), last run and
    /// state changes.
    Show {
        import: String,
        #[arg(long)]
        workspace: String,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Print the source's schema and first rows, as the extractor reads them.
    Preview {
        import: String,
        #[arg(long)]
        workspace: String,
        #[arg(long, default_value_t = 10)]
        rows: usize,
    },
    /// Stop firing the import's schedule; an active run finishes.
    Pause {
        import: String,
        #[arg(long)]
        workspace: String,
    },
    /// Schedule a paused or stopped import again from now.
    Resume {
        import: String,
        #[arg(long)]
        workspace: String,
    },
    /// Stop the schedule and cancel an active run; its remaining chunks are discarded.
    Stop {
        import: String,
        #[arg(long)]
        workspace: String,
    },
    /// Delete an import with its schedule, watermark and run history; refused while a run
    /// is active. What it loaded stays in the stores.
    Delete {
        import: String,
        #[arg(long)]
        workspace: String,
    },
    /// Read the rows whose watermark is in [--from, --until) again, without moving the
    /// watermark (audited).
    Replay {
        import: String,
        #[arg(long)]
        workspace: String,
        /// ISO-8601 with an offset; inclusive.
        #[arg(long)]
        from: String,
        /// ISO-8601 with an offset; exclusive.
        #[arg(long)]
        until: String,
        /// Follow the run until it ends.
        #[arg(long)]
        wait: bool,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Reset the watermark: the next run reads every row (audited).
    Resync {
        import: String,
        #[arg(long)]
        workspace: String,
    },
    /// Move the watermark back: the next run reads every row from this time on (audited).
    Rewind {
        import: String,
        #[arg(long)]
        workspace: String,
        /// An ISO-8601 date-time with an offset, like 2026-11-01T00:00:00Z.
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConnectionsCommand {
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

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// Print a run's rejected rows with their reason codes.
    Errors {
        /// The run's id, as `sluice run` prints it.
        run: String,
        /// Write every rejected row as CSV: the source row's mapped columns, the reason last.
        #[arg(long)]
        csv: bool,
        /// Rows to print (without --csv).
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Print every event of a workspace as one JSON line, oldest first.
    Export {
        #[arg(long)]
        workspace: String,
    },
}

#[derive(Debug, Subcommand)]
enum ProfilesCommand {
    /// Print every profile of a workspace as one JSON line.
    Export {
        #[arg(long)]
        workspace: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
struct WorkerArgs {
    #[command(flatten)]
    options: WorkerOptions,
}

async fn serve(
    roles: &[Role],
    settings: &Settings,
    args: &WorkerArgs,
    telemetry: telemetry::Telemetry,
) -> anyhow::Result<i32> {
    let served = roles::run(
        roles,
        settings,
        &args.options,
        telemetry.registry.clone(),
        roles::shutdown_on_signal(),
    )
    .await;
    telemetry.shutdown().await;
    served?;
    Ok(0)
}

/// The service name a serving command reports its telemetry under, or `None` for the
/// one-shot commands.
fn service_name(command: &Command) -> Option<&'static str> {
    match command {
        Command::All(_) => Some("sluice"),
        Command::Coordinator(_) => Some("sluice-coordinator"),
        Command::Extractor(_) => Some("sluice-extractor"),
        Command::Transformer(_) => Some("sluice-transformer"),
        Command::Loader(_) => Some("sluice-loader"),
        _ => None,
    }
}

async fn execute(cli: Cli) -> anyhow::Result<i32> {
    let settings = &cli.settings;
    let telemetry = match service_name(&cli.command) {
        Some(service) => Some(telemetry::init(service)?),
        None => {
            telemetry::init_logs();
            None
        }
    };
    let serving = |telemetry: Option<telemetry::Telemetry>| {
        telemetry.expect("serving commands start their telemetry")
    };
    match &cli.command {
        Command::Migrate => {
            settings.migrate().await?;
            println!(
                "migrations applied: control plane to {}, stores to {}",
                sluice_proto::bus::redact_url(&settings.database_url),
                sluice_proto::bus::redact_url(settings.store_url())
            );
            Ok(0)
        }
        Command::All(args) => {
            serve(
                &[
                    Role::Coordinator,
                    Role::Extractor,
                    Role::Transformer,
                    Role::Loader,
                ],
                settings,
                args,
                serving(telemetry),
            )
            .await
        }
        Command::Coordinator(args) => {
            serve(&[Role::Coordinator], settings, args, serving(telemetry)).await
        }
        Command::Extractor(args) => {
            serve(&[Role::Extractor], settings, args, serving(telemetry)).await
        }
        Command::Transformer(args) => {
            serve(&[Role::Transformer], settings, args, serving(telemetry)).await
        }
        Command::Loader(args) => serve(&[Role::Loader], settings, args, serving(telemetry)).await,
        Command::Apply { file, ready } => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            if let Some(remote) = Remote::from_settings(settings)? {
                return remote
                    .apply(&text, *ready)
                    .await
                    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()));
            }
            let spec = sluice_coordinator::spec::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let mut client = settings.control_for_writes().await?;
            let report = sluice_coordinator::apply::apply(
                &mut client,
                &settings.master_key()?,
                &spec,
                &sluice_coordinator::apply::ApplyOptions { ready: *ready },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            for line in report.lines {
                println!("{line}");
            }
            Ok(0)
        }
        Command::Run {
            import,
            workspace,
            dry_run,
            wait,
            output,
            idempotency_key,
        } => {
            let request = trigger::RunRequest {
                workspace,
                import,
                dry_run: *dry_run,
                wait: *wait,
                json: matches!(output, Output::Json),
                idempotency_key: idempotency_key.as_deref(),
                replay: None,
            };
            match Remote::from_settings(settings)? {
                Some(remote) => remote.run(&request).await,
                None => trigger::run(settings, &request).await,
            }
        }
        Command::Imports { command } => match command {
            ImportsCommand::List { workspace } => match Remote::from_settings(settings)? {
                Some(remote) => remote.list_imports(workspace).await,
                None => imports::list(settings, workspace).await,
            },
            ImportsCommand::Show {
                import,
                workspace,
                output,
            } => match Remote::from_settings(settings)? {
                Some(remote) => {
                    remote
                        .show(workspace, import, matches!(output, Output::Json))
                        .await
                }
                None => {
                    imports::show(settings, workspace, import, matches!(output, Output::Json)).await
                }
            },
            ImportsCommand::Preview {
                import,
                workspace,
                rows,
            } => match Remote::from_settings(settings)? {
                Some(remote) => remote.preview(workspace, import, *rows).await,
                None => imports::preview(settings, workspace, import, *rows).await,
            },
            ImportsCommand::Pause { import, workspace } => match Remote::from_settings(settings)? {
                Some(remote) => remote.steer(workspace, import, "pause", None).await,
                None => imports::set_paused(settings, workspace, import, true).await,
            },
            ImportsCommand::Resume { import, workspace } => {
                match Remote::from_settings(settings)? {
                    Some(remote) => remote.steer(workspace, import, "resume", None).await,
                    None => imports::set_paused(settings, workspace, import, false).await,
                }
            }
            ImportsCommand::Stop { import, workspace } => match Remote::from_settings(settings)? {
                Some(remote) => remote.steer(workspace, import, "stop", None).await,
                None => imports::stop(settings, workspace, import).await,
            },
            ImportsCommand::Delete { import, workspace } => {
                match Remote::from_settings(settings)? {
                    Some(remote) => remote.delete_import(workspace, import).await,
                    None => imports::delete(settings, workspace, import).await,
                }
            }
            ImportsCommand::Replay {
                import,
                workspace,
                from,
                until,
                wait,
                output,
            } => {
                let time = |flag: &str, value: &str| {
                    chrono::DateTime::parse_from_rfc3339(value)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .map_err(|_| anyhow::anyhow!("{flag} {value:?} is not an ISO-8601 date-time with an offset, like 2026-11-01T00:00:00Z"))
                };
                let window = sluice_proto::ReplayWindow {
                    from: time("--from", from)?,
                    until: time("--until", until)?,
                };
                if window.until <= window.from {
                    anyhow::bail!("--until must be after --from");
                }
                let request = trigger::RunRequest {
                    workspace,
                    import,
                    dry_run: false,
                    wait: *wait,
                    json: matches!(output, Output::Json),
                    idempotency_key: None,
                    replay: Some(window),
                };
                match Remote::from_settings(settings)? {
                    Some(remote) => remote.run(&request).await,
                    None => trigger::run(settings, &request).await,
                }
            }
            ImportsCommand::Resync { import, workspace } => {
                match Remote::from_settings(settings)? {
                    Some(remote) => remote.steer(workspace, import, "resync", None).await,
                    None => imports::move_watermark(settings, workspace, import, None).await,
                }
            }
            ImportsCommand::Rewind {
                import,
                workspace,
                to,
            } => match Remote::from_settings(settings)? {
                Some(remote) => {
                    remote
                        .steer(
                            workspace,
                            import,
                            "rewind",
                            Some(serde_json::json!({ "to": to })),
                        )
                        .await
                }
                None => imports::move_watermark(settings, workspace, import, Some(to)).await,
            },
        },
        Command::Connections { command } => match command {
            ConnectionsCommand::List { workspace } => match Remote::from_settings(settings)? {
                Some(remote) => remote.list_connections(workspace).await,
                None => imports::list_connections(settings, workspace).await,
            },
            ConnectionsCommand::Test { name, workspace } => {
                match Remote::from_settings(settings)? {
                    Some(remote) => remote.test_connection(workspace, name).await,
                    None => imports::test_connection(settings, workspace, name).await,
                }
            }
            ConnectionsCommand::Keygen { name, workspace } => {
                match Remote::from_settings(settings)? {
                    Some(remote) => remote.keygen(workspace, name).await,
                    None => imports::keygen(settings, workspace, name).await,
                }
            }
            ConnectionsCommand::Delete { name, workspace } => {
                match Remote::from_settings(settings)? {
                    Some(remote) => remote.delete_connection(workspace, name).await,
                    None => imports::delete_connection(settings, workspace, name).await,
                }
            }
        },
        Command::Runs {
            command: RunsCommand::Errors { run, csv, limit },
        } => match Remote::from_settings(settings)? {
            Some(remote) => remote.errors(run, *csv, *limit).await,
            None => errors::print(settings, run, *csv, *limit).await,
        },
        Command::Events {
            command: EventsCommand::Export { workspace },
        } => {
            export::events(settings, workspace).await?;
            Ok(0)
        }
        Command::Profiles {
            command: ProfilesCommand::Export { workspace },
        } => {
            export::profiles(settings, workspace).await?;
            Ok(0)
        }
        Command::Tokens {
            command:
                TokensCommand::Create {
                    workspace,
                    role,
                    name,
                },
        } => {
            let role = sluice_coordinator::tokens::Role::parse(role).ok_or_else(|| {
                anyhow::anyhow!("--role {role:?}: give viewer, operator or admin")
            })?;
            sluice_coordinator::spec::check_object_name("--workspace", workspace)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let client = settings.control_for_writes().await?;
            let (id, token) =
                sluice_coordinator::tokens::create(&client, workspace, name, role, true).await?;
            eprintln!(
                "token {id} ({}) for workspace {workspace}; it is not shown again",
                role.as_str()
            );
            println!("{token}");
            Ok(0)
        }
        Command::Workspaces { command } => {
            let client = match command {
                WorkspacesCommand::List => settings.control().await?,
                WorkspacesCommand::Limit { .. } => settings.control_for_writes().await?,
            };
            match command {
                WorkspacesCommand::List => {
                    println!("{:<30} {:>20} {:>8}", "WORKSPACE", "LOAD ROWS/S", "IMPORTS");
                    for w in sluice_coordinator::workspaces::list(&client).await? {
                        let limit = w
                            .load_rows_per_second
                            .map_or_else(|| "-".to_string(), |r| r.to_string());
                        println!("{:<30} {limit:>20} {:>8}", w.name, w.imports);
                    }
                }
                WorkspacesCommand::Limit {
                    workspace,
                    load_rows_per_second,
                } => {
                    sluice_coordinator::spec::check_object_name("--workspace", workspace)
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    let limit = Some(*load_rows_per_second).filter(|r| *r > 0);
                    sluice_coordinator::workspaces::set_load_limit(&client, workspace, limit)
                        .await?;
                    match limit {
                        Some(r) => {
                            println!("workspace {workspace}: loads write at most {r} rows/s")
                        }
                        None => println!("workspace {workspace}: no load limit of its own"),
                    }
                }
            }
            Ok(0)
        }
        Command::Keys {
            command: KeysCommand::Generate,
        } => {
            println!("{}", sluice_proto::secrets::MasterKey::generate_hex());
            Ok(0)
        }
        Command::Keys {
            command: KeysCommand::Rotate,
        } => {
            let key = settings.master_key()?;
            let mut client = settings.control_for_writes().await?;
            let rotation = sluice_coordinator::keys::rotate(&mut client, &key).await?;
            println!(
                "{} secrets sealed again under master key {}; {} already were",
                rotation.resealed,
                key.id(),
                rotation.current
            );
            Ok(0)
        }
        Command::Demo(args) => demo::demo(settings, &args.options).await,
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match execute(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
