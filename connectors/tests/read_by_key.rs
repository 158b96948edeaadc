//! Reading rows by key, as a run reads rows again: against a real PostgreSQL (integer and
//! text keys), MariaDB and files, exactly the listed keys that exist and sit at or before the
//! bound are read, and a list of no keys reads nothing.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use sluice_connectors::files::FilesSource;
use sluice_connectors::mysql::MysqlSource;
use sluice_connectors::postgres::PostgresSource;
use sluice_connectors::{Connector, Rows, SourceSpec};
use sluice_proto::{Bound, KeyValue, SourceRelation};
use std::collections::BTreeSet;
use std::time::Duration;

mod common;

use common::{MARIADB, PG};

fn spec(table: &str) -> SourceSpec {
    SourceSpec {
        relation: SourceRelation::Table(table.into()),
        key_column: "id".into(),
        watermark_column: "updated_at".into(),
        columns: vec!["v".into()],
    }
}

/// The keys `keys` read at or before the row whose key is `upto`, as text.
async fn read_keys(
    source: &dyn Connector,
    spec: &SourceSpec,
    keys: &[KeyValue],
    upto: &KeyValue,
) -> BTreeSet<String> {
    let shape = source.describe(spec).await.unwrap();
    let range = source
        .plan_range(&shape, None, Duration::from_secs(1), None)
        .await
        .unwrap();
    let hi = range.hi.unwrap();
    // The bound of the row keyed `upto`: its watermark is its key's second of 2024.
    let second = match upto {
        KeyValue::Int(v) => *v,
        KeyValue::Text(v) => v.trim_start_matches('k').parse().unwrap(),
    };
    let bound = Bound {
        watermark: chrono::DateTime::from_timestamp(1_704_067_200 + second, 0).unwrap(),
        key: upto.clone(),
    };
    assert!(bound.watermark <= hi.watermark);
    let mut batches: Vec<RecordBatch> = Vec::new();
    let rows = source
        .read(&shape, Rows::Keys { keys, upto: &bound }, 4, &mut batches)
        .await
        .unwrap();
    let mut read = BTreeSet::new();
    for batch in &batches {
        let key = batch.column(0);
        for i in 0..batch.num_rows() {
            read.insert(match key.data_type() {
                arrow::datatypes::DataType::Int64 => {
                    key.as_primitive::<Int64Type>().value(i).to_string()
                }
                _ => key.as_string::<i32>().value(i).to_string(),
            });
        }
    }
    assert_eq!(rows as usize, read.len(), "the count is the rows read");
    read
}

/// What every source must answer, with keys made by `key`.
async fn check(source: &dyn Connector, spec: &SourceSpec, key: impl Fn(i64) -> KeyValue) {
    let text = |k: &KeyValue| k.to_string();
    let wanted = [key(3), key(7), key(12), key(99)];
    let read = read_keys(source, spec, &wanted, &key(20)).await;
    assert_eq!(
        read,
        [key(3), key(7), key(12)].iter().map(text).collect(),
        "the listed keys that exist"
    );
    let read = read_keys(source, spec, &wanted, &key(7)).await;
    assert_eq!(
        read,
        [key(3), key(7)].iter().map(text).collect(),
        "up to the bound, inclusive"
    );
    assert!(read_keys(source, spec, &[], &key(20)).await.is_empty());
}

#[tokio::test]
async fn postgres_reads_listed_integer_and_text_keys() {
    let (name, client) = common::database("by_key").await;
    let url = format!("{PG}/{name}");
    client
        .batch_execute(
            "CREATE TABLE ints (id bigint PRIMARY KEY, v text, updated_at timestamptz NOT NULL);
             INSERT INTO ints SELECT g, 'v' || g,
                    timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
               FROM generate_series(1, 20) g;
             CREATE TABLE texts (id varchar(10) PRIMARY KEY, v text,
                                 updated_at timestamptz NOT NULL);
             INSERT INTO texts SELECT 'k' || lpad(g::text, 2, '0'), 'v' || g,
                    timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
               FROM generate_series(1, 20) g;",
        )
        .await
        .unwrap();
    let source = PostgresSource::connect(&url).await.unwrap();
    check(&source, &spec("public.ints"), KeyValue::Int).await;
    check(&source, &spec("public.texts"), |g| {
        KeyValue::Text(format!("k{g:02}"))
    })
    .await;
    drop(source);
    common::drop_database(&name).await;
}

#[tokio::test]
async fn mariadb_reads_listed_keys() {
    use mysql_async::prelude::Queryable;
    let name = format!("by_key_{}", uuid::Uuid::new_v4().simple());
    let pool = mysql_async::Pool::new(MARIADB);
    let mut conn = pool.get_conn().await.unwrap();
    conn.query_drop(format!(
        "CREATE DATABASE {name};
         CREATE TABLE {name}.ints (id bigint PRIMARY KEY, v text,
                                   updated_at datetime(6) NOT NULL);"
    ))
    .await
    .unwrap();
    for g in 1..=20 {
        conn.exec_drop(
            format!(
                "INSERT INTO {name}.ints VALUES (?, ?, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL ? SECOND)"
            ),
            (g, format!("v{g}"), g),
        )
        .await
        .unwrap();
    }
    let source = MysqlSource::connect(&format!("{MARIADB}/{name}"))
        .await
        .unwrap();
    check(&source, &spec("ints"), KeyValue::Int).await;
    drop(source);
    conn.query_drop(format!("DROP DATABASE {name}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn files_read_listed_keys() {
    let dir = std::env::temp_dir().join(format!("by_key_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("people")).unwrap();
    // Two files, so keys are found across them.
    for (file, ids) in [("a.csv", 1..=10), ("b.csv", 11..=20)] {
        let mut text = String::from("id,v,updated_at\n");
        for g in ids {
            let at = chrono::DateTime::from_timestamp(1_704_067_200 + g, 0).unwrap();
            text.push_str(&format!("{g},v{g},{}\n", at.to_rfc3339()));
        }
        std::fs::write(dir.join("people").join(file), text).unwrap();
    }
    let source = FilesSource::connect(&format!("file://{}", dir.display()))
        .await
        .unwrap();
    check(&source, &spec("people"), KeyValue::Int).await;
    std::fs::remove_dir_all(&dir).unwrap();
}
