//! The store's probes keep their index plans when the statistics are stale: a workspace that
//! grew after the last analysis (the statistics call it empty) is still probed by identity
//! through the identities' key and by email through the email index, never by walking the
//! workspace and filtering, and a profile's identities are still found by its id.

use sluice_loader::resolve::{resolve_statement, CONFLICTS, CREATE_STAGE};
use sluice_proto::IdentityKind;
use tokio_postgres::Client;

mod common;

use common::{connect, store};

/// Profiles `from..to` of `workspace`, each with an email and two identities.
async fn add_profiles(client: &Client, workspace: i64, from: i64, to: i64) {
    client
        .execute(
            "WITH p AS (
                INSERT INTO profile_store.profiles (workspace_id, profile_id, email, phone)
                SELECT $1, g, 'u' || g || '@example.com', '+1555' || g
                  FROM generate_series($2::int8, $3::int8) g
                RETURNING profile_id)
             INSERT INTO profile_store.identities (workspace_id, kind, value, profile_id)
             SELECT $1, k, 'u' || profile_id, profile_id
               FROM p CROSS JOIN (VALUES ('identity'), ('external_id')) v(k)",
            &[&workspace, &from, &(to - 1)],
        )
        .await
        .unwrap();
}

/// The plan `statement` gets with `params`, as text.
async fn plan(
    client: &Client,
    statement: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> String {
    client
        .query(&format!("EXPLAIN {statement}"), params)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `plan` without the subtree of its CTE `name`.
fn without_cte(plan: &str, name: &str) -> String {
    let mut kept = Vec::new();
    let mut inside: Option<usize> = None;
    for line in plan.lines() {
        let indent = line.len() - line.trim_start().len();
        match inside {
            Some(depth) if indent > depth => continue,
            _ => inside = None,
        }
        if line.trim_start() == format!("CTE {name}") {
            inside = Some(indent);
            continue;
        }
        kept.push(line);
    }
    kept.join("\n")
}

/// Index scans in `plan` whose only index condition is the workspace: a walk of the
/// workspace filtered row by row.
fn workspace_walks(plan: &str) -> Vec<String> {
    let lines: Vec<&str> = plan.lines().collect();
    lines
        .windows(2)
        .filter(|w| {
            let condition = w[1].trim();
            w[0].contains("Index Scan")
                && condition.starts_with("Index Cond: (workspace_id = ")
                && !condition.contains(" AND ")
        })
        .map(|w| w[0].trim().to_string())
        .collect()
}

#[tokio::test]
async fn probes_keep_their_index_plans_in_a_workspace_the_statistics_call_empty() {
    let store = store("sluice_loader_plans").await;
    let client = connect(&store.url).await;
    client
        .batch_execute(
            "ALTER TABLE profile_store.profiles SET (autovacuum_enabled = false);
             ALTER TABLE profile_store.identities SET (autovacuum_enabled = false);",
        )
        .await
        .unwrap();
    // An established workspace, analyzed; then a new one grows past it unseen.
    add_profiles(&client, 1, 1, 30_001).await;
    client
        .batch_execute("ANALYZE profile_store.profiles; ANALYZE profile_store.identities")
        .await
        .unwrap();
    add_profiles(&client, 2, 30_001, 90_001).await;
    client
        .batch_execute(&format!("BEGIN; {CREATE_STAGE}"))
        .await
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO sluice_rows (key, updated_at, identity, external_id, email, props, unset,
                                      names, names_hash)
             SELECT g::text, now(), 'u' || g, 'u' || g, 'u' || g || '@example.com',
                    '{}', '{}', '{}', 0
               FROM generate_series(60000, 60999) g;
             ANALYZE sluice_rows",
        )
        .await
        .unwrap();

    let workspace = 2_i64;
    for precedence in [
        vec![IdentityKind::Identity, IdentityKind::Email],
        vec![IdentityKind::ExternalId, IdentityKind::Phone],
        vec![IdentityKind::Email, IdentityKind::Identity],
    ] {
        // The check that may skip the probes reads the profiles' key once, by design.
        let resolving = without_cte(
            &plan(
                &client,
                &resolve_statement(&precedence),
                &[&workspace, &true, &true, &7_i64, &true],
            )
            .await,
            "fresh",
        );
        assert_eq!(
            workspace_walks(&resolving),
            Vec::<String>::new(),
            "{precedence:?} resolves by walking the workspace:\n{resolving}"
        );
        assert!(
            !resolving.contains("identities_by_profile"),
            "{precedence:?} probes identities by profile:\n{resolving}"
        );
        assert!(
            resolving.contains("identities_pkey"),
            "{precedence:?}:\n{resolving}"
        );
        assert!(
            !resolving.contains("profiles_pkey"),
            "{precedence:?} probes email or phone on the profiles' key:\n{resolving}"
        );
    }

    client
        .batch_execute("INSERT INTO sluice_stage SELECT *, 1, NULL, NULL, false FROM sluice_rows")
        .await
        .unwrap();
    let conflicts = plan(&client, CONFLICTS, &[&workspace]).await;
    assert_eq!(
        workspace_walks(&conflicts),
        Vec::<String>::new(),
        "{conflicts}"
    );

    // What deleting a profile runs on its identities (the foreign key's cascade, the
    // deletes' own statement and the API's listing) names the profile in the index condition.
    let by_profile = plan(
        &client,
        "SELECT kind, value FROM profile_store.identities WHERE workspace_id = $1 AND profile_id = $2",
        &[&workspace, &60_500_i64],
    )
    .await;
    assert!(
        by_profile.contains("identities_by_profile")
            && by_profile.contains("Index Cond: ((profile_id = "),
        "{by_profile}"
    );
    client.batch_execute("ROLLBACK").await.unwrap();
}
