//! Settings shared by every subcommand, from flags or `SLUICE_*` environment variables.

use clap::Args;
use sluice_proto::secrets::MasterKey;
use sluice_proto::Topology;
use std::path::PathBuf;

/// Where the fleet's services are and how it identifies itself.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Control plane and stores (PostgreSQL).
    #[arg(
        long,
        env = "SLUICE_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/sluice",
        global = true
    )]
    pub database_url: String,
    /// RabbitMQ.
    #[arg(
        long,
        env = "SLUICE_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        global = true
    )]
    pub amqp_url: String,
    /// Prefix of the exchange and queue names, so several fleets can share one broker.
    #[arg(
        long,
        env = "SLUICE_AMQP_PREFIX",
        default_value = "sluice",
        global = true
    )]
    pub amqp_prefix: String,
    /// Where chunks are staged: a directory, or an s3://, gs://, az:// URL.
    #[arg(long, env = "SLUICE_OBJECT_STORE_URL", global = true)]
    pub object_store_url: Option<String>,
    /// The master key sealing credentials (64 hex characters). Without it, a key file in the
    /// data directory is used (created on first use).
    #[arg(long, env = "SLUICE_MASTER_KEY", hide_env_values = true, global = true)]
    pub master_key: Option<String>,
    /// Keys the master key replaces, comma-separated: during a rotation they open what they
    /// sealed, and seal nothing.
    #[arg(
        long,
        env = "SLUICE_PREVIOUS_MASTER_KEYS",
        hide_env_values = true,
        global = true
    )]
    pub previous_master_keys: Option<String>,
    /// Where the process serves HTTP: the API (`/v1`) and web page (`/ui`) on the
    /// coordinator, and `/healthz`, `/readyz` and `/metrics` on every role. By default
    /// 127.0.0.1:8080 for the coordinator (and `all`), and a port the system picks for a
    /// worker role, so several run on one machine.
    #[arg(long, env = "SLUICE_HTTP_ADDR", global = true)]
    pub http_addr: Option<std::net::SocketAddr>,
    /// The SMTP server notification emails go through: `smtp://[user:password@]host[:port]`
    /// (`?tls=required` for STARTTLS) or `smtps://...`.
    #[arg(long, env = "SLUICE_SMTP_URL", hide_env_values = true, global = true)]
    pub smtp_url: Option<String>,
    /// The sender of notification emails.
    #[arg(
        long,
        env = "SLUICE_SMTP_FROM",
        default_value = "Sluice <sluice@localhost>",
        global = true
    )]
    pub smtp_from: String,
    /// A coordinator's HTTP API (`http://host:8080`): admin commands (apply, run, imports and
    /// connections lists, connection tests) go through it instead of the database.
    #[arg(long, env = "SLUICE_SERVER", global = true)]
    pub server: Option<String>,
    /// The API token `--server` calls are made with.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Directory for the local object store and the key file.
    #[arg(long, env = "SLUICE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

impl Settings {
    /// The data directory: `--data-dir`, or `~/.local/share/sluice`.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            home.join(".local/share/sluice")
        })
    }

    /// The object store URL, defaulting to a directory in the data directory.
    pub fn object_store_url(&self) -> String {
        self.object_store_url
            .clone()
            .unwrap_or_else(|| self.data_dir().join("objects").display().to_string())
    }

    /// The master key from `SLUICE_MASTER_KEY` or the key file, with the previous keys.
    pub fn master_key(&self) -> anyhow::Result<MasterKey> {
        let key = match &self.master_key {
            Some(hex) => MasterKey::from_hex(hex)?,
            None => MasterKey::load_or_create(&self.data_dir().join("master.key"))?,
        };
        let previous = self
            .previous_master_keys
            .iter()
            .flat_map(|keys| keys.split(','))
            .filter(|k| !k.trim().is_empty())
            .enumerate()
            .map(|(i, hex)| {
                MasterKey::from_hex(hex)
                    .map_err(|e| anyhow::anyhow!("SLUICE_PREVIOUS_MASTER_KEYS, key {}: {e}", i + 1))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(key.with_previous(previous))
    }

    /// Where a process playing `coordinator` (or not) serves HTTP.
    pub fn http_addr(&self, coordinator: bool) -> std::net::SocketAddr {
        self.http_addr.unwrap_or_else(|| {
            let port = if coordinator { 8080 } else { 0 };
            std::net::SocketAddr::from(([127, 0, 0, 1], port))
        })
    }

    /// The queue topology.
    pub fn topology(&self) -> Topology {
        Topology::new(self.amqp_prefix.clone())
    }

    /// Creates the database if needed and applies the control plane's and stores' migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        sluice_coordinator::database::migrate(
            &self.database_url,
            &[
                (sluice_coordinator::SCHEMA, sluice_coordinator::MIGRATIONS),
                (sluice_loader::SCHEMA, sluice_loader::MIGRATIONS),
            ],
        )
        .await?;
        Ok(())
    }
}
