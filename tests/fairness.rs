//! Load fairness: 20 imports from 4 workspaces with different load limits run at once through
//! one fleet. No workspace writes faster than its limit, none is starved while the others load,
//! and every store ends equal to its source. The measured rates are printed; how close each
//! comes to its limit depends on the machine and is recorded in benches/README.md.

mod common;

use common::Fleet;
use std::time::Duration;

/// (workspace, fleet-wide rows per second) — the limits the test sets.
const WORKSPACES: [(&str, u32); 4] = [
    ("north", 1000),
    ("east", 1500),
    ("south", 2000),
    ("west", 2500),
];
/// Imports per workspace; each reads one fifth of the workspace's rows.
const IMPORTS: u32 = 5;
/// Seconds each workspace's rows take at its limit.
const SECONDS_AT_LIMIT: u32 = 8;
const CHUNK_ROWS: u32 = 400;

fn spec(fleet: &Fleet, workspace: &str, rows: u32) -> String {
    let imports: String = (0..IMPORTS)
        .map(|part| {
            format!(
                r#"  - name: users_{part}
    connection: wh
    source: {{ query: "SELECT * FROM public.users WHERE id <= {rows} AND id % {IMPORTS} = {part}" }}
    data_type: profiles
    key: id
    watermark: updated_at
    identity: {{ external_id: external_id }}
    properties:
      first_name: {{ column: first_name, type: string }}
    chunk_rows: {CHUNK_ROWS}
    settle_lag: 1s
"#
            )
        })
        .collect();
    format!(
        "workspace: {workspace}\nconnections:\n  - name: wh\n    kind: postgres\n    url: {}\nimports:\n{imports}",
        fleet.warehouse_url()
    )
}

/// One workspace's loads as the profile store recorded them: a chunk's profiles are created in
/// one transaction, opened once the loader has its rows' permits, so they share a `created_at`.
struct Measured {
    rows: i64,
    /// Rows per second between the first and the last chunk written, not counting the first.
    rate: f64,
    /// The longest time between two chunks written, in seconds.
    longest_gap: f64,
    /// Seconds from the first chunk written to the last.
    span: f64,
}

async fn measure(fleet: &Fleet, workspace: &str) -> Measured {
    let chunks = fleet
        .control()
        .await
        .query(
            "SELECT count(*), extract(epoch FROM p.created_at)::float8
               FROM profile_store.profiles p
               JOIN control.workspaces w ON w.id = p.workspace_id
              WHERE w.name = $1
              GROUP BY p.created_at ORDER BY p.created_at",
            &[&workspace],
        )
        .await
        .unwrap();
    let times: Vec<f64> = chunks.iter().map(|c| c.get(1)).collect();
    let rows: i64 = chunks.iter().map(|c| c.get::<_, i64>(0)).sum();
    let first: i64 = chunks[0].get(0);
    let span = times.last().unwrap() - times[0];
    Measured {
        rows,
        rate: (rows - first) as f64 / span,
        longest_gap: times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max),
        span,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn workspaces_load_within_their_limits_and_none_starves() {
    let mut fleet = Fleet::new().await;
    let most = WORKSPACES
        .iter()
        .map(|(_, l)| l * SECONDS_AT_LIMIT)
        .max()
        .unwrap();
    common::create_users(&fleet.warehouse().await, most as i64).await;
    for (workspace, limit) in WORKSPACES {
        fleet.apply_ok(&spec(&fleet, workspace, limit * SECONDS_AT_LIMIT));
        let limited = fleet.sluice(&[
            "workspaces",
            "limit",
            "--workspace",
            workspace,
            "--load-rows-per-second",
            &limit.to_string(),
        ]);
        assert!(limited.status.success(), "{limited:?}");
    }
    let listed = String::from_utf8_lossy(&fleet.sluice(&["workspaces", "list"]).stdout).to_string();
    assert!(
        listed.contains("north") && listed.contains("2500"),
        "{listed}"
    );

    fleet.start("coordinator", &[]);
    fleet.start("extractor", &["--concurrency", "4"]);
    fleet.start("transformer", &["--concurrency", "4"]);
    // Two loaders share each workspace's limit.
    fleet.start("loader", &["--concurrency", "8"]);
    fleet.start("loader", &["--concurrency", "8"]);
    // Both loaders must have counted each other before the runs start.
    tokio::time::sleep(Duration::from_secs(7)).await;

    let mut runs = Vec::new();
    for (workspace, _) in WORKSPACES {
        for part in 0..IMPORTS {
            runs.push(fleet.request_run(workspace, &format!("users_{part}")));
        }
    }
    for run in &runs {
        let status = fleet.wait_for_run(run, Duration::from_secs(180)).await;
        assert_eq!(status, "succeeded", "run {run}");
    }

    let control = fleet.control().await;
    let mut table = String::from(
        "| workspace | limit (rows/s) | rows | measured (rows/s) | measured / limit | longest gap (s) |\n|---|---|---|---|---|---|\n",
    );
    let mut longest_span: f64 = 0.0;
    let mut measured = Vec::new();
    for (workspace, limit) in WORKSPACES {
        let m = measure(&fleet, workspace).await;
        table.push_str(&format!(
            "| {workspace} | {limit} | {} | {:.0} | {:.0}% | {:.2} |\n",
            m.rows,
            m.rate,
            100.0 * m.rate / limit as f64,
            m.longest_gap
        ));
        longest_span = longest_span.max(m.span);
        measured.push((workspace, limit, m));
    }
    println!("{table}");
    for (workspace, limit, m) in &measured {
        assert_eq!(
            m.rows,
            (limit * SECONDS_AT_LIMIT) as i64,
            "{workspace} loaded every row"
        );
        // The limiter lets through a tenth of a second of burst and no more: never faster.
        assert!(
            m.rate <= *limit as f64 * 1.1,
            "{workspace} wrote {:.0} rows/s over its limit of {limit}\n{table}",
            m.rate
        );
        // Starving would show as a long pause while the others load.
        assert!(
            m.longest_gap < longest_span / 3.0,
            "{workspace} waited {:.1} s between chunks\n{table}",
            m.longest_gap
        );
        let (source, store): (i64, i64) = {
            let row = control
                .query_one(
                    "SELECT (SELECT count(*) FROM profile_store.profiles p
                              JOIN control.workspaces w ON w.id = p.workspace_id
                             WHERE w.name = $1), $2::int8",
                    &[workspace, &((limit * SECONDS_AT_LIMIT) as i64)],
                )
                .await
                .unwrap();
            (row.get(1), row.get(0))
        };
        assert_eq!(
            store, source,
            "{workspace}'s store holds each source row once"
        );
    }
    fleet.cleanup().await;
}

