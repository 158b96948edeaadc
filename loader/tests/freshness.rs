//! Per-property freshness against the real PostgreSQL: rows of three imports, each setting or
//! removing a random part of four properties, email included, at instants that often tie,
//! are loaded in chunks whose order is shuffled; the store must hold, for every property, the
//! value of the newest row that set or removed it (source time, then import, then key), and
//! the stale counts must be the values a store applying the rule one chunk at a time refuses.
//! Every test runs both ways: with the probes a fresh chunk may skip, and probing every row.

use sluice_loader::profiles;
use sluice_loader::resolve::{resolve, Probes, Unmatched, CREATE_STAGE};
use sluice_loader::staging;
use sluice_proto::IdentityKind;
use std::collections::BTreeMap;
use tokio_postgres::Client;

mod common;

const NAMES: [&str; 4] = ["a", "b", "c", "$email"];
const WORKSPACE: i64 = 1;
const BOTH_WAYS: [Probes; 2] = [Probes::Always, Probes::WhenNeeded];

/// Empties the store, so each way starts from the same nothing.
async fn empty(client: &Client) {
    client
        .batch_execute("TRUNCATE profile_store.profiles, profile_store.identities")
        .await
        .unwrap();
}

/// A small deterministic generator, so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One source row: which profile, its stamp, and per name a value (`None` removes it).
#[derive(Debug, Clone)]
struct Row {
    profile: u64,
    import: i64,
    second: i64,
    key: String,
    values: BTreeMap<&'static str, Option<String>>,
}

impl Row {
    fn stamp(&self) -> (i64, i64, &str) {
        (self.second, self.import, self.key.as_str())
    }
}

/// Rows of three imports over `profiles` people; an import's rows of one profile have
/// distinct instants, while different imports often share one.
fn rows(rng: &mut Rng, profiles: u64) -> Vec<Row> {
    let mut rows = Vec::new();
    for import in 1..=3 {
        let mut n = 0;
        for profile in 0..profiles {
            let mut seconds: Vec<i64> = (0..8).collect();
            for _ in 0..1 + rng.below(3) {
                let second = seconds.remove(rng.below(seconds.len() as u64) as usize);
                let mut values = BTreeMap::new();
                for name in NAMES {
                    match rng.below(4) {
                        0 => {}
                        1 if name != "$email" => {
                            values.insert(name, None);
                        }
                        _ => {
                            let value = format!("{name}{import}-{}", rng.below(1000));
                            values.insert(name, Some(value));
                        }
                    }
                }
                n += 1;
                rows.push(Row {
                    profile,
                    import,
                    second,
                    key: format!("k{n:05}"),
                    values,
                });
            }
        }
    }
    rows
}

/// Splits rows into chunks of one import each, with at most one row of a profile per chunk,
/// and shuffles them.
fn chunks(rng: &mut Rng, rows: &[Row]) -> Vec<Vec<Row>> {
    let mut chunks: Vec<Vec<Row>> = Vec::new();
    for import in 1..=3 {
        let mut pending: Vec<Row> = rows
            .iter()
            .filter(|r| r.import == import)
            .cloned()
            .collect();
        while !pending.is_empty() {
            let mut chunk: Vec<Row> = Vec::new();
            pending.retain(|row| {
                let take = !chunk.iter().any(|r| r.profile == row.profile) && rng.below(3) > 0;
                if take {
                    chunk.push(row.clone());
                }
                !take
            });
            if !chunk.is_empty() {
                chunks.push(chunk);
            }
        }
    }
    for i in (1..chunks.len()).rev() {
        chunks.swap(i, rng.below(i as u64 + 1) as usize);
    }
    chunks
}

