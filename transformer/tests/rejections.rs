//! The transformer applied to real Parquet chunks in a local object store: values are
//! converted to their declared types, identities normalised, payloads expanded, and rows that
//! do not fit are rejected with the column, value, reason code and their mapped columns —
//! never silently coerced.

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use sluice_proto::rejection::from_json_lines;
use sluice_proto::{ChunkObjects, ChunkRef, ChunkTransformed, ChunkWork, Mapping, RowRejection};
use sluice_transformer::{transform, Transformer};
use std::sync::Arc;

/// A chunk with the extractor's key and watermark columns and the given text columns.
fn chunk(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let rows = columns[0].1.len();
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let mut fields = vec![
        Field::new("__sluice_key", DataType::Int64, false),
        Field::new("__sluice_watermark", ts, false),
    ];
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(1..=rows as i64)),
        Arc::new(
            TimestampMicrosecondArray::from(vec![1_700_000_000_000_000; rows]).with_timezone("UTC"),
        ),
    ];
    for (name, array) in columns {
        fields.push(Field::new(name, array.data_type().clone(), true));
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
}

fn text(values: Vec<Option<&str>>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

async fn read(store: &Arc<dyn ObjectStore>, key: &str) -> Vec<u8> {
    store
        .get(&Path::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// Transforms `batch` with `mapping`; returns the result, accepted rows and rejections.
async fn run(
    batch: RecordBatch,
    mapping: serde_json::Value,
) -> (ChunkTransformed, RecordBatch, Vec<RowRejection>) {
    let dir = std::env::temp_dir().join(format!("sluice-transform-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&dir).unwrap());
    let chunk = ChunkRef {
        run_id: uuid::Uuid::from_u128(0x1234),
        workspace_id: 1,
        import_id: 1,
        seq: 0,
    };
    let objects = ChunkObjects::for_chunk(&chunk);
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buffer, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    store
        .put(&Path::from(objects.extracted.as_str()), buffer.into())
        .await
        .unwrap();
    let mapping: Mapping = serde_json::from_value(mapping).unwrap();
    let work = ChunkWork {
        chunk,
        dry_run: false,
        mapping,
        objects: objects.clone(),
        load_rows_per_second: None,
        run_started_at: None,
        key_set: None,
        store: None,
        lineage: false,
        destination: None,
    };
    let deps = Transformer {
        store: store.clone(),
    };
    let result = transform(&work, &deps).await.unwrap();
    let bytes = read(&store, &objects.transformed).await;
    let batches: Vec<RecordBatch> =
        ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let accepted = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let rejections = from_json_lines(&read(&store, &objects.rejected).await).unwrap();
    std::fs::remove_dir_all(dir).unwrap();
    (result, accepted, rejections)
}

fn reasons(rejections: &[RowRejection]) -> Vec<(String, String, Option<String>, String)> {
    let mut out: Vec<_> = rejections
        .iter()
        .map(|r| {
            (
                r.row_key.clone(),
                r.column.clone(),
                r.value.clone(),
                r.reason.as_str().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn values_are_typed_and_misfits_are_rejected_with_reasons() {
    let batch = chunk(vec![
        (
            "ext",
            text(vec![
                Some(" u1 "),
                Some("u2"),
                Some("null"),
                Some("u4"),
                Some("u5"),
            ]),
        ),
        (
            "points",
            text(vec![Some("10"), Some("ten"), Some("3"), None, Some("7")]),
        ),
        (
            "born",
            text(vec![
                Some("31/12/1999"),
                Some("01/01/2000"),
                Some("01/01/2000"),
                Some("1999-12-31"),
                None,
            ]),
        ),
    ]);
    let (result, accepted, rejections) = run(
        batch,
        serde_json::json!({
            "identity": {"external_id": "ext"},
            "properties": {
                "points": {"column": "points", "type": "integer"},
                "birthday": {"column": "born", "type": "date", "format": "dd/MM/yyyy"}
            }
        }),
    )
    .await;
    assert_eq!((result.rows_accepted, result.rows_rejected), (2, 3));
    let ids = accepted
        .column_by_name("id:external_id")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(ids.value(0), "u1", "identities are trimmed");
    assert_eq!(ids.value(1), "u5");
    let points = accepted
        .column_by_name("prop:points")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(points.value(0), 10);
    assert!(
        accepted.column_by_name("prop:birthday").unwrap().is_null(1),
        "a NULL source value stays NULL (the property is removed)"
    );
    assert_eq!(
        reasons(&rejections),
        vec![
            (
                "2".into(),
                "points".into(),
                Some("ten".into()),
                "invalid_value".into()
            ),
            (
                "3".into(),
                "ext".into(),
                Some("null".into()),
                "reserved_identity".into()
            ),
            (
                "4".into(),
                "born".into(),
                Some("1999-12-31".into()),
                "invalid_value".into()
            ),
        ]
    );
    let born = rejections.iter().find(|r| r.row_key == "4").unwrap();
    assert_eq!(
        born.message,
        "property birthday: value is not a valid date in format dd/MM/yyyy"
    );
    assert_eq!(
        born.row["ext"].as_deref(),
        Some("u4"),
        "the row's mapped columns travel along"
    );
    assert_eq!(born.row["points"], None);
    assert_eq!(result.rejected_by_reason["invalid_value"], 2);
}

#[tokio::test]
async fn identities_are_normalised_and_each_kind_of_bad_identity_has_its_code() {
    let batch = chunk(vec![
        (
            "mail",
            text(vec![
                Some(" Ada@Example.com "),
                Some("not-an-email"),
                None,
                None,
                None,
                Some("b@example.com"),
            ]),
        ),
        (
            "tel",
            text(vec![
                Some("+44 20 7946 0000"),
                None,
                Some("555-0100"),
                None,
                None,
                None,
            ]),
        ),
        (
            "alias",
            text(vec![None, None, None, None, Some("crm-1"), None]),
        ),
        (
            "label",
            text(vec![None, None, None, None, None, Some("crm")]),
        ),
    ]);
    let (result, accepted, rejections) = run(
        batch,
        serde_json::json!({
            "identity": {"email": "mail", "phone": "tel", "alias_name": "alias", "alias_label": "label"},
            "properties": {}
        }),
    )
    .await;
    assert_eq!(result.rows_accepted, 1);
    let email = accepted
        .column_by_name("id:email")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(email.value(0), "ada@example.com");
    let phone = accepted
        .column_by_name("id:phone")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(phone.value(0), "+442079460000");
    assert_eq!(
        reasons(&rejections),
        vec![
            (
                "2".into(),
                "mail".into(),
                Some("not-an-email".into()),
                "invalid_email".into()
            ),
            (
                "3".into(),
                "tel".into(),
                Some("555-0100".into()),
                "invalid_phone".into()
            ),
            ("4".into(), "alias".into(), None, "missing_identity".into()),
            ("5".into(), "label".into(), None, "invalid_identity".into()),
            ("6".into(), "alias".into(), None, "invalid_identity".into()),
        ]
    );
}

#[tokio::test]
async fn payloads_expand_keep_nested_values_and_refuse_what_does_not_fit() {
    let many: String = format!(
        "{{{}}}",
        (0..251)
            .map(|i| format!("\"k{i}\": {i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let big = format!("{{\"blob\": \"{}\"}}", "x".repeat(1024 * 1024));
    let batch = chunk(vec![
        (
            "ext",
            text(vec![
                Some("u1"),
                Some("u2"),
                Some("u3"),
                Some("u4"),
                Some("u5"),
                Some("u6"),
            ]),
        ),
        (
            "extra",
            text(vec![
                Some(
                    r#"{"plan": "gold", "tags": ["a", "b"], "address": {"city": "Oslo"}, "name": "ignored", "gone": null}"#,
                ),
                Some("[1, 2]"),
                Some(r#"{"__secret": 1}"#),
                Some(&many),
                Some(&big),
                Some("{not json"),
            ]),
        ),
        ("n", text(vec![Some("Ada"), None, None, None, None, None])),
    ]);
    let (result, accepted, rejections) = run(
        batch,
        serde_json::json!({
            "identity": {"external_id": "ext"},
            "properties": {"name": {"column": "n", "type": "string"}},
            "payload": "extra"
        }),
    )
    .await;
    assert_eq!(result.rows_accepted, 1);
    let payload = accepted
        .column_by_name("__payload")
        .unwrap()
        .as_string::<i32>();
    let value: serde_json::Value = serde_json::from_str(payload.value(0)).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"plan": "gold", "tags": ["a", "b"], "address": {"city": "Oslo"}, "gone": null}),
        "nested values stay JSON; a declared property wins over the payload's key"
    );
    let codes: Vec<String> = reasons(&rejections).into_iter().map(|r| r.3).collect();
    assert_eq!(
        codes,
        vec![
            "invalid_payload",
            "reserved_property",
            "too_many_properties",
            "row_too_large",
            "invalid_payload"
        ]
    );
    let big_row = rejections.iter().find(|r| r.row_key == "5").unwrap();
    assert_eq!(
        big_row.column, "extra",
        "a row too large names its largest column, not an identity"
    );
    assert_eq!(big_row.value.as_deref().map(str::len), Some(256));
    assert_eq!(
        big_row.row["extra"].as_ref().unwrap().chars().count(),
        256,
        "values are truncated"
    );
}

#[tokio::test]
async fn a_struct_payload_expands_like_a_json_object() {
    let fields = [
        Arc::new(Field::new("plan", DataType::Utf8, true)),
        Arc::new(Field::new("seats", DataType::Int64, true)),
    ];
    let payload = StructArray::from(vec![
        (fields[0].clone(), text(vec![Some("gold")])),
        (
            fields[1].clone(),
            Arc::new(Int64Array::from(vec![Some(3)])) as ArrayRef,
        ),
    ]);
    let batch = chunk(vec![
        ("ext", text(vec![Some("u1")])),
        ("extra", Arc::new(payload) as ArrayRef),
    ]);
    let (_, accepted, rejections) = run(
        batch,
        serde_json::json!({"identity": {"external_id": "ext"}, "properties": {}, "payload": "extra"}),
    )
    .await;
    assert!(rejections.is_empty(), "{rejections:?}");
    let payload = accepted
        .column_by_name("__payload")
        .unwrap()
        .as_string::<i32>();
    let value: serde_json::Value = serde_json::from_str(payload.value(0)).unwrap();
    assert_eq!(value, serde_json::json!({"plan": "gold", "seats": 3}));
}

#[tokio::test]
async fn non_finite_numbers_and_decimals_a_double_would_round_are_rejected() {
    let floats: ArrayRef = Arc::new(arrow::array::Float64Array::from(vec![
        Some(1.5),
        Some(f64::NAN),
        Some(f64::INFINITY),
        Some(f64::NEG_INFINITY),
        Some(2.0),
        Some(3.0),
    ]));
    let batch = chunk(vec![
        (
            "ext",
            text(vec![
                Some("u1"),
                Some("u2"),
                Some("u3"),
                Some("u4"),
                Some("u5"),
                Some("u6"),
            ]),
        ),
        ("score", floats),
        (
            "balance",
            text(vec![
                Some("12.50"),
                Some("1"),
                Some("1"),
                Some("1"),
                Some("123456789012345678901234567890"),
                Some("NaN"),
            ]),
        ),
    ]);
    let (result, accepted, rejections) = run(
        batch,
        serde_json::json!({
            "identity": {"external_id": "ext"},
            "properties": {
                "score": {"column": "score", "type": "number"},
                "balance": {"column": "balance", "type": "number"}
            }
        }),
    )
    .await;
    assert_eq!((result.rows_accepted, result.rows_rejected), (1, 5));
    let balance = accepted
        .column_by_name("prop:balance")
        .unwrap()
        .as_primitive::<arrow::datatypes::Float64Type>();
    assert_eq!(balance.value(0), 12.5);
    let found: Vec<(String, String, String)> = reasons(&rejections)
        .into_iter()
        .map(|(key, column, _, reason)| (key, column, reason))
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("2", "score"),
        ("3", "score"),
        ("4", "score"),
        ("5", "balance"),
        ("6", "balance"),
    ]
    .iter()
    .map(|(k, c)| (k.to_string(), c.to_string(), "invalid_value".to_string()))
    .collect();
    assert_eq!(found, expected);
}
