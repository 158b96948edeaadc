//! `sluice stores`: the profile and event stores workspaces live in, registered and listed by
//! the fleet's operator on the host.

use super::output::{emit, outln, table, write_table, Output};
use crate::settings::Settings;
use sluice_coordinator::stores::{self, Measure};

/// `sluice stores` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StoresCommand {
    /// Register a PostgreSQL database as a store: its schema is created there, its URL sealed
    /// with the master key. Loaders open it the first time a chunk goes there.
    Add {
        /// The store's name, as `workspaces create --store` gives it.
        name: String,
        /// Its PostgreSQL URL (the database is created if missing).
        #[arg(long)]
        url: String,
    },
    /// Every store with its workspaces, profiles and size (counted on each store now).
    List {
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
}

/// `sluice stores add|list`.
pub async fn stores(settings: &Settings, command: StoresCommand) -> anyhow::Result<i32> {
    match command {
        StoresCommand::Add { name, url } => {
            sluice_coordinator::spec::check_object_name("NAME", &name)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if name == stores::DEFAULT {
                anyhow::bail!(
                    "NAME: {:?} is the store every process is configured with (SLUICE_STORE_URL); choose another name",
                    stores::DEFAULT
                );
            }
            let key = settings.master_key()?;
            let client = settings.control_for_writes().await?;
            if stores::list(&client).await?.iter().any(|s| s.name == name) {
                anyhow::bail!("store {name:?} already exists");
            }
            sluice_coordinator::database::migrate(
                &url,
                &[(sluice_loader::SCHEMA, sluice_loader::MIGRATIONS)],
            )
            .await
            .map_err(|e| anyhow::anyhow!("--url: {e}"))?;
            stores::register(&client, &key, &name, &url).await?;
            let measure = measure(settings, &client, &name).await?;
            stores::record_profiles(&client, &name, measure.profiles).await?;
            outln!(
                "store {name} added at {}; workspaces created from now on may live there",
                sluice_proto::bus::redact_url(&url)
            );
        }
        StoresCommand::List { output } => {
            let client = settings.control().await?;
            let listed = measure_all(settings, &client).await?;
            let rows: Vec<serde_json::Value> = listed
                .iter()
                .map(|(s, m)| {
                    serde_json::json!({
                        "name": s.name,
                        "workspaces": s.workspaces,
                        "profiles": m.profiles,
                        "bytes": m.bytes,
                    })
                })
                .collect();
            emit(output, &rows, |out| {
                let mut t = table(["STORE", "WORKSPACES", "PROFILES", "SIZE"]);
                for (s, m) in &listed {
                    t.add_row([
                        s.name.clone(),
                        s.workspaces.to_string(),
                        m.profiles.to_string(),
                        size(m.bytes),
                    ]);
                }
                write_table(out, &t)
            })?;
        }
    }
    Ok(0)
}

/// Counts every store's profiles and size on the store itself, and records the counts that
/// the choice of a new workspace's store reads.
pub async fn measure_all(
    settings: &Settings,
    client: &tokio_postgres::Client,
) -> anyhow::Result<Vec<(stores::StoreItem, Measure)>> {
    let mut measured = Vec::new();
    for store in stores::list(client).await? {
        let measure = measure(settings, client, &store.name).await?;
        stores::record_profiles(client, &store.name, measure.profiles).await?;
        measured.push((store, measure));
    }
    Ok(measured)
}

/// Counts one store's profiles and size.
async fn measure(
    settings: &Settings,
    control: &tokio_postgres::Client,
    name: &str,
) -> anyhow::Result<Measure> {
    let store = settings.store_named(control, name).await?;
    stores::measure(&store)
        .await
        .map_err(|e| anyhow::anyhow!("store {name}: {e}"))
}

/// Bytes for people: `12.3 MiB`.
fn size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
