//! Files in object storage as a source, through the whole fleet: Parquet files with ties
//! import exactly and a new file brings only its rows; CSV and NDJSON (watermark from the
//! file's modification time) import as well.

mod common;

use arrow::array::{
    ArrayRef, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use common::Fleet;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// One source row: (id, external id, first name, points, birthday days, updated_at µs).
type Row = (i64, String, Option<String>, i32, i32, i64);

fn write_parquet(path: &Path, rows: &[Row]) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("external_id", DataType::Utf8, false),
        Field::new("first_name", DataType::Utf8, true),
        Field::new("loyalty_points", DataType::Int32, true),
        Field::new("birthday", DataType::Date32, true),
        Field::new(
            "updated_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.1.clone()),
        )),
        Arc::new(StringArray::from(
            rows.iter().map(|r| r.2.clone()).collect::<Vec<_>>(),
        )),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.3))),
        Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.4))),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.5))
                .with_timezone("UTC"),
        ),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn row(id: i64, name: Option<String>, updated_at: i64) -> Row {
    (
        id,
        format!("user-{id}"),
        name,
        (id * 7 % 1000) as i32,
        (id % 15000) as i32,
        updated_at,
    )
}

use common::StoredProfile as Profile;

/// What the store must hold: the newest row per id.
fn expected(rows: &[Row]) -> Vec<Profile> {
    let mut newest: BTreeMap<i64, &Row> = BTreeMap::new();
    for r in rows {
        if newest
            .get(&r.0)
            .is_none_or(|old| (old.5, old.0) <= (r.5, r.0))
        {
            newest.insert(r.0, r);
        }
    }
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    let mut out: Vec<_> = newest
        .values()
        .map(|r| {
            (
                r.1.clone(),
                r.2.clone(),
                Some(r.3.to_string()),
                Some(
                    (epoch + chrono::Duration::days(r.4 as i64))
                        .format("%Y-%m-%d")
                        .to_string(),
                ),
            )
        })
        .collect();
    out.sort();
    out
}

fn files_spec(dir: &Path, folder: &str, watermark: &str, extra: &str) -> String {
    format!(
        r#"workspace: acme
connections:
  - name: lake
    kind: files
    url: file://{}
imports:
  - name: users
    connection: lake
    source: {{ table: {folder} }}
    data_type: profiles
    key: id
    watermark: {watermark}
    identity: {{ external_id: external_id }}
    properties:
      first_name: {{ column: first_name, type: string }}
{extra}    chunk_rows: 7000
    settle_lag: 1s
"#,
        dir.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn parquet_files_with_ties_import_exactly_and_a_new_file_brings_only_its_rows() {
    let mut fleet = Fleet::new().await;
    let lake = fleet.data_dir.join("lake");
    std::fs::create_dir_all(lake.join("users")).unwrap();
    let base = 1_704_067_200_000_000i64; // 2024-01-01T00:00:00Z
                                         // Rows 18,001 to 23,000 share one updated_at, across two files.
    let mut rows: Vec<Row> = (1..=50_000)
        .map(|id| {
            let at = if (18_001..=23_000).contains(&id) {
                base + 5_000_000_000
            } else {
                base + id * 37_000
            };
            row(id, (id % 97 != 0).then(|| format!("Name {id}")), at)
        })
        .collect();
    for (n, part) in rows.chunks(10_000).enumerate() {
        write_parquet(&lake.join(format!("users/part-{n}.parquet")), part);
    }
    let spec = files_spec(
        &lake,
        "users",
        "updated_at",
        "      points: { column: loyalty_points, type: integer }\n      birthday: { column: birthday, type: date }\n",
    );
    fleet.apply_ok(&spec);
    fleet.start("all", &[]);
    let first = fleet.run("acme", "users");
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["rows_read"], 50_000, "{first}");
    assert_eq!(common::stored_profiles(&fleet).await, expected(&rows));

    let recent = chrono::Utc::now().timestamp_micros() - 60_000_000;
    let changes: Vec<Row> = (1..=5_000)
        .map(|id| row(id, Some(format!("Changed {id}")), recent))
        .chain((50_001..=50_500).map(|id| row(id, Some(format!("New {id}")), recent)))
        .collect();
    write_parquet(&lake.join("users/part-9.parquet"), &changes);
    rows.extend(changes);
    let second = fleet.run("acme", "users");
    assert_eq!(
        second["rows_read"], 5_500,
        "only the new file's rows are read: {second}"
    );
    assert_eq!(common::stored_profiles(&fleet).await, expected(&rows));
    let preview = fleet.sluice(&["imports", "preview", "users", "--workspace", "acme"]);
    let text = String::from_utf8_lossy(&preview.stdout);
    assert_eq!(
        text.lines().filter(|l| l.contains("user-")).count(),
        10,
        "{text}"
    );
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_and_ndjson_files_import_too() {
    let mut fleet = Fleet::new().await;
    let lake = fleet.data_dir.join("lake");
    std::fs::create_dir_all(lake.join("csv")).unwrap();
    std::fs::create_dir_all(lake.join("json")).unwrap();
    let mut csv = String::from("id,external_id,first_name,updated_at\n");
    let mut json = String::new();
    for id in 1..=100 {
        csv.push_str(&format!(
            "{id},user-{id},Name {id},2024-01-01T00:{:02}:00\n",
            id % 60
        ));
        json.push_str(&format!(
            "{{\"id\": {id}, \"external_id\": \"json-{id}\", \"first_name\": \"Json {id}\"}}\n"
        ));
    }
    std::fs::write(lake.join("csv/users.csv"), csv).unwrap();
    std::fs::write(lake.join("json/users.ndjson"), json).unwrap();
    fleet.apply_ok(&files_spec(&lake, "csv", "updated_at", ""));
    fleet.start("all", &[]);
    let run = fleet.run("acme", "users");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["profiles_created"], 100, "{run}");
    // The NDJSON rows have no time column: each file's modification time is their watermark.
    std::thread::sleep(std::time::Duration::from_secs(2));
    fleet.apply_ok(
        &files_spec(&lake, "json", "_modified", "").replace("name: users", "name: events_json"),
    );
    let json_run = fleet.run("acme", "events_json");
    assert_eq!(json_run["status"], "succeeded", "{json_run}");
    assert_eq!(json_run["profiles_created"], 100, "{json_run}");
    let names: i64 = fleet
        .control()
        .await
        .query_one(
            "SELECT count(*) FROM profile_store.profiles WHERE properties->>'first_name' LIKE 'Json %'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(names, 100);
    fleet.cleanup().await;
}
