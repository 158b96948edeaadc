//! Sealed secrets: the master key rotates while the fleet runs — every stored secret is sealed
//! again under the new key, a run going on meanwhile succeeds, and afterwards the old key is no
//! longer needed — and a whole import logged at trace level never writes a secret.

mod common;

use common::Fleet;
use sluice_proto::secrets::MasterKey;
use std::time::Duration;

const PASSWORD: &str = "pa55-never-in-a-log";
const SIGNING_SECRET: &str = "whsec-0123456789abcdef";
const DESTINATION_KEY: &str = "braze-key-never-in-a-log";

/// Every `.log` file of the fleet, concatenated.
fn logs(fleet: &Fleet) -> String {
    let mut logs = String::new();
    for entry in std::fs::read_dir(&fleet.data_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            logs.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    logs
}

/// The key id every sealed value at rest names.
async fn sealed_key_ids(fleet: &Fleet) -> Vec<String> {
    fleet
        .control()
        .await
        .query(
            "SELECT credentials->>'key_id' FROM control.connections
             UNION ALL SELECT secret->>'key_id' FROM control.notification_targets
              WHERE secret IS NOT NULL
             UNION ALL SELECT credentials->>'key_id' FROM control.destinations",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_master_key_rotates_under_a_running_fleet_and_no_log_line_holds_a_secret() {
    let mut fleet = Fleet::new().await;
    common::create_users(&fleet.warehouse().await, 3_000).await;
    // Trust authentication ignores the password, so it is there only to be kept secret.
    let spec = common::users_spec(&fleet, 500)
        .replace(
            "postgres://postgres@",
            &format!("postgres://postgres:{PASSWORD}@"),
        )
        .replace(
            "chunk_rows: 500",
            &format!(
                "chunk_rows: 500\n    notify: {{ webhooks: [{{ url: \"http://127.0.0.1:9/hook\", secret: \"{SIGNING_SECRET}\" }}] }}"
            ),
        );
    // A destination no import delivers to: its credentials are sealed and rotated too.
    let spec = format!(
        "{spec}destinations:\n  - name: braze\n    kind: braze\n    url: https://rest.iad-01.braze.com\n    credentials: {{ api_key: {DESTINATION_KEY} }}\n"
    );
    fleet.apply_ok(&spec);
    let old = fleet.master_key().to_string();
    let old_id = MasterKey::from_hex(&old).unwrap().id().to_string();
    assert_eq!(sealed_key_ids(&fleet).await, vec![old_id.clone(); 3]);

    let generated = fleet.sluice(&["keys", "generate"]);
    let new = String::from_utf8(generated.stdout)
        .unwrap()
        .trim()
        .to_string();
    let new_id = MasterKey::from_hex(&new).unwrap().id().to_string();
    assert_ne!(new_id, old_id);

    // Every process holds the new key, and the old one for what it sealed.
    let rotating = [
        ("SLUICE_MASTER_KEY", new.as_str()),
        ("SLUICE_PREVIOUS_MASTER_KEYS", old.as_str()),
        ("SLUICE_LOG", "trace"),
    ];
    fleet.start_with_env("all", &[], &rotating);
    let run = fleet.request_run("acme", "users");
    let rotated = fleet.sluice_with_env(&["keys", "rotate"], &rotating);
    let said = String::from_utf8_lossy(&rotated.stdout);
    assert!(
        rotated.status.success() && said.contains("3 secrets sealed again"),
        "{said}{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert_eq!(
        fleet.wait_for_run(&run, Duration::from_secs(120)).await,
        "succeeded"
    );
    assert_eq!(sealed_key_ids(&fleet).await, vec![new_id.clone(); 3]);

    // A key that sealed nothing stored opens nothing: the rotation refuses and changes nothing.
    let refused = fleet.sluice_with_env(&["keys", "rotate"], &[("SLUICE_MASTER_KEY", &old)]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains("control.connections")
            && stderr.contains("SLUICE_PREVIOUS_MASTER_KEYS"),
        "{stderr}"
    );
    assert_eq!(sealed_key_ids(&fleet).await, vec![new_id.clone(); 3]);

    // The old key is no longer needed.
    fleet.kill("all");
    let rotated_only = [("SLUICE_MASTER_KEY", new.as_str()), ("SLUICE_LOG", "trace")];
    fleet.start_with_env("all", &[], &rotated_only);
    let tested = fleet.sluice_with_env(
        &["connections", "test", "wh", "--workspace", "acme"],
        &rotated_only,
    );
    assert!(
        tested.status.success(),
        "{}",
        String::from_utf8_lossy(&tested.stderr)
    );
    let again = fleet.request_run("acme", "users");
    assert_eq!(
        fleet.wait_for_run(&again, Duration::from_secs(120)).await,
        "succeeded"
    );
    common::assert_store_equals_source(&fleet).await;

    let logs = logs(&fleet);
    assert!(logs.contains("TRACE"), "the fleet logged at trace level");
    assert!(
        !logs.contains(PASSWORD),
        "a log line holds the warehouse password"
    );
    assert!(
        !logs.contains(SIGNING_SECRET) && !logs.contains(DESTINATION_KEY),
        "a log line holds the signing secret or a destination key"
    );
    assert!(
        !logs.contains(&new) && !logs.contains(&old),
        "a log line holds a master key"
    );
    fleet.cleanup().await;
}
