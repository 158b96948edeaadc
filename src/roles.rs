//! Starts the fleet's roles — coordinator consumers and the extract, transform and load
//! stages — as tasks that stop together on a shutdown signal.

use crate::ops;
use crate::settings::Settings;
use anyhow::Context;
use sluice_proto::health::Readiness;
use sluice_proto::key_probe::KeyCheck;
use sluice_proto::stage::{run_stage, Stage, StageOptions};
use std::num::NonZeroU32;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A role the binary can play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Coordinator,
    Extractor,
    Transformer,
    Loader,
}

/// Tuning shared by the worker roles.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerOptions {
    /// Messages each role handles at once (and its prefetch).
    #[arg(long, env = "SLUICE_CONCURRENCY", default_value_t = 2)]
    pub concurrency: usize,
    /// Runs a coordinator plans at once (its command consumers and their prefetch): planning
    /// mostly waits on warehouses, so many runs are planned side by side.
    #[arg(long, env = "SLUICE_PLANNING_CONCURRENCY", default_value_t = 16)]
    pub planning_concurrency: usize,
    /// Attempts before a chunk is dead-lettered and its run fails.
    #[arg(long, env = "SLUICE_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,
    /// Rows per second each workspace may write to the stores, per loader process, unless the
    /// workspace has a fleet-wide limit of its own (`sluice workspaces limit`).
    #[arg(long, env = "SLUICE_LOAD_ROWS_PER_SECOND", default_value_t = 200_000)]
    pub load_rows_per_second: u32,
    /// The fewest chunks of one run the coordinator keeps out in the fleet at once (more when
    /// it counts more workers on a stage: four per worker); the rest wait their turn, so a
    /// large run does not queue ahead of every other run.
    #[arg(long, env = "SLUICE_CHUNK_WINDOW", default_value_t = 8)]
    pub chunk_window: u32,
    /// First retry delay in milliseconds (doubles per attempt).
    #[arg(long, env = "SLUICE_RETRY_BASE_MS", default_value_t = 500)]
    pub retry_base_ms: u64,
}

/// How often an extractor checks it still holds the fleet's master key.
const KEY_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

fn spawn<S: Stage>(
    tasks: &mut JoinSet<()>,
    stage: S,
    settings: &Settings,
    options: &StageOptions,
    shutdown: &CancellationToken,
) {
    tasks.spawn(run_stage(
        Arc::new(stage),
        settings.amqp_url.clone(),
        settings.topology(),
        options.clone(),
        shutdown.clone(),
    ));
}

