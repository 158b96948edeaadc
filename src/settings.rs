//! Settings shared by every subcommand, from flags or `SLUICE_*` environment variables.

use clap::Args;
use sluice_proto::secrets::MasterKey;
use sluice_proto::Topology;
use std::path::PathBuf;

/// Where the fleet's services are and how it identifies itself.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// The control plane (PostgreSQL): the coordinator's, and the admin commands'. Extractors
    /// and transformers use no database.
    #[arg(
        long,
        env = "SLUICE_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/sluice",
        global = true
    )]
    pub database_url: String,
    /// The profile and event stores (PostgreSQL): the loader writes them, the coordinator's
    /// profile lookups and `sluice export` read them. By default the control plane's database.
    #[arg(long, env = "SLUICE_STORE_URL", global = true)]
    pub store_url: Option<String>,
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
    /// The address people reach the web page at (`https://sluice.example.com`): every
    /// notification links to its run's page under it; `http://<SLUICE_HTTP_ADDR>` when unset.
    #[arg(long, env = "SLUICE_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// How often the leading coordinator evaluates the imports' alert rules.
    #[arg(long, env = "SLUICE_ALERT_INTERVAL", default_value = "30s", value_parser = sluice_coordinator::spec::duration::parse, global = true)]
    pub alert_interval: std::time::Duration,
    /// A coordinator's HTTP API (`http://host:8080`): admin commands (apply, run, imports and
    /// connections lists, connection tests) go through it instead of the database.
    #[arg(long, env = "SLUICE_SERVER", global = true)]
    pub server: Option<String>,
    /// The workspace a command acts in; without it, the one `sluice config set workspace`
    /// saved (with `--server`, the token's own).
    #[arg(long, env = "SLUICE_WORKSPACE", global = true)]
    pub workspace: Option<String>,
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

    /// Whether a master key is given: `SLUICE_MASTER_KEY` or the key file.
    pub fn has_master_key(&self) -> bool {
        self.master_key.is_some() || self.data_dir().join("master.key").exists()
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

    /// The stores' database: `--store-url`, or the control plane's.
    pub fn store_url(&self) -> &str {
        self.store_url.as_deref().unwrap_or(&self.database_url)
    }

    /// Creates the control plane's database if needed and applies its migrations.
    pub async fn migrate_control(&self) -> anyhow::Result<()> {
        sluice_coordinator::database::migrate(
            &self.database_url,
            &[(sluice_coordinator::SCHEMA, sluice_coordinator::MIGRATIONS)],
        )
        .await?;
        Ok(())
    }

    /// Creates the stores' database if needed and applies their migrations.
    pub async fn migrate_store(&self) -> anyhow::Result<()> {
        sluice_coordinator::database::migrate(
            self.store_url(),
            &[(sluice_loader::SCHEMA, sluice_loader::MIGRATIONS)],
        )
        .await?;
        Ok(())
    }

    /// A connection to the control plane for a command that only reads it: nothing is
    /// migrated, and a database never set up is named with the remedy.
    pub async fn control(&self) -> anyhow::Result<tokio_postgres::Client> {
        set_up(&self.database_url, sluice_coordinator::SCHEMA).await
    }

    /// A connection to the control plane for a command that writes it, migrated first.
    pub async fn control_for_writes(&self) -> anyhow::Result<tokio_postgres::Client> {
        self.migrate_control().await?;
        Ok(sluice_coordinator::database::connect(&self.database_url).await?)
    }

    /// A connection to the stores for a command that only reads them.
    pub async fn store(&self) -> anyhow::Result<tokio_postgres::Client> {
        set_up(self.store_url(), sluice_loader::SCHEMA).await
    }

    /// The master key where one is given, for the roles that hold it only to open the URLs
    /// of registered stores.
    pub fn optional_master_key(&self) -> anyhow::Result<Option<MasterKey>> {
        match self.has_master_key() {
            true => Ok(Some(self.master_key()?)),
            false => Ok(None),
        }
    }

    /// A connection to the store named: the default one (`--store-url`) or a registered one.
    pub async fn store_named(
        &self,
        control: &tokio_postgres::Client,
        name: &str,
    ) -> anyhow::Result<tokio_postgres::Client> {
        let key = self.optional_master_key()?;
        match sluice_coordinator::stores::url(control, key.as_ref(), name).await? {
            None => self.store().await,
            Some(url) => Ok(sluice_coordinator::database::connect(&url).await?),
        }
    }

    /// Applies the control plane's and the stores' migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.migrate_control().await?;
        self.migrate_store().await
    }
}

/// Connects to `url` and checks that `schema`'s migrations were applied there.
async fn set_up(url: &str, schema: &str) -> anyhow::Result<tokio_postgres::Client> {
    let not_set_up = || {
        anyhow::anyhow!(
            "{} holds no {schema} schema: run `sluice migrate`, or start the fleet, first",
            sluice_proto::bus::redact_url(url)
        )
    };
    let client = match sluice_coordinator::database::connect(url).await {
        Ok(client) => client,
        Err(sluice_coordinator::database::DatabaseError::Connect { source, .. })
            if source.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME) =>
        {
            return Err(not_set_up());
        }
        Err(e) => return Err(e.into()),
    };
    let migrated: bool = client
        .query_one(
            "SELECT to_regclass(quote_ident($1) || '.schema_migrations') IS NOT NULL",
            &[&schema],
        )
        .await?
        .get(0);
    if !migrated {
        return Err(not_set_up());
    }
    Ok(client)
}
