//! Process telemetry: log lines on stderr (text, or JSON carrying the trace and span ids when
//! `SLUICE_LOG_FORMAT=json`), spans exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set, and metrics kept for `/metrics` and, with the endpoint, pushed over OTLP too.
//! Without the endpoint no span is built for export and nothing leaves the process.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The environment variable naming the OTLP collector.
pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// What a serving process keeps of its telemetry: the metrics registry `/metrics` renders,
/// and the providers to flush on the way out.
pub struct Telemetry {
    pub registry: prometheus::Registry,
    meters: SdkMeterProvider,
    tracer: Option<SdkTracerProvider>,
}

/// What a serving process logs unless `SLUICE_LOG` says otherwise.
const SERVING_LOGS: &str = "info,lapin=warn,datafusion=warn,tokio_postgres=warn";

/// What a command run by a person logs: warnings, and the one line saying a migration was
/// applied.
const COMMAND_LOGS: &str = "warn,sluice_coordinator::migrate=info";

fn log_filter(default: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
}

/// Colours only for a terminal, and never with `NO_COLOR` set (<https://no-color.org>).
pub fn colours(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn json_logs() -> bool {
    std::env::var("SLUICE_LOG_FORMAT").as_deref() == Ok("json")
}

/// Log lines on stderr, as text or as JSON.
fn log_lines<S>() -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colours(std::io::stderr().is_terminal()));
    if json_logs() {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    }
}

/// Log lines only, warnings and up: for the CLI's one-shot commands.
pub fn init_logs() {
    tracing_subscriber::registry()
        .with(log_filter(COMMAND_LOGS))
        .with(log_lines())
        .init();
}

/// The fleet's log lines, as a serving process writes them, into `file` (no colours): for
/// `sluice demo`, whose terminal shows the progress and the summary.
pub fn init_logs_to(file: std::fs::File) {
    tracing_subscriber::registry()
        .with(log_filter(SERVING_LOGS))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false),
        )
        .init();
}

/// Logs, traces and metrics for a serving process; `service` names it in every backend
/// (`sluice-coordinator`, `sluice-extractor`, ...).
pub fn init(service: &str) -> anyhow::Result<Telemetry> {
    let resource = Resource::builder()
        .with_service_name(service.to_string())
        .with_attribute(KeyValue::new(
            "service.instance.id",
            format!(
                "{}:{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_string()),
                std::process::id()
            ),
        ))
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let export = std::env::var(OTLP_ENDPOINT).is_ok_and(|v| !v.trim().is_empty());

    let registry = prometheus::Registry::new();
    let scrape = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .without_units()
        .without_counter_suffixes()
        .without_target_info()
        .scope_info_enabled(false)
        .build()?;
    let mut meters = SdkMeterProvider::builder()
        .with_resource(resource.clone())
        .with_reader(scrape);
    if export {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .build()?;
        meters = meters.with_periodic_exporter(exporter);
    }
    let meters = meters.build();
    opentelemetry::global::set_meter_provider(meters.clone());

    let tracer = if export {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        Some(
            SdkTracerProvider::builder()
                .with_resource(resource)
                .with_batch_exporter(exporter)
                .build(),
        )
    } else {
        None
    };
    let spans = tracer
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("sluice")));
    tracing_subscriber::registry()
        .with(log_filter(SERVING_LOGS))
        .with(spans)
        .with(log_lines())
        .init();
    if export {
        tracing::info!(service, "exporting traces and metrics over OTLP");
    }
    Ok(Telemetry {
        registry,
        meters,
        tracer,
    })
}

impl Telemetry {
    /// Flushes what is still buffered to the collector.
    pub async fn shutdown(self) {
        let Telemetry { meters, tracer, .. } = self;
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(tracer) = tracer {
                let _ = tracer.shutdown();
            }
            let _ = meters.shutdown();
        })
        .await;
    }
}
