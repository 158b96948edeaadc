//! Stores split by workspace: a second PostgreSQL server registered as a store, a workspace
//! placed there explicitly and one placed by the fewest profiles, each import's rows written
//! to its workspace's store only, and the export and the API's look-up reading from there.

mod common;

use common::database::PrivatePostgres;
use common::{connect, Fleet};
use serde_json::Value;
use std::time::{Duration, Instant};

const DIGEST: &str = "SELECT count(*), count(DISTINCT p.workspace_id), md5(coalesce(string_agg(
        concat_ws('|', i.value, p.properties->>'first_name', p.properties->>'points'),
        E'\\n' ORDER BY i.value), ''))
   FROM profile_store.profiles p
   JOIN profile_store.identities i ON i.workspace_id = p.workspace_id AND i.profile_id = p.profile_id
  WHERE i.kind = 'external_id' AND p.workspace_id = (SELECT id FROM ws)";

/// (profiles of the workspace, workspaces in the store, digest) of one store.
async fn store_digest(store_url: &str, workspace_id: i64) -> (i64, i64, String) {
    let store = connect(store_url).await;
    let sql = format!("WITH ws(id) AS (SELECT {workspace_id}::int8) {DIGEST}");
    let row = store.query_one(&sql, &[]).await.unwrap();
    let everyone: i64 = store
        .query_one("SELECT count(*) FROM profile_store.profiles", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        everyone,
        row.get::<_, i64>(0),
        "the store holds profiles of another workspace"
    );
    (row.get(0), row.get(1), row.get(2))
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn workspace_id(fleet: &Fleet, name: &str) -> i64 {
    fleet
        .control()
        .await
        .query_one(
            "SELECT id FROM control.workspaces WHERE name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_workspace_lives_in_its_own_store() {
    let second = PrivatePostgres::start();
    let mut fleet = Fleet::new().await;
    let eu_url = format!("{}/store_{}", second.url(), fleet.id);
    common::create_users(&fleet.warehouse().await, 1_000).await;

    // Registering refuses the reserved name and a server that is not there, naming the field.
    let reserved = fleet.sluice(&["stores", "add", "default", "--url", &eu_url]);
    assert!(!reserved.status.success());
    assert!(String::from_utf8_lossy(&reserved.stderr).contains("NAME"));
    let unreachable = fleet.sluice(&[
        "stores",
        "add",
        "nowhere",
        "--url",
        &format!("postgres://postgres@127.0.0.1:{}/x", common::free_port()),
    ]);
    assert!(!unreachable.status.success());
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("--url"));
    ok(fleet.sluice(&["stores", "add", "eu", "--url", &eu_url]));

    // A workspace placed explicitly; an unknown store is refused with the list.
    let unknown = fleet.sluice(&["workspaces", "create", "globex", "--store", "mars"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("default, eu"));
    let created = ok(fleet.sluice(&["workspaces", "create", "globex", "--store", "eu"]));
    assert!(created.contains("in store eu"), "{created}");

    let globex = common::users_spec(&fleet, 300).replace("workspace: acme", "workspace: globex");
    fleet.apply_ok(&globex);
    let port = common::free_port();
    fleet.start("all", &["--http-addr", &format!("127.0.0.1:{port}")]);
    let run = fleet.run("globex", "users");
    assert_eq!(run["status"], "succeeded", "{run}");

    // Measured now: eu holds 1,000 profiles, the default store none, so a workspace created
    // without naming a store (here by its first token) goes to the default store.
    let listed: Value =
        serde_json::from_str(&ok(fleet.sluice(&["stores", "list", "--output", "json"]))).unwrap();
    let profiles = |listed: &Value, store: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == store)
            .map(|s| (s["workspaces"].as_i64(), s["profiles"].as_i64()))
            .unwrap()
    };
    assert_eq!(profiles(&listed, "eu"), (Some(1), Some(1_000)));
    assert_eq!(profiles(&listed, "default"), (Some(0), Some(0)));
    let acme_token = ok(fleet.sluice(&["tokens", "create", "--workspace", "acme", "--name", "t"]));
    let globex_token =
        ok(fleet.sluice(&["tokens", "create", "--workspace", "globex", "--name", "t"]));
    fleet.apply_ok(&common::users_spec(&fleet, 300));
    let run = fleet.run("acme", "users");
    assert_eq!(run["status"], "succeeded", "{run}");
    let workspaces: Value = serde_json::from_str(&ok(fleet.sluice(&[
        "workspaces",
        "list",
        "--output",
        "json",
    ])))
    .unwrap();
    let store_of = |name: &str| {
        workspaces
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == name)
            .map(|w| w["store"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(store_of("acme"), "default");
    assert_eq!(store_of("globex"), "eu");

    // Each store holds exactly its workspace's rows, equal to the source.
    let source = fleet
        .warehouse()
        .await
        .query_one(
            "SELECT count(*), md5(string_agg(concat_ws('|', external_id, first_name, loyalty_points::text),
                    E'\\n' ORDER BY external_id)) FROM public.users",
            &[],
        )
        .await
        .unwrap();
    let source: (i64, String) = (source.get(0), source.get(1));
    let (acme_id, globex_id) = (
        workspace_id(&fleet, "acme").await,
        workspace_id(&fleet, "globex").await,
    );
    let in_eu = store_digest(&eu_url, globex_id).await;
    let in_default = store_digest(&fleet.database_url(), acme_id).await;
    assert_eq!(
        (in_eu.0, in_eu.1, in_eu.2.clone()),
        (source.0, 1, source.1.clone())
    );
    assert_eq!(
        (in_default.0, in_default.1, in_default.2),
        (source.0, 1, source.1)
    );

    // The export and the API's look-up read the workspace's own store.
    let exported = ok(fleet.sluice(&["profiles", "export", "--workspace", "globex"]));
    assert_eq!(exported.lines().count(), 1_000);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let lookup = |token: String| {
        let request = http
            .get(format!("{base}/v1/profiles?kind=external_id&value=user-42"))
            .bearer_auth(token.trim().to_string());
        async move { request.send().await }
    };
    let found = loop {
        match lookup(globex_token.clone()).await {
            Ok(response) => break response,
            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("the API did not answer: {e}"),
        }
    };
    assert_eq!(found.status(), 200);
    let profile: Value = found.json().await.unwrap();
    assert_eq!(profile["properties"]["first_name"], "Name 42");
    let other = lookup(acme_token).await.unwrap();
    assert_eq!(other.status(), 200, "acme's own store answers for acme");
    fleet.cleanup().await;
    drop(second);
}
