//! The endpoints every process serves for its operators: `/healthz` (the process is alive),
//! `/readyz` (its consume loops hold a broker connection and the databases the role uses
//! answer) and `/metrics` (Prometheus text). The coordinator serves them beside
//! its API; worker roles serve them alone.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};
use sluice_proto::health::Readiness;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long `/readyz` waits for the database.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the endpoints look at.
#[derive(Clone)]
pub struct Ops {
    pub registry: prometheus::Registry,
    pub readiness: Readiness,
    /// The control plane and store pools of the roles that use them.
    pub databases: Vec<deadpool_postgres::Pool>,
}

/// `/healthz`, `/readyz` and `/metrics`.
pub fn routes(ops: Ops) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

async fn readyz(State(ops): State<Ops>) -> (StatusCode, Json<Value>) {
    let loops = ops.readiness.loops();
    let mut ready = ops.readiness.broker_ready();
    let mut database = if ops.databases.is_empty() {
        Value::Null
    } else {
        json!("ok")
    };
    for pool in &ops.databases {
        let failed = match tokio::time::timeout(DATABASE_TIMEOUT, ping(pool)).await {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(_) => format!("no answer within {DATABASE_TIMEOUT:?}"),
        };
        ready = false;
        database = json!(failed);
        break;
    }
    let broker: serde_json::Map<String, Value> = loops
        .into_iter()
        .map(|(name, connected)| {
            let state = if connected {
                "connected"
            } else {
                "disconnected"
            };
            (name.to_string(), json!(state))
        })
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "ready": ready, "broker": broker, "database": database })),
    )
}

async fn ping(pool: &deadpool_postgres::Pool) -> Result<(), String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    client
        .simple_query("SELECT 1")
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn metrics(
    State(ops): State<Ops>,
) -> Result<([(header::HeaderName, &'static str); 1], String), StatusCode> {
    let families = ops.registry.gather();
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&families)
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text))
}

/// Serves `app` on a bound listener until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP listening");
    }
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!("the HTTP server stopped: {e}");
    }
}
