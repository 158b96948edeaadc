//! A chunk whose rows provably match no profile skips the per-row probes. Every chunk here
//! is loaded twice: into one workspace probing every row, and into another taking the
//! shortcut where its checks allow; the checks must hold exactly where the test says (an
//! empty workspace, a range of new identities, a kind the store has none of) and fail
//! wherever a row could match, and both workspaces must end each chunk with the same
//! profiles and the same counts.

use chrono::Utc;
use sluice_loader::copy::Stager;
use sluice_loader::guessed::NewProfiles;
use sluice_loader::load::ChunkErrors;
use sluice_loader::profiles;
use sluice_loader::props::Props;
use sluice_loader::resolve::{fresh_query, resolve, Probes, Unmatched, CREATE_STAGE};
use sluice_loader::staging::StagedRow;
use sluice_proto::{IdentityKind, LoadStats, Mapping, PropertyType, Records};
use std::collections::BTreeSet;
use tokio_postgres::Client;

mod common;

use IdentityKind::{Alias, Email, ExternalId, Identity, Phone, ProfileId};

/// One source row: its identities (a profile reference names the profile holding that
/// external id) and one property.
#[derive(Default, Clone)]
struct Row {
    identity: Option<&'static str>,
    external_id: Option<String>,
    alias: Option<(&'static str, &'static str)>,
    email: Option<String>,
    phone: Option<&'static str>,
    profile_of: Option<&'static str>,
    tier: &'static str,
}

fn ext(external_id: &str, tier: &'static str) -> Row {
    Row {
        external_id: Some(external_id.to_string()),
        tier,
        ..Row::default()
    }
}

/// Rows with external ids `e-from..e-to` (two digits, so they sort as numbers) and emails.
fn people(from: u32, to: u32, tier: &'static str) -> Vec<Row> {
    (from..to)
        .map(|n| Row {
            email: Some(format!("p{n}@example.com")),
            ..ext(&format!("e-{n:02}"), tier)
        })
        .collect()
}

/// The first identity of `precedence` the row carries that may create a profile.
fn creating(row: &Row, precedence: &[IdentityKind]) -> (Option<String>, Option<String>) {
    for kind in precedence {
        let found = match kind {
            Identity => row
                .identity
                .map(|v| ("identity".to_string(), v.to_string())),
            ExternalId => row
                .external_id
                .clone()
                .map(|v| ("external_id".to_string(), v)),
            Alias => row.alias.map(|(k, v)| (k.to_string(), v.to_string())),
            Email => row.email.clone().map(|v| ("email".to_string(), v)),
            Phone => row.phone.map(|v| ("phone".to_string(), v.to_string())),
            ProfileId => None,
        };
        if let Some((k, v)) = found {
            return (Some(k), Some(v));
        }
    }
    (None, None)
}

/// What a load resolved and counted, comparable across the two ways.
type Counts = (Vec<String>, u64, u64, u64, u64, u64, u64, u64);

/// The import mapping each kind of `precedence` from a column, in that order.
fn mapping_of(precedence: &[IdentityKind]) -> Mapping {
    let columns: serde_json::Map<String, serde_json::Value> = precedence
        .iter()
        .flat_map(|kind| match kind {
            Alias => vec![("alias_name", "alias"), ("alias_label", "label")],
            Identity => vec![("identity", "identity")],
            ExternalId => vec![("external_id", "ext")],
            Email => vec![("email", "email")],
            Phone => vec![("phone", "phone")],
            ProfileId => vec![("profile_id", "profile")],
        })
        .map(|(field, column)| (field.to_string(), column.into()))
        .collect();
    serde_json::from_value(serde_json::json!({
        "identity": columns, "precedence": precedence, "properties": {}
    }))
    .unwrap()
}

/// How resolution left each staged row, without profile ids (which differ between
/// workspaces): its key, the identity that named its profile (and its value, unless that is
/// a profile id), whether it has one, and whether it was ambiguous, created a profile or was
/// superseded by a newer row.
async fn staged(tx: &tokio_postgres::Transaction<'_>) -> Vec<String> {
    tx.query(
        "SELECT concat_ws(' ', key, matched_kind,
                          CASE WHEN matched_kind <> 'profile_id' THEN matched_value END,
                          profile_id IS NOT NULL, ambiguous, created, superseded)
           FROM sluice_stage ORDER BY key",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// How a test chunk is resolved: with the probes a load's checks allow, or staged on the
/// guess that it matches nothing, as a loader stages a run's later chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Probing(Probes),
    Guessing,
}

