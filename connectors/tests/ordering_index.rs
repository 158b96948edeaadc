//! The `(watermark, key)` index check the import builder shows, against a real PostgreSQL
//! and MariaDB: a table without the index is reported with the statement that creates it,
//! and after running that statement the index is found; a view and a query cannot tell.

use sluice_connectors::mysql::MysqlSource;
use sluice_connectors::postgres::PostgresSource;
use sluice_connectors::{Connector, SourceSpec};
use sluice_proto::SourceRelation;

mod common;

use common::{MARIADB, PG};

fn spec(relation: SourceRelation) -> SourceSpec {
    SourceSpec {
        relation,
        key_column: "id".into(),
        watermark_column: "updated_at".into(),
        columns: vec![],
    }
}

/// Checks a source whose `people` table has no ordering index and whose `people_view` is a
/// view; `create` runs a statement on the source.
async fn check<F, Fut>(source: &dyn Connector, create: F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let table = spec(SourceRelation::Table("people".into()));
    let missing = source.ordering_index(&table).await.unwrap().unwrap();
    assert!(!missing.present, "only the primary key: {missing:?}");
    assert!(missing.statement.starts_with("CREATE INDEX"));
    create(missing.statement.clone()).await;
    let found = source.ordering_index(&table).await.unwrap().unwrap();
    assert!(found.present, "the statement given makes the index");
    let reversed = SourceSpec {
        key_column: "updated_at".into(),
        watermark_column: "id".into(),
        ..table.clone()
    };
    assert!(
        !source
            .ordering_index(&reversed)
            .await
            .unwrap()
            .unwrap()
            .present
    );
    let view = spec(SourceRelation::Table("people_view".into()));
    assert_eq!(source.ordering_index(&view).await.unwrap(), None);
    let query = spec(SourceRelation::Query("SELECT * FROM people".into()));
    assert_eq!(source.ordering_index(&query).await.unwrap(), None);
}

#[tokio::test]
async fn postgres_tells_whether_a_table_has_the_ordering_index() {
    let (name, client) = common::database("ordering").await;
    let url = format!("{PG}/{name}");
    client
        .batch_execute(
            "CREATE TABLE people (id bigint PRIMARY KEY, v text, updated_at timestamptz NOT NULL);
             CREATE VIEW people_view AS SELECT * FROM people;",
        )
        .await
        .unwrap();
    let source = PostgresSource::connect(&url).await.unwrap();
    check(&source, |statement| {
        let client = &client;
        async move { client.batch_execute(&statement).await.unwrap() }
    })
    .await;
    drop(source);
    common::drop_database(&name).await;
}

#[tokio::test]
async fn mariadb_tells_whether_a_table_has_the_ordering_index() {
    use mysql_async::prelude::Queryable;
    let name = format!("ordering_{}", uuid::Uuid::new_v4().simple());
    let pool = mysql_async::Pool::new(MARIADB);
    let mut conn = pool.get_conn().await.unwrap();
    conn.query_drop(format!(
        "CREATE DATABASE {name};
         CREATE TABLE {name}.people (id bigint PRIMARY KEY, v text, updated_at datetime(6) NOT NULL);
         CREATE VIEW {name}.people_view AS SELECT * FROM {name}.people;"
    ))
    .await
    .unwrap();
    let source = MysqlSource::connect(&format!("{MARIADB}/{name}"))
        .await
        .unwrap();
    let url = format!("{MARIADB}/{name}");
    check(&source, |statement| {
        let url = url.clone();
        async move {
            let pool = mysql_async::Pool::new(url.as_str());
            let mut conn = pool.get_conn().await.unwrap();
            conn.query_drop(statement).await.unwrap();
            drop(conn);
            pool.disconnect().await.unwrap();
        }
    })
    .await;
    drop(source);
    conn.query_drop(format!("DROP DATABASE {name}"))
        .await
        .unwrap();
}
