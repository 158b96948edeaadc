//! Schedules and the import lifecycle through the whole fleet: a schedule fires by itself,
//! an idempotency key names one run, pause and resume are recorded, and a second coordinator
//! takes the lead within seconds when the leader is killed, while the run completes.

mod common;

use common::{create_users, users_spec, Fleet};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_fires_by_itself_and_its_run_completes() {
    let mut fleet = Fleet::new().await;
    create_users(&fleet.warehouse().await, 2_000).await;
    let at = (chrono::Utc::now() + chrono::Duration::seconds(4))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let spec = users_spec(&fleet, 1_000).replace(
        "    chunk_rows:",
        &format!("    schedule: {{ at: \"{at}\" }}\n    chunk_rows:"),
    );
    fleet.apply_ok(&spec);
    let view = fleet.import_view("users");
    assert_eq!(view["state"], "scheduled", "{view}");
    assert_eq!(
        view["upcoming"].as_array().unwrap().len(),
        1,
        "a one-time schedule fires once"
    );
    fleet.start("all", &[]);
    let control = fleet.control().await;
    let started = Instant::now();
    loop {
        let row = control
            .query_opt(
                "SELECT status, requested_by, scheduled_for IS NOT NULL FROM control.runs",
                &[],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            let status: String = row.get(0);
            if status == "succeeded" {
                assert_eq!(row.get::<_, String>(1), "schedule");
                assert!(row.get::<_, bool>(2));
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the schedule did not fire"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    common::assert_store_equals_source(&fleet).await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_idempotency_key_returns_the_same_run() {
    let mut fleet = Fleet::new().await;
    create_users(&fleet.warehouse().await, 1_000).await;
    fleet.apply_ok(&users_spec(&fleet, 1_000));
    fleet.start("all", &[]);
    let key = ["--idempotency-key", "nightly-2026-11-22"];
    let first = fleet.run_with("acme", "users", &key);
    let second = fleet.run_with("acme", "users", &key);
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["run_id"], second["run_id"]);
    assert_eq!(
        second["rows_read"], 1_000,
        "the second trigger reports the first run"
    );
    let runs: i64 = fleet
        .control()
        .await
        .query_one("SELECT count(*) FROM control.runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 1);
    let other = fleet.run_with("acme", "users", &["--idempotency-key", "another"]);
    assert_ne!(other["run_id"], first["run_id"]);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_and_resume_are_validated_and_recorded() {
    let fleet = Fleet::new().await;
    create_users(&fleet.warehouse().await, 10).await;
    let spec = users_spec(&fleet, 1_000).replace(
        "    chunk_rows:",
        "    schedule: { cron: \"0 6 * * 1-5\", timezone: Europe/Berlin }\n    chunk_rows:",
    );
    fleet.apply_ok(&spec);
    let show = || fleet.import_view("users");
    let view = show();
    assert_eq!(view["state"], "scheduled");
    let upcoming = view["upcoming"].as_array().unwrap();
    assert_eq!(upcoming.len(), 5);
    assert!(
        upcoming[0]["local"].as_str().unwrap().contains("06:00:00"),
        "{view}"
    );

    let pause = fleet.sluice(&["imports", "pause", "users", "--workspace", "acme"]);
    assert!(
        pause.status.success(),
        "{}",
        String::from_utf8_lossy(&pause.stderr)
    );
    let again = fleet.sluice(&["imports", "pause", "users", "--workspace", "acme"]);
    assert!(
        !again.status.success(),
        "pausing a paused import is refused"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("is paused"));
    let view = show();
    assert_eq!(view["state"], "paused");
    // Applying the same spec again does not unpause it.
    fleet.apply_ok(&spec);
    assert_eq!(show()["state"], "paused");
    let resume = fleet.sluice(&["imports", "resume", "users", "--workspace", "acme"]);
    assert!(resume.status.success());
    let view = show();
    assert_eq!(view["state"], "scheduled");
    let trail: Vec<(String, String)> = view["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["to"].as_str().unwrap().to_string(),
                t["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        trail.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(),
        vec!["scheduled", "paused", "scheduled"],
        "{view}"
    );
    assert_eq!(trail[0].1, "apply --ready");
    fleet.cleanup().await;
}

/// The coordinator that leads the scheduler, as it recorded itself.
async fn leader(control: &tokio_postgres::Client) -> Option<String> {
    control
        .query_opt("SELECT holder FROM control.scheduler_lead", &[])
        .await
        .unwrap()
        .map(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_coordinator_takes_the_lead_when_the_first_is_killed_and_the_run_completes() {
    let mut fleet = Fleet::new().await;
    create_users(&fleet.warehouse().await, 40_000).await;
    fleet.apply_ok(&users_spec(&fleet, 4_000));
    fleet.start("coordinator", &[]);
    let control = fleet.control().await;
    let started = Instant::now();
    let first = loop {
        if let Some(h) = leader(&control).await {
            break h;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no coordinator leads"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    fleet.start("coordinator", &[]);
    fleet.start("extractor", &[]);
    fleet.start("transformer", &[]);
    fleet.start("loader", &["--load-rows-per-second", "10000"]);
    let run_id = fleet.request_run("acme", "users");
    fleet
        .wait_for_loaded_chunks(&run_id, 2, Duration::from_secs(120))
        .await;
    fleet.kill("coordinator");
    let killed = Instant::now();
    loop {
        if let Some(h) = leader(&control).await {
            if h != first {
                break;
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "no coordinator took the lead within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = fleet.wait_for_run(&run_id, Duration::from_secs(180)).await;
    assert_eq!(status, "succeeded");
    common::assert_store_equals_source(&fleet).await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_in_use_cannot_be_deleted_and_the_error_lists_its_imports() {
    let fleet = Fleet::new().await;
    create_users(&fleet.warehouse().await, 10).await;
    let spec = users_spec(&fleet, 1_000).replace(
        "imports:\n",
        &format!(
            "  - name: spare\n    kind: postgres\n    url: {}\nimports:\n",
            fleet.warehouse_url()
        ),
    );
    fleet.apply_ok(&spec);
    let paused = fleet.sluice(&["imports", "pause", "users", "--workspace", "acme"]);
    assert!(paused.status.success());
    let refused = fleet.sluice(&["connections", "delete", "wh", "--workspace", "acme"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("users (paused)"), "{stderr}");
    let deleted = fleet.sluice(&["connections", "delete", "spare", "--workspace", "acme"]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let listed = fleet.sluice(&["connections", "list", "--workspace", "acme"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("wh") && !listed.contains("spare"),
        "{listed}"
    );

    let ok = fleet.sluice(&["connections", "test", "wh", "--workspace", "acme"]);
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("wh: ok"));
    // The warehouse goes away: the test names what failed.
    let admin = common::connect(&format!("{}/postgres", common::PG)).await;
    admin
        .batch_execute(&format!("DROP DATABASE wh_{} WITH (FORCE)", fleet.id))
        .await
        .unwrap();
    let failed = fleet.sluice(&["connections", "test", "wh", "--workspace", "acme"]);
    assert_eq!(failed.status.code(), Some(1));
    let said = String::from_utf8_lossy(&failed.stdout);
    assert!(said.contains("wh: ") && !said.contains(": ok"), "{said}");
    fleet.cleanup().await;
}

/// Publishes a run request as another service would, asking for a reply on `replies`.
async fn request_with_reply(
    bus: &sluice_proto::Bus,
    request: &sluice_proto::RunRequested,
    replies: &str,
    correlation_id: &str,
) {
    use sluice_proto::bus::Reply;
    use sluice_proto::headers::{self, TraceContext};
    use sluice_proto::Message;
    bus.publish_with(
        &bus.topology().exchange(),
        sluice_proto::RunRequested::ROUTING_KEY,
        &sluice_proto::envelope::encode(request).unwrap(),
        headers::build(&TraceContext::new_trace(), 1, None),
        &Reply {
            reply_to: Some(replies.to_string()),
            correlation_id: Some(correlation_id.to_string()),
        },
    )
    .await
    .unwrap();
}

/// Waits for the next reply on `replies`: its correlation id and the `RunAccepted`.
async fn next_reply(
    channel: &lapin::Channel,
    replies: &str,
) -> (Option<String>, sluice_proto::RunAccepted) {
    let started = Instant::now();
    loop {
        if let Some(message) = channel
            .basic_get(
                replies.into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            let correlation = message
                .properties
                .correlation_id()
                .as_ref()
                .map(|c| c.to_string());
            return (
                correlation,
                sluice_proto::envelope::decode(&message.data).unwrap(),
            );
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no reply");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_requested_on_the_command_queue_gets_a_reply_with_its_run_id() {
    use lapin::options::QueueDeclareOptions;
    use sluice_proto::{Bus, RunRequested, Topology};

    let mut fleet = Fleet::new().await;
    create_users(&fleet.warehouse().await, 1_000).await;
    fleet.apply_ok(&users_spec(&fleet, 1_000));
    fleet.start("all", &[]);
    let topology = Topology::new(format!("sluice_{}", fleet.id));
    let bus = Bus::connect(common::AMQP, &topology).await.unwrap();
    let channel = bus.channel().await.unwrap();
    let replies = format!("replies_{}", fleet.id);
    channel
        .queue_declare(
            replies.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    let request = RunRequested {
        run_id: uuid::Uuid::new_v4(),
        workspace: "acme".into(),
        import: "users".into(),
        dry_run: false,
        requested_by: "billing-service".into(),
        requested_at: chrono::Utc::now(),
        scheduled_for: None,
        idempotency_key: Some("invoice-42".into()),
        replay: None,
    };
    request_with_reply(&bus, &request, &replies, "corr-1").await;
    let (correlation, accepted) = next_reply(&channel, &replies).await;
    assert_eq!(correlation.as_deref(), Some("corr-1"));
    assert_eq!(accepted.run_id, request.run_id);
    assert!(
        ["queued", "planning", "running", "succeeded"].contains(&accepted.status.as_str()),
        "{accepted:?}"
    );
    let status = fleet
        .wait_for_run(&request.run_id.to_string(), Duration::from_secs(60))
        .await;
    assert_eq!(status, "succeeded");
    let by: String = fleet
        .control()
        .await
        .query_one("SELECT requested_by FROM control.runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(by, "billing-service");

    // The same idempotency key under another run id: the reply names the first run.
    let again = RunRequested {
        run_id: uuid::Uuid::new_v4(),
        ..request.clone()
    };
    request_with_reply(&bus, &again, &replies, "corr-2").await;
    let (_, second) = next_reply(&channel, &replies).await;
    assert_eq!(second.run_id, request.run_id);
    assert_eq!(second.status, "succeeded");
    let runs: i64 = fleet
        .control()
        .await
        .query_one("SELECT count(*) FROM control.runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 1, "one run per idempotency key");
    bus.close().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rewind_and_resync_move_the_watermark_back_and_are_audited() {
    let mut fleet = Fleet::new().await;
    create_users(&fleet.warehouse().await, 2_000).await;
    fleet.apply_ok(&users_spec(&fleet, 1_000));
    fleet.start("all", &[]);
    assert_eq!(fleet.run("acme", "users")["rows_read"], 2_000);

    let forward = fleet.sluice(&[
        "imports",
        "rewind",
        "users",
        "--workspace",
        "acme",
        "--to",
        "2030-01-01T00:00:00Z",
    ]);
    assert!(!forward.status.success());
    assert!(String::from_utf8_lossy(&forward.stderr).contains("moves it back"));

    // Row g is stamped 2024-01-01 + g * 37 ms: rows 1000 to 2000 are at or after 00:00:37.
    let rewind = fleet.sluice(&[
        "imports",
        "rewind",
        "users",
        "--workspace",
        "acme",
        "--to",
        "2024-01-01T00:00:37Z",
    ]);
    assert!(
        rewind.status.success(),
        "{}",
        String::from_utf8_lossy(&rewind.stderr)
    );
    let again = fleet.run("acme", "users");
    assert_eq!(again["rows_read"], 1_001, "{again}");
    assert_eq!(
        again["profiles_unchanged"], 1_001,
        "re-read rows change nothing: {again}"
    );

    let resync = fleet.sluice(&["imports", "resync", "users", "--workspace", "acme"]);
    assert!(resync.status.success());
    assert_eq!(fleet.run("acme", "users")["rows_read"], 2_000);
    common::assert_store_equals_source(&fleet).await;

    let audit: Vec<(String, bool, bool)> = fleet
        .control()
        .await
        .query(
            "SELECT operation, from_position IS NOT NULL, to_position IS NOT NULL
               FROM control.watermark_changes ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        audit,
        vec![
            ("rewind".to_string(), true, true),
            ("resync".to_string(), true, false)
        ]
    );
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_an_import_cancels_its_run_and_the_remaining_chunks_are_discarded() {
    use sluice_proto::topology::QueueRole;
    let mut fleet = Fleet::new().await;
    create_users(&fleet.warehouse().await, 60_000).await;
    fleet.apply_ok(&users_spec(&fleet, 4_000));
    fleet.start("coordinator", &[]);
    fleet.start("extractor", &[]);
    fleet.start("transformer", &[]);
    fleet.start("loader", &["--load-rows-per-second", "5000"]);
    let run_id = fleet.request_run("acme", "users");
    fleet
        .wait_for_loaded_chunks(&run_id, 2, Duration::from_secs(120))
        .await;
    let stop = fleet.sluice(&["imports", "stop", "users", "--workspace", "acme"]);
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let control = fleet.control().await;
    let run_uuid: uuid::Uuid = run_id.parse().unwrap();
    let stored = || async {
        control
            .query_one("SELECT count(*) FROM profile_store.profiles", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    // In-flight loads finish; then nothing more of the run reaches the store.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let settled = stored().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        stored().await,
        settled,
        "no chunk of a cancelled run is loaded"
    );
    assert!(settled < 60_000, "{settled} of 60000 rows loaded");
    let topology = sluice_proto::Topology::new(format!("sluice_{}", fleet.id));
    let bus = sluice_proto::Bus::connect(common::AMQP, &topology)
        .await
        .unwrap();
    for role in [QueueRole::Extract, QueueRole::Transform, QueueRole::Load] {
        assert_eq!(
            bus.queue_depth(&topology.queue(role)).await.unwrap(),
            0,
            "{role:?} messages of the cancelled run are acknowledged and discarded"
        );
    }
    bus.close().await;
    let view = fleet.import_view("users");
    assert_eq!(view["state"], "stopped");
    assert_eq!(view["last_run"]["status"], "cancelled");
    let reason = view["transitions"].as_array().unwrap().last().unwrap()["reason"].clone();
    assert!(reason.as_str().unwrap().contains("cancelled"), "{view}");
    let rows_loaded: i64 = control
        .query_one(
            "SELECT sum(rows_loaded)::int8 FROM control.chunks WHERE run_id = $1",
            &[&run_uuid],
        )
        .await
        .unwrap()
        .get(0);
    assert!(rows_loaded >= 8_000, "the cancelled run keeps its stats");
    let refused = fleet.sluice(&["run", "users", "--workspace", "acme"]);
    assert!(
        !refused.status.success(),
        "a stopped import is not triggered"
    );
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_reads_its_window_again_without_moving_the_watermark() {
    let mut fleet = Fleet::new().await;
    create_users(&fleet.warehouse().await, 2_000).await;
    fleet.apply_ok(&users_spec(&fleet, 1_000));
    fleet.start("all", &[]);
    let first = fleet.run("acme", "users");
    let control = fleet.control().await;
    let watermark = || async {
        control
            .query_one("SELECT position::text FROM control.watermarks", &[])
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    let before = watermark().await;
    // Rows 1000 to 1081 are stamped in [00:00:37, 00:00:40).
    let out = fleet.sluice(&[
        "imports",
        "replay",
        "users",
        "--workspace",
        "acme",
        "--from",
        "2024-01-01T00:00:37Z",
        "--until",
        "2024-01-01T00:00:40Z",
        "--wait",
        "--output",
        "json",
    ]);
    let replay: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(replay["status"], "succeeded", "{replay}");
    assert_eq!(replay["rows_read"], 82, "{replay}");
    assert_eq!(replay["profiles_unchanged"], 82, "{replay}");
    assert_eq!(
        watermark().await,
        before,
        "a replay does not move the watermark"
    );
    assert_ne!(replay["run_id"], first["run_id"]);
    let audited: i64 = control
        .query_one(
            "SELECT count(*) FROM control.watermark_changes WHERE operation = 'replay'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 1);
    assert_eq!(
        fleet.run("acme", "users")["rows_read"],
        0,
        "the next run continues from the watermark"
    );
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_import_is_a_draft_until_a_dry_run_succeeds() {
    let mut fleet = Fleet::new().await;
    create_users(&fleet.warehouse().await, 500).await;
    let spec = users_spec(&fleet, 1_000).replace(
        "    chunk_rows:",
        "    schedule: { every: 1h }\n    chunk_rows:",
    );
    let applied = fleet.apply_with(&spec, &[]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let show = |fleet: &Fleet| fleet.import_view("users");
    let view = show(&fleet);
    assert_eq!(view["state"], "draft");
    assert!(
        view["next_fire_at"].is_null(),
        "a draft is not scheduled: {view}"
    );
    fleet.start("all", &[]);
    let refused = fleet.sluice(&["run", "users", "--workspace", "acme", "--wait"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--dry-run"));

    let dry = fleet.run_with("acme", "users", &["--dry-run"]);
    assert_eq!(dry["status"], "succeeded", "{dry}");
    let view = show(&fleet);
    assert_eq!(view["state"], "scheduled", "{view}");
    assert!(!view["next_fire_at"].is_null());
    let last = view["transitions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["from"], "draft");
    assert!(
        last["actor"].as_str().unwrap().starts_with("dry run"),
        "{last}"
    );
    let real = fleet.run("acme", "users");
    assert_eq!(real["status"], "succeeded", "{real}");
    common::assert_store_equals_source(&fleet).await;
    fleet.cleanup().await;
}
