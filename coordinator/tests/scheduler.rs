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

/// A control plane with the imports of `spec`, each scheduled from `start`.
async fn control_plane(id: &str, spec_text: &str, start: DateTime<Utc>) -> String {
    let url = format!("{PG}/sched_{id}");
    database::ensure_database(&url).await.unwrap();
    database::migrate(
        &url,
        &[(sluice_coordinator::SCHEMA, sluice_coordinator::MIGRATIONS)],
    )
    .await
    .unwrap();
    let client = database::connect(&url).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO control.workspaces (name) VALUES ('acme');
             INSERT INTO control.connections (workspace_id, name, kind, credentials)
             SELECT id, 'wh', 'postgres', '{}'::jsonb FROM control.workspaces",
        )
        .await
        .unwrap();
    for import in &spec::parse(spec_text).unwrap().imports {
        client
            .execute(
                "INSERT INTO control.imports (workspace_id, name, connection_id, data_type, spec, state, next_fire_at)
                 SELECT c.workspace_id, $1, c.id, $2, $3, 'scheduled', $4 FROM control.connections c",
                &[
                    &import.name,
                    &import.data_type.as_str(),
                    &serde_json::to_value(import).unwrap(),
                    &start,
                ],
            )
            .await
            .unwrap();
    }
    url
}

async fn drop_control_plane(id: &str) {
    let admin = database::connect(&format!("{PG}/postgres")).await.unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE sched_{id} WITH (FORCE)"))
        .await
        .unwrap();
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// Two schedulers' connections and an observer's on a control plane of its own, with a bus.
struct Schedulers {
    id: String,
    topology: Topology,
    bus: Bus,
    a: Client,
    b: Client,
    observer: Client,
}

impl Schedulers {
    async fn start(spec_text: &str, start: DateTime<Utc>) -> Self {
        let id = new_id();
        let url = control_plane(&id, spec_text, start).await;
        let topology = Topology::new(format!("sched_{id}"));
        let bus = Bus::connect(AMQP, &topology).await.unwrap();
        Schedulers {
            a: database::connect(&url).await.unwrap(),
            b: database::connect(&url).await.unwrap(),
            observer: database::connect(&url).await.unwrap(),
            id,
            topology,
            bus,
        }
    }

    async fn published(&self) -> u32 {
        self.bus
            .queue_depth(&self.topology.queue(QueueRole::Commands))
            .await
            .unwrap()
    }

    async fn finish(self) {
        if let Ok(channel) = self.bus.channel().await {
            let _ = self.topology.delete(&channel).await;
        }
        self.bus.close().await;
        drop((self.a, self.b, self.observer));
        drop_control_plane(&self.id).await;
    }
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
    let start: DateTime<Utc> = "2026-03-29T00:00:00Z".parse().unwrap();
    let mut s = Schedulers::start(SPEC, start).await;
    let (a, b, observer, bus) = (&mut s.a, &mut s.b, &s.observer, &s.bus);

    let mut total = Fired::default();
    // Ticks every 5 simulated minutes: 50 ticks cover 250 minutes, 17 slots.
    for n in 0..50 {
        let now = start + Duration::minutes(5 * n);
        let (x, y) = tokio::join!(tick(a, bus, now), tick(b, bus, now));
        for fired in [x.unwrap(), y.unwrap()] {
            total.started += fired.started;
            total.skipped += fired.skipped;
        }
        // Every other slot finds the previous run still active.
        if n % 6 == 5 {
            finish_active_runs(observer).await;
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
    assert_eq!(
        s.published().await,
        total.started,
        "one run request per started run"
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_after_another_fires_only_once_the_other_run_has_finished() {
    let start: DateTime<Utc> = "2026-11-01T06:00:00Z".parse().unwrap();
    let spec_text = format!(
        "{SPEC}  - name: events
    connection: wh
    source: {{ table: public.events }}
    data_type: events
    key: id
    watermark: updated_at
    identity: {{ external_id: external_id }}
    event_name: {{ column: name }}
    event_time: {{ column: at }}
    after: [users]
    schedule: {{ every: 15m }}
"
    );
    let mut s = Schedulers::start(&spec_text, start).await;
    let (client, observer, bus) = (&mut s.a, &s.observer, &s.bus);
    let runs_of = |import: &'static str| async move {
        observer
            .query(
                "SELECT r.status FROM control.runs r JOIN control.imports i ON i.id = r.import_id
                      WHERE i.name = $1",
                &[&import],
            )
            .await
            .unwrap()
            .len()
    };

    let first = tick(client, bus, start).await.unwrap();
    assert_eq!(
        (first.started, first.waiting),
        (1, 1),
        "users fires, events waits"
    );
    let again = tick(client, bus, start + Duration::seconds(30))
        .await
        .unwrap();
    assert_eq!(
        (again.started, again.waiting),
        (0, 1),
        "users' run is still active"
    );
    assert_eq!(runs_of("events").await, 0);
    finish_active_runs(observer).await;
    let after = tick(client, bus, start + Duration::seconds(60))
        .await
        .unwrap();
    assert_eq!((after.started, after.waiting), (1, 0));
    assert_eq!(runs_of("events").await, 1);
    let slots: Vec<DateTime<Utc>> = observer
        .query(
            "SELECT scheduled_for FROM control.runs ORDER BY created_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        slots,
        vec![start, start],
        "both runs are for the same window"
    );
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slot_of_hundreds_of_imports_fires_each_once_across_batches() {
    let start: DateTime<Utc> = "2026-12-01T09:00:00Z".parse().unwrap();
    let import = |name: String, after: &str| {
        format!(
            "  - {{ name: {name}, connection: wh, source: {{ table: public.users }}, data_type: profiles, key: id, watermark: updated_at, identity: {{ external_id: external_id }}, schedule: {{ every: 15m }}{after} }}\n"
        )
    };
    let mut spec_text =
        "workspace: acme\nconnections:\n  - { name: wh, kind: postgres, url: postgres://postgres@127.0.0.1:5432/nowhere }\nimports:\n"
            .to_string();
    for n in 0..250 {
        spec_text += &import(format!("users{n:03}"), "");
    }
    // Three imports that run after the first wait while its run is active, in every batch.
    for n in 0..3 {
        spec_text += &import(format!("later{n}"), ", after: [users000]");
    }
    let mut s = Schedulers::start(&spec_text, start).await;
    let (a, b, observer, bus) = (&mut s.a, &mut s.b, &s.observer, &s.bus);
    let (x, y) = tokio::join!(tick(a, bus, start), tick(b, bus, start));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(
        x.started + y.started,
        250,
        "every import fires its slot once"
    );
    assert!(
        x.waiting + y.waiting >= 3,
        "the imports that run after wait"
    );
    let runs = observer
        .query(
            "SELECT i.name, count(*) FROM control.runs r JOIN control.imports i ON i.id = r.import_id
              GROUP BY i.name",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(runs.len(), 250);
    assert!(runs.iter().all(|r| r.get::<_, i64>(1) == 1));
    assert!(runs
        .iter()
        .all(|r| r.get::<_, String>(0).starts_with("users")));
    assert_eq!(s.published().await, 250, "one run request per run");
    let moved_on: i64 = observer
        .query_one(
            "SELECT count(*) FROM control.imports WHERE next_fire_at > $1",
            &[&start],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(moved_on, 250, "the waiting imports keep their slot");
    s.finish().await;
}
