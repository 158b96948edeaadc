//! Keyset planning against a real PostgreSQL: chunks cut inside a long run of tied watermark
//! values cover every row exactly once, and rows stamped in the future or inside the settle
//! window are outside the run.

use arrow::record_batch::RecordBatch;
use sluice_connectors::postgres::PostgresSource;
use sluice_connectors::{BatchSink, Connector, Rows, SourceError, SourceSpec};
use sluice_proto::{Bound, SourceRelation};
use std::time::Duration;

mod common;

use common::{drop_database, PG};

async fn database() -> (String, tokio_postgres::Client) {
    common::database("plan").await
}

fn spec() -> SourceSpec {
    SourceSpec {
        relation: SourceRelation::Table("public.t".into()),
        key_column: "id".into(),
        watermark_column: "updated_at".into(),
        columns: vec!["v".into()],
    }
}

#[tokio::test]
async fn chunks_inside_a_run_of_ties_cover_every_row_once() {
    let (name, client) = database().await;
    client
        .batch_execute(
            "CREATE TABLE t (id bigint PRIMARY KEY, v text, updated_at timestamptz NOT NULL);
             CREATE INDEX ON t (updated_at, id);
             INSERT INTO t SELECT g, 'v' || g,
                 CASE WHEN g BETWEEN 1001 AND 6000 THEN timestamptz '2024-01-01 00:00:00.123456+00'
                      ELSE timestamptz '2023-01-01 00:00:00+00' + g * interval '1 second' END
               FROM generate_series(1, 10000) g;
             INSERT INTO t VALUES (10001, 'future', now() + interval '1 day'),
                                  (10002, 'settling', now());",
        )
        .await
        .unwrap();
    let source = PostgresSource::connect(&format!("{PG}/{name}"))
        .await
        .unwrap();
    let shape = source.describe(&spec()).await.unwrap();
    let range = source
        .plan_range(&shape, None, Duration::from_secs(60), None)
        .await
        .unwrap();
    assert_eq!(range.held_back_future, 1);
    let hi = range.hi.unwrap();
    // The last row in (watermark, key) order is the tied run's last key; the future row and
    // the row inside the settle window are not planned.
    assert_eq!(hi.key, sluice_proto::KeyValue::Int(6000));

    let boundaries = source
        .chunk_boundaries(&shape, None, &hi, 700)
        .await
        .unwrap();
    assert_eq!(boundaries.len(), 14, "10000 rows in chunks of 700");
    let mut seen = Vec::new();
    let mut lo: Option<Bound> = None;
    for b in boundaries.iter().chain(std::iter::once(&hi)) {
        let rows = source
            .read(
                &shape,
                Rows::Range {
                    lo: lo.as_ref(),
                    hi: b,
                },
                256,
                &mut Vec::new(),
            )
            .await
            .unwrap();
        assert!(rows <= 700, "chunk ({lo:?}, {b}] has {rows} rows");
        seen.push(rows);
        lo = Some(b.clone());
    }
    assert_eq!(
        seen.iter().sum::<u64>(),
        10000,
        "every row read exactly once"
    );
    let inside_ties = boundaries
        .iter()
        .filter(|b| b.watermark == hi.watermark)
        .count();
    assert!(
        inside_ties >= 5,
        "boundaries fall inside the tied run, told apart by the key"
    );

    let again = source
        .plan_range(&shape, Some(&hi), Duration::from_secs(60), None)
        .await
        .unwrap();
    assert_eq!(again.hi, None, "nothing new past the watermark");
    drop(source);
    drop_database(&name).await;
}

#[tokio::test]
async fn a_missing_column_is_named() {
    let (name, client) = database().await;
    client
        .batch_execute("CREATE TABLE t (id bigint PRIMARY KEY, updated_at timestamptz)")
        .await
        .unwrap();
    let source = PostgresSource::connect(&format!("{PG}/{name}"))
        .await
        .unwrap();
    let err = source.describe(&spec()).await.unwrap_err().to_string();
    assert!(
        err.contains("table public.t") && err.contains("\"v\" does not exist"),
        "{err}"
    );
    drop(source);
    drop_database(&name).await;
}

#[tokio::test]
async fn a_redshift_session_reads_chunks_through_a_server_side_cursor() {
    use sluice_connectors::postgres::Dialect;
    let (name, client) = database().await;
    client
        .batch_execute(
            "CREATE TABLE t (id bigint PRIMARY KEY, v text, updated_at timestamptz NOT NULL);
             INSERT INTO t SELECT g, 'v' || g, timestamptz '2023-01-01 00:00:00+00' + g * interval '1 second'
               FROM generate_series(1, 5000) g;",
        )
        .await
        .unwrap();
    let source = PostgresSource::connect_as(&format!("{PG}/{name}"), Dialect::Redshift)
        .await
        .unwrap();
    let shape = source.describe(&spec()).await.unwrap();
    let hi = Bound {
        watermark: "2023-01-01T01:23:20Z".parse().unwrap(),
        key: sluice_proto::KeyValue::Int(5000),
    };
    let mut observer = Observer {
        client: &client,
        sizes: Vec::new(),
        seen: Vec::new(),
    };
    let rows = source
        .read(
            &shape,
            Rows::Range { lo: None, hi: &hi },
            1_000,
            &mut observer,
        )
        .await
        .unwrap();
    assert_eq!(rows, 5_000);
    assert_eq!(observer.sizes, vec![1_000; 5]);
    assert!(
        observer
            .seen
            .iter()
            .all(|q| q.starts_with("FETCH FORWARD 1000 FROM sluice_chunk")),
        "{:?}",
        observer.seen
    );
    drop(source);
    drop_database(&name).await;
}

