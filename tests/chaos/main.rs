//! The chaos suite: large imports through separate coordinator and worker processes while
//! the test kills processes, restarts the broker and the database, poisons a chunk, keeps
//! writing at the watermark and stamps rows in the future. After every scenario the stores
//! must equal the source exactly — nothing lost, nothing twice — no chunk may be left
//! unfinished and no message left on a queue but an expected dead letter. The scenarios share
//! one PostgreSQL server and one RabbitMQ node of their own, so restarting them disturbs no
//! other test. Sizes: `CHAOS_PROFILES` (500,000) and `CHAOS_EVENTS` (300,000) rows.

#[path = "../common/mod.rs"]
mod common;

use common::broker::PrivateBroker;
use common::database::PrivatePostgres;
use common::Fleet;
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const ROLES: [&str; 4] = ["coordinator", "extractor", "transformer", "loader"];

/// What each process of a chaos fleet is given: retries spread over about 30 s, so an outage
/// of a few seconds is waited out rather than dead-lettered.
const PATIENT: [(&str, &str); 2] = [("SLUICE_RETRY_BASE_MS", "1000"), ("SLUICE_LOG", "info")];

fn size(var: &str, default: i64) -> i64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One line of the summary table.
struct Outcome {
    scenario: &'static str,
    rows: i64,
    lost: i64,
    duplicated: i64,
    seconds: f64,
}

/// The services every scenario's fleet runs on.
struct Services {
    postgres: PrivatePostgres,
    broker: PrivateBroker,
}

impl Services {
    async fn fleet(&self) -> Fleet {
        Fleet::on(&self.postgres.url(), &self.broker.url()).await
    }

    /// The PostgreSQL server's and the broker's URLs.
    fn urls(&self) -> (String, String) {
        (self.postgres.url(), self.broker.url())
    }
}

fn start_roles(fleet: &mut Fleet) {
    for role in ROLES {
        fleet.start_with_env(role, &[], &PATIENT);
    }
}

fn restart(fleet: &mut Fleet, role: &str) {
    fleet.kill(role);
    fleet.start_with_env(role, &[], &PATIENT);
}

/// Waits for a run to end; fails the scenario after 15 minutes.
async fn finish(fleet: &Fleet, run: &str) -> String {
    fleet.wait_for_run(run, Duration::from_secs(900)).await
}

/// Waits for a run to end and fails the scenario, with the run's error, unless it succeeded.
async fn succeeds(fleet: &Fleet, run: &str) {
    let status = finish(fleet, run).await;
    if status != "succeeded" {
        let error: Option<String> = fleet
            .control()
            .await
            .query_one(
                "SELECT error_code || ': ' || error_message FROM control.runs WHERE id = $1::text::uuid",
                &[&run],
            )
            .await
            .unwrap()
            .get(0);
        panic!("run {run} ended {status}: {error:?}");
    }
}

