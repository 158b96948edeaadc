//! The staging COPY's writer against the real PostgreSQL: every value of every row arrives as
//! written, NULLs included, across many sends and with one value larger than a send.

use chrono::{DateTime, TimeZone, Utc};
use sluice_loader::copy::StageWriter;
use tokio_postgres::types::Type;
use tokio_postgres::NoTls;

type Row = (
    String,
    DateTime<Utc>,
    Option<i64>,
    Option<serde_json::Value>,
    Vec<String>,
    Option<bool>,
);

fn row(i: i64) -> Row {
    let key = match i {
        // Far larger than one send: it grows the buffer and goes out whole.
        1_234 => "x".repeat(600_000),
        _ => format!("key-{i}-é\"'"),
    };
    (
        key,
        Utc.timestamp_opt(1_700_000_000 + i, (i % 1_000) as u32 * 1_000)
            .unwrap(),
        (i % 3 != 0).then_some(i * 7),
        (i % 4 != 0).then(|| serde_json::json!({"n": i, "tags": [i % 2, "a"], "d": 1.5})),
        (0..i % 3).map(|n| format!("name{n}")).collect(),
        (i % 5 != 0).then_some(i % 2 == 0),
    )
}

#[tokio::test]
async fn every_row_arrives_as_written_across_many_sends() {
    let (mut client, connection) =
        tokio_postgres::connect("postgres://postgres@127.0.0.1:5432/postgres", NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(
        "CREATE TEMP TABLE copied (i serial, k text, at timestamptz, n int8, j jsonb,
                                  a text[], b bool) ON COMMIT DROP",
    )
    .await
    .unwrap();
    let sink = tx
        .copy_in("COPY copied (k, at, n, j, a, b) FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    let types = [
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::INT8,
        Type::JSONB,
        Type::TEXT_ARRAY,
        Type::BOOL,
    ];
    let mut writer = StageWriter::new(sink, &types);
    let rows: Vec<Row> = (0..5_000).map(row).collect();
    for r in &rows {
        writer
            .write(&[&r.0, &r.1, &r.2, &r.3, &r.4, &r.5])
            .await
            .unwrap();
    }
    assert_eq!(writer.finish().await.unwrap(), 5_000);
    let stored: Vec<Row> = tx
        .query("SELECT k, at, n, j, a, b FROM copied ORDER BY i", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    assert_eq!(stored.len(), rows.len());
    for (i, (s, r)) in stored.iter().zip(&rows).enumerate() {
        assert_eq!(s, r, "row {i}");
    }
}
