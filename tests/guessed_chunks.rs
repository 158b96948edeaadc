//! A run whose first chunks create every profile they name and whose later chunks each name
//! one profile the store holds, in a row the guess's sample of identities does not look at:
//! those chunks are first staged on the guess that they match nothing, which the identities'
//! key proves wrong; the guess is undone and the store ends exactly as if every row had been
//! probed: one profile per person, updated, never doubled.

mod common;

use common::Fleet;

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_guess_is_undone_and_the_store_is_exact() {
    let mut fleet = Fleet::new().await;
    let warehouse = fleet.warehouse().await;
    // `early` imports the last person of each chunk of 500 from the fifth on (2500, 3000, ...,
    // 8000); `people` then reads 1..8000 in watermark order, in chunks of 500: its first four
    // chunks match nothing, each later one matches its last row only.
    warehouse
        .batch_execute(
            "CREATE TABLE public.early (id bigint PRIMARY KEY, ext text NOT NULL, tier text,
                                        updated_at timestamptz NOT NULL);
             INSERT INTO public.early
             SELECT g, 'user-' || g, 'early', timestamptz '2025-01-01 00:00:00+00'
               FROM generate_series(2500, 8000, 500) g;
             CREATE TABLE public.people (id bigint PRIMARY KEY, ext text NOT NULL, tier text,
                                         updated_at timestamptz NOT NULL);
             INSERT INTO public.people
             SELECT g, 'user-' || g, 'late',
                    timestamptz '2025-02-01 00:00:00+00' + g * interval '1 second'
               FROM generate_series(1, 8000) g;",
        )
        .await
        .unwrap();
    let import = |name: &str| {
        format!(
            "  - name: {name}
    connection: wh
    source: {{ table: public.{name} }}
    data_type: profiles
    key: id
    watermark: updated_at
    identity: {{ external_id: ext }}
    properties:
      tier: {{ column: tier, type: string }}
    chunk_rows: 500
    settle_lag: 1s
"
        )
    };
    fleet.apply_ok(&fleet.spec(&format!("{}{}", import("early"), import("people"))));
    let port = common::free_port();
    fleet.start("all", &["--http-addr", &format!("127.0.0.1:{port}")]);
    let early = fleet.run("acme", "early");
    assert_eq!(early["profiles_created"], 12, "{early}");
    let people = fleet.run("acme", "people");
    assert_eq!(people["status"], "succeeded", "{people}");
    assert_eq!(people["profiles_created"], 7_988, "{people}");
    assert_eq!(people["profiles_updated"], 12, "{people}");

    let control = fleet.control().await;
    let row = control
        .query_one(
            "SELECT count(*), count(DISTINCT i.value),
                    count(*) FILTER (WHERE p.properties->>'tier' = 'late')
               FROM profile_store.profiles p
               JOIN profile_store.identities i USING (workspace_id, profile_id)",
            &[],
        )
        .await
        .unwrap();
    let (profiles, people_named, late): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(profiles, 8_000, "a person has two profiles");
    assert_eq!(people_named, 8_000);
    assert_eq!(late, 8_000, "every profile holds the newest row");

    // The new people's chunks were staged on a guess, and a guess was proved wrong.
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let guesses = |outcome: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("sluice_resolution_guesses_total")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    assert!(guesses("right") >= 1.0, "no chunk was guessed: {metrics}");
    assert!(
        guesses("wrong") >= 1.0,
        "no guess was proved wrong: {metrics}"
    );
    fleet.cleanup().await;
}
