//! Several imports feeding one profile: each property is as fresh as the row that set it, so
//! no import's rows are dropped because another import's are newer; the order runs and chunks
//! arrive in never changes the store; stale values are counted; an identity that names
//! another profile is reported and never moved.

mod common;

use common::Fleet;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_postgres::Client;

/// `public.crm` (first names, stamped `crm_at`) and `public.loyalty` (points, stamped two
/// days earlier) over the same `profiles` people.
async fn create_crm_and_loyalty(warehouse: &Client, profiles: i64) {
    warehouse
        .batch_execute(
            "CREATE TABLE public.crm (id bigint PRIMARY KEY, ext text NOT NULL, first_name text,
                                      updated_at timestamptz NOT NULL);
             CREATE TABLE public.loyalty (id bigint PRIMARY KEY, ext text NOT NULL, points int,
                                          updated_at timestamptz NOT NULL);",
        )
        .await
        .unwrap();
    warehouse
        .execute(
            "INSERT INTO public.crm
             SELECT g, 'user-' || g, 'Name ' || g,
                    timestamptz '2024-06-01 00:00:00+00' + g * interval '1 second'
               FROM generate_series(1, $1::int8) g",
            &[&profiles],
        )
        .await
        .unwrap();
    warehouse
        .execute(
            "INSERT INTO public.loyalty
             SELECT g, 'user-' || g, g % 500,
                    timestamptz '2024-05-30 00:00:00+00' + g * interval '1 second'
               FROM generate_series(1, $1::int8) g",
            &[&profiles],
        )
        .await
        .unwrap();
}

/// A profiles import of `public.{name}` keyed by `id`, named by `ext`, with the given YAML
/// lines (properties and the rest, indented by four spaces).
fn profile_import(name: &str, lines: &str) -> String {
    format!(
        "  - name: {name}
    connection: wh
    source: {{ table: public.{name} }}
    data_type: profiles
    key: id
    watermark: updated_at
    identity: {{ external_id: ext }}
    chunk_rows: 2500
    settle_lag: 1s
{lines}"
    )
}

/// A spec of workspace `workspace` with the CRM and loyalty imports.
fn crm_and_loyalty_spec(fleet: &Fleet, workspace: &str) -> String {
    format!(
        "workspace: {workspace}
connections:
  - name: wh
    kind: postgres
    url: {url}
imports:
{crm}{loyalty}",
        url = fleet.warehouse_url(),
        crm = profile_import(
            "crm",
            "    properties:
      first_name: { column: first_name, type: string }
    constants: { source_crm: true }
"
        ),
        loyalty = profile_import(
            "loyalty",
            "    properties:
      points: { column: points, type: integer }
"
        ),
    )
}

/// `sluice profiles export` of a workspace with the store's own ids left out, ordered by the
/// external id: what two stores fed the same rows must agree on.
fn export_without_ids(fleet: &Fleet, workspace: &str) -> String {
    let out = fleet.sluice(&["profiles", "export", "--workspace", workspace]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: BTreeMap<String, String> = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let mut profile: serde_json::Value = serde_json::from_str(line).unwrap();
        profile.as_object_mut().unwrap().remove("profile_id");
        let ext = profile["identities"]["external_id"]
            .as_str()
            .unwrap()
            .to_string();
        lines.insert(ext, profile.to_string());
    }
    lines.into_values().collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn two_imports_keep_both_their_properties_in_either_order() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_crm_and_loyalty(&warehouse, 20_000).await;
    fleet.apply_ok(&crm_and_loyalty_spec(&fleet, "acme"));
    fleet.apply_ok(&crm_and_loyalty_spec(&fleet, "beta"));
    fleet.start("all", &[]);

    // acme: the newer CRM first, then loyalty rows two days older.
    let crm = fleet.run("acme", "crm");
    assert_eq!(crm["profiles_created"], 20_000, "{crm}");
    let loyalty = fleet.run("acme", "loyalty");
    assert_eq!(loyalty["status"], "succeeded", "{loyalty}");
    assert_eq!(loyalty["profiles_updated"], 20_000, "{loyalty}");
    assert_eq!(loyalty["profiles_unchanged"], 0, "{loyalty}");
    assert_eq!(loyalty["properties_stale"], 0, "{loyalty}");

    // beta: the other order.
    let loyalty = fleet.run("beta", "loyalty");
    assert_eq!(loyalty["profiles_created"], 20_000, "{loyalty}");
    let crm = fleet.run("beta", "crm");
    assert_eq!(crm["profiles_updated"], 20_000, "{crm}");
    assert_eq!(crm["properties_stale"], 0, "{crm}");

    let control = fleet.control().await;
    let complete: i64 = control
        .query_one(
            "SELECT count(*) FROM profile_store.profiles
              WHERE properties ? 'first_name' AND properties ? 'points'
                AND properties ? 'source_crm'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        complete, 40_000,
        "every profile carries both imports' properties"
    );
    let (acme, beta) = (
        export_without_ids(&fleet, "acme"),
        export_without_ids(&fleet, "beta"),
    );
    assert_eq!(acme.lines().count(), 20_000);
    assert!(acme == beta, "the order of the imports changed the store");

    // Rerunning either import changes nothing and finds nothing stale.
    for import in ["crm", "loyalty"] {
        let again = fleet.run("acme", import);
        assert_eq!(again["rows_read"], 0, "{again}");
    }
    fleet.cleanup().await;
}

