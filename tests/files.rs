//! Files in object storage as a source, through the whole fleet: Parquet files with ties
//! import exactly and a new file brings only its rows; CSV and NDJSON (watermark from the
//! file's modification time) import as well; a Delta table written by the deltalake writer
//! imports exactly, and its log's statistics keep later runs away from files they don't need.

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

/// The rows as one batch; `required` marks id, external_id and updated_at non-nullable.
fn batch_of(rows: &[Row], required: bool) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, !required),
        Field::new("external_id", DataType::Utf8, !required),
        Field::new("first_name", DataType::Utf8, true),
        Field::new("loyalty_points", DataType::Int32, true),
        Field::new("birthday", DataType::Date32, true),
        Field::new(
            "updated_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            !required,
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
    RecordBatch::try_new(schema, columns).unwrap()
}

fn write_parquet(path: &Path, rows: &[Row]) {
    let batch = batch_of(rows, true);
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
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

/// 50,000 rows from 2024-01-01, 37 ms apart, but rows 18,001 to 23,000 all at `tie_at`
/// microseconds after the start; every 97th row has no first name.
fn tied_rows(tie_at: i64) -> Vec<Row> {
    let base = 1_704_067_200_000_000i64; // 2024-01-01T00:00:00Z
    (1..=50_000)
        .map(|id| {
            let at = if (18_001..=23_000).contains(&id) {
                base + tie_at
            } else {
                base + id * 37_000
            };
            row(id, (id % 97 != 0).then(|| format!("Name {id}")), at)
        })
        .collect()
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
    // Rows 18,001 to 23,000 share one updated_at, across two files.
    let mut rows = tied_rows(5_000_000_000);
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

/// Appends the rows to the Delta table at `dir` as one commit, creating the table first.
async fn delta_append(dir: &Path, rows: &[Row]) {
    use deltalake_core::kernel::{DataType as Delta, PrimitiveType, StructField};
    use deltalake_core::writer::{DeltaWriter, RecordBatchWriter};
    let url = url::Url::from_directory_path(dir).unwrap();
    let mut table = match deltalake_core::open_table(url.clone()).await {
        Ok(table) => table,
        Err(_) => {
            std::fs::create_dir_all(dir).unwrap();
            let field = |name: &str, t: PrimitiveType| {
                StructField::new(name.to_string(), Delta::Primitive(t), true)
            };
            deltalake_core::operations::create::CreateBuilder::new()
                .with_location(url.to_string())
                .with_columns([
                    field("id", PrimitiveType::Long),
                    field("external_id", PrimitiveType::String),
                    field("first_name", PrimitiveType::String),
                    field("loyalty_points", PrimitiveType::Integer),
                    field("birthday", PrimitiveType::Date),
                    field("updated_at", PrimitiveType::Timestamp),
                ])
                .await
                .unwrap()
        }
    };
    let mut writer = RecordBatchWriter::for_table(&table).unwrap();
    writer.write(batch_of(rows, false)).await.unwrap();
    writer.flush_and_commit(&mut table).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delta_table_imports_exactly_and_its_statistics_skip_old_files() {
    let mut fleet = Fleet::new().await;
    let lake = fleet.data_dir.join("lake");
    // Rows 18,001 to 23,000 share one updated_at, across two commits' files; the newest row
    // is the last commit's.
    let mut rows = tied_rows(700_000_000);
    for part in rows.chunks(10_000) {
        delta_append(&lake.join("users"), part).await;
    }
    let spec = files_spec(
        &lake,
        "users",
        "updated_at",
        "      points: { column: loyalty_points, type: integer }\n      birthday: { column: birthday, type: date }\n",
    )
    .replace("kind: files", "kind: delta");
    fleet.apply_ok(&spec);
    let preview = fleet.sluice(&["imports", "preview", "users", "--workspace", "acme"]);
    let text = String::from_utf8_lossy(&preview.stdout);
    assert_eq!(
        text.lines().filter(|l| l.contains("user-")).count(),
        10,
        "{text}"
    );
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
    delta_append(&lake.join("users"), &changes).await;
    rows.extend(changes);
    // The first four commits' files cannot hold a row past the watermark: the log's
    // statistics say so, and the next run must not need them.
    let mut old_files: Vec<_> = std::fs::read_dir(lake.join("users"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    old_files.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    assert_eq!(old_files.len(), 6);
    for path in &old_files[..4] {
        std::fs::rename(path, path.with_extension("moved")).unwrap();
    }
    let second = fleet.run("acme", "users");
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(
        second["rows_read"], 5_500,
        "only the new commit's rows: {second}"
    );
    for path in &old_files[..4] {
        std::fs::rename(path.with_extension("moved"), path).unwrap();
    }
    assert_eq!(common::stored_profiles(&fleet).await, expected(&rows));
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_delta_table_is_classified() {
    let fleet = Fleet::new().await;
    let lake = fleet.data_dir.join("lake");
    std::fs::create_dir_all(lake.join("not_a_table")).unwrap();
    let spec =
        files_spec(&lake, "not_a_table", "updated_at", "").replace("kind: files", "kind: delta");
    let out = fleet.apply(&spec);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing object") && stderr.contains("not_a_table"),
        "{stderr}"
    );
    fleet.cleanup().await;
}
