//! Telemetry of a fleet of separate processes: one run reads as one trace in an OTLP receiver
//! (decoded with the opentelemetry-proto types), each role's `/metrics` counts the rows the
//! run's stats count, every metric the dashboard and alert rules use is exported, and
//! `/readyz` follows the broker going away and coming back.

mod common;

use axum::body::Bytes;
use axum::routing::post;
use common::broker::PrivateBroker;
use common::{free_port, Fleet};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The roles a fleet of separate processes runs.
const ROLES: [&str; 4] = ["coordinator", "extractor", "transformer", "loader"];

/// A span as the receiver decoded it.
#[derive(Debug, Clone)]
struct SpanSeen {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: BTreeMap<String, String>,
}

/// What the OTLP receiver has been sent.
#[derive(Default)]
struct Received {
    spans: Vec<SpanSeen>,
    metrics: BTreeSet<String>,
}

/// An OTLP/HTTP receiver on a port of its own.
struct Receiver {
    endpoint: String,
    received: Arc<Mutex<Received>>,
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

impl Receiver {
    async fn start() -> Receiver {
        let received = Arc::new(Mutex::new(Received::default()));
        let (traces, metrics) = (received.clone(), received.clone());
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                post(move |body: Bytes| async move {
                    let request = ExportTraceServiceRequest::decode(body).expect("OTLP traces");
                    let mut received = traces.lock().unwrap();
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .map(|r| attributes(&r.attributes))
                            .and_then(|a| a.get("service.name").cloned())
                            .unwrap_or_default();
                        for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                            received.spans.push(SpanSeen {
                                service: service.clone(),
                                name: span.name,
                                trace_id: hex::encode(span.trace_id),
                                span_id: hex::encode(span.span_id),
                                parent: hex::encode(span.parent_span_id),
                                attributes: attributes(&span.attributes),
                            });
                        }
                    }
                    Vec::<u8>::new()
                }),
            )
            .route(
                "/v1/metrics",
                post(move |body: Bytes| async move {
                    let request = ExportMetricsServiceRequest::decode(body).expect("OTLP metrics");
                    let mut received = metrics.lock().unwrap();
                    for metric in request
                        .resource_metrics
                        .into_iter()
                        .flat_map(|r| r.scope_metrics)
                        .flat_map(|s| s.metrics)
                    {
                        received.metrics.insert(metric.name);
                    }
                    Vec::<u8>::new()
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { endpoint, received }
    }
}

/// Starts each role as its own process with an HTTP port of its own; returns the ports.
async fn start_roles(fleet: &mut Fleet, env: &[(&str, &str)]) -> BTreeMap<&'static str, u16> {
    let mut ports = BTreeMap::new();
    for role in ROLES {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        fleet.start_with_env(role, &["--http-addr", &addr], env);
        ports.insert(role, port);
    }
    for (role, port) in &ports {
        let (status, body) = wait_for_readyz(*port, 200, Duration::from_secs(60)).await;
        assert_eq!(status, 200, "{role} never became ready: {body}");
    }
    ports
}

/// Polls `/readyz` until it answers `want`; returns the last answer.
async fn wait_for_readyz(port: u16, want: u16, timeout: Duration) -> (u16, Value) {
    let started = Instant::now();
    loop {
        let answer = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await;
        let (status, body) = match answer {
            Ok(response) => (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            ),
            Err(e) => (0, Value::String(e.to_string())),
        };
        if status == want || started.elapsed() > timeout {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `metric name -> [(labels, value)]` from Prometheus text.
fn scrape(text: &str) -> BTreeMap<String, Vec<(String, f64)>> {
    let mut samples: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        samples
            .entry(name.to_string())
            .or_default()
            .push((labels.to_string(), value.parse().unwrap()));
    }
    samples
}

/// The sum of a metric's samples whose labels contain `filter`.
fn total(samples: &BTreeMap<String, Vec<(String, f64)>>, name: &str, filter: &str) -> f64 {
    samples
        .get(name)
        .into_iter()
        .flatten()
        .filter(|(labels, _)| labels.contains(filter))
        .map(|(_, value)| value)
        .sum()
}

/// Every `sluice_*` metric name in a text (histogram series reduced to their metric).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("sluice_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        let metric = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name);
        names.insert(metric.to_string());
    }
    names
}