/// Two imports writing `tier` for the same people: (profile, import) → (updated_at offset in
/// seconds, value). Offsets interleave, and one profile in ten has both rows at one instant
/// (the import created later wins the tie).
fn tier_rows(profiles: i64, import: i64) -> Vec<(i64, i64, String)> {
    (1..=profiles)
        .map(|g| {
            let offset = if g % 10 == 0 {
                g % 600
            } else {
                (g * (7 + 6 * import)) % 600
            };
            (
                g,
                offset,
                format!("tier-{import}-{}", (g * 31 + import) % 7),
            )
        })
        .collect()
}

async fn write_tiers(warehouse: &Client, table: &str, rows: &[(i64, i64, String)], base: &str) {
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let offsets: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let tiers: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    warehouse
        .execute(
            &format!(
                "INSERT INTO public.{table} (id, ext, tier, updated_at)
                 SELECT id, 'user-' || id, tier, timestamptz '{base}' + o * interval '1 second'
                   FROM unnest($1::int8[], $2::int8[], $3::text[]) AS x(id, o, tier)
                 ON CONFLICT (id) DO UPDATE SET tier = EXCLUDED.tier, updated_at = EXCLUDED.updated_at"
            ),
            &[&ids, &offsets, &tiers],
        )
        .await
        .unwrap();
}

/// The tier each profile must hold: the value of the newest row, the later import on a tie.
fn expected_tiers(
    first: &[(i64, i64, String)],
    second: &[(i64, i64, String)],
) -> BTreeMap<String, String> {
    first
        .iter()
        .zip(second)
        .map(|(a, b)| {
            let winner = if b.1 >= a.1 { &b.2 } else { &a.2 };
            (format!("user-{}", a.0), winner.clone())
        })
        .collect()
}

