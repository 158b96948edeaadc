//! The transformer applied to a real Parquet chunk in a local object store: values are
//! converted to their declared types, and rows that do not fit are rejected with the property,
//! column, value and reason — never silently coerced.

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use sluice_proto::{ChunkObjects, ChunkRef, ChunkWork, Mapping};
use sluice_transformer::{transform, Transformer};
use std::sync::Arc;

fn chunk_batch() -> RecordBatch {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let schema = Schema::new(vec![
        Field::new("__sluice_key", DataType::Int64, false),
        Field::new("__sluice_watermark", ts, false),
        Field::new("ext", DataType::Utf8, true),
        Field::new("points", DataType::Utf8, true),
        Field::new("born", DataType::Utf8, true),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![1_700_000_000_000_000; 5]).with_timezone("UTC"),
        ),
        Arc::new(StringArray::from(vec![
            Some(" u1 "),
            Some("u2"),
            Some("null"),
            Some("u4"),
            Some("u5"),
        ])),
        Arc::new(StringArray::from(vec![
            Some("10"),
            Some("ten"),
            Some("3"),
            None,
            Some("7"),
        ])),
        Arc::new(StringArray::from(vec![
            Some("31/12/1999"),
            Some("01/01/2000"),
            Some("01/01/2000"),
            Some("1999-12-31"),
            None,
        ])),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).unwrap()
}

async fn read(store: &Arc<dyn ObjectStore>, key: &str) -> RecordBatch {
    let bytes = store
        .get(&Path::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

#[tokio::test]
async fn values_are_typed_and_misfits_are_rejected_with_reasons() {
    let dir = std::env::temp_dir().join(format!("sluice-transform-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&dir).unwrap());
    let chunk = ChunkRef {
        run_id: uuid_like(),
        workspace_id: 1,
        import_id: 1,
        seq: 0,
    };
    let objects = ChunkObjects::for_chunk(&chunk);
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buffer, chunk_batch().schema(), None).unwrap();
    writer.write(&chunk_batch()).unwrap();
    writer.close().unwrap();
    store
        .put(&Path::from(objects.extracted.as_str()), buffer.into())
        .await
        .unwrap();

    let mapping: Mapping = serde_json::from_value(serde_json::json!({
        "identity": {"external_id": "ext"},
        "properties": {
            "points": {"column": "points", "type": "integer"},
            "birthday": {"column": "born", "type": "date", "format": "dd/MM/yyyy"}
        }
    }))
    .unwrap();
    let work = ChunkWork {
        chunk,
        dry_run: false,
        mapping,
        objects: objects.clone(),
    };
    let result = transform(
        &work,
        &Transformer {
            store: store.clone(),
        },
    )
    .await
    .unwrap();
    assert_eq!((result.rows_accepted, result.rows_rejected), (2, 3));

    let accepted = read(&store, &objects.transformed).await;
    let ids = accepted
        .column_by_name("__external_id")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(ids.value(0), "u1", "identities are trimmed");
    assert_eq!(ids.value(1), "u5");
    let points = accepted
        .column_by_name("prop:points")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(points.value(0), 10);
    let birthday = accepted.column_by_name("prop:birthday").unwrap();
    assert!(
        birthday.is_null(1),
        "a NULL source value stays NULL (the property is removed)"
    );

    let mut reasons: Vec<(String, String, Option<String>, String)> = result
        .rejections
        .iter()
        .map(|r| {
            (
                r.row_key.clone(),
                r.column.clone(),
                r.value.clone(),
                r.reason.clone(),
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            (
                "2".into(),
                "points".into(),
                Some("ten".into()),
                "property points: value is not a valid integer".into()
            ),
            (
                "3".into(),
                "ext".into(),
                Some("null".into()),
                "identity external_id: identity is a reserved value".into()
            ),
            (
                "4".into(),
                "born".into(),
                Some("1999-12-31".into()),
                "property birthday: value is not a valid date in format dd/MM/yyyy".into()
            ),
        ]
    );
    let rejected = read(&store, &objects.rejected).await;
    assert_eq!(rejected.num_rows(), 3);
    std::fs::remove_dir_all(dir).unwrap();
}

fn uuid_like() -> uuid::Uuid {
    uuid::Uuid::from_u128(0x1234)
}
