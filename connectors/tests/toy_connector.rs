//! Adding a connector kind takes its folder and one registry line: the toy kind in `toy/` is
//! opened, checked, planned and read through the registry like every built-in kind.

mod toy;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use sluice_connectors::{Registry, Rows, SourceSpec};
use sluice_proto::{ConnectionKind, SourceRelation};
use std::time::Duration;

fn spec() -> SourceSpec {
    SourceSpec {
        relation: SourceRelation::Table("toys".into()),
        key_column: "id".into(),
        watermark_column: "updated_at".into(),
        columns: vec!["name".into()],
    }
}

#[tokio::test]
async fn a_kind_added_with_one_registry_line_is_checked_planned_and_read() {
    let toy = ConnectionKind::new("toy");
    let err = Registry::builtin().check_url(&toy, "toy://5").unwrap_err();
    assert!(err.contains("unknown connection kind \"toy\""), "{err}");

    let registry = Registry::builtin().with(&toy::TOY);

    assert!(registry.names().contains(&"toy"));
    let err = registry.check_url(&toy, "toy://many").unwrap_err();
    assert!(err.contains("toy://ROWS"), "{err}");
    registry.check_url(&toy, "toy://95").unwrap();
    let err = registry
        .check_url(&ConnectionKind::new("oracle"), "x")
        .unwrap_err();
    assert!(
        err.contains("toy"),
        "the kinds listed include the new one: {err}"
    );

    let source = registry.open(&toy, "toy://95").await.unwrap();
    source.test().await.unwrap();
    let shape = source.describe(&spec()).await.unwrap();
    let preview = source.preview(&shape, 3).await.unwrap();
    assert_eq!(preview.num_rows(), 3);
    assert_eq!(preview.schema(), source.chunk_schema(&shape));

    let plan = source
        .plan_range(&shape, None, Duration::from_secs(60), None)
        .await
        .unwrap();
    let hi = plan.hi.expect("the toy's rows lie in the past");
    let boundaries = source
        .chunk_boundaries(&shape, None, &hi, 20)
        .await
        .unwrap();
    assert_eq!(boundaries.len(), 4, "95 rows in chunks of 20");

    let mut ids: Vec<i64> = Vec::new();
    let mut lo = None;
    for b in boundaries.iter().chain(std::iter::once(&hi)) {
        let mut batches: Vec<RecordBatch> = Vec::new();
        let rows = source
            .read(
                &shape,
                Rows::Range {
                    lo: lo.as_ref(),
                    hi: b,
                },
                8,
                &mut batches,
            )
            .await
            .unwrap();
        assert!(rows <= 20, "a chunk holds at most its share: {rows}");
        for batch in &batches {
            assert!(batch.num_rows() <= 8);
            ids.extend(batch.column(0).as_primitive::<Int64Type>().values().iter());
        }
        lo = Some(b.clone());
    }
    assert_eq!(
        ids,
        (0..95).collect::<Vec<i64>>(),
        "every row once, in order"
    );

    let next = source
        .plan_range(&shape, Some(&hi), Duration::from_secs(60), None)
        .await
        .unwrap();
    assert_eq!(next.hi, None, "nothing is past the watermark");
}