async fn stored_tiers(control: &Client) -> BTreeMap<String, String> {
    control
        .query(
            "SELECT i.value, p.properties->>'tier' FROM profile_store.profiles p
               JOIN profile_store.identities i USING (workspace_id, profile_id)
              WHERE i.kind = 'external_id'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get::<_, Option<String>>(1).unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_newest_row_wins_each_property_whatever_order_chunks_arrive_in() {
    const PROFILES: i64 = 3_000;
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    warehouse
        .batch_execute(
            "CREATE TABLE public.tier_a (id bigint PRIMARY KEY, ext text, tier text, updated_at timestamptz NOT NULL);
             CREATE TABLE public.tier_b (id bigint PRIMARY KEY, ext text, tier text, updated_at timestamptz NOT NULL);",
        )
        .await
        .unwrap();
    let import = |name: &str| {
        profile_import(
            name,
            "    properties:
      tier: { column: tier, type: string }
",
        )
        .replace("chunk_rows: 2500", "chunk_rows: 150")
    };
    fleet.apply_ok(&fleet.spec(&format!("{}{}", import("tier_a"), import("tier_b"))));
    // Several loaders take the chunks, so they land in no particular order.
    fleet.start("all", &["--concurrency", "4"]);
    fleet.start("loader", &["--concurrency", "4"]);
    fleet.start("loader", &["--concurrency", "4"]);

    let (a, b) = (tier_rows(PROFILES, 1), tier_rows(PROFILES, 2));
    write_tiers(&warehouse, "tier_a", &a, "2024-01-01 00:00:00+00").await;
    write_tiers(&warehouse, "tier_b", &b, "2024-01-01 00:00:00+00").await;
    let first = fleet.run("acme", "tier_a");
    assert_eq!(first["profiles_created"], PROFILES, "{first}");
    assert_eq!(first["properties_stale"], 0, "{first}");
    // A dry run first: its sample marks the values that would be stale.
    let dry = fleet.run_with("acme", "tier_b", &["--dry-run"]);
    let sample = dry["sample"].as_array().expect("a dry run has a sample");
    assert!(!sample.is_empty(), "{dry}");
    for row in sample {
        let id: usize = row["row_key"].as_str().unwrap().parse().unwrap();
        let loses = a[id - 1].1 > b[id - 1].1;
        let expected = if loses {
            serde_json::json!(["tier"])
        } else {
            serde_json::json!([])
        };
        assert_eq!(row["stale_properties"], expected, "{row}");
        assert_eq!(row["outcome"] == "stale", loses, "{row}");
    }
    let second = fleet.run("acme", "tier_b");
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(second["properties_stale"], dry["properties_stale"], "{dry}");
    let losing = a.iter().zip(&b).filter(|(a, b)| a.1 > b.1).count();
    assert!(losing > PROFILES as usize / 4, "the data interleaves");
    assert_eq!(second["properties_stale"], losing as i64, "{second}");
    let control = fleet.control().await;
    assert_eq!(stored_tiers(&control).await, expected_tiers(&a, &b));

    // Both sources change again, each run with the other's chunks in flight.
    let (a, b) = (tier_rows(PROFILES, 3), tier_rows(PROFILES, 4));
    let shift = |rows: Vec<(i64, i64, String)>, by: i64| -> Vec<(i64, i64, String)> {
        rows.into_iter()
            .map(|(g, o, t)| {
                (
                    g,
                    o + by,
                    t.replace("tier-3", "late-a").replace("tier-4", "late-b"),
                )
            })
            .collect()
    };
    let (a, b) = (shift(a, 1_000), shift(b, 1_000));
    write_tiers(&warehouse, "tier_a", &a, "2024-01-01 00:00:00+00").await;
    write_tiers(&warehouse, "tier_b", &b, "2024-01-01 00:00:00+00").await;
    let runs = [
        fleet.request_run("acme", "tier_a"),
        fleet.request_run("acme", "tier_b"),
    ];
    for run in &runs {
        let status = fleet.wait_for_run(run, Duration::from_secs(180)).await;
        assert_eq!(status, "succeeded", "run {run}");
    }
    assert_eq!(stored_tiers(&control).await, expected_tiers(&a, &b));
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_naming_two_profiles_is_applied_by_precedence_reported_and_moves_no_identity() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    warehouse
        .batch_execute(
            "CREATE TABLE public.accounts (id bigint PRIMARY KEY, ext text, uid text, plan text,
                                           updated_at timestamptz NOT NULL);
             INSERT INTO public.accounts VALUES
                (1, 'crm-1', NULL, 'free', '2024-01-01'),
                (2, NULL, 'app-2', 'pro', '2024-01-01');",
        )
        .await
        .unwrap();
    let spec = fleet.spec(
        "  - name: accounts
    connection: wh
    source: { table: public.accounts }
    data_type: profiles
    key: id
    watermark: updated_at
    identity: { identity: uid, external_id: ext }
    properties:
      plan: { column: plan, type: string }
    settle_lag: 1s
",
    );
    fleet.apply_ok(&spec);
    fleet.start("all", &[]);
    let first = fleet.run("acme", "accounts");
    assert_eq!(first["profiles_created"], 2, "{first}");
    let control = fleet.control().await;
    let owner = |kind: &'static str, value: &'static str| {
        let control = &control;
        async move {
            control
                .query_one(
                    "SELECT profile_id FROM profile_store.identities WHERE kind = $1 AND value = $2",
                    &[&kind, &value],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let (crm_profile, app_profile) = (
        owner("external_id", "crm-1").await,
        owner("identity", "app-2").await,
    );
    assert_ne!(crm_profile, app_profile);

    // One row now carries both: its identity (first in precedence) names the app profile,
    // its external id the CRM profile.
    warehouse
        .batch_execute(
            "INSERT INTO public.accounts VALUES (3, 'crm-1', 'app-2', 'enterprise', '2024-02-01')",
        )
        .await
        .unwrap();
    let second = fleet.run("acme", "accounts");
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(second["identities_conflicting"], 1, "{second}");
    assert_eq!(
        second["rows_rejected"], 0,
        "a conflict is not a rejection: {second}"
    );
    assert_eq!(second["profiles_updated"], 1, "{second}");
    let plan = |profile: i64| {
        let control = &control;
        async move {
            control
                .query_one(
                    "SELECT properties->>'plan' FROM profile_store.profiles WHERE profile_id = $1",
                    &[&profile],
                )
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    assert_eq!(
        plan(app_profile).await,
        "enterprise",
        "applied by precedence"
    );
    assert_eq!(plan(crm_profile).await, "free");
    assert_eq!(
        owner("external_id", "crm-1").await,
        crm_profile,
        "the identity stays where it was"
    );
    let identities: i64 = control
        .query_one("SELECT count(*) FROM profile_store.identities", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(identities, 2, "no identity was added or moved");

    let run = second["run_id"].as_str().unwrap();
    let out = fleet.sluice(&["runs", "errors", run]);
    let errors = String::from_utf8_lossy(&out.stdout);
    assert!(errors.contains("identity_conflict"), "{errors}");
    for needle in [
        format!("profile {crm_profile}"),
        format!("profile {app_profile}"),
        "crm-1".to_string(),
        "app-2".to_string(),
    ] {
        assert!(errors.contains(&needle), "{needle} in {errors}");
    }
    fleet.cleanup().await;
}

/// The mirror import's properties of one profile, by external id.
async fn member_properties(control: &Client) -> BTreeMap<String, serde_json::Value> {
    control
        .query(
            "SELECT i.value, p.properties FROM profile_store.profiles p
               JOIN profile_store.identities i USING (workspace_id, profile_id)
              WHERE i.kind = 'external_id'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_import_unsets_its_own_properties_on_rows_gone_from_the_source() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    create_crm_and_loyalty(&warehouse, 10_000).await;
    warehouse
        .batch_execute(
            "CREATE TABLE public.members (id bigint PRIMARY KEY, ext text NOT NULL, segment text,
                                          score int, updated_at timestamptz NOT NULL);
             INSERT INTO public.members
             SELECT g, 'user-' || g, 'vip', g % 100, timestamptz '2024-07-01' + g * interval '1 second'
               FROM generate_series(1, 10000) g;",
        )
        .await
        .unwrap();
    let members = profile_import(
        "members",
        "    removals: unset
    properties:
      segment: { column: segment, type: string }
      score: { column: score, type: integer }
    constants: { in_segment: true }
",
    );
    let spec = crm_and_loyalty_spec(&fleet, "acme");
    fleet.apply_ok(&format!("{spec}{members}"));

    // Removals only mirror profiles.
    let events = members
        .replace("name: members", "name: member_events")
        .replace("data_type: profiles", "data_type: events")
        .replace(
            "    removals: unset\n",
            "    removals: unset\n    event_name: { value: Joined }\n    event_time: { column: updated_at }\n",
        );
    let refused = fleet.apply(&format!("{spec}{events}"));
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("imports[2].removals")
            && message.contains("events imports do not take removals"),
        "{message}"
    );

    fleet.start("all", &[]);
    assert_eq!(fleet.run("acme", "crm")["profiles_created"], 10_000);
    let first = fleet.run("acme", "members");
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["profiles_updated"], 10_000, "{first}");
    assert_eq!(
        first["rows_read"], 10_000,
        "the key chunk's keys are not rows read: {first}"
    );
    assert_eq!(first["profiles_removed_from_source"], 0, "{first}");

    warehouse
        .batch_execute(
            "DELETE FROM public.members WHERE id <= 1000;
             UPDATE public.members SET score = score + 1000, updated_at = updated_at + interval '30 days'
              WHERE id BETWEEN 1001 AND 1500;",
        )
        .await
        .unwrap();
    let control = fleet.control().await;
    let before = member_properties(&control).await;

    // A run that fails in between changes nothing and keeps the previous key set.
    warehouse
        .batch_execute("ALTER TABLE public.members RENAME TO members_away")
        .await
        .unwrap();
    let failed = fleet.run("acme", "members");
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(member_properties(&control).await, before);
    warehouse
        .batch_execute("ALTER TABLE public.members_away RENAME TO members")
        .await
        .unwrap();

    let dry = fleet.run_with("acme", "members", &["--dry-run"]);
    assert_eq!(dry["profiles_removed_from_source"], 1_000, "{dry}");
    assert_eq!(
        member_properties(&control).await,
        before,
        "a dry run unsets nothing"
    );

    let second = fleet.run("acme", "members");
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(second["profiles_removed_from_source"], 1_000, "{second}");
    assert_eq!(second["profiles_updated"], 500, "{second}");
    let after = member_properties(&control).await;
    assert_eq!(after.len(), 10_000);
    for (ext, properties) in &after {
        let id: i64 = ext.trim_start_matches("user-").parse().unwrap();
        let old = &before[ext];
        assert_eq!(
            properties["first_name"], old["first_name"],
            "{ext}: the CRM's stays"
        );
        if id <= 1_000 {
            for gone in ["segment", "score", "in_segment"] {
                assert!(properties.get(gone).is_none(), "{ext}: {properties}");
            }
        } else if id <= 1_500 {
            assert_eq!(properties["score"], id % 100 + 1_000, "{ext}: {properties}");
            assert_eq!(properties["in_segment"], true, "{ext}: {properties}");
        } else {
            assert_eq!(properties, old, "{ext}");
        }
    }

    // The next run compares with the new key set: nothing more to remove.
    let third = fleet.run("acme", "members");
    assert_eq!(third["profiles_removed_from_source"], 0, "{third}");
    assert_eq!(third["rows_read"], 0, "{third}");
    assert_eq!(
        key_sets(&fleet.data_dir),
        1,
        "only the last successful run's key set is kept"
    );
    fleet.cleanup().await;
}

/// The key set objects under a fleet's data directory.
fn key_sets(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .map(|path| match path.is_dir() {
            true if path.ends_with("keys") => std::fs::read_dir(&path).unwrap().count(),
            true => key_sets(&path),
            false => 0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_import_whose_key_repeats_fails_naming_the_key() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    warehouse
        .batch_execute(
            "CREATE TABLE public.visits (id bigint PRIMARY KEY, visitor text NOT NULL,
                                         page text, updated_at timestamptz NOT NULL);
             INSERT INTO public.visits VALUES
                (1, 'v1', 'home', '2024-01-01'), (2, 'v2', 'home', '2024-01-02'),
                (3, 'v1', 'cart', '2024-01-03');",
        )
        .await
        .unwrap();
    // The visitor is no key of the table: it names two rows.
    fleet.apply_ok(&fleet.spec(
        "  - name: visitors
    connection: wh
    source: { table: public.visits }
    data_type: profiles
    key: visitor
    watermark: updated_at
    identity: { external_id: visitor }
    removals: unset
    properties:
      page: { column: page, type: string }
    settle_lag: 1s
",
    ));
    fleet.start("all", &[]);
    let run = fleet.run("acme", "visitors");
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .contains("removals need a key that names one row: key v1 names 2 rows"),
        "{run}"
    );
    fleet.cleanup().await;
}
