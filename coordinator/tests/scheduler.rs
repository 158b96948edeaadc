//! The scheduler against the real PostgreSQL and RabbitMQ, driven by a simulated clock: two
//! schedulers ticking at once (the worst case, as if both believed they led) over 50 ticks fire
//! every slot exactly once, and a tick while a run is active records the slot as skipped.

use chrono::{DateTime, Duration, Utc};
use sluice_coordinator::scheduler::{tick, Fired};
use sluice_coordinator::{database, spec};
use sluice_proto::topology::QueueRole;
use sluice_proto::{Bus, Topology};
use tokio_postgres::Client;

const PG: &str = "postgres://postgres@127.0.0.1:5432";
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

const SPEC: &str = r#"
workspace: acme
connections:
  - name: wh
    kind: postgres
    url: postgres://postgres@127.0.0.1:5432/nowhere
imports:
  - name: users
    connection: wh
    source: { table: public.users }
    data_type: profiles
    key: id
    watermark: updated_at
    identity: { external_id: external_id }
    schedule: { every: 15m }
"#;

/// A control plane with one import scheduled every 15 minutes from `start`.
async fn control_plane(id: &str, start: DateTime<Utc>) -> String {
    let url = format!("{PG}/sched_{id}");
    database::ensure_database(&url).await.unwrap();
    database::migrate(
        &url,
        &[(sluice_coordinator::SCHEMA, sluice_coordinator::MIGRATIONS)],
    )
    .await
    .unwrap();
    let client = database::connect(&url).await.unwrap();
    let import = &spec::parse(SPEC).unwrap().imports[0];
    client
        .execute(
            "WITH w AS (INSERT INTO control.workspaces (name) VALUES ('acme') RETURNING id),
                  c AS (INSERT INTO control.connections (workspace_id, name, kind, credentials)
                        SELECT id, 'wh', 'postgres', '{}'::jsonb FROM w RETURNING id, workspace_id)
             INSERT INTO control.imports (workspace_id, name, connection_id, data_type, spec, state, next_fire_at)
             SELECT workspace_id, 'users', id, 'profiles', $1, 'scheduled', $2 FROM c",
            &[&serde_json::to_value(import).unwrap(), &start],
        )
        .await
        .unwrap();
    url
}

async fn finish_active_runs(client: &Client) {
    client
        .execute(
            "UPDATE control.runs SET status = 'succeeded', finished_at = now()
              WHERE status IN ('queued', 'planning', 'running')",
            &[],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_schedulers_over_fifty_ticks_fire_every_slot_exactly_once() {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let start: DateTime<Utc> = "2026-03-29T00:00:00Z".parse().unwrap();
    let url = control_plane(&id, start).await;
    let topology = Topology::new(format!("sched_{id}"));
    let bus = Bus::connect(AMQP, &topology).await.unwrap();
    let (mut a, mut b) = (
        database::connect(&url).await.unwrap(),
        database::connect(&url).await.unwrap(),
    );
    let observer = database::connect(&url).await.unwrap();

    let mut total = Fired::default();
    // Ticks every 5 simulated minutes: 50 ticks cover 250 minutes, 17 slots.
    for n in 0..50 {
        let now = start + Duration::minutes(5 * n);
        let (x, y) = tokio::join!(tick(&mut a, &bus, now), tick(&mut b, &bus, now));
        for fired in [x.unwrap(), y.unwrap()] {
            total.started += fired.started;
            total.skipped += fired.skipped;
        }
        // Every other slot finds the previous run still active.
        if n % 6 == 5 {
            finish_active_runs(&observer).await;
        }
    }
    let slots = observer
        .query(
            "SELECT scheduled_for, count(*) FROM control.runs GROUP BY scheduled_for ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        slots.len(),
        17,
        "one run record per slot from 00:00 to 04:00"
    );
    for slot in &slots {
        assert_eq!(
            slot.get::<_, i64>(1),
            1,
            "slot {:?} fired twice",
            slot.get::<_, DateTime<Utc>>(0)
        );
    }
    assert_eq!((total.started + total.skipped) as usize, slots.len());
    assert!(
        total.skipped > 0,
        "slots that found a run active are recorded as skipped"
    );
    let skipped: i64 = observer
        .query_one(
            "SELECT count(*) FROM control.runs WHERE status = 'skipped'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(skipped, total.skipped as i64);
    let published = bus
        .queue_depth(&topology.queue(QueueRole::Commands))
        .await
        .unwrap();
    assert_eq!(published, total.started, "one run request per started run");

    if let Ok(channel) = bus.channel().await {
        let _ = topology.delete(&channel).await;
    }
    bus.close().await;
    drop((a, b, observer));
    let admin = database::connect(&format!("{PG}/postgres")).await.unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE sched_{id} WITH (FORCE)"))
        .await
        .unwrap();
}
