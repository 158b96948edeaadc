//! Sync-level failures: a chunk whose source errors on every attempt is dead-lettered, its run
//! fails with the source's error and the watermark stays; once the cause is gone, the next run
//! reads the same rows again and completes.

mod common;

use common::{assert_store_equals_source, create_users, Fleet, AMQP};
use sluice_proto::topology::QueueRole;

fn failing_spec(fleet: &Fleet) -> String {
    format!(
        r#"workspace: acme
connections:
  - {{ name: wh, kind: postgres, url: "{}" }}
imports:
  - name: users
    connection: wh
    source: {{ query: "SELECT u.*, 1 / (SELECT d FROM divisor) AS one FROM public.users u" }}
    data_type: profiles
    key: id
    watermark: updated_at
    identity: {{ external_id: external_id }}
    properties:
      first_name: {{ column: first_name, type: string }}
      points: {{ column: loyalty_points, type: integer }}
      birthday: {{ column: birthday, type: date }}
      one: {{ column: one, type: integer }}
    chunk_rows: 500
    settle_lag: 1s
"#,
        fleet.warehouse_url()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poisoned_chunk_fails_the_run_and_the_next_run_rereads_its_rows() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_users(&warehouse, 1_000).await;
    warehouse
        .batch_execute("CREATE TABLE divisor (d integer); INSERT INTO divisor VALUES (0);")
        .await
        .unwrap();
    let applied = fleet.apply(&failing_spec(&fleet));
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    fleet.start("all", &["--max-attempts", "2"]);

    let failed = fleet.run("acme", "users");
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error_code"], "source_query", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("division by zero") && error.contains("after 2 attempts"),
        "{error}"
    );

    let control = fleet.control().await;
    let watermarks: i64 = control
        .query_one("SELECT count(*) FROM control.watermarks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(watermarks, 0, "a failed run does not move the watermark");
    let topology = sluice_proto::Topology::new(format!("sluice_{}", fleet.id));
    let bus = sluice_proto::Bus::connect(AMQP, &topology).await.unwrap();
    let dead = bus
        .queue_depth(&topology.dead_letter_queue(QueueRole::Extract))
        .await
        .unwrap();
    assert!(
        dead >= 1,
        "the poisoned chunk task is in the dead-letter queue"
    );
    bus.close().await;

    warehouse
        .batch_execute("UPDATE divisor SET d = 1")
        .await
        .unwrap();
    let recovered = fleet.run("acme", "users");
    assert_eq!(recovered["status"], "succeeded", "{recovered}");
    assert_eq!(
        recovered["rows_read"], 1_000,
        "the same rows are read again"
    );
    assert_store_equals_source(&fleet).await;
    fleet.cleanup().await;
}