/// A users import whose every row has one value the mapping rejects, next to the plain one.
fn strict_spec(fleet: &Fleet) -> String {
    common::users_spec(fleet, 400).replace(
        "column: birthday, type: date",
        "column: first_name, type: date",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn one_run_is_one_trace_across_the_coordinator_and_every_worker_process() {
    let receiver = Receiver::start().await;
    let mut fleet = Fleet::new().await;
    common::create_users(&fleet.warehouse().await, 1_000).await;
    fleet.apply_ok(&common::users_spec(&fleet, 400));
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ("SLUICE_LOG_FORMAT", "json"),
    ];
    start_roles(&mut fleet, &env).await;
    let run = fleet.run("acme", "users");
    assert_eq!(run["status"], "succeeded", "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let chunks = run["chunks"].as_i64().unwrap() as usize;
    assert!(chunks >= 2, "{run}");
    let trace_id: String = fleet
        .control()
        .await
        .query_one(
            "SELECT trace_id FROM control.runs WHERE id = $1::text::uuid",
            &[&run_id],
        )
        .await
        .unwrap()
        .get(0);

    // Each process exports its spans in batches of its own, so a chunk's load span can
    // arrive before its transform span: wait until the run's span and every stage's
    // span of every chunk are in.
    let of_run = |s: &SpanSeen| s.attributes.get("sluice.run") == Some(&run_id);
    let started = Instant::now();
    let spans: Vec<SpanSeen> = loop {
        let spans: Vec<SpanSeen> = receiver
            .received
            .lock()
            .unwrap()
            .spans
            .iter()
            .filter(|s| of_run(s))
            .cloned()
            .collect();
        let all_in = ["chunk", "extract", "transform", "load"]
            .iter()
            .all(|stage| spans.iter().filter(|s| s.name == *stage).count() >= chunks);
        if spans.iter().any(|s| s.name == "run") && all_in {
            break spans;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "spans of run {run_id} never all arrived: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for span in &spans {
        assert_eq!(span.trace_id, trace_id, "one trace: {span:?}");
    }
    let one = |name: &str, chunk: Option<usize>| -> SpanSeen {
        let found: Vec<&SpanSeen> = spans
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                chunk.is_none_or(|c| s.attributes.get("sluice.chunk") == Some(&c.to_string()))
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {name} span for chunk {chunk:?}: {found:#?}"
        );
        found[0].clone()
    };
    let root = one("run", None);
    assert_eq!(root.service, "sluice-coordinator");
    assert_eq!(root.attributes["sluice.workspace"], "acme");
    assert_eq!(root.attributes["sluice.import"], "users");
    let mut rows = 0;
    for seq in 0..chunks {
        let chunk = one("chunk", Some(seq));
        assert_eq!(chunk.parent, root.span_id, "a chunk is a child of its run");
        let extract = one("extract", Some(seq));
        let transform = one("transform", Some(seq));
        let load = one("load", Some(seq));
        for (span, parent, service) in [
            (&extract, &chunk, "sluice-extractor"),
            (&transform, &extract, "sluice-transformer"),
            (&load, &transform, "sluice-loader"),
        ] {
            assert_eq!(span.parent, parent.span_id, "{span:?} follows {parent:?}");
            assert_eq!(span.service, service, "{span:?}");
            assert_eq!(span.attributes["messaging.system"], "rabbitmq", "{span:?}");
            assert_eq!(span.attributes["sluice.outcome"], "ok", "{span:?}");
            assert_eq!(span.attributes["sluice.attempt"], "1", "{span:?}");
        }
        assert!(
            extract.attributes["messaging.destination.name"].ends_with(".extract"),
            "{extract:?}"
        );
        assert!(extract.attributes["sluice.bytes"].parse::<u64>().unwrap() > 0);
        rows += extract.attributes["sluice.rows"].parse::<i64>().unwrap();
    }
    assert_eq!(rows, run["rows_read"].as_i64().unwrap());

    // Metrics go over OTLP too.
    let started = Instant::now();
    while !receiver
        .received
        .lock()
        .unwrap()
        .metrics
        .contains("sluice_rows_read_total")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no metrics arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // JSON log lines carry the trace and span ids of the span they were written in.
    let log = std::fs::read_to_string(fleet.data_dir.join("extractor.log")).unwrap();
    let extracted: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("every log line is JSON"))
        .filter(|l| l["fields"]["message"] == "chunk extracted")
        .collect();
    assert_eq!(extracted.len(), chunks, "{log}");
    for line in extracted {
        assert_eq!(line["span"]["trace_id"], trace_id.as_str(), "{line}");
        assert_eq!(
            line["span"]["span_id"].as_str().map(str::len),
            Some(16),
            "{line}"
        );
    }
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_role_counts_the_rows_its_run_counts_and_exports_every_metric_dashboards_use() {
    let mut fleet = Fleet::new().await;
    common::create_users(&fleet.warehouse().await, 1_000).await;
    fleet.apply_ok(&strict_spec(&fleet));
    let ports = start_roles(&mut fleet, &[]).await;
    let run = fleet.run("acme", "users");
    assert_eq!(run["status"], "partially_succeeded", "{run}");
    let rejected = run["rows_rejected"].as_i64().unwrap();
    assert!(
        rejected > 0 && run["rows_loaded"].as_i64().unwrap() > 0,
        "{run}"
    );

    let mut scraped = BTreeMap::new();
    let mut exported = BTreeSet::new();
    for (role, port) in &ports {
        let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .unwrap();
        assert_eq!(health.status(), 200, "{role}");
        let response = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap();
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        let text = response.text().await.unwrap();
        exported.extend(metric_names(&text));
        scraped.insert(*role, scrape(&text));
    }
    let count = |role: &str, name: &str, filter: &str| total(&scraped[role], name, filter) as i64;
    assert_eq!(
        count("extractor", "sluice_rows_read_total", ""),
        run["rows_read"].as_i64().unwrap()
    );
    assert_eq!(
        count(
            "transformer",
            "sluice_rows_rejected_total",
            "stage=\"transform\""
        ) + count("loader", "sluice_rows_rejected_total", "stage=\"load\""),
        rejected
    );
    assert_eq!(
        count("loader", "sluice_rows_written_total", "store=\"profiles\""),
        run["rows_loaded"].as_i64().unwrap()
    );
    assert_eq!(
        count(
            "coordinator",
            "sluice_runs_finished_total",
            "outcome=\"partially_succeeded\""
        ),
        1
    );
    assert_eq!(
        count("extractor", "sluice_messages_total", "outcome=\"ok\""),
        run["chunks"].as_i64().unwrap()
    );
    let dead_letters: Vec<_> = scraped["coordinator"]["sluice_queue_messages"]
        .iter()
        .filter(|(labels, _)| labels.contains(".extract.dlq"))
        .collect();
    assert_eq!(dead_letters.len(), 1, "the dead-letter queue is sampled");
    assert_eq!(dead_letters[0].1, 0.0, "and empty");

    let dashboards = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/observability");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(dashboards.join("dashboard.json")).unwrap())
            .unwrap();
    let alerts: Value =
        serde_norway::from_str(&std::fs::read_to_string(dashboards.join("alerts.yaml")).unwrap())
            .unwrap();
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            used.extend(metric_names(target["expr"].as_str().unwrap()));
        }
    }
    for group in alerts["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            used.extend(metric_names(rule["expr"].as_str().unwrap()));
        }
    }
    assert!(used.len() >= 10, "{used:?}");
    let missing: Vec<&String> = used.difference(&exported).collect();
    assert!(missing.is_empty(), "used but not exported: {missing:?}");
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_turns_unready_while_the_broker_is_down_and_ready_once_it_is_back() {
    let mut broker = PrivateBroker::start();
    let mut fleet = Fleet::new().await;
    let url = broker.url();
    let env = [("SLUICE_AMQP_URL", url.as_str())];
    let mut ports = Vec::new();
    for role in ["extractor", "loader"] {
        let port = free_port();
        fleet.start_with_env(role, &["--http-addr", &format!("127.0.0.1:{port}")], &env);
        ports.push((role, port));
    }
    for (role, port) in &ports {
        let (status, body) = wait_for_readyz(*port, 200, Duration::from_secs(60)).await;
        assert_eq!(status, 200, "{role}: {body}");
        assert_eq!(
            body["broker"][if *role == "loader" { "load" } else { "extract" }],
            "connected"
        );
    }
    assert_eq!(
        wait_for_readyz(ports[1].1, 200, Duration::ZERO).await.1["database"],
        "ok",
        "the loader checks its database"
    );

    broker.stop();
    for (role, port) in &ports {
        let (status, body) = wait_for_readyz(*port, 503, Duration::from_secs(30)).await;
        assert_eq!(status, 503, "{role} still ready without a broker: {body}");
        assert_eq!(body["ready"], false, "{body}");
        let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .unwrap();
        assert_eq!(health.status(), 200, "{role} is alive all the same");
    }

    broker.restart();
    for (role, port) in &ports {
        let (status, body) = wait_for_readyz(*port, 200, Duration::from_secs(60)).await;
        assert_eq!(status, 200, "{role} did not recover: {body}");
    }
    fleet.cleanup().await;
}
