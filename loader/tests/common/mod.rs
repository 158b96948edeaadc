//! What the loader's tests against the real PostgreSQL share: a connection, and a fresh
//! database holding the profile store's schema.

use tokio_postgres::{Client, NoTls};

pub const PG: &str = "postgres://postgres@127.0.0.1:5432";

pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// A test's database holding the profile store's schema, dropped when the test ends.
pub struct Store {
    /// Its URL.
    pub url: String,
    name: String,
}

impl Drop for Store {
    fn drop(&mut self) {
        let name = self.name.clone();
        // The test's runtime may be shutting down: the drop runs on a runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let admin = connect(&format!("{PG}/postgres")).await;
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        })
        .join();
    }
}

/// A fresh database `name` holding the profile store's schema.
pub async fn store(name: &str) -> Store {
    let admin = connect(&format!("{PG}/postgres")).await;
    for statement in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin.batch_execute(&statement).await.unwrap();
    }
    let url = format!("{PG}/{name}");
    let client = connect(&url).await;
    client
        .batch_execute(&format!("CREATE SCHEMA {}", sluice_loader::SCHEMA))
        .await
        .unwrap();
    for (_, sql) in sluice_loader::MIGRATIONS {
        client.batch_execute(sql).await.unwrap();
    }
    Store {
        url,
        name: name.to_string(),
    }
}
