//! `sluice demo`: makes a demo warehouse table (100,000 users, many sharing an updated_at),
//! applies a demo spec, runs it with every role in this process, and prints what happened.

use crate::cli::backend::{Access, Backend};
use crate::cli::follow::OnInterrupt;
use crate::cli::output::{outln, Output};
use crate::cli::runs::{self, RunRequest};
use crate::roles::{self, Role, WorkerOptions};
use crate::settings::Settings;
use tokio_util::sync::CancellationToken;

const DEMO_ROWS: i64 = 100_000;

const DEMO_TABLE: &str = "
CREATE TABLE IF NOT EXISTS public.users (
    id             bigint PRIMARY KEY,
    external_id    text NOT NULL,
    first_name     text,
    loyalty_points integer,
    birthday       text,
    updated_at     timestamptz NOT NULL
);
ALTER TABLE public.users ADD COLUMN IF NOT EXISTS email text,
                         ADD COLUMN IF NOT EXISTS attributes jsonb;
CREATE INDEX IF NOT EXISTS users_watermark ON public.users (updated_at, id);";

/// Rows are stamped 500 to a second, so most of them tie on updated_at; every 20,000th row has
/// a malformed email, so the run shows its error stream.
const DEMO_ROWS_SQL: &str = "
INSERT INTO public.users (id, external_id, email, first_name, loyalty_points, birthday,
                          attributes, updated_at)
SELECT g, 'user-' || g,
       CASE WHEN g % 20000 = 0 THEN 'user-' || g || '-at-example.com' ELSE 'user' || g || '@example.com' END,
       'Name ' || g, (g * 7) % 1000,
       to_char(date '1970-01-01' + (g % 15000)::int, 'YYYY-MM-DD'),
       jsonb_build_object('plan', (ARRAY['free', 'pro', 'team'])[g % 3 + 1],
                          'devices', jsonb_build_array('ios', 'web')),
       timestamptz '2024-01-01 00:00:00+00' + (g / 500) * interval '1 second'
  FROM generate_series(1, $1::int8) AS g
ON CONFLICT (id) DO NOTHING";

fn demo_spec(warehouse_url: &str) -> String {
    format!(
        r#"workspace: demo
connections:
  - name: warehouse
    kind: postgres
    url: {warehouse_url}
imports:
  - name: users
    connection: warehouse
    source: {{ table: public.users }}
    data_type: profiles
    key: id
    watermark: updated_at
    identity: {{ external_id: external_id, email: email }}
    properties:
      first_name: {{ column: first_name, type: string }}
      points: {{ column: loyalty_points, type: integer }}
      birthday: {{ column: birthday, type: date, format: "yyyy-MM-dd" }}
    constants: {{ source: demo }}
    payload: attributes
    chunk_rows: 10000
    settle_lag: 1s
"#
    )
}

/// The demo warehouse: the control-plane database's server, database `sluice_demo_warehouse`.
fn warehouse_url(database_url: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(database_url)?;
    url.set_path("/sluice_demo_warehouse");
    Ok(url.to_string())
}

/// Runs the demo end to end; returns the exit code. The fleet's logs go to a file in the
/// data directory, so the terminal shows the progress and the summary.
pub async fn demo(settings: &Settings, worker: &WorkerOptions) -> anyhow::Result<i32> {
    std::fs::create_dir_all(settings.data_dir())?;
    let log_path = settings.data_dir().join("demo.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", log_path.display()))?;
    crate::telemetry::init_logs_to(log);
    settings.migrate().await?;
    let warehouse = warehouse_url(&settings.database_url)?;
    sluice_coordinator::database::ensure_database(&warehouse).await?;
    let client = sluice_coordinator::database::connect(&warehouse).await?;
    client.batch_execute(DEMO_TABLE).await?;
    let added = client.execute(DEMO_ROWS_SQL, &[&DEMO_ROWS]).await?;
    outln!(
        "demo warehouse {}: public.users has {DEMO_ROWS} rows ({added} new)",
        sluice_proto::bus::redact_url(&warehouse)
    );

    let spec_path = settings.data_dir().join("demo-spec.yaml");
    std::fs::write(&spec_path, demo_spec(&warehouse))?;
    let spec = sluice_coordinator::spec::parse(&demo_spec(&warehouse))?;
    let mut control = sluice_coordinator::database::connect(&settings.database_url).await?;
    let report = sluice_coordinator::apply::apply(
        &mut control,
        &settings.master_key()?,
        &spec,
        &sluice_coordinator::apply::ApplyOptions { ready: true },
    )
    .await?;
    for line in report.lines {
        outln!("applied {line}");
    }
    outln!("the fleet's logs: {}", log_path.display());

    let shutdown = CancellationToken::new();
    let fleet = {
        let (settings, worker, shutdown) = (settings.clone(), worker.clone(), shutdown.clone());
        tokio::spawn(async move {
            roles::run(
                &[
                    Role::Coordinator,
                    Role::Extractor,
                    Role::Transformer,
                    Role::Loader,
                ],
                &settings,
                &worker,
                prometheus::Registry::new(),
                shutdown,
            )
            .await
        })
    };
    let code = async {
        let backend = Backend::open_as(settings, "demo", Access::WRITE, false).await?;
        runs::request(
            &backend,
            &RunRequest {
                import: "users",
                dry_run: false,
                wait: true,
                output: Output::Table,
                idempotency_key: None,
                replay: None,
                on_interrupt: OnInterrupt::Cancel,
            },
        )
        .await
    }
    .await;
    shutdown.cancel();
    fleet.await??;
    let code = code?;
    outln!();
    outln!("next:");
    outln!("  sluice config set workspace demo                      # act in the demo workspace");
    outln!("  sluice profiles export | head                         # the imported profiles");
    outln!("  psql {warehouse} -c \"UPDATE users SET loyalty_points = loyalty_points + 1, updated_at = now() WHERE id % 10 = 0\"");
    outln!(
        "  sluice all & sluice run users --wait                  # only the changed rows are read"
    );
    outln!("  sluice run users --dry-run --wait                     # what a run would change, with a sample");
    outln!("  the spec used is {}", spec_path.display());
    Ok(code)
}
