//! Files in object storage as a source, through the whole fleet: Parquet files with ties
//! import exactly and a new file brings only its rows; CSV and NDJSON (watermark from the
//! file's modification time) import as well; a Delta table written by the deltalake writer
//! imports exactly, and its log's statistics keep later runs away from files they don't need.
//! Files and Delta tables in S3 (moto's server with authentication enforced) are read with
//! the connection's own credentials, and a wrong secret, an unreachable endpoint and a missing
//! folder are each classified.

mod common;

use arrow::array::{
    ArrayRef, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use common::stand_in::StandIn;
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

/// 5,000 of the tied rows changed and 500 new ones, all stamped a minute ago.
fn changed_rows() -> Vec<Row> {
    let recent = chrono::Utc::now().timestamp_micros() - 60_000_000;
    (1..=5_000)
        .map(|id| row(id, Some(format!("Changed {id}")), recent))
        .chain((50_001..=50_500).map(|id| row(id, Some(format!("New {id}")), recent)))
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

    let changes = changed_rows();
    write_parquet(&lake.join("users/part-9.parquet"), &changes);
    rows.extend(changes);
    let second = fleet.run("acme", "users");
    assert_eq!(
        second["rows_read"], 5_500,
        "only the new file's rows are read: {second}"
    );
    assert_eq!(common::stored_profiles(&fleet).await, expected(&rows));
    common::preview_users(&fleet, 10);
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
    common::preview_users(&fleet, 10);
    fleet.start("all", &[]);
    let first = fleet.run("acme", "users");
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["rows_read"], 50_000, "{first}");
    assert_eq!(common::stored_profiles(&fleet).await, expected(&rows));

    let changes = changed_rows();
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

/// A bucket in the S3 stand-in and the access key it accepts.
struct S3 {
    server: StandIn,
    bucket: String,
}

impl S3 {
    fn start(fleet: &Fleet) -> S3 {
        let bucket = format!("sluice-{}", fleet.id);
        let server = StandIn::start("tests/warehouses/s3_stand_in.py", &["--bucket", &bucket]);
        S3 { server, bucket }
    }

    /// The URL of `prefix` with the access key, and `secret` (the right one when `None`).
    fn url(&self, prefix: &str, secret: Option<&str>, port: Option<u16>) -> String {
        let key = &self.server.announced;
        let secret = secret.unwrap_or_else(|| key["secret_access_key"].as_str().unwrap());
        let encode =
            |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        format!(
            "s3://{}/{prefix}?aws_access_key_id={}&aws_secret_access_key={}&aws_region=us-east-1&aws_endpoint=http://127.0.0.1:{}&aws_allow_http=true",
            self.bucket,
            key["access_key_id"].as_str().unwrap(),
            encode(secret),
            port.unwrap_or(self.server.port)
        )
    }

    /// Copies every file below `local` to `prefix`.
    async fn upload(&self, local: &Path, prefix: &str) {
        use object_store::ObjectStoreExt;
        let store = sluice_proto::storage::open(&self.url(prefix, None, None)).unwrap();
        let mut pending = vec![local.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let relative = path
                    .strip_prefix(local)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                store
                    .put(
                        &relative.as_str().into(),
                        std::fs::read(&path).unwrap().into(),
                    )
                    .await
                    .unwrap();
            }
        }
    }
}

/// A spec importing `folder` from the `kind` connection at `url`.
fn s3_spec(kind: &str, url: &str, folder: &str) -> String {
    files_spec(Path::new("/"), folder, "updated_at", "")
        .replace("url: file:///", &format!("url: \"{url}\""))
        .replace("kind: files", &format!("kind: {kind}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn parquet_files_in_s3_import_with_the_connections_own_credentials() {
    let mut fleet = Fleet::new().await;
    let s3 = S3::start(&fleet);
    let local = fleet.data_dir.join("export");
    std::fs::create_dir_all(&local).unwrap();
    let rows: Vec<Row> = tied_rows(700_000_000).into_iter().take(24_000).collect();
    for (i, part) in rows.chunks(8_000).enumerate() {
        write_parquet(&local.join(format!("part-{i}.parquet")), part);
    }
    s3.upload(&local, "exports/users").await;
    fleet.apply_ok(&s3_spec("files", &s3.url("exports", None, None), "users"));
    fleet.start("all", &[]);
    let run = fleet.run("acme", "users");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["rows_read"], 24_000, "{run}");
    let names: Vec<_> = common::stored_profiles(&fleet)
        .await
        .into_iter()
        .map(|(id, name, ..)| (id, name))
        .collect();
    let mut expected: Vec<_> = rows
        .iter()
        .map(|(_, external_id, name, ..)| (external_id.clone(), name.clone()))
        .collect();
    expected.sort();
    assert_eq!(names, expected);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delta_table_in_s3_imports_and_s3_failures_are_classified() {
    let mut fleet = Fleet::new().await;
    let s3 = S3::start(&fleet);
    let local = fleet.data_dir.join("lake");
    let rows: Vec<Row> = tied_rows(700_000_000).into_iter().take(100).collect();
    delta_append(&local.join("users"), &rows).await;
    std::fs::create_dir_all(local.join("export")).unwrap();
    write_parquet(&local.join("export/part-0.parquet"), &rows);
    s3.upload(&local, "lake").await;
    // Both kinds read with the right key first: the table and the folder are there.
    let out = fleet.apply(&s3_spec("delta", &s3.url("lake", None, None), "users"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::preview_users(&fleet, 10);
    fleet.start("all", &[]);
    let run = fleet.run("acme", "users");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["rows_read"], 100, "{run}");
    for (kind, folder) in [("delta", "users"), ("files", "export")] {
        let cases = [
            (
                s3_spec(kind, &s3.url("lake", Some("not-the-secret"), None), folder),
                "refused the credentials",
            ),
            (
                s3_spec(kind, &s3.url("lake", None, Some(1)), folder),
                "unreachable",
            ),
            (
                s3_spec(kind, &s3.url("lake", None, None), "no_such_folder"),
                "missing object",
            ),
        ];
        common::assert_refused_within_timeout(&fleet, &cases);
    }
    fleet.cleanup().await;
}
