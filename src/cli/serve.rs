//! The serving commands: `all`, `coordinator`, `extractor`, `transformer` and `loader` start
//! their roles with telemetry and run until a signal stops them.

use crate::roles::{self, Role, WorkerOptions};
use crate::settings::Settings;
use crate::telemetry;

/// What a serving role also reads from its environment and serves.
pub const SERVING_HELP: &str = "\
Telemetry: OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://collector:4318) exports traces and metrics \
over OTLP/HTTP; the other OTEL_* variables of the OpenTelemetry SDK apply (OTEL_BSP_SCHEDULE_DELAY, \
OTEL_METRIC_EXPORT_INTERVAL, OTEL_EXPORTER_OTLP_HEADERS). SLUICE_LOG sets the log filter, \
SLUICE_LOG_FORMAT=json writes JSON lines.
Object stores: AWS_*, GOOGLE_* and AZURE_* variables configure s3://, gs:// and az:// URLs.
HTTP (SLUICE_HTTP_ADDR): /healthz, /readyz and /metrics on every role; /v1 and /ui on the coordinator.";

/// A serving command's options.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub options: WorkerOptions,
}

/// Runs `roles` in this process, reporting telemetry as `service`, until a signal.
pub async fn serve(
    roles: &[Role],
    service: &'static str,
    settings: &Settings,
    args: &WorkerArgs,
) -> anyhow::Result<i32> {
    let telemetry = telemetry::init(service)?;
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