/// Records each batch's size and, between fetches, the reader's last statement.
struct Observer<'a> {
    client: &'a tokio_postgres::Client,
    sizes: Vec<usize>,
    seen: Vec<String>,
}

#[async_trait::async_trait]
impl BatchSink for Observer<'_> {
    async fn put(&mut self, batch: RecordBatch) -> Result<(), SourceError> {
        self.sizes.push(batch.num_rows());
        // Between fetches the reader sits in its transaction; its last statement shows.
        let query: String = self
            .client
            .query_one(
                "SELECT query FROM pg_stat_activity
                  WHERE application_name = 'sluice-extractor' AND datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        self.seen.push(query);
        Ok(())
    }
}

#[tokio::test]
async fn a_large_range_is_cut_from_the_statistics_without_walking_the_index() {
    let (name, client) = database().await;
    client
        .batch_execute(
            "CREATE TABLE t (id bigint PRIMARY KEY, v text, updated_at timestamptz NOT NULL);
             INSERT INTO t SELECT g, 'v' || g,
                 CASE WHEN g BETWEEN 100001 AND 130000 THEN timestamptz '2024-06-01 00:00:00+00'
                      ELSE timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' END
               FROM generate_series(1, 200000) g;
             CREATE INDEX t_watermark ON t (updated_at, id);",
        )
        .await
        .unwrap();
    client.batch_execute("VACUUM ANALYZE t").await.unwrap();
    let url = format!("{PG}/{name}");
    let source = PostgresSource::connect(&url)
        .await
        .unwrap()
        .with_exact_planning_rows(0);
    let shape = source.describe(&spec()).await.unwrap();
    let hi = source
        .plan_range(&shape, None, Duration::from_secs(60), None)
        .await
        .unwrap()
        .hi
        .unwrap();
    let boundaries = source
        .chunk_boundaries(&shape, None, &hi, 5_000)
        .await
        .unwrap();
    // The session ends, so its index reads are counted.
    drop(source);
    let read: i64 = loop {
        let row = client
            .query_one(
                "SELECT pg_stat_clear_snapshot(), (SELECT numbackends FROM pg_stat_database
                   WHERE datname = current_database()),
                   (SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelname = 't_watermark')",
                &[],
            )
            .await
            .unwrap();
        if row.get::<_, i32>(1) == 1 {
            break row.get(2);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        read < 60_000,
        "planning read {read} index entries; the tie (30,000) and one probe per chunk at most"
    );

    let count = |lo: Option<&Bound>, b: &Bound| {
        let client = &client;
        let lo = lo.cloned();
        let b = b.clone();
        async move {
            let key = |k: &sluice_proto::KeyValue| match k {
                sluice_proto::KeyValue::Int(v) => *v,
                other => panic!("{other:?}"),
            };
            let (lo_t, lo_k) = lo.map_or(
                (chrono::DateTime::<chrono::Utc>::UNIX_EPOCH, i64::MIN),
                |l| (l.watermark, key(&l.key)),
            );
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM t WHERE (updated_at, id) > ($1, $2)
                        AND (updated_at, id) <= ($3, $4)",
                    &[&lo_t, &lo_k, &b.watermark, &key(&b.key)],
                )
                .await
                .unwrap()
                .get(0);
            n as u64
        }
    };
    let mut total = 0;
    let mut lo: Option<Bound> = None;
    for b in boundaries.iter().chain(std::iter::once(&hi)) {
        let rows = count(lo.as_ref(), b).await;
        assert!(rows <= 7_500, "chunk ({lo:?}, {b}] has {rows} rows");
        total += rows;
        lo = Some(b.clone());
    }
    assert_eq!(total, 200_000, "every row planned exactly once");
    assert!(
        (36..=48).contains(&boundaries.len()),
        "about 40 chunks of 5,000: {}",
        boundaries.len()
    );
    assert!(
        boundaries
            .iter()
            .filter(|b| b.watermark
                == "2024-06-01T00:00:00Z"
                    .parse::<chrono::DateTime<chrono::Utc>>()
                    .unwrap())
            .count()
            >= 5,
        "the tie of 30,000 rows is cut by key"
    );
    drop_database(&name).await;
}
