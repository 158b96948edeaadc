//! What the connectors' tests share: a database of their own on the machine's PostgreSQL,
//! made for one test and dropped after it.
#![allow(dead_code)]

use tokio_postgres::NoTls;

/// The machine's PostgreSQL.
pub const PG: &str = "postgres://postgres@127.0.0.1:5432";

/// The machine's MariaDB.
pub const MARIADB: &str = "mysql://root@127.0.0.1:3306";

async fn admin() -> tokio_postgres::Client {
    let (admin, conn) = tokio_postgres::connect(&format!("{PG}/postgres"), NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    admin
}

/// A new database named `<prefix>_<random>`: its name, and a session on it.
pub async fn database(prefix: &str) -> (String, tokio_postgres::Client) {
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    admin()
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (client, conn) = tokio_postgres::connect(&format!("{PG}/{name}"), NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    (name, client)
}

/// Drops a database `database` made, whoever is still connected to it.
pub async fn drop_database(name: &str) {
    admin()
        .await
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
}