/// Source keys missing from the store, and store rows beyond one per source key.
async fn profile_losses(fleet: &Fleet) -> (i64, i64, i64) {
    let source: HashSet<String> = fleet
        .warehouse()
        .await
        .query("SELECT external_id FROM public.users", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let stored: Vec<String> = fleet
        .control()
        .await
        .query(
            "SELECT i.value FROM profile_store.profiles p
               JOIN profile_store.identities i ON i.profile_id = p.profile_id AND i.kind = 'external_id'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let distinct: HashSet<&String> = stored.iter().collect();
    let lost = source.iter().filter(|k| !distinct.contains(k)).count() as i64;
    let duplicated = (stored.len() - distinct.len()) as i64
        + distinct.iter().filter(|k| !source.contains(**k)).count() as i64;
    (source.len() as i64, lost, duplicated)
}

/// Ends a profile scenario: the store equals the source, every chunk and queue has settled
/// with `dead_letters` left, and the fleet is removed; returns the summary line.
async fn profiles_outcome(
    fleet: Fleet,
    amqp: &str,
    dead_letters: u32,
    scenario: &'static str,
    started: Instant,
) -> Outcome {
    common::assert_store_equals_source(&fleet).await;
    assert_settled(&fleet, amqp, dead_letters).await;
    let (rows, lost, duplicated) = profile_losses(&fleet).await;
    fleet.cleanup().await;
    Outcome {
        scenario,
        rows,
        lost,
        duplicated,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Source events missing from the store, and events stored more than once.
async fn event_losses(fleet: &Fleet) -> (i64, i64, i64) {
    let source: i64 = fleet
        .warehouse()
        .await
        .query_one("SELECT count(*) FROM public.activity", &[])
        .await
        .unwrap()
        .get(0);
    let row = fleet
        .control()
        .await
        .query_one(
            "SELECT count(*), count(DISTINCT dedup_key) FROM profile_store.events",
            &[],
        )
        .await
        .unwrap();
    let (stored, distinct): (i64, i64) = (row.get(0), row.get(1));
    (
        source,
        (source - distinct).max(0),
        stored - distinct + (distinct - source).max(0),
    )
}

/// No chunk is left unfinished, and every queue is empty but `dead_letters` messages in the
/// extract stage's dead-letter queue.
async fn assert_settled(fleet: &Fleet, amqp: &str, dead_letters: u32) {
    let topology = sluice_proto::Topology::new(format!("sluice_{}", fleet.id));
    let bus = sluice_proto::Bus::connect(amqp, &topology).await.unwrap();
    let started = Instant::now();
    loop {
        let unfinished: i64 = fleet
            .control()
            .await
            .query_one(
                "SELECT count(*) FROM control.chunks WHERE status NOT IN ('loaded', 'failed', 'cancelled')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let mut left = Vec::new();
        for role in sluice_proto::topology::QueueRole::ALL {
            for queue in [topology.queue(role), topology.dead_letter_queue(role)] {
                let depth = bus.queue_depth(&queue).await.unwrap();
                let expected = if queue
                    == topology.dead_letter_queue(sluice_proto::topology::QueueRole::Extract)
                {
                    dead_letters
                } else {
                    0
                };
                if depth != expected {
                    left.push(format!("{queue}: {depth}"));
                }
            }
        }
        if unfinished == 0 && left.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{unfinished} chunks unfinished; queues: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bus.close().await;
}

/// Kills a random role at random points while a run goes on, each role at least once.
async fn kill_while_running(fleet: &mut Fleet, run: &str) -> usize {
    let mut order: Vec<&str> = ROLES.iter().chain(ROLES.iter()).copied().collect();
    order.shuffle(&mut rand::rng());
    let mut kills = 0;
    for role in order {
        let pause = rand::rng().random_range(500..2_500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let status = fleet.run_status(run).await;
        if sluice_coordinator::runs::status::is_final(&status) {
            break;
        }
        restart(fleet, role);
        kills += 1;
    }
    kills
}

async fn processes_killed(services: &Services, rows: i64) -> Outcome {
    let started = Instant::now();
    let mut fleet = services.fleet().await;
    common::create_users(&fleet.warehouse().await, rows).await;
    fleet.apply_ok(&common::users_spec(&fleet, 20_000));
    start_roles(&mut fleet);
    let run = fleet.request_run("acme", "users");
    let kills = kill_while_running(&mut fleet, &run).await;
    assert!(
        kills >= 4,
        "every role was killed at least once ({kills} kills)"
    );
    succeeds(&fleet, &run).await;
    profiles_outcome(
        fleet,
        &services.broker.url(),
        0,
        "profiles, every role killed",
        started,
    )
    .await
}

async fn events_with_kills(services: &Services, rows: i64) -> Outcome {
    let started = Instant::now();
    let mut fleet = services.fleet().await;
    common::activity::create_activity(&fleet.warehouse().await, rows).await;
    fleet.apply_ok(&fleet.spec(&common::activity::activity_import(20_000)));
    start_roles(&mut fleet);
    let run = fleet.request_run("acme", "activity");
    kill_while_running(&mut fleet, &run).await;
    succeeds(&fleet, &run).await;
    common::activity::assert_events_equal_source(&fleet).await;
    assert_settled(&fleet, &services.broker.url(), 0).await;
    let (rows, lost, duplicated) = event_losses(&fleet).await;
    fleet.cleanup().await;
    Outcome {
        scenario: "events, every role killed",
        rows,
        lost,
        duplicated,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// A profile import during which `outage` takes a service away and brings it back, once the
/// first chunk is loaded.
async fn through_an_outage(
    (pg, amqp): (String, String),
    rows: i64,
    scenario: &'static str,
    outage: impl FnOnce(),
) -> Outcome {
    let started = Instant::now();
    let mut fleet = Fleet::on(&pg, &amqp).await;
    common::create_users(&fleet.warehouse().await, rows).await;
    fleet.apply_ok(&common::users_spec(&fleet, 20_000));
    start_roles(&mut fleet);
    let run = fleet.request_run("acme", "users");
    fleet
        .wait_for_loaded_chunks(&run, 1, Duration::from_secs(300))
        .await;
    outage();
    succeeds(&fleet, &run).await;
    profiles_outcome(fleet, &amqp, 0, scenario, started).await
}

async fn poisoned_chunk(services: &Services, rows: i64) -> Outcome {
    let started = Instant::now();
    let mut fleet = services.fleet().await;
    let warehouse = fleet.warehouse().await;
    common::create_users(&warehouse, rows).await;
    // One row of one chunk fails to read on every attempt until the switch is turned off.
    warehouse
        .batch_execute(
            "CREATE TABLE public.poison (on_ boolean NOT NULL);
             INSERT INTO public.poison VALUES (true);
             CREATE VIEW public.users_read AS
             SELECT id, external_id,
                    CASE WHEN id = 777 AND (SELECT on_ FROM public.poison) THEN (1 / (id - 777))::text
                         ELSE first_name END AS first_name,
                    loyalty_points, birthday, updated_at
               FROM public.users;",
        )
        .await
        .unwrap();
    fleet.apply_ok(
        &common::users_spec(&fleet, 20_000)
            .replace("table: public.users", "table: public.users_read"),
    );
    for role in ROLES {
        fleet.start_with_env(
            role,
            &["--max-attempts", "3"],
            &[("SLUICE_RETRY_BASE_MS", "100")],
        );
    }
    let run = fleet.request_run("acme", "users");
    assert_eq!(finish(&fleet, &run).await, "failed");
    let control = fleet.control().await;
    let failed = control
        .query_one(
            "SELECT r.error_message, (SELECT count(*) FROM control.watermarks) FROM control.runs r WHERE r.id = $1::text::uuid",
            &[&run],
        )
        .await
        .unwrap();
    let (message, watermarks): (Option<String>, i64) = (failed.get(0), failed.get(1));
    assert!(
        message.unwrap_or_default().contains("division by zero"),
        "the run names the chunk's error"
    );
    assert_eq!(watermarks, 0, "the watermark did not move");
    assert_settled(&fleet, &services.broker.url(), 1).await;

    warehouse
        .batch_execute("UPDATE public.poison SET on_ = false")
        .await
        .unwrap();
    let again = fleet.request_run("acme", "users");
    succeeds(&fleet, &again).await;
    profiles_outcome(
        fleet,
        &services.broker.url(),
        1,
        "a poisoned chunk, then the cause removed",
        started,
    )
    .await
}

async fn writer_at_the_watermark(services: &Services, rows: i64) -> Outcome {
    let started = Instant::now();
    let mut fleet = services.fleet().await;
    common::create_users(&fleet.warehouse().await, rows).await;
    fleet.apply_ok(&common::users_spec(&fleet, 20_000));
    start_roles(&mut fleet);
    // Rows stamped now() and committed up to half a second later, inserted and updated
    // while runs plan and read.
    let url = fleet.warehouse_url();
    let stop = tokio_util::sync::CancellationToken::new();
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut client = common::connect(&url).await;
            let mut next_id = 10_000_000i64;
            let mut written = 0i64;
            while !stop.is_cancelled() {
                let hold = rand::rng().random_range(0..500);
                let update = rand::rng().random_range(1..rows);
                let tx = client.transaction().await.unwrap();
                tx.execute(
                    "INSERT INTO public.users SELECT g, 'user-' || g, 'Late ' || g, 1, date '2000-01-01', now()
                       FROM generate_series($1::int8, $1::int8 + 9) g",
                    &[&next_id],
                )
                .await
                .unwrap();
                tx.execute(
                    "UPDATE public.users SET first_name = 'Changed', updated_at = now() WHERE id = $1",
                    &[&update],
                )
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(hold)).await;
                tx.commit().await.unwrap();
                next_id += 10;
                written += 11;
            }
            written
        })
    };
    // Runs one after another for a while, so many plan and read while rows commit.
    let writing = Instant::now();
    let mut runs = 0;
    while runs < 3 || (writing.elapsed() < Duration::from_secs(10) && runs < 20) {
        let run = fleet.request_run("acme", "users");
        succeeds(&fleet, &run).await;
        runs += 1;
    }
    stop.cancel();
    let written = writer.await.unwrap();
    assert!(written > 0);
    // Past the settle lag, one more run catches up with everything committed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let last = fleet.request_run("acme", "users");
    succeeds(&fleet, &last).await;
    profiles_outcome(
        fleet,
        &services.broker.url(),
        0,
        "a writer committing at the watermark",
        started,
    )
    .await
}

async fn rows_from_the_future(services: &Services, rows: i64) -> Outcome {
    let started = Instant::now();
    let mut fleet = services.fleet().await;
    let warehouse = fleet.warehouse().await;
    common::create_users(&warehouse, rows).await;
    warehouse
        .batch_execute(
            "INSERT INTO public.users SELECT g, 'user-' || g, 'Future ' || g, 1, date '2000-01-01',
                    now() + interval '10 seconds'
               FROM generate_series(20000001, 20000100) g",
        )
        .await
        .unwrap();
    fleet.apply_ok(&common::users_spec(&fleet, 20_000));
    start_roles(&mut fleet);
    let run = fleet.request_run("acme", "users");
    succeeds(&fleet, &run).await;
    let held: i64 = fleet
        .control()
        .await
        .query_one(
            "SELECT held_back_future FROM control.runs WHERE id = $1::text::uuid",
            &[&run],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 100, "the future rows are reported held back");
    let (_, lost, _) = profile_losses(&fleet).await;
    assert_eq!(lost, 100, "and not loaded yet");
    tokio::time::sleep(Duration::from_secs(12)).await;
    let later = fleet.request_run("acme", "users");
    succeeds(&fleet, &later).await;
    profiles_outcome(
        fleet,
        &services.broker.url(),
        0,
        "rows stamped in the future",
        started,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_lost_or_duplicated_whatever_breaks() {
    let profiles = size("CHAOS_PROFILES", 500_000);
    let events = size("CHAOS_EVENTS", 300_000);
    let mut services = Services {
        postgres: PrivatePostgres::start(),
        broker: PrivateBroker::start(),
    };
    let outcomes = vec![
        processes_killed(&services, profiles).await,
        events_with_kills(&services, events).await,
        through_an_outage(
            services.urls(),
            profiles / 5,
            "RabbitMQ restarted mid-run",
            || {
                services.broker.stop();
                std::thread::sleep(Duration::from_secs(3));
                services.broker.restart();
            },
        )
        .await,
        through_an_outage(
            services.urls(),
            profiles / 5,
            "PostgreSQL restarted mid-run",
            || {
                services.postgres.stop();
                std::thread::sleep(Duration::from_secs(2));
                services.postgres.restart();
            },
        )
        .await,
        poisoned_chunk(&services, profiles / 10).await,
        writer_at_the_watermark(&services, profiles / 10).await,
        rows_from_the_future(&services, profiles / 50).await,
    ];
    println!("| scenario | rows | lost | duplicated | time (s) |\n|---|---|---|---|---|");
    for o in &outcomes {
        println!(
            "| {} | {} | {} | {} | {:.0} |",
            o.scenario, o.rows, o.lost, o.duplicated, o.seconds
        );
    }
    for o in &outcomes {
        assert_eq!((o.lost, o.duplicated), (0, 0), "{}", o.scenario);
    }
}