/// Loads `rows` into `workspace` as import 1 of `precedence`, staged with the loader's own
/// COPY and resolved the `way` given; returns whether the chunk proved fresh before
/// resolution (with a guess: whether the guess held), and what it resolved and counted.
async fn load(
    client: &mut Client,
    workspace: i64,
    batch: u32,
    rows: &[Row],
    precedence: &[IdentityKind],
    way: Way,
) -> (bool, Counts) {
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(CREATE_STAGE).await.unwrap();
    let mut staged_rows = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        let profile_ref: Option<i64> = match row.profile_of {
            Some("none") => Some(999_999_999),
            Some(of) => Some(
                tx.query_one(
                    "SELECT profile_id FROM profile_store.identities
                      WHERE workspace_id = $1 AND kind = 'external_id' AND value = $2",
                    &[&workspace, &of],
                )
                .await
                .unwrap()
                .get(0),
            ),
            None => None,
        };
        let (create_kind, create_value) = creating(row, precedence);
        let mut props = Props::default();
        props.push("tier".into(), Some(PropertyType::String), row.tier);
        let (alias_kind, alias_name) = row
            .alias
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .unzip();
        staged_rows.push(StagedRow {
            key: format!("{batch}-{n:03}"),
            updated_at: Utc::now() + chrono::Duration::seconds(i64::from(batch)),
            identity: row.identity.map(str::to_string),
            external_id: row.external_id.clone(),
            alias_kind,
            alias_name,
            email: row.email.clone(),
            phone: row.phone.map(str::to_string),
            profile_ref,
            create_kind,
            create_value,
            props,
            ..StagedRow::default()
        });
    }
    let new = match way {
        Way::Guessing => Some(NewProfiles::reserve(&tx, staged_rows.len()).await.unwrap()),
        Way::Probing(_) => None,
    };
    let mut stager = Stager::open(&tx, &Records::Profiles, new).await.unwrap();
    for row in &staged_rows {
        stager.write(row).await.unwrap();
    }
    let new = stager.finish().await.unwrap();
    let (fresh, probes) = match (way, new) {
        (Way::Guessing, Some(new)) => {
            let held = new.create(&tx, (workspace, 1), true).await.unwrap();
            (held, (!held).then_some(Probes::WhenNeeded))
        }
        (Way::Probing(probes), _) => {
            let fresh: bool = tx
                .query_one(&fresh_query(precedence), &[&workspace])
                .await
                .unwrap()
                .get(0);
            (fresh, Some(probes))
        }
        (Way::Guessing, None) => unreachable!("a guessed chunk has new profiles"),
    };
    if let Some(probes) = probes {
        resolve(
            &tx,
            workspace,
            1,
            precedence,
            Unmatched::CreateWhole,
            probes,
        )
        .await
        .unwrap();
    }
    let staged = staged(&tx).await;
    let mapping = mapping_of(precedence);
    let mut stats = LoadStats::default();
    let mut errors = ChunkErrors::default();
    profiles::apply(
        &tx,
        (workspace, 1),
        &mapping,
        (false, false),
        &mut stats,
        &mut errors,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let counts = (
        staged,
        stats.profiles_created,
        stats.profiles_updated,
        stats.profiles_unchanged,
        stats.rows_skipped,
        stats.identities_ambiguous,
        stats.properties_stale,
        errors.conflicts.len() as u64,
    );
    (fresh, counts)
}