/// The rule, one name at a time: what the store holds per profile after the chunks in order,
/// and how many values each chunk found stale.
#[derive(Default)]
struct Model {
    stamps: BTreeMap<(u64, &'static str), (i64, i64, String)>,
    values: BTreeMap<(u64, &'static str), Option<String>>,
}

impl Model {
    fn apply(&mut self, chunk: &[Row]) -> u64 {
        let mut stale = 0;
        for row in chunk {
            for (name, value) in &row.values {
                let slot = (row.profile, *name);
                let newer = self
                    .stamps
                    .get(&slot)
                    .is_some_and(|s| (s.0, s.1, s.2.as_str()) > row.stamp());
                if newer {
                    stale += 1;
                    continue;
                }
                self.stamps
                    .insert(slot, (row.second, row.import, row.key.clone()));
                if *name != "$email" || value.is_some() {
                    self.values.insert(slot, value.clone());
                }
            }
        }
        stale
    }

    /// (properties as JSON, email) per profile.
    fn profiles(&self) -> BTreeMap<u64, (serde_json::Value, Option<String>)> {
        let mut out: BTreeMap<u64, (serde_json::Value, Option<String>)> = BTreeMap::new();
        for ((profile, name), value) in &self.values {
            let entry = out
                .entry(*profile)
                .or_insert_with(|| (serde_json::json!({}), None));
            match (*name, value) {
                ("$email", value) => entry.1 = value.clone(),
                (_, Some(v)) => {
                    entry.0[name] = serde_json::Value::String(v.clone());
                }
                (_, None) => {}
            }
        }
        out
    }
}

/// Loads one chunk through the loader's own resolution and upsert, as import `import`;
/// returns (profiles updated, values stale).
async fn load(client: &mut Client, chunk: &[Row], probes: Probes) -> (u64, u64) {
    let import = chunk[0].import;
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(CREATE_STAGE).await.unwrap();
    for row in chunk {
        let mut props = serde_json::Map::new();
        let mut unset = Vec::new();
        let mut names = Vec::new();
        let mut email = None;
        for (name, value) in &row.values {
            names.push(name.to_string());
            match (*name, value) {
                ("$email", v) => email = v.clone(),
                (_, Some(v)) => {
                    props.insert(name.to_string(), serde_json::Value::String(v.clone()));
                }
                (_, None) => unset.push(name.to_string()),
            }
        }
        let external = format!("user-{}", row.profile);
        let time = chrono::DateTime::from_timestamp(1_700_000_000 + row.second, 0).unwrap();
        tx.execute(
            "INSERT INTO sluice_rows (key, updated_at, external_id, email, create_kind,
                                      create_value, props, unset, names, names_hash)
             VALUES ($1, $2, $3, $4, 'external_id', $3, $5, $6, $7, $8)",
            &[
                &row.key,
                &time,
                &external,
                &email,
                &serde_json::Value::Object(props),
                &unset,
                &names,
                &staging::names_hash(&names.iter().map(String::as_str).collect::<Vec<_>>()),
            ],
        )
        .await
        .unwrap();
    }
    resolve(
        &tx,
        WORKSPACE,
        import,
        &[IdentityKind::ExternalId],
        Unmatched::CreateWhole,
        probes,
    )
    .await
    .unwrap();
    let mut stats = sluice_proto::LoadStats::default();
    let mut errors = sluice_loader::load::ChunkErrors::default();
    let mapping: sluice_proto::Mapping = serde_json::from_value(serde_json::json!({
        "identity": {"external_id": "ext"}, "properties": {}
    }))
    .unwrap();
    // With the outcomes kept for lineage, as every import keeps them by default.
    profiles::apply(
        &tx,
        (WORKSPACE, import),
        &mapping,
        (false, true),
        &mut stats,
        &mut errors,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (stats.profiles_updated, stats.properties_stale)
}

async fn stored(client: &Client) -> BTreeMap<u64, (serde_json::Value, Option<String>)> {
    client
        .query(
            "SELECT substr(i.value, 6)::int8, p.properties, p.email
               FROM profile_store.profiles p JOIN profile_store.identities i USING (workspace_id, profile_id)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u64, (r.get(1), r.get(2))))
        .collect()
}

#[tokio::test]
async fn every_property_holds_its_newest_row_whatever_the_chunk_order() {
    let store = common::store(&format!("loader_freshness_{}", std::process::id())).await;
    let mut client = common::connect(&store.url).await;
    for (seed, probes) in [
        0x9e37_79b9_7f4a_7c15u64,
        0xdead_beef_cafe_f00d,
        12_345_678_901,
    ]
    .into_iter()
    .flat_map(|seed| BOTH_WAYS.map(|p| (seed, p)))
    {
        empty(&client).await;
        let mut rng = Rng(seed);
        let rows = rows(&mut rng, 60);
        let mut model = Model::default();
        for chunk in chunks(&mut rng, &rows) {
            let expected_stale = model.apply(&chunk);
            let (_, stale) = load(&mut client, &chunk, probes).await;
            assert_eq!(
                stale, expected_stale,
                "seed {seed:#x}, {probes:?}: stale values of {chunk:?}"
            );
        }
        let store = stored(&client).await;
        for (profile, expected) in model.profiles() {
            assert_eq!(
                store.get(&profile),
                Some(&expected),
                "seed {seed:#x}, {probes:?}: profile {profile}"
            );
        }
    }
}

/// The transaction that wrote the (one) profile's current version.
async fn row_version(client: &Client) -> String {
    client
        .query_one("SELECT xmin::text FROM profile_store.profiles", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_row_already_applied_changes_nothing_and_an_older_one_is_all_stale() {
    let store = common::store(&format!("loader_freshness_again_{}", std::process::id())).await;
    let mut client = common::connect(&store.url).await;
    let row = |import: i64, second: i64, key: &str, a: &str| Row {
        profile: 1,
        import,
        second,
        key: key.to_string(),
        values: BTreeMap::from([("a", Some(a.to_string())), ("b", None)]),
    };
    for probes in BOTH_WAYS {
        empty(&client).await;
        load(&mut client, &[row(1, 5, "k1", "first")], probes).await;
        let before = row_version(&client).await;
        assert_eq!(
            load(&mut client, &[row(1, 5, "k1", "first")], probes).await,
            (0, 0)
        );
        assert_eq!(
            row_version(&client).await,
            before,
            "a replayed row is not written"
        );
        assert_eq!(
            load(&mut client, &[row(2, 4, "k9", "older")], probes).await,
            (0, 2)
        );
        let (props, _) = stored(&client).await.remove(&1).unwrap();
        assert_eq!(props, serde_json::json!({"a": "first"}));
        // The same instant from a later import wins the tie.
        assert_eq!(
            load(&mut client, &[row(2, 5, "k0", "tie")], probes).await,
            (1, 0)
        );
        let (props, _) = stored(&client).await.remove(&1).unwrap();
        assert_eq!(props, serde_json::json!({"a": "tie"}));
        // Within a chunk the newest row of a profile wins; the others' values are stale.
        assert_eq!(
            load(
                &mut client,
                &[row(2, 6, "k5", "older"), row(2, 7, "k4", "newest")],
                probes
            )
            .await,
            (1, 2)
        );
        let (props, _) = stored(&client).await.remove(&1).unwrap();
        assert_eq!(props, serde_json::json!({"a": "newest"}));
    }
}

#[tokio::test]
async fn a_profile_created_from_several_rows_of_a_chunk_counts_the_older_ones_stale() {
    let store = common::store(&format!("loader_freshness_created_{}", std::process::id())).await;
    let mut client = common::connect(&store.url).await;
    let row = |second: i64, key: &str, values: &[(&'static str, Option<&str>)]| Row {
        profile: 1,
        import: 1,
        second,
        key: key.to_string(),
        values: values
            .iter()
            .map(|(n, v)| (*n, v.map(str::to_string)))
            .collect(),
    };
    let chunk = [
        row(
            1,
            "k1",
            &[("a", Some("old")), ("b", Some("old")), ("c", None)],
        ),
        row(2, "k2", &[("a", Some("new"))]),
    ];
    for probes in BOTH_WAYS {
        empty(&client).await;
        assert_eq!(load(&mut client, &chunk, probes).await, (0, 3));
        let (props, _) = stored(&client).await.remove(&1).unwrap();
        assert_eq!(props, serde_json::json!({"a": "new"}));
    }
}