/// Starts `roles` and waits until `shutdown` fires and they have finished. Serves the
/// coordinator's API and every role's health and metrics endpoints over HTTP.
pub async fn run(
    roles: &[Role],
    settings: &Settings,
    worker: &WorkerOptions,
    metrics: prometheus::Registry,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let coordinator = roles.contains(&Role::Coordinator);
    let loader = roles.contains(&Role::Loader);
    sluice_proto::Bus::check_url(&settings.amqp_url).context("SLUICE_AMQP_URL (--amqp-url)")?;
    // Each role migrates what it owns; extractors and transformers use no database.
    if coordinator {
        settings.migrate_control().await?;
    }
    if loader {
        settings.migrate_store().await?;
    }
    let readiness = Readiness::default();
    let options = StageOptions {
        concurrency: worker.concurrency.max(1),
        max_attempts: worker.max_attempts.max(1),
        retry_base: std::time::Duration::from_millis(worker.retry_base_ms),
        readiness: readiness.clone(),
    };
    // Only the roles that seal or open credentials hold the master key; a loader holds it
    // when given, to open the URLs of registered stores.
    let key = if coordinator || roles.contains(&Role::Extractor) {
        Some(settings.master_key()?)
    } else if loader {
        settings.optional_master_key()?
    } else {
        None
    };
    let store = sluice_proto::storage::open(&settings.object_store_url())?;
    let pool_size = worker.concurrency.max(1) + 2;
    let addr = settings.http_addr(coordinator);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("serving HTTP on {addr} (SLUICE_HTTP_ADDR)"))?;
    // The control plane serves the coordinator; the stores serve the loader and the
    // coordinator's profile lookups (two connections).
    let planning = StageOptions {
        concurrency: worker.planning_concurrency.max(1),
        ..options.clone()
    };
    let control = coordinator
        .then(|| {
            let size = pool_size + planning.concurrency + 2;
            sluice_coordinator::database::pool(&settings.database_url, size)
        })
        .transpose()?;
    let stores = (coordinator || loader)
        .then(|| {
            let size = usize::from(loader) * pool_size + usize::from(coordinator) * 2;
            sluice_coordinator::database::pool(settings.store_url(), size)
        })
        .transpose()?;
    // The roles that use PostgreSQL are ready only while what they use answers.
    let ops = ops::routes(ops::Ops {
        registry: metrics,
        readiness,
        databases: control.iter().chain(&stores).cloned().collect(),
    });
    let mut tasks = JoinSet::new();
    let mut listener = Some(listener);
    if !coordinator {
        let listener = listener.take().expect("bound above");
        tasks.spawn(ops::serve(listener, ops.clone(), shutdown.clone()));
    }
    for role in roles {
        match role {
            Role::Coordinator => {
                let key = key.clone().expect("the coordinator holds the master key");
                // Workers check they hold the key the fleet seals with before taking work.
                if let Err(e) = sluice_proto::key_probe::publish(store.as_ref(), &key).await {
                    tracing::warn!(error = %e, "publishing the master key probe");
                }
                let pool = control.clone().expect("the coordinator has a pool");
                let window = Arc::new(sluice_coordinator::window::ChunkWindow::new(
                    worker.chunk_window,
                ));
                let routes = Arc::new(sluice_coordinator::stores::Stores::new(
                    pool.clone(),
                    stores.clone().expect("the coordinator reads the stores"),
                    Some(key.clone()),
                ));
                tasks.spawn(sluice_coordinator::stores::watch(
                    routes.clone(),
                    shutdown.clone(),
                ));
                let api = sluice_coordinator::api::app(sluice_coordinator::api::ApiState {
                    pool: pool.clone(),
                    stores: routes,
                    amqp_url: settings.amqp_url.clone(),
                    topology: settings.topology(),
                    master_key: key.clone(),
                    objects: store.clone(),
                });
                let listener = listener.take().expect("one coordinator role");
                tasks.spawn(ops::serve(
                    listener,
                    api.merge(ops.clone()),
                    shutdown.clone(),
                ));
                tasks.spawn(sluice_coordinator::metrics::watch(
                    pool.clone(),
                    settings.amqp_url.clone(),
                    settings.topology(),
                    window.clone(),
                    shutdown.clone(),
                ));
                spawn(
                    &mut tasks,
                    sluice_coordinator::Commands {
                        pool: pool.clone(),
                        master_key: key.clone(),
                        window: window.clone(),
                        sessions: sluice_coordinator::sessions::Sessions::new(planning.concurrency),
                    },
                    settings,
                    &planning,
                    &shutdown,
                );
                let mailer = settings
                    .smtp_url
                    .as_deref()
                    .map(|url| sluice_coordinator::notify::Mailer::new(url, &settings.smtp_from))
                    .transpose()
                    .map_err(|e| anyhow::anyhow!(e))?;
                let public_url = settings
                    .public_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{addr}"));
                tasks.spawn(sluice_coordinator::notify::run(
                    pool.clone(),
                    key.clone(),
                    mailer,
                    public_url,
                    shutdown.clone(),
                ));
                tasks.spawn(sluice_coordinator::retention::run(
                    pool.clone(),
                    store.clone(),
                    shutdown.clone(),
                ));
                tasks.spawn(sluice_coordinator::scheduler::run(
                    settings.database_url.clone(),
                    settings.amqp_url.clone(),
                    settings.topology(),
                    format!(
                        "{}:{}",
                        std::env::var("HOSTNAME").unwrap_or_else(|_| "coordinator".to_string()),
                        std::process::id()
                    ),
                    Arc::new(sluice_coordinator::scheduler::SystemClock),
                    settings.alert_interval,
                    shutdown.clone(),
                ));
                spawn(
                    &mut tasks,
                    sluice_coordinator::Results {
                        pool,
                        store: store.clone(),
                        window,
                    },
                    settings,
                    &options,
                    &shutdown,
                );
            }
            Role::Extractor => {
                let key = key.clone().expect("an extractor holds the master key");
                let key_check = Arc::new(std::sync::Mutex::new(KeyCheck::Unknown));
                let extractor = || sluice_extractor::Extractor {
                    store: store.clone(),
                    master_key: key.clone(),
                    key_check: key_check.clone(),
                };
                let (watcher, readiness, stop) =
                    (extractor(), options.readiness.clone(), shutdown.clone());
                tasks.spawn(async move {
                    loop {
                        watcher.check_key(&readiness).await;
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(KEY_CHECK_EVERY) => {}
                        }
                    }
                });
                spawn(&mut tasks, extractor(), settings, &options, &shutdown)
            }
            Role::Transformer => spawn(
                &mut tasks,
                sluice_transformer::Transformer {
                    store: store.clone(),
                },
                settings,
                &options,
                &shutdown,
            ),
            Role::Loader => {
                let rate = NonZeroU32::new(worker.load_rows_per_second)
                    .ok_or_else(|| anyhow::anyhow!("--load-rows-per-second must be at least 1"))?;
                let limiter = Arc::new(sluice_loader::RowRateLimiter::new(rate));
                tasks.spawn(sluice_loader::rate::count_loaders(
                    limiter.clone(),
                    settings.amqp_url.clone(),
                    settings.topology(),
                    shutdown.clone(),
                ));
                spawn(
                    &mut tasks,
                    sluice_loader::Loader {
                        store: store.clone(),
                        stores: sluice_loader::StorePools::new(
                            stores.clone().expect("the loader has a pool"),
                            key.clone(),
                            open_store(pool_size),
                        ),
                        limiter,
                        senders: Default::default(),
                    },
                    settings,
                    &options,
                    &shutdown,
                );
            }
        }
    }
    tracing::info!(?roles, "started");
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// How a loader opens a registered store: the stores' migrations applied there, then a pool
/// of `size` connections.
fn open_store(size: usize) -> sluice_loader::OpenStore {
    Arc::new(move |url: String| {
        Box::pin(async move {
            sluice_coordinator::database::migrate(
                &url,
                &[(sluice_loader::SCHEMA, sluice_loader::MIGRATIONS)],
            )
            .await
            .map_err(|e| e.to_string())?;
            sluice_coordinator::database::pool(&url, size).map_err(|e| e.to_string())
        })
    })
}

/// A token cancelled on Ctrl-C or SIGTERM.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down; finishing in-flight messages");
        trigger.cancel();
    });
    token
}