/// A workspace's profiles without their ids: identities, properties, email and phone.
async fn profiles_of(client: &Client, workspace: i64) -> BTreeSet<String> {
    client
        .query(
            "SELECT concat_ws(' ', (SELECT string_agg(kind || '=' || value, ',' ORDER BY kind, value)
                                      FROM profile_store.identities i
                                     WHERE i.workspace_id = p.workspace_id
                                       AND i.profile_id = p.profile_id),
                              p.properties::text, p.email, p.phone)
               FROM profile_store.profiles p WHERE p.workspace_id = $1",
            &[&workspace],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn chunks_proved_fresh_load_as_the_probes_would_and_only_they_skip_them() {
    let store = common::store(&format!("loader_fresh_chunks_{}", std::process::id())).await;
    let mut client = common::connect(&store.url).await;
    let (probing, shortcut) = (1_i64, 2_i64);
    let alias = |kind, name, tier| Row {
        alias: Some((kind, name)),
        tier,
        ..Row::default()
    };
    let cases: Vec<(&str, Vec<IdentityKind>, Vec<Row>, bool)> = vec![
        (
            "an empty workspace",
            vec![ExternalId, Email],
            people(10, 20, "a"),
            true,
        ),
        (
            "new external ids sorting after the store's",
            vec![ExternalId],
            people(20, 30, "b"),
            true,
        ),
        (
            "external ids partly held",
            vec![ExternalId],
            people(25, 35, "c"),
            false,
        ),
        (
            "new external ids around held ones",
            vec![ExternalId],
            vec![ext("e-05", "d"), ext("e-99", "d")],
            false,
        ),
        (
            "new external ids with emails the store holds",
            vec![ExternalId, Email],
            vec![Row {
                email: Some("p12@example.com".into()),
                ..ext("e-50", "e")
            }],
            false,
        ),
        (
            "new external ids, one of them on two rows",
            vec![ExternalId],
            vec![ext("e-60", "l"), ext("e-61", "l"), ext("e-60", "m")],
            true,
        ),
        (
            "a new external id beside a row naming no one",
            vec![ExternalId],
            vec![ext("e-70", "n"), Row::default()],
            true,
        ),
        (
            "a kind of identity the store has none of",
            vec![Identity],
            vec![Row {
                identity: Some("i-1"),
                tier: "f",
                ..Row::default()
            }],
            true,
        ),
        (
            "new aliases of one kind",
            vec![Alias],
            vec![alias("crm", "c-1", "g"), alias("crm", "c-2", "g")],
            true,
        ),
        (
            "aliases of two kinds, one of them held",
            vec![Alias],
            vec![alias("loyalty", "l-1", "h"), alias("crm", "c-2", "h")],
            false,
        ),
        (
            "a phone in a workspace with profiles",
            vec![Phone],
            vec![Row {
                phone: Some("+15550001"),
                tier: "i",
                ..Row::default()
            }],
            false,
        ),
        (
            "a profile id the store holds",
            vec![ProfileId],
            vec![Row {
                profile_of: Some("e-21"),
                tier: "j",
                ..Row::default()
            }],
            false,
        ),
        (
            "a profile id of no profile",
            vec![ProfileId],
            vec![Row {
                profile_of: Some("none"),
                tier: "k",
                ..Row::default()
            }],
            true,
        ),
    ];
    for (batch, (case, precedence, rows, fresh)) in cases.into_iter().enumerate() {
        let batch = batch as u32 + 1;
        // The probing workspace loads first, so the other one is checked beside a workspace
        // that already holds the same identities.
        let (_, probed) = load(
            &mut client,
            probing,
            batch,
            &rows,
            &precedence,
            Way::Probing(Probes::Always),
        )
        .await;
        let (held, skipped) = load(
            &mut client,
            shortcut,
            batch,
            &rows,
            &precedence,
            Way::Probing(Probes::WhenNeeded),
        )
        .await;
        assert_eq!(held, fresh, "{case}: the checks");
        assert_eq!(skipped, probed, "{case}: the counts");
        assert_eq!(
            profiles_of(&client, shortcut).await,
            profiles_of(&client, probing).await,
            "{case}: the profiles"
        );
    }
    let stored = profiles_of(&client, shortcut).await;
    assert!(
        stored.iter().any(|p| p.contains("e-12,external_id=e-50")),
        "the email of e-12 matched: {stored:?}"
    );
    assert!(
        stored
            .iter()
            .any(|p| p.starts_with("external_id=e-60 ") && p.contains(r#""tier": "m""#)),
        "e-60 took its newest row: {stored:?}"
    );
}

#[tokio::test]
async fn a_guessed_chunk_loads_as_the_probes_would_and_a_wrong_guess_is_resolved_instead() {
    let store = common::store(&format!("loader_guessed_chunks_{}", std::process::id())).await;
    let mut client = common::connect(&store.url).await;
    let (probing, guessing) = (1_i64, 2_i64);
    let precedence = [ExternalId];
    assert!(Probes::may_guess(&precedence, Unmatched::CreateWhole));
    assert!(!Probes::may_guess(&precedence, Unmatched::Skip));
    assert!(!Probes::may_guess(
        &[ExternalId, Email],
        Unmatched::CreateWhole
    ));
    assert!(!Probes::may_guess(
        &[ExternalId, Identity],
        Unmatched::CreateEmpty
    ));
    let mut repeated = people(40, 45, "c");
    repeated.extend([ext("e-41", "d"), ext("e-43", "e"), Row::default()]);
    let chunks = [
        (people(10, 20, "a"), true),
        (people(30, 40, "b"), true),
        (repeated, true),
        // Identities the store holds beside new ones: the guess fails on the identities' key
        // and the chunk is resolved, matching what it names.
        (people(35, 50, "f"), false),
    ];
    for (batch, (rows, right)) in chunks.into_iter().enumerate() {
        let batch = batch as u32 + 1;
        let (_, probed) = load(
            &mut client,
            probing,
            batch,
            &rows,
            &precedence,
            Way::Probing(Probes::Always),
        )
        .await;
        let (held, guessed) = load(
            &mut client,
            guessing,
            batch,
            &rows,
            &precedence,
            Way::Guessing,
        )
        .await;
        assert_eq!(held, right, "batch {batch}: the guess");
        assert_eq!(guessed, probed, "batch {batch}: the counts");
        assert_eq!(
            profiles_of(&client, guessing).await,
            profiles_of(&client, probing).await,
            "batch {batch}: the profiles"
        );
    }
    let stored = profiles_of(&client, guessing).await;
    assert!(
        stored
            .iter()
            .any(|p| p.starts_with("external_id=e-43 ") && p.contains(r#""tier": "f""#)),
        "e-43 took its newest row: {stored:?}"
    );
    assert_eq!(stored.len(), 30, "{stored:?}");
}