/// A 5-row import of another workspace finishes while a 60-chunk rate-limited run still has
/// most of its chunks to load: the coordinator keeps only a window of the large run's chunks
/// in the queues, so the small run's chunk waits behind a few of them, not all.
#[tokio::test(flavor = "multi_thread")]
async fn a_small_run_does_not_wait_behind_a_large_ones_chunks() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    common::create_users(&warehouse, 6_000).await;
    let import = |name: &str, source: &str| {
        format!(
            r#"  - name: {name}
    connection: wh
    source: {{ query: "{source}" }}
    data_type: profiles
    key: id
    watermark: updated_at
    identity: {{ external_id: external_id }}
    properties:
      first_name: {{ column: first_name, type: string }}
    chunk_rows: 100
    settle_lag: 1s
"#
        )
    };
    fleet.apply_ok(&fleet.spec(&import("large", "SELECT * FROM public.users")));
    fleet.apply_ok(
        &fleet
            .spec(&import("small", "SELECT * FROM public.users WHERE id <= 5"))
            .replace("workspace: acme", "workspace: other"),
    );
    // Half a second per chunk of the large run: 30 s for all of it.
    fleet.start_with_env("all", &[], &[("SLUICE_LOAD_ROWS_PER_SECOND", "200")]);
    let large = fleet.request_run("acme", "large");
    fleet
        .wait_for_loaded_chunks(&large, 3, Duration::from_secs(60))
        .await;
    let control = fleet.control().await;
    let large_id: uuid::Uuid = large.parse().unwrap();
    let (outstanding, unreleased) = {
        let row = control
            .query_one(
                "SELECT count(*) FILTER (WHERE released_at IS NOT NULL AND status <> 'loaded'),
                        count(*) FILTER (WHERE released_at IS NULL)
                   FROM control.chunks WHERE run_id = $1",
                &[&large_id],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, i64>(1))
    };
    assert!(
        outstanding <= 8,
        "{outstanding} chunks of the large run are out at once"
    );
    assert!(unreleased > 40, "only {unreleased} chunks wait their turn");
    let small = fleet.request_run("other", "small");
    assert_eq!(
        fleet.wait_for_run(&small, Duration::from_secs(60)).await,
        "succeeded"
    );
    assert_eq!(
        fleet.wait_for_run(&large, Duration::from_secs(120)).await,
        "succeeded"
    );
    let small_id: uuid::Uuid = small.parse().unwrap();
    let row = control
        .query_one(
            "SELECT count(*) FILTER (WHERE c.updated_at <= s.created_at),
                    count(*) FILTER (WHERE c.updated_at <= s.finished_at),
                    count(*), extract(epoch FROM s.finished_at - s.created_at)::float8
               FROM control.chunks c, control.runs s
              WHERE c.run_id = $1 AND s.id = $2
              GROUP BY s.created_at, s.finished_at",
            &[&large_id, &small_id],
        )
        .await
        .unwrap();
    let (before, during, chunks, took): (i64, i64, i64, f64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    println!(
        "the small run took {took:.1} s; the large run loaded {} of its {chunks} chunks meanwhile",
        during - before
    );
    assert_eq!(chunks, 60);
    assert!(
        during < chunks / 2,
        "the small run ended only after {during} of the large run's {chunks} chunks were loaded"
    );
    fleet.cleanup().await;
}
